//! Reads the study-wide view's inputs: the newest snapshot of every
//! partition this instance does not own (the state topic as a global
//! store, as Kafka Streams' global tables do), copies of the partitions it
//! owns, and the high watermarks of the responses topic; then builds a
//! [`View`] and hands it to [`LiveState`] for the readers. Runs on the blocking
//! pool once per `aggregate.view_interval_ms` (or nine times the last build's
//! duration, when that is longer), never inside a request.
//!
//! Costs, bounded: a snapshot is read again only when its state-topic
//! partition has grown since the last read (a new snapshot was written), and
//! an owned partition is copied (under the aggregator's lock, counts only)
//! only when its next offset moved since the last copy. Freshness: the high
//! watermarks are read before the parts, so a view that reaches them holds
//! every record stored when the build began.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::flag_publisher::QualityRecord;
use super::state::OwnedCache;
use super::view::{Part, Source, View};
use super::{LiveState, late, snapshot};

/// Builds after which the late-flag scan runs even when no part changed (an
/// address reused by a new part cannot hide a change for longer).
const RESCAN_EVERY: u32 = 10;

/// After a build the builder waits at least this many times as long as the
/// build took, so it takes at most a tenth of a core (and holds the
/// aggregator's lock, to copy the owned partitions, for at most a tenth of
/// the time) however large the study's state grows.
const WAIT_PER_BUILD: u32 = 9;

/// The wait before the next build (or snapshot round, see
/// [`super::consumer`]): the configured interval, or [`WAIT_PER_BUILD`]
/// times the last one's duration when that is longer.
pub(super) fn wait_after(interval: Duration, build_took: Duration) -> Duration {
    interval.max(build_took.saturating_mul(WAIT_PER_BUILD))
}

/// The reader's state between builds.
pub(crate) struct Global {
    /// Its own snapshot store (its own reader: restores in the rebalance
    /// callback use the aggregator's).
    store: snapshot::Store,
    /// A group-less client for metadata and watermarks.
    meta: BaseConsumer,
    /// Reads back the records to flag late ([`late::read_records`]);
    /// assigned only while reading, never commits.
    records: BaseConsumer,
    responses_topic: String,
    state_topic: String,
    /// Bounds each blocking Kafka call.
    timeout: Duration,
    /// Per partition not owned: the state topic's end offset at the last
    /// read and the part read then (none: no usable snapshot).
    snapshots: BTreeMap<i32, (i64, Option<Arc<Part>>)>,
    /// Per owned partition: (generation, next offset) of the last copy, and the copy.
    owned: OwnedCache,
    /// The parts the last late-flag scan saw (partition, address of the
    /// part): the scan is skipped while they are the same, for at most
    /// [`RESCAN_EVERY`] builds.
    scanned: Vec<(i32, usize)>,
    /// Builds since the last scan.
    unscanned: u32,
    /// What the last view was built from (see [`Global::parts_key`]) and
    /// that view: while the parts stay the same, it is only refreshed.
    last: Option<(PartsKey, View)>,
}

/// What a view was built from: the topic's partitions, and per part
/// (partition, owned, then the owned copy's generation, next offset and
/// revision, or the state topic's end offset when the snapshot was read).
type PartsKey = (Vec<i32>, Vec<(i32, bool, u64, i64, u64)>);

impl std::fmt::Debug for Global {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Global").field("responses_topic", &self.responses_topic).finish()
    }
}

impl Global {
    /// A reader with clients made from these configs.
    pub(crate) fn new(
        responses_topic: String,
        state_topic: String,
        producer: &ClientConfig,
        reader: &ClientConfig,
        timeout: Duration,
    ) -> Result<Global, snapshot::SnapshotError> {
        Ok(Global {
            store: snapshot::Store::new(state_topic.clone(), producer, reader, timeout)?,
            meta: reader.create()?,
            records: reader.create()?,
            responses_topic,
            state_topic,
            timeout,
            snapshots: BTreeMap::new(),
            owned: BTreeMap::new(),
            scanned: Vec::new(),
            unscanned: 0,
            last: None,
        })
    }

    /// Builds a view as of now. Blocking (Kafka metadata, watermarks,
    /// snapshot reads, each bounded by the timeout). A partition whose
    /// watermark cannot be read counts as not caught up; one whose snapshot
    /// cannot be read keeps the part read before. Also returns the late
    /// possible-duplicate flags raised on the owned partitions
    /// ([`late`]), for the quality topic.
    pub(crate) fn build_blocking(&mut self, shared: &LiveState) -> (View, Vec<QualityRecord>) {
        let partitions: Vec<i32> = match self.meta.fetch_metadata(Some(&self.responses_topic), self.timeout) {
            Ok(md) => md
                .topics()
                .first()
                .map(|t| t.partitions().iter().map(|p| p.id()).collect())
                .unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %crate::errors::chain(&e), "view: topic metadata unavailable");
                Vec::new()
            }
        };
        // High watermarks first: parts read afterwards that reach them hold
        // every record stored when this build began.
        let mut high = BTreeMap::new();
        for &p in &partitions {
            if let Ok((_, h)) = self.meta.fetch_watermarks(&self.responses_topic, p, self.timeout) {
                high.insert(p, h);
            }
        }
        let owned = shared.owned_parts(&mut self.owned);
        for &p in &partitions {
            if owned.iter().any(|(q, _)| *q == p) {
                continue;
            }
            let end = match self.meta.fetch_watermarks(&self.state_topic, p, self.timeout) {
                Ok((_, end)) => end,
                Err(_) => continue,
            };
            if self.snapshots.get(&p).is_some_and(|(seen, _)| *seen == end) {
                continue;
            }
            match self.store.load_blocking(p) {
                Ok(snap) => {
                    let part = snap.and_then(|s| shared.part_of_snapshot(s)).map(Arc::new);
                    self.snapshots.insert(p, (end, part));
                }
                Err(e) => {
                    tracing::warn!(partition = p, error = %crate::errors::chain(&e), "view: snapshot read failed")
                }
            }
        }
        let parts = owned.iter().map(|(p, part)| (*p, Source::Owned, part.as_ref())).chain(
            self.snapshots
                .iter()
                .filter_map(|(p, (_, part))| part.as_deref().map(|x| (*p, Source::Snapshot, x))),
        );
        let now_ms = chrono::Utc::now().timestamp_millis();
        let key = self.parts_key(&partitions);
        let view = match &self.last {
            Some((k, last)) if *k == key => last.refreshed(&partitions, &high, now_ms),
            _ => View::build(parts, &partitions, &high, now_ms),
        };
        self.last = Some((key, view.clone()));
        let late = self.flag_late(shared, &view, &owned);
        (view, late)
    }

    /// What a view built now would be built from.
    fn parts_key(&self, partitions: &[i32]) -> PartsKey {
        let owned = self
            .owned
            .iter()
            .map(|(p, ((generation, next, revision), _))| (*p, true, *generation, *next, *revision));
        let read =
            self.snapshots.iter().map(|(p, (end, part))| (*p, false, u64::from(part.is_some()), *end, 0));
        (partitions.to_vec(), owned.chain(read).collect())
    }

    /// Flags, on the owned partitions, the first copies of answers that
    /// came first elsewhere ([`late`]). Scans only when a part changed
    /// since the last scan.
    fn flag_late(
        &mut self,
        shared: &LiveState,
        view: &View,
        owned: &[(i32, Arc<Part>)],
    ) -> Vec<QualityRecord> {
        let seen: Vec<(i32, usize)> = owned
            .iter()
            .map(|(p, part)| (*p, Arc::as_ptr(part) as usize))
            .chain(
                self.snapshots
                    .iter()
                    .filter_map(|(p, (_, part))| part.as_ref().map(|x| (*p, Arc::as_ptr(x) as usize))),
            )
            .collect();
        if seen == self.scanned && self.unscanned < RESCAN_EVERY {
            self.unscanned += 1;
            return Vec::new();
        }
        self.scanned = seen;
        self.unscanned = 0;
        let mut out = Vec::new();
        for (&p, wanted) in view.late_candidates() {
            let mut offsets: Vec<i64> = wanted.iter().map(|(_, o)| o.offset).collect();
            offsets.dedup();
            let read = late::read_records(&self.records, &self.responses_topic, p, &offsets, self.timeout);
            for &(hash, origin) in wanted {
                if let Some(record) = read.get(&origin.offset).and_then(|r| shared.late_flag(hash, origin, r))
                {
                    out.push(record);
                }
            }
            if read.len() < offsets.len() {
                // Not all read in time: scan again next build.
                self.scanned.clear();
            }
        }
        if !out.is_empty() {
            tracing::info!(
                flags = out.len(),
                "possible duplicates of earlier copies in other partitions flagged"
            );
        }
        out
    }
}

/// Rebuilds the view every `interval` until `stop` turns true; each view
/// replaces the previous one in `shared`, and late flags go to `quality`
/// (the flag publisher). A build under way when `stop` turns is finished
/// first: it runs on the blocking pool, which no abort reaches, so only
/// returning drops `global`'s Kafka clients before the caller goes on
/// (and, in `serve`, stops the embedded broker under them).
pub(crate) async fn run(
    mut global: Global,
    shared: Arc<LiveState>,
    interval: Duration,
    quality: tokio::sync::mpsc::Sender<QualityRecord>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        let s = shared.clone();
        let started = std::time::Instant::now();
        // Kafka calls and merging block: on the blocking pool, one build at a time.
        let built = tokio::task::spawn_blocking(move || {
            let view = global.build_blocking(&s);
            (global, view)
        })
        .await;
        let took = started.elapsed();
        match built {
            Ok((g, (view, late))) => {
                global = g;
                shared.set_view(view);
                for record in late {
                    if quality.send(record).await.is_err() {
                        tracing::warn!("quality publisher is gone; late flag not published");
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %crate::errors::chain(&e), "view builder failed; the view stays as it was");
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait_after(interval, took)) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_waits_the_interval_or_nine_times_its_last_build_whichever_is_longer() {
        let second = Duration::from_secs(1);
        assert_eq!(wait_after(second, Duration::from_millis(20)), second);
        assert_eq!(wait_after(second, Duration::from_millis(111)), second);
        assert_eq!(wait_after(second, Duration::from_millis(200)), Duration::from_millis(1_800));
        assert_eq!(wait_after(Duration::ZERO, Duration::from_millis(3)), Duration::from_millis(27));
    }
}
