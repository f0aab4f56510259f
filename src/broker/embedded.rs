//! The embedded Kafka-protocol broker (tansu) for `serve`, `broker`, the
//! benches and the tests.
//!
//! `fieldwatch serve` without configured brokers runs the same producer and
//! consumer code against an in-process tansu broker, so a new user needs nothing
//! else installed. Records and consumer-group offsets live in one SQLite file
//! under the data directory and survive restarts.
//!
//! tansu is a single node without automatic topic creation or transactions:
//! create the topics with [`crate::kafka::ensure_topics`]. It listens on plain TCP
//! on an IPv4 address of this machine and advertises that same address.
//!
//! The broker runs on a tokio runtime of its own ([`BROKER_THREADS`] workers
//! named `broker`), not the caller's: tansu's SQLite storage (libsql) runs its
//! queries, commits and WAL checkpoints inline on the worker that polls it, so
//! on a shared runtime every task queued behind that worker (a gRPC reply, the
//! aggregator, a page) waited for the database. On its own threads the OS
//! shares the cores between the broker and the rest.
//!
//! Entry points: [`EmbeddedBroker::start`], [`run_standalone`].

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tansu_broker::broker::Broker;
use tansu_broker::coordinator::group::administrator::Controller;
use tansu_storage::StorageContainer;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use url::Url;

use crate::kafka::{self, KafkaConfig};

/// File name of the SQLite database inside the data directory.
const DATABASE_FILE: &str = "broker.db";

/// How often start-up picks a new port when the one it chose was taken by
/// someone else between choosing and binding (only for port 0).
const PORT_ATTEMPTS: usize = 3;

/// How long `shutdown` waits for tansu to close the SQLite database after the
/// broker task was aborted (normally a few milliseconds).
const STORAGE_RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// Worker threads of the broker's own runtime: request decoding for several
/// connections in parallel beside the one SQLite connection.
pub const BROKER_THREADS: usize = 2;

/// Errors of the embedded broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The listen address is not one the broker can bind and advertise.
    #[error("listen address {0} must be a specific ipv4 address such as 127.0.0.1")]
    Listen(SocketAddr),
    /// The data directory could not be created or resolved.
    #[error("cannot prepare data directory {path}")]
    DataDir {
        /// The configured data directory.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// tansu reads the database path from a URL and would not resolve this
    /// one back to the same file (e.g. characters that need percent-encoding).
    #[error("data directory {0} cannot be passed to the broker; use a path of plain characters")]
    DataDirPath(PathBuf),
    /// No free port could be found for port 0.
    #[error("cannot pick a free port on {0}")]
    PickPort(IpAddr, #[source] io::Error),
    /// tansu could not open its storage or set up its services.
    #[error("cannot build the broker")]
    Build(#[source] tansu_broker::Error),
    /// The broker stopped before it was ready (e.g. the port is in use).
    #[error("broker stopped during start-up")]
    Stopped(#[source] tansu_broker::Error),
    /// The broker task panicked or was cancelled during start-up.
    #[error("broker task failed during start-up")]
    Task(#[source] tokio::task::JoinError),
    /// The broker did not answer Kafka requests within the start-up timeout.
    #[error("broker at {bootstrap} not ready within {timeout:?}")]
    NotReady {
        /// The address that was probed.
        bootstrap: String,
        /// The start-up timeout.
        timeout: Duration,
    },
    /// Signal handlers for `run_standalone` could not be installed.
    #[error("cannot listen for shutdown signals")]
    Signal(#[source] io::Error),
    /// The broker's own runtime (its threads) could not be started.
    #[error("cannot start the broker's threads")]
    Runtime(#[source] io::Error),
}

/// Settings of the embedded broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Address to listen on and to advertise to clients: a specific IPv4
    /// address of this machine. Port 0 picks a free port at start.
    pub listen: SocketAddr,
    /// Directory of the SQLite database (created if missing); records and
    /// committed offsets persist here. Relative paths are relative to the
    /// working directory.
    pub data_dir: PathBuf,
    /// Kafka cluster id reported to clients; keep it stable for a data directory.
    pub cluster_id: String,
    /// Kafka node id of the single broker; keep it stable for a data directory.
    pub node_id: i32,
    /// Bound on start-up: opening the database until the broker answers a
    /// metadata request.
    pub ready_timeout_ms: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            data_dir: PathBuf::from("data/broker"),
            cluster_id: "fieldwatch".to_owned(),
            node_id: tansu_broker::NODE_ID,
            ready_timeout_ms: 10_000,
        }
    }
}

impl BrokerConfig {
    /// A configuration listening on `listen` with its database in `data_dir`,
    /// other fields at their defaults.
    pub fn new(listen: SocketAddr, data_dir: impl Into<PathBuf>) -> Self {
        Self { listen, data_dir: data_dir.into(), ..Self::default() }
    }

    /// The start-up timeout as a [`Duration`].
    pub fn ready_timeout(&self) -> Duration {
        Duration::from_millis(self.ready_timeout_ms)
    }
}

/// A running in-process broker on its own threads. Dropping it stops the
/// broker without waiting for the database to close; prefer
/// [`EmbeddedBroker::shutdown`].
#[derive(Debug)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    database: PathBuf,
    /// The task running tansu's accept loop; `None` once shut down. Aborting it
    /// drops the listener; shutting the runtime down drops every connection
    /// task and the storage.
    task: Option<JoinHandle<Result<(), BrokerError>>>,
    /// The broker's own runtime.
    runtime: BrokerRuntime,
}

/// The broker's runtime, shut down in the background when dropped: a tokio
/// runtime must not be dropped (which blocks) inside another runtime.
#[derive(Debug)]
struct BrokerRuntime(Option<tokio::runtime::Runtime>);

impl BrokerRuntime {
    fn new() -> Result<BrokerRuntime, BrokerError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(BROKER_THREADS)
            .thread_name("broker")
            .enable_all()
            .build()
            .map_err(BrokerError::Runtime)?;
        Ok(BrokerRuntime(Some(runtime)))
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("the runtime lives until drop").handle()
    }
}

impl Drop for BrokerRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl EmbeddedBroker {
    /// Starts tansu on the current tokio runtime with SQLite storage under
    /// `config.data_dir`, and returns once it answers Kafka metadata requests.
    pub async fn start(config: BrokerConfig) -> Result<Self, BrokerError> {
        let started = std::time::Instant::now();
        let ip = match config.listen.ip() {
            IpAddr::V4(ip) if !ip.is_unspecified() && !ip.is_broadcast() && !ip.is_multicast() => ip,
            _ => return Err(BrokerError::Listen(config.listen)),
        };
        let database = prepare_database(&config.data_dir)?;
        let storage = sqlite_url(&database)?;
        let attempts = if config.listen.port() == 0 { PORT_ATTEMPTS } else { 1 };
        let mut attempt = 1;
        // The previous broker on this database may still be closing it (its
        // tasks end a few ms after the abort, and another process may hold
        // it briefly): "database is locked" is retried for up to ~5 s.
        let mut locked_retries = 0;
        loop {
            let port = match config.listen.port() {
                0 => pick_free_port(ip)?,
                port => port,
            };
            let addr = SocketAddr::from((ip, port));
            match Self::start_on(&config, addr, &storage, database.clone()).await {
                Ok(broker) => {
                    tracing::info!(
                        bootstrap = %broker.bootstrap(),
                        database = %database.display(),
                        elapsed_ms = started.elapsed().as_millis(),
                        "embedded broker ready"
                    );
                    return Ok(broker);
                }
                Err(BrokerError::Stopped(tansu_broker::Error::Io(e)))
                    if e.kind() == io::ErrorKind::AddrInUse && attempt < attempts =>
                {
                    tracing::debug!(port, "picked port was taken, picking another");
                    attempt += 1;
                }
                Err(e) if format!("{e:?}").contains("database is locked") && locked_retries < 50 => {
                    locked_retries += 1;
                    tracing::debug!(locked_retries, "database still locked by a previous broker; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn start_on(
        config: &BrokerConfig,
        addr: SocketAddr,
        storage: &Url,
        database: PathBuf,
    ) -> Result<Self, BrokerError> {
        let listener = tcp_url(addr)?;
        let builder = Broker::<Controller<StorageContainer>, StorageContainer>::builder()
            .node_id(config.node_id)
            .cluster_id(config.cluster_id.clone())
            .incarnation_id(uuid::Uuid::now_v7())
            .advertised_listener(listener.clone())
            .storage(storage.clone())
            .listener(listener)
            // No "ready in" line or progress spinners on stdout.
            .silent(true);
        let runtime = BrokerRuntime::new()?;
        // Built on its runtime too, so the storage task tansu spawns runs there.
        // `serve` (not `main`) leaves SIGINT/SIGTERM to us; it returns only on
        // error, e.g. when the port cannot be bound.
        let mut task = runtime.handle().spawn(async move {
            let mut broker = builder.build().await.map_err(BrokerError::Build)?;
            broker.serve(Instant::now()).await.map_err(BrokerError::Stopped)
        });
        let timeout = config.ready_timeout();
        let bootstrap = addr.to_string();
        let ready = async {
            wait_for_listener(addr).await;
            // The listener accepting is not enough: wait for a Kafka answer.
            kafka::wait_for_broker(&KafkaConfig::default(), &bootstrap, timeout).await.is_ok()
        };
        // Bounds start-up: the broker must answer a metadata request within
        // `ready_timeout_ms`, or start fails and the task is aborted.
        let outcome = tokio::time::timeout(timeout, async {
            tokio::select! {
                ready = ready => Ok(ready),
                ended = &mut task => Err(match ended {
                    Ok(Ok(())) => BrokerError::Stopped(tansu_broker::Error::Message("serve returned".into())),
                    Ok(Err(e)) => e,
                    Err(e) => BrokerError::Task(e),
                }),
            }
        })
        .await;
        let error = match outcome {
            Ok(Ok(true)) => return Ok(Self { addr, database, task: Some(task), runtime }),
            Ok(Err(e)) => e,
            Ok(Ok(false)) | Err(_) => {
                task.abort();
                let _ = task.await;
                BrokerError::NotReady { bootstrap, timeout }
            }
        };
        // A retry or a later start must find the database closed.
        drop(runtime);
        wait_for_storage_release(&database).await;
        Err(error)
    }

    /// The address clients bootstrap from, `IP:PORT` (e.g. `127.0.0.1:40123`).
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// The address the broker listens on and advertises.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The SQLite database file holding records and offsets.
    pub fn database(&self) -> &Path {
        &self.database
    }

    /// Stops the broker: aborts its task and waits until it has ended and the
    /// database is closed, so the port and the data directory can be reused as
    /// soon as this returns. Close clients first, or they log reconnect errors.
    pub async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            match task.await {
                Err(e) if e.is_cancelled() => {}
                Err(e) => tracing::error!(error = %crate::errors::chain(&e), "embedded broker task failed"),
                Ok(Err(e)) => {
                    tracing::error!(error = %crate::errors::chain(&e), "embedded broker stopped with an error")
                }
                Ok(Ok(())) => {}
            }
            // Drops the connection tasks and the storage, on the broker's threads.
            drop(std::mem::replace(&mut self.runtime, BrokerRuntime(None)));
            wait_for_storage_release(&self.database).await;
            tracing::info!(bootstrap = %self.bootstrap(), "embedded broker stopped");
        }
    }

    /// Waits until the broker task ends by itself (it only does on error).
    async fn stopped(&mut self) -> Result<(), BrokerError> {
        let Some(task) = self.task.as_mut() else { return Ok(()) };
        let ended = task.await;
        self.task = None;
        match ended {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(BrokerError::Task(e)),
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Runs the broker until SIGINT (ctrl-c) or SIGTERM, for `fieldwatch broker`.
pub async fn run_standalone(config: BrokerConfig) -> Result<(), BrokerError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).map_err(BrokerError::Signal)?;
    let mut broker = EmbeddedBroker::start(config).await?;
    tracing::info!(bootstrap = %broker.bootstrap(), "serving until ctrl-c or sigterm");
    let result = tokio::select! {
        r = tokio::signal::ctrl_c() => r.map_err(BrokerError::Signal),
        _ = terminate.recv() => Ok(()),
        r = broker.stopped() => r,
    };
    broker.shutdown().await;
    result
}

/// Creates the data directory and returns the absolute database path.
fn prepare_database(data_dir: &Path) -> Result<PathBuf, BrokerError> {
    let fail = |source| BrokerError::DataDir { path: data_dir.to_owned(), source };
    std::fs::create_dir_all(data_dir).map_err(fail)?;
    let dir = std::path::absolute(data_dir).map_err(fail)?;
    Ok(dir.join(DATABASE_FILE))
}

/// The `sqlite://` URL tansu resolves to `database` (an absolute path).
///
/// tansu joins `current_dir()`, the URL's host and the URL's path with one
/// leading `/` removed. An empty host and a path starting with `//` therefore
/// leave an absolute path, which replaces the working directory.
fn sqlite_url(database: &Path) -> Result<Url, BrokerError> {
    let unsupported = || BrokerError::DataDirPath(database.to_owned());
    let text = database.to_str().ok_or_else(unsupported)?;
    let url = Url::parse(&format!("sqlite:///{text}")).map_err(|_| unsupported())?;
    if tansu_database_path(&url) != database {
        return Err(unsupported());
    }
    Ok(url)
}

/// tansu-storage 0.6.0's `lite::Builder::build` path rule, relative to `/`.
fn tansu_database_path(url: &Url) -> PathBuf {
    let mut path = PathBuf::from("/");
    if let Some(domain) = url.domain() {
        path.push(domain);
    }
    path.push(url.path().strip_prefix('/').unwrap_or(url.path()));
    path
}

/// `tcp://IP:PORT`, the listener URL form tansu expects.
fn tcp_url(addr: SocketAddr) -> Result<Url, BrokerError> {
    Url::parse(&format!("tcp://{addr}")).map_err(|_| BrokerError::Listen(addr))
}

/// Asks the OS for a free port on `ip`. tansu must advertise a real port, so
/// the port is chosen here and the socket released; start-up retries if
/// another process takes it in between.
fn pick_free_port(ip: Ipv4Addr) -> Result<u16, BrokerError> {
    let listener = StdTcpListener::bind((ip, 0)).map_err(|e| BrokerError::PickPort(ip.into(), e))?;
    let port = listener.local_addr().map_err(|e| BrokerError::PickPort(ip.into(), e))?.port();
    Ok(port)
}

/// Waits until tansu has closed the database after its task ended.
///
/// Aborting the broker task only schedules the end of its connection tasks
/// and of the storage task that owns the SQLite connection; they finish a few
/// milliseconds later. A broker reopening the file before that fails with
/// "database is locked". SQLite (WAL mode) deletes `broker.db-wal` when the
/// last connection closes, so its absence is the signal.
async fn wait_for_storage_release(database: &Path) {
    let wal = database.with_extension("db-wal");
    // Bounds the wait so shutdown keeps its deadline even when another
    // process (e.g. an sqlite3 shell) keeps the database open.
    let deadline = tokio::time::Instant::now() + STORAGE_RELEASE_TIMEOUT;
    while wal.exists() {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(database = %database.display(), "database still open after broker shutdown");
            return;
        }
        // Short: the release normally takes under 10 ms.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Returns once a TCP connection to `addr` succeeds (the accept loop is up).
/// Unbounded by itself: the caller's start-up timeout bounds it.
async fn wait_for_listener(addr: SocketAddr) {
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        // Short: the listener is normally up within a few milliseconds.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_database_paths_survive_tansus_url_rule() {
        let database = PathBuf::from("/var/tmp/fieldwatch data/broker.db");
        let url = sqlite_url(&database);
        // A space needs percent-encoding, which tansu would not decode.
        assert!(matches!(url, Err(BrokerError::DataDirPath(_))), "{url:?}");
        let database = PathBuf::from("/var/tmp/fieldwatch-1/broker.db");
        let url = sqlite_url(&database).expect("plain path");
        assert_eq!(tansu_database_path(&url), database);
    }

    #[test]
    fn listener_url_carries_ip_and_port() {
        let url = tcp_url(SocketAddr::from((Ipv4Addr::LOCALHOST, 9099))).expect("valid");
        assert_eq!(url.as_str(), "tcp://127.0.0.1:9099");
    }

    #[tokio::test]
    async fn unspecified_listen_address_is_rejected() {
        let config = BrokerConfig::new(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)), "unused");
        let err = EmbeddedBroker::start(config).await.expect_err("0.0.0.0 cannot be advertised");
        assert!(matches!(err, BrokerError::Listen(_)), "{err}");
    }
}
