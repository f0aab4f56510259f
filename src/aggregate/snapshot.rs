//! Partition snapshots: a partition's results together with its next
//! offset, saved to the state topic and restored by whichever instance owns
//! the partition next.
//!
//! Layout: snapshot of responses partition `p` goes to state-topic partition
//! `p`, as `n` consecutive records (chunks of at most [`CHUNK_BYTES`]) with
//! headers naming the snapshot id and the chunk's index and count. Restoring
//! reads the last record of the partition, learns `n` and the id from it,
//! reads the `n` records before the end and checks they all carry that id.
//! A missing, partial or incompatible snapshot (other format version, other
//! instruments) is not an error: the partition is replayed from its start.
//!
//! Why a Kafka topic: every instance of the group can reach it (local disk
//! could not follow a partition to another machine), it needs nothing but
//! the cluster fieldatch already uses, and with `cleanup.policy=compact` a
//! real cluster keeps it small. See `docs/architecture.md`.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::results::StudyState;

/// Snapshot format version; a snapshot of another version is ignored.
pub const FORMAT_VERSION: u32 = 3;
/// Largest chunk written to the state topic.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// What a snapshot holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// [`FORMAT_VERSION`] of the writer.
    pub version: u32,
    /// Fingerprint of the instruments the state was computed with: item
    /// and category indexes are only meaningful for the same instruments.
    pub catalog: u64,
    /// Responses partition.
    pub partition: i32,
    /// Next offset to apply (last applied + 1).
    pub next_offset: i64,
    /// Results per study.
    pub studies: BTreeMap<String, StudyState>,
    /// The partition's flagged interviews (for `GET .../flags`), as JSON:
    /// their optional fields are skipped when empty, which a non
    /// self-describing encoding cannot read back.
    pub flagged_json: Vec<u8>,
}

/// Errors of the snapshot store.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A Kafka client failed.
    #[error("state topic")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The snapshot could not be encoded.
    #[error("encoding a snapshot")]
    Encode(#[source] bincode::Error),
    /// Writing a chunk was not acknowledged.
    #[error("writing a snapshot chunk was not acknowledged")]
    NotAcked(#[source] rdkafka::error::KafkaError),
}

/// Reads and writes snapshots.
pub struct Store {
    topic: String,
    producer: FutureProducer,
    /// A group-less consumer used only to read the end of a state partition.
    reader: BaseConsumer,
    /// Bounds each blocking Kafka call of a restore (watermarks, each poll).
    timeout: Duration,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("topic", &self.topic).finish()
    }
}

fn header_str<'a>(m: &'a rdkafka::message::BorrowedMessage<'_>, key: &str) -> Option<&'a str> {
    m.headers()?.iter().find(|h| h.key == key).and_then(|h| h.value).and_then(|v| std::str::from_utf8(v).ok())
}

impl Store {
    /// A store on `topic`, with clients built from these configs.
    pub fn new(
        topic: String,
        producer: &ClientConfig,
        reader: &ClientConfig,
        timeout: Duration,
    ) -> Result<Store, SnapshotError> {
        Ok(Store { topic, producer: producer.create()?, reader: reader.create()?, timeout })
    }

    /// Writes a snapshot and waits until every chunk is acknowledged.
    pub async fn save(&self, snap: &Snapshot, id: u64) -> Result<usize, SnapshotError> {
        let bytes = bincode::serialize(snap).map_err(SnapshotError::Encode)?;
        let chunks: Vec<&[u8]> = bytes.chunks(CHUNK_BYTES).collect();
        let n = chunks.len().max(1);
        let id = format!("{id:016x}");
        // Sent one after another: with the idempotent producer they land in
        // order and contiguously (this process is the partition's only writer).
        for (i, chunk) in chunks.iter().enumerate() {
            let key = format!("{}/{i}", snap.partition);
            let index = format!("{i}/{n}");
            let headers = OwnedHeaders::new()
                .insert(Header { key: "fw-snapshot", value: Some(id.as_str()) })
                .insert(Header { key: "fw-chunk", value: Some(index.as_str()) });
            let record = FutureRecord::to(&self.topic)
                .partition(snap.partition)
                .key(&key)
                .payload(*chunk)
                .headers(headers);
            self.producer.send(record, self.timeout).await.map_err(|(e, _)| SnapshotError::NotAcked(e))?;
        }
        Ok(bytes.len())
    }

    /// Reads the newest complete snapshot of `partition`, if any. Blocking:
    /// called from the rebalance callback, before the partition counts.
    pub fn load_blocking(&self, partition: i32) -> Result<Option<Snapshot>, SnapshotError> {
        let (low, high) = self.reader.fetch_watermarks(&self.topic, partition, self.timeout)?;
        if high <= low {
            return Ok(None);
        }
        let Some(last) = self.read_range(partition, high - 1, 1)?.pop() else {
            return Ok(None);
        };
        let n = last.count;
        let first = high - n as i64;
        if n == 0 || first < low || last.index + 1 != n {
            return Ok(None);
        }
        let chunks = self.read_range(partition, first, n)?;
        let complete = chunks.len() == n
            && chunks.iter().enumerate().all(|(i, c)| c.id == last.id && c.index == i && c.count == n);
        if !complete {
            tracing::warn!(
                partition,
                "snapshot chunks interleaved or missing; replaying the partition instead"
            );
            return Ok(None);
        }
        let bytes: Vec<u8> = chunks.into_iter().flat_map(|c| c.payload).collect();
        match bincode::deserialize::<Snapshot>(&bytes) {
            Ok(s) if s.version == FORMAT_VERSION && s.partition == partition => Ok(Some(s)),
            Ok(_) => Ok(None),
            Err(e) => {
                tracing::warn!(partition, error = %e, "snapshot does not decode; replaying the partition instead");
                Ok(None)
            }
        }
    }

    /// Reads `count` records of `partition` from `offset` on.
    fn read_range(&self, partition: i32, offset: i64, count: usize) -> Result<Vec<Chunk>, SnapshotError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition, Offset::Offset(offset))?;
        self.reader.assign(&tpl)?;
        let mut out = Vec::with_capacity(count);
        let deadline = std::time::Instant::now() + self.timeout;
        while out.len() < count && std::time::Instant::now() < deadline {
            match self.reader.poll(Duration::from_millis(100)) {
                Some(Ok(m)) if m.partition() == partition && m.offset() >= offset => {
                    let id = header_str(&m, "fw-snapshot").unwrap_or_default().to_string();
                    let (index, total) = header_str(&m, "fw-chunk")
                        .and_then(|c| c.split_once('/'))
                        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                        .unwrap_or((usize::MAX, 0));
                    out.push(Chunk {
                        id,
                        index,
                        count: total,
                        payload: m.payload().unwrap_or_default().to_vec(),
                    });
                }
                Some(Ok(_)) | None => {}
                Some(Err(e)) => return Err(e.into()),
            }
        }
        self.reader.unassign()?;
        Ok(out)
    }
}

/// One record of a snapshot.
struct Chunk {
    id: String,
    index: usize,
    count: usize,
    payload: Vec<u8>,
}
