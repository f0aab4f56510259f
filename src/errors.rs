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
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
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

    #[test]
    fn an_error_without_a_cause_shows_only_itself() {
        let e = std::io::Error::other("disk full");
        assert_eq!(chain(&e).to_string(), "disk full");
    }
}
