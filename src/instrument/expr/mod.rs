//! The condition language of relevance (skip) conditions and constraints.
//!
//! ```text
//! expr    := or
//! or      := and ("or" and)*
//! and     := not ("and" not)*
//! not     := "not" not | compare
//! compare := sum (("==" | "!=" | "<" | "<=" | ">" | ">=") sum)?
//! sum     := prod (("+" | "-") prod)*
//! prod    := unary (("*" | "/" | "%") unary)*
//! unary   := "-" unary | atom
//! atom    := NUMBER | "STRING" | ITEM | "true" | "false" | today()
//!          | answered(ITEM) | selected(ITEM, "OPTION") | missing(ITEM)
//!          | if(expr, expr, expr) | "(" expr ")"
//! ```
//!
//! Precedence is XPath's (XLSForm's): `or` < `and` < comparison < `+ -` <
//! `* / %` < unary minus; `/` and `%` are XPath's `div` and `mod`.
//!
//! A condition is bounded before it is parsed further: at most
//! [`MAX_CONDITION_CHARS`] characters, [`MAX_CONDITION_TERMS`] operands and
//! [`MAX_CONDITION_DEPTH`] levels of parentheses, `not`, unary minus and
//! `if`. `a or b or c` and `a + b - c` are one flat node each, not a chain,
//! so evaluating (and dropping) a condition recurses at most as deep as its
//! nesting: no instrument can overflow the stack of the service that loads it.
//!
//! `ITEM` is an item id of the same form. An item that is blank, hidden or
//! answered with a missing code has no value: every comparison with it is
//! false, so `q12 == "yes"` and `q12 != "yes"` are both false for a blank
//! `q12`, and arithmetic on it has no value either. `answered(q)` is true for
//! a substantive answer, `missing(q)` for a missing code, `selected(q, "x")`
//! when multi-select `q` picked option `x`. The rest of the evaluation
//! ([`eval`]) follows XPath 1.0: a number compared with a string compares
//! the string's number, `<`-style comparisons compare numbers, a
//! multi-select's value is its picks joined by spaces (`q == "a"`: exactly
//! `a` picked), `today()` is the interview's date.

use std::fmt;

mod eval;
mod lex;
#[cfg(test)]
mod tests;

pub use eval::{Env, days_of_millis};
use lex::{Tok, lex};

/// Longest condition, in characters.
pub const MAX_CONDITION_CHARS: usize = 4096;
/// Most operands (values, item references, function calls) in one condition.
pub const MAX_CONDITION_TERMS: usize = 256;
/// Deepest nesting of parentheses, `not`, unary minus and `if` in one condition.
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
    Compare(CmpOp, Box<Expr>, Box<Expr>),
    /// `a + b - c * ...` at one precedence level: the first term, then each
    /// further term with the operator before it, folded from the left.
    Arith(Box<Expr>, Vec<(ArithOp, Expr)>),
    /// `-a`.
    Neg(Box<Expr>),
    /// `if(condition, then, else)`.
    If(Box<Expr>, Box<Expr>, Box<Expr>),
    /// `today()`: the interview's date, as days since 1970-01-01.
    Today,
    /// A lone operand (`true`, `answered(q1)`, `3`, `q1`).
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

impl CmpOp {
    /// The operator with its sides swapped (`3 < x` is `x > 3`).
    pub fn flip(self) -> CmpOp {
        match self {
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            c => c,
        }
    }
}

/// Arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/` (XPath `div`): floating-point division.
    Div,
    /// `%` (XPath `mod`): the remainder, with the sign of the dividend.
    Mod,
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
    /// Answered, but its value is not kept (text): `answered()` holds,
    /// comparisons are false.
    Unknown,
    /// A number (scale, count, number).
    Num(f64),
    /// A single code (yes/no, choice).
    Str(&'a str),
    /// The picked option codes of a multi-select, in submitted order.
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

struct Parser<'s> {
    src: &'s str,
    toks: Vec<(Tok, usize)>,
    pos: usize,
    /// Parentheses, `not`s, unary minuses and `if`s open at this point;
    /// bounded by [`MAX_CONDITION_DEPTH`] before the parser recurses deeper.
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

    /// One level deeper (a `not`, a parenthesis, a unary minus or an `if`),
    /// refused past [`MAX_CONDITION_DEPTH`] before recursing.
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
        let left = self.arith(false)?;
        if let Some(Tok::Op(op)) = self.peek().cloned() {
            self.pos += 1;
            let right = self.arith(false)?;
            return Ok(Expr::Compare(op, Box::new(left), Box::new(right)));
        }
        Ok(left)
    }

    /// `sum` (`product` false) or `prod` (true): a flat chain of terms.
    fn arith(&mut self, product: bool) -> Result<Expr, ParseError> {
        let term = |p: &mut Self| if product { p.unary() } else { p.arith(true) };
        let first = term(self)?;
        let mut rest = Vec::new();
        while let Some(Tok::Arith(op)) = self.peek().cloned() {
            let is_product = matches!(op, ArithOp::Mul | ArithOp::Div | ArithOp::Mod);
            if is_product != product {
                break;
            }
            self.pos += 1;
            rest.push((op, term(self)?));
        }
        Ok(if rest.is_empty() { first } else { Expr::Arith(Box::new(first), rest) })
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.peek() == Some(&Tok::Arith(ArithOp::Sub)) {
            self.pos += 1;
            self.descend()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(match inner {
                Expr::Test(Operand::Num(n)) => Expr::Test(Operand::Num(-n)),
                e => Expr::Neg(Box::new(e)),
            });
        }
        self.atom()
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

    fn atom(&mut self) -> Result<Expr, ParseError> {
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            self.descend()?;
            let inner = self.or()?;
            self.expect(Tok::RParen, "`)`")?;
            self.depth -= 1;
            return Ok(inner);
        }
        if self.terms >= MAX_CONDITION_TERMS {
            return Err(self.err(format!("has more than {MAX_CONDITION_TERMS} terms")));
        }
        self.terms += 1;
        let call = self.toks.get(self.pos + 1).map(|t| &t.0) == Some(&Tok::LParen);
        match self.next() {
            Some(Tok::Num(n)) => Ok(Expr::Test(Operand::Num(n))),
            Some(Tok::Str(s)) => Ok(Expr::Test(Operand::Str(s))),
            Some(Tok::Ident(id)) => match id.as_str() {
                "true" => Ok(Expr::Test(Operand::Bool(true))),
                "false" => Ok(Expr::Test(Operand::Bool(false))),
                "and" | "or" | "not" => {
                    self.pos -= 1;
                    Err(self.err(format!("unexpected `{id}`")))
                }
                "today" if call => {
                    self.pos += 1;
                    self.expect(Tok::RParen, "`)` (`today()` takes no arguments)")?;
                    Ok(Expr::Today)
                }
                "if" if call => {
                    self.pos += 1;
                    self.descend()?;
                    let c = self.or()?;
                    self.expect(Tok::Comma, "`,`")?;
                    let a = self.or()?;
                    self.expect(Tok::Comma, "`,`")?;
                    let b = self.or()?;
                    self.expect(Tok::RParen, "`)`")?;
                    self.depth -= 1;
                    Ok(Expr::If(Box::new(c), Box::new(a), Box::new(b)))
                }
                "answered" | "missing" | "selected" if call => {
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
                    Ok(Expr::Test(operand))
                }
                _ if call => {
                    self.pos -= 1;
                    Err(self.err(format!("`{id}()` is not a function of the condition language")))
                }
                _ => Ok(Expr::Test(Operand::Item(ItemRef { id, index: usize::MAX }))),
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
        match self {
            Expr::Or(terms) | Expr::And(terms) => {
                for t in terms {
                    t.collect_refs(out);
                }
            }
            Expr::Not(a) | Expr::Neg(a) => a.collect_refs(out),
            Expr::Compare(_, a, b) => {
                a.collect_refs(out);
                b.collect_refs(out);
            }
            Expr::Arith(first, rest) => {
                first.collect_refs(out);
                for (_, t) in rest {
                    t.collect_refs(out);
                }
            }
            Expr::If(c, a, b) => {
                c.collect_refs(out);
                a.collect_refs(out);
                b.collect_refs(out);
            }
            Expr::Today => {}
            Expr::Test(o) => match o {
                Operand::Item(r) | Operand::Answered(r) | Operand::Missing(r) | Operand::Selected(r, _) => {
                    out.push(r)
                }
                Operand::Num(_) | Operand::Str(_) | Operand::Bool(_) => {}
            },
        }
    }

    /// Indexes of the items the condition reads (after resolution).
    pub fn item_indexes(&self) -> Vec<usize> {
        let mut copy = self.clone();
        copy.refs_mut().into_iter().map(|r| r.index).collect()
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
