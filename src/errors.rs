//! Showing an error with its causes.
//!
//! Our error enums follow one rule: a wrapped error is either shown in the
//! message or returned as `source()`, never both. So `{e}` alone shows only
//! the top of the story (`cannot read config file x`); whoever reports an
//! error — `main`, or a log line — shows the whole chain with [`chain`]:
//!
//! ```
//! let e = std::io::Error::other("disk full");
//! tracing::warn!(error = %fieldwatch::errors::chain(&e), "cannot save");
//! ```

use std::error::Error;
use std::fmt;

/// An error and its causes, displayed as `top: cause: cause`.
#[derive(Debug, Clone, Copy)]
pub struct Chain<'a>(&'a (dyn Error + 'static));

/// `e` and its causes, each after a `: `.
pub fn chain<'a>(e: &'a (dyn Error + 'static)) -> Chain<'a> {
    Chain(e)
}

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Some library errors break our rule and do both: rdkafka's
        // `KafkaError` shows its code in the message and returns it as
        // `source()`. A cause the text already ends with is not repeated.
        let mut shown = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(e) = cause {
            let text = e.to_string();
            if !shown.ends_with(&text) {
                shown.push_str(": ");
                shown.push_str(&text);
            }
            cause = e.source();
        }
        f.write_str(&shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("cannot read config file {0}")]
        Read(&'static str, #[source] std::io::Error),
    }

    #[test]
    fn a_chain_shows_every_cause_after_a_colon() {
        let e = Outer::Read("x.yaml", std::io::Error::new(std::io::ErrorKind::NotFound, "No such file"));
        assert_eq!(chain(&e).to_string(), "cannot read config file x.yaml: No such file");
    }

    /// Shows its cause in its message and returns it as the source, as
    /// rdkafka's `KafkaError` does.
    #[derive(Debug, thiserror::Error)]
    #[error("consumer commit error: {0}")]
    struct Both(#[source] std::io::Error);

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let e = Outer::Read("x.yaml", std::io::Error::other("disk full"));
        let both = Both(std::io::Error::other("unknown member"));
        assert_eq!(chain(&both).to_string(), "consumer commit error: unknown member");
        assert_eq!(chain(&e).to_string(), "cannot read config file x.yaml: disk full");
    }

    #[test]
    fn an_error_without_a_cause_shows_only_itself() {
        let e = std::io::Error::other("disk full");
        assert_eq!(chain(&e).to_string(), "disk full");
    }
}
