//! End-to-end checks of the embedded broker with the real client settings:
//! idempotent produce, consumer-group consume and commit, SQLite durability.
#![cfg(feature = "embedded-broker")]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use fieldwatch::broker::{BrokerConfig, BrokerError, EmbeddedBroker};
use fieldwatch::kafka::{self, KafkaConfig};
use futures::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

const RECORDS: usize = 1_000;
/// Bounds each consume loop: far above the ~1 s it takes, so only a hang fails.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(60);
/// Bounds each offset commit or committed-offset lookup.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

type Record = (String, String);

/// Runs `body` against `broker` and shuts the broker down whether `body`
/// returns or panics, then re-raises the panic.
async fn with_broker<F, Fut, T>(broker: EmbeddedBroker, body: F) -> T
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let outcome = std::panic::AssertUnwindSafe(body(broker.bootstrap())).catch_unwind().await;
    broker.shutdown().await;
    match outcome {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

async fn start(listen: SocketAddr, data_dir: &Path) -> EmbeddedBroker {
    let started = Instant::now();
    let broker = EmbeddedBroker::start(BrokerConfig::new(listen, data_dir)).await.expect("broker starts");
    eprintln!("broker {} ready in {:?}", broker.bootstrap(), started.elapsed());
    assert!(broker.database().is_absolute() && broker.database().exists(), "{}", broker.database().display());
    broker
}

fn records(tag: &str, count: usize) -> Vec<Record> {
    (0..count).map(|i| (format!("{tag}-key-{i:04}"), format!("{tag}-value-{i:04}"))).collect()
}

/// Produces every record with the idempotent producer and awaits every
/// delivery report; returns how many records each partition got.
async fn produce(config: &KafkaConfig, bootstrap: &str, records: &[Record]) -> BTreeMap<i32, usize> {
    let started = Instant::now();
    let producer: FutureProducer = kafka::producer_config(config, bootstrap).create().expect("producer");
    let sends = records.iter().map(|(key, value)| {
        producer.send(FutureRecord::to(&config.responses_topic).key(key).payload(value), Duration::ZERO)
    });
    let mut per_partition = BTreeMap::new();
    for report in futures::future::join_all(sends).await {
        let delivery = report.unwrap_or_else(|(e, _)| panic!("delivery failed: {e}"));
        *per_partition.entry(delivery.partition).or_insert(0) += 1;
    }
    eprintln!("produced {} records in {:?}", records.len(), started.elapsed());
    per_partition
}

/// Consumes with group `group` until `expected` records arrived, storing each
/// offset after it is "applied" and committing the stored offsets at the end.
async fn consume(config: &KafkaConfig, bootstrap: &str, group: &str, expected: usize) -> Vec<Record> {
    let started = Instant::now();
    let consumer: StreamConsumer =
        kafka::consumer_config(config, bootstrap, group).create().expect("consumer");
    consumer.subscribe(&[&config.responses_topic]).expect("subscribe");
    let mut got = Vec::with_capacity(expected);
    let deadline = tokio::time::Instant::now() + CONSUME_TIMEOUT;
    while got.len() < expected {
        let message = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {expected} records within {CONSUME_TIMEOUT:?}", got.len()))
            .expect("consume");
        let key = String::from_utf8(message.key().expect("key").to_vec()).expect("utf-8 key");
        let value = String::from_utf8(message.payload().expect("value").to_vec()).expect("utf-8 value");
        got.push((key, value));
        // Stores next offset = this offset + 1, to be committed below.
        consumer.store_offset_from_message(&message).expect("store offset");
    }
    consumer.commit_consumer_state(CommitMode::Sync).expect("commit");
    eprintln!("consumed {} records in {:?}", got.len(), started.elapsed());
    got
}

/// The group's committed offset per partition of the responses topic.
fn committed(config: &KafkaConfig, bootstrap: &str, group: &str) -> BTreeMap<i32, i64> {
    let consumer: StreamConsumer =
        kafka::consumer_config(config, bootstrap, group).create().expect("consumer");
    let mut wanted = TopicPartitionList::new();
    for partition in 0..config.partitions as i32 {
        wanted.add_partition(&config.responses_topic, partition);
    }
    let list = consumer.committed_offsets(wanted, COMMIT_TIMEOUT).expect("committed offsets");
    list.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

fn as_set(records: &[Record]) -> BTreeSet<Record> {
    records.iter().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produced_records_are_consumed_back_exactly_by_a_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), &dir.path().join("broker")).await;
    let config = KafkaConfig::default();
    with_broker(broker, |bootstrap| async move {
        kafka::ensure_topics(&config, &bootstrap).await.expect("topics created");
        kafka::ensure_topics(&config, &bootstrap).await.expect("existing topics are fine");

        let sent = records("a", RECORDS);
        let per_partition = produce(&config, &bootstrap, &sent).await;
        assert_eq!(
            per_partition.len(),
            config.partitions as usize,
            "every partition gets records: {per_partition:?}"
        );

        let got = consume(&config, &bootstrap, "exact-set", RECORDS).await;
        assert_eq!(got.len(), RECORDS, "no record twice");
        assert_eq!(as_set(&got), as_set(&sent));

        let offsets = committed(&config, &bootstrap, "exact-set");
        let expected: BTreeMap<i32, i64> = per_partition.iter().map(|(&p, &n)| (p, n as i64)).collect();
        assert_eq!(offsets, expected, "committed next offsets = records per partition");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_and_committed_offsets_survive_a_broker_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("broker");
    let config = KafkaConfig::default();

    let broker = start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), &data_dir).await;
    let listen = broker.local_addr();
    let sent = records("before", RECORDS);
    let offsets_before = with_broker(broker, |bootstrap| {
        let (config, sent) = (&config, &sent);
        async move {
            kafka::ensure_topics(config, &bootstrap).await.expect("topics created");
            produce(config, &bootstrap, sent).await;
            let got = consume(config, &bootstrap, "survivor", RECORDS).await;
            assert_eq!(as_set(&got), as_set(sent));
            committed(config, &bootstrap, "survivor")
        }
    })
    .await;
    assert_eq!(offsets_before.values().sum::<i64>(), RECORDS as i64);

    let broker = start(listen, &data_dir).await;
    assert_eq!(broker.local_addr(), listen, "same port after restart");
    with_broker(broker, |bootstrap| {
        let (config, sent) = (&config, &sent);
        async move {
            kafka::ensure_topics(config, &bootstrap).await.expect("topics still exist");
            assert_eq!(committed(config, &bootstrap, "survivor"), offsets_before, "offsets survive");

            let replayed = consume(config, &bootstrap, "newcomer", RECORDS).await;
            assert_eq!(as_set(&replayed), as_set(sent), "records survive");

            // The surviving group resumes after its committed offsets: it sees
            // only what is produced now.
            let after = records("after", 10);
            produce(config, &bootstrap, &after).await;
            let resumed = consume(config, &bootstrap, "survivor", after.len()).await;
            assert_eq!(as_set(&resumed), as_set(&after), "group resumes at its committed offsets");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_on_a_port_in_use_fails_with_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let listen = taken.local_addr().expect("addr");
    let err = EmbeddedBroker::start(BrokerConfig::new(listen, dir.path())).await.expect_err("port is taken");
    assert!(matches!(err, BrokerError::Stopped(_)), "{err:?}");
}
