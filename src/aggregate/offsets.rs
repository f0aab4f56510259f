//! The offset rules of one owned partition, as a pure state machine.
//!
//! A partition's state is a function of its records up to its next offset,
//! so each record is applied exactly once whatever restarts, rebalances and
//! redeliveries happen:
//!
//! - a record at the next offset is applied, and the next offset becomes
//!   `offset + 1` (the next offset is always the last applied offset + 1);
//! - a record below the next offset was applied already (a redelivery): it
//!   is skipped;
//! - a record above the next offset means the consumer position and the
//!   state disagree: the consumer seeks back to the next offset, once; if
//!   the same gap comes back after that seek, the log really has a hole (a
//!   deleted or compacted range) and the record is applied;
//! - the offset committed to the group is only ever the next offset of a
//!   snapshot whose write the state topic acknowledged.
//!
//! The consumer loop asks [`Offsets::admit`] before every record and
//! reports acknowledged snapshot writes to [`Offsets::snapshot_acknowledged`];
//! it does the seeking and committing itself.

/// What to do with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Apply it: it is at the next offset (or past a gap already sought once).
    Apply,
    /// Skip it: its offset was applied already.
    Redelivered,
    /// Do not apply it; seek the partition back to this offset (the next one).
    SeekBack(i64),
}

/// The offsets of one owned partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offsets {
    /// Offset of the next record to apply: last applied + 1.
    next: i64,
    /// The offset a seek back was last requested to, so a real gap in the
    /// log is accepted after one try.
    seek_tried: Option<i64>,
    /// The next offset of the last snapshot written (and acknowledged) or
    /// restored: what may be committed.
    snapshot: i64,
}

impl Offsets {
    /// A partition whose state ends before `next`: restored from a snapshot
    /// taken at `next`, or empty at 0.
    pub fn starting_at(next: i64) -> Offsets {
        Offsets { next, seek_tried: None, snapshot: next }
    }

    /// Offset of the next record to apply.
    pub fn next(&self) -> i64 {
        self.next
    }

    /// The next offset as of the last snapshot written or restored.
    pub fn snapshot(&self) -> i64 {
        self.snapshot
    }

    /// Whether records were applied since the last snapshot.
    pub fn changed_since_snapshot(&self) -> bool {
        self.next != self.snapshot
    }

    /// Decides about the record at `offset` and, when it is to be applied,
    /// moves the next offset past it. The record counts as read whatever
    /// its fate in the pipeline: one that cannot be used must not be read
    /// again either.
    pub fn admit(&mut self, offset: i64) -> Admit {
        if offset < self.next {
            return Admit::Redelivered;
        }
        if offset > self.next && self.seek_tried != Some(self.next) {
            self.seek_tried = Some(self.next);
            return Admit::SeekBack(self.next);
        }
        // next offset = last applied + 1
        self.next = offset + 1;
        Admit::Apply
    }

    /// Records that the snapshot taken at `next` was acknowledged by the
    /// state topic; returns the offset to commit to the group (that same
    /// `next`: last applied + 1 as of the snapshot). Only acknowledged
    /// snapshots reach here, so a committed offset never runs ahead of
    /// saved state.
    pub fn snapshot_acknowledged(&mut self, next: i64) -> i64 {
        self.snapshot = next;
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_at_the_next_offset_is_applied_and_the_next_offset_becomes_its_offset_plus_one() {
        let mut o = Offsets::starting_at(0);
        assert_eq!(o.admit(0), Admit::Apply);
        assert_eq!(o.next(), 1);
        assert_eq!(o.admit(1), Admit::Apply);
        assert_eq!(o.next(), 2);
    }

    #[test]
    fn a_restored_partition_applies_from_the_snapshot_offset_on() {
        let mut o = Offsets::starting_at(40);
        assert_eq!(o.admit(39), Admit::Redelivered);
        assert_eq!(o.admit(40), Admit::Apply);
        assert_eq!(o.next(), 41);
    }

    #[test]
    fn records_below_the_next_offset_are_skipped_as_redelivered() {
        let mut o = Offsets::starting_at(0);
        for off in 0..5 {
            assert_eq!(o.admit(off), Admit::Apply);
        }
        for off in [0, 3, 4] {
            assert_eq!(o.admit(off), Admit::Redelivered);
        }
        assert_eq!(o.next(), 5);
    }

    #[test]
    fn a_record_past_the_next_offset_asks_for_one_seek_back_without_moving_the_next_offset() {
        let mut o = Offsets::starting_at(10);
        assert_eq!(o.admit(15), Admit::SeekBack(10));
        assert_eq!(o.next(), 10);
        // After the seek the missing records arrive and apply normally.
        assert_eq!(o.admit(10), Admit::Apply);
        assert_eq!(o.admit(11), Admit::Apply);
        assert_eq!(o.next(), 12);
    }

    #[test]
    fn the_same_gap_after_a_seek_is_accepted_as_a_hole_in_the_log() {
        let mut o = Offsets::starting_at(10);
        assert_eq!(o.admit(15), Admit::SeekBack(10));
        // The seek landed on 15 again: offsets 10..15 do not exist.
        assert_eq!(o.admit(15), Admit::Apply);
        assert_eq!(o.next(), 16);
    }

    #[test]
    fn a_new_gap_at_a_later_offset_gets_its_own_seek_back() {
        let mut o = Offsets::starting_at(10);
        assert_eq!(o.admit(15), Admit::SeekBack(10));
        assert_eq!(o.admit(15), Admit::Apply);
        assert_eq!(o.admit(20), Admit::SeekBack(16));
        assert_eq!(o.admit(16), Admit::Apply);
    }

    #[test]
    fn the_offset_to_commit_is_the_acknowledged_snapshot_offset_and_nothing_applied_after_it() {
        let mut o = Offsets::starting_at(0);
        assert!(!o.changed_since_snapshot());
        for off in 0..3 {
            o.admit(off);
        }
        assert!(o.changed_since_snapshot());
        // The consumer loop snapshots at next = 3; two more records apply
        // while the write is in flight.
        let taken = o.next();
        o.admit(3);
        o.admit(4);
        assert_eq!(o.snapshot(), 0, "nothing is committable before the acknowledgement");
        assert_eq!(o.snapshot_acknowledged(taken), 3);
        assert_eq!(o.snapshot(), 3);
        assert!(o.changed_since_snapshot(), "records 3 and 4 are not in the snapshot");
    }
}
