//! Read-your-writes: where ingest stored a record, as a token a client
//! hands back to the JSON API (`?after=TOKEN`), and the one question the
//! aggregator's view answers about it.
//!
//! A token is `<partition>:<offset>` of the record in the responses topic
//! (clients treat it as opaque). The view includes the record once that
//! partition's next offset is above the record's offset (next offset =
//! last applied + 1). [`view_includes`] is the only place that asks the
//! aggregator; a study-wide view answers the same question for partitions
//! other instances own.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::aggregate::LiveState;

/// Where one record was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReadToken {
    /// Partition of the responses topic.
    pub partition: i32,
    /// The record's offset in it.
    pub offset: i64,
}

/// Why a token does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadTokenError {
    /// Not `<partition>:<offset>` with two non-negative integers.
    #[error("a read token is <partition>:<offset> with two non-negative integers")]
    Malformed,
    /// More tokens than [`MAX_TOKENS`] in one `after`.
    #[error("at most {MAX_TOKENS} read tokens per request")]
    TooMany,
}

/// Most tokens one `after` parameter may carry (comma-separated); bounds
/// the work of one read before it starts.
pub const MAX_TOKENS: usize = 1000;

impl fmt::Display for ReadToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.partition, self.offset)
    }
}

impl FromStr for ReadToken {
    type Err = ReadTokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (p, o) = s.trim().split_once(':').ok_or(ReadTokenError::Malformed)?;
        let partition: i32 = p.parse().map_err(|_| ReadTokenError::Malformed)?;
        let offset: i64 = o.parse().map_err(|_| ReadTokenError::Malformed)?;
        if partition < 0 || offset < 0 {
            return Err(ReadTokenError::Malformed);
        }
        Ok(ReadToken { partition, offset })
    }
}

/// Parses the comma-separated tokens of an `after` parameter. For each
/// partition only the highest offset matters, so that is all that is kept.
pub fn parse_after(after: &str) -> Result<Vec<ReadToken>, ReadTokenError> {
    let mut tokens: Vec<ReadToken> = Vec::new();
    for (i, part) in after.split(',').filter(|p| !p.trim().is_empty()).enumerate() {
        if i >= MAX_TOKENS {
            return Err(ReadTokenError::TooMany);
        }
        let t: ReadToken = part.parse()?;
        match tokens.iter_mut().find(|k| k.partition == t.partition) {
            Some(k) => k.offset = k.offset.max(t.offset),
            None => tokens.push(t),
        }
    }
    Ok(tokens)
}

/// Does the view include the record at `token`? `false` while the
/// partition's next offset in the study-wide view (the one the JSON API
/// answers from, whoever owns the partition) has not passed it.
pub fn view_includes(state: &LiveState, token: ReadToken) -> bool {
    state.view().includes(token.partition, token.offset)
}

/// How often [`wait_until_included`] looks again; reads only, never on
/// the write path.
const POLL: Duration = Duration::from_millis(20);

/// Waits until the view includes every token, at most `wait`. Returns
/// whether it does.
pub async fn wait_until_included(view: &LiveState, tokens: &[ReadToken], wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if tokens.iter().all(|t| view_includes(view, *t)) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL.min(deadline - tokio::time::Instant::now())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_prints_as_partition_colon_offset_and_parses_back() {
        let t = ReadToken { partition: 3, offset: 1234 };
        assert_eq!(t.to_string(), "3:1234");
        assert_eq!("3:1234".parse::<ReadToken>(), Ok(t));
    }

    #[test]
    fn malformed_and_negative_tokens_are_refused() {
        for bad in ["", "3", "3:", ":4", "a:b", "-1:4", "1:-4", "1:2:3"] {
            assert_eq!(bad.parse::<ReadToken>(), Err(ReadTokenError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn several_tokens_keep_the_highest_offset_per_partition() {
        let got = parse_after("0:5,1:2,0:9,,1:1").expect("parse");
        assert_eq!(got, vec![ReadToken { partition: 0, offset: 9 }, ReadToken { partition: 1, offset: 2 }]);
    }

    #[test]
    fn the_view_includes_a_record_once_its_partition_has_applied_past_it() {
        let view =
            LiveState::new(std::sync::Arc::new(crate::instrument::Catalog::demo()), Default::default());
        let token = ReadToken { partition: 1, offset: 1 };
        assert!(!view_includes(&view, token), "a partition the view does not hold");
        view.assign(1, None);
        view.apply(1, 0, None);
        view.rebuild_view_from_owned();
        assert!(!view_includes(&view, token), "offset 1 is not applied yet");
        view.apply(1, 1, None);
        assert!(!view_includes(&view, token), "applied, but not in the view until it is rebuilt");
        view.rebuild_view_from_owned();
        assert!(view_includes(&view, token));
        assert!(!view_includes(&view, ReadToken { partition: 0, offset: 0 }));
    }

    #[tokio::test]
    async fn waiting_for_a_record_the_view_never_gets_gives_up_after_the_wait() {
        let view =
            LiveState::new(std::sync::Arc::new(crate::instrument::Catalog::demo()), Default::default());
        view.assign(0, None);
        let start = tokio::time::Instant::now();
        let token = ReadToken { partition: 0, offset: 5 };
        assert!(!wait_until_included(&view, &[token], Duration::from_millis(100)).await);
        assert!(start.elapsed() >= Duration::from_millis(100));
        assert!(wait_until_included(&view, &[], Duration::ZERO).await, "no token: included at once");
    }

    #[test]
    fn more_tokens_than_the_limit_are_refused_before_parsing_the_rest() {
        let many = vec!["0:1"; MAX_TOKENS + 1].join(",");
        assert_eq!(parse_after(&many), Err(ReadTokenError::TooMany));
    }
}
