//! Where a command's Kafka clients connect: the configured brokers, or the
//! embedded Kafka-protocol broker (tansu) started in a data directory.
//!
//! [`bootstrap_or_embedded`] is the one start-up step `serve`, `bench` and
//! `bench-restore` share: use `--brokers` / `kafka.brokers` when set (after
//! waiting until a broker answers), else start the embedded broker (feature
//! `embedded-broker`, see [`EmbeddedBroker`]).
//!
//! Entry points: [`bootstrap_or_embedded`], `EmbeddedBroker::start`,
//! `run_standalone`.

#[cfg(feature = "embedded-broker")]
mod embedded;

use std::net::SocketAddr;
use std::path::Path;

#[cfg(feature = "embedded-broker")]
pub use embedded::{BrokerConfig, BrokerError, EmbeddedBroker, run_standalone};

use crate::kafka::{self, KafkaConfig, KafkaError};

/// The Kafka cluster a command's clients connect to, and the embedded broker
/// behind it if one was started. Stop it with [`Bootstrap::shutdown`].
#[derive(Debug)]
pub struct Bootstrap {
    servers: String,
    #[cfg(feature = "embedded-broker")]
    embedded: Option<EmbeddedBroker>,
}

/// Errors of [`bootstrap_or_embedded`].
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// No configured broker answered a metadata request in time.
    #[error("waiting for the configured Kafka brokers")]
    Unreachable(#[source] KafkaError),
    /// The embedded broker did not start.
    #[cfg(feature = "embedded-broker")]
    #[error("starting the embedded broker")]
    Embedded(#[source] BrokerError),
    /// No brokers configured and no embedded broker in this build.
    #[error(
        "no Kafka brokers are configured (kafka.brokers, --brokers) and this build has no embedded broker (feature `embedded-broker`)"
    )]
    NoEmbeddedBroker,
}

impl Bootstrap {
    /// Bootstrap servers for the clients (`host:port,...`).
    pub fn servers(&self) -> &str {
        &self.servers
    }

    /// True when the servers are the embedded broker started here.
    pub fn is_embedded(&self) -> bool {
        #[cfg(feature = "embedded-broker")]
        {
            self.embedded.is_some()
        }
        #[cfg(not(feature = "embedded-broker"))]
        false
    }

    /// One line for reports: `external (host:port)` or `embedded tansu/SQLite (ip:port)`.
    pub fn describe(&self) -> String {
        if self.is_embedded() {
            format!("embedded tansu/SQLite ({})", self.servers)
        } else {
            format!("external ({})", self.servers)
        }
    }

    /// Stops the embedded broker, if one was started, and waits until its
    /// port and database are free; nothing to do for configured brokers.
    /// Close the clients first, or they log reconnect errors.
    pub async fn shutdown(self) {
        #[cfg(feature = "embedded-broker")]
        if let Some(b) = self.embedded {
            b.shutdown().await;
        }
    }
}

/// Uses `brokers` when set, once one of them answers a metadata request
/// (with `kafka`'s client properties, within its admin timeout); otherwise
/// starts the embedded broker listening on `listen` (port 0 picks a free
/// port) with its SQLite database under `data_dir`.
pub async fn bootstrap_or_embedded(
    kafka: &KafkaConfig,
    brokers: Option<&str>,
    listen: SocketAddr,
    data_dir: &Path,
) -> Result<Bootstrap, BootstrapError> {
    if let Some(b) = brokers {
        kafka::wait_for_broker(kafka, b, kafka.admin_timeout()).await.map_err(BootstrapError::Unreachable)?;
        return Ok(Bootstrap {
            servers: b.to_owned(),
            #[cfg(feature = "embedded-broker")]
            embedded: None,
        });
    }
    #[cfg(feature = "embedded-broker")]
    {
        let broker = EmbeddedBroker::start(BrokerConfig::new(listen, data_dir))
            .await
            .map_err(BootstrapError::Embedded)?;
        Ok(Bootstrap { servers: broker.bootstrap(), embedded: Some(broker) })
    }
    #[cfg(not(feature = "embedded-broker"))]
    {
        let _ = (listen, data_dir);
        Err(BootstrapError::NoEmbeddedBroker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn configured_brokers_are_used_once_one_answers() {
        // Accepts connections but never answers: the wait gives up at the
        // admin timeout instead of handing out an address nobody serves.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = silent.local_addr().expect("addr").to_string();
        let kafka = KafkaConfig { admin_timeout_ms: 300, ..KafkaConfig::default() };
        let unused = std::env::temp_dir().join("fieldwatch-bootstrap-unused");
        let err = bootstrap_or_embedded(&kafka, Some(&addr), "127.0.0.1:0".parse().expect("addr"), &unused)
            .await
            .expect_err("nobody answers");
        assert!(matches!(err, BootstrapError::Unreachable(_)), "{err}");
        assert!(!unused.exists(), "no embedded broker was started");
    }

    #[cfg(feature = "embedded-broker")]
    #[tokio::test]
    async fn without_brokers_the_embedded_one_starts_in_the_data_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("broker");
        let b =
            bootstrap_or_embedded(&KafkaConfig::default(), None, "127.0.0.1:0".parse().expect("addr"), &data)
                .await
                .expect("embedded broker starts");
        assert!(b.is_embedded());
        assert!(b.describe().starts_with("embedded tansu/SQLite (127.0.0.1:"), "{}", b.describe());
        assert!(data.join("broker.db").exists());
        // The address answers Kafka requests.
        kafka::wait_for_broker(&KafkaConfig::default(), b.servers(), std::time::Duration::from_secs(5))
            .await
            .expect("embedded broker answers");
        b.shutdown().await;
    }
}
