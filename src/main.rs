//! The `fieldwatch` binary: parses the command line and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fieldwatch::instrument::{self, Catalog, Study};

#[derive(Parser)]
#[command(name = "fieldwatch", version, about = "Live results and live data quality for survey fieldwork")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check or show questionnaire definitions.
    Instrument {
        #[command(subcommand)]
        command: InstrumentCommand,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Instrument { command: InstrumentCommand::Check { files } } => instrument_check(&files),
    }
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
    let _ = Catalog::default();
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
