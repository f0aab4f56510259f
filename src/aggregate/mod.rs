//! The aggregator: a consumer-group member on the responses topic that turns
//! each record into results with the pure core (decode → validate → check →
//! apply) and keeps one state per partition it owns.
//!
//! Exactness: a partition's state is a function of the partition's records
//! up to its next offset. Every `snapshot_interval_ms`, on revoke and at
//! shutdown, each changed partition's state is written with its next offset
//! to the state topic ([`snapshot`]) and only after that write is
//! acknowledged is the next offset committed to the group. When a partition
//! is assigned, the new owner restores the newest snapshot in the rebalance
//! callback, before the partition counts (or starts empty at offset 0 when
//! there is none). A record is applied only at the partition's next offset:
//! one below was applied already (skipped), one above means the consumer
//! position and the state disagree (the consumer seeks back to the next
//! offset). So a record is applied exactly once whatever restarts, and the
//! next offset is always `offset + 1` of the last applied record. A revoked
//! partition's state is dropped at once, so what an instance exports is the
//! sum over the partitions it owns now and the sum over instances is the
//! study total. Readiness: every owned partition's next offset has reached
//! the high watermark read after it was assigned.
//!
//! Envelopes carrying a case disposition update the study's fieldwork
//! state. Each flagged interview is kept for `GET .../flags` and handed to
//! [`quality`], which publishes it to the quality topic unless an earlier
//! owner of the partition already did (replays publish nothing twice).

pub mod fieldwork;
pub mod metrics;
pub mod quality;
pub mod snapshot;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::fieldwork::review::{self, FlagFilter, FlagPage, FlaggedInterview};
use crate::fieldwork::{DispositionSubmission, validate_disposition_in};
use crate::instrument::Catalog;
use crate::kafka::{KafkaConfig, consumer_config, producer_config};
use crate::proto::v1;
use crate::quality::check;
use crate::results::StudyState;
use crate::validate::{Limits, Submission, validate};

/// Aggregator settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    /// Consumer group id: instances with the same id share the partitions.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// How often high watermarks (for lag and readiness) are read, in ms.
    #[serde(default = "default_watermark_interval_ms")]
    pub watermark_interval_ms: u64,
    /// How often changed partitions are snapshotted to the state topic (and
    /// their offsets committed), in ms. Bounds the records a restarted
    /// instance reads again.
    #[serde(default = "default_snapshot_interval_ms")]
    pub snapshot_interval_ms: u64,
    /// Consumer group session timeout, in ms: how long a crashed instance
    /// keeps its partitions before the group gives them to others.
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
}

fn default_group_id() -> String {
    "fieldwatch-aggregator".into()
}
fn default_watermark_interval_ms() -> u64 {
    500
}
fn default_snapshot_interval_ms() -> u64 {
    5_000
}
fn default_session_timeout_ms() -> u64 {
    10_000
}

impl Default for AggregateConfig {
    fn default() -> Self {
        AggregateConfig {
            group_id: default_group_id(),
            watermark_interval_ms: default_watermark_interval_ms(),
            snapshot_interval_ms: default_snapshot_interval_ms(),
            session_timeout_ms: default_session_timeout_ms(),
        }
    }
}

/// Errors of the aggregator.
#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    /// The consumer could not be created or subscribed.
    #[error("kafka consumer")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The snapshot store could not be set up.
    #[error("snapshot store")]
    Snapshot(#[from] snapshot::SnapshotError),
}

/// What happened to one record; a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Counted into results.
    Applied,
    /// Same submission id as an earlier record: counted once.
    Retry,
    /// Same respondent as an earlier record: flagged, not counted.
    DuplicateRespondent,
    /// Decoded but failed validation against the current instrument.
    Invalid,
    /// Not a decodable envelope.
    DecodeError,
    /// A study no loaded instrument defines.
    UnknownStudy,
    /// An offset already applied (redelivery): skipped.
    Redelivered,
    /// A record of a partition this instance does not own (in flight during a rebalance).
    NotOwned,
    /// A record past the next offset: not applied; the consumer seeks back.
    Gap,
    /// A case disposition applied to the fieldwork state (superseded ones included).
    Disposition,
    /// The pure pipeline panicked on the record: counted, logged and
    /// skipped, so one poison record cannot stop the partition.
    Unprocessable,
}

impl Outcome {
    /// Every outcome, for pre-registering metric label values.
    pub const ALL: [Outcome; 11] = [
        Outcome::Applied,
        Outcome::Retry,
        Outcome::DuplicateRespondent,
        Outcome::Invalid,
        Outcome::DecodeError,
        Outcome::UnknownStudy,
        Outcome::Redelivered,
        Outcome::NotOwned,
        Outcome::Gap,
        Outcome::Disposition,
        Outcome::Unprocessable,
    ];

    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Retry => "retry",
            Outcome::DuplicateRespondent => "duplicate_respondent",
            Outcome::Invalid => "invalid",
            Outcome::DecodeError => "decode_error",
            Outcome::UnknownStudy => "unknown_study",
            Outcome::Redelivered => "redelivered",
            Outcome::NotOwned => "not_owned",
            Outcome::Gap => "gap",
            Outcome::Disposition => "disposition",
            Outcome::Unprocessable => "unprocessable",
        }
    }
}

/// The state of one owned partition.
#[derive(Debug, Clone, Default)]
pub struct PartitionState {
    /// Offset of the next record to apply (last applied + 1).
    pub next_offset: i64,
    /// High watermark last read, if any since assignment.
    pub high_watermark: Option<i64>,
    /// Results per study id.
    pub studies: HashMap<String, StudyState>,
    /// `next_offset` as of the last snapshot written or restored.
    pub snapshot_offset: i64,
    /// The offset a seek back was last requested to, so a real gap in the
    /// log (a deleted or compacted range) is accepted after one try.
    seek_tried: Option<i64>,
    /// Which assignment of the partition this state belongs to: a new one
    /// for every assignment, so the quality publisher knows to look up
    /// again what was published.
    pub generation: u64,
    /// The flagged interviews of the partition, in offset order.
    pub flagged: Vec<FlaggedInterview>,
}

#[derive(Debug, Default)]
struct Inner {
    partitions: BTreeMap<i32, PartitionState>,
    assigned_once: bool,
    outcomes: HashMap<Outcome, u64>,
    snapshots_written: u64,
    snapshots_restored: u64,
    generations: u64,
}

/// State shared between the consumer loop, the rebalance callbacks and the
/// HTTP exporter.
#[derive(Debug)]
pub struct Shared {
    catalog: Arc<Catalog>,
    /// Fingerprint of the loaded instruments; snapshots of other instruments are not restored.
    fingerprint: u64,
    limits: Limits,
    inner: Mutex<Inner>,
    /// Outcomes of the quality publisher, for the metrics.
    quality: quality::QualityCounters,
}

/// Lag and readiness of one partition.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionStatus {
    /// Partition number.
    pub partition: i32,
    /// Next offset to apply.
    pub next_offset: i64,
    /// High watermark, if read.
    pub high_watermark: Option<i64>,
}

impl Shared {
    /// Shared state for a catalog.
    pub fn new(catalog: Arc<Catalog>, limits: Limits) -> Arc<Shared> {
        let defs: Vec<String> =
            catalog.studies().map(|s| serde_json::to_string(&s.def).unwrap_or_default()).collect();
        let fingerprint = xxhash_rust::xxh3::xxh3_64(defs.join("\n").as_bytes());
        Arc::new(Shared {
            catalog,
            fingerprint,
            limits,
            inner: Mutex::new(Inner::default()),
            quality: quality::QualityCounters::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave counts half-applied
        // (apply mutates one partition's state and is not interrupted), so a
        // poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The catalog.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Takes ownership of a partition with a restored snapshot (or empty).
    /// Returns the offset to start reading the partition at.
    pub(crate) fn assign(&self, partition: i32, restored: Option<snapshot::Snapshot>) -> i64 {
        let mut g = self.lock();
        g.assigned_once = true;
        g.generations += 1;
        let generation = g.generations;
        let state = match restored {
            Some(s) if s.catalog == self.fingerprint => {
                g.snapshots_restored += 1;
                PartitionState {
                    next_offset: s.next_offset,
                    snapshot_offset: s.next_offset,
                    studies: s.studies.into_iter().collect(),
                    flagged: serde_json::from_slice(&s.flagged_json).unwrap_or_else(|e| {
                        tracing::warn!(partition, error = %e, "flags in the snapshot do not decode");
                        Vec::new()
                    }),
                    generation,
                    ..PartitionState::default()
                }
            }
            Some(_) => {
                tracing::warn!(
                    partition,
                    "snapshot was made with other instruments; replaying the partition"
                );
                PartitionState { generation, ..PartitionState::default() }
            }
            None => PartitionState { generation, ..PartitionState::default() },
        };
        let next = state.next_offset;
        g.partitions.insert(partition, state);
        next
    }

    fn revoke(&self, partitions: &[i32]) {
        let mut g = self.lock();
        for p in partitions {
            g.partitions.remove(p);
        }
    }

    /// Snapshots of the owned partitions (all, or only those changed since
    /// their last snapshot).
    pub(crate) fn snapshots(&self, only_changed: bool, which: Option<&[i32]>) -> Vec<snapshot::Snapshot> {
        let g = self.lock();
        g.partitions
            .iter()
            .filter(|(p, s)| {
                which.is_none_or(|w| w.contains(p)) && (!only_changed || s.next_offset != s.snapshot_offset)
            })
            .map(|(p, s)| snapshot::Snapshot {
                version: snapshot::FORMAT_VERSION,
                catalog: self.fingerprint,
                partition: *p,
                next_offset: s.next_offset,
                studies: s.studies.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                flagged_json: serde_json::to_vec(&s.flagged).unwrap_or_default(),
            })
            .collect()
    }

    fn snapshot_written(&self, partition: i32, next_offset: i64) {
        let mut g = self.lock();
        g.snapshots_written += 1;
        if let Some(p) = g.partitions.get_mut(&partition) {
            p.snapshot_offset = next_offset;
        }
    }

    /// Snapshots written and restored since start.
    pub fn snapshot_counts(&self) -> (u64, u64) {
        let g = self.lock();
        (g.snapshots_written, g.snapshots_restored)
    }

    /// The next offset of an owned partition.
    pub fn next_offset(&self, partition: i32) -> Option<i64> {
        self.lock().partitions.get(&partition).map(|p| p.next_offset)
    }

    /// Applies the record at `offset` of `partition`.
    pub fn apply(&self, partition: i32, offset: i64, payload: Option<&[u8]>) -> Outcome {
        self.apply_record(partition, offset, payload).0
    }

    /// Applies the record at `offset` of `partition`; returns what happened
    /// and, for a flagged interview, the record for the quality topic.
    pub fn apply_record(
        &self,
        partition: i32,
        offset: i64,
        payload: Option<&[u8]>,
    ) -> (Outcome, Option<quality::QualityRecord>) {
        let decoded = payload.and_then(|b| v1::Envelope::decode(b).ok());
        let mut g = self.lock();
        let (outcome, flagged) = self.apply_locked(&mut g, partition, offset, decoded);
        *g.outcomes.entry(outcome).or_default() += 1;
        (outcome, flagged)
    }

    fn apply_locked(
        &self,
        g: &mut Inner,
        partition: i32,
        offset: i64,
        envelope: Option<v1::Envelope>,
    ) -> (Outcome, Option<quality::QualityRecord>) {
        let Some(ps) = g.partitions.get_mut(&partition) else {
            return (Outcome::NotOwned, None);
        };
        if offset < ps.next_offset {
            return (Outcome::Redelivered, None);
        }
        if offset > ps.next_offset && ps.seek_tried != Some(ps.next_offset) {
            ps.seek_tried = Some(ps.next_offset);
            return (Outcome::Gap, None);
        }
        // next offset = last applied + 1, whatever the record's fate below:
        // a record that cannot be used must not be read again either.
        ps.next_offset = offset + 1;
        let Some(envelope) = envelope else {
            return (Outcome::DecodeError, None);
        };
        if let Some(d) = envelope.disposition {
            return (self.apply_disposition(ps, d.into()), None);
        }
        let Some(sub) = envelope.submission.map(Submission::from) else {
            return (Outcome::DecodeError, None);
        };
        let Some(study) = self.catalog.get(&sub.study) else {
            return (Outcome::UnknownStudy, None);
        };
        // The pure pipeline is bounded by construction; should it panic all
        // the same on some record, that record is counted as unprocessable
        // and skipped (its offset is already passed) instead of taking the
        // partition, and every restart replaying it, down. Nothing is
        // mutated inside, so no state is left half-applied.
        let pipeline = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            validate(&self.catalog, &sub, &self.limits).map(|rec| {
                let checked = check(study, &rec);
                (rec, checked)
            })
        }));
        let (rec, checked) = match pipeline {
            Ok(Ok(done)) => done,
            Ok(Err(_)) => return (Outcome::Invalid, None),
            Err(_) => {
                tracing::error!(partition, offset, "record cannot be processed; skipped");
                return (Outcome::Unprocessable, None);
            }
        };
        let state = ps.studies.entry(sub.study).or_default();
        let applied = state.apply(study, &rec, &checked);
        let outcome = match applied {
            crate::results::Applied::Counted { .. } => Outcome::Applied,
            crate::results::Applied::Retry => Outcome::Retry,
            crate::results::Applied::DuplicateRespondent => Outcome::DuplicateRespondent,
        };
        let checks = review::raised(study, &rec, &checked, applied);
        if checks.is_empty() {
            return (outcome, None);
        }
        let flagged = FlaggedInterview {
            study: study.id().to_string(),
            form: study.forms.get(rec.form).map(|f| f.id.clone()).unwrap_or_default(),
            submission_id: rec.submission_id.clone(),
            respondent_key: rec.respondent.clone(),
            interviewer: state.fieldwork.interviewer_label_of(study, rec.interviewer.as_deref()),
            received_at: envelope.received_at.and_then(|t| {
                chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            }),
            checks,
            source_partition: partition,
            source_offset: offset,
        };
        ps.flagged.push(flagged.clone());
        (outcome, Some(quality::QualityRecord { generation: ps.generation, flagged }))
    }

    fn apply_disposition(&self, ps: &mut PartitionState, d: DispositionSubmission) -> Outcome {
        let Some(study) = self.catalog.get(&d.study) else {
            return Outcome::UnknownStudy;
        };
        let Ok(rec) = validate_disposition_in(study, &d, &self.limits) else {
            return Outcome::Invalid;
        };
        ps.studies.entry(d.study).or_default().apply_disposition(study, &rec);
        Outcome::Disposition
    }

    /// One page of the study's flagged interviews in the partitions owned now.
    pub fn flags(&self, study: &str, filter: &FlagFilter, page: usize, per_page: usize) -> FlagPage {
        let g = self.lock();
        let all = g.partitions.values().flat_map(|p| p.flagged.iter()).filter(|f| f.study == study);
        review::page(all, filter, page, per_page)
    }

    /// What the quality publisher did since start.
    pub fn quality_counters(&self) -> &quality::QualityCounters {
        &self.quality
    }

    /// The study's state summed over the partitions owned now.
    pub fn merged(&self, study: &str) -> StudyState {
        let g = self.lock();
        let mut out = StudyState::new();
        for ps in g.partitions.values() {
            if let Some(s) = ps.studies.get(study) {
                out.merge(s);
            }
        }
        out
    }

    /// Every owned partition has read up to its high watermark.
    pub fn caught_up(&self) -> bool {
        let g = self.lock();
        g.assigned_once && g.partitions.values().all(|p| p.high_watermark.is_some_and(|h| p.next_offset >= h))
    }

    /// Per-partition progress.
    pub fn partitions(&self) -> Vec<PartitionStatus> {
        self.lock()
            .partitions
            .iter()
            .map(|(p, s)| PartitionStatus {
                partition: *p,
                next_offset: s.next_offset,
                high_watermark: s.high_watermark,
            })
            .collect()
    }

    /// Records processed by outcome since start.
    pub fn outcomes(&self) -> HashMap<Outcome, u64> {
        self.lock().outcomes.clone()
    }

    fn set_high_watermark(&self, partition: i32, high: i64) {
        if let Some(p) = self.lock().partitions.get_mut(&partition) {
            p.high_watermark = Some(high);
        }
    }
}

/// Consumer context that keeps [`Shared`]'s partition map equal to the
/// assignment: states are dropped before a revoke completes and created
/// empty after an assignment.
struct Ctx {
    shared: Arc<Shared>,
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
            tracing::warn!(error = %e, "offset commit failed");
        }
    }
}

/// Writes snapshots of the owned partitions (those in `which`, or all; only
/// the changed ones if `only_changed`) and returns the offsets to commit:
/// for each saved partition its next offset (= last applied + 1), stored
/// only once its state is saved.
pub(crate) async fn save_snapshots(
    shared: &Shared,
    store: &snapshot::Store,
    topic: &str,
    only_changed: bool,
    which: Option<&[i32]>,
) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for s in shared.snapshots(only_changed, which) {
        match store.save(&s, snapshot_id()).await {
            Ok(_) => {
                shared.snapshot_written(s.partition, s.next_offset);
                let _ = tpl.add_partition_offset(topic, s.partition, Offset::Offset(s.next_offset));
            }
            Err(e) => tracing::warn!(partition = s.partition, error = %e, "snapshot failed"),
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
                    tracing::warn!(error = %e, "unassign failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let ps = partitions_of(tpl);
                tracing::info!(partitions = ?ps, "partitions assigned; restoring their state");
                for p in ps {
                    // Restored before any record of the partition is applied.
                    let restored = self.store.load_blocking(p).unwrap_or_else(|e| {
                        tracing::warn!(partition = p, error = %e, "snapshot restore failed; replaying");
                        None
                    });
                    let next = self.shared.assign(p, restored);
                    if let Err(e) = tpl.set_partition_offset(&self.topic, p, Offset::Offset(next)) {
                        tracing::warn!(partition = p, error = %e, "cannot set the start offset");
                    }
                }
                if let Err(e) = c.assign(tpl) {
                    tracing::warn!(error = %e, "assign failed");
                }
            }
            other => tracing::warn!(error = ?other, "rebalance error"),
        }
    }
}

/// When an instance that owns no partition should look for stalled ones.
///
/// tansu 0.6.0 can leave a group's partitions with nobody: after members
/// crash while others are joining, the live member may get an empty
/// assignment, and when the crashed members time out the live ones are not
/// always told to rejoin (their heartbeats keep getting "no error"). Seen in
/// the fault-injection suite: an aggregator restarted after the fifth
/// SIGKILL got no partition and kept none for minutes. Kafka itself tells
/// the members to rejoin; the check below only acts when partitions have
/// records nobody commits, so on a healthy group it does nothing.
struct IdleWatch {
    /// How long without any partition before the first look, and between looks.
    after: Duration,
    since: Option<std::time::Instant>,
    /// The group's committed offsets at the previous look.
    committed: Option<BTreeMap<i32, i64>>,
}

impl IdleWatch {
    fn new(after: Duration) -> IdleWatch {
        IdleWatch { after, since: None, committed: None }
    }

    /// Whether to look now: idle for `after` since the last look (or since
    /// the instance last owned a partition).
    fn due(&mut self, idle: bool, now: std::time::Instant) -> bool {
        if !idle {
            self.since = None;
            self.committed = None;
            return false;
        }
        let since = *self.since.get_or_insert(now);
        if now.duration_since(since) >= self.after {
            self.since = Some(now);
            return true;
        }
        false
    }

    /// Records the group's committed offsets and the high watermarks seen
    /// now; true when a partition has records beyond its committed offset
    /// and that offset has not moved since the previous look: nobody reads it.
    fn stalled(&mut self, committed: BTreeMap<i32, i64>, high: &BTreeMap<i32, i64>) -> bool {
        let stalled = self.committed.as_ref().is_some_and(|before| {
            // -1 (nothing committed) counts as offset 0: an empty partition is not stalled.
            committed
                .iter()
                .any(|(p, c)| high.get(p).is_some_and(|h| *h > (*c).max(0)) && before.get(p) == Some(c))
        });
        self.committed = if stalled { None } else { Some(committed) };
        stalled
    }
}

/// The group's committed offset (-1 for none) and the high watermark of
/// every partition of `topic`; none when the broker does not answer.
fn group_progress(c: &StreamConsumer<Ctx>, topic: &str) -> Option<(BTreeMap<i32, i64>, BTreeMap<i32, i64>)> {
    const WAIT: Duration = Duration::from_secs(2);
    let md = c.fetch_metadata(Some(topic), WAIT).ok()?;
    let parts: Vec<i32> = md.topics().first()?.partitions().iter().map(|p| p.id()).collect();
    let mut tpl = TopicPartitionList::new();
    for &p in &parts {
        tpl.add_partition(topic, p);
    }
    let committed = c.committed_offsets(tpl, WAIT).ok()?;
    let committed: BTreeMap<i32, i64> = committed
        .elements()
        .iter()
        .map(|e| (e.partition(), if let Offset::Offset(o) = e.offset() { o } else { -1 }))
        .collect();
    let mut high = BTreeMap::new();
    for p in parts {
        high.insert(p, c.fetch_watermarks(topic, p, WAIT).ok()?.1);
    }
    Some((committed, high))
}

/// Rejoins the group when partitions stall while this instance owns
/// nothing (see [`IdleWatch`]).
async fn rejoin_if_stalled(consumer: &Arc<StreamConsumer<Ctx>>, idle: &mut IdleWatch, topic: &str) {
    let (c, t) = (consumer.clone(), topic.to_string());
    // Metadata, offset and watermark requests block, each bounded by its
    // timeout: off the async workers.
    let Ok(Some((committed, high))) = tokio::task::spawn_blocking(move || group_progress(&c, &t)).await
    else {
        return;
    };
    if idle.stalled(committed, &high) {
        tracing::warn!("owning no partition while partitions stall with unread records; rejoining the group");
        consumer.unsubscribe();
        if let Err(e) = consumer.subscribe(&[topic]) {
            tracing::warn!(error = %e, "subscribe after rejoin failed");
        }
    }
}

/// Runs the aggregator until `shutdown` resolves.
pub async fn run(
    kafka: &KafkaConfig,
    bootstrap: &str,
    config: &AggregateConfig,
    shared: Arc<Shared>,
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
    let ctx = Ctx { shared: shared.clone(), store: store.clone(), topic: kafka.responses_topic.clone() };
    let consumer: Arc<StreamConsumer<Ctx>> = Arc::new(consumer_cfg.create_with_context(ctx)?);
    consumer.subscribe(&[kafka.responses_topic.as_str()])?;

    // Reads high watermarks of owned partitions every interval; ends when the
    // consumer loop below ends (it aborts this task at shutdown).
    let wm_consumer = consumer.clone();
    let wm_shared = shared.clone();
    let topic = kafka.responses_topic.clone();
    let interval = Duration::from_millis(config.watermark_interval_ms.max(50));
    let watermarks = tokio::spawn(async move {
        loop {
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
            tokio::time::sleep(interval).await;
        }
    });

    // Flagged interviews on their way to the quality topic. Bounded: when
    // the publisher falls behind, the consumer loop waits here instead of
    // piling up records. The receiver is the publisher task; the sender is
    // dropped after the loop, which ends the task once it has drained.
    let (quality_tx, quality_rx) = tokio::sync::mpsc::channel(quality::CHANNEL_CAPACITY);
    let publisher = quality::QualityPublisher::new(kafka, bootstrap, shared.clone())?;
    let publisher = tokio::spawn(publisher.run(quality_rx));

    tokio::pin!(shutdown);
    let mut idle = IdleWatch::new(Duration::from_millis(config.session_timeout_ms.saturating_mul(2)));
    // Snapshot cadence; each tick saves the partitions changed since their last snapshot.
    let mut snapshot_tick =
        tokio::time::interval(Duration::from_millis(config.snapshot_interval_ms.max(100)));
    snapshot_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = snapshot_tick.tick() => {
                let tpl = save_snapshots(&shared, &store, &kafka.responses_topic, true, None).await;
                if tpl.count() > 0 && let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
                    tracing::warn!(error = %e, "offset commit failed");
                }
                if idle.due(shared.partitions().is_empty(), std::time::Instant::now()) {
                    rejoin_if_stalled(&consumer, &mut idle, &kafka.responses_topic).await;
                }
            }
            msg = consumer.recv() => match msg {
                Ok(m) => {
                    let (partition, offset) = (m.partition(), m.offset());
                    let (outcome, flagged) = shared.apply_record(partition, offset, m.payload());
                    if outcome == Outcome::Gap
                        && let Some(next) = shared.next_offset(partition)
                    {
                        drop(m);
                        tracing::info!(partition, from = offset, to = next, "offset ahead of the state; seeking back");
                        if let Err(e) =
                            consumer.seek(&kafka.responses_topic, partition, Offset::Offset(next), Duration::from_secs(5))
                        {
                            tracing::warn!(partition, error = %e, "seek failed");
                        }
                    } else if let Some(record) = flagged {
                        tokio::select! {
                            _ = &mut shutdown => break,
                            sent = quality_tx.send(record) => if sent.is_err() {
                                tracing::warn!(partition, offset, "quality publisher is gone");
                            },
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "consume error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    watermarks.abort();
    // Shutdown: save every owned partition and commit, then leave the group.
    let tpl = save_snapshots(&shared, &store, &kafka.responses_topic, false, None).await;
    if tpl.count() > 0 {
        let c = consumer.clone();
        // A synchronous commit blocks: off the async workers.
        let committed = tokio::task::spawn_blocking(move || c.commit(&tpl, CommitMode::Sync)).await;
        if let Ok(Err(e)) = committed {
            tracing::warn!(error = %e, "final offset commit failed");
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
    fn an_idle_instance_checks_its_group_once_per_period_and_owning_resets_the_clock() {
        let t0 = std::time::Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut w = IdleWatch::new(Duration::from_secs(20));
        assert!(!w.due(true, s(0)));
        assert!(!w.due(true, s(19)));
        assert!(w.due(true, s(20)));
        assert!(!w.due(true, s(30)));
        assert!(w.due(true, s(40)));
        assert!(!w.due(false, s(41)));
        assert!(!w.due(true, s(50)));
        assert!(w.due(true, s(70)));
    }

    #[test]
    fn only_partitions_with_unread_records_and_no_commit_since_the_last_look_are_stalled() {
        let m = |v: &[(i32, i64)]| v.iter().copied().collect::<BTreeMap<i32, i64>>();
        let mut w = IdleWatch::new(Duration::from_secs(20));
        let high = m(&[(0, 100), (1, 50)]);
        // First look: nothing to compare with.
        assert!(!w.stalled(m(&[(0, 40), (1, 50)]), &high));
        // Partition 0 moved on, partition 1 is fully read: healthy.
        assert!(!w.stalled(m(&[(0, 60), (1, 50)]), &high));
        // Partition 0 did not move and has unread records: stalled.
        assert!(w.stalled(m(&[(0, 60), (1, 50)]), &high));
        // After a rejoin the comparison starts over.
        assert!(!w.stalled(m(&[(0, 60), (1, 50)]), &high));
        // Never committed (-1) with records: stalled at the next look.
        let mut w = IdleWatch::new(Duration::from_secs(20));
        assert!(!w.stalled(m(&[(0, -1)]), &m(&[(0, 10)])));
        assert!(w.stalled(m(&[(0, -1)]), &m(&[(0, 10)])));
        // An empty partition never stalls.
        let mut w = IdleWatch::new(Duration::from_secs(20));
        assert!(!w.stalled(m(&[(0, -1)]), &m(&[(0, 0)])));
        assert!(!w.stalled(m(&[(0, -1)]), &m(&[(0, 0)])));
        // Owning a partition again forgets the sample.
        assert!(!w.due(false, std::time::Instant::now()));
        assert!(!w.stalled(m(&[(0, -1)]), &m(&[(0, 10)])));
    }
}
