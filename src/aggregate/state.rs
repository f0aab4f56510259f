//! The aggregator's live state: one [`PartitionState`] per owned
//! partition behind one lock, each record applied through
//! [`crate::pipeline::apply`] under the offset rules of [`Offsets`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use prost::Message as _;
use serde::Serialize;

use super::flag_publisher::QualityCounters;
use super::offsets::Offsets;
pub use super::outcome::Outcome;
use super::snapshot;
use super::view::{self, Part};
use crate::fieldwork::review::{self, FlagFilter, FlagPage, FlaggedInterview};
use crate::instrument::Catalog;
use crate::results::StudyState;
use crate::validate::Limits;

/// The view task's copies of the owned partitions, kept between builds:
/// per partition, (generation, next offset, revision) of the copy, and the copy.
pub type OwnedCache = BTreeMap<i32, ((u64, i64, u64), Arc<Part>)>;

/// The state of one owned partition.
#[derive(Debug, Clone, Default)]
pub struct PartitionState {
    /// Where the partition's state ends and what may be committed.
    pub offsets: Offsets,
    /// High watermark last read, if any since assignment.
    pub high_watermark: Option<i64>,
    /// Results per study id.
    pub studies: HashMap<String, StudyState>,
    /// Which assignment of the partition this state belongs to: a new one
    /// for every assignment, so the flag publisher knows to look up
    /// again what was published.
    pub generation: u64,
    /// The flagged interviews of the partition, in offset order. Shared
    /// (`Arc`) so that the view's copies of the list cost a pointer per
    /// flagged interview, not the interview.
    pub flagged: Vec<Arc<FlaggedInterview>>,
    /// Changes made without a new record (late possible-duplicate flags,
    /// [`LiveState::late_flag`]): the view recopies and the next snapshot
    /// saves a partition whose revision moved.
    pub revision: u64,
    /// The revision the last snapshot taken holds.
    pub snapshot_revision: u64,
}

impl PartitionState {
    /// Whether partition `p` (this state) is to be snapshotted: it is in
    /// `which` (or that is none) and, if `only_changed`, changed since its
    /// last snapshot.
    fn snapshot_due(&self, p: i32, only_changed: bool, which: Option<&[i32]>) -> bool {
        which.is_none_or(|w| w.contains(&p))
            && (!only_changed
                || self.offsets.changed_since_snapshot()
                || self.revision != self.snapshot_revision)
    }
}

#[derive(Debug, Default)]
pub(super) struct Inner {
    pub(super) partitions: BTreeMap<i32, PartitionState>,
    /// Owning no partition while partitions stall with unread records (see
    /// [`super::stall`]): not ready until a partition is assigned or nothing
    /// is left unread.
    orphaned: bool,
    pub(super) outcomes: HashMap<Outcome, u64>,
    snapshots_written: u64,
    snapshots_restored: u64,
    generations: u64,
}

/// The aggregator's live state: the states of the partitions this instance
/// owns now, shared between the consumer loop, the rebalance callbacks and
/// the HTTP exporter.
#[derive(Debug)]
pub struct LiveState {
    catalog: Arc<Catalog>,
    /// Fingerprint of the loaded instruments; snapshots of other instruments are not restored.
    fingerprint: u64,
    limits: Limits,
    inner: Mutex<Inner>,
    /// Outcomes of the flag publisher, for the metrics.
    quality: QualityCounters,
    /// The study-wide view the readers use, replaced whole by the view
    /// builder ([`super::global`]) once per `view_interval_ms`. Readers hold
    /// the read lock only to clone the `Arc`, so no request waits on the
    /// aggregator's mutex or merges anything.
    view: RwLock<Arc<view::View>>,
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

impl PartitionStatus {
    /// Records stored but not applied yet (at least 0), as of the high
    /// watermark last read; none before it is read.
    pub fn unread(&self) -> Option<i64> {
        self.high_watermark.map(|h| (h - self.next_offset).max(0))
    }
}

impl LiveState {
    /// The live state for a catalog, owning no partition yet.
    pub fn new(catalog: Arc<Catalog>, limits: Limits) -> Arc<LiveState> {
        let fingerprint = snapshot::catalog_fingerprint(&catalog);
        Arc::new(LiveState {
            catalog,
            fingerprint,
            limits,
            inner: Mutex::new(Inner::default()),
            quality: QualityCounters::default(),
            view: RwLock::new(Arc::new(view::View::default())),
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave counts half-applied
        // (apply mutates one partition's state and is not interrupted), so a
        // poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The catalog.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The validation limits records are applied with.
    pub(super) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Takes ownership of a partition with a restored snapshot (or empty).
    /// Returns the offset to start reading the partition at.
    pub fn assign(&self, partition: i32, restored: Option<snapshot::Snapshot>) -> i64 {
        let mut g = self.lock();
        g.orphaned = false;
        g.generations += 1;
        let generation = g.generations;
        let state = match restored {
            Some(s) if s.catalog == self.fingerprint => {
                g.snapshots_restored += 1;
                PartitionState {
                    offsets: Offsets::starting_at(s.next_offset),
                    studies: s.studies.into_iter().collect(),
                    flagged: serde_json::from_slice(&s.flagged_json).unwrap_or_else(|e| {
                        tracing::warn!(partition, error = %crate::errors::chain(&e), "flags in the snapshot do not decode");
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
        let next = state.offsets.next();
        g.partitions.insert(partition, state);
        next
    }

    pub(super) fn revoke(&self, partitions: &[i32]) {
        let mut g = self.lock();
        for p in partitions {
            g.partitions.remove(p);
        }
    }

    /// The owned partitions to snapshot: those in `which` (or all), only
    /// those changed since their last snapshot if `only_changed`.
    pub(crate) fn snapshots_due(&self, only_changed: bool, which: Option<&[i32]>) -> Vec<i32> {
        let g = self.lock();
        g.partitions
            .iter()
            .filter(|(p, s)| s.snapshot_due(**p, only_changed, which))
            .map(|(p, _)| *p)
            .collect()
    }

    /// The encoded snapshot of an owned partition as of now: (next offset,
    /// bytes). Made one partition at a time from the live state, without
    /// copying it; the lock is held while the state is packed, not while
    /// the message is encoded. None when the partition is not owned.
    pub(crate) fn encoded_snapshot(&self, partition: i32) -> Option<(i64, Vec<u8>)> {
        let message = {
            let mut g = self.lock();
            let s = g.partitions.get_mut(&partition)?;
            // As in `snapshots`: late flags not saved by a failed snapshot
            // are raised again by the view.
            s.snapshot_revision = s.revision;
            let flagged_json = serde_json::to_vec(&s.flagged).unwrap_or_default();
            snapshot::message(self.fingerprint, partition, s.offsets.next(), s.studies.iter(), flagged_json)
        };
        Some((message.next_offset, message.encode_to_vec()))
    }

    /// Snapshots of the owned partitions (all, or only those changed since
    /// their last snapshot), as copies.
    pub(crate) fn snapshots(&self, only_changed: bool, which: Option<&[i32]>) -> Vec<snapshot::Snapshot> {
        let mut g = self.lock();
        g.partitions
            .iter_mut()
            .filter(|(p, s)| s.snapshot_due(**p, only_changed, which))
            .map(|(p, s)| {
                // A snapshot that fails to save leaves the late flags to the
                // next one (a record or a revoke); lost in a crash, they are
                // raised again by the next owner (its view finds them again).
                s.snapshot_revision = s.revision;
                (p, &*s)
            })
            .map(|(p, s)| snapshot::Snapshot {
                version: snapshot::FORMAT_VERSION,
                catalog: self.fingerprint,
                partition: *p,
                next_offset: s.offsets.next(),
                studies: s.studies.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                flagged_json: serde_json::to_vec(&s.flagged).unwrap_or_default(),
            })
            .collect()
    }

    /// Records that the snapshot of `partition` taken at `next_offset` was
    /// acknowledged; returns the offset to commit, none when the partition
    /// is no longer owned.
    pub(crate) fn snapshot_written(&self, partition: i32, next_offset: i64) -> Option<i64> {
        let mut g = self.lock();
        g.snapshots_written += 1;
        g.partitions.get_mut(&partition).map(|p| p.offsets.snapshot_acknowledged(next_offset))
    }

    /// Snapshots written and restored since start.
    pub fn snapshot_counts(&self) -> (u64, u64) {
        let g = self.lock();
        (g.snapshots_written, g.snapshots_restored)
    }

    /// The next offset of an owned partition.
    pub fn next_offset(&self, partition: i32) -> Option<i64> {
        self.lock().partitions.get(&partition).map(|p| p.offsets.next())
    }

    /// One page of the study's flagged interviews in the partitions owned now.
    pub fn flags(&self, study: &str, filter: &FlagFilter, page: usize, per_page: usize) -> FlagPage {
        let g = self.lock();
        let all =
            g.partitions.values().flat_map(|p| p.flagged.iter().map(|f| &**f)).filter(|f| f.study == study);
        review::page(all, filter, page, per_page)
    }

    /// What the flag publisher did since start.
    pub fn quality_counters(&self) -> &QualityCounters {
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

    /// The newest study-wide view (the empty, incomplete one before the first build).
    pub fn view(&self) -> Arc<view::View> {
        self.view.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the study-wide view.
    pub(crate) fn set_view(&self, v: view::View) {
        *self.view.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(v);
    }

    /// Rebuilds the view from the owned partitions alone, as the view task
    /// would with no other partitions in the topic (for unit tests, which
    /// run no view task).
    #[cfg(test)]
    pub(crate) fn rebuild_view_from_owned(&self) {
        self.set_view(self.view_of_owned(&mut BTreeMap::new()));
    }

    /// The view the view task builds while this instance owns every
    /// partition of the topic (as `serve` does), with `cache` as the task's
    /// copies of the owned partitions (kept between builds). Freshness says
    /// not complete: no high watermarks are read. For measuring the state's
    /// size (`examples/state_bytes.rs`) and for tests.
    pub fn view_of_owned(&self, cache: &mut OwnedCache) -> view::View {
        let owned = self.owned_parts(cache);
        let partitions: Vec<i32> = owned.iter().map(|(p, _)| *p).collect();
        let parts = owned.iter().map(|(p, part)| (*p, view::Source::Owned, part.as_ref()));
        view::View::build(parts, &partitions, &BTreeMap::new(), 0)
    }

    /// The owned partitions with their assignment generations, in partition order.
    pub fn ownership(&self) -> Vec<(i32, u64)> {
        self.lock().partitions.iter().map(|(p, s)| (*p, s.generation)).collect()
    }

    /// Copies of the owned partitions for the view: a partition whose
    /// (generation, next offset, revision) did not change since the copy in `cache`
    /// is not copied again. Holds the lock only while copying changed ones
    /// (counts only, see [`StudyState::counts_only`]).
    pub(crate) fn owned_parts(&self, cache: &mut OwnedCache) -> Vec<(i32, Arc<Part>)> {
        let g = self.lock();
        cache.retain(|p, _| g.partitions.contains_key(p));
        let mut out = Vec::with_capacity(g.partitions.len());
        for (p, ps) in &g.partitions {
            let key = (ps.generation, ps.offsets.next(), ps.revision);
            let part = match cache.get(p) {
                Some((k, part)) if *k == key => part.clone(),
                _ => {
                    let part = Arc::new(Part {
                        next_offset: ps.offsets.next(),
                        studies: ps.studies.iter().map(|(k, v)| (k.clone(), v.counts_only())).collect(),
                        fingerprints: ps
                            .studies
                            .iter()
                            .map(|(k, v)| (k.clone(), v.fingerprint_list()))
                            .collect(),
                        flagged: ps.flagged.clone(),
                        generation: ps.generation,
                    });
                    cache.insert(*p, (key, part.clone()));
                    part
                }
            };
            out.push((*p, part));
        }
        out
    }

    /// A snapshot read from the state topic as a part of the view; none
    /// when it was made with other instruments (its indexes mean nothing here).
    pub(crate) fn part_of_snapshot(&self, s: snapshot::Snapshot) -> Option<Part> {
        if s.catalog != self.fingerprint {
            return None;
        }
        let flagged = serde_json::from_slice(&s.flagged_json).unwrap_or_else(|e| {
            tracing::warn!(partition = s.partition, error = %crate::errors::chain(&e), "view: flags in the snapshot do not decode");
            Vec::new()
        });
        Some(Part {
            next_offset: s.next_offset,
            fingerprints: s.studies.iter().map(|(k, v)| (k.clone(), v.fingerprint_list())).collect(),
            studies: s.studies.into_iter().map(|(k, v)| (k, v.into_counts_only())).collect(),
            flagged,
            generation: 0,
        })
    }

    pub(super) fn set_orphaned(&self, orphaned: bool) {
        self.lock().orphaned = orphaned;
    }

    /// Ready: every owned partition has read up to its high watermark; an
    /// instance owning no partition (a spare, one whose partitions the group
    /// has not handed back yet after a crash, or one not assigned yet) is
    /// ready only while its study-wide view is complete, i.e. nothing
    /// stored is unread by anyone, and never while partitions stall unread
    /// (`orphaned`, see [`super::stall`]).
    pub fn caught_up(&self) -> bool {
        let g = self.lock();
        if g.orphaned {
            return false;
        }
        if g.partitions.is_empty() {
            drop(g);
            return self.view().freshness().complete;
        }
        g.partitions.values().all(|p| p.high_watermark.is_some_and(|h| p.offsets.next() >= h))
    }

    /// Records stored in the owned partitions but not applied yet, as of
    /// the high watermarks last read; none while an owned partition's
    /// watermark has not been read yet.
    pub(crate) fn unread(&self) -> Option<u64> {
        self.partitions().iter().map(|p| p.unread().map(|n| n as u64)).sum()
    }

    /// Per-partition progress.
    pub fn partitions(&self) -> Vec<PartitionStatus> {
        self.lock()
            .partitions
            .iter()
            .map(|(p, s)| PartitionStatus {
                partition: *p,
                next_offset: s.offsets.next(),
                high_watermark: s.high_watermark,
            })
            .collect()
    }

    /// Records processed by outcome since start.
    pub fn outcomes(&self) -> HashMap<Outcome, u64> {
        self.lock().outcomes.clone()
    }

    pub(super) fn set_high_watermark(&self, partition: i32, high: i64) {
        if let Some(p) = self.lock().partitions.get_mut(&partition) {
            p.high_watermark = Some(high);
        }
    }
}
