//! The steps of `bench-restore`: writing interviews while a reference state
//! applies every acknowledged record, saving snapshots directly, timing an
//! aggregator to ready, and the exactness check.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::{READY_TIMEOUT, RestoreError, WINDOW};
use crate::aggregate::{self, AggregateConfig, LiveState, Outcome, snapshot};
use crate::ingest::{Pseudonymizer, record_key};
use crate::instrument::{Catalog, DEMO_STUDY_ID, Study};
use crate::kafka::{self, KafkaConfig};
use crate::proto::v1;
use crate::synth;

/// Applies delivered records to a reference state in offset order per
/// partition, whatever order the delivery reports arrive in.
pub(super) struct Reference {
    pub(super) shared: Arc<LiveState>,
    /// Per partition: delivered records above the next offset, waiting.
    pending: HashMap<i32, BTreeMap<i64, Vec<u8>>>,
}

impl Reference {
    /// A state owning partitions `0..partitions`, each empty at offset 0, as
    /// an aggregator assigned them without snapshots.
    pub(super) fn new(catalog: Arc<Catalog>, partitions: u32) -> Reference {
        let shared = LiveState::new(catalog, Default::default());
        for p in 0..partitions as i32 {
            shared.assign(p, None);
        }
        Reference { shared, pending: HashMap::new() }
    }

    /// The record at `offset` of `partition` was acknowledged.
    fn delivered(&mut self, partition: i32, offset: i64, payload: Vec<u8>) -> Result<(), RestoreError> {
        let queue = self.pending.entry(partition).or_default();
        queue.insert(offset, payload);
        while let Some(next) = self.shared.next_offset(partition) {
            let Some(payload) = queue.remove(&next) else { break };
            let outcome = self.shared.apply(partition, next, Some(&payload));
            if outcome != Outcome::Applied {
                return Err(RestoreError::NotApplied { partition, offset: next, outcome: outcome.as_str() });
            }
        }
        Ok(())
    }

    /// Every delivered record has been applied.
    fn check_complete(&self) -> Result<(), RestoreError> {
        let waiting: usize = self.pending.values().map(BTreeMap::len).sum();
        if waiting > 0 {
            return Err(RestoreError::Gap(waiting));
        }
        Ok(())
    }
}

/// Writes interviews `range` (distinct synthetic interviews of the demo
/// study, distinct respondent and submission ids) with the raw producer and
/// hands every acknowledged record to `reference`.
pub(super) async fn write(
    producer: &FutureProducer,
    topic: &str,
    study: &Study,
    range: Range<u64>,
    reference: &mut Reference,
) -> Result<Duration, RestoreError> {
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
        let payload = v1::Envelope::of_submission(sub.into(), None, "bench").encode_to_vec();
        let p = producer.clone();
        let topic = topic.to_owned();
        inflight.push(async move {
            let sent =
                p.send(FutureRecord::to(&topic).key(&key).payload(&payload), Duration::from_secs(30)).await;
            sent.map(|d| (d.partition, d.offset, payload)).map_err(|(e, _)| e)
        });
        while inflight.len() >= WINDOW {
            if let Some(r) = inflight.next().await {
                let (partition, offset, payload) = r.map_err(RestoreError::NotAcknowledged)?;
                reference.delivered(partition, offset, payload)?;
                acked += 1;
            }
        }
        if last.elapsed() > Duration::from_secs(5) {
            last = Instant::now();
            tracing::info!(target: "fieldwatch::bench", "bench-restore: {acked} of {total} records written (from {first})");
        }
    }
    while let Some(r) = inflight.next().await {
        let (partition, offset, payload) = r.map_err(RestoreError::NotAcknowledged)?;
        reference.delivered(partition, offset, payload)?;
    }
    reference.check_complete()?;
    Ok(started.elapsed())
}

/// A running aggregator: its state and the way to stop it.
pub(super) struct Running {
    pub(super) shared: Arc<LiveState>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops the aggregator (it saves its partitions) and waits for it.
    pub(super) async fn stop(self) -> Result<(), RestoreError> {
        let _ = self.stop.send(());
        self.task.await.map_err(RestoreError::Task)
    }
}

/// Starts `aggregate::run` in `group` and returns the time until it is ready
/// (every partition of the topic owned, and read up to its high watermark),
/// and the running aggregator.
///
/// Owning all partitions is part of ready here: an aggregator whose group
/// session timed out owns none and counts as caught up, which must not
/// pass for a restore.
pub(super) async fn time_to_ready(
    kafka: &KafkaConfig,
    bootstrap: &str,
    group: &str,
    catalog: &Arc<Catalog>,
    total: u64,
) -> Result<(Duration, Running), RestoreError> {
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
            tracing::error!(error = %crate::errors::chain(&e), "aggregator failed");
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
            return Err(RestoreError::NotReady);
        }
        if last.elapsed() > Duration::from_secs(5) {
            last = Instant::now();
            let applied: i64 = shared.partitions().iter().map(|p| p.next_offset).sum();
            tracing::info!(target: "fieldwatch::bench", "bench-restore: {group}: {applied} of {total} records applied");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Exactness: `got` counts exactly `written` interviews and its results
/// equal the reference built from every delivered record.
pub(super) fn check_exact(
    what: &'static str,
    got: &LiveState,
    reference: &LiveState,
    written: u64,
) -> Result<(), RestoreError> {
    let merged = got.merged(DEMO_STUDY_ID);
    let counted = merged.interviews();
    if counted != written {
        return Err(RestoreError::Count { what, counted, written });
    }
    if merged != reference.merged(DEMO_STUDY_ID) {
        return Err(RestoreError::Results { what, counted });
    }
    Ok(())
}

/// Saves every partition of `reference` through the aggregator's snapshot
/// writer and commits the next offsets for `group`, as an aggregator does
/// at shutdown.
pub(super) async fn save_direct(
    kafka: &KafkaConfig,
    bootstrap: &str,
    group: &str,
    reference: &LiveState,
) -> Result<usize, RestoreError> {
    let store = snapshot::Store::new(
        kafka.state_topic.clone(),
        &kafka::producer_config(kafka, bootstrap),
        &kafka::consumer_config(kafka, bootstrap, &format!("{group}-snapshot-reader")),
        kafka.admin_timeout(),
    )?;
    let tpl = aggregate::save_snapshots(reference, &store, &kafka.responses_topic, false, None).await;
    let owned = reference.partitions().len();
    if tpl.count() != owned {
        return Err(RestoreError::NotSaved { saved: tpl.count(), owned });
    }
    // The timed aggregator starts each partition at its snapshot's next
    // offset whatever the group committed; committing leaves the group as
    // a stopped aggregator leaves it.
    let committer: BaseConsumer = kafka::consumer_config(kafka, bootstrap, group).create()?;
    if let Err(e) = committer.commit(&tpl, CommitMode::Sync) {
        tracing::warn!(
            error = %crate::errors::chain(&e),
            "bench-restore: committing the snapshot offsets failed; the restore does not use them"
        );
    }
    Ok(owned)
}

#[cfg(test)]
mod tests {
    use super::super::{RestoreOptions, SnapshotSource, tail_of};
    use super::*;

    fn envelope(study: &Study, n: u64) -> Vec<u8> {
        let mut rng = synth::Rng::new(n + 1);
        let form = &study.forms[0];
        let sub = synth::interview(study, form, n, &mut rng, &synth::Options { random_strings: false });
        v1::Envelope::of_submission(sub.into(), None, "bench").encode_to_vec()
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
