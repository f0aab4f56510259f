//! The `report` command's output: toplines and fieldwork as a table or as
//! JSON, rejected lines as `input:line: field (rule): message`.

use std::io::{BufRead, Write};

use super::{Offline, ReportError, ReportJson, fieldwork, run_with};
use crate::fieldwork::summary::INTERVIEWER;
use crate::ingest::Pseudonymizer;
use crate::instrument::{Catalog, Study};

/// How `report` writes its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned text tables.
    Table,
    /// One pretty-printed JSON document.
    Json,
}

/// Errors of [`print`].
#[derive(Debug, thiserror::Error)]
pub enum PrintError {
    /// Reading the input or computing the report failed.
    #[error("cannot compute the report")]
    Report(#[from] ReportError),
    /// The report could not be encoded as JSON.
    #[error("cannot encode the report as json")]
    Json(#[from] serde_json::Error),
    /// The output could not be written.
    #[error("cannot write the report")]
    Write(#[from] std::io::Error),
}

/// Tallies `input` (named `input_name` in messages), writes the report to
/// `out` and every rejected line, then a count of them, to `err`.
/// Respondent keys are made with `hmac_key` as ingest makes them, so the
/// flags equal the live ones.
#[allow(clippy::too_many_arguments)]
pub fn print(
    catalog: &Catalog,
    study: &Study,
    hmac_key: &str,
    input: impl BufRead,
    input_name: &str,
    by: Option<&str>,
    format: Format,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), PrintError> {
    // `--by interviewer` breaks fieldwork down by interviewer even where no
    // declared dimension has that name; the toplines then stay overall.
    let top_by = by.filter(|b| study.dim(b).is_some() || *b != INTERVIEWER);
    let opts = Offline {
        catalog: Some(catalog),
        respondent_keys: Pseudonymizer::new(hmac_key.as_bytes()),
        ..Offline::default()
    };
    let (tally, top) = run_with(study, input, top_by, &opts)?;
    for e in &tally.errors {
        for v in &e.violations {
            writeln!(err, "{input_name}:{}: {} ({}): {}", e.line, v.field, v.rule.as_str(), v.message)?;
        }
    }
    let fieldwork = fieldwork(study, &tally, by)?;
    match format {
        Format::Table => {
            write!(out, "{}", top.to_table())?;
            write!(out, "{}", fieldwork.to_table())?;
            let quotas = crate::results::quotas::quotas(study, &tally.state);
            write!(out, "{}", crate::results::quotas::to_table(study.id(), &quotas))?;
            writeln!(
                out,
                "{} lines, {} rejected ({} for a submission id used first by another respondent), {} retries, {} duplicate respondents, {} possible duplicates",
                tally.lines,
                tally.errors.len(),
                tally.submission_ids_taken,
                tally.state.retries,
                tally.state.duplicate_respondents,
                tally.state.possible_duplicates()
            )?;
        }
        Format::Json => {
            let doc = ReportJson::new(study, &top, &tally, &fieldwork);
            serde_json::to_writer_pretty(&mut *out, &doc)?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    if !tally.errors.is_empty() {
        writeln!(err, "{} of {} lines rejected", tally.errors.len(), tally.lines)?;
    }
    if tally.unknown_study > 0 {
        writeln!(err, "{} lines name a study no loaded instrument defines", tally.unknown_study)?;
    }
    Ok(())
}
