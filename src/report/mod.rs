//! Offline toplines from a JSONL file of submissions (`fieldwatch report`).
//!
//! Every line — an interview, or a case disposition (`"kind":
//! "disposition"`) for the fieldwork section — goes through the same
//! function as in the live aggregator ([`crate::pipeline::apply`]), so the
//! offline numbers are the reference the live ones are compared with. A line that fails is reported with its number and
//! reasons and does not stop the run.

use std::io::BufRead;

use serde::Serialize;

use crate::fieldwork::{FieldworkReport, parse_line};
use crate::instrument::Study;
use crate::pipeline::{self, Fate, Source};
use crate::results::{StudyState, Toplines, toplines};
use crate::validate::{Limits, Violation};

/// A line that could not be used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// The reasons: validation violations, or one `json` entry for a line
    /// that is not a submission object.
    pub violations: Vec<Violation>,
}

/// The outcome of reading a file.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// The state after applying every valid line of the study.
    pub state: StudyState,
    /// Lines read (non-empty).
    pub lines: usize,
    /// Lines of another study, skipped.
    pub other_study: usize,
    /// Disposition lines applied.
    pub dispositions: usize,
    /// Rejected lines.
    pub errors: Vec<LineError>,
}

/// Errors of the report command.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The input could not be read.
    #[error("cannot read input")]
    Read(#[source] std::io::Error),
    /// The requested breakdown does not exist.
    #[error(transparent)]
    Toplines(#[from] crate::results::toplines::TopError),
    /// The requested fieldwork breakdown does not exist.
    #[error(transparent)]
    Fieldwork(#[from] crate::fieldwork::FieldworkError),
}

/// Reads JSONL submissions for `study` and applies each line through
/// [`pipeline::apply`], the aggregator's own path.
pub fn tally(study: &Study, input: impl BufRead, limits: &Limits) -> Result<Tally, ReportError> {
    let mut t = Tally::default();
    for (n, line) in input.lines().enumerate() {
        let line = line.map_err(ReportError::Read)?;
        if line.trim().is_empty() {
            continue;
        }
        t.lines += 1;
        let parsed = match parse_line(&line) {
            Ok(l) => l,
            Err(e) => {
                t.errors.push(LineError {
                    line: n + 1,
                    violations: vec![Violation {
                        field: String::new(),
                        rule: crate::validate::Rule::WrongKind,
                        message: format!("not a submission object: {e}"),
                    }],
                });
                continue;
            }
        };
        // A line without a study id belongs to the report's study (and
        // fails validation for the missing id).
        if parsed.study() != study.id() && !parsed.study().is_empty() {
            t.other_study += 1;
            continue;
        }
        let source =
            Source { partition: 0, offset: i64::try_from(n + 1).unwrap_or(i64::MAX), received_at: None };
        match pipeline::apply(study, &mut t.state, &parsed, limits, source).fate {
            Fate::Invalid(violations) => t.errors.push(LineError { line: n + 1, violations }),
            Fate::Disposition => t.dispositions += 1,
            Fate::Counted | Fate::Retry | Fate::DuplicateRespondent => {}
        }
    }
    Ok(t)
}

/// The JSON document `report --format json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct ReportJson<'a> {
    /// The toplines.
    #[serde(flatten)]
    pub toplines: &'a Toplines,
    /// Lines read.
    pub lines: usize,
    /// Rejected lines with reasons.
    pub rejected: &'a [LineError],
    /// Submission ids seen again (counted once).
    pub retries: u64,
    /// Respondents seen again under a new submission id.
    pub duplicate_respondents: u64,
    /// Interviews with the same answers as an earlier one.
    pub possible_duplicates: u64,
    /// Cases by disposition and the AAPOR rates.
    pub fieldwork: &'a FieldworkReport,
    /// The instrument's quotas, achieved against target (none when it declares none).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub quotas: &'a [crate::results::quotas::QuotaStatus],
}

/// The fieldwork section of a tallied input.
pub fn fieldwork(study: &Study, tally: &Tally, by: Option<&str>) -> Result<FieldworkReport, ReportError> {
    Ok(crate::fieldwork::report(study, &tally.state.fieldwork, by)?)
}

/// Runs the report: tallies the input and returns toplines.
pub fn run(
    study: &Study,
    input: impl BufRead,
    by: Option<&str>,
    limits: &Limits,
) -> Result<(Tally, Toplines), ReportError> {
    let tally = tally(study, input, limits)?;
    let top = toplines(study, &tally.state, by)?;
    Ok((tally, top))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_reported_with_their_number_and_do_not_stop_the_run() {
        let study = Study::from_yaml(
            "study: t\nforms:\n  - id: f\n    items:\n      - {id: q1, code: a, kind: yes_no}\n",
        )
        .expect("valid");
        let input = concat!(
            r#"{"study":"t","form":"f","respondent_id":"r1","submission_id":"s1","answers":{"q1":"yes"}}"#,
            "\n",
            "not json\n",
            r#"{"study":"t","form":"f","respondent_id":"","submission_id":"s3","answers":{"q1":2}}"#,
            "\n\n",
            r#"{"study":"t","form":"f","respondent_id":"r4","submission_id":"s4","answers":{"q1":"no"}}"#,
            "\n",
        );
        let (tally, top) = run(&study, input.as_bytes(), None, &Limits::default()).expect("runs");
        assert_eq!(tally.lines, 4);
        assert_eq!(tally.errors.iter().map(|e| e.line).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(tally.errors[1].violations.len(), 2);
        assert_eq!(top.groups[0].interviews, 2);
    }
}
