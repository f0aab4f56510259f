//! Publishes flagged interviews to the quality topic, once each, although
//! the aggregator replays every partition from its start on assignment.
//!
//! The quality record of an interview at offset `o` of responses partition
//! `p` goes to partition `p` of the quality topic (as JSON,
//! [`FlaggedInterview`], keyed by `<study>/<submission id>`), in offset
//! order. So the last record of quality partition `p` names the highest
//! source offset published for `p`: that is the watermark, kept in Kafka
//! itself. When a partition is assigned (a new generation), the publisher
//! reads that last record before publishing anything for it, skips every
//! flag at or below it (the replay), and publishes the rest. This holds
//! across restarts, rebalances and interviews ingested while no aggregator
//! ran, which an in-memory watermark taken at assignment would lose.
//!
//! Records are sent without waiting for each one's acknowledgement and go
//! out in batches, up to [`LINGER_MS`] after the flag (see there why).
//!
//! Late flags (a possible duplicate found after the fact, see
//! [`super::late`]) name an older source offset: they bypass the watermark
//! (nothing was published for them before) and carry the partition's
//! current watermark in a `fieldwatch-mark` header, which the watermark
//! reader prefers to the record's own `source_offset`, so a late record
//! last in its partition does not make the next owner republish.
//!
//! Limits, documented in `docs/fieldwork.md`: the quality topic needs at
//! least as many partitions as the responses topic (fieldwatch creates both
//! alike); when the last record cannot be read (the topic's retention
//! deleted everything, or the read times out) the partition's flags are
//! published again, so consumers should treat the key as idempotent; a
//! write the broker does not acknowledge is counted and logged, not retried.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::LiveState;
use crate::fieldwork::review::FlaggedInterview;
use crate::kafka::{self, KafkaConfig};

/// Capacity of the channel from the consumer loop to the publisher.
pub const CHANNEL_CAPACITY: usize = 1024;

/// Quality records sent and not yet acknowledged, at most. Records are not
/// sent one acknowledgement at a time: they queue in the producer and go
/// out together ([`LINGER_MS`]), a few produce requests for a burst of
/// flags instead of one a flag. The order within a partition holds: the
/// producer is idempotent, or else has one request in flight.
const MAX_UNACKED: usize = 1024;

/// How long the quality producer waits for more records before a produce
/// request (`linger.ms`, unless `kafka.client_properties` sets it; ingest's
/// producer waits none, since every reply waits for its ack). Nobody waits
/// on a quality record's ack, and each produce request is a write to the
/// broker's storage, which on tansu holds up the aggregator's fetches in
/// flight: with a request for each of the 87 flags of `fieldwatch bench`'s
/// 50,000 records, the aggregator's pass took 5-10 % longer than without
/// flags (docs/benchmarks.md, 5 December).
const LINGER_MS: u64 = 500;

/// Consumer group id of the watermark reader. It only reads assigned
/// partitions and never commits, so the group holds no state.
const MARKER_GROUP: &str = "fieldwatch-quality-marker";

/// Header of a late flag's record: the watermark (highest source offset
/// published for the partition) when it was written, in decimal.
const MARK_HEADER: &str = "fieldwatch-mark";

/// A flagged interview to publish, with the assignment it came from.
#[derive(Debug, Clone)]
pub struct QualityRecord {
    /// The partition state's generation (see [`super::PartitionState::generation`]).
    pub generation: u64,
    /// The flagged interview (names its source partition and offset).
    pub flagged: FlaggedInterview,
    /// Flagged after the fact (see [`super::late`]): published whatever the
    /// watermark, which it leaves as it is.
    pub late: bool,
}

/// What the publisher did, since start.
#[derive(Debug, Default)]
pub struct QualityCounters {
    /// Records the broker acknowledged.
    pub published: AtomicU64,
    /// Flags skipped because an earlier owner had published them (replay).
    pub replayed: AtomicU64,
    /// Writes the broker did not acknowledge.
    pub failed: AtomicU64,
}

impl QualityCounters {
    /// `(outcome, count)` for the metric.
    pub fn values(&self) -> [(&'static str, u64); 3] {
        [
            ("published", self.published.load(Ordering::Relaxed)),
            ("replayed", self.replayed.load(Ordering::Relaxed)),
            ("failed", self.failed.load(Ordering::Relaxed)),
        ]
    }
}

/// The publisher task's state.
pub struct QualityPublisher {
    producer: FutureProducer,
    /// Reads the last record of a quality partition; used on the blocking pool.
    reader: Arc<BaseConsumer>,
    topic: String,
    timeout: Duration,
    shared: Arc<LiveState>,
    /// Per source partition: the generation seen last and the highest source
    /// offset published for it.
    marks: HashMap<i32, (u64, i64)>,
}

/// Records sent and not yet acknowledged, in no order: each one's delivery
/// report, with its source partition and offset for the log.
type Unacked = FuturesUnordered<std::pin::Pin<Box<dyn Future<Output = (i32, i64, Delivered)> + Send>>>;

/// What the delivery report said: acknowledged, or why not (none: the
/// producer went away first).
type Delivered = Result<(), Option<KafkaError>>;

impl QualityPublisher {
    /// A publisher for `kafka.quality_topic` on the cluster at `bootstrap`.
    pub fn new(
        kafka: &KafkaConfig,
        bootstrap: &str,
        shared: Arc<LiveState>,
    ) -> Result<QualityPublisher, KafkaError> {
        let mut producer = kafka::producer_config(kafka, bootstrap);
        if !kafka.client_properties.contains_key("linger.ms") {
            producer.set("linger.ms", LINGER_MS.to_string());
        }
        if !kafka.idempotence {
            // A partition's records stay in order through retries only with
            // one request in flight when the producer is not idempotent
            // (an idempotent one keeps the order with up to five).
            producer.set("max.in.flight.requests.per.connection", "1");
        }
        Ok(QualityPublisher {
            producer: producer.create()?,
            reader: Arc::new(kafka::consumer_config(kafka, bootstrap, MARKER_GROUP).create()?),
            topic: kafka.quality_topic.clone(),
            timeout: kafka.produce_timeout(),
            shared,
            marks: HashMap::new(),
        })
    }

    /// Publishes what arrives on `rx` until every sender is gone, then
    /// waits for the acknowledgements still due (each bounded by the
    /// produce timeout, `message.timeout.ms`) and flushes the producer.
    pub async fn run(mut self, mut rx: mpsc::Receiver<QualityRecord>) {
        let mut unacked = Unacked::new();
        loop {
            tokio::select! {
                Some(acked) = unacked.next() => self.count(acked),
                record = rx.recv() => match record {
                    Some(record) => self.publish(record, &mut unacked).await,
                    None => break,
                },
            }
        }
        while let Some(acked) = unacked.next().await {
            self.count(acked);
        }
        let producer = self.producer.clone();
        let timeout = self.timeout;
        let _ = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
    }

    async fn publish(&mut self, record: QualityRecord, unacked: &mut Unacked) {
        let partition = record.flagged.source_partition;
        let offset = record.flagged.source_offset;
        let counters = self.shared.quality_counters();
        let upto = match self.marks.get(&partition) {
            Some((generation, upto)) if *generation == record.generation => *upto,
            _ => {
                // The partition's last record must be the last one sent:
                // what an earlier generation sent is acknowledged (or has
                // failed) first, else the read could miss it and its flags
                // would be sent again.
                while let Some(acked) = unacked.next().await {
                    self.count(acked);
                }
                let upto = self.published_upto(partition).await;
                self.marks.insert(partition, (record.generation, upto));
                upto
            }
        };
        if record.late {
            self.send(&record.flagged, Some(upto), unacked).await;
            return;
        }
        if offset <= upto {
            counters.replayed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.send(&record.flagged, None, unacked).await;
        // Later flags of the partition go out either way: the mark only
        // tells what an earlier owner published.
        self.marks.insert(partition, (record.generation, offset));
    }

    /// Sends one quality record (with the mark header for a late flag)
    /// behind those sent before it; its acknowledgement is counted when it
    /// comes ([`QualityPublisher::count`]). Waits first while
    /// [`MAX_UNACKED`] are due, or while the producer's queue is full.
    async fn send(&self, flagged: &FlaggedInterview, mark: Option<i64>, unacked: &mut Unacked) {
        let (partition, offset) = (flagged.source_partition, flagged.source_offset);
        let Ok(payload) = serde_json::to_vec(flagged) else { return };
        let key = format!("{}/{}", flagged.study, flagged.submission_id);
        let mark = mark.map(|m| m.to_string());
        let mut record = FutureRecord::to(&self.topic).partition(partition).key(&key).payload(&payload);
        if let Some(m) = &mark {
            record = record
                .headers(OwnedHeaders::new().insert(Header { key: MARK_HEADER, value: Some(m.as_str()) }));
        }
        let delivery: DeliveryFuture = loop {
            if unacked.len() >= MAX_UNACKED
                && let Some(acked) = unacked.next().await
            {
                self.count(acked);
            }
            match self.producer.send_result(record) {
                Ok(delivery) => break delivery,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The queue (this publisher's records only) drains as
                    // acknowledgements come.
                    record = back;
                    match unacked.next().await {
                        Some(acked) => self.count(acked),
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                Err((e, _)) => {
                    self.count((partition, offset, Err(Some(e))));
                    return;
                }
            }
        };
        unacked.push(Box::pin(async move {
            let delivered = match delivery.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((e, _))) => Err(Some(e)),
                Err(_canceled) => Err(None),
            };
            (partition, offset, delivered)
        }));
    }

    /// Counts an acknowledgement, or logs why a record was not published.
    fn count(&self, (partition, offset, delivered): (i32, i64, Delivered)) {
        let counters = self.shared.quality_counters();
        match delivered {
            Ok(()) => {
                counters.published.fetch_add(1, Ordering::Relaxed);
            }
            Err(Some(e)) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(partition, offset, error = %crate::errors::chain(&e), "quality record not published");
            }
            Err(None) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(partition, offset, "quality record not published: the producer is gone");
            }
        }
    }

    /// The highest source offset published for `partition`, or -1.
    async fn published_upto(&self, partition: i32) -> i64 {
        let reader = self.reader.clone();
        let topic = self.topic.clone();
        let timeout = self.timeout;
        let read =
            tokio::task::spawn_blocking(move || last_source_offset(&reader, &topic, partition, timeout))
                .await;
        match read {
            Ok(Ok(upto)) => {
                tracing::debug!(partition, upto, "quality flags published so far");
                upto
            }
            Ok(Err(e)) => {
                tracing::warn!(partition, error = %crate::errors::chain(&e), "cannot read the quality watermark; flags may be republished");
                -1
            }
            Err(e) => {
                tracing::warn!(partition, error = %crate::errors::chain(&e), "quality watermark read failed; flags may be republished");
                -1
            }
        }
    }
}

/// Why the last record could not be read.
#[derive(Debug, thiserror::Error)]
enum MarkError {
    #[error("kafka")]
    Kafka(#[from] KafkaError),
    #[error("no record within {0:?}")]
    Timeout(Duration),
    #[error("the last record is not a quality record")]
    Foreign,
}

/// Reads the last record of `partition` of the quality topic and returns
/// its `source_offset` (-1 for an empty partition). Blocking. The reader
/// holds no assignment afterwards: an assigned partition is fetched again
/// and again (on tansu, a request every `fetch.wait.max.ms`) for as long as
/// the process runs.
fn last_source_offset(
    reader: &BaseConsumer,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<i64, MarkError> {
    let read = read_last_source_offset(reader, topic, partition, timeout);
    if let Err(e) = reader.unassign() {
        tracing::warn!(partition, error = %crate::errors::chain(&e), "cannot unassign the quality watermark reader");
    }
    read
}

fn read_last_source_offset(
    reader: &BaseConsumer,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<i64, MarkError> {
    let (low, high) = reader.fetch_watermarks(topic, partition, timeout)?;
    if high <= low {
        return Ok(-1);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(high - 1))?;
    reader.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(m)) if m.partition() == partition && m.offset() >= high - 1 => {
                // A late flag's record carries the watermark of its time.
                let marked = m.headers().and_then(|hs| {
                    hs.iter()
                        .find(|h| h.key == MARK_HEADER)
                        .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse::<i64>().ok())
                });
                if let Some(upto) = marked {
                    return Ok(upto);
                }
                #[derive(serde::Deserialize)]
                struct Mark {
                    source_offset: i64,
                }
                let mark: Option<Mark> = m.payload().and_then(|p| serde_json::from_slice(p).ok());
                return mark.map(|m| m.source_offset).ok_or(MarkError::Foreign);
            }
            Some(Err(e)) => return Err(e.into()),
            _ => {}
        }
    }
    Err(MarkError::Timeout(timeout))
}
