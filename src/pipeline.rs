//! The one path from a decoded record to applied state: validate → check →
//! apply → flags.
//!
//! The Kafka aggregator ([`crate::aggregate`]) and the offline `report`
//! command ([`crate::report`]) take every interview and every case
//! disposition through this module (`report` calls [`apply`], the
//! aggregator its two halves, [`prepare`] then [`apply_prepared`], which
//! are all [`apply`] does), so live and offline numbers come from the same
//! code. The callers keep only what differs between them: decoding (a
//! protobuf envelope or a JSONL line), finding the study's state, locking,
//! and where a flagged interview goes (the quality topic, or the report's
//! JSON). [`prepare`] (validate, check) reads no state, so the aggregator
//! runs it outside its lock, on several threads. Pure: no I/O, no clock.

use crate::fieldwork::Line;
use crate::fieldwork::review::{FlaggedCheck, FlaggedInterview};
use crate::fieldwork::{DispositionRecord, DispositionSubmission, validate_disposition_in};
use crate::instrument::Study;
use crate::quality::{Check, Checked, check};
use crate::results::{Applied, StudyState};
use crate::validate::{Limits, Record, SubmissionRef, Violation, validate_ref_in};

/// Form index of the flag count of an unprocessable record whose form the
/// study does not have (shown as form `unknown`, as in the metrics).
pub const UNKNOWN_FORM: usize = u32::MAX as usize;

/// Longest submission id a flag of an unprocessable record repeats: the
/// record was not validated, so its id may be any length.
const MAX_FLAGGED_ID_BYTES: usize = 128;

/// Validates and checks an interview (the part of [`apply`] that may not
/// mutate the state).
type Prepare = fn(&Study, &SubmissionRef<'_>, &Limits) -> Result<(Record, Checked), Vec<Violation>>;

fn validate_and_check(
    study: &Study,
    sub: &SubmissionRef<'_>,
    limits: &Limits,
) -> Result<(Record, Checked), Vec<Violation>> {
    validate_ref_in(study, sub, limits).map(|rec| {
        let checked = check(study, &rec);
        (rec, checked)
    })
}

/// Where a record came from; named in its flag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    /// Responses partition (0 offline).
    pub partition: i32,
    /// Offset in that partition (offline: the 1-based line number).
    pub offset: i64,
    /// When ingest received the record, in milliseconds since the Unix
    /// epoch (none offline). Its flag shows it as RFC 3339
    /// ([`received_at_text`]).
    pub received_at_ms: Option<i64>,
}

/// A time in milliseconds since the Unix epoch as a flag shows it: RFC 3339
/// in UTC with milliseconds; None out of the calendar's range.
pub fn received_at_text(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// What one record did to the state.
#[derive(Debug, Clone, PartialEq)]
pub enum Fate {
    /// An interview counted into results.
    Counted,
    /// An interview whose submission id was seen before: counted once.
    Retry,
    /// An interview of a respondent seen under another submission id:
    /// flagged, not counted.
    DuplicateRespondent,
    /// A case disposition applied to the fieldwork state (superseded ones
    /// included).
    Disposition,
    /// Failed validation against the study's instrument: nothing changed.
    Invalid(Vec<Violation>),
    /// Validation or the checks panicked on the record: nothing changed
    /// but the `unprocessable` flag count. Counted, flagged and skipped, so
    /// one poison record cannot stop a partition (and every restart
    /// replaying it).
    Unprocessable,
}

/// The result of [`apply`].
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// What the record did.
    pub fate: Fate,
    /// The interview with the checks it raised, when it raised any.
    pub flagged: Option<FlaggedInterview>,
}

/// Applies one decoded record of `study` to the study's state: validates
/// it, runs the quality checks, applies it and lists the checks it raised.
/// The caller has found the study the record names. The same as
/// [`prepare`] then [`apply_prepared`].
pub fn apply(study: &Study, state: &mut StudyState, line: &Line, limits: &Limits, source: Source) -> Step {
    apply_prepared(study, state, &prepare(study, line, limits), source)
}

/// A record validated and checked against its study: the part of
/// [`apply`] that reads no state, so a caller may run it before taking the
/// state's lock, and on other threads (the aggregator prepares a batch of
/// records on two). [`apply_prepared`] finishes it.
#[derive(Debug)]
pub struct Prepared(Prep);

#[derive(Debug)]
enum Prep {
    Disposition(Result<DispositionRecord, Vec<Violation>>),
    Interview(Result<(Record, Checked), Vec<Violation>>),
    /// Validation or the checks panicked on the interview: what its flag
    /// names, taken without trusting the record (see [`unprocessable`]).
    Unprocessable {
        form: Option<usize>,
        submission_id: String,
        respondent_key: String,
        interviewer: Option<String>,
    },
}

/// Validates and checks one decoded record of `study` (see [`Prepared`]).
pub fn prepare(study: &Study, line: &Line, limits: &Limits) -> Prepared {
    prepare_with(study, line, limits, validate_and_check)
}

/// Validates a case disposition of `study` ([`prepare`] of one).
pub fn prepare_disposition(study: &Study, disposition: &DispositionSubmission, limits: &Limits) -> Prepared {
    Prepared(Prep::Disposition(validate_disposition_in(study, disposition, limits)))
}

/// Validates and checks an interview of `study`, borrowed ([`prepare`] of
/// one; the aggregator's, from a record's bytes).
pub fn prepare_interview(study: &Study, sub: &SubmissionRef<'_>, limits: &Limits) -> Prepared {
    prepare_interview_with(study, sub, limits, validate_and_check)
}

fn prepare_with(study: &Study, line: &Line, limits: &Limits, prepare: Prepare) -> Prepared {
    match line {
        Line::Disposition(d) => prepare_disposition(study, d, limits),
        Line::Interview(sub) => prepare_interview_with(study, &sub.borrowed(), limits, prepare),
    }
}

fn prepare_interview_with(
    study: &Study,
    sub: &SubmissionRef<'_>,
    limits: &Limits,
    prepare: Prepare,
) -> Prepared {
    // Validation and the checks are bounded by construction; should they
    // panic all the same on some record, the record is unprocessable and
    // skipped, and flagged, instead of taking the caller down. Nothing is
    // mutated before `state.apply`, so no state is left half-applied.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| prepare(study, sub, limits))) {
        Ok(done) => Prepared(Prep::Interview(done)),
        Err(_) => Prepared(Prep::Unprocessable {
            form: study.form(sub.form),
            submission_id: cut(sub.submission_id, MAX_FLAGGED_ID_BYTES),
            respondent_key: cut(sub.respondent_id, MAX_FLAGGED_ID_BYTES),
            interviewer: sub.interviewer.map(str::to_owned),
        }),
    }
}

/// Applies a record [`prepare`]d for `study` to the study's state and lists
/// the checks it raised. The record is borrowed, so that the thread that
/// prepared it can free it (the aggregator's, `aggregate::batch`).
pub fn apply_prepared(study: &Study, state: &mut StudyState, prepared: &Prepared, source: Source) -> Step {
    let (rec, checked) = match &prepared.0 {
        Prep::Disposition(validated) => {
            let fate = match validated {
                Ok(rec) => {
                    state.apply_disposition(study, rec);
                    Fate::Disposition
                }
                Err(violations) => Fate::Invalid(violations.clone()),
            };
            return Step { fate, flagged: None };
        }
        Prep::Interview(Ok(done)) => done,
        Prep::Interview(Err(violations)) => {
            return Step { fate: Fate::Invalid(violations.clone()), flagged: None };
        }
        Prep::Unprocessable { form, submission_id, respondent_key, interviewer } => {
            let ids = (*form, submission_id.clone(), respondent_key.clone(), interviewer.clone());
            let flagged = unprocessable(study, state, ids, source);
            return Step { fate: Fate::Unprocessable, flagged: Some(flagged) };
        }
    };
    // The record's place in the stream orders copies of the same answers
    // across partitions (see `results::Origin`).
    let origin = crate::results::Origin {
        received_at_ms: source.received_at_ms.unwrap_or(0),
        partition: source.partition,
        offset: source.offset,
    };
    let applied = state.apply_at(study, rec, checked, origin);
    let fate = match applied {
        Applied::Counted { .. } => Fate::Counted,
        Applied::Retry => Fate::Retry,
        Applied::DuplicateRespondent => Fate::DuplicateRespondent,
    };
    let checks = raised(study, rec, checked, applied);
    if checks.is_empty() {
        return Step { fate, flagged: None };
    }
    let flagged = FlaggedInterview {
        study: study.id().to_string(),
        form: study.forms.get(rec.form).map(|f| f.id.clone()).unwrap_or_default(),
        submission_id: rec.submission_id.clone(),
        respondent_key: rec.respondent.clone(),
        interviewer: state.fieldwork.interviewer_label_of(study, rec.interviewer.as_deref()),
        received_at: source.received_at_ms.and_then(received_at_text),
        checks,
        source_partition: source.partition,
        source_offset: source.offset,
    };
    Step { fate, flagged: Some(flagged) }
}

/// Counts an unprocessable interview under the `unprocessable` check and
/// makes its flag, with what identifies the record without trusting it:
/// the submission id (cut to [`MAX_FLAGGED_ID_BYTES`]), the respondent key
/// (ingest's pseudonym), the form only when the study has it, the
/// interviewer's bounded label. No answer or other request text.
fn unprocessable(
    study: &Study,
    state: &mut StudyState,
    (form, submission_id, respondent_key, interviewer): (Option<usize>, String, String, Option<String>),
    source: Source,
) -> FlaggedInterview {
    *state.flags.entry((form.unwrap_or(UNKNOWN_FORM), Check::Unprocessable, None)).or_default() += 1;
    FlaggedInterview {
        study: study.id().to_string(),
        form: form.and_then(|f| study.forms.get(f)).map_or_else(|| "unknown".to_string(), |f| f.id.clone()),
        submission_id,
        respondent_key,
        interviewer: state.fieldwork.interviewer_label_of(study, interviewer.as_deref()),
        received_at: source.received_at_ms.and_then(received_at_text),
        checks: vec![FlaggedCheck { check: Check::Unprocessable, item: None, code: None, message: None }],
        source_partition: source.partition,
        source_offset: source.offset,
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The checks an applied interview raised: its item and interview checks
/// and, from the state's history, duplicates and speeding. A retry raises
/// none.
pub fn raised(study: &Study, rec: &Record, checked: &Checked, applied: Applied) -> Vec<FlaggedCheck> {
    let form = study.forms.get(rec.form);
    let mut out = Vec::new();
    let mut push = |check: Check, item: Option<usize>| {
        let it = item.and_then(|i| form.and_then(|f| f.items.get(i)));
        out.push(FlaggedCheck {
            check,
            item: it.map(|it| it.id.clone()),
            code: it.and_then(|it| study.codes.get(it.code)).map(|c| c.code.clone()),
            message: it
                .filter(|it| check == Check::ConstraintViolated && !it.constraint_message.is_empty())
                .map(|it| it.constraint_message.clone()),
        });
    };
    match applied {
        Applied::Retry => {}
        Applied::DuplicateRespondent => push(Check::DuplicateRespondent, None),
        Applied::Counted { possible_duplicate, speeder } => {
            for f in &checked.flags {
                push(f.check, f.item);
            }
            if possible_duplicate {
                push(Check::PossibleDuplicate, None);
            }
            if speeder {
                push(Check::Speeder, None);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fieldwork::parse_line;

    const STUDY: &str =
        "study: t\nforms:\n  - id: f\n    items:\n      - {id: q1, code: a, kind: yes_no, required: true}\n";

    fn line(s: &str) -> Line {
        parse_line(s).expect("a line")
    }

    fn source(offset: i64) -> Source {
        Source { partition: 2, offset, received_at_ms: None }
    }

    #[test]
    fn a_valid_interview_counts_and_a_second_one_of_the_same_respondent_is_flagged() {
        let study = Study::from_yaml(STUDY).expect("valid");
        let mut st = StudyState::new();
        let first =
            r#"{"study":"t","form":"f","respondent_id":"r1","submission_id":"s1","answers":{"q1":"yes"}}"#;
        let step = apply(&study, &mut st, &line(first), &Limits::default(), source(7));
        assert_eq!(step, Step { fate: Fate::Counted, flagged: None });

        let again =
            r#"{"study":"t","form":"f","respondent_id":"r1","submission_id":"s2","answers":{"q1":"no"}}"#;
        let step = apply(&study, &mut st, &line(again), &Limits::default(), source(8));
        assert_eq!(step.fate, Fate::DuplicateRespondent);
        let flagged = step.flagged.expect("flagged");
        assert_eq!((flagged.submission_id.as_str(), flagged.respondent_key.as_str()), ("s2", "r1"));
        assert_eq!((flagged.source_partition, flagged.source_offset), (2, 8));
        assert_eq!(flagged.checks.len(), 1);
        assert_eq!(flagged.checks[0].check, Check::DuplicateRespondent);
        assert_eq!(st.interviews(), 1);
    }

    #[test]
    fn a_retry_changes_nothing_but_the_retry_count_and_raises_no_flag() {
        let study = Study::from_yaml(STUDY).expect("valid");
        let mut st = StudyState::new();
        let l = line(
            r#"{"study":"t","form":"f","respondent_id":"r1","submission_id":"s1","answers":{"q1":"yes"}}"#,
        );
        apply(&study, &mut st, &l, &Limits::default(), source(0));
        let step = apply(&study, &mut st, &l, &Limits::default(), source(1));
        assert_eq!(step, Step { fate: Fate::Retry, flagged: None });
        assert_eq!((st.interviews(), st.retries), (1, 1));
    }

    #[test]
    fn an_invalid_interview_returns_its_violations_and_leaves_the_state_alone() {
        let study = Study::from_yaml(STUDY).expect("valid");
        let mut st = StudyState::new();
        let l =
            line(r#"{"study":"t","form":"f","respondent_id":"r1","submission_id":"s1","answers":{"q1":7}}"#);
        let step = apply(&study, &mut st, &l, &Limits::default(), source(0));
        let Fate::Invalid(v) = step.fate else { panic!("invalid: {step:?}") };
        assert!(!v.is_empty());
        assert_eq!(st, StudyState::new());
    }

    /// No record makes validation or the checks panic today (they are
    /// bounded by construction, and the poison instrument of issue 15 is
    /// refused when loaded), so the panic is put into the preparation.
    fn panics(
        _: &Study,
        _: &crate::validate::SubmissionRef<'_>,
        _: &Limits,
    ) -> Result<(Record, Checked), Vec<Violation>> {
        panic!("a poison record")
    }

    #[test]
    fn a_record_that_cannot_be_processed_is_counted_flagged_and_skipped() {
        let study = Study::from_yaml(STUDY).expect("valid");
        let mut st = StudyState::new();
        let poison = line(
            r#"{"study":"t","form":"f","respondent_id":"key-1","submission_id":"s9","interviewer":"int01","answers":{"q1":"a secret"}}"#,
        );
        // 2025-03-01T10:00:00Z
        let from = Source { partition: 4, offset: 11, received_at_ms: Some(1_740_823_200_000) };
        let step =
            apply_prepared(&study, &mut st, &prepare_with(&study, &poison, &Limits::default(), panics), from);
        assert_eq!(step.fate, Fate::Unprocessable);
        let f = step.flagged.expect("flagged");
        assert_eq!((f.study.as_str(), f.form.as_str(), f.submission_id.as_str()), ("t", "f", "s9"));
        assert_eq!((f.respondent_key.as_str(), f.interviewer.as_str()), ("key-1", "other"));
        assert_eq!((f.source_partition, f.source_offset), (4, 11));
        assert_eq!(
            f.checks,
            vec![FlaggedCheck { check: Check::Unprocessable, item: None, code: None, message: None }]
        );
        let json = serde_json::to_string(&f).expect("json");
        assert!(!json.contains("a secret"), "no answer in the flag: {json}");
        // Only the flag count changed: nothing was counted.
        assert_eq!(st.interviews(), 0);
        assert_eq!(st.flags.get(&(0, Check::Unprocessable, None)), Some(&1));
        let summary = crate::results::flags::by_check(&study, &st);
        assert!(summary.iter().any(|c| c.check == Check::Unprocessable && c.flags == 1));

        // The next record of the partition applies as usual.
        let next = line(
            r#"{"study":"t","form":"f","respondent_id":"key-2","submission_id":"s10","answers":{"q1":"yes"}}"#,
        );
        assert_eq!(apply(&study, &mut st, &next, &Limits::default(), source(12)).fate, Fate::Counted);
        assert_eq!(st.interviews(), 1);

        // An unknown form is not repeated, and a long id is cut.
        let long = "x".repeat(1000);
        let odd = line(&format!(
            r#"{{"study":"t","form":"no-such-form","respondent_id":"k","submission_id":"{long}","answers":{{}}}}"#
        ));
        let f = apply_prepared(
            &study,
            &mut st,
            &prepare_with(&study, &odd, &Limits::default(), panics),
            source(13),
        )
        .flagged
        .expect("flagged");
        assert_eq!((f.form.as_str(), f.submission_id.len()), ("unknown", MAX_FLAGGED_ID_BYTES));
        assert_eq!(st.flags.get(&(UNKNOWN_FORM, Check::Unprocessable, None)), Some(&1));
    }

    #[test]
    fn a_disposition_updates_the_fieldwork_state() {
        let study = Study::from_yaml(STUDY).expect("valid");
        let mut st = StudyState::new();
        let l = line(
            r#"{"kind":"disposition","study":"t","case_id":"c1","disposition":"refusal","time":"2024-05-01T10:00:00Z"}"#,
        );
        let step = apply(&study, &mut st, &l, &Limits::default(), source(0));
        assert_eq!(step, Step { fate: Fate::Disposition, flagged: None });
        assert_ne!(st.fieldwork, StudyState::new().fieldwork);
    }
}
