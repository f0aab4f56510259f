//! Hard validation: a submission becomes a [`Record`] or a list of
//! [`Violation`]s, one per problem.
//!
//! Only what cannot be stored meaningfully is rejected here (see
//! `docs/submissions.md`); values that are merely implausible — out of range,
//! unknown option codes, broken rankings — pass as typed values and are
//! flagged later by [`crate::quality`]. Pure, and it never panics: every
//! input, however hostile, yields `Ok` or `Err`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use validator::Validate;

use crate::instrument::{Catalog, MissingKind, Opt, Study};

mod borrowed;
mod hard;
mod typed;

pub use borrowed::{AnswerRef, Answers, Attributes, Choices, DecodedAnswer, Ranks, SubmissionRef};

use typed::type_answers;
#[cfg(test)]
use typed::typed;

/// One interview as submitted (JSONL line or gRPC message). Validation
/// reads it borrowed ([`Submission::borrowed`]), where the length rules of
/// its fields are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    /// Study id.
    #[serde(default)]
    pub study: String,
    /// Form id.
    #[serde(default)]
    pub form: String,
    /// The front-end's respondent id; pseudonymised before it leaves ingest.
    #[serde(default)]
    pub respondent_id: String,
    /// Unique per submission attempt; the same id again is a retry.
    #[serde(default)]
    pub submission_id: String,
    /// RFC 3339 start time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// RFC 3339 completion time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// Interviewer id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interviewer: Option<String>,
    /// Values of attribute-sourced dimensions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// Item id -> answer.
    #[serde(default)]
    pub answers: BTreeMap<String, Answer>,
}

/// An answer as submitted. Which variants are acceptable depends on the item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Answer {
    /// `null`: blank.
    Blank,
    /// A whole number.
    Integer(i64),
    /// A number with decimals.
    Number(f64),
    /// A string: option code, yes/no, or free text.
    Text(String),
    /// A list of option codes.
    Choices(Vec<String>),
    /// `{"ranked": {code: rank}}`.
    Ranked(RankedAnswer),
    /// `{"missing": code}`.
    Missing(MissingAnswer),
    /// Anything else (booleans, nested lists...): always `wrong_kind`.
    Other(serde_json::Value),
}

/// A ranked multi-select answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankedAnswer {
    /// Option code -> rank (1 = most important).
    pub ranked: BTreeMap<String, i64>,
}

/// A missing-code answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MissingAnswer {
    /// One of the study's missing codes.
    pub missing: String,
}

/// Longest attribute name or value: attributes only select segment values,
/// which are short codes.
pub const MAX_ATTRIBUTE_CHARS: usize = 128;

/// Configured size limits on a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Most answers one submission may carry.
    #[serde(default = "default_max_answers")]
    pub max_answers: usize,
    /// Most characters in one text answer, option code or attribute value.
    #[serde(default = "default_max_text_chars")]
    pub max_text_chars: usize,
    /// Most entries in one multi-select answer.
    #[serde(default = "default_max_choices")]
    pub max_choices: usize,
    /// Most attributes.
    #[serde(default = "default_max_attributes")]
    pub max_attributes: usize,
}

fn default_max_answers() -> usize {
    500
}
fn default_max_text_chars() -> usize {
    4000
}
fn default_max_choices() -> usize {
    64
}
fn default_max_attributes() -> usize {
    32
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_answers: default_max_answers(),
            max_text_chars: default_max_text_chars(),
            max_choices: default_max_choices(),
            max_attributes: default_max_attributes(),
        }
    }
}

/// Why a field was rejected. The names are stable: they appear in gRPC
/// field violations, JSON and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// A required field is empty.
    Required,
    /// A string or text is longer than allowed.
    TooLong,
    /// More answers, choices or attributes than allowed.
    TooMany,
    /// The study is not loaded.
    UnknownStudy,
    /// The form is not part of the study.
    UnknownForm,
    /// An answer to an item the form lacks.
    UnknownItem,
    /// A value of the wrong kind for the item.
    WrongKind,
    /// A missing code the study does not declare.
    UnknownMissingCode,
    /// A timestamp that is not RFC 3339.
    BadTimestamp,
    /// `completed_at` is before `started_at`.
    CompletedBeforeStarted,
    /// A disposition that is no AAPOR code fieldwatch knows.
    UnknownDisposition,
    /// An answer that breaks its item's hard constraint (`constraint_hard`).
    Constraint,
    /// A submission id another respondent used first, study-wide.
    SubmissionIdTaken,
}

impl Rule {
    /// Every rule, for pre-registering metric label values.
    pub const ALL: [Rule; 13] = [
        Rule::Required,
        Rule::TooLong,
        Rule::TooMany,
        Rule::UnknownStudy,
        Rule::UnknownForm,
        Rule::UnknownItem,
        Rule::WrongKind,
        Rule::UnknownMissingCode,
        Rule::BadTimestamp,
        Rule::CompletedBeforeStarted,
        Rule::UnknownDisposition,
        Rule::Constraint,
        Rule::SubmissionIdTaken,
    ];

    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Required => "required",
            Rule::TooLong => "too_long",
            Rule::TooMany => "too_many",
            Rule::UnknownStudy => "unknown_study",
            Rule::UnknownForm => "unknown_form",
            Rule::UnknownItem => "unknown_item",
            Rule::WrongKind => "wrong_kind",
            Rule::UnknownMissingCode => "unknown_missing_code",
            Rule::BadTimestamp => "bad_timestamp",
            Rule::CompletedBeforeStarted => "completed_before_started",
            Rule::UnknownDisposition => "unknown_disposition",
            Rule::Constraint => "constraint",
            Rule::SubmissionIdTaken => "submission_id_taken",
        }
    }
}

/// One problem with a submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// Path of the field (`respondent_id`, `answers.q6`).
    pub field: String,
    /// The rule broken.
    pub rule: Rule,
    /// A sentence for people. Never echoes submitted strings.
    pub message: String,
}

impl Violation {
    /// The refusal of a submission id another respondent used first.
    pub fn submission_id_taken() -> Violation {
        Violation::new(
            "submission_id",
            Rule::SubmissionIdTaken,
            "this submission id was used first by another respondent: a resend keeps the respondent id, a new interview needs a new submission id",
        )
    }

    pub(crate) fn new(field: impl Into<String>, rule: Rule, message: impl Into<String>) -> Violation {
        Violation { field: field.into(), rule, message: message.into() }
    }
}

/// A validated answer, typed by its item's kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Not answered.
    Blank,
    /// Answered with a missing code.
    Missing(MissingKind),
    /// Scale point or count (range not yet checked).
    Int(i64),
    /// A number (range not yet checked).
    Num(f64),
    /// A code: yes/no/na or an option, resolved against the item (an
    /// unlisted code is kept as sent and flagged by the checks).
    Code(Opt),
    /// Free text; only its presence is kept.
    Text,
    /// Multi-select picks in submitted order (duplicates not yet checked).
    Choices(Vec<Opt>),
    /// Ranked picks as `(option, rank)` (ranks not yet checked).
    Ranked(Vec<(Opt, i64)>),
}

/// A submission that passed hard validation, resolved against its form.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Index of the form in the study.
    pub form: usize,
    /// Respondent id as submitted (ingest replaces it by its pseudonym
    /// before publishing; the core only compares it).
    pub respondent: String,
    /// Submission id.
    pub submission_id: String,
    /// Interviewer id, if given.
    pub interviewer: Option<String>,
    /// Value index per study dimension (see [`crate::instrument::Dim`]).
    pub segments: Vec<usize>,
    /// One value per item of the form, in form order.
    pub answers: Vec<Value>,
    /// Interview duration in seconds when both timestamps are given.
    pub duration_secs: Option<i64>,
    /// When the interview ended (`completed_at`, else `started_at`), in
    /// milliseconds since the Unix epoch: the time of its case's complete.
    pub ended_at: Option<i64>,
}

/// Validates a submission against the catalog.
pub fn validate(catalog: &Catalog, sub: &Submission, limits: &Limits) -> Result<Record, Vec<Violation>> {
    match catalog.get(&sub.study) {
        Some(study) => validate_in(study, sub, limits),
        None => {
            let mut v = structural(&sub.borrowed());
            if !sub.study.is_empty() {
                v.push(Violation::new("study", Rule::UnknownStudy, "no such study is loaded"));
            }
            Err(v)
        }
    }
}

/// The `validator`-derived rules on a submission's own fields (an
/// interview's, or a disposition's).
pub(crate) fn structural(sub: &impl Validate) -> Vec<Violation> {
    let mut out = Vec::new();
    if let Err(errors) = sub.validate() {
        let mut fields: Vec<_> = errors.field_errors().into_iter().collect();
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        for (field, errs) in fields {
            for e in errs.iter() {
                // `length(min = 1, max = N)`: an empty value is missing, a long one too long.
                let empty = e.params.get("value").and_then(|v| v.as_str()).is_some_and(str::is_empty);
                let rule = if empty { Rule::Required } else { Rule::TooLong };
                let message = match rule {
                    Rule::Required if field.as_ref() == "study" || field.as_ref() == "form" => {
                        format!("{field} must be 1 to 64 characters")
                    }
                    Rule::Required => format!("{field} is required"),
                    _ => format!("{field} is too long"),
                };
                out.push(Violation::new(field.to_string(), rule, message));
            }
        }
    }
    out
}

/// Validates a submission against a known study.
pub fn validate_in(study: &Study, sub: &Submission, limits: &Limits) -> Result<Record, Vec<Violation>> {
    validate_ref_in(study, &sub.borrowed(), limits)
}

/// Validates a borrowed submission against a known study ([`validate_in`]).
pub fn validate_ref_in(
    study: &Study,
    sub: &SubmissionRef<'_>,
    limits: &Limits,
) -> Result<Record, Vec<Violation>> {
    let mut v = structural(sub);

    let (started, completed) = times(sub, &mut v);
    let duration_secs = match (started, completed) {
        (Some(s), Some(c)) => Some((c - s).num_seconds()),
        _ => None,
    };
    let ended = completed.or(started);
    check_attributes(&sub.attributes, limits, &mut v);
    if sub.answers.len() > limits.max_answers {
        v.push(Violation::new(
            "answers",
            Rule::TooMany,
            format!("at most {} answers are allowed", limits.max_answers),
        ));
        return Err(v);
    }

    let Some(fi) = study.form(sub.form) else {
        if !sub.form.is_empty() {
            v.push(Violation::new("form", Rule::UnknownForm, "the study has no such form"));
        }
        return Err(v);
    };
    let form = &study.forms[fi];

    let mut answers = vec![Value::Blank; form.items.len()];
    type_answers(study, form, &sub.answers, limits, &mut answers, &mut v);

    if !v.is_empty() {
        return Err(v);
    }
    let ended_at = ended.map(|t| t.timestamp_millis());
    let broken = hard::check(study, form, &answers, ended_at);
    if !broken.is_empty() {
        return Err(broken);
    }
    let segments = segments_of(study, Some(form), &sub.attributes, sub.interviewer);
    Ok(Record {
        form: fi,
        respondent: sub.respondent_id.to_owned(),
        submission_id: sub.submission_id.to_owned(),
        interviewer: sub.interviewer.map(str::to_owned),
        segments,
        answers,
        duration_secs,
        ended_at,
    })
}

/// The value index per study dimension of an interview or a case: fixed by
/// the form (unknown without one), from the attributes, or the interviewer.
pub fn segments_of(
    study: &Study,
    form: Option<&crate::instrument::Form>,
    attributes: &Attributes<'_>,
    interviewer: Option<&str>,
) -> Vec<usize> {
    study
        .dims
        .iter()
        .enumerate()
        .map(|(di, d)| match d.source {
            crate::instrument::DimensionSource::Form => form
                .and_then(|f| f.fixed_segments.iter().find(|(x, _)| *x == di))
                .map(|(_, val)| *val)
                .unwrap_or(d.unknown()),
            crate::instrument::DimensionSource::Attribute => d.value_of(attributes.get(&d.name)),
            crate::instrument::DimensionSource::Interviewer => d.value_of(interviewer),
        })
        .collect()
}

/// The limits on `attributes`: how many, and how long each name and value.
pub fn check_attributes(attributes: &Attributes<'_>, limits: &Limits, v: &mut Vec<Violation>) {
    if attributes.len() > limits.max_attributes {
        v.push(Violation::new(
            "attributes",
            Rule::TooMany,
            format!("at most {} attributes are allowed", limits.max_attributes),
        ));
    }
    for (k, val) in attributes.iter() {
        if k.chars().count() > MAX_ATTRIBUTE_CHARS || val.chars().count() > MAX_ATTRIBUTE_CHARS {
            v.push(Violation::new("attributes", Rule::TooLong, "an attribute name or value is too long"));
            break;
        }
    }
}

type Time = chrono::DateTime<chrono::FixedOffset>;

/// Largest magnitude of a `number` answer: 2^53, the range in which f64
/// holds every integer. Sums of up to 2^64 such answers stay finite, so no
/// answer can turn an item's mean into infinity (`null`) for good.
pub const MAX_NUMBER: f64 = 9_007_199_254_740_992.0;

/// Earliest year a timestamp may have (in UTC).
pub const MIN_YEAR: i32 = 1900;
/// Latest year a timestamp may have (in UTC).
pub const MAX_YEAR: i32 = 2199;

/// An RFC 3339 timestamp whose UTC year lies in [`MIN_YEAR`]..=[`MAX_YEAR`];
/// `None` otherwise. Placeholders such as `0000-01-01` or `9999-12-31` are
/// no interview's time and would stretch durations and fieldwork days.
pub fn parse_timestamp(s: &str) -> Option<Time> {
    use chrono::Datelike;
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    (MIN_YEAR..=MAX_YEAR).contains(&t.naive_utc().year()).then_some(t)
}

fn times(sub: &SubmissionRef<'_>, v: &mut Vec<Violation>) -> (Option<Time>, Option<Time>) {
    let mut parse = |field: &str, s: Option<&str>| -> Option<Time> {
        let s = s?;
        match parse_timestamp(s) {
            Some(t) => Some(t),
            None => {
                v.push(Violation::new(
                    field,
                    Rule::BadTimestamp,
                    format!("{field} must be an RFC 3339 timestamp in the years {MIN_YEAR} to {MAX_YEAR}"),
                ));
                None
            }
        }
    };
    let started = parse("started_at", sub.started_at);
    let completed = parse("completed_at", sub.completed_at);
    if let (Some(s), Some(c)) = (started, completed)
        && c < s
    {
        v.push(Violation::new(
            "completed_at",
            Rule::CompletedBeforeStarted,
            "completed_at is before started_at",
        ));
    }
    (started, completed)
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
