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

use crate::instrument::{Catalog, Item, KindDef, MissingKind, Opt, Study};

/// One interview as submitted (JSONL line or gRPC message).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    /// Study id.
    #[serde(default)]
    #[validate(length(min = 1, max = 64))]
    pub study: String,
    /// Form id.
    #[serde(default)]
    #[validate(length(min = 1, max = 64))]
    pub form: String,
    /// The front-end's respondent id; pseudonymised before it leaves ingest.
    #[serde(default)]
    #[validate(length(min = 1, max = 256))]
    pub respondent_id: String,
    /// Unique per submission attempt; the same id again is a retry.
    #[serde(default)]
    #[validate(length(min = 1, max = 128))]
    pub submission_id: String,
    /// RFC 3339 start time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// RFC 3339 completion time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// Interviewer id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[validate(length(min = 1, max = 128))]
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
}

impl Rule {
    /// Every rule, for pre-registering metric label values.
    pub const ALL: [Rule; 11] = [
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
            let mut v = structural(sub);
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

    let Some(fi) = study.form(&sub.form) else {
        if !sub.form.is_empty() {
            v.push(Violation::new("form", Rule::UnknownForm, "the study has no such form"));
        }
        return Err(v);
    };
    let form = &study.forms[fi];

    let mut answers = vec![Value::Blank; form.items.len()];
    for (item_id, answer) in &sub.answers {
        let Some(ii) = form.item(item_id) else {
            // The field path names the item only when it is short and plain,
            // so hostile keys are never echoed in full.
            let field = if item_id.len() <= 64 && item_id.bytes().all(|b| b.is_ascii_graphic()) {
                format!("answers.{item_id}")
            } else {
                "answers".to_string()
            };
            v.push(Violation::new(field, Rule::UnknownItem, "the form has no such item"));
            continue;
        };
        let item = &form.items[ii];
        match typed(study, item, answer, limits) {
            Ok(val) => answers[ii] = val,
            Err((rule, message)) => v.push(Violation::new(format!("answers.{}", item.id), rule, message)),
        }
    }

    if !v.is_empty() {
        return Err(v);
    }
    let segments = segments_of(study, Some(form), &sub.attributes, sub.interviewer.as_deref());
    Ok(Record {
        form: fi,
        respondent: sub.respondent_id.clone(),
        submission_id: sub.submission_id.clone(),
        interviewer: sub.interviewer.clone(),
        segments,
        answers,
        duration_secs,
        ended_at: ended.map(|t| t.timestamp_millis()),
    })
}

/// The value index per study dimension of an interview or a case: fixed by
/// the form (unknown without one), from the attributes, or the interviewer.
pub fn segments_of(
    study: &Study,
    form: Option<&crate::instrument::Form>,
    attributes: &BTreeMap<String, String>,
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
            crate::instrument::DimensionSource::Attribute => {
                d.value_of(attributes.get(&d.name).map(String::as_str))
            }
            crate::instrument::DimensionSource::Interviewer => d.value_of(interviewer),
        })
        .collect()
}

/// The limits on `attributes`: how many, and how long each name and value.
pub fn check_attributes(attributes: &BTreeMap<String, String>, limits: &Limits, v: &mut Vec<Violation>) {
    if attributes.len() > limits.max_attributes {
        v.push(Violation::new(
            "attributes",
            Rule::TooMany,
            format!("at most {} attributes are allowed", limits.max_attributes),
        ));
    }
    for (k, val) in attributes {
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

fn times(sub: &Submission, v: &mut Vec<Violation>) -> (Option<Time>, Option<Time>) {
    let mut parse = |field: &str, s: &Option<String>| -> Option<Time> {
        let s = s.as_deref()?;
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
    let started = parse("started_at", &sub.started_at);
    let completed = parse("completed_at", &sub.completed_at);
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

fn wrong(kind: &KindDef, expected: &str) -> (Rule, String) {
    (Rule::WrongKind, format!("a {} item takes {expected}", kind.name()))
}

fn check_len(s: &str, limits: &Limits) -> Result<(), (Rule, String)> {
    // A string has at most as many characters as bytes: count only long ones.
    if s.len() > limits.max_text_chars && s.chars().count() > limits.max_text_chars {
        Err((Rule::TooLong, format!("longer than {} characters", limits.max_text_chars)))
    } else {
        Ok(())
    }
}

fn typed(study: &Study, item: &Item, answer: &Answer, limits: &Limits) -> Result<Value, (Rule, String)> {
    let kind = &item.kind;
    let as_int = |a: &Answer| match a {
        Answer::Integer(i) => Some(*i),
        Answer::Number(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
        _ => None,
    };
    match answer {
        Answer::Blank => return Ok(Value::Blank),
        Answer::Missing(m) => {
            return match study.missing_kind(&m.missing) {
                Some(k) => Ok(Value::Missing(k)),
                None => Err((Rule::UnknownMissingCode, "not one of the study's missing codes".into())),
            };
        }
        _ => {}
    }
    match kind {
        KindDef::Scale { .. } | KindDef::Count { .. } => {
            as_int(answer).map(Value::Int).ok_or_else(|| wrong(kind, "a whole number"))
        }
        KindDef::Number { .. } => match answer {
            Answer::Integer(i) => Ok(Value::Num(*i as f64)),
            Answer::Number(f) if f.is_finite() && f.abs() <= MAX_NUMBER => Ok(Value::Num(*f)),
            _ => Err(wrong(kind, "a number within ±2^53")),
        },
        KindDef::YesNo | KindDef::YesNoNa | KindDef::SingleChoice { .. } => match answer {
            Answer::Text(s) => {
                check_len(s, limits)?;
                Ok(Value::Code(item.option(s)))
            }
            _ => Err(wrong(kind, "one option code as a string")),
        },
        KindDef::Text => match answer {
            Answer::Text(s) => {
                check_len(s, limits)?;
                Ok(Value::Text)
            }
            _ => Err(wrong(kind, "a string")),
        },
        KindDef::MultiSelect { ranked, .. } => {
            let too_many = || (Rule::TooMany, format!("at most {} choices are allowed", limits.max_choices));
            match answer {
                Answer::Choices(list) => {
                    if list.len() > limits.max_choices {
                        return Err(too_many());
                    }
                    for s in list {
                        check_len(s, limits)?;
                    }
                    let picks = list.iter().map(|s| item.option(s));
                    if *ranked {
                        Ok(Value::Ranked(picks.zip(1..).collect()))
                    } else {
                        Ok(Value::Choices(picks.collect()))
                    }
                }
                Answer::Ranked(r) if *ranked => {
                    if r.ranked.len() > limits.max_choices {
                        return Err(too_many());
                    }
                    for s in r.ranked.keys() {
                        check_len(s, limits)?;
                    }
                    Ok(Value::Ranked(r.ranked.iter().map(|(k, v)| (item.option(k), *v)).collect()))
                }
                _ if *ranked => Err(wrong(kind, "a list of option codes or {\"ranked\": {code: rank}}")),
                _ => Err(wrong(kind, "a list of option codes")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STUDY: &str = r#"
study: t
missing_codes: [{code: dk, kind: dont_know}]
dimensions:
  - {name: region, source: attribute, values: [{code: west}, {code: east}]}
forms:
  - id: f
    items:
      - {id: q1, code: s, kind: scale, min: 1, max: 5, labels: {1: a, 5: b}}
      - {id: q2, code: c, kind: single_choice, options: [{code: x}, {code: y}]}
      - {id: q3, code: m, kind: multi_select, options: [{code: x}, {code: y}]}
      - {id: q4, code: r, kind: multi_select, ranked: true, options: [{code: x}, {code: y}]}
      - {id: q5, code: t, kind: text}
      - {id: q6, code: n, kind: number}
"#;

    fn catalog() -> Catalog {
        let mut c = Catalog::default();
        c.insert(Study::from_yaml(STUDY).expect("valid"));
        c
    }

    fn sub(answers: &str) -> Submission {
        let mut s: Submission = serde_json::from_str(&format!(
            r#"{{"study":"t","form":"f","respondent_id":"r1","submission_id":"s1","answers":{answers}}}"#
        ))
        .expect("json");
        s.attributes.insert("region".into(), "west".into());
        s
    }

    fn rules(r: Result<Record, Vec<Violation>>) -> Vec<(String, Rule)> {
        r.err().unwrap_or_default().into_iter().map(|v| (v.field, v.rule)).collect()
    }

    #[test]
    fn accepts_every_kind_and_keeps_out_of_range_values_for_the_checks() {
        let r = validate(
            &catalog(),
            &sub(r#"{"q1": 9, "q2": "z", "q3": ["x","y"], "q4": {"ranked": {"x": 1, "y": 1}}, "q5": "hi", "q6": 2.5}"#),
            &Limits::default(),
        )
        .expect("valid");
        assert_eq!(r.answers[0], Value::Int(9));
        assert_eq!(r.answers[1], Value::Code(Opt::Unknown("z".into())));
        assert_eq!(r.answers[3], Value::Ranked(vec![(Opt::Known(0), 1), (Opt::Known(1), 1)]));
        assert_eq!(r.answers[4], Value::Text);
        assert_eq!(r.segments, vec![0]);
    }

    #[test]
    fn rejects_answer_to_item_missing_from_form() {
        assert_eq!(
            rules(validate(&catalog(), &sub(r#"{"q99": 1}"#), &Limits::default())),
            vec![("answers.q99".into(), Rule::UnknownItem)]
        );
    }

    #[test]
    fn rejects_values_of_the_wrong_kind_one_violation_each() {
        let got = rules(validate(
            &catalog(),
            &sub(r#"{"q1": "four", "q2": 3, "q3": "x", "q5": 5, "q6": true}"#),
            &Limits::default(),
        ));
        assert_eq!(got.len(), 5, "{got:?}");
        assert!(got.iter().all(|(_, r)| *r == Rule::WrongKind));
    }

    #[test]
    fn rejects_unknown_study_form_and_missing_ids() {
        let mut s = sub("{}");
        s.respondent_id.clear();
        s.submission_id.clear();
        s.form = "nope".into();
        let got = rules(validate(&catalog(), &s, &Limits::default()));
        assert!(got.contains(&("respondent_id".into(), Rule::Required)));
        assert!(got.contains(&("submission_id".into(), Rule::Required)));
        assert!(got.contains(&("form".into(), Rule::UnknownForm)));
        s.study = "nope".into();
        assert!(
            rules(validate(&catalog(), &s, &Limits::default()))
                .contains(&("study".into(), Rule::UnknownStudy))
        );
    }

    #[test]
    fn rejects_completion_before_start_and_bad_timestamps() {
        let mut s = sub("{}");
        s.started_at = Some("2024-01-01T10:00:00Z".into());
        s.completed_at = Some("2024-01-01T09:00:00Z".into());
        assert_eq!(
            rules(validate(&catalog(), &s, &Limits::default())),
            vec![("completed_at".into(), Rule::CompletedBeforeStarted)]
        );
        s.completed_at = Some("yesterday".into());
        assert_eq!(
            rules(validate(&catalog(), &s, &Limits::default())),
            vec![("completed_at".into(), Rule::BadTimestamp)]
        );
        s.completed_at = Some("2024-01-01T10:30:00+00:00".into());
        assert_eq!(validate(&catalog(), &s, &Limits::default()).map(|r| r.duration_secs), Ok(Some(1800)));
    }

    #[test]
    fn refuses_numbers_whose_sum_could_overflow() {
        let s = Study::from_yaml(
            "study: numbers\nforms:\n  - id: f\n    items:\n      - {id: n, code: amount, kind: number}\n",
        )
        .expect("a study with a number item");
        let item = &s.forms[0].items[0];
        assert!(matches!(item.kind, KindDef::Number { .. }));
        let limits = Limits::default();
        for bad in [1e308, -1e308, MAX_NUMBER * 2.0, f64::INFINITY] {
            assert!(typed(&s, item, &Answer::Number(bad), &limits).is_err(), "{bad}");
        }
        assert_eq!(typed(&s, item, &Answer::Number(MAX_NUMBER), &limits), Ok(Value::Num(MAX_NUMBER)));
        assert!(MAX_NUMBER * 2.0 * (u64::MAX as f64) < f64::MAX, "a sum of 2^64 answers stays finite");
    }

    #[test]
    fn refuses_placeholder_years_0000_and_9999_in_timestamps() {
        for (started, completed) in [
            ("0000-01-01T00:00:00Z", "2024-01-01T10:30:00Z"),
            ("2024-01-01T10:00:00Z", "9999-12-31T23:59:59Z"),
        ] {
            let mut s = sub("{}");
            s.started_at = Some(started.into());
            s.completed_at = Some(completed.into());
            assert_eq!(rules(validate(&catalog(), &s, &Limits::default())).len(), 1, "{started} {completed}");
        }
        assert!(parse_timestamp("2005-03-01T10:00:00Z").is_some());
        assert!(parse_timestamp("1899-12-31T23:59:59Z").is_none());
    }

    #[test]
    fn rejects_oversize_input() {
        let limits = Limits { max_answers: 2, max_text_chars: 3, ..Limits::default() };
        assert_eq!(
            rules(validate(&catalog(), &sub(r#"{"q1":1,"q2":"x","q5":"y"}"#), &limits)),
            vec![("answers".into(), Rule::TooMany)]
        );
        assert_eq!(
            rules(validate(&catalog(), &sub(r#"{"q5":"long"}"#), &limits)),
            vec![("answers.q5".into(), Rule::TooLong)]
        );
    }

    #[test]
    fn missing_codes_are_answers_and_unknown_ones_are_rejected() {
        let r = validate(&catalog(), &sub(r#"{"q1": {"missing": "dk"}}"#), &Limits::default()).expect("ok");
        assert_eq!(r.answers[0], Value::Missing(MissingKind::DontKnow));
        assert_eq!(
            rules(validate(&catalog(), &sub(r#"{"q1": {"missing": "zz"}}"#), &Limits::default())),
            vec![("answers.q1".into(), Rule::UnknownMissingCode)]
        );
    }

    #[test]
    fn undeclared_segment_values_become_other() {
        let mut s = sub("{}");
        s.attributes.insert("region".into(), "mars".into());
        let r = validate(&catalog(), &s, &Limits::default()).expect("ok");
        assert_eq!(r.segments, vec![2]);
        s.attributes.clear();
        assert_eq!(validate(&catalog(), &s, &Limits::default()).expect("ok").segments, vec![3]);
    }
}

#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;
    use crate::quality::check;

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
                .map(serde_json::Value::Number)
                .unwrap_or_default()),
            "[a-z]{0,3}|\\PC{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map("ranked|missing|[a-z]{1,3}", inner, 0..3)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn validation_and_checks_never_panic_on_any_input(
            form in prop::sample::select(vec!["investigator", "line_officer", "victim_witness", "federal", "", "zz"]),
            ids in prop::collection::vec("q[0-9]{1,2}[a-l]?|q13_male|q14_adult|x", 0..12),
            values in prop::collection::vec(arb_json(), 12),
            started in prop::option::of("2024-01-01T1[0-9]:00:00Z|garbage"),
            completed in prop::option::of("2024-01-01T1[0-9]:30:00Z|"),
            region in "[a-z]{0,10}",
        ) {
            let catalog = crate::instrument::Catalog::demo();
            let mut answers = serde_json::Map::new();
            for (id, v) in ids.iter().zip(values) {
                answers.insert(id.clone(), v);
            }
            let doc = serde_json::json!({
                "study": "le-trafficking", "form": form, "respondent_id": "r", "submission_id": "s",
                "started_at": started, "completed_at": completed,
                "attributes": {"region": region}, "answers": answers,
            });
            if let Ok(sub) = serde_json::from_value::<Submission>(doc)
                && let Ok(rec) = validate(&catalog, &sub, &Limits::default())
            {
                let study = catalog.get("le-trafficking").expect("demo");
                let checked = check(study, &rec);
                prop_assert_eq!(checked.status.len(), study.forms[rec.form].items.len());
                let mut state = crate::results::StudyState::new();
                state.apply(study, &rec, &checked);
                prop_assert!(crate::results::toplines(study, &state, Some("position")).is_ok());
            }
        }
    }
}
