//! The ingest (gRPC, gRPC-Web and JSON over HTTP on one port):
//! authenticates front-ends, validates each interview
//! against its instrument, pseudonymises the respondent, publishes a
//! versioned envelope to Kafka and replies only after the broker
//! acknowledged it.
//!
//! - [`server`]: the listener (gRPC, gRPC-Web, HTTP routes), health, shutdown.
//! - [`intake`]: one record's path (in-flight slot or shed, validate,
//!   pseudonymise, publish, reply), shared by every front door.
//! - `service`: the tonic `IngestService`, streaming in request order.
//! - [`publisher`]: the Kafka producer and delivery reports.
//! - [`claims`]: study-wide submission ids (the first respondent keeps one).
//! - [`pseudonym`]: respondent id -> respondent key (keyed HMAC).
//! - [`auth`]: bearer tokens -> front-end identity.
//! - [`admission`]: the tower layer that authenticates a call and meters its
//!   bytes before its body is read.
//! - [`error`]: [`IngestError`] and its one mapping to `tonic::Status`.
//! - [`metrics`]: `fieldwatch_ingest_*` metrics.
//! - [`web`]: gRPC-Web, CORS and the JSON/NDJSON and KoboToolbox HTTP routes on the same port.
//! - [`reply`]: those routes' HTTP statuses and JSON replies.
//! - [`kobo`]: KoboToolbox submission JSON -> submission (pure).
//!
//! Entry points: [`serve`] (or [`IngestServer::new`] + [`IngestServer::run`])
//! with a listener from [`bind`]. TLS, when `ingest.tls` is set, is
//! [`TlsConfig`].

pub mod admission;
pub mod auth;
pub mod claims;
pub mod error;
pub mod intake;
pub mod kobo;
pub mod metrics;
pub mod pseudonym;
pub mod publisher;
pub mod quota;
pub mod reply;
pub mod server;
mod service;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

pub use auth::{Authenticator, TokenConfig};
pub use error::{IngestError, PublishFailure};
pub use intake::Intake;
pub use metrics::IngestMetrics;
pub use pseudonym::{Pseudonymizer, record_key};
pub use publisher::Publisher;
pub use server::IngestServer;

use crate::instrument::Catalog;
use crate::validate::Limits;

/// Environment variable that overrides [`IngestConfig::hmac_key`], so the
/// secret need not be written into a config file.
pub const HMAC_KEY_ENV: &str = "FIELDWATCH_HMAC_KEY";

/// The publicly known key [`IngestConfig::use_demo_key_if_unset`] puts in
/// for the demo. Respondent keys made with it are not secret.
pub const DEMO_HMAC_KEY: &str = "fieldwatch-demo-key-not-secret";

/// Shortest accepted HMAC key, in bytes.
pub const MIN_HMAC_KEY_BYTES: usize = 16;

/// Configuration of the ingest server (`[ingest]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Address the gRPC server listens on; gRPC-Web and the HTTP intake
    /// routes share it. Keep it apart from the metrics and admin port.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Most interviews being validated or published at once, over all
    /// calls and streams; one more is shed with RESOURCE_EXHAUSTED.
    #[serde(default = "default_max_inflight")]
    pub max_inflight: usize,
    /// Most interviews of one `SubmitStream` call in flight at once; the
    /// server reads no further records of that stream until the oldest
    /// result is sent. A stream's rate is at most this many records per
    /// reply time (the claim and the publish), so the window is wide: 256
    /// against 64 took `fieldwatch bench` (b) from 57-64 % to 85-89 % of the
    /// raw producer (docs/benchmarks.md). Four full streams take half of
    /// the default `max_inflight`.
    #[serde(default = "default_stream_window")]
    pub stream_window: usize,
    /// A submission id belongs study-wide to the first respondent who used
    /// it: each new id is claimed through `kafka.claims_topic` before its
    /// interview is published, and another respondent's interview under it
    /// is refused (`submission_id_taken`). Off: no claims (one broker round
    /// trip, and under load up to 10 ms, less per new id), and an id reused
    /// under another respondent counts once per partition it lands in,
    /// unlike `report`.
    #[serde(default = "default_true")]
    pub study_wide_submission_ids: bool,
    /// Secret key of the HMAC that turns respondent ids into respondent
    /// keys (at least 16 bytes; overridden by `FIELDWATCH_HMAC_KEY`).
    /// Required, except in the demo. Changing it changes every key, so
    /// duplicate-respondent checks do not reach across the change.
    #[serde(default)]
    pub hmac_key: Option<String>,
    /// Front-ends allowed to submit, each with the SHA-256 of its bearer
    /// token. Empty: no authentication (every caller is `anonymous`).
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Size limits on one submission; larger ones are rejected.
    #[serde(default)]
    pub limits: Limits,
    /// Largest encoded request message, in bytes.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// At shutdown, how long open calls may take to finish before they are
    /// abandoned, in milliseconds; then the producer gets as long again to
    /// flush. Keep it above `kafka.produce_timeout_ms` (so calls waiting for
    /// the broker can finish) and twice it below the pod's termination grace
    /// period. (How long a write may wait for the broker is
    /// `kafka.produce_timeout_ms`.)
    #[serde(default = "default_shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
    /// TLS for the gRPC listener. Unset: plaintext (fine on loopback or
    /// behind a TLS-terminating proxy; otherwise bearer tokens cross the
    /// network in clear).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Most connections open at once; one more is accepted and closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Most concurrent HTTP/2 streams (calls) on one connection.
    #[serde(default = "default_max_concurrent_streams")]
    pub max_concurrent_streams: u32,
    /// Bytes of request messages one connection may have in flight (being
    /// received); a message beyond it is RESOURCE_EXHAUSTED. At least
    /// `max_message_bytes` + 5.
    #[serde(default = "default_connection_inflight_bytes")]
    pub connection_inflight_bytes: usize,
    /// Bytes of request messages all connections together may have in
    /// flight; a message beyond it is RESOURCE_EXHAUSTED. At least
    /// `connection_inflight_bytes`.
    #[serde(default = "default_inflight_bytes")]
    pub inflight_bytes: usize,
    /// Longest a new connection may take to send its first call (TLS
    /// handshake included), in milliseconds; then it is closed.
    #[serde(default = "default_header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// How long a connection with no call in progress stays open after its
    /// last call, in milliseconds.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Interval of HTTP/2 keepalive pings to the client, in milliseconds.
    #[serde(default = "default_keepalive_interval_ms")]
    pub keepalive_interval_ms: u64,
    /// How long a keepalive ping may go unanswered before the connection is
    /// closed, in milliseconds.
    #[serde(default = "default_keepalive_timeout_ms")]
    pub keepalive_timeout_ms: u64,
    /// Age after which a connection is asked to go away (GOAWAY; open calls
    /// finish), in milliseconds. Spreads long-lived clients over replicas.
    #[serde(default = "default_max_connection_age_ms")]
    pub max_connection_age_ms: u64,
    /// Browser origins (`https://survey.example.org`) allowed to call
    /// ingest from a page, with gRPC-Web or the JSON intake (CORS). Empty:
    /// no cross-origin calls (same-origin pages and non-browser clients
    /// are unaffected).
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// Largest request body of the HTTP intake routes (JSON, NDJSON,
    /// KoboToolbox), in bytes; a larger one is refused with 413 before it
    /// is read whole.
    #[serde(default = "default_max_http_body_bytes")]
    pub max_http_body_bytes: usize,
    /// Most field violations listed in a rejection's `BadRequest` detail
    /// (1 to 1000); the message and `ErrorInfo` give the total, and a
    /// stream's `SubmitResult` lists all of them.
    #[serde(default = "default_max_error_violations")]
    pub max_error_violations: usize,
    /// Most bytes of encoded `BadRequest` detail in a rejection (1024 to
    /// 5120), so the status stays under the 8 KiB metadata soft limit of
    /// gRPC core clients, above which they refuse responses at random.
    #[serde(default = "default_max_error_detail_bytes")]
    pub max_error_detail_bytes: usize,
}

/// TLS of the gRPC listener (`ingest.tls`). The files are read once, at
/// start-up; a renewed certificate takes a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain of the server, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key of the leaf certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA certificate(s) client certificates must chain to. Set: every
    /// client must present a certificate (mutual TLS), in addition to its
    /// bearer token when tokens are configured. Unset: no client certificates.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// Longest a client may take to finish the TLS handshake, in
    /// milliseconds; a connection that takes longer is closed. Handshakes
    /// run concurrently, so this bounds how long a slow or idle client
    /// holds a socket before it has been authenticated at all.
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
}

fn default_handshake_timeout_ms() -> u64 {
    10_000
}

impl TlsConfig {
    /// Reads the certificate, key and client CA files and checks that they
    /// make a usable server configuration.
    pub fn load(&self) -> Result<tonic::transport::ServerTlsConfig, IngestError> {
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        // tonic builds its rustls config with the process-wide provider.
        // Install ring (tonic's `tls-ring`) unless one is installed already;
        // an `Err` only means another provider got there first.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cert = read_pem(&self.cert_file)?;
        let key = read_pem(&self.key_file)?;
        let mut tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(cert, key))
            .timeout(Duration::from_millis(self.handshake_timeout_ms));
        if let Some(ca) = &self.client_ca_file {
            tls = tls.client_ca_root(Certificate::from_pem(read_pem(ca)?));
        }
        // The certificate and key are parsed only when a server takes the
        // configuration: do it now, so bad files fail start-up, not the
        // first handshake.
        tonic::transport::Server::builder().tls_config(tls.clone()).map_err(IngestError::Tls)?;
        Ok(tls)
    }
}

fn read_pem(path: &Path) -> Result<Vec<u8>, IngestError> {
    std::fs::read(path).map_err(|source| IngestError::TlsFile { path: path.to_path_buf(), source })
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 50051))
}
fn default_max_inflight() -> usize {
    2048
}
fn default_stream_window() -> usize {
    256
}
fn default_max_message_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_max_http_body_bytes() -> usize {
    8 * 1024 * 1024
}
fn default_max_error_violations() -> usize {
    error::MAX_DETAIL_VIOLATIONS
}
fn default_max_error_detail_bytes() -> usize {
    error::MAX_DETAIL_BYTES
}
fn default_shutdown_grace_ms() -> u64 {
    10_000
}
fn default_max_connections() -> usize {
    1024
}
fn default_max_concurrent_streams() -> u32 {
    64
}
fn default_connection_inflight_bytes() -> usize {
    16 * 1024 * 1024
}
fn default_inflight_bytes() -> usize {
    128 * 1024 * 1024
}
fn default_header_timeout_ms() -> u64 {
    10_000
}
fn default_idle_timeout_ms() -> u64 {
    300_000
}
fn default_keepalive_interval_ms() -> u64 {
    60_000
}
fn default_keepalive_timeout_ms() -> u64 {
    20_000
}
fn default_true() -> bool {
    true
}

fn default_max_connection_age_ms() -> u64 {
    3_600_000
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            listen: default_listen(),
            max_inflight: default_max_inflight(),
            stream_window: default_stream_window(),
            study_wide_submission_ids: true,
            hmac_key: None,
            tokens: Vec::new(),
            limits: Limits::default(),
            max_message_bytes: default_max_message_bytes(),
            shutdown_grace_ms: default_shutdown_grace_ms(),
            tls: None,
            max_connections: default_max_connections(),
            max_concurrent_streams: default_max_concurrent_streams(),
            connection_inflight_bytes: default_connection_inflight_bytes(),
            inflight_bytes: default_inflight_bytes(),
            header_timeout_ms: default_header_timeout_ms(),
            idle_timeout_ms: default_idle_timeout_ms(),
            keepalive_interval_ms: default_keepalive_interval_ms(),
            keepalive_timeout_ms: default_keepalive_timeout_ms(),
            max_connection_age_ms: default_max_connection_age_ms(),
            cors_origins: Vec::new(),
            max_http_body_bytes: default_max_http_body_bytes(),
            max_error_violations: default_max_error_violations(),
            max_error_detail_bytes: default_max_error_detail_bytes(),
        }
    }
}

impl IngestConfig {
    /// Applies environment overrides read through `env` (tests pass a map;
    /// `main` passes `|k| std::env::var(k).ok()`).
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) {
        if let Some(key) = env(HMAC_KEY_ENV).filter(|k| !k.is_empty()) {
            self.hmac_key = Some(key);
        }
    }

    /// For the demo only: uses [`DEMO_HMAC_KEY`] when no key is configured.
    /// Returns true when it did (the caller should warn).
    pub fn use_demo_key_if_unset(&mut self) -> bool {
        if self.hmac_key.as_deref().is_none_or(str::is_empty) {
            self.hmac_key = Some(DEMO_HMAC_KEY.to_string());
            true
        } else {
            false
        }
    }

    /// Cross-field checks; every problem is reported at once.
    pub fn validate(&self) -> Result<(), IngestError> {
        let mut problems = Vec::new();
        match self.hmac_key.as_deref() {
            None | Some("") => problems.push(format!("hmac_key is required (or set {HMAC_KEY_ENV})")),
            Some(k) if k.len() < MIN_HMAC_KEY_BYTES => {
                problems.push(format!("hmac_key must be at least {MIN_HMAC_KEY_BYTES} bytes"))
            }
            Some(_) => {}
        }
        if self.max_inflight == 0 {
            problems.push("max_inflight must be at least 1".into());
        }
        if self.stream_window == 0 {
            problems.push("stream_window must be at least 1".into());
        }
        if self.max_message_bytes == 0 {
            problems.push("max_message_bytes must be at least 1".into());
        }
        if self.connection_inflight_bytes < self.max_message_bytes.saturating_add(5) {
            problems.push("connection_inflight_bytes must be at least max_message_bytes + 5".into());
        }
        if self.inflight_bytes < self.connection_inflight_bytes {
            problems.push("inflight_bytes must be at least connection_inflight_bytes".into());
        }
        if u32::try_from(self.inflight_bytes).is_err() {
            problems.push("inflight_bytes must be below 4 GiB".into());
        }
        if self.max_connections == 0 || self.max_concurrent_streams == 0 {
            problems.push("max_connections and max_concurrent_streams must be at least 1".into());
        }
        let times = [
            self.header_timeout_ms,
            self.idle_timeout_ms,
            self.keepalive_interval_ms,
            self.keepalive_timeout_ms,
            self.max_connection_age_ms,
        ];
        if times.contains(&0) {
            problems
                .push("connection timeouts, keepalive and max_connection_age_ms must be at least 1".into());
        }
        if self.max_http_body_bytes == 0 {
            problems.push("max_http_body_bytes must be at least 1".into());
        }
        let (v, b) = (error::DETAIL_VIOLATIONS_RANGE, error::DETAIL_BYTES_RANGE);
        if !v.contains(&self.max_error_violations) {
            problems.push(format!("max_error_violations must be {} to {}", v.start(), v.end()));
        }
        if !b.contains(&self.max_error_detail_bytes) {
            problems.push(format!(
                "max_error_detail_bytes must be {} to {} (the status must fit gRPC clients' 8 KiB metadata soft limit)",
                b.start(),
                b.end()
            ));
        }
        let l = &self.limits;
        if l.max_answers == 0 || l.max_text_chars == 0 || l.max_choices == 0 {
            problems.push("limits must be at least 1".into());
        }
        if let Some(tls) = &self.tls
            && tls.handshake_timeout_ms == 0
        {
            problems.push("tls.handshake_timeout_ms must be at least 1".into());
        }
        if let Err(IngestError::Config(p)) = Authenticator::new(&self.tokens) {
            problems.push(p);
        }
        let mut hashes: Vec<String> =
            self.tokens.iter().map(|t| t.sha256.trim().to_ascii_lowercase()).collect();
        hashes.sort();
        if hashes.windows(2).any(|w| w[0] == w[1]) {
            problems.push("two tokens have the same sha256".into());
        }
        if problems.is_empty() { Ok(()) } else { Err(IngestError::Config(problems.join("; "))) }
    }

    /// The limits of the ingest listener.
    pub fn conn_limits(&self) -> crate::conn::ConnLimits {
        crate::conn::ConnLimits {
            max_connections: self.max_connections,
            header_timeout: Duration::from_millis(self.header_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            connection_bytes: self.connection_inflight_bytes,
        }
    }

    /// The caps on a rejection's error details.
    pub fn detail_limits(&self) -> error::DetailLimits {
        error::DetailLimits { violations: self.max_error_violations, bytes: self.max_error_detail_bytes }
    }

    /// [`Self::shutdown_grace_ms`] as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

/// Binds the configured listen address. Bind `127.0.0.1:0` and read
/// `local_addr()` to get a free port (tests).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, IngestError> {
    TcpListener::bind(addr).await.map_err(|source| IngestError::Bind { addr, source })
}

/// Runs the ingest server on `listener` until `shutdown` resolves, then
/// shuts down gracefully (health NOT_SERVING, drain calls within the grace
/// period, flush the producer) and returns.
///
/// Set-up (config checks, metric registration) happens before the future is
/// returned, so the future is `'static` and can be spawned.
pub fn serve(
    config: IngestConfig,
    catalog: Arc<Catalog>,
    publisher: Publisher,
    registry: &prometheus::Registry,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = Result<(), IngestError>> + Send + 'static {
    let server = IngestServer::new(config, catalog, publisher, registry);
    async move { server?.run(listener, shutdown).await }
}

#[cfg(test)]
mod tests;
