//! The consumer loop: reads the responses topic as a group member, applies
//! each record to [`LiveState`], saves snapshots on a cadence, on revoke and
//! at shutdown, and commits offsets only after their snapshot is
//! acknowledged (see [`super::offsets`]).

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

use super::batch::BATCH_RECORDS;
use super::stall::{IdleWatch, rejoin_if_stalled};
use super::{AggregateConfig, AggregateError, LiveState, Outcome, flag_publisher, global, snapshot};
use crate::kafka::{KafkaConfig, consumer_config, producer_config};

/// Consumer context that keeps [`LiveState`]'s partition map equal to the
/// assignment: states are dropped before a revoke completes and created
/// empty after an assignment.
pub(super) struct Ctx {
    shared: Arc<LiveState>,
    store: Arc<snapshot::Store>,
    topic: String,
}

impl Ctx {
    /// Writes snapshots of `partitions` and commits their next offsets,
    /// blocking (rebalance callback). A failure leaves the committed offsets
    /// where they were: the next owner reads more records again.
    fn save_and_commit(&self, consumer: &BaseConsumer<Self>, partitions: &[i32]) {
        let tpl = futures::executor::block_on(save_snapshots(
            &self.shared,
            &self.store,
            &self.topic,
            false,
            Some(partitions),
        ));
        if tpl.count() > 0
            && let Err(e) = consumer.commit(&tpl, CommitMode::Sync)
        {
            tracing::warn!(error = %crate::errors::chain(&e), "offset commit failed");
        }
    }
}

/// Writes snapshots of the owned partitions (those in `which`, or all; only
/// the changed ones if `only_changed`) and returns the offsets to commit:
/// for each saved partition its next offset (= last applied + 1), stored
/// only once its state is saved.
pub(crate) async fn save_snapshots(
    shared: &LiveState,
    store: &snapshot::Store,
    topic: &str,
    only_changed: bool,
    which: Option<&[i32]>,
) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    // One partition at a time: at most one partition's encoded state is
    // held beside the live state.
    for partition in shared.snapshots_due(only_changed, which) {
        let Some((next_offset, bytes)) = shared.encoded_snapshot(partition) else { continue };
        match store.save_encoded(partition, &bytes, snapshot_id()).await {
            Ok(_) => {
                // Committed only now that the state topic acknowledged the snapshot.
                if let Some(commit) = shared.snapshot_written(partition, next_offset) {
                    let _ = tpl.add_partition_offset(topic, partition, Offset::Offset(commit));
                }
            }
            Err(e) => {
                tracing::warn!(partition, error = %crate::errors::chain(&e), "snapshot failed")
            }
        }
    }
    tpl
}

/// A snapshot id unique enough to tell interleaved writers apart.
fn snapshot_id() -> u64 {
    let t =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    xxhash_rust::xxh3::xxh3_64(&[t.to_le_bytes().as_slice(), &std::process::id().to_le_bytes()].concat())
}

impl ClientContext for Ctx {}

fn partitions_of(tpl: &rdkafka::TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ConsumerContext for Ctx {
    /// Eager rebalancing with fieldwatch's own start offsets: on revoke, the
    /// partitions' state is saved (and offsets committed) before they go;
    /// on assign, each partition's snapshot is restored first and the
    /// partition is assigned at the snapshot's next offset (0 without one),
    /// so reading resumes exactly where the state ends whatever the
    /// committed offset says.
    fn rebalance(&self, c: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let ps = partitions_of(tpl);
                tracing::info!(partitions = ?ps, "partitions revoked; saving their state");
                self.save_and_commit(c, &ps);
                self.shared.revoke(&ps);
                if let Err(e) = c.unassign() {
                    tracing::warn!(error = %crate::errors::chain(&e), "unassign failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let ps = partitions_of(tpl);
                tracing::info!(partitions = ?ps, "partitions assigned; restoring their state");
                for p in ps {
                    // Restored before any record of the partition is applied.
                    let restored = self.store.load_blocking(p).unwrap_or_else(|e| {
                        tracing::warn!(partition = p, error = %crate::errors::chain(&e), "snapshot restore failed; replaying");
                        None
                    });
                    let next = self.shared.assign(p, restored);
                    if let Err(e) = tpl.set_partition_offset(&self.topic, p, Offset::Offset(next)) {
                        tracing::warn!(partition = p, error = %crate::errors::chain(&e), "cannot set the start offset");
                    }
                }
                if let Err(e) = c.assign(tpl) {
                    tracing::warn!(error = %crate::errors::chain(&e), "assign failed");
                }
            }
            other => tracing::warn!(error = ?other, "rebalance error"),
        }
    }
}

/// `serve`'s membership: assigns every partition of `topic` to this
/// consumer, each restored from its snapshot first and started at the
/// snapshot's next offset, as the rebalance callback does for a group
/// member. No group protocol is involved, so a restarted `serve` owns every
/// partition at once and is ready as soon as it has read up to the high
/// watermarks, with or without new records.
async fn assign_all(
    consumer: &Arc<StreamConsumer<Ctx>>,
    shared: &Arc<LiveState>,
    store: &Arc<snapshot::Store>,
    topic: &str,
    timeout: Duration,
) -> Result<(), AggregateError> {
    let (c, sh, st, t) = (consumer.clone(), shared.clone(), store.clone(), topic.to_string());
    // Metadata and snapshot reads block, each bounded by its timeout: off the async workers.
    let assigned = tokio::task::spawn_blocking(move || -> Result<Vec<i32>, AggregateError> {
        let md = c.fetch_metadata(Some(&t), timeout)?;
        let parts: Vec<i32> =
            md.topics().first().map(|x| x.partitions().iter().map(|p| p.id()).collect()).unwrap_or_default();
        let mut tpl = TopicPartitionList::new();
        for &p in &parts {
            let restored = st.load_blocking(p).unwrap_or_else(|e| {
                tracing::warn!(partition = p, error = %crate::errors::chain(&e), "snapshot restore failed; replaying");
                None
            });
            let next = sh.assign(p, restored);
            tpl.add_partition_offset(&t, p, Offset::Offset(next))?;
        }
        c.assign(&tpl)?;
        Ok(parts)
    })
    .await
    .unwrap_or_else(|e| {
        tracing::error!(error = %crate::errors::chain(&e), "assigning the partitions panicked");
        Ok(Vec::new())
    })?;
    tracing::info!(partitions = ?assigned, "every partition assigned (serve: no consumer group)");
    Ok(())
}

/// How long shutdown waits for the watermark reader and the view builder
/// to finish their Kafka call under way.
const TASKS_STOP_BOUND: Duration = Duration::from_secs(5);

/// Unread records in the owned partitions above which the aggregator is
/// catching up (a backlog after a start, a restart or a rebalance) rather
/// than following live submissions: more than a second of 1,000
/// interviews/s, the heaviest live load `fieldwatch bench` drives.
const CATCH_UP_RECORDS: u64 = 1_000;

/// Whether a cadence snapshot waits, given the unread records of the owned
/// partitions (none while a watermark is still unknown, which on a busy
/// broker can take seconds: the request waits behind the fetches on its
/// connection), the time since the last cadence save and the cadence.
/// While catching up, a snapshot rewrites a state that is seconds from
/// being superseded, and its writes slow the broker's reads that the
/// catch-up waits on (on the embedded broker, the bottleneck of a
/// catch-up: docs/benchmarks.md, runs 51-64). So it waits until the
/// backlog is read, but at most two intervals since the last save (one
/// cadence save skipped), which bounds what a crash during a long
/// catch-up reads again and how stale another owner's view of the
/// partitions gets. Revokes and shutdown save regardless.
fn snapshot_waits(unread: Option<u64>, since_last_save: Duration, interval: Duration) -> bool {
    unread.is_none_or(|n| n > CATCH_UP_RECORDS) && since_last_save < interval.saturating_mul(2)
}

/// Runs the aggregator until `shutdown` resolves.
pub async fn run(
    kafka: &KafkaConfig,
    bootstrap: &str,
    config: &AggregateConfig,
    shared: Arc<LiveState>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AggregateError> {
    let store = Arc::new(snapshot::Store::new(
        kafka.state_topic.clone(),
        &producer_config(kafka, bootstrap),
        &consumer_config(kafka, bootstrap, &format!("{}-snapshot-reader", config.group_id)),
        kafka.admin_timeout(),
    )?);
    let mut consumer_cfg = consumer_config(kafka, bootstrap, &config.group_id);
    consumer_cfg.set("session.timeout.ms", config.session_timeout_ms.to_string());
    if let Some(id) = &config.instance_id {
        consumer_cfg.set("group.instance.id", id);
    }
    let ctx = Ctx { shared: shared.clone(), store: store.clone(), topic: kafka.responses_topic.clone() };
    let consumer: Arc<StreamConsumer<Ctx>> = Arc::new(consumer_cfg.create_with_context(ctx)?);
    if config.assign_all {
        assign_all(&consumer, &shared, &store, &kafka.responses_topic, kafka.admin_timeout()).await?;
    } else {
        consumer.subscribe(&[kafka.responses_topic.as_str()])?;
    }

    // Ends the watermark and view tasks below once the consumer loop ends;
    // each finishes its blocking Kafka call first, so no client of theirs
    // outlives this function (and the embedded broker `serve` stops next).
    let (stop_tasks, stop) = tokio::sync::watch::channel(false);

    // Reads high watermarks of owned partitions every interval, on a client
    // of its own: on the consumer's connection a ListOffsets request waits
    // behind the fetch in flight, and when that fetch outlasts the request's
    // timeout (a fetch of several megabytes from a busy broker), librdkafka
    // drops the connection and the fetch's records with it, to fetch them
    // again, so that a slow broker could keep the aggregator from advancing.
    let wm_consumer: Arc<BaseConsumer> =
        Arc::new(consumer_config(kafka, bootstrap, &format!("{}-watermarks", config.group_id)).create()?);
    let wm_shared = shared.clone();
    let topic = kafka.responses_topic.clone();
    let interval = Duration::from_millis(config.watermark_interval_ms.max(50));
    let mut wm_stop = stop.clone();
    let watermarks = tokio::spawn(async move {
        while !*wm_stop.borrow_and_update() {
            let owned: Vec<i32> = wm_shared.partitions().iter().map(|p| p.partition).collect();
            for p in owned {
                let c = wm_consumer.clone();
                let t = topic.clone();
                // fetch_watermarks blocks; bounded by its own 2 s timeout.
                let res =
                    tokio::task::spawn_blocking(move || c.fetch_watermarks(&t, p, Duration::from_secs(2)))
                        .await;
                if let Ok(Ok((_, high))) = res {
                    wm_shared.set_high_watermark(p, high);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = wm_stop.changed() => {}
            }
        }
    });

    // Flagged interviews on their way to the quality topic. Bounded: when
    // the publisher falls behind, the consumer loop waits here instead of
    // piling up records. The receiver is the publisher task; the senders are
    // this loop's (dropped after the loop) and the view task's (late flags,
    // dropped when it ends), which ends the task once it has drained.
    let (quality_tx, quality_rx) = tokio::sync::mpsc::channel(flag_publisher::CHANNEL_CAPACITY);
    let publisher = flag_publisher::QualityPublisher::new(kafka, bootstrap, shared.clone())?;
    let publisher = tokio::spawn(publisher.run(quality_rx));

    // Rebuilds the study-wide view every interval; stopped after the loop.
    let global = global::Global::new(
        kafka.responses_topic.clone(),
        kafka.state_topic.clone(),
        &producer_config(kafka, bootstrap),
        &consumer_config(kafka, bootstrap, &format!("{}-view-reader", config.group_id)),
        kafka.admin_timeout(),
    )?;
    let views = tokio::spawn(global::run(
        global,
        shared.clone(),
        Duration::from_millis(config.view_interval_ms.max(50)),
        quality_tx.clone(),
        stop,
    ));

    tokio::pin!(shutdown);
    let mut idle = IdleWatch::new(Duration::from_millis(config.session_timeout_ms.saturating_mul(2)));
    // Snapshot cadence; each tick saves the partitions changed since their last snapshot.
    let snapshot_interval = Duration::from_millis(config.snapshot_interval_ms.max(100));
    let mut snapshot_tick = tokio::time::interval(snapshot_interval);
    snapshot_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_save = std::time::Instant::now();
    'consume: loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = snapshot_tick.tick() => {
                if !snapshot_waits(shared.unread(), last_save.elapsed(), snapshot_interval) {
                    last_save = std::time::Instant::now();
                    let tpl = save_snapshots(&shared, &store, &kafka.responses_topic, true, None).await;
                    // Saving holds up applying: as the state grows, save less
                    // often (at most a tenth of the time), as the view does.
                    let took = last_save.elapsed();
                    let wait = global::wait_after(snapshot_interval, took);
                    if wait > snapshot_interval {
                        snapshot_tick.reset_after(wait);
                    }
                    if tpl.count() > 0 && let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
                        tracing::warn!(error = %crate::errors::chain(&e), "offset commit failed");
                    }
                }
                if idle.due(shared.partitions().is_empty(), std::time::Instant::now()) {
                    rejoin_if_stalled(&consumer, &shared, &mut idle, &kafka.responses_topic).await;
                }
            }
            msg = consumer.recv() => match msg {
                Ok(m) => {
                    // The records ready now, up to a batch, prepared on
                    // several threads while they are applied in order.
                    let mut batch = vec![m];
                    while batch.len() < BATCH_RECORDS {
                        match consumer.recv().now_or_never() {
                            Some(Ok(m)) => batch.push(m),
                            Some(Err(e)) => {
                                tracing::warn!(error = %crate::errors::chain(&e), "consume error");
                                break;
                            }
                            None => break,
                        }
                    }
                    let records: Vec<_> = batch.iter().map(|m| (m.partition(), m.offset(), m.payload())).collect();
                    let done = shared.process_batch(&records);
                    drop(records);
                    drop(batch);
                    for (partition, offset, outcome, flagged) in done {
                        if outcome == Outcome::Gap
                            && let Some(next) = shared.next_offset(partition)
                        {
                            tracing::info!(partition, from = offset, to = next, "offset ahead of the state; seeking back");
                            if let Err(e) =
                                consumer.seek(&kafka.responses_topic, partition, Offset::Offset(next), Duration::from_secs(5))
                            {
                                tracing::warn!(partition, error = %crate::errors::chain(&e), "seek failed");
                            }
                        } else if let Some(record) = flagged {
                            tokio::select! {
                                _ = &mut shutdown => break 'consume,
                                sent = quality_tx.send(record) => if sent.is_err() {
                                    tracing::warn!(partition, offset, "quality publisher is gone");
                                },
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %crate::errors::chain(&e), "consume error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    let _ = stop_tasks.send(true);
    // A watermark fetch ends within its 2 s timeout and a view build
    // normally well within a second; past the bound they go on detached.
    if tokio::time::timeout(TASKS_STOP_BOUND, async {
        let _ = watermarks.await;
        let _ = views.await;
    })
    .await
    .is_err()
    {
        tracing::warn!("the view builder or the watermark reader did not stop before shutdown");
    }
    // Shutdown: save every owned partition and commit, then leave the group.
    let tpl = save_snapshots(&shared, &store, &kafka.responses_topic, false, None).await;
    if tpl.count() > 0 {
        let c = consumer.clone();
        // A synchronous commit blocks: off the async workers.
        let committed = tokio::task::spawn_blocking(move || c.commit(&tpl, CommitMode::Sync)).await;
        if let Ok(Err(e)) = committed {
            tracing::warn!(error = %crate::errors::chain(&e), "final offset commit failed");
        }
    }
    consumer.unsubscribe();
    drop(quality_tx);
    // The publisher drains what is queued and flushes, bounded by the produce timeout.
    let bound = kafka.produce_timeout() * 2 + Duration::from_secs(1);
    if tokio::time::timeout(bound, publisher).await.is_err() {
        tracing::warn!("quality publisher did not finish before shutdown");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cadence_snapshot_waits_only_while_catching_up_and_at_most_two_intervals() {
        let interval = Duration::from_secs(5);
        let second = Duration::from_secs(1);
        // Following live submissions: saved on the cadence.
        assert!(!snapshot_waits(Some(0), second, interval));
        assert!(!snapshot_waits(Some(CATCH_UP_RECORDS), interval, interval));
        // A backlog, or one not measured yet: the snapshot waits until it
        // is read...
        assert!(snapshot_waits(Some(CATCH_UP_RECORDS + 1), interval, interval));
        assert!(snapshot_waits(None, interval, interval));
        assert!(snapshot_waits(Some(1_000_000), 2 * interval - second, interval));
        // ...but one cadence save at most: never two intervals since the last.
        assert!(!snapshot_waits(Some(1_000_000), 2 * interval, interval));
        assert!(!snapshot_waits(None, 2 * interval, interval));
    }
}
