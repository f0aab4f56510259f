//! The XPath subset of XLSForm's `relevant` and `constraint` columns, and
//! its translation into fieldwatch conditions (`docs/instruments.md`).
//!
//! ```text
//! or    := and ("or" and)*
//! and   := cmp ("and" cmp)*
//! cmp   := sum (("=" | "!=" | "<" | "<=" | ">" | ">=") sum)?
//! sum   := prod (("+" | "-") prod)*
//! prod  := unary (("*" | "div" | "mod") unary)*
//! unary := "-" unary | atom
//! atom  := ${name} | "." | NUMBER | 'STRING' | "STRING" | NAME "(" args ")" | "(" or ")"
//! ```
//!
//! Everything this grammar reads is parsed; what a fieldwatch condition
//! cannot express (arithmetic, `if()`, `today()`, other functions) is
//! refused at translation with the reason.

use super::MAX_EXPRESSION_DEPTH;
use crate::instrument::expr::CmpOp;

mod translate;

pub(super) use translate::{Bounds, RefKind, bounds, to_condition};

/// A parsed XPath expression.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum X {
    Or(Box<X>, Box<X>),
    And(Box<X>, Box<X>),
    Cmp(CmpOp, Box<X>, Box<X>),
    Arith(char, Box<X>, Box<X>),
    Neg(Box<X>),
    Ref(String),
    Dot,
    Num(f64),
    Str(String),
    Call(String, Vec<X>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ref(String),
    Dot,
    Num(f64),
    Str(String),
    Name(String),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            c if c.is_whitespace() => i += 1,
            '$' if next == Some('{') => {
                let end = chars[i..].iter().position(|&c| c == '}').ok_or("`${` without its closing `}`")?;
                let name: String = chars[i + 2..i + end].iter().collect();
                if name.trim().is_empty() {
                    return Err("empty reference `${}`".into());
                }
                out.push(Tok::Ref(name.trim().to_string()));
                i += end + 1;
            }
            '\'' | '"' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&q| q == c)
                    .ok_or("a string without its closing quote")?;
                out.push(Tok::Str(chars[i + 1..i + 1 + end].iter().collect()));
                i += end + 2;
            }
            '.' if !next.is_some_and(|d| d.is_ascii_digit()) => {
                if next == Some('.') {
                    return Err("`..` (parent) is not supported".into());
                }
                out.push(Tok::Dot);
                i += 1;
            }
            c if c.is_ascii_digit() || c == '.' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                let s: String = chars[start..i].iter().collect();
                out.push(Tok::Num(s.parse().map_err(|_| format!("`{s}` is not a number"))?));
            }
            '(' | ')' | ',' | '+' | '-' | '*' | '=' | '<' | '>' | '!' => {
                let (tok, len) = match (c, next) {
                    ('(', _) => (Tok::LParen, 1),
                    (')', _) => (Tok::RParen, 1),
                    (',', _) => (Tok::Comma, 1),
                    ('!', Some('=')) => (Tok::Op("!="), 2),
                    ('<', Some('=')) => (Tok::Op("<="), 2),
                    ('>', Some('=')) => (Tok::Op(">="), 2),
                    ('<', _) => (Tok::Op("<"), 1),
                    ('>', _) => (Tok::Op(">"), 1),
                    ('=', _) => (Tok::Op("="), 1),
                    ('+', _) => (Tok::Op("+"), 1),
                    ('-', _) => (Tok::Op("-"), 1),
                    ('*', _) => (Tok::Op("*"), 1),
                    _ => return Err("`!` is not an operator (use `not()` or `!=`)".into()),
                };
                out.push(tok);
                i += len;
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '-' | ':' | '.'))
                {
                    i += 1;
                }
                let s: String = chars[start..i].iter().collect();
                out.push(match s.as_str() {
                    "and" => Tok::Op("and"),
                    "or" => Tok::Op("or"),
                    "div" => Tok::Op("div"),
                    "mod" => Tok::Op("mod"),
                    _ => Tok::Name(s),
                });
            }
            other => return Err(format!("unexpected character `{other}`")),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
}

/// Parses an expression of the subset.
pub(super) fn parse(src: &str) -> Result<X, String> {
    let toks = lex(src)?;
    if toks.is_empty() {
        return Err("empty expression".into());
    }
    let mut p = Parser { toks, pos: 0, depth: 0 };
    let x = p.or()?;
    if p.pos < p.toks.len() {
        return Err("unexpected text after the expression".into());
    }
    Ok(x)
}

impl Parser {
    fn peek_op(&self, ops: &[&str]) -> Option<&'static str> {
        match self.toks.get(self.pos) {
            Some(Tok::Op(o)) if ops.contains(o) => Some(o),
            _ => None,
        }
    }
    /// Bounds nesting before descending: every recursive rule enters here.
    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_EXPRESSION_DEPTH {
            return Err(format!("nested more than {MAX_EXPRESSION_DEPTH} levels deep"));
        }
        Ok(())
    }
    fn or(&mut self) -> Result<X, String> {
        self.enter()?;
        let mut x = self.and()?;
        while self.peek_op(&["or"]).is_some() {
            self.pos += 1;
            x = X::Or(Box::new(x), Box::new(self.and()?));
        }
        self.depth -= 1;
        Ok(x)
    }
    fn and(&mut self) -> Result<X, String> {
        let mut x = self.cmp()?;
        while self.peek_op(&["and"]).is_some() {
            self.pos += 1;
            x = X::And(Box::new(x), Box::new(self.cmp()?));
        }
        Ok(x)
    }
    fn cmp(&mut self) -> Result<X, String> {
        let a = self.sum()?;
        let Some(op) = self.peek_op(&["=", "!=", "<", "<=", ">", ">="]) else { return Ok(a) };
        self.pos += 1;
        let op = match op {
            "=" => CmpOp::Eq,
            "!=" => CmpOp::Ne,
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            ">" => CmpOp::Gt,
            _ => CmpOp::Ge,
        };
        Ok(X::Cmp(op, Box::new(a), Box::new(self.sum()?)))
    }
    fn sum(&mut self) -> Result<X, String> {
        let mut x = self.prod()?;
        while let Some(op) = self.peek_op(&["+", "-"]) {
            self.pos += 1;
            x = X::Arith(op.chars().next().unwrap_or('+'), Box::new(x), Box::new(self.prod()?));
        }
        Ok(x)
    }
    fn prod(&mut self) -> Result<X, String> {
        let mut x = self.unary()?;
        while let Some(op) = self.peek_op(&["*", "div", "mod"]) {
            self.pos += 1;
            let c = match op {
                "*" => '*',
                "div" => '/',
                _ => '%',
            };
            x = X::Arith(c, Box::new(x), Box::new(self.unary()?));
        }
        Ok(x)
    }
    fn unary(&mut self) -> Result<X, String> {
        if self.peek_op(&["-"]).is_some() {
            self.pos += 1;
            self.enter()?;
            let x = self.unary()?;
            self.depth -= 1;
            return Ok(match x {
                X::Num(n) => X::Num(-n),
                x => X::Neg(Box::new(x)),
            });
        }
        self.atom()
    }
    fn atom(&mut self) -> Result<X, String> {
        let tok = self.toks.get(self.pos).cloned().ok_or("the expression ends too early")?;
        self.pos += 1;
        match tok {
            Tok::Ref(n) => Ok(X::Ref(n)),
            Tok::Dot => Ok(X::Dot),
            Tok::Num(n) => Ok(X::Num(n)),
            Tok::Str(s) => Ok(X::Str(s)),
            Tok::LParen => {
                let x = self.or()?;
                self.expect_rparen()?;
                Ok(x)
            }
            Tok::Name(name) => {
                if self.toks.get(self.pos) != Some(&Tok::LParen) {
                    return Err(format!("`{name}` is not supported (only `${{name}}` references and `.`)"));
                }
                self.pos += 1;
                let mut args = Vec::new();
                if self.toks.get(self.pos) == Some(&Tok::RParen) {
                    self.pos += 1;
                    return Ok(X::Call(name, args));
                }
                loop {
                    args.push(self.or()?);
                    match self.toks.get(self.pos) {
                        Some(Tok::Comma) => self.pos += 1,
                        _ => break,
                    }
                }
                self.expect_rparen()?;
                Ok(X::Call(name, args))
            }
            t => Err(format!("unexpected {}", describe(&t))),
        }
    }
    fn expect_rparen(&mut self) -> Result<(), String> {
        if self.toks.get(self.pos) == Some(&Tok::RParen) {
            self.pos += 1;
            Ok(())
        } else {
            Err("missing `)`".into())
        }
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Op(o) => format!("`{o}`"),
        Tok::RParen => "`)`".into(),
        Tok::Comma => "`,`".into(),
        _ => "token".into(),
    }
}

/// Every `${name}` an expression refers to, in order.
pub(super) fn refs(x: &X) -> Vec<String> {
    fn walk(x: &X, out: &mut Vec<String>) {
        match x {
            X::Or(a, b) | X::And(a, b) | X::Cmp(_, a, b) | X::Arith(_, a, b) => {
                walk(a, out);
                walk(b, out);
            }
            X::Neg(a) => walk(a, out),
            X::Ref(n) => out.push(n.clone()),
            X::Call(_, args) => args.iter().for_each(|a| walk(a, out)),
            X::Dot | X::Num(_) | X::Str(_) => {}
        }
    }
    let mut out = Vec::new();
    walk(x, &mut out);
    out
}
