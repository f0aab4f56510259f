//! The timed interviews of one form and their exact running median, which
//! the speeder check reads once per counted interview.
//!
//! A sorted list makes the median free but every insertion moves half the
//! list: with 100,000 timed interviews in a partition that is a 200 KB
//! memory move per interview. Two heaps keep the same exact median with
//! O(log n) insertion: the lower half in a max-heap, the upper half in a
//! min-heap, the lower one holding the extra element when the count is odd.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Durations in seconds of a form's timed interviews. Serialised as the
/// sorted list, so snapshots keep the format they always had.
#[derive(Debug, Clone, Default)]
pub struct Durations {
    /// The smaller half (and the median when the count is odd).
    low: BinaryHeap<u32>,
    /// The larger half.
    high: BinaryHeap<Reverse<u32>>,
}

impl Durations {
    /// Timed interviews.
    pub fn len(&self) -> usize {
        self.low.len() + self.high.len()
    }

    /// No timed interview yet.
    pub fn is_empty(&self) -> bool {
        self.low.is_empty()
    }

    /// Adds one duration.
    pub fn insert(&mut self, secs: u32) {
        match self.low.peek() {
            Some(&m) if secs > m => self.high.push(Reverse(secs)),
            _ => self.low.push(secs),
        }
        if self.low.len() > self.high.len() + 1 {
            if let Some(v) = self.low.pop() {
                self.high.push(Reverse(v));
            }
        } else if self.high.len() > self.low.len()
            && let Some(Reverse(v)) = self.high.pop()
        {
            self.low.push(v);
        }
    }

    /// The exact median: the middle value, or the mean of the two middle
    /// values; none without durations.
    pub fn median(&self) -> Option<f64> {
        let lo = f64::from(*self.low.peek()?);
        if self.low.len() > self.high.len() {
            return Some(lo);
        }
        self.high.peek().map(|Reverse(hi)| (lo + f64::from(*hi)) / 2.0)
    }

    /// All durations in ascending order.
    pub fn sorted(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.low.iter().copied().chain(self.high.iter().map(|r| r.0)).collect();
        v.sort_unstable();
        v
    }

    /// Builds the halves from any list of durations.
    pub fn from_vec(mut v: Vec<u32>) -> Durations {
        v.sort_unstable();
        let high = v.split_off(v.len().div_ceil(2));
        Durations { low: BinaryHeap::from(v), high: high.into_iter().map(Reverse).collect() }
    }

    /// Adds another partition's durations.
    pub fn merge(&mut self, other: &Durations) {
        if other.is_empty() {
            return;
        }
        let mut v = self.sorted();
        v.extend(other.low.iter().copied().chain(other.high.iter().map(|r| r.0)));
        *self = Durations::from_vec(v);
    }
}

impl PartialEq for Durations {
    fn eq(&self, other: &Durations) -> bool {
        self.len() == other.len() && self.sorted() == other.sorted()
    }
}

impl Serialize for Durations {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.sorted().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Durations {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Durations, D::Error> {
        Vec::<u32>::deserialize(d).map(Durations::from_vec)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sorted_median(v: &[u32]) -> Option<f64> {
        let mut v = v.to_vec();
        v.sort_unstable();
        let n = v.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(f64::from(v[n / 2])),
            _ => Some((f64::from(v[n / 2 - 1]) + f64::from(v[n / 2])) / 2.0),
        }
    }

    #[test]
    fn median_of_odd_and_even_counts_is_exact() {
        let mut d = Durations::default();
        assert_eq!(d.median(), None);
        d.insert(30);
        assert_eq!(d.median(), Some(30.0));
        d.insert(10);
        assert_eq!(d.median(), Some(20.0));
        d.insert(20);
        assert_eq!(d.median(), Some(20.0));
        assert_eq!(d.sorted(), vec![10, 20, 30]);
    }

    proptest! {
        #[test]
        fn running_median_equals_the_sorted_lists(values in prop::collection::vec(0u32..5000, 0..200)) {
            let mut d = Durations::default();
            for (i, &v) in values.iter().enumerate() {
                d.insert(v);
                prop_assert_eq!(d.median(), sorted_median(&values[..=i]));
            }
            prop_assert_eq!(d.len(), values.len());
        }

        #[test]
        fn merge_and_serde_keep_every_duration(a in prop::collection::vec(0u32..5000, 0..100),
                                               b in prop::collection::vec(0u32..5000, 0..100)) {
            let (mut x, mut y) = (Durations::default(), Durations::default());
            a.iter().for_each(|&v| x.insert(v));
            b.iter().for_each(|&v| y.insert(v));
            x.merge(&y);
            let all: Vec<u32> = a.iter().chain(&b).copied().collect();
            prop_assert_eq!(x.median(), sorted_median(&all));
            let json = serde_json::to_string(&x).expect("json");
            let back: Durations = serde_json::from_str(&json).expect("back");
            prop_assert_eq!(&back, &x);
            prop_assert_eq!(back.median(), sorted_median(&all));
        }
    }
}
