//! The relevance (skip) condition language.
//!
//! ```text
//! expr    := or
//! or      := and ("or" and)*
//! and     := not ("and" not)*
//! not     := "not" not | compare
//! compare := operand (("==" | "!=" | "<" | "<=" | ">" | ">=") operand)?
//! operand := NUMBER | "STRING" | ITEM | "true" | "false"
//!          | answered(ITEM) | selected(ITEM, "OPTION") | missing(ITEM)
//!          | "(" expr ")"
//! ```
//!
//! A condition is bounded before it is parsed further: at most
//! [`MAX_CONDITION_CHARS`] characters, [`MAX_CONDITION_TERMS`] operands and
//! [`MAX_CONDITION_DEPTH`] levels of parentheses and `not`. `a or b or c`
//! is one flat node, not a chain, so evaluating (and dropping) a condition
//! recurses at most as deep as its nesting: no instrument can overflow the
//! stack of the service that loads it.
//!
//! `ITEM` is an item id of the same form. An item that is blank, hidden or
//! answered with a missing code has no value: every comparison with it is
//! false, so `q12 == "yes"` and `q12 != "yes"` are both false for a blank
//! `q12`. `answered(q)` is true for a substantive answer, `missing(q)` for a
//! missing code, `selected(q, "x")` when multi-select `q` picked option `x`.

use std::fmt;

/// Longest condition, in characters.
pub const MAX_CONDITION_CHARS: usize = 4096;
/// Most operands (values, item references, function calls) in one condition.
pub const MAX_CONDITION_TERMS: usize = 256;
/// Deepest nesting of parentheses and `not` in one condition.
pub const MAX_CONDITION_DEPTH: usize = 32;

/// A parsed condition. Item references are resolved to item indexes of the
/// form by [`Expr::resolve`].
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `a or b or ...`: two or more terms.
    Or(Vec<Expr>),
    /// `a and b and ...`: two or more terms.
    And(Vec<Expr>),
    /// `not a`.
    Not(Box<Expr>),
    /// `a OP b`.
    Compare(CmpOp, Operand, Operand),
    /// A lone operand used as a condition (`true`, `answered(q1)`).
    Test(Operand),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// A leaf of a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A number literal.
    Num(f64),
    /// A string literal.
    Str(String),
    /// `true` / `false`.
    Bool(bool),
    /// The answer to an item.
    Item(ItemRef),
    /// `answered(item)`.
    Answered(ItemRef),
    /// `missing(item)`.
    Missing(ItemRef),
    /// `selected(item, "option")`.
    Selected(ItemRef, String),
}

/// A reference to an item: by id as written, and by index once resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRef {
    /// The id as written in the condition.
    pub id: String,
    /// Index of the item in its form, set by [`Expr::resolve`].
    pub index: usize,
}

/// What an item contributes to a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprValue<'a> {
    /// Blank or hidden.
    None,
    /// Answered with a missing code.
    Missing,
    /// A number (scale, count, number).
    Num(f64),
    /// A single code (yes/no, choice) or text.
    Str(&'a str),
    /// The picked option codes of a multi-select.
    Set(Vec<&'a str>),
}

/// A syntax error with the byte offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("condition `{source_text}`: {message} at column {}", .column + 1)]
pub struct ParseError {
    /// The condition text.
    pub source_text: String,
    /// What is wrong.
    pub message: String,
    /// 0-based character column.
    pub column: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Ident(String),
    Op(CmpOp),
    LParen,
    RParen,
    Comma,
}

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let err = |message: &str, column: usize| ParseError {
        source_text: src.to_string(),
        message: message.to_string(),
        column,
    };
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                out.push((Tok::LParen, start));
                i += 1;
            }
            ')' => {
                out.push((Tok::RParen, start));
                i += 1;
            }
            ',' => {
                out.push((Tok::Comma, start));
                i += 1;
            }
            '=' | '!' | '<' | '>' => {
                let next = chars.get(i + 1).copied();
                let (op, len) = match (c, next) {
                    ('=', Some('=')) => (CmpOp::Eq, 2),
                    ('!', Some('=')) => (CmpOp::Ne, 2),
                    ('<', Some('=')) => (CmpOp::Le, 2),
                    ('>', Some('=')) => (CmpOp::Ge, 2),
                    ('<', _) => (CmpOp::Lt, 1),
                    ('>', _) => (CmpOp::Gt, 1),
                    _ => return Err(err("expected `==` or `!=`", start)),
                };
                out.push((Tok::Op(op), start));
                i += len;
            }
            '"' | '\'' => {
                let quote = c;
                i += 1;
                let mut s = String::new();
                loop {
                    match chars.get(i) {
                        None => return Err(err("unterminated string", start)),
                        Some(&ch) if ch == quote => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push((Tok::Str(s), start));
            }
            c if c.is_ascii_digit() || c == '-' || c == '.' => {
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let n: f64 = text.parse().map_err(|_| err("bad number", start))?;
                out.push((Tok::Num(n), start));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                out.push((Tok::Ident(chars[start..i].iter().collect()), start));
            }
            _ => return Err(err(&format!("unexpected character `{c}`"), start)),
        }
    }
    Ok(out)
}

struct Parser<'s> {
    src: &'s str,
    toks: Vec<(Tok, usize)>,
    pos: usize,
    /// Parentheses and `not`s open at this point; bounded by
    /// [`MAX_CONDITION_DEPTH`] before the parser recurses any deeper.
    depth: usize,
    /// Operands read so far; bounded by [`MAX_CONDITION_TERMS`].
    terms: usize,
}

impl Parser<'_> {
    fn err(&self, message: impl Into<String>) -> ParseError {
        let column = self.toks.get(self.pos).map(|t| t.1).unwrap_or_else(|| self.src.chars().count());
        ParseError { source_text: self.src.to_string(), message: message.into(), column }
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.0)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.0.clone());
        self.pos += 1;
        t
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s)) if s == kw)
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<(), ParseError> {
        if self.peek() == Some(&tok) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(format!("expected {what}")))
        }
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut terms = vec![self.and()?];
        while self.keyword("or") {
            self.pos += 1;
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 { terms.remove(0) } else { Expr::Or(terms) })
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut terms = vec![self.not()?];
        while self.keyword("and") {
            self.pos += 1;
            terms.push(self.not()?);
        }
        Ok(if terms.len() == 1 { terms.remove(0) } else { Expr::And(terms) })
    }

    /// One level deeper (a `not` or a parenthesis), refused past
    /// [`MAX_CONDITION_DEPTH`] before recursing.
    fn descend(&mut self) -> Result<(), ParseError> {
        if self.depth >= MAX_CONDITION_DEPTH {
            return Err(self.err(format!("nests deeper than {MAX_CONDITION_DEPTH} levels")));
        }
        self.depth += 1;
        Ok(())
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        if self.keyword("not") {
            self.pos += 1;
            self.descend()?;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.compare()
    }

    fn compare(&mut self) -> Result<Expr, ParseError> {
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            self.descend()?;
            let inner = self.or()?;
            self.expect(Tok::RParen, "`)`")?;
            self.depth -= 1;
            return Ok(inner);
        }
        let left = self.operand()?;
        if let Some(Tok::Op(op)) = self.peek().cloned() {
            self.pos += 1;
            let right = self.operand()?;
            return Ok(Expr::Compare(op, left, right));
        }
        Ok(Expr::Test(left))
    }

    fn item_arg(&mut self) -> Result<ItemRef, ParseError> {
        match self.next() {
            Some(Tok::Ident(id)) => Ok(ItemRef { id, index: usize::MAX }),
            _ => {
                self.pos -= 1;
                Err(self.err("expected an item id"))
            }
        }
    }

    fn operand(&mut self) -> Result<Operand, ParseError> {
        if self.terms >= MAX_CONDITION_TERMS {
            return Err(self.err(format!("has more than {MAX_CONDITION_TERMS} terms")));
        }
        self.terms += 1;
        match self.next() {
            Some(Tok::Num(n)) => Ok(Operand::Num(n)),
            Some(Tok::Str(s)) => Ok(Operand::Str(s)),
            Some(Tok::Ident(id)) => match id.as_str() {
                "true" => Ok(Operand::Bool(true)),
                "false" => Ok(Operand::Bool(false)),
                "and" | "or" | "not" => {
                    self.pos -= 1;
                    Err(self.err(format!("unexpected `{id}`")))
                }
                "answered" | "missing" | "selected" if self.peek() == Some(&Tok::LParen) => {
                    self.pos += 1;
                    let item = self.item_arg()?;
                    let operand = match id.as_str() {
                        "answered" => Operand::Answered(item),
                        "missing" => Operand::Missing(item),
                        _ => {
                            self.expect(Tok::Comma, "`,`")?;
                            match self.next() {
                                Some(Tok::Str(s)) => Operand::Selected(item, s),
                                _ => {
                                    self.pos -= 1;
                                    return Err(self.err("expected an option code string"));
                                }
                            }
                        }
                    };
                    self.expect(Tok::RParen, "`)`")?;
                    Ok(operand)
                }
                _ => Ok(Operand::Item(ItemRef { id, index: usize::MAX })),
            },
            _ => {
                self.pos = self.pos.saturating_sub(1);
                Err(self.err("expected a value, an item id or `(`"))
            }
        }
    }
}

impl Expr {
    /// Parses a condition.
    pub fn parse(src: &str) -> Result<Expr, ParseError> {
        if let Some((column, _)) = src.char_indices().nth(MAX_CONDITION_CHARS) {
            return Err(ParseError {
                source_text: src.chars().take(64).collect::<String>() + "...",
                message: format!("is longer than {MAX_CONDITION_CHARS} characters"),
                column: src[..column].chars().count(),
            });
        }
        let toks = lex(src)?;
        let mut p = Parser { src, toks, pos: 0, depth: 0, terms: 0 };
        let e = p.or()?;
        if p.pos < p.toks.len() {
            return Err(p.err("unexpected text after the condition"));
        }
        Ok(e)
    }

    /// Every item reference in the condition.
    pub fn refs_mut(&mut self) -> Vec<&mut ItemRef> {
        let mut out = Vec::new();
        self.collect_refs(&mut out);
        out
    }

    fn collect_refs<'a>(&'a mut self, out: &mut Vec<&'a mut ItemRef>) {
        fn operand<'a>(o: &'a mut Operand, out: &mut Vec<&'a mut ItemRef>) {
            match o {
                Operand::Item(r) | Operand::Answered(r) | Operand::Missing(r) | Operand::Selected(r, _) => {
                    out.push(r)
                }
                Operand::Num(_) | Operand::Str(_) | Operand::Bool(_) => {}
            }
        }
        match self {
            Expr::Or(terms) | Expr::And(terms) => {
                for t in terms {
                    t.collect_refs(out);
                }
            }
            Expr::Not(a) => a.collect_refs(out),
            Expr::Compare(_, a, b) => {
                operand(a, out);
                operand(b, out);
            }
            Expr::Test(a) => operand(a, out),
        }
    }

    /// Indexes of the items the condition reads (after resolution).
    pub fn item_indexes(&self) -> Vec<usize> {
        let mut copy = self.clone();
        copy.refs_mut().into_iter().map(|r| r.index).collect()
    }

    /// Evaluates the condition; `value(i)` gives item `i`'s answer.
    pub fn eval<'a>(&self, value: &dyn Fn(usize) -> ExprValue<'a>) -> bool {
        match self {
            Expr::Or(terms) => terms.iter().any(|t| t.eval(value)),
            Expr::And(terms) => terms.iter().all(|t| t.eval(value)),
            Expr::Not(a) => !a.eval(value),
            Expr::Test(o) => matches!(operand_value(o, value), Scalar::Bool(true)),
            Expr::Compare(op, a, b) => {
                let (a, b) = (operand_value(a, value), operand_value(b, value));
                match (a, b) {
                    (Scalar::Num(x), Scalar::Num(y)) => match op {
                        CmpOp::Eq => x == y,
                        CmpOp::Ne => x != y,
                        CmpOp::Lt => x < y,
                        CmpOp::Le => x <= y,
                        CmpOp::Gt => x > y,
                        CmpOp::Ge => x >= y,
                    },
                    (Scalar::Str(x), Scalar::Str(y)) => match op {
                        CmpOp::Eq => x == y,
                        CmpOp::Ne => x != y,
                        CmpOp::Lt => x < y,
                        CmpOp::Le => x <= y,
                        CmpOp::Gt => x > y,
                        CmpOp::Ge => x >= y,
                    },
                    (Scalar::Bool(x), Scalar::Bool(y)) => match op {
                        CmpOp::Eq => x == y,
                        CmpOp::Ne => x != y,
                        _ => false,
                    },
                    _ => false,
                }
            }
        }
    }
}

enum Scalar<'a> {
    Num(f64),
    Str(&'a str),
    Bool(bool),
    None,
}

fn operand_value<'a, 'b>(o: &'b Operand, value: &dyn Fn(usize) -> ExprValue<'a>) -> Scalar<'b>
where
    'a: 'b,
{
    match o {
        Operand::Num(n) => Scalar::Num(*n),
        Operand::Str(s) => Scalar::Str(s),
        Operand::Bool(b) => Scalar::Bool(*b),
        Operand::Item(r) => match value(r.index) {
            ExprValue::Num(n) => Scalar::Num(n),
            ExprValue::Str(s) => Scalar::Str(s),
            ExprValue::None | ExprValue::Missing | ExprValue::Set(_) => Scalar::None,
        },
        Operand::Answered(r) => Scalar::Bool(!matches!(value(r.index), ExprValue::None | ExprValue::Missing)),
        Operand::Missing(r) => Scalar::Bool(matches!(value(r.index), ExprValue::Missing)),
        Operand::Selected(r, code) => match value(r.index) {
            ExprValue::Set(picks) => Scalar::Bool(picks.iter().any(|p| p == code)),
            ExprValue::Str(s) => Scalar::Bool(s == code),
            _ => Scalar::Bool(false),
        },
    }
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(src: &str, ids: &[&str]) -> Expr {
        let mut e = Expr::parse(src).expect("parses");
        for r in e.refs_mut() {
            r.index = ids.iter().position(|i| *i == r.id).expect("known id");
        }
        e
    }

    #[test]
    fn comparisons_with_blank_items_are_false_both_ways() {
        let e = resolved("q1 == \"yes\"", &["q1"]);
        let ne = resolved("q1 != \"yes\"", &["q1"]);
        let blank = |_: usize| ExprValue::None;
        assert!(!e.eval(&blank));
        assert!(!ne.eval(&blank));
        assert!(e.eval(&|_| ExprValue::Str("yes")));
    }

    #[test]
    fn and_or_not_and_parentheses_follow_precedence() {
        let e = resolved("not answered(a) or (b >= 3 and selected(c, \"x\"))", &["a", "b", "c"]);
        let vals = |i: usize| match i {
            0 => ExprValue::Num(1.0),
            1 => ExprValue::Num(4.0),
            _ => ExprValue::Set(vec!["x", "y"]),
        };
        assert!(e.eval(&vals));
        let vals2 = |i: usize| match i {
            0 => ExprValue::Num(1.0),
            1 => ExprValue::Num(2.0),
            _ => ExprValue::Set(vec!["x"]),
        };
        assert!(!e.eval(&vals2));
    }

    #[test]
    fn missing_codes_are_not_answers() {
        let e = resolved("answered(a)", &["a"]);
        let m = resolved("missing(a)", &["a"]);
        assert!(!e.eval(&|_| ExprValue::Missing));
        assert!(m.eval(&|_| ExprValue::Missing));
    }

    #[test]
    fn a_long_flat_or_chain_within_the_term_limit_parses_flat_and_evaluates() {
        let src = vec!["a == 1"; MAX_CONDITION_TERMS / 2].join(" or ");
        let e = resolved(&src, &["a"]);
        assert!(matches!(&e, Expr::Or(t) if t.len() == MAX_CONDITION_TERMS / 2));
        assert!(e.eval(&|_| ExprValue::Num(1.0)));
        assert!(!e.eval(&|_| ExprValue::Num(2.0)));
    }

    #[test]
    fn twenty_thousand_or_terms_are_refused_before_they_are_parsed() {
        let src = vec!["a == 1"; 20_000].join(" or ");
        let e = Expr::parse(&src).expect_err("too long");
        assert!(e.message.contains("longer than"), "{e}");
        assert!(e.to_string().len() < 300, "the error does not echo the whole condition");
        let terms = vec!["a"; MAX_CONDITION_TERMS + 1].join(" or ");
        assert!(terms.len() < MAX_CONDITION_CHARS);
        let e = Expr::parse(&terms).expect_err("too many terms");
        assert!(e.message.contains("more than 256 terms"), "{e}");
    }

    #[test]
    fn nesting_past_the_depth_limit_is_refused_without_recursing_into_it() {
        let ok = format!("{}a{}", "(".repeat(MAX_CONDITION_DEPTH), ")".repeat(MAX_CONDITION_DEPTH));
        assert!(Expr::parse(&ok).is_ok());
        let deep = format!("{}a{}", "(".repeat(MAX_CONDITION_DEPTH + 1), ")".repeat(MAX_CONDITION_DEPTH + 1));
        let e = Expr::parse(&deep).expect_err("too deep");
        assert!(e.message.contains("deeper than 32"), "{e}");
        let nots = format!("{}a", "not ".repeat(1000));
        assert!(Expr::parse(&nots).expect_err("too deep").message.contains("deeper"));
        let parens = "(".repeat(100_000);
        assert!(Expr::parse(&parens).is_err());
    }

    #[test]
    fn syntax_errors_give_a_column() {
        let e = Expr::parse("q1 == ").expect_err("incomplete");
        assert_eq!(e.column, 6);
        assert!(Expr::parse("q1 = 2").is_err());
        assert!(Expr::parse("(q1 > 2").is_err());
        assert!(Expr::parse("answered(\"x\")").is_err());
    }
}
