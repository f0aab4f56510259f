//! The `fieldwatch` binary: parses the command line and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use fieldwatch::app::{self, Parts};
use fieldwatch::config::Config;
use fieldwatch::instrument::{self, Catalog, KindDef, Study};
use fieldwatch::report;
use fieldwatch::submit::SubmitOptions;
use fieldwatch::validate::Limits;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "fieldwatch", version, about = "Live results and live data quality for survey fieldwork")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options shared by the long-running commands.
#[derive(clap::Args, Clone)]
struct ServiceArgs {
    /// Configuration file (YAML; see config/fieldwatch.yaml). Environment
    /// variables FIELDWATCH__SECTION__KEY override it.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// gRPC ingest address (ingest.listen).
    #[arg(long)]
    grpc_addr: Option<std::net::SocketAddr>,
    /// Metrics / JSON API / live page address (http.listen).
    #[arg(long)]
    http_addr: Option<std::net::SocketAddr>,
    /// Data directory (data_dir): the embedded broker's storage.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run ingest, aggregator and HTTP in one process, on the embedded
    /// broker unless kafka.brokers is set. Loads the demo study by default.
    Serve(ServiceArgs),
    /// Run gRPC ingest alone against external brokers.
    Ingest(ServiceArgs),
    /// Run the aggregator (and its HTTP endpoints) alone against external brokers.
    Aggregate(ServiceArgs),
    /// Run the embedded Kafka-protocol broker alone (SQLite storage).
    #[cfg(feature = "embedded-broker")]
    Broker {
        /// Listener address (a literal IP; it is also advertised).
        #[arg(long, default_value = "127.0.0.1:9092")]
        listen: std::net::SocketAddr,
        /// Data directory.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
    },
    /// Write synthetic interviews of a study as JSONL (demo and load data).
    Generate {
        /// How many interviews.
        #[arg(long, default_value_t = 1000)]
        count: u64,
        /// Seed: the same seed gives the same interviews.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Study id.
        #[arg(long, default_value = instrument::DEMO_STUDY_ID)]
        study: String,
        /// Random strings in every free field (text answers, interviewer, attributes).
        #[arg(long)]
        hostile: bool,
        /// Instrument files or directories (default: the built-in demo study).
        #[arg(long = "instruments")]
        instruments: Vec<PathBuf>,
    },
    /// Time from starting a fresh aggregator to ready, with many interviews in
    /// the topic (default 1,000,000), from snapshots and (--replay) without.
    BenchRestore(fieldwatch::restore_bench::RestoreOptions),
    /// Stream a JSONL file of interviews and dispositions to a running service.
    Submit {
        /// gRPC endpoint of ingest.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        server: String,
        /// JSONL file of interviews and dispositions (`-` for standard input).
        #[arg(long)]
        file: PathBuf,
        /// Bearer token for the front-end (or FIELDWATCH_TOKEN).
        #[arg(long, env = "FIELDWATCH_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Stop retrying unavailable records after this many seconds without progress.
        #[arg(long, default_value_t = 60)]
        retry_for_secs: u64,
    },
    /// Measure producer, ingest, latency and aggregator figures on one broker.
    Bench(fieldwatch::bench::BenchOptions),
    /// Check or show questionnaire definitions.
    Instrument {
        #[command(subcommand)]
        command: InstrumentCommand,
    },
    /// Toplines and fieldwork (dispositions, AAPOR rates) computed offline
    /// from a JSONL file of interviews and dispositions.
    Report {
        /// JSONL file of interviews and dispositions (`-` for standard input).
        #[arg(long)]
        input: PathBuf,
        /// Study id.
        #[arg(long, default_value = instrument::DEMO_STUDY_ID)]
        study: String,
        /// Break results down by this segment dimension.
        #[arg(long)]
        by: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Instrument files or directories (default: the built-in demo study).
        #[arg(long = "instruments")]
        instruments: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Subcommand)]
enum InstrumentCommand {
    /// Load and lint instrument files; print every problem with file and line.
    Check {
        /// Instrument YAML files or directories of them.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Import XLSForm workbooks (one per form) as one study's instrument
    /// YAML (docs/xlsform.md).
    Import {
        /// Workbooks (.xlsx, .xls, .ods), one per form, first form first.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Study id (default: the `fieldwatch::study` setting, else the first form id).
        #[arg(long)]
        study: Option<String>,
        /// Write the instrument here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print a study's forms as a table.
    Show {
        /// Study id.
        study: String,
        /// Instrument files or directories (default: the built-in demo study).
        #[arg(long = "instruments")]
        instruments: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tansu=warn,libsql=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve(args) => service(args, Parts::All),
        Command::Ingest(args) => service(args, Parts::Ingest),
        Command::Aggregate(args) => service(args, Parts::Aggregate),
        #[cfg(feature = "embedded-broker")]
        Command::Broker { listen, data_dir } => block_on(async move {
            fieldwatch::broker::run_standalone(fieldwatch::broker::BrokerConfig::new(listen, data_dir))
                .await
                .map_err(anyhow::Error::from)
        }),
        Command::BenchRestore(opts) => block_on(async move { fieldwatch::restore_bench::run(&opts).await }),
        Command::Generate { count, seed, study, hostile, instruments } => {
            with_study(&instruments, &study, |s| {
                use std::io::Write;
                let opts = fieldwatch::synth::Options { random_strings: hostile };
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                let mut rng = fieldwatch::synth::Rng::new(seed);
                for n in 0..count {
                    let form = &s.forms[(n % s.forms.len() as u64) as usize];
                    let mut sub = fieldwatch::synth::interview(s, form, n, &mut rng, &opts);
                    sub.respondent_id = format!("gen-{seed}-r{n}");
                    sub.submission_id = format!("gen-{seed}-s{n}");
                    let line = match serde_json::to_string(&sub) {
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("error: {e}");
                            return ExitCode::FAILURE;
                        }
                    };
                    if writeln!(out, "{line}").is_err() {
                        return ExitCode::FAILURE;
                    }
                }
                if out.flush().is_err() { ExitCode::FAILURE } else { ExitCode::SUCCESS }
            })
        }
        Command::Submit { server, file, token, retry_for_secs } => {
            submit(server, file, token, retry_for_secs)
        }
        Command::Bench(opts) => {
            block_on(
                async move { Ok(fieldwatch::bench::run(&opts, &mut std::io::stdout()).await.map(drop)?) },
            )
        }
        Command::Instrument { command: InstrumentCommand::Check { files } } => instrument_check(&files),
        Command::Instrument { command: InstrumentCommand::Import { files, study, out } } => {
            match instrument::xlsform::read::import_to_yaml(&files, study.as_deref()) {
                Ok(yaml) => match out {
                    None => {
                        print!("{yaml}");
                        ExitCode::SUCCESS
                    }
                    Some(path) => match std::fs::write(&path, yaml) {
                        Ok(()) => ExitCode::SUCCESS,
                        Err(e) => {
                            eprintln!("error: cannot write {}: {e}", path.display());
                            ExitCode::FAILURE
                        }
                    },
                },
                Err(problems) => {
                    eprintln!("{}", instrument::xlsform::format_problems(&problems));
                    ExitCode::FAILURE
                }
            }
        }
        Command::Instrument { command: InstrumentCommand::Show { study, instruments } } => {
            with_study(&instruments, &study, |s| {
                print!("{}", show_study(s));
                ExitCode::SUCCESS
            })
        }
        Command::Report { input, study, by, format, instruments } => {
            with_study(&instruments, &study, |s| run_report(s, &input, by.as_deref(), format))
        }
    }
}

fn block_on(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn service(args: ServiceArgs, parts: Parts) -> ExitCode {
    let mut config = match Config::load(args.config.as_deref(), std::env::vars) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    config.ingest.apply_env(|k| std::env::var(k).ok());
    if let Some(a) = args.grpc_addr {
        config.ingest.listen = a;
    }
    if let Some(a) = args.http_addr {
        config.http.listen = a;
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Err(e) = config.validate() {
        eprintln!("error: invalid configuration: {e}");
        return ExitCode::FAILURE;
    }
    block_on(app::run(config, parts))
}

fn submit(server: String, file: PathBuf, token: Option<String>, retry_for_secs: u64) -> ExitCode {
    let opts =
        SubmitOptions { server, token, retry_for: Duration::from_secs(retry_for_secs), progress: true };
    let reader: Box<dyn std::io::BufRead + Send> = if file.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        match std::fs::File::open(&file) {
            Ok(f) => Box::new(std::io::BufReader::new(f)),
            Err(e) => {
                eprintln!("error: cannot open {}: {e}", file.display());
                return ExitCode::FAILURE;
            }
        }
    };
    let mut failed = false;
    let code = block_on(async {
        let mut out = std::io::stdout();
        let s = fieldwatch::submit::run(reader, &opts, &mut out).await?;
        eprintln!(
            "submitted {} lines: {} accepted, {} rejected, {} not stored, {} resends",
            s.lines, s.accepted, s.rejected, s.failed, s.resent
        );
        failed = s.rejected > 0 || s.failed > 0;
        Ok(())
    });
    if failed { ExitCode::FAILURE } else { code }
}

/// Loads the catalog (given paths, or the built-in demo) and runs `f` on one study.
fn with_study(paths: &[PathBuf], id: &str, f: impl FnOnce(&Study) -> ExitCode) -> ExitCode {
    let catalog = if paths.is_empty() {
        Catalog::demo()
    } else {
        match Catalog::load_paths(paths) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    match catalog.get(id) {
        Some(s) => f(s),
        None => {
            let known: Vec<&str> = catalog.studies().map(|s| s.id()).collect();
            eprintln!("error: unknown study `{id}` (loaded: {})", known.join(", "));
            ExitCode::FAILURE
        }
    }
}

fn run_report(study: &Study, input: &std::path::Path, by: Option<&str>, format: Format) -> ExitCode {
    let reader: Box<dyn std::io::BufRead> = if input.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        match std::fs::File::open(input) {
            Ok(f) => Box::new(std::io::BufReader::new(f)),
            Err(e) => {
                eprintln!("error: cannot open {}: {e}", input.display());
                return ExitCode::FAILURE;
            }
        }
    };
    // `--by interviewer` breaks fieldwork down by interviewer even where no
    // declared dimension has that name; the toplines then stay overall.
    let top_by = by.filter(|b| study.dim(b).is_some() || *b != fieldwatch::fieldwork::summary::INTERVIEWER);
    let (tally, top) = match report::run(study, reader, top_by, &Limits::default()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    for e in &tally.errors {
        for v in &e.violations {
            eprintln!("{}:{}: {} ({}): {}", input.display(), e.line, v.field, v.rule.as_str(), v.message);
        }
    }
    let fieldwork = match report::fieldwork(study, &tally, by) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match format {
        Format::Table => {
            print!("{}", top.to_table());
            print!("{}", fieldwork.to_table());
            println!(
                "{} lines, {} rejected, {} retries, {} duplicate respondents, {} possible duplicates",
                tally.lines,
                tally.errors.len(),
                tally.state.retries,
                tally.state.duplicate_respondents,
                tally.state.possible_duplicates()
            );
        }
        Format::Json => {
            let doc = report::ReportJson {
                toplines: &top,
                lines: tally.lines,
                rejected: &tally.errors,
                retries: tally.state.retries,
                duplicate_respondents: tally.state.duplicate_respondents,
                possible_duplicates: tally.state.possible_duplicates(),
                fieldwork: &fieldwork,
            };
            match serde_json::to_string_pretty(&doc) {
                Ok(s) => println!("{s}"),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    if !tally.errors.is_empty() {
        eprintln!("{} of {} lines rejected", tally.errors.len(), tally.lines);
    }
    ExitCode::SUCCESS
}

fn show_study(s: &Study) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "study {} — {}", s.id(), s.def.title);
    for f in &s.forms {
        let _ = writeln!(out, "\nform {} — {} ({} items)", f.id, f.title, f.items.len());
        let _ = writeln!(
            out,
            "{:<10} {:<36} {:<14} {:<4} {:<30} relevant",
            "item", "code", "kind", "req", "values"
        );
        for it in &f.items {
            let values = match &it.kind {
                KindDef::Scale { min, max, direction, .. } => {
                    format!("{min}..{max} {direction:?}").to_lowercase()
                }
                KindDef::Count { min, max } => format!("{min}..{max}"),
                KindDef::Number { min, max } => format!("{:?}..{:?}", min, max),
                KindDef::MultiSelect { options, ranked, max_picks } => format!(
                    "{} options{}{}",
                    options.len(),
                    if *ranked { ", ranked" } else { "" },
                    max_picks.map(|m| format!(", max {m}")).unwrap_or_default()
                ),
                KindDef::SingleChoice { options } => format!("{} options", options.len()),
                _ => String::new(),
            };
            let relevant = s
                .def
                .forms
                .iter()
                .find(|d| d.id == f.id)
                .and_then(|d| d.items.iter().find(|d| d.id == it.id))
                .and_then(|d| d.relevant.clone())
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{:<10} {:<36} {:<14} {:<4} {:<30} {}",
                it.id,
                s.codes[it.code].code,
                it.kind.name(),
                if it.required { "yes" } else { "" },
                values,
                relevant
            );
        }
    }
    out
}

fn instrument_check(files: &[PathBuf]) -> ExitCode {
    let paths = match instrument::expand_paths(files) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = false;
    let (books, paths): (Vec<PathBuf>, Vec<PathBuf>) =
        paths.into_iter().partition(|p| instrument::xlsform::is_workbook(p));
    for (files, study) in instrument::xlsform::load_studies(&books) {
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        match study {
            Ok(s) => println!(
                "{}: ok (study {}, {} forms, {} items, {} codes)",
                names.join(", "),
                s.id(),
                s.forms.len(),
                s.forms.iter().map(|f| f.items.len()).sum::<usize>(),
                s.codes.len()
            ),
            Err(problems) => {
                eprintln!("{}", instrument::xlsform::format_problems(&problems));
                failed = true;
            }
        }
    }
    for path in paths {
        match std::fs::read_to_string(&path) {
            Err(e) => {
                eprintln!("{}: cannot read: {e}", path.display());
                failed = true;
            }
            Ok(src) => match Study::from_yaml(&src) {
                Ok(s) => println!(
                    "{}: ok (study {}, {} forms, {} items, {} codes)",
                    path.display(),
                    s.id(),
                    s.forms.len(),
                    s.forms.iter().map(|f| f.items.len()).sum::<usize>(),
                    s.codes.len()
                ),
                Err(problems) => {
                    eprintln!("{}", instrument::format_problems(&path, &problems));
                    failed = true;
                }
            },
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
