//! Soft quality checks on a validated record.
//!
//! [`check`] classifies every item of the record — valid, excluded, or
//! missing of some kind — and raises typed [`Flag`]s: item nonresponse,
//! out-of-range values, unknown options, broken rankings, answers to hidden
//! items and straightlining. Nothing here rejects: a flagged interview still
//! counts, minus the values the flags exclude. The duplicate checks need the
//! history of the partition and live in [`crate::results`]. Pure.

use serde::{Deserialize, Serialize};

use crate::instrument::expr::{Env, days_of_millis};
use crate::instrument::{ExprValue, Form, Item, KindDef, MissingKind, Opt, Study};
use crate::validate::{Record, Value};

/// The quality checks. Names are stable metric label values.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// A required, relevant item was left blank.
    ItemNonresponse,
    /// A scale, count or number outside its bounds.
    OutOfRange,
    /// An option code the item does not list.
    UnknownOption,
    /// Ranks that repeat, leave gaps or do not start at 1.
    BrokenRanking,
    /// More picks than the item's `max_picks`.
    TooManyPicks,
    /// The same option picked twice in an unranked multi-select.
    DuplicatePick,
    /// An answer to an item whose relevance condition hides it.
    AnsweredWhenHidden,
    /// A run of identical answers over the form's scale items.
    Straightlining,
    /// The same respondent under a new submission id (first one counts).
    DuplicateRespondent,
    /// The same answers as another respondent.
    PossibleDuplicate,
    /// Much shorter than its form's median duration (see `docs/fieldwork.md`).
    Speeder,
    /// A substantive answer that does not meet its item's `constraint`.
    ConstraintViolated,
    /// The aggregator could not process the record (validation or the
    /// checks failed on it): counted here, flagged and skipped, never in
    /// the results (see `docs/security.md`).
    Unprocessable,
}

impl Check {
    /// Every check, for pre-registering metric label values.
    pub const ALL: [Check; 13] = [
        Check::ItemNonresponse,
        Check::OutOfRange,
        Check::UnknownOption,
        Check::BrokenRanking,
        Check::TooManyPicks,
        Check::DuplicatePick,
        Check::AnsweredWhenHidden,
        Check::Straightlining,
        Check::DuplicateRespondent,
        Check::PossibleDuplicate,
        Check::Speeder,
        Check::ConstraintViolated,
        Check::Unprocessable,
    ];

    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::ItemNonresponse => "item_nonresponse",
            Check::OutOfRange => "out_of_range",
            Check::UnknownOption => "unknown_option",
            Check::BrokenRanking => "broken_ranking",
            Check::TooManyPicks => "too_many_picks",
            Check::DuplicatePick => "duplicate_pick",
            Check::AnsweredWhenHidden => "answered_when_hidden",
            Check::Straightlining => "straightlining",
            Check::DuplicateRespondent => "duplicate_respondent",
            Check::PossibleDuplicate => "possible_duplicate",
            Check::Speeder => "speeder",
            Check::ConstraintViolated => "constraint_violated",
            Check::Unprocessable => "unprocessable",
        }
    }

    /// Whether the check takes the item's value out of the results.
    pub fn excludes_value(self) -> bool {
        matches!(
            self,
            Check::OutOfRange
                | Check::UnknownOption
                | Check::BrokenRanking
                | Check::TooManyPicks
                | Check::DuplicatePick
        )
    }
}

/// A raised flag: which check, on which item (by form item index) if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Flag {
    /// The check.
    pub check: Check,
    /// Index of the item in the record's form.
    pub item: Option<usize>,
}

/// What an item of a record contributes to the results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A valid value: counts.
    Valid,
    /// A value a flag took out of the results.
    Excluded,
    /// Not a value; the kind of missing.
    Missing(Missing),
}

/// The kinds of missing answer, blank and coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Missing {
    /// Required, relevant and blank.
    Nonresponse,
    /// Relevant, optional and blank.
    Blank,
    /// Hidden by its relevance condition and blank: a legitimate skip.
    Skipped,
    /// "Don't know".
    DontKnow,
    /// Refused.
    Refused,
    /// Not applicable (a missing code).
    NotApplicable,
}

impl Missing {
    /// Every kind in report order.
    pub const ALL: [Missing; 6] = [
        Missing::Nonresponse,
        Missing::Blank,
        Missing::Skipped,
        Missing::DontKnow,
        Missing::Refused,
        Missing::NotApplicable,
    ];

    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Missing::Nonresponse => "nonresponse",
            Missing::Blank => "blank",
            Missing::Skipped => "skipped",
            Missing::DontKnow => "dont_know",
            Missing::Refused => "refused",
            Missing::NotApplicable => "not_applicable",
        }
    }

    /// Index into [`Missing::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl From<MissingKind> for Missing {
    fn from(k: MissingKind) -> Missing {
        match k {
            MissingKind::DontKnow => Missing::DontKnow,
            MissingKind::Refused => Missing::Refused,
            MissingKind::NotApplicable => Missing::NotApplicable,
        }
    }
}

/// The outcome of checking one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Per item of the form, in form order.
    pub status: Vec<Status>,
    /// Raised flags, item flags in form order, then record-level ones.
    pub flags: Vec<Flag>,
}

/// The value an item contributes to relevance conditions.
pub fn expr_value<'a>(study: &'a Study, item: &Item, v: &'a Value) -> ExprValue<'a> {
    let info = study.codes.get(item.code);
    let code = |o: &'a Opt| info.map_or("", |c| c.option_code(o));
    match v {
        Value::Blank => ExprValue::None,
        Value::Missing(_) => ExprValue::Missing,
        Value::Int(i) => ExprValue::Num(*i as f64),
        Value::Num(n) => ExprValue::Num(*n),
        Value::Code(c) => ExprValue::Str(code(c)),
        Value::Text => ExprValue::Unknown,
        Value::Choices(c) => ExprValue::Set(c.iter().map(code).collect()),
        Value::Ranked(r) => ExprValue::Set(r.iter().map(|(c, _)| code(c)).collect()),
    }
}

/// Which items of the form are relevant given the answers, with no date
/// for `today()` (see [`relevance_on`]).
pub fn relevance(study: &Study, form: &Form, answers: &[Value]) -> Vec<bool> {
    relevance_on(study, form, answers, None)
}

/// Which items of the form are relevant given the answers; `today` is the
/// interview's day for `today()` ([`crate::instrument::expr::days_of_millis`]
/// of its `ended_at`). An item hidden by its condition hides its answer
/// from the conditions of other items.
pub fn relevance_on(study: &Study, form: &Form, answers: &[Value], today: Option<i64>) -> Vec<bool> {
    // 0 = not computed, 1 = relevant, 2 = hidden, 3 = in progress. Lint
    // guarantees no cycles; "in progress" is treated as relevant so even a
    // cyclic definition cannot recurse forever.
    fn visit(
        i: usize,
        study: &Study,
        form: &Form,
        answers: &[Value],
        today: Option<i64>,
        memo: &mut [u8],
    ) -> bool {
        match memo[i] {
            1 | 3 => return true,
            2 => return false,
            _ => {}
        }
        memo[i] = 3;
        let rel = match &form.items[i].relevant {
            None => true,
            Some(e) => {
                let refs = &form.items[i].deps;
                for &j in refs {
                    visit(j, study, form, answers, today, memo);
                }
                // Every dependency is decided now (2 = hidden).
                let memo: &[u8] = memo;
                let value = |j: usize| match (memo.get(j), answers.get(j), form.items.get(j)) {
                    (Some(2), _, _) => ExprValue::None,
                    (_, Some(v), Some(item)) => expr_value(study, item, v),
                    _ => ExprValue::None,
                };
                e.eval_in(&Env { value: &value, today })
            }
        };
        memo[i] = if rel { 1 } else { 2 };
        rel
    }
    let mut memo = vec![0u8; form.items.len()];
    (0..form.items.len()).map(|i| visit(i, study, form, answers, today, &mut memo)).collect()
}

/// Checks a validated record against its study.
pub fn check(study: &Study, rec: &Record) -> Checked {
    let Some(form) = study.forms.get(rec.form) else {
        return Checked { status: Vec::new(), flags: Vec::new() };
    };
    // `today()` is the interview's own day, so live and offline reports agree.
    let today = rec.ended_at.map(days_of_millis);
    let relevant = relevance_on(study, form, &rec.answers, today);
    let mut status = Vec::with_capacity(form.items.len());
    let mut flags = Vec::new();
    for (i, item) in form.items.iter().enumerate() {
        let value = rec.answers.get(i).unwrap_or(&Value::Blank);
        let st = match value {
            Value::Blank if !relevant[i] => Status::Missing(Missing::Skipped),
            Value::Blank if item.required => {
                flags.push(Flag { check: Check::ItemNonresponse, item: Some(i) });
                Status::Missing(Missing::Nonresponse)
            }
            Value::Blank => Status::Missing(Missing::Blank),
            Value::Missing(k) => Status::Missing((*k).into()),
            // Hidden by its relevance condition, yet answered: the item was
            // not asked, so the answer is flagged and then treated as the
            // skip it should have been (not counted, not "asked").
            _ if !relevant[i] => {
                flags.push(Flag { check: Check::AnsweredWhenHidden, item: Some(i) });
                Status::Missing(Missing::Skipped)
            }
            v => match value_problem(item, v) {
                Some(c) => {
                    flags.push(Flag { check: c, item: Some(i) });
                    Status::Excluded
                }
                None => {
                    if let Some(c) = &item.constraint
                        && !meets(study, form, &relevant, &rec.answers, today, c)
                    {
                        // Soft: flagged, the value still counts.
                        flags.push(Flag { check: Check::ConstraintViolated, item: Some(i) });
                    }
                    Status::Valid
                }
            },
        };
        status.push(st);
    }
    let min_run = study.def.reporting.straightlining_min_run as usize;
    if min_run > 0 && longest_scale_run(form, &rec.answers, &status) >= min_run {
        flags.push(Flag { check: Check::Straightlining, item: None });
    }
    Checked { status, flags }
}

/// Whether the answers meet a constraint; hidden items have no value, as
/// in relevance conditions.
fn meets(
    study: &Study,
    form: &Form,
    relevant: &[bool],
    answers: &[Value],
    today: Option<i64>,
    c: &crate::instrument::Expr,
) -> bool {
    let value = |j: usize| match (relevant.get(j), answers.get(j), form.items.get(j)) {
        (Some(true), Some(v), Some(item)) => expr_value(study, item, v),
        _ => ExprValue::None,
    };
    c.eval_in(&Env { value: &value, today })
}

/// The check a substantive value fails, if any.
fn value_problem(item: &Item, v: &Value) -> Option<Check> {
    let unknown = |o: &Opt| matches!(o, Opt::Unknown(_));
    match (&item.kind, v) {
        (KindDef::Scale { min, max, .. } | KindDef::Count { min, max }, Value::Int(x)) => {
            (x < min || x > max).then_some(Check::OutOfRange)
        }
        (KindDef::Number { min, max }, Value::Num(x)) => {
            (min.is_some_and(|m| *x < m) || max.is_some_and(|m| *x > m)).then_some(Check::OutOfRange)
        }
        (KindDef::YesNo | KindDef::YesNoNa | KindDef::SingleChoice { .. }, Value::Code(c)) => {
            unknown(c).then_some(Check::UnknownOption)
        }
        (KindDef::MultiSelect { max_picks, .. }, Value::Choices(picks)) => {
            if picks.iter().any(unknown) {
                return Some(Check::UnknownOption);
            }
            if has_repeats(picks.iter()) {
                return Some(Check::DuplicatePick);
            }
            max_picks.is_some_and(|m| picks.len() > m as usize).then_some(Check::TooManyPicks)
        }
        (KindDef::MultiSelect { max_picks, .. }, Value::Ranked(picks)) => {
            if picks.iter().any(|(p, _)| unknown(p)) {
                return Some(Check::UnknownOption);
            }
            if max_picks.is_some_and(|m| picks.len() > m as usize) {
                return Some(Check::TooManyPicks);
            }
            let mut ranks: Vec<i64> = picks.iter().map(|(_, r)| *r).collect();
            ranks.sort_unstable();
            let proper = ranks.iter().zip(1..).all(|(r, want)| *r == want);
            (!proper).then_some(Check::BrokenRanking)
        }
        _ => None,
    }
}

/// Whether an option is picked twice. Listed options below 128 are marked
/// in a bit set; anything else falls back to comparing pairs.
fn has_repeats<'a>(picks: impl Iterator<Item = &'a Opt> + Clone) -> bool {
    let mut seen = 0u128;
    for (n, p) in picks.clone().enumerate() {
        match p {
            Opt::Known(k) if *k < 128 => {
                if seen & (1 << k) != 0 {
                    return true;
                }
                seen |= 1 << k;
            }
            _ => {
                if picks.clone().take(n).any(|q| q == p) {
                    return true;
                }
            }
        }
    }
    false
}

/// Longest run of equal valid values over the form's scale items in order.
/// A scale item that is not a valid value breaks the run.
fn longest_scale_run(form: &Form, answers: &[Value], status: &[Status]) -> usize {
    let mut best = 0;
    let mut run = 0;
    let mut last: Option<i64> = None;
    for (i, item) in form.items.iter().enumerate() {
        if !matches!(item.kind, KindDef::Scale { .. }) {
            continue;
        }
        match (status.get(i), answers.get(i)) {
            (Some(Status::Valid), Some(Value::Int(v))) => {
                run = if last == Some(*v) { run + 1 } else { 1 };
                last = Some(*v);
            }
            _ => {
                run = 0;
                last = None;
            }
        }
        best = best.max(run);
    }
    best
}

#[cfg(test)]
mod tests;
