//! The broker a bench runs against, for `bench` and `bench-restore` alike:
//! the cluster of `--brokers`, or the embedded broker on `127.0.0.1:0` with
//! its database in a fresh temporary directory, removed at
//! [`BenchBroker::shutdown`] (or at once when the broker does not start).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use super::clock::progress;
use crate::broker::{Bootstrap, BootstrapError};
use crate::kafka::KafkaConfig;

/// Why no broker could be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The temporary directory of the embedded broker could not be created.
    #[error("cannot create the temporary directory {path}")]
    TempDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The `--brokers` did not answer, the embedded broker did not start,
    /// or there are neither (no `--brokers` and no embedded broker in this build).
    #[error("broker")]
    Broker(#[from] BootstrapError),
}

/// A running broker and the directory to remove when it stops.
pub(crate) struct BenchBroker {
    pub(crate) broker: Bootstrap,
    /// The embedded broker's directory; `None` with `--brokers`.
    temp: Option<PathBuf>,
}

impl BenchBroker {
    /// `brokers` when given, else the embedded broker in a new directory
    /// `fieldwatch-<name>-<run>` under the system's temporary directory.
    pub(crate) async fn start(
        kafka: &KafkaConfig,
        brokers: Option<&str>,
        name: &str,
        run: &str,
    ) -> Result<BenchBroker, SetupError> {
        let temp = match brokers {
            Some(_) => None,
            None => {
                let temp = std::env::temp_dir().join(format!("fieldwatch-{name}-{run}"));
                std::fs::create_dir_all(&temp)
                    .map_err(|source| SetupError::TempDir { path: temp.clone(), source })?;
                progress(format_args!("starting the embedded broker in {}", temp.display()));
                Some(temp)
            }
        };
        let data_dir = temp.clone().unwrap_or_default();
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        match crate::broker::bootstrap_or_embedded(kafka, brokers, listen, &data_dir).await {
            Ok(broker) => Ok(BenchBroker { broker, temp }),
            Err(e) => {
                remove(temp);
                Err(e.into())
            }
        }
    }

    /// Stops the embedded broker (if it is one) and removes its directory.
    pub(crate) async fn shutdown(self) {
        self.broker.shutdown().await;
        remove(self.temp);
    }
}

fn remove(temp: Option<PathBuf>) {
    if let Some(t) = temp
        && let Err(e) = std::fs::remove_dir_all(&t)
    {
        tracing::warn!(dir = %t.display(), error = %crate::errors::chain(&e), "cannot remove the bench directory");
    }
}
