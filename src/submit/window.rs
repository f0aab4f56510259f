//! The records `submit` holds: sent on the current stream and waiting for
//! their result, found again by the result's stream index. Pure
//! bookkeeping, no I/O.

use std::collections::VecDeque;

use bytes::Bytes;

/// One record read from the input and not settled yet (stored, rejected
/// or given up): its line number and its encoded `SubmitRequest`, which
/// every send reuses (a `Bytes` clone shares the buffer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pending {
    /// 1-based line number in the input.
    pub line: usize,
    /// The protobuf encoding of the record's `SubmitRequest`.
    pub bytes: Bytes,
}

/// Records sent on one stream, in send order. The server numbers the
/// records of a stream from 0 in the order it reads them, which is the
/// order they were sent; the slot of index `i` is `slots[i - base]`.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    /// Stream index of `slots[0]`.
    base: u64,
    /// One per sent record since `base`; `None` once its result came.
    slots: VecDeque<Option<Pending>>,
    /// The `Some` slots.
    waiting: usize,
}

impl InFlight {
    /// Records a send; the record's stream index is the number of records
    /// sent on this stream before it.
    pub fn push(&mut self, p: Pending) {
        self.slots.push_back(Some(p));
        self.waiting += 1;
    }

    /// The record a result with stream index `index` is for; `None` for an
    /// index never sent or already answered.
    pub fn take(&mut self, index: u64) -> Option<Pending> {
        let pos = usize::try_from(index.checked_sub(self.base)?).ok()?;
        let p = self.slots.get_mut(pos)?.take()?;
        self.waiting -= 1;
        // Answered slots at the front are forgotten, so the deque holds
        // at most the records from the oldest unanswered one on.
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.base += 1;
        }
        Some(p)
    }

    /// Sent records without a result.
    pub fn len(&self) -> usize {
        self.waiting
    }

    /// Whether every sent record has its result.
    pub fn is_empty(&self) -> bool {
        self.waiting == 0
    }

    /// The records without a result, in send order, for the next stream
    /// (whose indexes start again at 0).
    pub fn drain(&mut self) -> Vec<Pending> {
        let left = self.slots.drain(..).flatten().collect();
        *self = InFlight::default();
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: usize) -> Pending {
        Pending { line, bytes: Bytes::from(vec![line as u8]) }
    }

    #[test]
    fn results_in_send_order_find_their_records() {
        let mut f = InFlight::default();
        for line in 1..=3 {
            f.push(p(line));
        }
        assert_eq!(f.len(), 3);
        assert_eq!(f.take(0), Some(p(1)));
        assert_eq!(f.take(1), Some(p(2)));
        f.push(p(4));
        assert_eq!(f.take(2), Some(p(3)));
        assert_eq!(f.take(3), Some(p(4)));
        assert!(f.is_empty());
    }

    #[test]
    fn a_result_out_of_order_or_repeated_or_unknown_takes_nothing_twice() {
        let mut f = InFlight::default();
        for line in 1..=3 {
            f.push(p(line));
        }
        assert_eq!(f.take(1), Some(p(2)));
        assert_eq!(f.take(1), None, "repeated");
        assert_eq!(f.take(7), None, "never sent");
        assert_eq!(f.take(0), Some(p(1)));
        assert_eq!(f.take(0), None, "answered, and forgotten");
        assert_eq!(f.len(), 1);
        assert_eq!(f.take(2), Some(p(3)));
        assert!(f.is_empty());
    }

    #[test]
    fn a_broken_stream_leaves_the_unanswered_records_in_send_order() {
        let mut f = InFlight::default();
        for line in 1..=4 {
            f.push(p(line));
        }
        assert_eq!(f.take(0), Some(p(1)));
        assert_eq!(f.take(2), Some(p(3)));
        assert_eq!(f.drain(), vec![p(2), p(4)]);
        assert!(f.is_empty());
        // The next stream numbers from 0 again.
        f.push(p(2));
        assert_eq!(f.take(0), Some(p(2)));
    }
}
