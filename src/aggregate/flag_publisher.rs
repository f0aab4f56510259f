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
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::LiveState;
use crate::fieldwork::review::FlaggedInterview;
use crate::kafka::{self, KafkaConfig};

/// Capacity of the channel from the consumer loop to the publisher.
pub const CHANNEL_CAPACITY: usize = 1024;

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

impl QualityPublisher {
    /// A publisher for `kafka.quality_topic` on the cluster at `bootstrap`.
    pub fn new(
        kafka: &KafkaConfig,
        bootstrap: &str,
        shared: Arc<LiveState>,
    ) -> Result<QualityPublisher, KafkaError> {
        Ok(QualityPublisher {
            producer: kafka::producer_config(kafka, bootstrap).create()?,
            reader: Arc::new(kafka::consumer_config(kafka, bootstrap, MARKER_GROUP).create()?),
            topic: kafka.quality_topic.clone(),
            timeout: kafka.produce_timeout(),
            shared,
            marks: HashMap::new(),
        })
    }

    /// Publishes what arrives on `rx` until every sender is gone, then
    /// flushes the producer (bounded by the produce timeout).
    pub async fn run(mut self, mut rx: mpsc::Receiver<QualityRecord>) {
        while let Some(record) = rx.recv().await {
            self.publish(record).await;
        }
        let producer = self.producer.clone();
        let timeout = self.timeout;
        let _ = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
    }

    async fn publish(&mut self, record: QualityRecord) {
        let partition = record.flagged.source_partition;
        let offset = record.flagged.source_offset;
        let counters = self.shared.quality_counters();
        let upto = match self.marks.get(&partition) {
            Some((generation, upto)) if *generation == record.generation => *upto,
            _ => {
                let upto = self.published_upto(partition).await;
                self.marks.insert(partition, (record.generation, upto));
                upto
            }
        };
        if record.late {
            self.send(&record.flagged, Some(upto)).await;
            return;
        }
        if offset <= upto {
            counters.replayed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.send(&record.flagged, None).await;
        // Later flags of the partition go out either way: the mark only
        // tells what an earlier owner published.
        self.marks.insert(partition, (record.generation, offset));
    }

    /// Writes one quality record (with the mark header for a late flag),
    /// counting the outcome.
    async fn send(&self, flagged: &FlaggedInterview, mark: Option<i64>) {
        let (partition, offset) = (flagged.source_partition, flagged.source_offset);
        let counters = self.shared.quality_counters();
        let Ok(payload) = serde_json::to_vec(flagged) else { return };
        let key = format!("{}/{}", flagged.study, flagged.submission_id);
        let mark = mark.map(|m| m.to_string());
        let mut record = FutureRecord::to(&self.topic).partition(partition).key(&key).payload(&payload);
        if let Some(m) = &mark {
            record = record
                .headers(OwnedHeaders::new().insert(Header { key: MARK_HEADER, value: Some(m.as_str()) }));
        }
        let sent = self.producer.send(record, self.timeout).await;
        match sent {
            Ok(_) => {
                counters.published.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(partition, offset, error = %crate::errors::chain(&e), "quality record not published");
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
/// its `source_offset` (-1 for an empty partition). Blocking.
fn last_source_offset(
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
