//! Logs to stderr for people or for log collectors (`log.format`): text,
//! coloured only when stderr is a terminal, or one JSON object per line.
//! The filter is `RUST_LOG` when set, else `info` with the embedded
//! broker's chatter at `warn`.

use std::io::IsTerminal;

use serde::{Deserialize, Serialize};

/// Logging settings (`log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default): one readable line per event, with ANSI colours
    /// only when stderr is a terminal. `json`: one JSON object per line
    /// (`timestamp`, `level`, `target`, `fields`, `span`) for log
    /// collectors.
    #[serde(default)]
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The default filter when `RUST_LOG` is not set.
const DEFAULT_FILTER: &str = "info,tansu=warn,libsql=warn";

/// Installs the process's subscriber writing to stderr. Call once, early;
/// a second call does nothing (the first subscriber stays).
pub fn init(config: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_is_text_unless_json_is_asked_for_and_other_values_are_refused() {
        let c: LogConfig = crate::yaml::from_str("{}").expect("empty");
        assert_eq!(c.format, LogFormat::Text);
        let c: LogConfig = crate::yaml::from_str("format: json").expect("json");
        assert_eq!(c.format, LogFormat::Json);
        assert!(crate::yaml::from_str::<LogConfig>("format: xml").is_err());
        assert!(crate::yaml::from_str::<LogConfig>("colour: true").is_err());
    }
}
