//! Typed, strict configuration: one YAML file (`config/fieldwatch.yaml`
//! documents every key), overridable by environment variables, with
//! cross-field checks in [`Config::validate`].
//!
//! Environment overrides: `FIELDWATCH__SECTION__KEY=value` sets `section.key`
//! (double underscores separate levels, names are lowercased, the value is
//! read as a YAML scalar), e.g. `FIELDWATCH__KAFKA__BROKERS=kafka:9092`.
//! The environment is read through a function so tests can pass their own.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
// The file is read into a JSON-model tree (any YAML config is plain maps,
// lists and scalars) so that environment overrides can be set into it.
use serde_json::Value;

use crate::aggregate::AggregateConfig;
use crate::http::HttpConfig;
use crate::ingest::IngestConfig;
use crate::kafka::KafkaConfig;

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "FIELDWATCH__";

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Instrument files or directories. Empty: the built-in demo study.
    #[serde(default)]
    pub instruments: Vec<PathBuf>,
    /// Where `serve` and `broker` keep data (the embedded broker's SQLite file).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The embedded broker (used when `kafka.brokers` is not set).
    #[serde(default)]
    pub broker: EmbeddedBrokerConfig,
    /// Kafka connection and topics.
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// gRPC ingest.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// The aggregator.
    #[serde(default)]
    pub aggregate: AggregateConfig,
    /// Metrics, JSON API and live page.
    #[serde(default)]
    pub http: HttpConfig,
    /// Logging.
    #[serde(default)]
    pub log: crate::log::LogConfig,
}

/// Settings of the in-process broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedBrokerConfig {
    /// Kafka listener of the embedded broker; port 0 picks a free port.
    /// Must be a literal IP address: it is also the advertised address.
    #[serde(default = "default_broker_listen")]
    pub listen: std::net::SocketAddr,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}
fn default_broker_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}

impl Default for EmbeddedBrokerConfig {
    fn default() -> Self {
        EmbeddedBrokerConfig { listen: default_broker_listen() }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            instruments: Vec::new(),
            data_dir: default_data_dir(),
            broker: EmbeddedBrokerConfig::default(),
            kafka: KafkaConfig::default(),
            ingest: IngestConfig::default(),
            aggregate: AggregateConfig::default(),
            http: HttpConfig::default(),
            log: crate::log::LogConfig::default(),
        }
    }
}

/// Configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file or an override does not fit the schema.
    #[error("invalid configuration ({origin}): {message}")]
    Invalid {
        /// The file, or "environment".
        origin: String,
        /// What is wrong, with the key path.
        message: String,
    },
}

impl Config {
    /// Loads `path` (or the defaults) and applies environment overrides
    /// from `env` (pass `std::env::vars` outside tests).
    pub fn load<I>(path: Option<&Path>, env: impl FnOnce() -> I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        // The file as a tree, so that overrides can be set into it.
        let mut tree = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|source| ConfigError::Read { path: p.to_path_buf(), source })?;
                if text.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
                    Value::Null
                } else {
                    crate::yaml::from_str::<Value>(&text).map_err(|e| ConfigError::Invalid {
                        origin: p.display().to_string(),
                        message: e.to_string(),
                    })?
                }
            }
            None => Value::Null,
        };
        if tree.is_null() {
            tree = Value::Object(Default::default());
        }
        let mut overridden = Vec::new();
        for (k, v) in env() {
            let Some(rest) = k.strip_prefix(ENV_PREFIX) else { continue };
            let keys: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            let value: Value = crate::yaml::from_str(&v).unwrap_or(Value::String(v.clone()));
            set_path(&mut tree, &keys, value);
            overridden.push(k);
        }
        let origin = match (path, overridden.is_empty()) {
            (Some(p), true) => p.display().to_string(),
            (Some(p), false) => format!("{} with {}", p.display(), overridden.join(", ")),
            (None, false) => overridden.join(", "),
            (None, true) => "defaults".into(),
        };
        let config: Config = serde_json::from_value(tree)
            .map_err(|e| ConfigError::Invalid { origin: origin.clone(), message: e.to_string() })?;
        config.validate().map_err(|message| ConfigError::Invalid { origin, message })?;
        Ok(config)
    }

    /// Cross-field checks.
    pub fn validate(&self) -> Result<(), String> {
        // `ingest` is checked by the commands that run it: `serve` may
        // supply the demo HMAC key first.
        self.kafka.validate().map_err(|e| e.to_string())?;
        self.http.validate()?;
        if !self.broker.listen.ip().is_loopback() && self.kafka.brokers.is_none() {
            tracing::warn!("embedded broker listens on a non-loopback address");
        }
        if self.ingest.listen.port() != 0 && self.ingest.listen == self.http.listen {
            return Err(
                "ingest.listen and http.listen must differ: metrics and API are separate from ingest".into(),
            );
        }
        Ok(())
    }
}

fn set_path(tree: &mut Value, keys: &[String], value: Value) {
    let Some((first, rest)) = keys.split_first() else {
        *tree = value;
        return;
    };
    if !tree.is_object() {
        *tree = Value::Object(Default::default());
    }
    if let Value::Object(m) = tree {
        let slot = m.entry(first.clone()).or_insert(Value::Null);
        set_path(slot, rest, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_nested_keys() {
        let c = Config::load(None, || {
            vec![
                ("FIELDWATCH__KAFKA__BROKERS".to_string(), "10.0.0.1:9092".to_string()),
                ("FIELDWATCH__KAFKA__PARTITIONS".to_string(), "12".to_string()),
                ("OTHER".to_string(), "x".to_string()),
            ]
        })
        .expect("valid");
        assert_eq!(c.kafka.brokers.as_deref(), Some("10.0.0.1:9092"));
        assert_eq!(c.kafka.partitions, 12);
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let err = Config::load(None, || vec![("FIELDWATCH__KAFKA__BROKRS".to_string(), "x".to_string())])
            .expect_err("typo");
        assert!(err.to_string().contains("brokrs"), "{err}");
    }

    #[test]
    fn the_shipped_config_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/fieldwatch.yaml");
        Config::load(Some(&path), Vec::new).expect("config/fieldwatch.yaml is valid");
    }
}
