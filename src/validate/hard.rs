//! Hard constraints: an item whose constraint is marked hard
//! (`constraint_hard`) rejects an answer that breaks it, where a soft
//! constraint only flags it (`constraint_violated`, [`crate::quality`]).

use super::{Rule, Value, Violation};
use crate::instrument::expr::{Env, days_of_millis};
use crate::instrument::{ExprValue, Form, Study};
use crate::quality::{expr_value, relevance_on};

/// One violation (rule `constraint`, the item's `constraint_message`) per
/// relevant, substantively answered item that breaks its hard constraint.
/// Conditions read answers as the checks do: hidden items have no value,
/// and `today()` is the day the interview ended (`ended_at`, in ms).
pub(super) fn check(study: &Study, form: &Form, answers: &[Value], ended_at: Option<i64>) -> Vec<Violation> {
    if !form.items.iter().any(|it| it.constraint_hard) {
        return Vec::new();
    }
    let today = ended_at.map(days_of_millis);
    let relevant = relevance_on(study, form, answers, today);
    let value = |j: usize| match (relevant.get(j), answers.get(j), form.items.get(j)) {
        (Some(true), Some(v), Some(item)) => expr_value(study, item, v),
        _ => ExprValue::None,
    };
    let env = Env { value: &value, today };
    let mut out = Vec::new();
    for (i, item) in form.items.iter().enumerate() {
        let Some(c) = item.constraint.as_ref().filter(|_| item.constraint_hard) else { continue };
        let substantive = !matches!(answers.get(i), None | Some(Value::Blank | Value::Missing(_)));
        if substantive && relevant.get(i) == Some(&true) && !c.eval_in(&env) {
            let message = if item.constraint_message.is_empty() {
                "the answer breaks the item's constraint".to_string()
            } else {
                item.constraint_message.clone()
            };
            out.push(Violation::new(format!("answers.{}", item.id), Rule::Constraint, message));
        }
    }
    out
}
