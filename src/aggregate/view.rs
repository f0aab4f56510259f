//! The study-wide view: what a person reads (JSON API, live page) on any
//! instance, whatever partitions it owns.
//!
//! Built like Kafka Streams' global tables: every instance reads the newest
//! snapshot of every partition from the state topic and uses its own live
//! state for the partitions it owns ([`global`](super::global) does the
//! reading, once per `aggregate.view_interval_ms`). This module is the pure
//! part: [`View::build`] merges one state per partition into one state per
//! study, gathers the flagged interviews, and says how complete and fresh the
//! result is. No I/O, no clock: the build time is passed in.
//!
//! A view is built off the aggregator's lock and shared behind an `Arc`, so
//! requests never take the aggregator's mutex and never merge anything
//! themselves (issue 15, isolation).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use serde::Serialize;

use crate::fieldwork::review::{self, FlagFilter, FlagPage, FlaggedInterview};
use crate::results::{Fingerprint, Origin, StudyState, late_duplicates};

/// Where a partition's part of the view comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// This instance owns the partition: its live state.
    Owned,
    /// Another instance owns it (or nobody): its newest snapshot in the state topic.
    Snapshot,
    /// Neither: no snapshot yet and not owned here. The view lacks its records.
    Missing,
}

/// One partition's state as the view uses it.
#[derive(Debug, Clone, Default)]
pub struct Part {
    /// Next offset the state reflects: every record below it is in (last applied + 1).
    pub next_offset: i64,
    /// Results per study (counts only, see [`StudyState::counts_only`]).
    pub studies: BTreeMap<String, StudyState>,
    /// Answer fingerprints per study (see [`StudyState::fingerprint_list`]),
    /// compared across partitions during a build.
    pub fingerprints: BTreeMap<String, Vec<(u128, Fingerprint)>>,
    /// The partition's flagged interviews (shared with the live state).
    pub flagged: Vec<Arc<FlaggedInterview>>,
    /// For an owned partition, its assignment's generation (see
    /// [`super::PartitionState::generation`]); 0 for a snapshot.
    pub generation: u64,
}

/// How complete and fresh one partition's part is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionFreshness {
    /// Responses partition.
    pub partition: i32,
    /// Where its part comes from.
    pub source: Source,
    /// Next offset reflected (every record below it is counted); none when missing.
    pub next_offset: Option<i64>,
    /// The partition's high watermark as last read; none when not read yet.
    pub high_watermark: Option<i64>,
    /// Records stored but not in the view (`high_watermark - next_offset`, at least 0);
    /// none when either is unknown.
    pub lag: Option<i64>,
}

/// How complete and fresh a whole view is: part of every answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Freshness {
    /// Every partition of the responses topic is in the view and read up to
    /// the high watermark last read: the answer is the whole study as stored.
    pub complete: bool,
    /// When the view was built (RFC 3339, milliseconds); the high watermarks
    /// were read just before.
    pub as_of: String,
    /// Records stored but not in the view, over the partitions whose high
    /// watermark is known.
    pub lag_records: i64,
    /// Per partition.
    pub partitions: Vec<PartitionFreshness>,
}

/// The study-wide view of one moment: what the parts held, shared, and
/// how complete and fresh that was when the view was made.
#[derive(Debug, Clone)]
pub struct View {
    content: Arc<Content>,
    freshness: Freshness,
}

/// What a view's parts held. Summaries (counts, no per-interview keys but
/// durations, see [`StudyState::merge_summary`]), so its size does not grow
/// with the interviews; the fingerprints of every part are compared during
/// the build and dropped after it.
#[derive(Debug)]
struct Content {
    studies: HashMap<String, StudyState>,
    /// Flagged interviews per study, in review order (see [`review::page`]).
    flagged: HashMap<String, Vec<Arc<FlaggedInterview>>>,
    /// Per partition in the view: where its part came from and its next offset.
    offsets: BTreeMap<i32, (Source, i64)>,
    /// The owned partitions the view was built with: (partition, generation).
    owned_key: Vec<(i32, u64)>,
    /// Per study, the merge of the owned partitions only: what this
    /// instance exports to Prometheus. None when every part is owned (as in
    /// `serve`): then it is `studies`.
    owned: Option<HashMap<String, StudyState>>,
    /// Per owned partition, its first copies of answers that came first in
    /// another partition and are not flagged yet: (fingerprint, origin), in
    /// origin order (see [`super::late`]).
    late: BTreeMap<i32, Vec<(u128, Origin)>>,
}

impl Default for View {
    /// The view before the first build: nothing, incomplete.
    fn default() -> Self {
        View::build(std::iter::empty(), &[], &BTreeMap::new(), 0)
    }
}

impl View {
    /// Merges the parts into a view. `partitions` lists the responses
    /// topic's partitions (a part for another partition is ignored), `high`
    /// their high watermarks as last read, `built_at_ms` the build time
    /// (Unix milliseconds). For a partition given twice, the first part
    /// wins: pass owned partitions before snapshots.
    pub fn build<'a>(
        parts: impl IntoIterator<Item = (i32, Source, &'a Part)>,
        partitions: &[i32],
        high: &BTreeMap<i32, i64>,
        built_at_ms: i64,
    ) -> View {
        let mut chosen: BTreeMap<i32, (Source, &Part)> = BTreeMap::new();
        for (p, source, part) in parts {
            if partitions.contains(&p) {
                chosen.entry(p).or_insert((source, part));
            }
        }
        let all_owned = chosen.values().all(|(source, _)| *source == Source::Owned);
        let mut studies: HashMap<String, StudyState> = HashMap::new();
        let mut flagged: HashMap<String, Vec<Arc<FlaggedInterview>>> = HashMap::new();
        let mut offsets = BTreeMap::new();
        let mut owned: HashMap<String, StudyState> = HashMap::new();
        let mut owned_key = Vec::new();
        for (p, (source, part)) in &chosen {
            offsets.insert(*p, (*source, part.next_offset));
            for (id, s) in &part.studies {
                studies.entry(id.clone()).or_default().merge_summary(s);
                if *source == Source::Owned && !all_owned {
                    owned.entry(id.clone()).or_default().merge_summary(s);
                }
            }
            if *source == Source::Owned {
                owned_key.push((*p, part.generation));
            }
            for f in &part.flagged {
                flagged.entry(f.study.clone()).or_default().push(f.clone());
            }
        }
        let late = across_partitions(&chosen, &mut studies);
        for list in flagged.values_mut() {
            sort_for_review(list);
        }
        let content =
            Content { studies, flagged, offsets, owned_key, owned: (!all_owned).then_some(owned), late };
        View { freshness: content.freshness(partitions, high, built_at_ms), content: Arc::new(content) }
    }

    /// This view's content as of a later moment, when no part changed
    /// since it was built: only the freshness is new (the high watermarks
    /// may have moved).
    pub fn refreshed(&self, partitions: &[i32], high: &BTreeMap<i32, i64>, at_ms: i64) -> View {
        View { content: self.content.clone(), freshness: self.content.freshness(partitions, high, at_ms) }
    }

    /// The study's state over every partition in the view (empty when none has any).
    pub fn study(&self, id: &str) -> StudyStateRef<'_> {
        StudyStateRef(self.content.studies.get(id))
    }

    /// The study's state over the partitions this instance owned when the
    /// view was built, if it still owns exactly those (`ownership`: the
    /// (partition, generation) pairs owned now, in partition order); none
    /// after a rebalance, until the next build.
    pub fn owned_study(&self, id: &str, ownership: &[(i32, u64)]) -> Option<StudyStateRef<'_>> {
        let owned = self.content.owned.as_ref().unwrap_or(&self.content.studies);
        (self.content.owned_key == ownership).then(|| StudyStateRef(owned.get(id)))
    }

    /// Per owned partition, the first copies of answers to flag late (see
    /// [`super::late`]): (fingerprint, origin), in origin order.
    pub(crate) fn late_candidates(&self) -> &BTreeMap<i32, Vec<(u128, Origin)>> {
        &self.content.late
    }

    /// How complete and fresh the view is.
    pub fn freshness(&self) -> &Freshness {
        &self.freshness
    }

    /// Whether the view includes `partition` up to `offset`: the record at
    /// `offset` is counted (the partition's next offset is past it). For
    /// read-your-writes: a client that got `(partition, offset)` for its
    /// write waits until this is true.
    pub fn includes(&self, partition: i32, offset: i64) -> bool {
        self.content.offsets.get(&partition).is_some_and(|&(_, next)| next > offset)
    }

    /// One page of the study's flagged interviews, over every partition in the view.
    pub fn flags(&self, study: &str, filter: &FlagFilter, page: usize, per_page: usize) -> FlagPage {
        let all = self.content.flagged.get(study).map(|v| v.as_slice()).unwrap_or_default();
        review::page(all.iter().map(|f| &**f), filter, page, per_page)
    }
}

impl Content {
    /// How complete and fresh this content is against the topic's
    /// `partitions` and their high watermarks `high`, at `at_ms`.
    fn freshness(&self, partitions: &[i32], high: &BTreeMap<i32, i64>, at_ms: i64) -> Freshness {
        let mut sorted: Vec<i32> = partitions.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let per_partition: Vec<PartitionFreshness> = sorted
            .iter()
            .map(|&p| {
                let (source, next_offset) =
                    self.offsets.get(&p).map_or((Source::Missing, None), |(s, next)| (*s, Some(*next)));
                let high_watermark = high.get(&p).copied();
                let lag = match (next_offset, high_watermark) {
                    (Some(n), Some(h)) => Some((h - n).max(0)),
                    _ => None,
                };
                PartitionFreshness { partition: p, source, next_offset, high_watermark, lag }
            })
            .collect();
        let complete = !per_partition.is_empty()
            && per_partition.iter().all(|f| f.source != Source::Missing && f.lag == Some(0));
        let lag_records = per_partition.iter().filter_map(|f| f.lag).sum();
        let as_of = chrono::DateTime::from_timestamp_millis(at_ms)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        Freshness { complete, as_of, lag_records, partitions: per_partition }
    }
}

/// A study's merged state in a view, or the empty state.
#[derive(Debug, Clone, Copy)]
pub struct StudyStateRef<'a>(Option<&'a StudyState>);

impl std::ops::Deref for StudyStateRef<'_> {
    type Target = StudyState;

    fn deref(&self) -> &StudyState {
        static EMPTY: std::sync::OnceLock<StudyState> = std::sync::OnceLock::new();
        self.0.unwrap_or_else(|| EMPTY.get_or_init(StudyState::new))
    }
}

/// A part holding fingerprints of a study: partition, source, fingerprints.
type Holder<'a> = (i32, Source, &'a [(u128, Fingerprint)]);

/// Compares the answer fingerprints of every part, study by study: adds to
/// each study's merged summary the possible duplicates whose copies sit in
/// different partitions (a fingerprint in k partitions adds k - 1), and
/// returns per owned partition its first copies that are not the study-wide
/// first (the smallest [`Origin`]) and not flagged yet. The index it builds
/// lives only for the call.
fn across_partitions(
    chosen: &BTreeMap<i32, (Source, &Part)>,
    studies: &mut HashMap<String, StudyState>,
) -> BTreeMap<i32, Vec<(u128, Origin)>> {
    let mut late: BTreeMap<i32, Vec<(u128, Origin)>> = BTreeMap::new();
    let ids: BTreeSet<&String> = chosen.values().flat_map(|(_, part)| part.fingerprints.keys()).collect();
    for id in ids {
        let holders: Vec<Holder<'_>> = chosen
            .iter()
            .filter_map(|(p, (source, part))| part.fingerprints.get(id).map(|s| (*p, *source, s.as_slice())))
            .filter(|(_, _, s)| !s.is_empty())
            .collect();
        if holders.len() < 2 {
            continue;
        }
        let capacity = holders.iter().map(|(_, _, s)| s.len()).sum();
        // Study-wide first copy and number of partitions, per fingerprint.
        let mut index: HashMap<u128, (Origin, u32), BuildHasherDefault<KeyHasher>> =
            HashMap::with_capacity_and_hasher(capacity, BuildHasherDefault::default());
        for (_, _, s) in &holders {
            for (k, f) in s.iter().filter(|(_, f)| f.count > 0) {
                index
                    .entry(*k)
                    .and_modify(|(first, n)| {
                        *first = (*first).min(f.first);
                        *n += 1;
                    })
                    .or_insert((f.first, 1));
            }
        }
        let across: u64 = index.values().map(|(_, n)| u64::from(n - 1)).sum();
        if let Some(st) = studies.get_mut(id) {
            st.add_folded_duplicates(across);
        }
        for (p, source, s) in &holders {
            if *source == Source::Owned {
                let found = late_duplicates(s, |k| index.get(&k).map(|(first, _)| *first));
                if !found.is_empty() {
                    late.entry(*p).or_default().extend(found);
                }
            }
        }
    }
    for list in late.values_mut() {
        list.sort_unstable_by_key(|(_, o)| *o);
    }
    late
}

/// A hasher for keys that are already hashes (xxh3-128 of the answers):
/// folds the two halves instead of hashing again.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = (n as u64) ^ ((n >> 64) as u64);
    }
}

/// Sorts flags in the order [`review::page`] lists them, once per build, so
/// that paging a request sorts an already sorted list.
fn sort_for_review(list: &mut [Arc<FlaggedInterview>]) {
    list.sort_by(|a, b| {
        a.received_at
            .cmp(&b.received_at)
            .then_with(|| a.submission_id.cmp(&b.submission_id))
            .then(a.source_partition.cmp(&b.source_partition))
            .then(a.source_offset.cmp(&b.source_offset))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instrument::Catalog;
    use crate::quality::check;
    use crate::validate::{Limits, Submission, validate};

    const STUDY: &str = r#"
study: t
dimensions:
  - {name: region, source: attribute, values: [{code: west}, {code: east}]}
reporting: {min_cell_size: 1, straightlining_min_run: 0, fingerprint_min_answers: 2}
forms:
  - id: fa
    items:
      - {id: q1, code: know, kind: scale, min: 1, max: 5, labels: {1: a, 5: b}}
      - {id: q2, code: tf, kind: yes_no}
"#;

    fn catalog() -> Catalog {
        let mut c = Catalog::default();
        c.insert(crate::instrument::Study::from_yaml(STUDY).expect("valid"));
        c
    }

    /// A part holding the given interviews, applied in order.
    fn part(cat: &Catalog, next_offset: i64, lines: &[serde_json::Value]) -> Part {
        let mut studies: BTreeMap<String, StudyState> = BTreeMap::new();
        for line in lines {
            let sub: Submission = serde_json::from_value(line.clone()).expect("submission");
            let study = cat.get(&sub.study).expect("study");
            let rec = validate(cat, &sub, &Limits::default()).expect("valid");
            let checked = check(study, &rec);
            studies.entry(sub.study.clone()).or_default().apply(study, &rec, &checked);
        }
        let fingerprints = studies.iter().map(|(k, v)| (k.clone(), v.fingerprint_list())).collect();
        let studies = studies.into_iter().map(|(k, v)| (k, v.counts_only())).collect();
        Part { next_offset, studies, fingerprints, flagged: Vec::new(), generation: 1 }
    }

    fn interview(respondent: &str, submission: &str, answer: i64) -> serde_json::Value {
        serde_json::json!({
            "study": "t", "form": "fa", "respondent_id": respondent, "submission_id": submission,
            "attributes": {"region": if answer % 2 == 0 { "west" } else { "east" }},
            "answers": {"q1": answer, "q2": "yes"},
        })
    }

    #[test]
    fn merging_the_parts_of_all_partitions_gives_the_state_of_the_whole_stream() {
        let cat = catalog();
        let study_id = "t".to_string();
        let p0 = part(&cat, 2, &[interview("r1", "s1", 1), interview("r2", "s2", 2)]);
        let p1 = part(&cat, 1, &[interview("r3", "s3", 3)]);
        let all =
            part(&cat, 3, &[interview("r1", "s1", 1), interview("r2", "s2", 2), interview("r3", "s3", 3)]);
        let high = BTreeMap::from([(0, 2), (1, 1)]);
        let view = View::build([(0, Source::Owned, &p0), (1, Source::Snapshot, &p1)], &[0, 1], &high, 0);
        assert_eq!(view.study(&study_id).interviews(), 3);
        assert_eq!(view.study(&study_id).cells, all.studies[&study_id].cells);
        assert!(view.freshness().complete);
        assert_eq!(view.freshness().lag_records, 0);
    }

    #[test]
    fn a_view_of_summaries_counts_duplicates_cases_and_medians_as_the_whole_stream_does() {
        let cat = catalog();
        // Answers 1..=3 repeat across and within partitions (each value of
        // q1 is one fingerprint); durations make medians.
        let lines: Vec<serde_json::Value> = (0..30)
            .map(|i| {
                let mut v = interview(&format!("r{i}"), &format!("s{i}"), 1 + i % 3);
                let secs = 60 + (i * 37) % 100;
                v["started_at"] = serde_json::json!("2026-01-01T00:00:00Z");
                v["completed_at"] =
                    serde_json::json!(format!("2026-01-01T00:{:02}:{:02}Z", secs / 60, secs % 60));
                v
            })
            .collect();
        let parts: Vec<Part> = (0..3)
            .map(|p| {
                let mine: Vec<serde_json::Value> = lines
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % 4 % 3 == p)
                    .map(|(_, l)| l.clone())
                    .collect();
                part(&cat, mine.len() as i64, &mine)
            })
            .collect();
        let whole = part(&cat, 30, &lines);
        let whole = &whole.studies["t"];
        let view = View::build(
            parts.iter().enumerate().map(|(p, part)| (p as i32, Source::Owned, part)),
            &[0, 1, 2],
            &BTreeMap::new(),
            0,
        );
        let merged = view.study("t");
        assert_eq!(merged.possible_duplicates(), whole.possible_duplicates());
        assert_eq!(merged.possible_duplicates(), 27);
        assert_eq!(merged.fieldwork.cases(), 30);
        assert_eq!(merged.interviews(), 30);
        assert_eq!(merged.cells, whole.cells);
        assert_eq!(merged.fieldwork.durations, whole.fieldwork.durations);
        // The view keeps no per-interview keys.
        assert!(merged.fingerprints().is_empty());
        assert_eq!(merged.submissions_seen(), 0);
        // The owned merge is the same state when every part is owned.
        assert_eq!(
            view.owned_study("t", &[(0, 1), (1, 1), (2, 1)]).map(|s| s.possible_duplicates()),
            Some(27)
        );
    }

    #[test]
    fn a_refreshed_view_keeps_its_content_and_reads_the_new_high_watermarks() {
        let cat = catalog();
        let p0 = part(&cat, 2, &[interview("r1", "s1", 1), interview("r2", "s2", 2)]);
        let view = View::build([(0, Source::Owned, &p0)], &[0], &BTreeMap::from([(0, 2)]), 0);
        assert!(view.freshness().complete);
        let later = view.refreshed(&[0], &BTreeMap::from([(0, 5)]), 1_000);
        assert_eq!(later.study("t").interviews(), 2);
        assert!(!later.freshness().complete);
        assert_eq!(later.freshness().lag_records, 3);
        assert_eq!(later.freshness().as_of, "1970-01-01T00:00:01.000Z");
        // A partition added to the topic since is missing.
        let wider = view.refreshed(&[0, 1], &BTreeMap::from([(0, 2)]), 0);
        assert_eq!(wider.freshness().partitions[1].source, Source::Missing);
    }

    #[test]
    fn identical_answers_in_two_partitions_count_as_one_possible_duplicate_in_the_view() {
        let cat = catalog();
        let study_id = "t".to_string();
        let p0 = part(&cat, 1, &[interview("r1", "s1", 2)]);
        let p1 = part(&cat, 1, &[interview("r2", "s2", 2)]);
        assert_eq!(p0.studies[&study_id].possible_duplicates(), 0);
        let view =
            View::build([(0, Source::Owned, &p0), (1, Source::Owned, &p1)], &[0, 1], &BTreeMap::new(), 0);
        assert_eq!(view.study(&study_id).possible_duplicates(), 1);
    }

    #[test]
    fn an_owned_partition_wins_over_its_snapshot_and_unknown_partitions_are_ignored() {
        let cat = catalog();
        let study_id = "t".to_string();
        let live = part(&cat, 2, &[interview("r1", "s1", 1), interview("r2", "s2", 2)]);
        let stale = part(&cat, 1, &[interview("r1", "s1", 1)]);
        let other = part(&cat, 1, &[interview("r9", "s9", 1)]);
        let view = View::build(
            [(0, Source::Owned, &live), (0, Source::Snapshot, &stale), (7, Source::Snapshot, &other)],
            &[0],
            &BTreeMap::from([(0, 2)]),
            0,
        );
        assert_eq!(view.study(&study_id).interviews(), 2);
        assert_eq!(view.freshness().partitions.len(), 1);
        assert_eq!(view.freshness().partitions[0].source, Source::Owned);
    }

    #[test]
    fn the_owned_merge_is_offered_only_while_the_instance_owns_the_same_partitions() {
        let cat = catalog();
        let p0 = part(&cat, 1, &[interview("r1", "s1", 1)]);
        let p1 = part(&cat, 1, &[interview("r2", "s2", 2)]);
        let view =
            View::build([(0, Source::Owned, &p0), (1, Source::Snapshot, &p1)], &[0, 1], &BTreeMap::new(), 0);
        assert_eq!(view.study("t").interviews(), 2);
        let owned = view.owned_study("t", &[(0, 1)]).expect("same ownership");
        assert_eq!(owned.interviews(), 1);
        // Partition 0 reassigned (new generation), or partition 1 gained: not offered.
        assert!(view.owned_study("t", &[(0, 2)]).is_none());
        assert!(view.owned_study("t", &[(0, 1), (1, 3)]).is_none());
    }

    #[test]
    fn a_view_missing_a_partition_or_behind_its_high_watermark_is_not_complete() {
        let cat = catalog();
        let p0 = part(&cat, 2, &[interview("r1", "s1", 1), interview("r2", "s2", 2)]);
        // Partition 1 has neither an owner here nor a snapshot.
        let high = BTreeMap::from([(0, 2), (1, 5)]);
        let view = View::build([(0, Source::Owned, &p0)], &[0, 1], &high, 0);
        let f = view.freshness();
        assert!(!f.complete);
        assert_eq!(f.partitions[1].source, Source::Missing);
        assert_eq!(f.partitions[1].next_offset, None);
        assert_eq!(f.partitions[1].lag, None);
        // Partition 0 behind its high watermark by 3 records.
        let high = BTreeMap::from([(0, 5)]);
        let view = View::build([(0, Source::Snapshot, &p0)], &[0], &high, 0);
        assert!(!view.freshness().complete);
        assert_eq!(view.freshness().lag_records, 3);
        assert_eq!(view.freshness().partitions[0].lag, Some(3));
        // An unknown high watermark is not complete either.
        let view = View::build([(0, Source::Owned, &p0)], &[0], &BTreeMap::new(), 0);
        assert!(!view.freshness().complete);
        // Nor is the empty view before the first build.
        assert!(!View::default().freshness().complete);
    }

    #[test]
    fn the_view_says_when_it_was_built_and_which_offsets_it_includes() {
        let cat = catalog();
        let p0 = part(&cat, 2, &[interview("r1", "s1", 1), interview("r2", "s2", 2)]);
        let view = View::build([(0, Source::Owned, &p0)], &[0, 1], &BTreeMap::new(), 1_700_000_000_123);
        assert_eq!(view.freshness().as_of, "2023-11-14T22:13:20.123Z");
        assert!(view.includes(0, 0));
        assert!(view.includes(0, 1));
        assert!(!view.includes(0, 2));
        assert!(!view.includes(1, 0));
        assert_eq!(view.freshness().partitions[0].next_offset, Some(2));
    }

    #[test]
    fn flags_of_every_partition_are_listed_in_review_order() {
        let flag = |p: i32, o: i64, at: &str| FlaggedInterview {
            study: "s".into(),
            form: "f".into(),
            submission_id: format!("sub-{p}-{o}"),
            respondent_key: "k".into(),
            interviewer: "unknown".into(),
            received_at: Some(at.into()),
            checks: Vec::new(),
            source_partition: p,
            source_offset: o,
        };
        let p0 = Part {
            next_offset: 2,
            studies: BTreeMap::new(),
            fingerprints: BTreeMap::new(),
            flagged: vec![Arc::new(flag(0, 0, "b")), Arc::new(flag(0, 1, "d"))],
            generation: 0,
        };
        let p1 = Part {
            next_offset: 1,
            studies: BTreeMap::new(),
            fingerprints: BTreeMap::new(),
            flagged: vec![Arc::new(flag(1, 0, "a")), Arc::new(flag(1, 1, "c"))],
            generation: 0,
        };
        let view =
            View::build([(0, Source::Owned, &p0), (1, Source::Snapshot, &p1)], &[0, 1], &BTreeMap::new(), 0);
        let page = view.flags("s", &FlagFilter::default(), 1, 10);
        assert_eq!(page.total, 4);
        let order: Vec<&str> = page.flags.iter().filter_map(|f| f.received_at.as_deref()).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
        assert_eq!(view.flags("other", &FlagFilter::default(), 1, 10).total, 0);
    }
}
