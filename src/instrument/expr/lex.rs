//! Tokens of the condition language.

use super::{ArithOp, CmpOp, ParseError};

/// A token.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Num(f64),
    Str(String),
    Ident(String),
    Op(CmpOp),
    Arith(ArithOp),
    LParen,
    RParen,
    Comma,
}
pub(super) fn lex(src: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
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
        let single = match c {
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            ',' => Some(Tok::Comma),
            '+' => Some(Tok::Arith(ArithOp::Add)),
            '-' => Some(Tok::Arith(ArithOp::Sub)),
            '*' => Some(Tok::Arith(ArithOp::Mul)),
            '/' => Some(Tok::Arith(ArithOp::Div)),
            '%' => Some(Tok::Arith(ArithOp::Mod)),
            _ => None,
        };
        if let Some(tok) = single {
            out.push((tok, start));
            i += 1;
            continue;
        }
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
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
            c if c.is_ascii_digit() || c == '.' => {
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
