//! `fieldwatch bench`: end-to-end figures of the Kafka paths on one broker, in
//! one run, each next to the baseline it is judged against.
//!
//! - (a) the raw rdkafka producer (fieldwatch's producer settings: idempotent,
//!   `acks=all`) writing the envelopes ingest would write, every delivery
//!   awaited, a window of records in flight;
//! - (b) acknowledged ingest through `SubmitStream` against a real ingest
//!   server on the same broker, counting accepted results only; (b)/(a) is
//!   the ingest overhead (target at least [`TARGET_INGEST_RATIO`]);
//! - (c) unary `Submit` latency at a fixed, open-loop request rate: sends are
//!   scheduled on a ticker and latency counts from the scheduled time, so a
//!   slow reply cannot hide behind a late send (target p99 below
//!   [`TARGET_P99`]);
//! - (d) the aggregator (`aggregate::run`) applying the records of (b) vs a
//!   bare consumer reading them with the same settings and start offsets
//!   (target at least [`TARGET_AGGREGATE_RATIO`]).
//!
//! Without `--brokers` it starts the embedded broker on `127.0.0.1:0` in a
//! fresh temporary directory and removes it afterwards. Every topic and
//! consumer group carries a run id, so runs against a shared cluster do not
//! see each other's records. Every wait is bounded by the phase timeout; the
//! ingest server, the aggregator and the broker are always shut down.
//!
//! Entry point: [`run`] with [`BenchOptions`]. The phases are in
//! `phases` (set-up and order), `produce` ((a), (b)), `latency` ((c)) and
//! `consume` ((d)); the figures and their table in [`report`]; CPU clocks
//! and progress lines in `clock`; the broker (or the embedded one in a
//! temporary directory) in `broker`, for both benches. [`restore`] is
//! `bench-restore`.
//!
//! The bench writes its report to the `impl Write` it is given and its
//! progress as `tracing` events; it prints nothing itself.

mod broker;
mod clock;
mod consume;
mod latency;
mod phases;
mod produce;
pub mod report;
pub mod restore;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::aggregate;
use crate::ingest::IngestError;
use crate::kafka::{KafkaConfig, KafkaError};

pub use report::{BenchReport, CpuUse, Latency, Throughput};

use broker::BenchBroker;
use clock::load_average;

/// (b)/(a) must reach this share: ingest may cost at most 20% of the raw producer's rate (issue 14).
pub const TARGET_INGEST_RATIO: f64 = 0.80;
/// (c): unary latency p99 must stay below this.
pub const TARGET_P99: Duration = Duration::from_millis(10);
/// (d): the aggregator must apply at least this share of the raw read rate (issue 14).
pub const TARGET_AGGREGATE_RATIO: f64 = 0.90;

/// Key of the bench's pseudonyms (ingest and the raw producer use the same one).
const HMAC_KEY: &str = "fieldwatch-bench-key-not-secret";
/// Front-end name ingest puts in envelopes when no tokens are configured.
const ANONYMOUS: &str = "anonymous";
/// Unary calls sent one after the other before (c) to open the connection
/// and initialise the producer; not measured.
const WARMUP_REQUESTS: u64 = 20;
/// (c) runs at its rate this long before the measured span; not measured.
const WARMUP_SECONDS: u64 = 1;
/// Bound on one unary call of (c); a call taking longer counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on connecting to the in-process ingest server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the ingest server and the aggregator get to stop at the end.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often long phases report progress on stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Options of `fieldwatch bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// Interviews written in (a) and (b) and read back in (d).
    #[arg(long, default_value_t = 50_000)]
    pub records: u64,
    /// Unary requests per second in (c).
    #[arg(long, default_value_t = 1_000)]
    pub rate: u32,
    /// Duration of (c), in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Bootstrap servers of an existing Kafka-protocol cluster. Default: an
    /// embedded broker on 127.0.0.1 in a temporary directory.
    #[arg(long)]
    pub brokers: Option<String>,
    /// Concurrent `SubmitStream` calls in (b), each on its own connection
    /// (like that many front-ends); the records are split between them.
    #[arg(long, default_value_t = 4)]
    pub streams: usize,
    /// Records in flight for the raw producer in (a).
    #[arg(long, default_value_t = 1024)]
    pub window: usize,
    /// Partitions of the bench topics.
    #[arg(long, default_value_t = 6)]
    pub partitions: u32,
    /// `linger.ms` of both producers (raw and ingest's); default: fieldwatch's
    /// producer setting.
    #[arg(long)]
    pub linger_ms: Option<u32>,
    /// Extra librdkafka property for every client, as `kafka.client_properties`
    /// would set it (repeatable), e.g. `fetch.wait.max.ms=20`.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = parse_property)]
    pub kafka_properties: Vec<(String, String)>,
    /// `ingest.stream_window` of the ingest server; default: its default.
    #[arg(long)]
    pub stream_window: Option<usize>,
    /// Run the ingest server with `ingest.study_wide_submission_ids: false`
    /// (no claims), to see what the claims cost.
    #[arg(long)]
    pub no_claims: bool,
    /// Write every call of (c) to this CSV file: scheduled offset, latency
    /// from the scheduled time and from the send (ms), error. For finding
    /// what the tail lines up with.
    #[arg(long)]
    pub latency_csv: Option<PathBuf>,
    /// Bound on each phase, in seconds; a phase that takes longer fails the run.
    #[arg(long, default_value_t = 300)]
    pub phase_timeout_secs: u64,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            records: 50_000,
            rate: 1_000,
            seconds: 10,
            brokers: None,
            streams: 4,
            window: 1024,
            partitions: 6,
            linger_ms: None,
            kafka_properties: Vec::new(),
            stream_window: None,
            no_claims: false,
            latency_csv: None,
            phase_timeout_secs: 300,
        }
    }
}

impl BenchOptions {
    fn validate(&self) -> Result<(), BenchError> {
        let bad = |m: &str| Err(BenchError::Options(m.to_owned()));
        if self.records == 0 {
            return bad("--records must be at least 1");
        }
        if self.rate == 0 || self.seconds == 0 {
            return bad("--rate and --seconds must be at least 1");
        }
        if self.streams == 0 || self.window == 0 {
            return bad("--streams and --window must be at least 1");
        }
        if self.phase_timeout_secs == 0 {
            return bad("--phase-timeout-secs must be at least 1");
        }
        Ok(())
    }

    fn phase_timeout(&self) -> Duration {
        Duration::from_secs(self.phase_timeout_secs)
    }
}

/// Errors of the bench.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The options are out of range.
    #[error("invalid options: {0}")]
    Options(String),
    /// No broker: the embedded one's directory or start, or `--brokers`.
    #[error("broker set-up")]
    Broker(#[from] broker::SetupError),
    /// Waiting for the broker or creating the topics failed.
    #[error("kafka set-up")]
    Kafka(#[from] KafkaError),
    /// A Kafka client could not be created or subscribed.
    #[error("kafka client")]
    Client(#[from] rdkafka::error::KafkaError),
    /// The ingest server could not be set up, or stopped with an error.
    #[error("ingest server")]
    Ingest(#[from] IngestError),
    /// The aggregator stopped with an error.
    #[error("aggregator")]
    Aggregate(#[from] aggregate::AggregateError),
    /// The bound ingest listener has no local address.
    #[error("cannot read the ingest listener's address")]
    LocalAddr(#[source] std::io::Error),
    /// The bench could not connect to the ingest server.
    #[error("cannot connect to the ingest server")]
    Connect(#[from] tonic::transport::Error),
    /// A gRPC call failed as a whole.
    #[error("{phase}: call failed: {status}")]
    Call {
        /// The phase.
        phase: &'static str,
        /// The status.
        status: tonic::Status,
    },
    /// A phase did not finish in time.
    #[error("{phase} did not finish within {timeout:?} ({done} of {total} records)")]
    Timeout {
        /// The phase.
        phase: &'static str,
        /// The bound.
        timeout: Duration,
        /// Records done when it expired.
        done: u64,
        /// Records expected.
        total: u64,
    },
    /// A bench task panicked or was cancelled.
    #[error("{0}: task failed")]
    Task(&'static str, #[source] tokio::task::JoinError),
    /// The demo study is missing from the built-in catalog.
    #[error("the built-in demo study is missing")]
    NoDemoStudy,
    /// The latency CSV could not be written.
    #[error("cannot write {path}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The report could not be written.
    #[error("cannot write the report")]
    Write(#[from] std::io::Error),
}

/// Runs every phase, writes the report table to `out` and returns the figures.
pub async fn run(opts: &BenchOptions, out: &mut impl Write) -> Result<BenchReport, BenchError> {
    opts.validate()?;
    let load_before = load_average();
    let env = Env::start(opts).await?;
    let measured = phases::phases(opts, &env.bootstrap, &env.describe).await;
    env.shutdown().await;
    let mut report = measured?;
    report.load = (load_before, load_average());
    write!(out, "{report}")?;
    out.flush()?;
    Ok(report)
}

/// The broker the bench runs against.
struct Env {
    bootstrap: String,
    describe: String,
    broker: BenchBroker,
}

impl Env {
    async fn start(opts: &BenchOptions) -> Result<Env, BenchError> {
        let broker =
            BenchBroker::start(&KafkaConfig::default(), opts.brokers.as_deref(), "bench", &run_id()).await?;
        Ok(Env { bootstrap: broker.broker.servers().to_owned(), describe: broker.broker.describe(), broker })
    }

    async fn shutdown(self) {
        self.broker.shutdown().await;
    }
}

/// `KEY=VALUE` of `--kafka-property`.
pub(crate) fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!("expected KEY=VALUE, got `{s}`")),
    }
}

/// A unique id for this run's topics, groups and directory.
fn run_id() -> String {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{}-{}", std::process::id(), nanos % 1_000_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_properties_are_key_equals_value() {
        assert_eq!(parse_property("fetch.wait.max.ms = 20"), Ok(("fetch.wait.max.ms".into(), "20".into())));
        assert_eq!(parse_property("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_property("novalue").is_err());
        assert!(parse_property("=1").is_err());
    }

    #[test]
    fn zero_options_are_rejected() {
        assert!(BenchOptions::default().validate().is_ok());
        assert!(BenchOptions { records: 0, ..BenchOptions::default() }.validate().is_err());
        assert!(BenchOptions { rate: 0, ..BenchOptions::default() }.validate().is_err());
        assert!(BenchOptions { streams: 0, ..BenchOptions::default() }.validate().is_err());
    }
}
