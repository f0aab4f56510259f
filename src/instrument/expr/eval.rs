//! Evaluation of a resolved condition, with XPath 1.0's conversions.
//!
//! Values are blank (no value), booleans, numbers, strings and
//! multi-select pick lists. A blank operand makes every comparison false
//! and every arithmetic result blank (fieldwatch's rule; XPath would
//! compare the empty string). Otherwise, as XPath 1.0 (section 3.4):
//!
//! - `==`/`!=` with a boolean on either side compare booleans; else with a
//!   number on either side compare numbers; else compare strings;
//! - `<`, `<=`, `>`, `>=` always compare numbers;
//! - a string's number is the number it spells (`" 3 "` is 3), else NaN,
//!   and NaN compares false except with `!=`;
//! - a multi-select's value is its picks joined by spaces in submitted
//!   order (XLSForm's `${sm} = 'a'` holds when exactly `a` was picked);
//! - a condition holds only when it is the boolean true.

use std::borrow::Cow;

use super::{ArithOp, CmpOp, Expr, ExprValue, Operand};

/// Milliseconds in a day.
const DAY_MILLIS: i64 = 86_400_000;

/// What a condition is evaluated against: the answers, and the date
/// `today()` stands for.
pub struct Env<'e, 'a> {
    /// Item `i`'s answer.
    pub value: &'e dyn Fn(usize) -> ExprValue<'a>,
    /// `today()`: the interview's (UTC) date as days since 1970-01-01, or
    /// `None` when the interview has no time (then `today()` has no value).
    pub today: Option<i64>,
}

/// The UTC day (days since 1970-01-01) of a time in milliseconds since the
/// Unix epoch: what `today()` is for an interview that ended then.
pub fn days_of_millis(millis: i64) -> i64 {
    millis.div_euclid(DAY_MILLIS)
}

#[derive(Debug, Clone, PartialEq)]
enum V<'b> {
    None,
    Bool(bool),
    Num(f64),
    Str(Cow<'b, str>),
}

impl V<'_> {
    fn number(&self) -> f64 {
        match self {
            V::Num(n) => *n,
            V::Bool(b) => f64::from(u8::from(*b)),
            V::Str(s) => s.trim().parse::<f64>().ok().filter(|n| !n.is_infinite()).unwrap_or(f64::NAN),
            V::None => f64::NAN,
        }
    }
    fn boolean(&self) -> bool {
        match self {
            V::Bool(b) => *b,
            V::Num(n) => *n != 0.0 && !n.is_nan(),
            V::Str(s) => !s.is_empty(),
            V::None => false,
        }
    }
}

impl Expr {
    /// Evaluates the condition without a date (`today()` has no value);
    /// `value(i)` gives item `i`'s answer.
    pub fn eval<'a>(&self, value: &dyn Fn(usize) -> ExprValue<'a>) -> bool {
        self.eval_in(&Env { value, today: None })
    }

    /// Evaluates the condition in `env`: true only when it is the boolean true.
    pub fn eval_in(&self, env: &Env<'_, '_>) -> bool {
        matches!(self.value(env), V::Bool(true))
    }

    fn value<'b, 'a: 'b>(&'b self, env: &Env<'_, 'a>) -> V<'b> {
        match self {
            Expr::Or(terms) => V::Bool(terms.iter().any(|t| t.eval_in(env))),
            Expr::And(terms) => V::Bool(terms.iter().all(|t| t.eval_in(env))),
            Expr::Not(a) => V::Bool(!a.eval_in(env)),
            Expr::Compare(op, a, b) => V::Bool(compare(*op, &a.value(env), &b.value(env))),
            Expr::Arith(first, rest) => {
                let mut acc = match first.value(env) {
                    V::None => return V::None,
                    v => v.number(),
                };
                for (op, t) in rest {
                    let x = match t.value(env) {
                        V::None => return V::None,
                        v => v.number(),
                    };
                    acc = match op {
                        ArithOp::Add => acc + x,
                        ArithOp::Sub => acc - x,
                        ArithOp::Mul => acc * x,
                        ArithOp::Div => acc / x,
                        ArithOp::Mod => acc % x,
                    };
                }
                V::Num(acc)
            }
            Expr::Neg(a) => match a.value(env) {
                V::None => V::None,
                v => V::Num(-v.number()),
            },
            Expr::If(c, a, b) => {
                if c.value(env).boolean() {
                    a.value(env)
                } else {
                    b.value(env)
                }
            }
            Expr::Today => env.today.map_or(V::None, |d| V::Num(d as f64)),
            Expr::Test(o) => operand(o, env),
        }
    }
}

fn operand<'b, 'a: 'b>(o: &'b Operand, env: &Env<'_, 'a>) -> V<'b> {
    let value = env.value;
    match o {
        Operand::Num(n) => V::Num(*n),
        Operand::Str(s) => V::Str(Cow::Borrowed(s)),
        Operand::Bool(b) => V::Bool(*b),
        Operand::Item(r) => match value(r.index) {
            ExprValue::Num(n) => V::Num(n),
            ExprValue::Str(s) => V::Str(Cow::Borrowed(s)),
            ExprValue::Set(picks) => V::Str(Cow::Owned(picks.join(" "))),
            ExprValue::None | ExprValue::Missing | ExprValue::Unknown => V::None,
        },
        Operand::Answered(r) => V::Bool(!matches!(value(r.index), ExprValue::None | ExprValue::Missing)),
        Operand::Missing(r) => V::Bool(matches!(value(r.index), ExprValue::Missing)),
        Operand::Selected(r, code) => match value(r.index) {
            ExprValue::Set(picks) => V::Bool(picks.iter().any(|p| p == code)),
            ExprValue::Str(s) => V::Bool(s == code),
            _ => V::Bool(false),
        },
    }
}

/// XPath 1.0's comparison of two values, except that a blank (no value)
/// makes it false.
fn compare(op: CmpOp, a: &V<'_>, b: &V<'_>) -> bool {
    if *a == V::None || *b == V::None {
        return false;
    }
    let ord = |x: f64, y: f64| match op {
        CmpOp::Eq => x == y,
        CmpOp::Ne => x != y,
        CmpOp::Lt => x < y,
        CmpOp::Le => x <= y,
        CmpOp::Gt => x > y,
        CmpOp::Ge => x >= y,
    };
    match (op, a, b) {
        (CmpOp::Eq | CmpOp::Ne, V::Bool(_), _) | (CmpOp::Eq | CmpOp::Ne, _, V::Bool(_)) => {
            (a.boolean() == b.boolean()) == (op == CmpOp::Eq)
        }
        (CmpOp::Eq | CmpOp::Ne, V::Str(x), V::Str(y)) => (x == y) == (op == CmpOp::Eq),
        _ => ord(a.number(), b.number()),
    }
}
