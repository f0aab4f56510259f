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

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::aggregate::{self, AggregateConfig, LiveState, Outcome, snapshot};
use crate::ingest::{Pseudonymizer, record_key};
use crate::instrument::{Catalog, DEMO_STUDY_ID, Study};
use crate::kafka::{self, KafkaConfig};
use crate::proto::{ENVELOPE_VERSION, v1};
use crate::synth;

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
    fn tail(&self) -> anyhow::Result<u64> {
        if self.records == 0 || self.partitions == 0 {
            bail!("--records and --partitions must be at least 1");
        }
        if !(0.0..100.0).contains(&self.tail_percent) {
            bail!("--tail-percent must be at least 0 and below 100");
        }
        Ok(tail_of(self.records, self.tail_percent))
    }
}

/// The last `percent` % of `records`, rounded down.
fn tail_of(records: u64, percent: f64) -> u64 {
    ((records as f64) * percent / 100.0).floor() as u64
}

/// Applies delivered records to a reference state in offset order per
/// partition, whatever order the delivery reports arrive in.
struct Reference {
    shared: Arc<LiveState>,
    /// Per partition: delivered records above the next offset, waiting.
    pending: HashMap<i32, BTreeMap<i64, Vec<u8>>>,
}

impl Reference {
    /// A state owning partitions `0..partitions`, each empty at offset 0, as
    /// an aggregator assigned them without snapshots.
    fn new(catalog: Arc<Catalog>, partitions: u32) -> Reference {
        let shared = LiveState::new(catalog, Default::default());
        for p in 0..partitions as i32 {
            shared.assign(p, None);
        }
        Reference { shared, pending: HashMap::new() }
    }

    /// The record at `offset` of `partition` was acknowledged.
    fn delivered(&mut self, partition: i32, offset: i64, payload: Vec<u8>) -> anyhow::Result<()> {
        let queue = self.pending.entry(partition).or_default();
        queue.insert(offset, payload);
        while let Some(next) = self.shared.next_offset(partition) {
            let Some(payload) = queue.remove(&next) else { break };
            let outcome = self.shared.apply(partition, next, Some(&payload));
            if outcome != Outcome::Applied {
                bail!("record {next} of partition {partition}: {} instead of applied", outcome.as_str());
            }
        }
        Ok(())
    }

    /// Every delivered record has been applied.
    fn check_complete(&self) -> anyhow::Result<()> {
        let waiting: usize = self.pending.values().map(BTreeMap::len).sum();
        if waiting > 0 {
            bail!("{waiting} delivered records wait behind a missing offset");
        }
        Ok(())
    }
}

/// Writes interviews `range` (distinct synthetic interviews of the demo
/// study, distinct respondent and submission ids) with the raw producer and
/// hands every acknowledged record to `reference`.
async fn write(
    producer: &FutureProducer,
    topic: &str,
    study: &Study,
    range: Range<u64>,
    reference: &mut Reference,
) -> anyhow::Result<Duration> {
    let opts = synth::Options { random_strings: false };
    let pseudo = Pseudonymizer::new(b"fieldwatch-bench-key-not-secret");
    // One generator per range start, so the interviews do not depend on how
    // the records are split between the writes.
    let mut rng = synth::Rng::new(range.start.wrapping_add(1));
    let started = Instant::now();
    let mut inflight = FuturesUnordered::new();
    let mut last = Instant::now();
    let (first, total) = (range.start, range.end - range.start);
    let mut acked = 0u64;
    for n in range {
        let form = &study.forms[(n % study.forms.len() as u64) as usize];
        let mut sub = synth::interview(study, form, n, &mut rng, &opts);
        sub.respondent_id = pseudo.key(&format!("r{n}"));
        sub.submission_id = format!("s{n}");
        let key = record_key(DEMO_STUDY_ID, &sub.respondent_id);
        let env = v1::Envelope {
            version: ENVELOPE_VERSION,
            received_at: None,
            frontend: "bench".into(),
            submission: Some(sub.into()),
            ..Default::default()
        };
        let payload = env.encode_to_vec();
        let p = producer.clone();
        let topic = topic.to_owned();
        inflight.push(async move {
            let sent =
                p.send(FutureRecord::to(&topic).key(&key).payload(&payload), Duration::from_secs(30)).await;
            sent.map(|d| (d.partition, d.offset, payload)).map_err(|(e, _)| e)
        });
        while inflight.len() >= WINDOW {
            if let Some(r) = inflight.next().await {
                let (partition, offset, payload) = r.context("a record was not acknowledged")?;
                reference.delivered(partition, offset, payload)?;
                acked += 1;
            }
        }
        if last.elapsed() > Duration::from_secs(5) {
            last = Instant::now();
            eprintln!("bench-restore: {} of {total} records written (from {first})", acked);
        }
    }
    while let Some(r) = inflight.next().await {
        let (partition, offset, payload) = r.context("a record was not acknowledged")?;
        reference.delivered(partition, offset, payload)?;
    }
    reference.check_complete()?;
    Ok(started.elapsed())
}

/// A running aggregator: its state and the way to stop it.
struct Running {
    shared: Arc<LiveState>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops the aggregator (it saves its partitions) and waits for it.
    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await.context("aggregator task")
    }
}

/// Starts `aggregate::run` in `group` and returns the time until it is ready
/// (every partition of the topic owned, and read up to its high watermark),
/// and the running aggregator.
///
/// Owning all partitions is part of ready here: an aggregator whose group
/// session timed out owns none and counts as caught up, which must not
/// pass for a restore.
async fn time_to_ready(
    kafka: &KafkaConfig,
    bootstrap: &str,
    group: &str,
    catalog: &Arc<Catalog>,
    total: u64,
) -> anyhow::Result<(Duration, Running)> {
    let shared = LiveState::new(catalog.clone(), Default::default());
    let config = AggregateConfig { group_id: group.to_string(), ..AggregateConfig::default() };
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let (k, b, s) = (kafka.clone(), bootstrap.to_string(), shared.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = aggregate::run(&k, &b, &config, s, async move {
            let _ = stop_rx.await;
        })
        .await
        {
            tracing::error!(error = %e, "aggregator failed");
        }
    });
    let running = Running { shared: shared.clone(), stop, task };
    let mut last = Instant::now();
    loop {
        if shared.caught_up() && shared.partitions().len() == kafka.partitions as usize {
            return Ok((started.elapsed(), running));
        }
        if started.elapsed() > READY_TIMEOUT {
            running.stop().await?;
            bail!("the aggregator was not ready after {} s", READY_TIMEOUT.as_secs());
        }
        if last.elapsed() > Duration::from_secs(5) {
            last = Instant::now();
            let applied: i64 = shared.partitions().iter().map(|p| p.next_offset).sum();
            eprintln!("bench-restore: {group}: {applied} of {total} records applied");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Exactness: `got` counts exactly `written` interviews and its results
/// equal the reference built from every delivered record.
fn check_exact(what: &str, got: &LiveState, reference: &LiveState, written: u64) -> anyhow::Result<()> {
    let merged = got.merged(DEMO_STUDY_ID);
    let counted = merged.interviews();
    if counted != written {
        bail!("{what}: counted {counted} interviews, {written} were written: NOT exact");
    }
    if merged != reference.merged(DEMO_STUDY_ID) {
        bail!("{what}: counted {counted} interviews, but its results differ from the reference: NOT exact");
    }
    Ok(())
}

/// Saves every partition of `reference` through the aggregator's snapshot
/// writer and commits the next offsets for `group`, as an aggregator does
/// at shutdown.
async fn save_direct(
    kafka: &KafkaConfig,
    bootstrap: &str,
    group: &str,
    reference: &LiveState,
) -> anyhow::Result<usize> {
    let store = snapshot::Store::new(
        kafka.state_topic.clone(),
        &kafka::producer_config(kafka, bootstrap),
        &kafka::consumer_config(kafka, bootstrap, &format!("{group}-snapshot-reader")),
        kafka.admin_timeout(),
    )?;
    let tpl = aggregate::save_snapshots(reference, &store, &kafka.responses_topic, false, None).await;
    let owned = reference.partitions().len();
    if tpl.count() != owned {
        bail!("saved {} of {owned} partition snapshots", tpl.count());
    }
    // The timed aggregator starts each partition at its snapshot's next
    // offset whatever the group committed; committing leaves the group as
    // a stopped aggregator leaves it.
    let committer: BaseConsumer = kafka::consumer_config(kafka, bootstrap, group).create()?;
    if let Err(e) = committer.commit(&tpl, CommitMode::Sync) {
        eprintln!(
            "bench-restore: committing the snapshot offsets failed ({e}); the restore does not use them"
        );
    }
    Ok(owned)
}

/// Runs the benchmark and prints its figures.
pub async fn run(opts: &RestoreOptions) -> anyhow::Result<()> {
    let tail = opts.tail()?;
    let catalog = Arc::new(Catalog::demo());
    let study = catalog.get(DEMO_STUDY_ID).context("demo study")?.clone();
    let dir = tempfile_dir()?;
    let run_id = std::process::id();
    let mut kafka = KafkaConfig {
        responses_topic: format!("bench-restore-{run_id}.responses"),
        quality_topic: format!("bench-restore-{run_id}.quality"),
        state_topic: format!("bench-restore-{run_id}.state"),
        partitions: opts.partitions,
        ..KafkaConfig::default()
    };
    kafka.client_properties.extend(opts.kafka_properties.iter().cloned());
    let broker = match crate::broker::bootstrap_or_embedded(
        &kafka,
        opts.brokers.as_deref(),
        "127.0.0.1:0".parse().context("addr")?,
        &dir.join("broker"),
    )
    .await
    {
        Ok(b) => b,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e.into());
        }
    };
    let result = measure(opts, tail, &catalog, &study, &kafka, &broker).await;
    broker.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(
    opts: &RestoreOptions,
    tail: u64,
    catalog: &Arc<Catalog>,
    study: &Study,
    kafka: &KafkaConfig,
    broker: &crate::broker::Bootstrap,
) -> anyhow::Result<()> {
    let bootstrap = broker.servers();
    kafka::ensure_topics(kafka, bootstrap).await?;
    let head = opts.records - tail;
    println!(
        "bench-restore: {} interviews, {} partitions, broker {}; snapshots {} after {head} records; tail {tail} records ({}%) after the snapshots",
        opts.records,
        opts.partitions,
        broker.describe(),
        match opts.snapshots {
            SnapshotSource::Direct => "direct",
            SnapshotSource::Aggregator => "aggregator",
        },
        opts.tail_percent,
    );
    let producer: FutureProducer = kafka::producer_config(kafka, bootstrap).create()?;
    let mut reference = Reference::new(catalog.clone(), opts.partitions);
    let group = format!("bench-restore-{}", std::process::id());

    // 1. The records the snapshots will hold.
    let took = write(&producer, &kafka.responses_topic, study, 0..head, &mut reference).await?;
    println!(
        "wrote {head} interviews in {:.1} s ({:.0}/s)",
        took.as_secs_f64(),
        head as f64 / took.as_secs_f64()
    );

    // 2. The snapshots.
    let sizes: Vec<u64> = reference
        .shared
        .snapshots(false, None)
        .iter()
        .map(|s| bincode::serialized_size(s).unwrap_or(0))
        .collect();
    match opts.snapshots {
        SnapshotSource::Direct => {
            let started = Instant::now();
            let saved = save_direct(kafka, bootstrap, &group, &reference.shared).await?;
            println!(
                "snapshots {}: {saved} partitions saved in {:.1} s",
                SnapshotSource::Direct.describe(),
                started.elapsed().as_secs_f64()
            );
        }
        SnapshotSource::Aggregator => {
            let (first, running) = time_to_ready(kafka, bootstrap, &group, catalog, head).await?;
            println!(
                "first aggregator (replay from offset 0, {} partitions): ready after {:.1} s",
                opts.partitions,
                first.as_secs_f64()
            );
            let exact = check_exact("first aggregator", &running.shared, &reference.shared, head);
            let stopping = Instant::now();
            let shared = running.shared.clone();
            running.stop().await?;
            exact?;
            let (written, _) = shared.snapshot_counts();
            println!(
                "snapshots {}: it stopped in {:.1} s ({written} snapshots written during its run)",
                SnapshotSource::Aggregator.describe(),
                stopping.elapsed().as_secs_f64()
            );
        }
    }
    let total: u64 = sizes.iter().sum();
    println!(
        "snapshot size: {:.1} MiB in all, {:.1} MiB largest partition (chunks of at most {} KiB)",
        total as f64 / 1048576.0,
        sizes.iter().copied().max().unwrap_or(0) as f64 / 1048576.0,
        snapshot::CHUNK_BYTES / 1024
    );

    // 3. The tail, in no snapshot.
    if tail > 0 {
        let took =
            write(&producer, &kafka.responses_topic, study, head..opts.records, &mut reference).await?;
        println!("wrote the tail of {tail} interviews in {:.1} s", took.as_secs_f64());
    }

    // 4. The timed start: a fresh aggregator in the same group.
    let (restore, running) = time_to_ready(kafka, bootstrap, &group, catalog, opts.records).await?;
    let (_, restored) = running.shared.snapshot_counts();
    let exact = check_exact("fresh aggregator", &running.shared, &reference.shared, opts.records);
    println!(
        "fresh aggregator with snapshots: ready after {:.2} s ({restored} of {} partitions restored, then {tail} tail records read; {} interviews counted, {}; target < {} s: {})",
        restore.as_secs_f64(),
        opts.partitions,
        running.shared.merged(DEMO_STUDY_ID).interviews(),
        if exact.is_ok() { "exact" } else { "NOT exact" },
        TARGET.as_secs(),
        if restore < TARGET { "met" } else { "NOT met" }
    );
    running.stop().await?;
    exact?;
    if restored != u64::from(opts.partitions) {
        bail!("only {restored} of {} partitions were restored from snapshots", opts.partitions);
    }

    // 5. For comparison: a new group with its own, empty state topic.
    if opts.replay {
        let fresh = KafkaConfig { state_topic: format!("{}-replay", kafka.state_topic), ..kafka.clone() };
        kafka::ensure_topics(&fresh, bootstrap).await?;
        let (replay, running) =
            time_to_ready(&fresh, bootstrap, &format!("{group}-replay"), catalog, opts.records).await?;
        let exact = check_exact("replay", &running.shared, &reference.shared, opts.records);
        println!(
            "fresh aggregator in a new group (replay, no snapshots): ready after {:.1} s ({})",
            replay.as_secs_f64(),
            if exact.is_ok() { "exact" } else { "NOT exact" }
        );
        running.stop().await?;
        exact?;
    }
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("fieldwatch-bench-restore-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(study: &Study, n: u64) -> Vec<u8> {
        let mut rng = synth::Rng::new(n + 1);
        let form = &study.forms[0];
        let sub = synth::interview(study, form, n, &mut rng, &synth::Options { random_strings: false });
        v1::Envelope {
            version: ENVELOPE_VERSION,
            frontend: "bench".into(),
            submission: Some(sub.into()),
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn the_tail_is_a_share_of_the_records() {
        assert_eq!(tail_of(1_000_000, 1.0), 10_000);
        assert_eq!(tail_of(1_000_000, 0.0), 0);
        assert_eq!(tail_of(50_000, 2.5), 1_250);
        let opts = |tail_percent| RestoreOptions {
            records: 100,
            snapshots: SnapshotSource::Direct,
            tail_percent,
            replay: false,
            brokers: None,
            partitions: 6,
            kafka_properties: Vec::new(),
        };
        assert_eq!(opts(10.0).tail().expect("valid"), 10);
        assert!(opts(100.0).tail().is_err());
        assert!(opts(-1.0).tail().is_err());
    }

    #[test]
    fn reference_applies_out_of_order_deliveries_in_offset_order() {
        let catalog = Arc::new(Catalog::demo());
        let study = catalog.get(DEMO_STUDY_ID).expect("demo").clone();
        let mut reference = Reference::new(catalog.clone(), 2);
        // Partition 1 gets offsets 2, 0, 1; partition 0 gets 0 then 1.
        reference.delivered(1, 2, envelope(&study, 2)).expect("waits");
        assert_eq!(reference.shared.next_offset(1), Some(0));
        assert!(reference.check_complete().is_err(), "offset 2 waits for 0 and 1");
        reference.delivered(1, 0, envelope(&study, 0)).expect("applies 0");
        reference.delivered(0, 0, envelope(&study, 10)).expect("applies");
        reference.delivered(1, 1, envelope(&study, 1)).expect("applies 1 and 2");
        reference.delivered(0, 1, envelope(&study, 11)).expect("applies");
        reference.check_complete().expect("nothing waits");
        assert_eq!(reference.shared.next_offset(1), Some(3));
        assert_eq!(reference.shared.next_offset(0), Some(2));
        assert_eq!(reference.shared.merged(DEMO_STUDY_ID).interviews(), 5);
        // A record that is not applied (the same submission again) fails the build.
        assert!(reference.delivered(0, 2, envelope(&study, 11)).is_err());
    }

    #[test]
    fn exactness_compares_counts_and_results() {
        let catalog = Arc::new(Catalog::demo());
        let study = catalog.get(DEMO_STUDY_ID).expect("demo").clone();
        let mut a = Reference::new(catalog.clone(), 1);
        let mut b = Reference::new(catalog.clone(), 1);
        for n in 0..3 {
            a.delivered(0, n as i64, envelope(&study, n)).expect("applies");
            b.delivered(0, n as i64, envelope(&study, n)).expect("applies");
        }
        check_exact("same", &a.shared, &b.shared, 3).expect("exact");
        assert!(check_exact("count", &a.shared, &b.shared, 4).is_err());
        b.delivered(0, 3, envelope(&study, 3)).expect("applies");
        assert!(check_exact("results", &a.shared, &b.shared, 3).is_err());
    }
}
