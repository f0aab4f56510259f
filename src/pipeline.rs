//! The one path from a decoded record to applied state: validate → check →
//! apply → flags.
//!
//! The Kafka aggregator ([`crate::aggregate`]) and the offline `report`
//! command ([`crate::report`]) both call [`apply`] for every interview and
//! every case disposition, so live and offline numbers come from the same
//! code. The callers keep only what differs between them: decoding (a
//! protobuf envelope or a JSONL line), finding the study's state, locking,
//! and where a flagged interview goes (the quality topic, or the report's
//! JSON). Pure: no I/O, no clock.

use crate::fieldwork::Line;
use crate::fieldwork::review::{FlaggedCheck, FlaggedInterview};
use crate::fieldwork::validate_disposition_in;
use crate::instrument::Study;
use crate::quality::{Check, Checked, check};
use crate::results::{Applied, StudyState};
use crate::validate::{Limits, Record, Violation, validate_in};

/// Where a record came from; named in its flag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    /// Responses partition (0 offline).
    pub partition: i32,
    /// Offset in that partition (offline: the 1-based line number).
    pub offset: i64,
    /// When ingest received the record, RFC 3339 (none offline).
    pub received_at: Option<String>,
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
    /// Validation or the checks panicked on the record: nothing changed.
    /// Counted and skipped, so one poison record cannot stop a partition
    /// (and every restart replaying it).
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
/// The caller has found the study the record names.
pub fn apply(study: &Study, state: &mut StudyState, line: &Line, limits: &Limits, source: Source) -> Step {
    let sub = match line {
        Line::Disposition(d) => {
            let fate = match validate_disposition_in(study, d, limits) {
                Ok(rec) => {
                    state.apply_disposition(study, &rec);
                    Fate::Disposition
                }
                Err(violations) => Fate::Invalid(violations),
            };
            return Step { fate, flagged: None };
        }
        Line::Interview(sub) => sub,
    };
    // Validation and the checks are bounded by construction; should they
    // panic all the same on some record, the record is unprocessable and
    // skipped instead of taking the caller down. Nothing is mutated before
    // `state.apply`, so no state is left half-applied.
    let prepared = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        validate_in(study, sub, limits).map(|rec| {
            let checked = check(study, &rec);
            (rec, checked)
        })
    }));
    let (rec, checked) = match prepared {
        Ok(Ok(done)) => done,
        Ok(Err(violations)) => return Step { fate: Fate::Invalid(violations), flagged: None },
        Err(_) => return Step { fate: Fate::Unprocessable, flagged: None },
    };
    // The record's place in the stream orders copies of the same answers
    // across partitions (see `results::Origin`).
    let origin = crate::results::Origin {
        received_at_ms: source
            .received_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or(0, |t| t.timestamp_millis()),
        partition: source.partition,
        offset: source.offset,
    };
    let applied = state.apply_at(study, &rec, &checked, origin);
    let fate = match applied {
        Applied::Counted { .. } => Fate::Counted,
        Applied::Retry => Fate::Retry,
        Applied::DuplicateRespondent => Fate::DuplicateRespondent,
    };
    let checks = raised(study, &rec, &checked, applied);
    if checks.is_empty() {
        return Step { fate, flagged: None };
    }
    let flagged = FlaggedInterview {
        study: study.id().to_string(),
        form: study.forms.get(rec.form).map(|f| f.id.clone()).unwrap_or_default(),
        submission_id: rec.submission_id.clone(),
        respondent_key: rec.respondent.clone(),
        interviewer: state.fieldwork.interviewer_label_of(study, rec.interviewer.as_deref()),
        received_at: source.received_at,
        checks,
        source_partition: source.partition,
        source_offset: source.offset,
    };
    Step { fate, flagged: Some(flagged) }
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
        Source { partition: 2, offset, received_at: None }
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
