//! A case outcome as submitted: its wire shape, the JSONL line that
//! carries it beside interviews, and its validation into a
//! [`DispositionRecord`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use validator::Validate;

use super::Disposition;
use crate::instrument::{Catalog, Study};
use crate::validate::{self, Limits, Rule, Submission, Violation};

/// A case outcome as submitted (a JSONL line with `"kind": "disposition"`,
/// or the gRPC `Disposition` message).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct DispositionSubmission {
    /// Study id.
    #[serde(default)]
    #[validate(length(min = 1, max = 64))]
    pub study: String,
    /// The front-end's case id: the respondent id of the case's interview.
    /// Pseudonymised with the respondent HMAC before it leaves ingest.
    #[serde(default)]
    #[validate(length(min = 1, max = 256))]
    pub case_id: String,
    /// The outcome (see [`Disposition::parse`]).
    #[serde(default)]
    #[validate(length(min = 1, max = 32))]
    pub disposition: String,
    /// When the outcome happened, RFC 3339.
    #[serde(default)]
    #[validate(length(min = 1, max = 64))]
    pub time: String,
    /// Interviewer id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[validate(length(min = 1, max = 128))]
    pub interviewer: Option<String>,
    /// The form the case was to be interviewed with; gives its form-sourced segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[validate(length(min = 1, max = 64))]
    pub form: Option<String>,
    /// Values of attribute-sourced dimensions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

/// A disposition that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct DispositionRecord {
    /// Case key (the pseudonym in the live path, the raw id offline).
    pub case: String,
    /// The outcome.
    pub disposition: Disposition,
    /// Milliseconds since the Unix epoch.
    pub time: i64,
    /// Interviewer id, if given.
    pub interviewer: Option<String>,
    /// Value index per study dimension.
    pub segments: Vec<usize>,
}

/// One line of a JSONL file for `submit` and `report`.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// An interview (no `kind`, or `"kind": "interview"`).
    Interview(Box<Submission>),
    /// A case outcome (`"kind": "disposition"`).
    Disposition(DispositionSubmission),
}

impl Line {
    /// The study id the line names.
    pub fn study(&self) -> &str {
        match self {
            Line::Interview(s) => &s.study,
            Line::Disposition(d) => &d.study,
        }
    }
}

/// Parses a JSONL line: an interview, or a disposition marked by
/// `"kind": "disposition"`.
pub fn parse_line(line: &str) -> Result<Line, serde_json::Error> {
    // Lines without a `kind` key (every interview file written before
    // dispositions existed) take the direct path.
    if !line.contains("\"kind\"") {
        return serde_json::from_str(line).map(|s| Line::Interview(Box::new(s)));
    }
    let mut map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line)?;
    let kind = map.remove("kind");
    let value = serde_json::Value::Object(map);
    match kind.as_ref().and_then(|k| k.as_str()) {
        None if kind.is_none() => serde_json::from_value(value).map(|s| Line::Interview(Box::new(s))),
        Some("interview") => serde_json::from_value(value).map(|s| Line::Interview(Box::new(s))),
        Some("disposition") => serde_json::from_value(value).map(Line::Disposition),
        _ => Err(serde::de::Error::custom("`kind` must be \"interview\" or \"disposition\"")),
    }
}

/// Validates a disposition against the catalog.
pub fn validate_disposition(
    catalog: &Catalog,
    d: &DispositionSubmission,
    limits: &Limits,
) -> Result<DispositionRecord, Vec<Violation>> {
    match catalog.get(&d.study) {
        Some(study) => validate_disposition_in(study, d, limits),
        None => {
            let mut v = validate::structural(d);
            if !d.study.is_empty() {
                v.push(Violation::new("study", Rule::UnknownStudy, "no such study is loaded"));
            }
            check_outcome(d, &mut v);
            Err(v)
        }
    }
}

/// The disposition code and time: one violation each when wrong.
fn check_outcome(d: &DispositionSubmission, v: &mut Vec<Violation>) -> Option<(Disposition, i64)> {
    let disposition = Disposition::parse(&d.disposition);
    if disposition.is_none() && !d.disposition.is_empty() && d.disposition.len() <= 32 {
        v.push(Violation::new(
            "disposition",
            Rule::UnknownDisposition,
            "disposition must be an AAPOR category (complete, partial, refusal, non_contact, other, \
             unknown_household, unknown_other, not_eligible), its abbreviation or a numeric AAPOR code",
        ));
    }
    let time = crate::validate::parse_timestamp(&d.time).map(|t| t.timestamp_millis());
    if time.is_none() && !d.time.is_empty() && d.time.len() <= 64 {
        v.push(Violation::new("time", Rule::BadTimestamp, "time must be an RFC 3339 timestamp"));
    }
    disposition.zip(time)
}

/// Validates a disposition against a known study.
pub fn validate_disposition_in(
    study: &Study,
    d: &DispositionSubmission,
    limits: &Limits,
) -> Result<DispositionRecord, Vec<Violation>> {
    let mut v = validate::structural(d);
    let outcome = check_outcome(d, &mut v);
    validate::check_attributes(&validate::Attributes::Map(&d.attributes), limits, &mut v);
    let form = match d.form.as_deref() {
        Some(f) if !f.is_empty() => match study.form(f) {
            Some(fi) => Some(&study.forms[fi]),
            None => {
                v.push(Violation::new("form", Rule::UnknownForm, "the study has no such form"));
                None
            }
        },
        _ => None,
    };
    match outcome {
        Some((disposition, time)) if v.is_empty() => Ok(DispositionRecord {
            case: d.case_id.clone(),
            disposition,
            time,
            interviewer: d.interviewer.clone(),
            segments: validate::segments_of(
                study,
                form,
                &validate::Attributes::Map(&d.attributes),
                d.interviewer.as_deref(),
            ),
        }),
        _ => Err(v),
    }
}
