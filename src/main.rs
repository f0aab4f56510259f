//! The `fieldwatch` binary: parses the command line, loads the
//! configuration, sets up logging and calls the library. Each subcommand is
//! one arm of [`run`] calling one library entry point; errors are printed
//! once, here, with their whole cause chain.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fieldwatch::app::{self, Parts};
use fieldwatch::config::Config;
use fieldwatch::instrument::{self, Catalog};
use fieldwatch::report::print::Format;
use fieldwatch::submit::SubmitOptions;

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
    BenchRestore(fieldwatch::bench::restore::RestoreOptions),
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
    // The service commands log as their config says, once it is loaded.
    if !matches!(cli.command, Command::Serve(_) | Command::Ingest(_) | Command::Aggregate(_)) {
        fieldwatch::log::init(&fieldwatch::log::LogConfig::default());
    }
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            // The error and every cause, `a: b: c` (as anyhow's `{:#}`, but
            // without repeating a cause the message already shows).
            eprintln!("error: {}", fieldwatch::errors::chain(&*e));
            ExitCode::FAILURE
        }
    }
}

/// Runs one subcommand. `Ok(FAILURE)` is a failure already reported (a
/// lint problem, a rejected line); `Err` is printed by `main`.
fn run(command: Command) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout();
    match command {
        Command::Serve(args) => service(args, Parts::All),
        Command::Ingest(args) => service(args, Parts::Ingest),
        Command::Aggregate(args) => service(args, Parts::Aggregate),
        #[cfg(feature = "embedded-broker")]
        Command::Broker { listen, data_dir } => {
            let config = fieldwatch::broker::BrokerConfig::new(listen, data_dir);
            block_on(async move { Ok(fieldwatch::broker::run_standalone(config).await?) })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate { count, seed, study, hostile, instruments } => {
            let catalog = Catalog::load_or_demo(&instruments)?;
            let opts = fieldwatch::synth::Options { random_strings: hostile };
            let mut out = std::io::BufWriter::new(stdout.lock());
            fieldwatch::synth::write_jsonl(catalog.study(&study)?, count, seed, &opts, &mut out)
                .context("cannot write the interviews")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Submit { server, file, token, retry_for_secs } => {
            let opts = SubmitOptions {
                server,
                token,
                retry_for: Duration::from_secs(retry_for_secs),
                progress: true,
            };
            let input = open_input(&file)?;
            let summary =
                block_on(async move { Ok(fieldwatch::submit::run(input, &opts, &mut stdout).await?) })?;
            eprintln!("{summary}");
            Ok(if summary.all_stored() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Bench(opts) => {
            block_on(async move { Ok(fieldwatch::bench::run(&opts, &mut stdout).await.map(drop)?) })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchRestore(opts) => {
            block_on(async move { Ok(fieldwatch::bench::restore::run(&opts, &mut stdout).await?) })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Instrument { command } => match command {
            InstrumentCommand::Check { files } => {
                let good = instrument::cli::check(&files, &mut stdout, &mut std::io::stderr())?;
                Ok(if good { ExitCode::SUCCESS } else { ExitCode::FAILURE })
            }
            InstrumentCommand::Show { study, instruments } => {
                let catalog = Catalog::load_or_demo(&instruments)?;
                write!(stdout, "{}", instrument::cli::show(catalog.study(&study)?))?;
                Ok(ExitCode::SUCCESS)
            }
            InstrumentCommand::Import { files, study, out } => {
                match instrument::xlsform::read::import_to_yaml(&files, study.as_deref()) {
                    Ok(yaml) => match out {
                        None => write!(stdout, "{yaml}")?,
                        Some(path) => std::fs::write(&path, yaml)
                            .with_context(|| format!("cannot write {}", path.display()))?,
                    },
                    Err(problems) => {
                        eprintln!("{}", instrument::xlsform::format_problems(&problems));
                        return Ok(ExitCode::FAILURE);
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Report { input, study, by, format, instruments } => {
            let catalog = Catalog::load_or_demo(&instruments)?;
            let reader = open_input(&input)?;
            // Respondent keys as ingest makes them, so the flags equal the live ones.
            let key = std::env::var(fieldwatch::ingest::HMAC_KEY_ENV)
                .unwrap_or_else(|_| fieldwatch::ingest::DEMO_HMAC_KEY.to_string());
            fieldwatch::report::print::print(
                &catalog,
                catalog.study(&study)?,
                &key,
                reader,
                &input.display().to_string(),
                by.as_deref(),
                format,
                &mut stdout,
                &mut std::io::stderr(),
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A file named on the command line, or standard input for `-`.
fn open_input(path: &Path) -> anyhow::Result<Box<dyn BufRead + Send>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::BufReader::new(std::io::stdin())));
    }
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(Box::new(std::io::BufReader::new(file)))
}

/// Runs `fut` to completion on a multi-threaded runtime.
fn block_on<T>(fut: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(fut)
}

/// `serve`, `ingest` or `aggregate`: the config file, environment
/// overrides and flags, then the service until it is stopped.
fn service(args: ServiceArgs, parts: Parts) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(args.config.as_deref(), std::env::vars)?;
    fieldwatch::log::init(&config.log);
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
    config.validate().map_err(anyhow::Error::msg).context("invalid configuration")?;
    block_on(app::run(config, parts))?;
    Ok(ExitCode::SUCCESS)
}
