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
//!   bare consumer reading them with the same settings (target at least
//!   [`TARGET_AGGREGATE_RATIO`]).
//!
//! Without `--brokers` it starts the embedded broker on `127.0.0.1:0` in a
//! fresh temporary directory and removes it afterwards. Every topic and
//! consumer group carries a run id, so runs against a shared cluster do not
//! see each other's records. Every wait is bounded by the phase timeout; the
//! ingest server, the aggregator and the broker are always shut down.
//!
//! Entry point: [`run`] with [`BenchOptions`].

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::{BufMut, Bytes};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use prost::Message as _;
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Endpoint;

use crate::aggregate::{self, AggregateConfig, LiveState, Outcome};
use crate::ingest::{self, IngestConfig, IngestError, Pseudonymizer, Publisher, record_key};
use crate::instrument::{Catalog, DEMO_STUDY_ID};
use crate::kafka::{self, KafkaConfig, KafkaError};
use crate::proto::ENVELOPE_VERSION;
use crate::proto::v1::ingest_service_client::IngestServiceClient;
use crate::proto::v1::{self, Envelope, GetInstrumentRequest, SubmitRequest, SubmitResult};
use crate::synth;
use crate::validate::Limits;

/// (b)/(a) must reach this share: ingest may cost at most 30% of the raw producer.
pub const TARGET_INGEST_RATIO: f64 = 0.70;
/// (c): unary latency p99 must stay below this.
pub const TARGET_P99: Duration = Duration::from_millis(10);
/// (d): the aggregator must apply at least this share of the raw read rate.
pub const TARGET_AGGREGATE_RATIO: f64 = 0.80;

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
    Broker(#[from] crate::broker::BootstrapError),
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

/// Records per second over a timed span.
#[derive(Debug, Clone, Copy, Default)]
pub struct Throughput {
    /// Records that succeeded (acknowledged, accepted, read or applied).
    pub records: u64,
    /// Records that failed (not acknowledged, not accepted).
    pub failed: u64,
    /// The measured span.
    pub elapsed: Duration,
    /// CPU time over the span, when known.
    pub cpu: CpuUse,
}

/// CPU time spent during a span.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    /// By this process: broker, clients and servers.
    pub own: Option<Duration>,
    /// By every other process on the machine (the bench shares the CPUs).
    pub others: Option<Duration>,
}

impl Throughput {
    /// Process CPU time per successful record.
    pub fn cpu_per_record(&self) -> Option<Duration> {
        self.cpu.own.map(|c| c / u32::try_from(self.records.max(1)).unwrap_or(u32::MAX))
    }

    /// `12,345 rec/s, 81 µs CPU/rec`.
    fn figure(&self) -> String {
        match self.cpu_per_record() {
            Some(c) => format!(
                "{} rec/s, {:.0} µs CPU/rec, {} cores (+{} others)",
                thousands(self.rate()),
                c.as_secs_f64() * 1e6,
                cores(self.cpu.own, self.elapsed),
                cores(self.cpu.others, self.elapsed),
            ),
            _ => format!("{} rec/s", thousands(self.rate())),
        }
    }

    /// Successful records per second.
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Latency figures of (c).
#[derive(Debug, Clone, Default)]
pub struct Latency {
    /// Requests sent.
    pub sent: u64,
    /// Requests answered OK.
    pub ok: u64,
    /// Requests not answered OK (by code name), timeouts included.
    pub errors: BTreeMap<String, u64>,
    /// Percentiles from the scheduled send time: p50, p99, max.
    pub scheduled: [Duration; 3],
    /// Percentiles from the actual send: p50, p99, max.
    pub sent_at: [Duration; 3],
    /// Largest delay between a scheduled send and the actual one.
    pub max_send_lag: Duration,
    /// Requests per second actually achieved (sent / span of sends).
    pub achieved_rate: f64,
    /// CPU time over the measured span (warm-up included).
    pub cpu: CpuUse,
    /// The span `cpu` covers.
    pub elapsed: Duration,
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// The options of the run.
    pub options: BenchOptions,
    /// What the broker was.
    pub broker: String,
    /// Logical CPUs (like `nproc`).
    pub cpus: usize,
    /// CPU model, when known.
    pub cpu_model: Option<String>,
    /// 1-minute load average before and after the run, when known.
    pub load: (Option<f64>, Option<f64>),
    /// `linger.ms` of the producers, as configured.
    pub linger_ms: String,
    /// The ingest server's `stream_window` and `max_inflight`.
    pub ingest_limits: (usize, usize),
    /// Mean encoded envelope size, bytes.
    pub envelope_bytes: usize,
    /// (a) raw producer.
    pub raw_produce: Throughput,
    /// (b) ingest through `SubmitStream`.
    pub ingest: Throughput,
    /// (b) rejected results by code.
    pub ingest_rejected: BTreeMap<i32, u64>,
    /// (c) unary latency.
    pub latency: Latency,
    /// (d) raw consumer read rate (first to last record), the faster of two
    /// passes.
    pub raw_consume: Throughput,
    /// (d) the rates of the raw pass before and after the aggregator.
    pub raw_passes: (f64, f64),
    /// (d) aggregator apply rate (first to last record).
    pub aggregate: Throughput,
    /// (d) the aggregator's outcomes.
    pub outcomes: BTreeMap<&'static str, u64>,
    /// (d) consumer-group join time (subscribe to first record): raw, aggregator.
    pub join: (Duration, Duration),
}

impl BenchReport {
    /// (b)/(a).
    pub fn ingest_ratio(&self) -> f64 {
        self.ingest.rate() / self.raw_produce.rate().max(1e-9)
    }

    /// (d) aggregator / raw consumer.
    pub fn aggregate_ratio(&self) -> f64 {
        self.aggregate.rate() / self.raw_consume.rate().max(1e-9)
    }

    /// Whether every target is met.
    pub fn all_met(&self) -> bool {
        self.ingest_ratio() >= TARGET_INGEST_RATIO
            && self.latency.scheduled[1] < TARGET_P99
            && self.latency.errors.is_empty()
            && self.aggregate_ratio() >= TARGET_AGGREGATE_RATIO
    }
}

/// Runs every phase, writes the report table to `out` and returns the figures.
pub async fn run(opts: &BenchOptions, out: &mut impl Write) -> Result<BenchReport, BenchError> {
    opts.validate()?;
    let load_before = load_average();
    let env = Env::start(opts).await?;
    let measured = phases(opts, &env.bootstrap, &env.describe).await;
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
    broker: crate::broker::Bootstrap,
    /// Removed at shutdown.
    temp: Option<PathBuf>,
}

impl Env {
    async fn start(opts: &BenchOptions) -> Result<Env, BenchError> {
        // The embedded broker's database goes to a fresh temporary directory.
        let temp = match opts.brokers {
            Some(_) => None,
            None => {
                let temp = std::env::temp_dir().join(format!("fieldwatch-bench-{}", run_id()));
                std::fs::create_dir_all(&temp)
                    .map_err(|source| BenchError::TempDir { path: temp.clone(), source })?;
                progress(format_args!("starting the embedded broker in {}", temp.display()));
                Some(temp)
            }
        };
        let data_dir = temp.clone().unwrap_or_default();
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        match crate::broker::bootstrap_or_embedded(
            &KafkaConfig::default(),
            opts.brokers.as_deref(),
            listen,
            &data_dir,
        )
        .await
        {
            Ok(broker) => {
                Ok(Env { bootstrap: broker.servers().to_owned(), describe: broker.describe(), broker, temp })
            }
            Err(e) => {
                if let Some(t) = temp {
                    let _ = std::fs::remove_dir_all(&t);
                }
                Err(e.into())
            }
        }
    }

    async fn shutdown(self) {
        self.broker.shutdown().await;
        if let Some(t) = self.temp
            && let Err(e) = std::fs::remove_dir_all(&t)
        {
            tracing::warn!(dir = %t.display(), error = %e, "cannot remove the bench directory");
        }
    }
}

/// Inputs prepared before any clock starts.
struct Inputs {
    /// (a): record key and encoded envelope, as ingest would write them.
    envelopes: Vec<(String, Vec<u8>)>,
    /// (b): the same interviews as requests, split between the streams.
    streams: Vec<Vec<SubmitRequest>>,
    /// (c): warm-up requests, then the measured ones.
    unary: Vec<v1::Submission>,
}

fn prepare(catalog: &Catalog, opts: &BenchOptions) -> Result<Inputs, BenchError> {
    let study = catalog.get(DEMO_STUDY_ID).ok_or(BenchError::NoDemoStudy)?;
    let plain = synth::Options { random_strings: false };
    progress(format_args!("generating {} synthetic interviews", opts.records));
    let subs: Vec<v1::Submission> =
        synth::interviews(study, opts.records, 1, &plain).into_iter().map(v1::Submission::from).collect();
    let pseudonyms = Pseudonymizer::new(HMAC_KEY.as_bytes());
    let received_at = SystemTime::now();
    let envelopes = subs
        .iter()
        .map(|s| {
            let respondent_key = pseudonyms.key(&s.respondent_id);
            let key = record_key(study.id(), &respondent_key);
            let envelope = Envelope {
                version: ENVELOPE_VERSION,
                received_at: Some(received_at.into()),
                frontend: ANONYMOUS.to_owned(),
                submission: Some(v1::Submission { respondent_id: respondent_key, ..s.clone() }),
                disposition: None,
            };
            (key, envelope.encode_to_vec())
        })
        .collect();
    let per_stream = subs.len().div_ceil(opts.streams);
    let mut streams: Vec<Vec<SubmitRequest>> = Vec::with_capacity(opts.streams);
    let mut requests = subs.into_iter().map(|s| SubmitRequest { submission: Some(s), disposition: None });
    for _ in 0..opts.streams {
        let chunk: Vec<SubmitRequest> = requests.by_ref().take(per_stream).collect();
        if !chunk.is_empty() {
            streams.push(chunk);
        }
    }
    let unary_count = u64::from(opts.rate) * (WARMUP_SECONDS + opts.seconds) + WARMUP_REQUESTS;
    // Another seed: other respondent and submission ids than (b).
    let unary =
        synth::interviews(study, unary_count, 2, &plain).into_iter().map(v1::Submission::from).collect();
    Ok(Inputs { envelopes, streams, unary })
}

async fn phases(opts: &BenchOptions, bootstrap: &str, broker: &str) -> Result<BenchReport, BenchError> {
    let run = run_id();
    let topic = |what: &str| format!("fieldwatch.bench.{run}.{what}");
    let mut kafka = KafkaConfig {
        brokers: Some(bootstrap.to_owned()),
        responses_topic: topic("ingest"),
        quality_topic: topic("quality"),
        partitions: opts.partitions,
        ..KafkaConfig::default()
    };
    kafka.client_properties.extend(opts.kafka_properties.iter().cloned());
    if let Some(linger) = opts.linger_ms {
        kafka.client_properties.insert("linger.ms".to_owned(), linger.to_string());
    }
    let raw_kafka =
        KafkaConfig { responses_topic: topic("raw"), quality_topic: topic("raw-quality"), ..kafka.clone() };
    let latency_kafka = KafkaConfig {
        responses_topic: topic("latency"),
        quality_topic: topic("latency-quality"),
        ..kafka.clone()
    };
    for k in [&kafka, &raw_kafka, &latency_kafka] {
        kafka::ensure_topics(k, bootstrap).await?;
    }

    let linger_ms =
        kafka::producer_config(&kafka, bootstrap).get("linger.ms").unwrap_or("librdkafka default").to_owned();
    let catalog = Arc::new(Catalog::demo());
    let inputs = prepare(&catalog, opts)?;
    let envelope_bytes =
        inputs.envelopes.iter().map(|(_, p)| p.len()).sum::<usize>() / inputs.envelopes.len().max(1);

    // (c) first, on its own topic: after the bulk phases the broker spends
    // seconds checkpointing their writes, which is not the steady state.
    let server = IngestUnderTest::start(&latency_kafka, bootstrap, &catalog, opts).await?;
    let ingest_limits = server.limits;
    let measured = match server.endpoint() {
        Ok(endpoint) => unary_latency(&endpoint, inputs.unary, opts).await,
        Err(e) => Err(e),
    };
    let stopped = server.stop().await;
    let latency = measured?;
    stopped?;

    let raw_produce = raw_produce(&raw_kafka, bootstrap, &inputs.envelopes, opts).await?;
    drop(inputs.envelopes);

    let server = IngestUnderTest::start(&kafka, bootstrap, &catalog, opts).await?;
    let measured = match server.endpoint() {
        Ok(endpoint) => ingest_streams(&endpoint, inputs.streams, opts).await,
        Err(e) => Err(e),
    };
    let stopped = server.stop().await;
    let (ingest, ingest_rejected) = measured?;
    stopped?;

    // The topic holds exactly the records accepted in (b). The raw consumer
    // reads it before and after the aggregator and the faster pass is the
    // baseline, so neither gains from going second (warm caches).
    let (raw_before, raw_join) =
        raw_consume(&kafka, bootstrap, &format!("fieldwatch-bench-{run}-raw-1"), ingest.records, opts)
            .await?;
    let (aggregate, outcomes, agg_join) = aggregate(
        &kafka,
        bootstrap,
        &format!("fieldwatch-bench-{run}-aggregator"),
        &catalog,
        ingest.records,
        opts,
    )
    .await?;
    let (raw_after, _) =
        raw_consume(&kafka, bootstrap, &format!("fieldwatch-bench-{run}-raw-2"), ingest.records, opts)
            .await?;
    let raw_passes = (raw_before.rate(), raw_after.rate());
    let raw_consume = if raw_after.rate() > raw_before.rate() { raw_after } else { raw_before };
    let join = (raw_join, agg_join);

    Ok(BenchReport {
        options: opts.clone(),
        broker: broker.to_owned(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model: cpu_model(),
        load: (None, None),
        linger_ms,
        ingest_limits,
        envelope_bytes,
        raw_produce,
        ingest,
        ingest_rejected,
        latency,
        raw_consume,
        raw_passes,
        aggregate,
        outcomes,
        join,
    })
}

/// An ingest server started in-process for one phase.
struct IngestUnderTest {
    addr: SocketAddr,
    /// `stream_window` and `max_inflight` of the server.
    limits: (usize, usize),
    /// Stops the server; the receiver is the server's shutdown future.
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), IngestError>>,
}

impl IngestUnderTest {
    /// `ingest::serve` on 127.0.0.1:0, publishing to `kafka.responses_topic`.
    async fn start(
        kafka: &KafkaConfig,
        bootstrap: &str,
        catalog: &Arc<Catalog>,
        opts: &BenchOptions,
    ) -> Result<IngestUnderTest, BenchError> {
        let publisher = Publisher::from_kafka(kafka, bootstrap)?;
        let listener = ingest::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let addr = listener.local_addr().map_err(BenchError::LocalAddr)?;
        let mut config = IngestConfig { hmac_key: Some(HMAC_KEY.to_owned()), ..IngestConfig::default() };
        if let Some(window) = opts.stream_window {
            config.stream_window = window;
        }
        let limits = (config.stream_window, config.max_inflight);
        let (stop, stopped) = oneshot::channel::<()>();
        let serve = ingest::serve(
            config,
            catalog.clone(),
            publisher,
            &prometheus::Registry::new(),
            listener,
            async {
                let _ = stopped.await;
            },
        );
        Ok(IngestUnderTest { addr, limits, stop, task: tokio::spawn(serve) })
    }

    fn endpoint(&self) -> Result<Endpoint, BenchError> {
        Ok(Endpoint::from_shared(format!("http://{}", self.addr))?.connect_timeout(CONNECT_TIMEOUT))
    }

    /// Shuts the server down (drain, flush) and waits for it, within [`STOP_TIMEOUT`].
    async fn stop(self) -> Result<(), BenchError> {
        let _ = self.stop.send(());
        match tokio::time::timeout(STOP_TIMEOUT, self.task).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(e.into()),
            Ok(Err(e)) => Err(BenchError::Task("ingest server", e)),
            Err(_) => {
                tracing::warn!("the ingest server did not stop within {STOP_TIMEOUT:?}");
                Ok(())
            }
        }
    }
}

/// (a): every envelope through a bare `FutureProducer` with fieldwatch's
/// producer settings, `opts.window` deliveries awaited concurrently.
async fn raw_produce(
    kafka: &KafkaConfig,
    bootstrap: &str,
    envelopes: &[(String, Vec<u8>)],
    opts: &BenchOptions,
) -> Result<Throughput, BenchError> {
    const PHASE: &str = "(a) raw producer";
    let producer: FutureProducer = kafka::producer_config(kafka, bootstrap).create()?;
    let total = envelopes.len() as u64;
    let done = Arc::new(AtomicU64::new(0));
    let _progress = Progress::start(PHASE, total, done.clone());
    let cpu = CpuClock::start();
    let start = Instant::now();
    // Deliveries in flight; at most `opts.window`, the other end is
    // librdkafka's delivery callback (bounded by message.timeout.ms).
    let mut inflight = FuturesUnordered::new();
    let mut failed = 0u64;
    let count =
        |r: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, _>, failed: &mut u64| match r {
            Ok(Ok(_)) => {
                done.fetch_add(1, Ordering::Relaxed);
            }
            _ => *failed += 1,
        };
    let work = async {
        for (key, payload) in envelopes {
            while inflight.len() >= opts.window {
                if let Some(r) = inflight.next().await {
                    count(r, &mut failed);
                }
            }
            match producer.send_result(FutureRecord::to(&kafka.responses_topic).key(key).payload(payload)) {
                Ok(delivery) => inflight.push(delivery),
                Err((e, _)) => {
                    tracing::warn!(error = %e, "raw producer: enqueue failed");
                    failed += 1;
                }
            }
        }
        while let Some(r) = inflight.next().await {
            count(r, &mut failed);
        }
    };
    let timeout = opts.phase_timeout();
    if tokio::time::timeout(timeout, work).await.is_err() {
        return Err(BenchError::Timeout { phase: PHASE, timeout, done: done.load(Ordering::Relaxed), total });
    }
    let elapsed = start.elapsed();
    Ok(Throughput { records: done.load(Ordering::Relaxed), failed, elapsed, cpu: cpu.elapsed() })
}

/// (b): the interviews through `SubmitStream`, one call per chunk, all
/// concurrently, each on its own connection; counts accepted results.
async fn ingest_streams(
    endpoint: &Endpoint,
    streams: Vec<Vec<SubmitRequest>>,
    opts: &BenchOptions,
) -> Result<(Throughput, BTreeMap<i32, u64>), BenchError> {
    const PHASE: &str = "(b) ingest SubmitStream";
    let total: u64 = streams.iter().map(|s| s.len() as u64).sum();
    // Connect first and make one call on each connection, so connection
    // set-up is not measured.
    let mut channels = Vec::with_capacity(streams.len());
    for _ in &streams {
        let channel = endpoint.connect().await?;
        IngestServiceClient::new(channel.clone())
            .get_instrument(GetInstrumentRequest { study: DEMO_STUDY_ID.to_owned() })
            .await
            .map_err(|status| BenchError::Call { phase: PHASE, status })?;
        channels.push(channel);
    }
    // Encoded before the clock starts, as (a)'s envelopes are: the load
    // generator's encoding is not the system under test.
    let streams: Vec<Vec<Bytes>> = streams
        .into_iter()
        .map(|requests| requests.iter().map(|r| Bytes::from(r.encode_to_vec())).collect())
        .collect();
    let accepted = Arc::new(AtomicU64::new(0));
    let _progress = Progress::start(PHASE, total, accepted.clone());
    let cpu = CpuClock::start();
    let start = Instant::now();
    // One task per stream; dropping the set (timeout) aborts them.
    let mut tasks = JoinSet::new();
    for (requests, channel) in streams.into_iter().zip(channels) {
        let accepted = accepted.clone();
        tasks.spawn(async move {
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            let path = tonic::codegen::http::uri::PathAndQuery::from_static(SUBMIT_STREAM_PATH);
            let request = tonic::Request::new(futures::stream::iter(requests));
            let mut results = grpc.streaming(request, path, PreEncoded).await?.into_inner();
            let mut rejected: BTreeMap<i32, u64> = BTreeMap::new();
            while let Some(r) = results.message().await? {
                if r.accepted {
                    accepted.fetch_add(1, Ordering::Relaxed);
                } else {
                    *rejected.entry(r.code).or_default() += 1;
                }
            }
            Ok::<_, tonic::Status>(rejected)
        });
    }
    let timeout = opts.phase_timeout();
    let joined = tokio::time::timeout(timeout, async {
        let mut rejected: BTreeMap<i32, u64> = BTreeMap::new();
        while let Some(r) = tasks.join_next().await {
            let per_stream = r
                .map_err(|e| BenchError::Task(PHASE, e))?
                .map_err(|status| BenchError::Call { phase: PHASE, status })?;
            for (code, n) in per_stream {
                *rejected.entry(code).or_default() += n;
            }
        }
        Ok::<_, BenchError>(rejected)
    })
    .await;
    let elapsed = start.elapsed();
    let cpu = cpu.elapsed();
    let records = accepted.load(Ordering::Relaxed);
    let rejected = match joined {
        Err(_) => return Err(BenchError::Timeout { phase: PHASE, timeout, done: records, total }),
        Ok(r) => r?,
    };
    Ok((Throughput { records, failed: total - records, elapsed, cpu }, rejected))
}

/// gRPC method path of `IngestService.SubmitStream`.
const SUBMIT_STREAM_PATH: &str = "/fieldwatch.v1.IngestService/SubmitStream";

/// Client codec of (b): sends `SubmitRequest`s encoded in advance, decodes
/// `SubmitResult`s with prost.
#[derive(Debug, Clone, Copy)]
struct PreEncoded;

impl Codec for PreEncoded {
    type Encode = Bytes;
    type Decode = SubmitResult;
    type Encoder = PreEncoded;
    type Decoder = PreEncoded;

    fn encoder(&mut self) -> PreEncoded {
        PreEncoded
    }

    fn decoder(&mut self) -> PreEncoded {
        PreEncoded
    }
}

impl Encoder for PreEncoded {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for PreEncoded {
    type Item = SubmitResult;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<SubmitResult>, tonic::Status> {
        SubmitResult::decode(src).map(Some).map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

/// (c): unary `Submit` at `opts.rate` per second for `opts.seconds`,
/// open-loop: each call is spawned at its scheduled time whether or not
/// earlier ones have answered.
async fn unary_latency(
    endpoint: &Endpoint,
    submissions: Vec<v1::Submission>,
    opts: &BenchOptions,
) -> Result<Latency, BenchError> {
    const PHASE: &str = "(c) unary Submit";
    let client = IngestServiceClient::new(endpoint.connect().await?);
    let mut submissions = submissions.into_iter();
    progress(format_args!("{PHASE}: {WARMUP_REQUESTS} warm-up calls"));
    for sub in submissions.by_ref().take(WARMUP_REQUESTS as usize) {
        let _ = tokio::time::timeout(
            REQUEST_TIMEOUT,
            client.clone().submit(SubmitRequest { submission: Some(sub), disposition: None }),
        )
        .await;
    }

    let warmup = u64::from(opts.rate) * WARMUP_SECONDS;
    let total = u64::from(opts.rate) * opts.seconds;
    let period = Duration::from_secs_f64(1.0 / f64::from(opts.rate));
    let answered = Arc::new(AtomicU64::new(0));
    let _progress = Progress::start(PHASE, warmup + total, answered.clone());
    // Samples of answered calls. Its capacity is the number of calls, so a
    // call never waits to report; the senders are the ticker and the call
    // tasks, and the receiver ends once all of them are done.
    let (samples_tx, mut samples_rx) =
        mpsc::channel::<Sample>(usize::try_from(warmup + total).unwrap_or(usize::MAX).max(1));
    // Set when the phase times out: the ticker stops scheduling calls.
    let abandon = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Handle::current();
    let cpu = CpuClock::start();
    let started = Instant::now();
    // The ticker runs on a blocking-pool thread because std's sleep wakes
    // within microseconds of the deadline, while tokio's timer rounds up to
    // the next millisecond, which would add up to 1 ms to every latency.
    // Each call is spawned onto the runtime at its scheduled time, whether
    // or not earlier calls have answered (open loop). Every call ends by
    // REQUEST_TIMEOUT.
    let ticker = tokio::task::spawn_blocking({
        let (answered, abandon) = (answered.clone(), abandon.clone());
        move || {
            // The measured span starts after the warm-up calls.
            let begin = Instant::now() + Duration::from_millis(10) + period.mul_f64(warmup as f64);
            let mut max_lag = Duration::ZERO;
            let mut last = begin;
            for (i, sub) in submissions.enumerate() {
                if abandon.load(Ordering::Relaxed) {
                    break;
                }
                let at = (begin + period.mul_f64(i as f64)) - period.mul_f64(warmup as f64);
                let now = Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                }
                let now = Instant::now();
                if at >= begin {
                    max_lag = max_lag.max(now.saturating_duration_since(at));
                    last = now;
                }
                let (mut client, samples, answered) = (client.clone(), samples_tx.clone(), answered.clone());
                runtime.spawn(async move {
                    let sent = Instant::now();
                    let r = tokio::time::timeout(
                        REQUEST_TIMEOUT,
                        client.submit(SubmitRequest { submission: Some(sub), disposition: None }),
                    )
                    .await;
                    let from_send = sent.elapsed();
                    let from_schedule = at.elapsed();
                    answered.fetch_add(1, Ordering::Relaxed);
                    let error = match r {
                        Ok(Ok(_)) => None,
                        Ok(Err(status)) => Some(format!("{:?}", status.code())),
                        Err(_) => Some("Timeout".to_owned()),
                    };
                    // Cannot be full: one slot per call.
                    // Warm-up calls (scheduled before `begin`) are not reported.
                    if let Some(offset) = at.checked_duration_since(begin) {
                        let _ = samples.try_send(Sample { offset, from_schedule, from_send, error });
                    }
                });
            }
            (max_lag, last.saturating_duration_since(begin))
        }
    });
    let timeout = opts.phase_timeout().max(Duration::from_secs(opts.seconds) + REQUEST_TIMEOUT * 2);
    let collected = tokio::time::timeout(timeout, async {
        let mut samples: Vec<Sample> = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        while let Some(s) = samples_rx.recv().await {
            samples.push(s);
        }
        samples
    })
    .await;
    let samples = match collected {
        Ok(samples) => samples,
        Err(_) => {
            abandon.store(true, Ordering::Relaxed);
            return Err(BenchError::Timeout {
                phase: PHASE,
                timeout,
                done: answered.load(Ordering::Relaxed),
                total,
            });
        }
    };
    let (cpu, elapsed) = (cpu.elapsed(), started.elapsed());
    let (max_send_lag, span) = ticker.await.map_err(|e| BenchError::Task(PHASE, e))?;
    let span = span.as_secs_f64();
    if let Some(path) = &opts.latency_csv {
        write_samples(path, &samples).map_err(|source| BenchError::Csv { path: path.clone(), source })?;
    }
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for s in &samples {
        if let Some(e) = &s.error {
            *errors.entry(e.clone()).or_default() += 1;
        }
    }
    let ok = samples.iter().filter(|s| s.error.is_none()).count() as u64;
    let mut scheduled: Vec<Duration> = samples.iter().map(|s| s.from_schedule).collect();
    let mut sent_at: Vec<Duration> = samples.iter().map(|s| s.from_send).collect();
    Ok(Latency {
        sent: samples.len() as u64,
        ok,
        errors,
        scheduled: percentiles(&mut scheduled),
        sent_at: percentiles(&mut sent_at),
        max_send_lag,
        achieved_rate: if span > 0.0 { (samples.len() as f64 - 1.0) / span } else { 0.0 },
        cpu,
        elapsed,
    })
}

/// One unary call of (c).
struct Sample {
    /// Scheduled send time, from the first call's.
    offset: Duration,
    from_schedule: Duration,
    from_send: Duration,
    /// The status code name, or `Timeout`; `None` when OK.
    error: Option<String>,
}

/// The calls of (c) as CSV, in schedule order.
fn write_samples(path: &std::path::Path, samples: &[Sample]) -> std::io::Result<()> {
    let mut sorted: Vec<&Sample> = samples.iter().collect();
    sorted.sort_by_key(|s| s.offset);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "offset_ms,latency_ms,from_send_ms,error")?;
    for s in sorted {
        writeln!(
            out,
            "{:.3},{:.3},{:.3},{}",
            s.offset.as_secs_f64() * 1e3,
            s.from_schedule.as_secs_f64() * 1e3,
            s.from_send.as_secs_f64() * 1e3,
            s.error.as_deref().unwrap_or("")
        )?;
    }
    out.flush()
}

/// p50, p99 and max (nearest rank); sorts `v`.
fn percentiles(v: &mut [Duration]) -> [Duration; 3] {
    if v.is_empty() {
        return [Duration::ZERO; 3];
    }
    v.sort_unstable();
    let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    [rank(0.50), rank(0.99), v[v.len() - 1]]
}

/// (d) baseline: a bare `StreamConsumer` with the aggregator's consumer
/// settings, counting `total` records. Returns the rate from the first to
/// the last record, and the time from subscribing to the first record.
async fn raw_consume(
    kafka: &KafkaConfig,
    bootstrap: &str,
    group: &str,
    total: u64,
    opts: &BenchOptions,
) -> Result<(Throughput, Duration), BenchError> {
    const PHASE: &str = "(d) raw consumer";
    let consumer: StreamConsumer = kafka::consumer_config(kafka, bootstrap, group).create()?;
    consumer.subscribe(&[kafka.responses_topic.as_str()])?;
    let read = Arc::new(AtomicU64::new(0));
    let _progress = Progress::start(PHASE, total, read.clone());
    let start = Instant::now();
    let mut first: Option<(Instant, CpuClock)> = None;
    let mut bytes = 0usize;
    let work = async {
        while read.load(Ordering::Relaxed) < total {
            match consumer.recv().await {
                Ok(m) => {
                    first.get_or_insert_with(|| (Instant::now(), CpuClock::start()));
                    bytes += m.payload().map_or(0, <[u8]>::len);
                    read.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "raw consumer: consume error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    };
    let timeout = opts.phase_timeout();
    if tokio::time::timeout(timeout, work).await.is_err() {
        return Err(BenchError::Timeout { phase: PHASE, timeout, done: read.load(Ordering::Relaxed), total });
    }
    std::hint::black_box(bytes);
    let end = Instant::now();
    let (first, cpu) = first.unwrap_or((end, CpuClock::start()));
    let cpu = cpu.elapsed();
    consumer.unsubscribe();
    Ok((Throughput { records: total, failed: 0, elapsed: end - first, cpu }, first - start))
}

/// (d): `aggregate::run` in a fresh group until it has processed `total`
/// records. Returns the rate from the first to the last record, the
/// outcomes, and the time from start to the first record.
async fn aggregate(
    kafka: &KafkaConfig,
    bootstrap: &str,
    group: &str,
    catalog: &Arc<Catalog>,
    total: u64,
    opts: &BenchOptions,
) -> Result<(Throughput, BTreeMap<&'static str, u64>, Duration), BenchError> {
    const PHASE: &str = "(d) aggregator";
    let shared = LiveState::new(catalog.clone(), Limits::default());
    let config = AggregateConfig { group_id: group.to_owned(), ..AggregateConfig::default() };
    // Stops the aggregator; the receiver is its shutdown future.
    let (stop, stopped) = oneshot::channel::<()>();
    let task: JoinHandle<Result<(), aggregate::AggregateError>> = {
        let (kafka, bootstrap, shared) = (kafka.clone(), bootstrap.to_owned(), shared.clone());
        tokio::spawn(async move {
            aggregate::run(&kafka, &bootstrap, &config, shared, async {
                let _ = stopped.await;
            })
            .await
        })
    };
    let processed = Arc::new(AtomicU64::new(0));
    let _progress = Progress::start(PHASE, total, processed.clone());
    let start = Instant::now();
    let mut first: Option<(Instant, CpuClock)> = None;
    // Polls the outcome counters (the aggregator's own bookkeeping); 1 ms
    // granularity is small next to the phase.
    let work = async {
        loop {
            let n: u64 = shared.outcomes().values().sum();
            processed.store(n, Ordering::Relaxed);
            if n > 0 {
                first.get_or_insert_with(|| (Instant::now(), CpuClock::start()));
            }
            if n >= total || task.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let timeout = opts.phase_timeout();
    let finished = tokio::time::timeout(timeout, work).await.is_ok();
    let end = Instant::now();
    let (first, cpu) = first.unwrap_or((end, CpuClock::start()));
    let cpu = cpu.elapsed();
    let _ = stop.send(());
    let stopped = tokio::time::timeout(STOP_TIMEOUT, task).await;
    let done = processed.load(Ordering::Relaxed);
    if !finished {
        return Err(BenchError::Timeout { phase: PHASE, timeout, done, total });
    }
    match stopped {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(e.into()),
        Ok(Err(e)) => return Err(BenchError::Task(PHASE, e)),
        Err(_) => tracing::warn!("the aggregator did not stop within {STOP_TIMEOUT:?}"),
    }
    if done < total {
        return Err(BenchError::Timeout { phase: PHASE, timeout, done, total });
    }
    let outcomes = shared.outcomes();
    let by_name = Outcome::ALL
        .iter()
        .filter_map(|o| outcomes.get(o).filter(|n| **n > 0).map(|n| (o.as_str(), *n)))
        .collect();
    let applied = outcomes.get(&Outcome::Applied).copied().unwrap_or(0);
    Ok((
        Throughput { records: done, failed: done - applied, elapsed: end - first, cpu },
        by_name,
        first - start,
    ))
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

/// A progress line on stderr.
fn progress(what: fmt::Arguments<'_>) {
    eprintln!("bench: {what}");
}

/// Prints `label: done/total` on stderr every [`PROGRESS_EVERY`] until dropped.
struct Progress(JoinHandle<()>);

impl Progress {
    fn start(label: &'static str, total: u64, done: Arc<AtomicU64>) -> Progress {
        progress(format_args!("{label}: {total} records"));
        let start = Instant::now();
        Progress(tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROGRESS_EVERY).await;
                let n = done.load(Ordering::Relaxed);
                let rate = n as f64 / start.elapsed().as_secs_f64();
                progress(format_args!("{label}: {n}/{total} ({rate:.0}/s)"));
            }
        }))
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// CPU time of this process (all threads: broker, clients, servers) and of
/// the whole machine since `start`, from `/proc` (10 ms resolution); `None`
/// elsewhere.
struct CpuClock {
    own: Option<Duration>,
    machine: Option<Duration>,
}

impl CpuClock {
    fn start() -> CpuClock {
        CpuClock { own: process_cpu(), machine: machine_cpu() }
    }

    fn elapsed(&self) -> CpuUse {
        let own = process_cpu().zip(self.own).map(|(now, then)| now.saturating_sub(then));
        let machine = machine_cpu().zip(self.machine).map(|(now, then)| now.saturating_sub(then));
        CpuUse { own, others: machine.zip(own).map(|(m, o)| m.saturating_sub(o)) }
    }
}

/// Busy time of all CPUs (everything but idle and iowait) from `/proc/stat`,
/// in USER_HZ ticks like [`process_cpu`].
fn machine_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line.split_whitespace().skip(1).map_while(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is in user)
    let busy: u64 =
        ticks.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    Some(Duration::from_millis(busy * 10))
}

/// utime + stime of this process. The kernel reports them in USER_HZ ticks,
/// 100 per second on every Linux architecture fieldwatch builds for.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// `12345.6` as `12,346`.
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT MET" }
}

/// CPU time over a span as cores, `?` when unknown.
fn cores(cpu: Option<Duration>, span: Duration) -> String {
    cpu.map_or("?".to_owned(), |c| format!("{:.1}", c.as_secs_f64() / span.as_secs_f64().max(1e-9)))
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        let l = &self.latency;
        let load = |x: Option<f64>| x.map_or("?".to_owned(), |v| format!("{v:.2}"));
        writeln!(f, "fieldwatch bench")?;
        writeln!(
            f,
            "machine: {} cpus (nproc){}; load avg (1 min) {} before, {} after; {} build",
            self.cpus,
            self.cpu_model.as_deref().map(|m| format!(", {m}")).unwrap_or_default(),
            load(self.load.0),
            load(self.load.1),
            if cfg!(debug_assertions) { "DEBUG (figures not representative)" } else { "release" },
        )?;
        writeln!(
            f,
            "broker: {}; {} partitions; {} records of the demo study, {} bytes per envelope on average",
            self.broker, o.partitions, o.records, self.envelope_bytes
        )?;
        writeln!(
            f,
            "settings: producer linger.ms {}; ingest stream_window {}, max_inflight {}{}",
            self.linger_ms,
            self.ingest_limits.0,
            self.ingest_limits.1,
            self.options.kafka_properties.iter().map(|(k, v)| format!("; {k}={v}")).collect::<String>(),
        )?;
        writeln!(f)?;
        let row = |f: &mut fmt::Formatter<'_>, what: &str, figure: &str, target: &str, verdict: &str| {
            writeln!(f, "{what:<52} {figure:>56}  {target:<14} {verdict}")
        };
        row(f, "phase", "figure", "target", "")?;
        row(f, &"-".repeat(52), &"-".repeat(56), &"-".repeat(14), "-------")?;
        row(
            f,
            &format!("(a) raw producer, acks=all, idempotent, {} in flight", o.window),
            &self.raw_produce.figure(),
            "",
            "",
        )?;
        row(
            f,
            &format!("(b) ingest SubmitStream, {} streams, accepted only", o.streams),
            &self.ingest.figure(),
            "",
            "",
        )?;
        let ratio = self.ingest_ratio();
        row(
            f,
            "    ratio (b)/(a)",
            &format!("{:.1} %", ratio * 100.0),
            &format!(">= {:.0} %", TARGET_INGEST_RATIO * 100.0),
            met(ratio >= TARGET_INGEST_RATIO),
        )?;
        row(
            f,
            &format!("(c) unary Submit, {}/s for {} s, open loop", o.rate, o.seconds),
            &format!("p50 {}  p99 {}  max {}", ms(l.scheduled[0]), ms(l.scheduled[1]), ms(l.scheduled[2])),
            &format!("p99 < {} ms", TARGET_P99.as_millis()),
            met(l.scheduled[1] < TARGET_P99 && l.errors.is_empty()),
        )?;
        row(
            f,
            "    (from the actual send)",
            &format!("p50 {}  p99 {}  max {}", ms(l.sent_at[0]), ms(l.sent_at[1]), ms(l.sent_at[2])),
            "",
            "",
        )?;
        row(f, "(d) raw consumer read rate", &self.raw_consume.figure(), "", "")?;
        row(f, "(d) aggregator apply rate (aggregate::run)", &self.aggregate.figure(), "", "")?;
        let ratio = self.aggregate_ratio();
        row(
            f,
            "    ratio aggregator / raw consumer",
            &format!("{:.1} %", ratio * 100.0),
            &format!(">= {:.0} %", TARGET_AGGREGATE_RATIO * 100.0),
            met(ratio >= TARGET_AGGREGATE_RATIO),
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "details: (a) {} acked, {} failed in {:.2} s; (b) {} accepted, {} not accepted {:?} in {:.2} s",
            self.raw_produce.records,
            self.raw_produce.failed,
            self.raw_produce.elapsed.as_secs_f64(),
            self.ingest.records,
            self.ingest.failed,
            self.ingest_rejected,
            self.ingest.elapsed.as_secs_f64(),
        )?;
        writeln!(
            f,
            "         (c) {} sent at {:.0}/s achieved, {} ok, errors {:?}, latest send {} behind schedule; \
             {} cores (+{} others)",
            l.sent,
            l.achieved_rate,
            l.ok,
            l.errors,
            ms(l.max_send_lag),
            cores(l.cpu.own, l.elapsed),
            cores(l.cpu.others, l.elapsed),
        )?;
        writeln!(
            f,
            "         (d) {} records each, first to last: raw {:.2} s, aggregator {:.2} s; raw passes \
             {} and {} rec/s; group join {:.2} s / {:.2} s; outcomes {:?}",
            self.raw_consume.records,
            self.raw_consume.elapsed.as_secs_f64(),
            self.aggregate.elapsed.as_secs_f64(),
            thousands(self.raw_passes.0),
            thousands(self.raw_passes.1),
            self.join.0.as_secs_f64(),
            self.join.1.as_secs_f64(),
            self.outcomes,
        )?;
        let cpu = |base: &Throughput, x: &Throughput| match (base.cpu_per_record(), x.cpu_per_record()) {
            (Some(b), Some(x)) if !x.is_zero() => {
                format!("{:.0} %", b.as_secs_f64() / x.as_secs_f64() * 100.0)
            }
            _ => "?".to_owned(),
        };
        writeln!(
            f,
            "         CPU per record, baseline / measured: (b) {}, (d) {} (the ratios to expect when the \
             process is CPU-bound; load avg and cores used show whether it was)",
            cpu(&self.raw_produce, &self.ingest),
            cpu(&self.raw_consume, &self.aggregate),
        )?;
        writeln!(f, "all targets {}", if self.all_met() { "met" } else { "NOT met" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let [p50, p99, max] = percentiles(&mut v);
        assert_eq!(
            (p50, p99, max),
            (Duration::from_millis(50), Duration::from_millis(99), Duration::from_millis(100))
        );
        assert_eq!(percentiles(&mut []), [Duration::ZERO; 3]);
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1234.0), "1,234");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }

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
