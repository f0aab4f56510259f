//! Possible duplicates across partitions, flagged exactly (issue 10, item 2):
//! a "global table join" on the study-wide view.
//!
//! Within a partition the first copy of some answers stays unflagged and
//! every later one is flagged when applied. Across partitions the
//! study-wide first copy is the smallest [`Origin`] (received at, then
//! partition, then offset) over the partitions' first copies; the view
//! ([`super::view`]) finds that minimum per fingerprint when it compares the
//! partitions. Each build ([`super::view::View::late_candidates`]) lists the owned
//! partitions' first copies that are not the study-wide first and not yet
//! flagged; [`read_records`] reads them back from the responses topic (the
//! state keeps only the fingerprint's origin, not the interview) and
//! [`LiveState::late_flag`] flags each once: superseded (kept in the
//! snapshot), counted, listed and sent to the quality topic. The minimum can
//! only fall as more records are seen, so every copy but the study-wide
//! first ends up flagged exactly once: the possible-duplicate count equals
//! the flags.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::LiveState;
use super::flag_publisher::QualityRecord;
use super::record::received_at_of;
use crate::fieldwork::review::{FlaggedCheck, FlaggedInterview};
use crate::proto::envelope;
use crate::quality::{Check, check};
use crate::results::{Origin, StudyState};
use crate::validate::validate_in;

/// Reads the records at `offsets` (sorted) of `partition` of `topic`:
/// offset -> payload. Blocking, bounded by `timeout`; what is not read in
/// time is left out (the next build tries again). One pass from the first
/// offset (tansu serves a fetch to the end of the partition whatever the
/// size limits: fine for the few records this reads).
pub(crate) fn read_records(
    reader: &BaseConsumer,
    topic: &str,
    partition: i32,
    offsets: &[i64],
    timeout: Duration,
) -> BTreeMap<i64, Vec<u8>> {
    let mut out = BTreeMap::new();
    let (Some(&from), Some(&last)) = (offsets.first(), offsets.last()) else {
        return out;
    };
    let mut tpl = TopicPartitionList::new();
    if let Err(e) =
        tpl.add_partition_offset(topic, partition, Offset::Offset(from)).and_then(|_| reader.assign(&tpl))
    {
        tracing::warn!(partition, error = %crate::errors::chain(&e), "late flags: cannot read the responses topic");
        return out;
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(m)) if m.partition() == partition => {
                if offsets.binary_search(&m.offset()).is_ok()
                    && let Some(payload) = m.payload()
                {
                    out.insert(m.offset(), payload.to_vec());
                }
                if m.offset() >= last {
                    break;
                }
            }
            Some(Err(e)) => {
                tracing::warn!(partition, error = %crate::errors::chain(&e), "late flags: read failed");
                break;
            }
            _ => {}
        }
    }
    let _ = reader.unassign();
    out
}

impl LiveState {
    /// Flags the record `payload` at `origin` (an owned partition's first
    /// copy of answer fingerprint `hash`) as a possible duplicate after the
    /// fact, because a copy in another partition came first study-wide (see
    /// [`crate::results::late_duplicates`]): marks the fingerprint superseded,
    /// counts the flag, adds the check to the partition's flagged interview
    /// (or lists it) and returns the quality record to publish. None when
    /// nothing is to do: the partition is not owned (any more), the
    /// fingerprint was superseded already, or the record is not that copy.
    pub(crate) fn late_flag(&self, hash: u128, origin: Origin, payload: &[u8]) -> Option<QualityRecord> {
        let envelope = envelope::decode(payload).ok()?;
        let received_at =
            received_at_of(envelope.received_at.as_ref()).and_then(crate::pipeline::received_at_text);
        let sub = envelope.submission?;
        let study = self.catalog().get(&sub.study)?;
        // Validated and checked again (pure) off the lock, to name the form
        // and interviewer as the flag at apply would.
        let rec = validate_in(study, &sub, self.limits()).ok()?;
        let checked = check(study, &rec);
        if StudyState::fingerprint_of(study, &rec, &checked) != Some(hash) {
            tracing::warn!(
                partition = origin.partition,
                offset = origin.offset,
                "late flag: the record has other answers; skipped"
            );
            return None;
        }
        let mut g = self.lock();
        let ps = g.partitions.get_mut(&origin.partition)?;
        let state = ps.studies.get_mut(study.id())?;
        if state.fingerprints().get(&hash).map(|f| f.first) != Some(origin)
            || !state.supersede(hash, rec.form)
        {
            return None;
        }
        ps.revision += 1;
        let dup = FlaggedCheck { check: Check::PossibleDuplicate, item: None, code: None, message: None };
        let at = ps.flagged.partition_point(|f| f.source_offset < origin.offset);
        let flagged = match ps.flagged.get_mut(at) {
            Some(f) if f.source_offset == origin.offset && f.study == study.id() => {
                let f = Arc::make_mut(f);
                // Where `pipeline::raised` puts it: after the record's own
                // checks, before speeding.
                let i = f.checks.iter().position(|c| c.check == Check::Speeder).unwrap_or(f.checks.len());
                f.checks.insert(i, dup);
                f.clone()
            }
            _ => {
                let f = FlaggedInterview {
                    study: study.id().to_string(),
                    form: study.forms.get(rec.form).map(|f| f.id.clone()).unwrap_or_default(),
                    submission_id: rec.submission_id.clone(),
                    respondent_key: rec.respondent.clone(),
                    interviewer: state.fieldwork.interviewer_label_of(study, rec.interviewer.as_deref()),
                    received_at,
                    checks: vec![dup],
                    source_partition: origin.partition,
                    source_offset: origin.offset,
                };
                ps.flagged.insert(at, Arc::new(f.clone()));
                f
            }
        };
        Some(QualityRecord { generation: ps.generation, flagged, late: true })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::aggregate::test_study::live;
    use crate::aggregate::view::{Source, View};

    /// An envelope of an interview received at `at_secs`.
    fn envelope(respondent: &str, submission: &str, answer: i64, at_secs: i64) -> Vec<u8> {
        let answers = serde_json::json!({"q1": answer, "q2": "yes"});
        crate::aggregate::test_study::envelope("t", respondent, submission, answers, at_secs)
    }

    /// The view over the owned partitions, as the view task builds it.
    fn view(shared: &LiveState) -> View {
        let owned = shared.owned_parts(&mut BTreeMap::new());
        let partitions: Vec<i32> = owned.iter().map(|(p, _)| *p).collect();
        let parts = owned.iter().map(|(p, part)| (*p, Source::Owned, part.as_ref()));
        View::build(parts, &partitions, &BTreeMap::new(), 0)
    }

    #[test]
    fn the_first_copy_in_a_partition_is_flagged_late_when_another_partition_had_it_earlier() {
        let shared = live();
        shared.assign(0, None);
        shared.assign(1, None);
        // Partition 1 received the answers first (t=100); partition 0's copy
        // (t=200) is the first in its partition, so unflagged at apply.
        let early = envelope("r1", "s1", 3, 100);
        let late_copy = envelope("r2", "s2", 3, 200);
        let again = envelope("r3", "s3", 3, 300);
        assert!(shared.apply_record(1, 0, Some(&early)).1.is_none());
        assert!(shared.apply_record(0, 0, Some(&late_copy)).1.is_none());
        assert!(shared.apply_record(0, 1, Some(&envelope("r4", "s4", 1, 250))).1.is_none());
        let flagged_now = shared.apply_record(0, 2, Some(&again)).1.expect("a later copy in the partition");
        assert_eq!(flagged_now.flagged.checks[0].check, Check::PossibleDuplicate);
        for (p, next) in [(0, 3), (1, 1)] {
            shared.snapshots(true, Some(&[p][..]));
            shared.snapshot_written(p, next);
        }

        let v = view(&shared);
        assert_eq!(v.study("t").possible_duplicates(), 2, "three copies");
        let candidates = v.late_candidates().clone();
        let (hash, origin) = match candidates.get(&0).map(Vec::as_slice) {
            Some([one]) => *one,
            other => panic!("one candidate in partition 0: {other:?}"),
        };
        assert_eq!(origin, Origin { received_at_ms: 200_000, partition: 0, offset: 0 });
        assert!(!candidates.contains_key(&1), "the study-wide first stays unflagged");

        let record = shared.late_flag(hash, origin, &late_copy).expect("flagged late");
        assert!(record.late);
        assert_eq!(record.flagged.submission_id, "s2");
        assert_eq!((record.flagged.source_partition, record.flagged.source_offset), (0, 0));
        assert_eq!(record.flagged.received_at.as_deref(), Some("1970-01-01T00:03:20.000Z"));
        assert_eq!(record.flagged.checks.len(), 1);
        assert!(shared.late_flag(hash, origin, &late_copy).is_none(), "flagged once");
        // A record that is not the first copy is refused.
        assert!(shared.late_flag(hash, origin, &envelope("r9", "s9", 4, 200)).is_none());

        // The partition's flagged list stays in offset order; the count equals the flags.
        let v = view(&shared);
        assert!(v.late_candidates().is_empty());
        let study = v.study("t");
        assert_eq!(study.possible_duplicate_flags(), 2);
        assert_eq!(study.possible_duplicates(), study.possible_duplicate_flags());
        let page = shared.flags("t", &Default::default(), 1, 10);
        let mut offsets: Vec<(i32, i64)> =
            page.flags.iter().map(|f| (f.source_partition, f.source_offset)).collect();
        offsets.sort_unstable();
        assert_eq!(offsets, [(0, 0), (0, 2)]);

        // The late flag changed the partition without a record: its next
        // snapshot is due, and holds the superseded first copy.
        let snaps = shared.snapshots(true, None);
        assert_eq!(snaps.iter().map(|s| s.partition).collect::<Vec<_>>(), [0]);
        let decoded = crate::aggregate::snapshot::decode(&crate::aggregate::snapshot::encode(&snaps[0]))
            .expect("decodes");
        let restored = live();
        restored.assign(0, Some(decoded));
        restored.assign(1, None);
        assert_eq!(restored.apply_record(1, 0, Some(&early)).0, crate::aggregate::Outcome::Applied);
        let v = view(&restored);
        assert!(v.late_candidates().is_empty(), "a restored superseded copy is not flagged again");
        assert_eq!(v.study("t").possible_duplicate_flags(), 2);
    }

    #[test]
    fn an_encoded_snapshot_made_from_the_live_state_holds_what_a_copy_holds() {
        let shared = live();
        shared.assign(0, None);
        shared.assign(1, None);
        for (i, p, offset) in [(0, 0, 0), (1, 0, 1), (2, 1, 0), (3, 0, 2)] {
            let record = envelope(&format!("r{i}"), &format!("s{i}"), 2, 100);
            assert_eq!(shared.apply_record(p, offset, Some(&record)).0, crate::aggregate::Outcome::Applied);
        }
        assert_eq!(shared.snapshots_due(true, None), [0, 1]);
        assert_eq!(shared.snapshots_due(true, Some(&[1][..])), [1]);
        let copies = shared.snapshots(false, None);
        for copy in copies {
            let (next, bytes) = shared.encoded_snapshot(copy.partition).expect("owned");
            assert_eq!(next, copy.next_offset);
            assert_eq!(crate::aggregate::snapshot::decode(&bytes).expect("decodes"), copy);
        }
        assert!(shared.encoded_snapshot(7).is_none());
    }

    #[test]
    fn a_late_flag_joins_the_checks_the_interview_raised_at_apply() {
        let shared = live();
        shared.assign(0, None);
        shared.assign(1, None);
        // The copy raised other checks at apply (planted here directly):
        // the late check goes where `pipeline::raised` puts it.
        let early = envelope("r1", "s1", 2, 100);
        let copy = envelope("r2", "s2", 2, 200);
        shared.apply_record(1, 0, Some(&early));
        shared.apply_record(0, 0, Some(&copy));
        {
            let mut g = shared.lock();
            let ps = g.partitions.get_mut(&0).expect("owned");
            ps.flagged.push(Arc::new(FlaggedInterview {
                study: "t".into(),
                form: "fa".into(),
                submission_id: "s2".into(),
                respondent_key: "r2".into(),
                interviewer: "unknown".into(),
                received_at: None,
                checks: vec![
                    FlaggedCheck { check: Check::Straightlining, item: None, code: None, message: None },
                    FlaggedCheck { check: Check::Speeder, item: None, code: None, message: None },
                ],
                source_partition: 0,
                source_offset: 0,
            }));
        }
        let v = view(&shared);
        let (hash, origin) = v.late_candidates()[&0][0];
        let record = shared.late_flag(hash, origin, &copy).expect("flagged late");
        let checks: Vec<Check> = record.flagged.checks.iter().map(|c| c.check).collect();
        assert_eq!(checks, [Check::Straightlining, Check::PossibleDuplicate, Check::Speeder]);
        assert_eq!(shared.flags("t", &Default::default(), 1, 10).total, 1, "one entry per interview");
    }

    #[test]
    fn fingerprints_of_a_format_4_state_read_as_first_copies_never_flagged_late() {
        let shared = live();
        shared.assign(0, None);
        shared.apply_record(0, 0, Some(&envelope("r1", "s1", 2, 100)));
        let snap = shared.snapshots(false, None).remove(0);
        let mut wire = snap.studies["t"].to_wire();
        assert!(!wire.fingerprint_firsts.is_empty());
        wire.fingerprint_firsts.clear();
        let old = StudyState::from_wire(wire).expect("format 4 reads");
        let f = old.fingerprints().values().next().expect("one fingerprint");
        assert_eq!((f.count, f.superseded), (1, false));
        assert_eq!(f.first.received_at_ms, i64::MIN, "earliest possible");
        let mut wire = snap.studies["t"].to_wire();
        wire.fingerprint_firsts.pop();
        assert!(StudyState::from_wire(wire).is_err(), "a partial entry is refused");
    }
}
