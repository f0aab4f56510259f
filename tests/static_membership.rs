//! Does the embedded broker (tansu 0.6.0) support static group membership
//! (`group.instance.id`, KIP-345)? With it, a member that crashes and comes
//! back under the same instance id before its session times out gets its
//! partitions back at once, and the other members see no rebalance.
//!
//! Two consumers with instance ids `agg-0` and `agg-1` share four
//! partitions; `agg-0` is dropped without leaving the group (librdkafka
//! sends no LeaveGroup for a static member, as after `kill -9`) and a new
//! consumer with the same instance id joins. The finding is in
//! docs/benchmarks.md ("Failover").
#![cfg(feature = "embedded-broker")]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use fieldwatch::kafka::{self, KafkaConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};

const GROUP: &str = "static-membership-probe";
/// The group session timeout: a member not heard from for this long is
/// removed. The rejoin must be much faster for static membership to count.
const SESSION: Duration = Duration::from_secs(20);

fn member(config: &KafkaConfig, bootstrap: &str, instance: &str) -> BaseConsumer {
    let mut c = kafka::consumer_config(config, bootstrap, GROUP);
    c.set("group.instance.id", instance);
    c.set("session.timeout.ms", SESSION.as_millis().to_string());
    let consumer: BaseConsumer = c.create().expect("consumer");
    consumer.subscribe(&[config.responses_topic.as_str()]).expect("subscribe");
    consumer
}

fn assigned(c: &BaseConsumer) -> BTreeSet<i32> {
    c.assignment().map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect()).unwrap_or_default()
}

/// Polls every consumer until `done` holds for their assignments, or `bound` passes.
fn poll_until(
    cs: &[&BaseConsumer],
    bound: Duration,
    done: impl Fn(&[BTreeSet<i32>]) -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < bound {
        for c in cs {
            let _ = c.poll(Duration::from_millis(50));
        }
        let now: Vec<BTreeSet<i32>> = cs.iter().map(|c| assigned(c)).collect();
        if done(&now) {
            return Some(start.elapsed());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_back_under_its_instance_id_gets_its_partitions_without_a_rebalance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = common::embedded_broker(dir.path()).await;
    let bootstrap = broker.bootstrap();
    let config = KafkaConfig { partitions: 4, ..KafkaConfig::default() };
    kafka::ensure_topics(&config, &bootstrap).await.expect("topics");

    let (config2, bootstrap2) = (config.clone(), bootstrap.clone());
    // The consumers poll synchronously: on the blocking pool.
    let finding = tokio::task::spawn_blocking(move || {
        let (config, bootstrap) = (config2, bootstrap2);
        let a = member(&config, &bootstrap, "agg-0");
        let b = member(&config, &bootstrap, "agg-1");
        let split = |s: &[BTreeSet<i32>]| {
            !s[0].is_empty() && !s[1].is_empty() && s[0].len() + s[1].len() == 4 && s[0].is_disjoint(&s[1])
        };
        let formed = poll_until(&[&a, &b], Duration::from_secs(60), split);
        assert!(formed.is_some(), "two static members share the four partitions");
        let (before_a, before_b) = (assigned(&a), assigned(&b));
        drop(a); // no LeaveGroup for a static member: like kill -9

        let a2 = member(&config, &bootstrap, "agg-0");
        // Back in well under the session timeout, with the same partitions,
        // and agg-1 kept its own the whole time?
        let mut b_moved = false;
        let start = Instant::now();
        let mut back = None;
        while start.elapsed() < SESSION / 2 {
            let _ = a2.poll(Duration::from_millis(50));
            let _ = b.poll(Duration::from_millis(50));
            b_moved |= assigned(&b) != before_b;
            if assigned(&a2) == before_a {
                back = Some(start.elapsed());
                break;
            }
        }
        (back, b_moved, assigned(&a2), assigned(&b))
    })
    .await
    .expect("probe runs");
    broker.shutdown().await;

    let (back, b_moved, a2, b) = finding;
    eprintln!(
        "static membership probe: back after {back:?}, agg-1 moved: {b_moved}, agg-0 now {a2:?}, agg-1 now {b:?}"
    );
    assert!(
        back.is_some() && !b_moved,
        "tansu 0.6.0 static membership: the member is back with its partitions within half a session \
         ({:?}) and the other member kept its own (moved: {b_moved})",
        SESSION / 2
    );
}
