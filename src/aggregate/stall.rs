//! Stall watch: an instance that owns no partition rejoins the group when
//! partitions have records nobody reads (a tansu 0.6.0 workaround).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};

use super::LiveState;
use super::consumer::Ctx;

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
pub(super) struct IdleWatch {
    /// How long without any partition before the first look, and between looks.
    after: Duration,
    since: Option<std::time::Instant>,
    /// The group's committed offsets at the previous look.
    committed: Option<BTreeMap<i32, i64>>,
}

impl IdleWatch {
    pub(super) fn new(after: Duration) -> IdleWatch {
        IdleWatch { after, since: None, committed: None }
    }

    /// Whether to look now: idle for `after` since the last look (or since
    /// the instance last owned a partition).
    pub(super) fn due(&mut self, idle: bool, now: std::time::Instant) -> bool {
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
    pub(super) fn stalled(&mut self, committed: BTreeMap<i32, i64>, high: &BTreeMap<i32, i64>) -> bool {
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
pub(super) async fn rejoin_if_stalled(
    consumer: &Arc<StreamConsumer<Ctx>>,
    shared: &LiveState,
    idle: &mut IdleWatch,
    topic: &str,
) {
    let (c, t) = (consumer.clone(), topic.to_string());
    // Metadata, offset and watermark requests block, each bounded by its
    // timeout: off the async workers.
    let Ok(Some((committed, high))) = tokio::task::spawn_blocking(move || group_progress(&c, &t)).await
    else {
        return;
    };
    // Nothing unread anywhere: an idle spare is rightly ready.
    if !committed.iter().any(|(p, c)| high.get(p).is_some_and(|h| *h > (*c).max(0))) {
        shared.set_orphaned(false);
    }
    if idle.stalled(committed, &high) {
        // Not ready (issue 15, honest health) until a partition is assigned.
        shared.set_orphaned(true);
        tracing::warn!("owning no partition while partitions stall with unread records; rejoining the group");
        consumer.unsubscribe();
        if let Err(e) = consumer.subscribe(&[topic]) {
            tracing::warn!(error = %crate::errors::chain(&e), "subscribe after rejoin failed");
        }
    }
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
