//! The input of `submit`, read a line at a time: each non-empty line is
//! parsed ([`crate::fieldwork::parse_line`]) and encoded once, or reported
//! with its line number when it is not a submission object.

use std::io::BufRead;

use bytes::Bytes;
use prost::Message;

use super::SubmitError;
use super::window::Pending;
use crate::fieldwork::{Line, parse_line};
use crate::proto::v1::SubmitRequest;

/// What the next non-empty line holds.
#[derive(Debug)]
pub(super) enum Read {
    /// A record to send.
    Record(Pending),
    /// A line that is not a submission object: its number and the parse error.
    Invalid(usize, serde_json::Error),
}

/// The lines of the input, numbered from 1 (empty lines count).
pub(super) struct Input<R> {
    lines: std::iter::Enumerate<std::io::Lines<R>>,
    done: bool,
}

impl<R: BufRead> Input<R> {
    pub fn new(input: R) -> Self {
        Input { lines: input.lines().enumerate(), done: false }
    }

    /// Whether the input has ended.
    pub fn done(&self) -> bool {
        self.done
    }

    /// The next non-empty line, or `None` at the end of the input.
    pub fn next(&mut self) -> Result<Option<Read>, SubmitError> {
        while !self.done {
            let Some((n, line)) = self.lines.next() else {
                self.done = true;
                break;
            };
            let line = line.map_err(SubmitError::Read)?;
            if line.trim().is_empty() {
                continue;
            }
            let request = match parse_line(&line) {
                Ok(Line::Interview(s)) => SubmitRequest { submission: Some((*s).into()), disposition: None },
                Ok(Line::Disposition(d)) => SubmitRequest { submission: None, disposition: Some(d.into()) },
                Err(e) => return Ok(Some(Read::Invalid(n + 1, e))),
            };
            let bytes = Bytes::from(request.encode_to_vec());
            return Ok(Some(Read::Record(Pending { line: n + 1, bytes })));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVIEW: &str = r#"{"study":"le-trafficking","form":"investigator","respondent_id":"r1","submission_id":"s1","answers":{}}"#;
    const DISPOSITION: &str = r#"{"kind":"disposition","study":"le-trafficking","case_id":"c1","disposition":"refusal","time":"2005-03-09T15:20:00Z"}"#;

    #[test]
    fn lines_are_numbered_counting_empty_ones_and_encoded_once() {
        let text = format!("{INTERVIEW}\n\n  \nnot json\n{DISPOSITION}\n");
        let mut input = Input::new(text.as_bytes());
        let Some(Read::Record(first)) = input.next().expect("read") else { panic!("a record") };
        assert_eq!(first.line, 1);
        let decoded = SubmitRequest::decode(first.bytes).expect("decodes");
        assert_eq!(decoded.submission.expect("an interview").submission_id, "s1");
        assert!(matches!(input.next().expect("read"), Some(Read::Invalid(4, _))));
        let Some(Read::Record(last)) = input.next().expect("read") else { panic!("a record") };
        assert_eq!(last.line, 5);
        let decoded = SubmitRequest::decode(last.bytes).expect("decodes");
        assert_eq!(decoded.disposition.expect("a disposition").case_id, "c1");
        assert!(!input.done());
        assert!(input.next().expect("read").is_none());
        assert!(input.done());
        assert!(input.next().expect("read").is_none());
    }
}
