//! `fieldwatch bench-restore`: how long a fresh aggregator takes to be ready
//! when the responses topic already holds many interviews (default
//! 1,000,000; target under 10 s), with the partition snapshots an earlier
//! aggregator left, and — for comparison — without them (a replay).
//!
//! Steps, on one embedded broker (or `--brokers`):
//!
//! 1. write N − tail distinct synthetic interviews with the raw producer;
//! 2. make the partition snapshots, one of two ways (`--snapshots`):
//!    - `direct` (default): the bench applies each record, in offset order
//!      per partition as the producer's delivery reports give them, to an
//!      aggregator state ([`LiveState`], the aggregator's own decode → validate
//!      → check → apply) and saves every partition with its next offset =
//!      high watermark through the aggregator's own snapshot writer, as an
//!      aggregator does at shutdown, then commits those offsets for the
//!      group. No aggregator reads the topic.
//!    - `aggregator`: a first aggregator (`aggregate::run`) replays the
//!      topic from offset 0 until it is ready and stops, saving its
//!      partitions. On the embedded broker this only works for small topics
//!      (see `docs/benchmarks.md`);
//! 3. write the tail (the last `--tail-percent` of N), which no snapshot holds;
//! 4. time a fresh `aggregate::run` in the same group from start to ready
//!    (every partition restored from the state topic and read up to its
//!    high watermark), then check exactness: it must count exactly N
//!    interviews and its results must equal a reference state the bench
//!    built in-process from every delivered record; otherwise the run fails;
//! 5. with `--replay`, time a new group without snapshots the same way.

//!
//! The steps themselves are in `steps`; this file has the options, the
//! errors and the order of the steps. The report goes to the `impl Write`
//! [`run`] is given, progress lines are `tracing` events.

mod steps;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::producer::FutureProducer;

use super::broker::BenchBroker;
use crate::aggregate::snapshot;
use crate::instrument::{Catalog, DEMO_STUDY_ID, Study};
use crate::kafka::{self, KafkaConfig};

use steps::{Reference, check_exact, save_direct, time_to_ready, write};

/// The figure issue 4 asks for: a fresh aggregator ready within this.
pub const TARGET: Duration = Duration::from_secs(10);
/// Records the raw producer keeps in flight.
const WINDOW: usize = 2048;
/// Bound on one aggregator's way to ready.
const READY_TIMEOUT: Duration = Duration::from_secs(1800);

/// How the snapshots the timed aggregator restores are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SnapshotSource {
    /// In-process from the producer's delivery reports, with the
    /// aggregator's apply path and snapshot writer; no first aggregator.
    Direct,
    /// A first aggregator replays the topic and saves them when it stops.
    Aggregator,
}

impl SnapshotSource {
    fn describe(self) -> &'static str {
        match self {
            SnapshotSource::Direct => {
                "made in-process from the producer's delivery reports (aggregator apply path and snapshot writer, no first aggregator)"
            }
            SnapshotSource::Aggregator => "saved by a first aggregator that replayed the topic and stopped",
        }
    }
}

/// Options of `bench-restore`.
#[derive(Debug, Clone, clap::Args)]
pub struct RestoreOptions {
    /// Interviews in the topic.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// How the snapshots are made before the timed start.
    #[arg(long, value_enum, default_value_t = SnapshotSource::Direct)]
    pub snapshots: SnapshotSource,
    /// Share of the records (in %) written after the snapshots were made,
    /// which the timed aggregator reads on top of restoring.
    #[arg(long, default_value_t = 1.0)]
    pub tail_percent: f64,
    /// Also time a replay from offset 0 by a new group (no snapshots).
    #[arg(long)]
    pub replay: bool,
    /// Bootstrap servers of an existing cluster (default: embedded broker).
    #[arg(long)]
    pub brokers: Option<String>,
    /// Partitions of the topics.
    #[arg(long, default_value_t = 6)]
    pub partitions: u32,
    /// Extra librdkafka property for every client, as `kafka.client_properties`
    /// would set it (repeatable), e.g. `fetch.wait.max.ms=20`.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = crate::bench::parse_property)]
    pub kafka_properties: Vec<(String, String)>,
}

impl RestoreOptions {
    /// Records written after the snapshots.
    fn tail(&self) -> Result<u64, RestoreError> {
        if self.records == 0 || self.partitions == 0 {
            return Err(RestoreError::Options("--records and --partitions must be at least 1"));
        }
        if !(0.0..100.0).contains(&self.tail_percent) {
            return Err(RestoreError::Options("--tail-percent must be at least 0 and below 100"));
        }
        Ok(tail_of(self.records, self.tail_percent))
    }
}

/// Errors of `bench-restore`.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The options are out of range.
    #[error("invalid options: {0}")]
    Options(&'static str),
    /// The demo study is missing from the built-in catalog.
    #[error("the built-in demo study is missing")]
    NoDemoStudy,
    /// No broker: the embedded one's directory or start, or `--brokers`.
    #[error("broker set-up")]
    Broker(#[from] super::broker::SetupError),
    /// Waiting for the broker or creating the topics failed.
    #[error("kafka set-up")]
    Kafka(#[from] kafka::KafkaError),
    /// A Kafka client could not be created.
    #[error("kafka client")]
    Client(#[from] rdkafka::error::KafkaError),
    /// The producer did not acknowledge a record.
    #[error("a record was not acknowledged")]
    NotAcknowledged(#[source] rdkafka::error::KafkaError),
    /// A record written by the bench was not applied to the reference state.
    #[error("record {offset} of partition {partition}: {outcome} instead of applied")]
    NotApplied {
        /// The partition.
        partition: i32,
        /// The record's offset.
        offset: i64,
        /// What happened to it instead.
        outcome: &'static str,
    },
    /// Delivered records wait behind an offset that was never delivered.
    #[error("{0} delivered records wait behind a missing offset")]
    Gap(usize),
    /// The snapshot store could not be set up.
    #[error("snapshot store")]
    Snapshot(#[from] snapshot::SnapshotError),
    /// Not every partition snapshot was saved.
    #[error("saved {saved} of {owned} partition snapshots")]
    NotSaved {
        /// Snapshots saved.
        saved: usize,
        /// Partitions owned.
        owned: usize,
    },
    /// The aggregator task panicked or was cancelled.
    #[error("aggregator task")]
    Task(#[source] tokio::task::JoinError),
    /// The aggregator was not ready within [`READY_TIMEOUT`].
    #[error("the aggregator was not ready after {} s", READY_TIMEOUT.as_secs())]
    NotReady,
    /// An aggregator's count is not the number of interviews written.
    #[error("{what}: counted {counted} interviews, {written} were written: NOT exact")]
    Count {
        /// Which aggregator.
        what: &'static str,
        /// Interviews it counted.
        counted: u64,
        /// Interviews written.
        written: u64,
    },
    /// An aggregator's results differ from the reference.
    #[error("{what}: counted {counted} interviews, but its results differ from the reference: NOT exact")]
    Results {
        /// Which aggregator.
        what: &'static str,
        /// Interviews it counted.
        counted: u64,
    },
    /// The timed aggregator did not restore every partition from a snapshot.
    #[error("only {restored} of {partitions} partitions were restored from snapshots")]
    NotRestored {
        /// Partitions restored.
        restored: u64,
        /// Partitions of the topic.
        partitions: u32,
    },
    /// The report could not be written.
    #[error("cannot write the report")]
    Write(#[from] std::io::Error),
}

/// The last `percent` % of `records`, rounded down.
fn tail_of(records: u64, percent: f64) -> u64 {
    ((records as f64) * percent / 100.0).floor() as u64
}

/// Runs the benchmark and writes its figures to `out`.
pub async fn run(opts: &RestoreOptions, out: &mut impl Write) -> Result<(), RestoreError> {
    let tail = opts.tail()?;
    let catalog = Arc::new(Catalog::demo());
    let study = catalog.get(DEMO_STUDY_ID).ok_or(RestoreError::NoDemoStudy)?.clone();
    let run_id = std::process::id();
    let mut kafka = KafkaConfig {
        responses_topic: format!("bench-restore-{run_id}.responses"),
        quality_topic: format!("bench-restore-{run_id}.quality"),
        state_topic: format!("bench-restore-{run_id}.state"),
        partitions: opts.partitions,
        ..KafkaConfig::default()
    };
    kafka.client_properties.extend(opts.kafka_properties.iter().cloned());
    let broker =
        BenchBroker::start(&kafka, opts.brokers.as_deref(), "bench-restore", &run_id.to_string()).await?;
    let result = measure(opts, tail, &catalog, &study, &kafka, &broker.broker, out).await;
    broker.shutdown().await;
    result
}

async fn measure(
    opts: &RestoreOptions,
    tail: u64,
    catalog: &Arc<Catalog>,
    study: &Study,
    kafka: &KafkaConfig,
    broker: &crate::broker::Bootstrap,
    out: &mut impl Write,
) -> Result<(), RestoreError> {
    let bootstrap = broker.servers();
    kafka::ensure_topics(kafka, bootstrap).await?;
    let head = opts.records - tail;
    writeln!(
        out,
        "bench-restore: {} interviews, {} partitions, broker {}; snapshots {} after {head} records; tail {tail} records ({}%) after the snapshots",
        opts.records,
        opts.partitions,
        broker.describe(),
        match opts.snapshots {
            SnapshotSource::Direct => "direct",
            SnapshotSource::Aggregator => "aggregator",
        },
        opts.tail_percent,
    )?;
    let producer: FutureProducer = kafka::producer_config(kafka, bootstrap).create()?;
    let mut reference = Reference::new(catalog.clone(), opts.partitions);
    let group = format!("bench-restore-{}", std::process::id());

    // 1. The records the snapshots will hold.
    let took = write(&producer, &kafka.responses_topic, study, 0..head, &mut reference).await?;
    writeln!(
        out,
        "wrote {head} interviews in {:.1} s ({:.0}/s)",
        took.as_secs_f64(),
        head as f64 / took.as_secs_f64()
    )?;

    // 2. The snapshots.
    let sizes: Vec<u64> =
        reference.shared.snapshots(false, None).iter().map(|s| snapshot::encode(s).len() as u64).collect();
    match opts.snapshots {
        SnapshotSource::Direct => {
            let started = Instant::now();
            let saved = save_direct(kafka, bootstrap, &group, &reference.shared).await?;
            writeln!(
                out,
                "snapshots {}: {saved} partitions saved in {:.1} s",
                SnapshotSource::Direct.describe(),
                started.elapsed().as_secs_f64()
            )?;
        }
        SnapshotSource::Aggregator => {
            let (first, running) = time_to_ready(kafka, bootstrap, &group, catalog, head).await?;
            writeln!(
                out,
                "first aggregator (replay from offset 0, {} partitions): ready after {:.1} s",
                opts.partitions,
                first.as_secs_f64()
            )?;
            let exact = check_exact("first aggregator", &running.shared, &reference.shared, head);
            let stopping = Instant::now();
            let shared = running.shared.clone();
            running.stop().await?;
            exact?;
            let (written, _) = shared.snapshot_counts();
            writeln!(
                out,
                "snapshots {}: it stopped in {:.1} s ({written} snapshots written during its run)",
                SnapshotSource::Aggregator.describe(),
                stopping.elapsed().as_secs_f64()
            )?;
        }
    }
    let total: u64 = sizes.iter().sum();
    writeln!(
        out,
        "snapshot size: {:.1} MiB in all, {:.1} MiB largest partition (chunks of at most {} KiB)",
        total as f64 / 1048576.0,
        sizes.iter().copied().max().unwrap_or(0) as f64 / 1048576.0,
        snapshot::CHUNK_BYTES / 1024
    )?;

    // 3. The tail, in no snapshot.
    if tail > 0 {
        let took =
            write(&producer, &kafka.responses_topic, study, head..opts.records, &mut reference).await?;
        writeln!(out, "wrote the tail of {tail} interviews in {:.1} s", took.as_secs_f64())?;
    }

    // 4. The timed start: a fresh aggregator in the same group.
    let (restore, running) = time_to_ready(kafka, bootstrap, &group, catalog, opts.records).await?;
    let (_, restored) = running.shared.snapshot_counts();
    let exact = check_exact("fresh aggregator", &running.shared, &reference.shared, opts.records);
    writeln!(
        out,
        "fresh aggregator with snapshots: ready after {:.2} s ({restored} of {} partitions restored, then {tail} tail records read; {} interviews counted, {}; target < {} s: {})",
        restore.as_secs_f64(),
        opts.partitions,
        running.shared.merged(DEMO_STUDY_ID).interviews(),
        if exact.is_ok() { "exact" } else { "NOT exact" },
        TARGET.as_secs(),
        if restore < TARGET { "met" } else { "NOT met" }
    )?;
    running.stop().await?;
    exact?;
    if restored != u64::from(opts.partitions) {
        return Err(RestoreError::NotRestored { restored, partitions: opts.partitions });
    }

    // 5. For comparison: a new group with its own, empty state topic.
    if opts.replay {
        let fresh = KafkaConfig { state_topic: format!("{}-replay", kafka.state_topic), ..kafka.clone() };
        kafka::ensure_topics(&fresh, bootstrap).await?;
        let (replay, running) =
            time_to_ready(&fresh, bootstrap, &format!("{group}-replay"), catalog, opts.records).await?;
        let exact = check_exact("replay", &running.shared, &reference.shared, opts.records);
        writeln!(
            out,
            "fresh aggregator in a new group (replay, no snapshots): ready after {:.1} s ({})",
            replay.as_secs_f64(),
            if exact.is_ok() { "exact" } else { "NOT exact" }
        )?;
        running.stop().await?;
        exact?;
    }
    Ok(())
}
