//! Offline toplines from a JSONL file of submissions (`fieldwatch report`).
//!
//! Every line — an interview, or a case disposition (`"kind":
//! "disposition"`) for the fieldwork section — goes through the same
//! function as in the live aggregator ([`crate::pipeline::apply`]), so the
//! offline numbers are the reference the live ones are compared with. A line that fails is reported with its number and
//! reasons and does not stop the run.

pub mod print;

use std::collections::HashMap;
use std::io::BufRead;

use serde::Serialize;

use crate::fieldwork::review::{self, FlagFilter, FlagPage, FlaggedInterview};
use crate::fieldwork::{FieldworkReport, Line, parse_line};
use crate::ingest::{DEMO_HMAC_KEY, Pseudonymizer};
use crate::instrument::{Catalog, Study};
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
    /// Lines of another loaded study, skipped (with no catalog given: of
    /// any other study).
    pub other_study: usize,
    /// Lines naming a study no loaded instrument defines, skipped.
    pub unknown_study: usize,
    /// The flagged interviews, in line order, as `GET .../flags` lists them
    /// (respondent keys made with the report's [`Offline::respondent_keys`];
    /// `source_partition` 0 and `source_offset` the line number).
    pub flagged: Vec<FlaggedInterview>,
    /// Disposition lines applied.
    pub dispositions: usize,
    /// Rejected lines.
    pub errors: Vec<LineError>,
    /// Of those, valid interviews refused because another respondent used
    /// their submission id first (as ingest refuses them, `submission_id_taken`).
    pub submission_ids_taken: usize,
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

/// How `report` reads its input.
#[derive(Debug, Clone)]
pub struct Offline<'a> {
    /// Every loaded instrument, to tell lines of another loaded study from
    /// lines of no known study; none: every other study counts as other.
    pub catalog: Option<&'a Catalog>,
    /// Input limits, as in ingest.
    pub limits: Limits,
    /// Turns respondent ids into the respondent keys flags show, as ingest
    /// does before publishing: with the service's HMAC key the offline
    /// flags equal the live ones.
    pub respondent_keys: Pseudonymizer,
}

impl Default for Offline<'_> {
    /// No catalog, default limits, respondent keys under the public demo key.
    fn default() -> Self {
        Offline {
            catalog: None,
            limits: Limits::default(),
            respondent_keys: Pseudonymizer::new(DEMO_HMAC_KEY.as_bytes()),
        }
    }
}

/// Reads JSONL submissions for `study` and applies them (see [`tally_with`]).
pub fn tally(study: &Study, input: impl BufRead, limits: &Limits) -> Result<Tally, ReportError> {
    tally_with(study, input, &Offline { limits: *limits, ..Offline::default() })
}

/// Reads JSONL submissions for `study` and applies each line through
/// [`pipeline::apply`], the aggregator's own path.
pub fn tally_with(study: &Study, input: impl BufRead, opts: &Offline<'_>) -> Result<Tally, ReportError> {
    let limits = &opts.limits;
    let mut t = Tally::default();
    // Submission id -> the respondent who used it first.
    let mut claims: HashMap<String, String> = HashMap::new();
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
            match opts.catalog {
                Some(c) if c.get(parsed.study()).is_none() => t.unknown_study += 1,
                _ => t.other_study += 1,
            }
            continue;
        }
        // A submission id belongs to the first respondent who used it,
        // study-wide: ingest refuses a valid interview of another
        // respondent under it (`ingest::claims`), so it is refused here.
        if let Line::Interview(sub) = &parsed
            && claims.get(&sub.submission_id).is_some_and(|first| *first != sub.respondent_id)
        {
            let violations = match crate::validate::validate_in(study, sub, limits) {
                Err(violations) => violations,
                Ok(_) => {
                    t.submission_ids_taken += 1;
                    vec![Violation::submission_id_taken()]
                }
            };
            t.errors.push(LineError { line: n + 1, violations });
            continue;
        }
        let source =
            Source { partition: 0, offset: i64::try_from(n + 1).unwrap_or(i64::MAX), received_at_ms: None };
        let step = pipeline::apply(study, &mut t.state, &parsed, limits, source);
        if let (Line::Interview(sub), Fate::Counted | Fate::Retry | Fate::DuplicateRespondent) =
            (&parsed, &step.fate)
        {
            claims.entry(sub.submission_id.clone()).or_insert_with(|| sub.respondent_id.clone());
        }
        match step.fate {
            Fate::Invalid(violations) => t.errors.push(LineError { line: n + 1, violations }),
            Fate::Unprocessable => t.errors.push(LineError {
                line: n + 1,
                violations: vec![Violation {
                    field: String::new(),
                    rule: crate::validate::Rule::WrongKind,
                    message: "the record cannot be processed".into(),
                }],
            }),
            Fate::Disposition => t.dispositions += 1,
            Fate::Counted | Fate::Retry | Fate::DuplicateRespondent => {}
        }
        if let Some(mut f) = step.flagged {
            // The raw id never leaves the report: the key, as ingest makes it.
            f.respondent_key = opts.respondent_keys.key(&f.respondent_key);
            t.flagged.push(f);
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
    /// Of those, valid interviews whose submission id another respondent
    /// used first (ingest refuses them as `submission_id_taken`).
    pub submission_ids_taken: usize,
    /// Submission ids seen again (counted once).
    pub retries: u64,
    /// Respondents seen again under a new submission id.
    pub duplicate_respondents: u64,
    /// Interviews with the same answers as an earlier one.
    pub possible_duplicates: u64,
    /// Cases by disposition and the AAPOR rates.
    pub fieldwork: &'a FieldworkReport,
    /// Lines of another loaded study (skipped).
    pub other_study: usize,
    /// Lines naming a study no loaded instrument defines (skipped).
    pub unknown_study: usize,
    /// The flagged interviews, shaped as `GET /api/v1/studies/{s}/flags`
    /// answers, all on one page.
    pub flags: FlagPage,
    /// The instrument's quotas, achieved against target (none when it declares none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub quotas: Vec<crate::results::quotas::QuotaStatus>,
}

impl<'a> ReportJson<'a> {
    /// The document for a tallied input.
    pub fn new(
        study: &Study,
        toplines: &'a Toplines,
        tally: &'a Tally,
        fieldwork: &'a FieldworkReport,
    ) -> ReportJson<'a> {
        ReportJson {
            toplines,
            lines: tally.lines,
            rejected: &tally.errors,
            submission_ids_taken: tally.submission_ids_taken,
            retries: tally.state.retries,
            duplicate_respondents: tally.state.duplicate_respondents,
            possible_duplicates: tally.state.possible_duplicates(),
            fieldwork,
            other_study: tally.other_study,
            unknown_study: tally.unknown_study,
            flags: review::unpaged(tally.flagged.iter(), &FlagFilter::default()),
            quotas: crate::results::quotas::quotas(study, &tally.state),
        }
    }
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
    run_with(study, input, by, &Offline { limits: *limits, ..Offline::default() })
}

/// [`run`] with every option.
pub fn run_with(
    study: &Study,
    input: impl BufRead,
    by: Option<&str>,
    opts: &Offline<'_>,
) -> Result<(Tally, Toplines), ReportError> {
    let tally = tally_with(study, input, opts)?;
    let top = toplines(study, &tally.state, by)?;
    Ok((tally, top))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Rule;

    /// A study `id` with one form `f` of one yes/no item `q1`.
    fn study(id: &str) -> Study {
        Study::from_yaml(&format!(
            "study: {id}\nforms:\n  - id: f\n    items:\n      - {{id: q1, code: a, kind: yes_no}}\n"
        ))
        .expect("valid")
    }

    #[test]
    fn bad_lines_are_reported_with_their_number_and_do_not_stop_the_run() {
        let study = study("t");
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

    #[test]
    fn a_submission_id_belongs_to_its_first_respondent_as_at_ingest() {
        let study = study("t");
        let input = concat!(
            r#"{"study":"t","form":"f","respondent_id":"r1","submission_id":"s1","answers":{"q1":"yes"}}"#,
            "\n",
            // Another respondent under s1: refused, not counted.
            r#"{"study":"t","form":"f","respondent_id":"r2","submission_id":"s1","answers":{"q1":"no"}}"#,
            "\n",
            // The same respondent again under s1: a retry, counted once.
            r#"{"study":"t","form":"f","respondent_id":"r1","submission_id":"s1","answers":{"q1":"yes"}}"#,
            "\n",
            // Invalid as well: refused for what is wrong with it, as ingest validates first.
            r#"{"study":"t","form":"f","respondent_id":"r3","submission_id":"s1","answers":{"q1":5}}"#,
            "\n",
            // An invalid interview claims nothing: r4 may use s2 afterwards.
            r#"{"study":"t","form":"f","respondent_id":"r5","submission_id":"s2","answers":{"q1":5}}"#,
            "\n",
            r#"{"study":"t","form":"f","respondent_id":"r4","submission_id":"s2","answers":{"q1":"no"}}"#,
            "\n",
        );
        let (t, top) = run(&study, input.as_bytes(), None, &Limits::default()).expect("runs");
        assert_eq!((top.groups[0].interviews, t.state.retries, t.submission_ids_taken), (2, 1, 1));
        let rules: Vec<(usize, Rule)> = t.errors.iter().map(|e| (e.line, e.violations[0].rule)).collect();
        assert_eq!(rules, vec![(2, Rule::SubmissionIdTaken), (4, Rule::WrongKind), (5, Rule::WrongKind)]);
    }

    #[test]
    fn lines_of_no_loaded_study_are_counted_apart_from_lines_of_another_loaded_one() {
        let mut catalog = Catalog::default();
        catalog.insert(study("t"));
        catalog.insert(study("u"));
        let study = catalog.get("t").expect("t");
        let input = concat!(
            r#"{"study":"t","form":"f","respondent_id":"r1","submission_id":"s1","answers":{"q1":"yes"}}"#,
            "\n",
            r#"{"study":"u","form":"f","respondent_id":"r2","submission_id":"s2","answers":{"q1":"yes"}}"#,
            "\n",
            r#"{"study":"gone","form":"f","respondent_id":"r3","submission_id":"s3","answers":{"q1":"yes"}}"#,
            "\n",
            r#"{"kind":"disposition","study":"gone","case_id":"c1","disposition":"refusal","time":"2024-05-01T10:00:00Z"}"#,
            "\n",
        );
        let opts = Offline { catalog: Some(&catalog), ..Offline::default() };
        let t = tally_with(study, input.as_bytes(), &opts).expect("runs");
        assert_eq!((t.lines, t.other_study, t.unknown_study), (4, 1, 2));
        assert_eq!(t.state.interviews(), 1);
        let t = tally(study, input.as_bytes(), &Limits::default()).expect("runs");
        assert_eq!((t.other_study, t.unknown_study), (3, 0), "without a catalog every other study is other");
    }

    #[test]
    fn flags_carry_the_respondent_key_never_the_raw_id() {
        let study = study("t");
        let input = concat!(
            r#"{"study":"t","form":"f","respondent_id":"r1","submission_id":"s1","answers":{"q1":"yes"}}"#,
            "\n",
            r#"{"study":"t","form":"f","respondent_id":"r1","submission_id":"s2","answers":{"q1":"no"}}"#,
            "\n",
        );
        let keys = Pseudonymizer::new(b"a-test-key-of-16-bytes");
        let opts = Offline { respondent_keys: keys.clone(), ..Offline::default() };
        let t = tally_with(&study, input.as_bytes(), &opts).expect("runs");
        assert_eq!(t.flagged.len(), 1);
        let f = &t.flagged[0];
        assert_eq!((f.submission_id.as_str(), f.source_offset), ("s2", 2));
        assert_eq!(f.respondent_key, keys.key("r1"));
        assert_eq!(f.checks[0].check, crate::quality::Check::DuplicateRespondent);
    }
}
