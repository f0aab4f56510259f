//! From a parsed XPath expression to a fieldwatch condition
//! (`docs/xlsform.md` has the table), and a constraint's bounds on `.`.

use super::X;
use crate::instrument::expr::CmpOp;

/// How a referenced question answers, as translation needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::instrument::xlsform) enum RefKind {
    /// A select_multiple or rank: `selected()` tests a pick.
    Multi,
    /// A select_one (or yes/no): `selected()` compares the code.
    Single,
    /// A scale (select_one with numeric names): `selected()` compares the point.
    Scale,
    /// Text, a date, a time, a location: fieldwatch keeps no value of it,
    /// so it can only be tested for an answer (`!= ''`).
    Text,
    /// Anything else.
    Other,
}

/// Translates a `relevant` expression into a fieldwatch condition. `kind`
/// tells how a referenced question answers (None: no such question);
/// `this` is the question `.` stands for.
pub(in crate::instrument::xlsform) fn to_condition(
    x: &X,
    this: &str,
    kind: &dyn Fn(&str) -> Option<RefKind>,
) -> Result<String, String> {
    let t = Tr { this, kind };
    t.cond(x)
}

struct Tr<'a> {
    this: &'a str,
    kind: &'a dyn Fn(&str) -> Option<RefKind>,
}

impl Tr<'_> {
    fn name(&self, x: &X) -> Option<String> {
        match x {
            X::Ref(n) => Some(n.clone()),
            X::Dot => Some(self.this.to_string()),
            _ => None,
        }
    }
    fn cond(&self, x: &X) -> Result<String, String> {
        match x {
            X::Or(a, b) => Ok(format!("{} or {}", self.cond(a)?, self.cond(b)?)),
            X::And(a, b) => {
                let side = |x: &X| -> Result<String, String> {
                    let s = self.cond(x)?;
                    Ok(if matches!(x, X::Or(..)) { format!("({s})") } else { s })
                };
                Ok(format!("{} and {}", side(a)?, side(b)?))
            }
            X::Cmp(op, a, b) => self.compare(*op, a, b),
            X::Call(f, args) => self.call(f, args),
            X::Ref(n) => Err(format!("`${{{n}}}` alone is not a condition (compare it)")),
            _ => Err("this is not a condition".into()),
        }
    }
    /// A value: an operand, an arithmetic expression (parenthesized, so
    /// it reads the same whatever surrounds it), or a condition in
    /// parentheses (a boolean compared or picked by `if()`).
    fn operand(&self, x: &X) -> Result<String, String> {
        match x {
            X::Num(n) => Ok(crate::instrument::xlsform::sheet::number_text(*n)),
            X::Str(s) if s.contains('"') => Err("strings with `\"` are not supported".into()),
            X::Str(s) => Ok(format!("\"{s}\"")),
            X::Ref(_) | X::Dot => {
                let n = self.name(x).unwrap_or_default();
                if (self.kind)(&n) == Some(RefKind::Text) {
                    return Err(format!(
                        "`{n}` is a text, date, time or location question: fieldwatch keeps no value of it, \
                         so it can only be tested for an answer (`!= ''`)"
                    ));
                }
                Ok(n)
            }
            X::Arith(op, a, b) => {
                let op = match op {
                    '/' => "/",
                    '%' => "%",
                    '*' => "*",
                    '-' => "-",
                    _ => "+",
                };
                Ok(format!("({} {op} {})", self.operand(a)?, self.operand(b)?))
            }
            X::Neg(a) => Ok(format!("(-{})", self.operand(a)?)),
            X::Call(f, args) if args.is_empty() && (f == "true" || f == "false") => Ok(f.clone()),
            X::Call(f, args) if f == "today" => match args.as_slice() {
                [] => Ok("today()".into()),
                _ => Err("`today()` takes no arguments".into()),
            },
            X::Call(f, args) if f == "date" => match args.as_slice() {
                [X::Str(d)] => date_days(d).map(|n| n.to_string()),
                _ => Err("`date()` takes one quoted date, `'YYYY-MM-DD'`".into()),
            },
            X::Call(f, args) if f == "if" => self.if_call(args),
            X::Or(..) | X::And(..) | X::Cmp(..) | X::Call(..) => Ok(format!("({})", self.cond(x)?)),
        }
    }
    fn if_call(&self, args: &[X]) -> Result<String, String> {
        let [c, a, b] = args else {
            return Err("`if()` takes three arguments: a condition, then, else".into());
        };
        Ok(format!("if({}, {}, {})", self.cond(c)?, self.operand(a)?, self.operand(b)?))
    }
    fn compare(&self, op: CmpOp, a: &X, b: &X) -> Result<String, String> {
        // A date against a date string (`today() > '2024-06-01'`) compares
        // days, as ODK compares dates; any other string would never match.
        let is_date = |x: &X| matches!(x, X::Call(f, _) if f == "today" || f == "date");
        let day = |x: &X| -> Result<String, String> {
            match x {
                X::Str(d) => date_days(d).map(|n| n.to_string()),
                x => self.operand(x),
            }
        };
        if is_date(a) || is_date(b) {
            return Ok(format!("{} {op} {}", day(a)?, day(b)?));
        }
        // `${q} = ''` and `${q} != ''`: blank or not (a missing code is an answer).
        for (r, other) in [(a, b), (b, a)] {
            if let (Some(n), X::Str(s)) = (self.name(r), other)
                && s.is_empty()
            {
                return match op {
                    CmpOp::Ne => Ok(format!("(answered({n}) or missing({n}))")),
                    CmpOp::Eq => Ok(format!("not (answered({n}) or missing({n}))")),
                    _ => Err("only `=` and `!=` compare with ''".into()),
                };
            }
        }
        // count-selected(${q}) and string-length(${q}) against 0 or 1.
        for (f, other, op) in [(a, b, op), (b, a, op.flip())] {
            if let X::Call(name, args) = f
                && matches!(name.as_str(), "count-selected" | "string-length")
            {
                let [arg] = args.as_slice() else { return Err(format!("`{name}()` takes one argument")) };
                let n = self.name(arg).ok_or_else(|| format!("`{name}()` of anything but a question"))?;
                let X::Num(k) = other else {
                    return Err(format!("`{name}()` compared with anything but a number"));
                };
                let answered = format!("answered({n})");
                return match (op, *k) {
                    (CmpOp::Gt, 0.0) | (CmpOp::Ge, 1.0) | (CmpOp::Ne, 0.0) => Ok(answered),
                    (CmpOp::Eq, 0.0) | (CmpOp::Lt, 1.0) | (CmpOp::Le, 0.0) => Ok(format!("not {answered}")),
                    _ => {
                        Err(format!("`{name}()` is supported only as answered or not (compared with 0 or 1)"))
                    }
                };
            }
        }
        Ok(format!("{} {op} {}", self.operand(a)?, self.operand(b)?))
    }
    fn call(&self, f: &str, args: &[X]) -> Result<String, String> {
        match (f, args) {
            ("not", [a]) => {
                let s = self.cond(a)?;
                Ok(if matches!(a, X::Call(..)) { format!("not {s}") } else { format!("not ({s})") })
            }
            ("true" | "false", []) => Ok(f.to_string()),
            ("selected", [q, X::Str(v)]) => {
                let n = self.name(q).ok_or("`selected()` of anything but a question")?;
                if v.contains('"') {
                    return Err("strings with `\"` are not supported".into());
                }
                match (self.kind)(&n) {
                    Some(RefKind::Multi) => Ok(format!("selected({n}, \"{v}\")")),
                    Some(RefKind::Scale) if v.parse::<i64>().is_ok() => Ok(format!("{n} == {v}")),
                    Some(_) | None => Ok(format!("{n} == \"{v}\"")),
                }
            }
            ("selected", _) => Err("`selected()` takes a question and a quoted choice name".into()),
            ("if", _) => self.if_call(args),
            ("today" | "date", _) => Err(format!("`{f}()` is a date, not a condition (compare it)")),
            ("now" | "coalesce" | "concat" | "regex" | "jr:choice-name" | "position" | "format-date", _) => {
                Err(format!("`{f}()` cannot be expressed in a fieldwatch condition"))
            }
            _ => Err(format!("`{f}()` is not supported")),
        }
    }
}

/// The day number (days since 1970-01-01, what `today()` is) of an ISO
/// date, as XPath's `date('2024-03-05')` converts to a number.
fn date_days(d: &str) -> Result<i64, String> {
    let date = chrono::NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d")
        .map_err(|_| format!("`date('{d}')` is not a date `YYYY-MM-DD`"))?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).ok_or("no epoch")?;
    Ok((date - epoch).num_days())
}

/// What a constraint says about `.`, when it is made only of bounds on
/// `.` (`. >= 0 and . <= 120`) and a most-picks limit (`count-selected(.) <= 3`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(in crate::instrument::xlsform) struct Bounds {
    /// Lower bound and whether it is strict.
    pub min: Option<(f64, bool)>,
    /// Upper bound and whether it is strict.
    pub max: Option<(f64, bool)>,
    /// Most options one answer may pick.
    pub max_picks: Option<f64>,
}

/// Reads a constraint as bounds on `.`, or says why it cannot.
pub(in crate::instrument::xlsform) fn bounds(x: &X) -> Result<Bounds, String> {
    let mut b = Bounds::default();
    fn walk(x: &X, b: &mut Bounds) -> Result<(), String> {
        match x {
            X::And(l, r) => {
                walk(l, b)?;
                walk(r, b)
            }
            X::Cmp(op, l, r) => {
                let (op, other, picks) = match (&**l, &**r) {
                    (X::Dot, o) => (*op, o, false),
                    (o, X::Dot) => (op.flip(), o, false),
                    (X::Call(f, a), o) if f == "count-selected" && a == &[X::Dot] => (*op, o, true),
                    (o, X::Call(f, a)) if f == "count-selected" && a == &[X::Dot] => (op.flip(), o, true),
                    _ => return Err("only bounds on `.` are supported in constraints".into()),
                };
                let X::Num(n) = other else { return Err("a bound must be a number".into()) };
                match (op, picks) {
                    (CmpOp::Ge | CmpOp::Gt, false) => b.min = Some((*n, op == CmpOp::Gt)),
                    (CmpOp::Le | CmpOp::Lt, false) => b.max = Some((*n, op == CmpOp::Lt)),
                    (CmpOp::Le, true) => b.max_picks = Some(*n),
                    (CmpOp::Lt, true) => b.max_picks = Some(*n - 1.0),
                    _ => {
                        return Err("only `<`, `<=`, `>` and `>=` bounds are supported in constraints".into());
                    }
                }
                Ok(())
            }
            _ => Err("only bounds on `.` joined with `and` are supported in constraints".into()),
        }
    }
    walk(x, &mut b)?;
    Ok(b)
}
