//! An answer as submitted becomes the typed [`Value`] its item takes, or
//! the rule it breaks.

use super::{AnswerRef as Answer, Answers, Limits, MAX_NUMBER, Rule, Value, Violation};
use crate::instrument::{Form, Item, KindDef, Study};

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

/// The typed value of one answer to `item`.
pub(crate) fn typed(
    study: &Study,
    item: &Item,
    answer: Answer<'_>,
    limits: &Limits,
) -> Result<Value, (Rule, String)> {
    let kind = &item.kind;
    let as_int = |a: Answer<'_>| match a {
        Answer::Integer(i) => Some(i),
        Answer::Number(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
        _ => None,
    };
    match answer {
        Answer::Blank => return Ok(Value::Blank),
        Answer::Missing(m) => {
            return match study.missing_kind(m) {
                Some(k) => Ok(Value::Missing(k)),
                None => Err((Rule::UnknownMissingCode, "not one of the study's missing codes".into())),
            };
        }
        _ => {}
    }
    // A raw number the item takes as a missing code (`-99`): that code.
    let raw = match answer {
        Answer::Integer(i) => Some(i as f64),
        Answer::Number(f) => Some(f),
        _ => None,
    };
    if let Some(n) = raw
        && let Some((_, k)) = item.missing_numbers.iter().find(|(m, _)| *m == n)
    {
        return Ok(Value::Missing(*k));
    }
    match kind {
        KindDef::Scale { .. } | KindDef::Count { .. } => {
            as_int(answer).map(Value::Int).ok_or_else(|| wrong(kind, "a whole number"))
        }
        KindDef::Number { .. } => match answer {
            Answer::Integer(i) => Ok(Value::Num(i as f64)),
            Answer::Number(f) if f.is_finite() && f.abs() <= MAX_NUMBER => Ok(Value::Num(f)),
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
                    for s in list.iter() {
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
                    if r.len() > limits.max_choices {
                        return Err(too_many());
                    }
                    for (s, _) in r.iter() {
                        check_len(s, limits)?;
                    }
                    Ok(Value::Ranked(r.iter().map(|(k, v)| (item.option(k), v)).collect()))
                }
                _ if *ranked => Err(wrong(kind, "a list of option codes or {\"ranked\": {code: rank}}")),
                _ => Err(wrong(kind, "a list of option codes")),
            }
        }
    }
}

/// Each answer's typed value at its item's index in `answers`, or the
/// violations.
pub(super) fn type_answers(
    study: &Study,
    form: &Form,
    sent: &Answers<'_>,
    limits: &Limits,
    answers: &mut [Value],
    v: &mut Vec<Violation>,
) {
    sent.for_each(|item_id, answer| {
        let Some(ii) = form.item(item_id) else {
            // The field path names the item only when it is short and plain,
            // so hostile keys are never echoed in full.
            let field = if item_id.len() <= 64 && item_id.bytes().all(|b| b.is_ascii_graphic()) {
                format!("answers.{item_id}")
            } else {
                "answers".to_string()
            };
            v.push(Violation::new(field, Rule::UnknownItem, "the form has no such item"));
            return;
        };
        let item = &form.items[ii];
        match typed(study, item, answer, limits) {
            Ok(val) => answers[ii] = val,
            Err((rule, message)) => v.push(Violation::new(format!("answers.{}", item.id), rule, message)),
        }
    });
}
