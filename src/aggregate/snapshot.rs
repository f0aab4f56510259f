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

use crate::instrument::Catalog;
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

/// Fingerprint of the loaded instruments, kept in each snapshot: item and
/// category indexes in a state are only meaningful for the same instruments.
pub fn catalog_fingerprint(catalog: &Catalog) -> u64 {
    let defs: Vec<String> =
        catalog.studies().map(|s| serde_json::to_string(&s.def).unwrap_or_default()).collect();
    xxhash_rust::xxh3::xxh3_64(defs.join("\n").as_bytes())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fieldwork::{Line, parse_line};
    use crate::pipeline::{self, Source};
    use crate::validate::Limits;

    /// The instrument of the golden snapshots: inline, so that changes to
    /// the demo study do not change them.
    const GOLDEN_STUDY: &str = r#"
study: golden
dimensions:
  - {name: region, source: attribute, values: [{code: west}, {code: east}]}
  - {name: interviewer, source: interviewer, values: [{code: int01}, {code: int02}]}
reporting: {straightlining_min_run: 3}
forms:
  - id: f
    items:
      - {id: q1, code: s1, kind: scale, min: 1, max: 5, labels: {1: a, 5: b}, required: true}
      - {id: q2, code: s2, kind: scale, min: 1, max: 5, labels: {1: a, 5: b}, required: true}
      - {id: q3, code: s3, kind: scale, min: 1, max: 5, labels: {1: a, 5: b}, required: true}
      - {id: q4, code: yn, kind: yes_no}
      - {id: q5, code: help, kind: multi_select, options: [{code: food}, {code: housing}, {code: legal}]}
"#;

    /// A small deterministic partition snapshot: interviews (one
    /// straightlined, one a possible duplicate, one a duplicate
    /// respondent, one a retry) and two case dispositions.
    pub(super) fn golden_snapshot(version: u32) -> Snapshot {
        let study = crate::instrument::Study::from_yaml(GOLDEN_STUDY).expect("valid");
        let interview = |resp: &str, sub: &str, who: &str, region: &str, minutes: u32, answers: &str| {
            format!(
                r#"{{"study":"golden","form":"f","respondent_id":"{resp}","submission_id":"{sub}","interviewer":"{who}",
                    "started_at":"2025-03-01T10:00:00Z","completed_at":"2025-03-01T10:{minutes:02}:00Z",
                    "attributes":{{"region":"{region}"}},"answers":{answers}}}"#
            )
        };
        let lines = [
            interview("r1", "s1", "int01", "west", 20, r#"{"q1":1,"q2":2,"q3":3,"q4":"yes","q5":["food","legal"]}"#),
            interview("r2", "s2", "int02", "east", 25, r#"{"q1":4,"q2":4,"q3":4,"q4":"no","q5":["housing"]}"#),
            interview("r3", "s3", "int01", "east", 30, r#"{"q1":1,"q2":2,"q3":3,"q4":"yes","q5":["legal","food"]}"#),
            interview("r1", "s4", "int01", "west", 21, r#"{"q1":5,"q2":1,"q3":2,"q4":"no"}"#),
            interview("r4", "s5", "int09", "north", 22, r#"{"q1":2,"q2":3,"q3":5}"#),
            interview("r2", "s2", "int02", "east", 25, r#"{"q1":4,"q2":4,"q3":4,"q4":"no","q5":["housing"]}"#),
            r#"{"kind":"disposition","study":"golden","case_id":"c9","disposition":"refusal","time":"2025-03-01T09:00:00Z","interviewer":"int02"}"#.to_string(),
            r#"{"kind":"disposition","study":"golden","case_id":"c10","disposition":"NC","time":"2025-03-01T09:30:00Z"}"#.to_string(),
        ];
        let mut state = StudyState::new();
        let mut flagged = Vec::new();
        for (offset, line) in (0..).zip(&lines) {
            let line: Line = parse_line(line).expect("a line");
            let source =
                Source { partition: 3, offset, received_at: Some("2025-03-01T10:30:00.000Z".into()) };
            let step = pipeline::apply(&study, &mut state, &line, &Limits::default(), source);
            assert!(!matches!(step.fate, pipeline::Fate::Invalid(_)), "line {offset}: {:?}", step.fate);
            flagged.extend(step.flagged);
        }
        assert_eq!((state.interviews(), state.retries, state.duplicate_respondents), (4, 1, 1));
        assert_eq!(state.possible_duplicates(), 1);
        Snapshot {
            version,
            catalog: 0x0123_4567_89ab_cdef,
            partition: 3,
            next_offset: lines.len() as i64,
            studies: [("golden".to_string(), state)].into_iter().collect(),
            flagged_json: serde_json::to_vec(&flagged).expect("json"),
        }
    }

    #[test]
    #[ignore = "writes the golden file of format 3 once"]
    fn write_golden_v3() {
        let bytes = bincode::serialize(&golden_snapshot(3)).expect("encodes");
        std::fs::create_dir_all("tests/data/snapshots").expect("dir");
        std::fs::write("tests/data/snapshots/format-3-bincode.bin", bytes).expect("writes");
    }
}
