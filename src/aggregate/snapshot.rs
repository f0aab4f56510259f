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
//! Encoding: protobuf (`proto/fieldwatch/state/v1/state.proto`, message
//! `PartitionSnapshot`) through prost, [`encode`] and [`decode`]. Fields
//! evolve as protobuf fields do (new numbers, absent means empty); the
//! per-interview sets are packed byte strings. Format 3 and older were
//! bincode: [`decode`] refuses them (they do not parse as the message) and
//! the partition is replayed once, after which the new owner writes the
//! new format. The golden files under `tests/data/snapshots/` pin the
//! format: see the tests below.
//!
//! Why a Kafka topic: every instance of the group can reach it (local disk
//! could not follow a partition to another machine), it needs nothing but
//! the cluster fieldatch already uses, and with `cleanup.policy=compact` a
//! real cluster keeps it small. See `docs/architecture.md`.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::instrument::Catalog;
use crate::proto::state as pb;
use crate::results::StudyState;
use crate::results::wire::WireError;

/// Snapshot format version. Bump it whenever what a state encodes to
/// changes, and add that version's golden file (the golden test says so).
/// 5: interviews per day (`Fieldwork.days`), each interviewer's
/// durations (`InterviewerStats.durations`) and each fingerprint's first
/// copy (`StudyState.fingerprint_firsts`); a format-4 snapshot lacks them
/// and still reads (its interviews count as undated, the medians of its
/// timed interviewers are unknown, see `docs/fieldwork.md`, and its
/// fingerprints' first copies read as the earliest place).
pub const FORMAT_VERSION: u32 = 5;
/// The oldest format version this build reads: the first protobuf one.
/// Older snapshots are refused and their partition replayed.
pub const OLDEST_READABLE: u32 = 4;
/// Largest chunk written to the state topic.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// What a snapshot holds.
#[derive(Debug, Clone, Default, PartialEq)]
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
    /// The partition's flagged interviews (for `GET .../flags`), as JSON
    /// (their own serde form, as on the quality topic).
    pub flagged_json: Vec<u8>,
}

/// Why stored bytes are not a usable snapshot.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Not a protobuf `PartitionSnapshot` (for example a format-3 bincode
    /// snapshot).
    #[error("not a protobuf snapshot")]
    Protobuf(#[from] prost::DecodeError),
    /// A format this build does not read (older than [`OLDEST_READABLE`] or
    /// newer than [`FORMAT_VERSION`]).
    #[error("snapshot format {0} is not readable (readable: {OLDEST_READABLE} to {FORMAT_VERSION})")]
    Version(u32),
    /// The state inside does not fit this build's types.
    #[error("snapshot state")]
    State(#[from] WireError),
}

/// Encodes a snapshot (deterministic: the same snapshot, the same bytes).
pub fn encode(snap: &Snapshot) -> Vec<u8> {
    let mut m = message(snap.catalog, snap.partition, snap.next_offset, snap.studies.iter(), Vec::new());
    m.version = snap.version;
    m.flagged_json = snap.flagged_json.clone();
    m.encode_to_vec()
}

/// The message of a partition's state at [`FORMAT_VERSION`], from borrowed
/// states (no copy of a state is made; studies in id order), for
/// [`prost::Message::encode_to_vec`].
pub(crate) fn message<'a>(
    catalog: u64,
    partition: i32,
    next_offset: i64,
    studies: impl Iterator<Item = (&'a String, &'a StudyState)>,
    flagged_json: Vec<u8>,
) -> pb::PartitionSnapshot {
    let mut studies: Vec<(&String, &StudyState)> = studies.collect();
    studies.sort_unstable_by_key(|(id, _)| *id);
    pb::PartitionSnapshot {
        version: FORMAT_VERSION,
        catalog,
        partition,
        next_offset,
        studies: studies
            .into_iter()
            .map(|(id, st)| pb::StudyEntry { study: id.clone(), state: Some(st.to_wire()) })
            .collect(),
        flagged_json,
    }
}

/// Decodes a snapshot of a readable format version.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, FormatError> {
    let w = pb::PartitionSnapshot::decode(bytes)?;
    // A newer writer's snapshot may pack its entries differently: refused
    // too (the partition is replayed), so a downgrade never misreads one.
    if !(OLDEST_READABLE..=FORMAT_VERSION).contains(&w.version) {
        return Err(FormatError::Version(w.version));
    }
    let mut studies = BTreeMap::new();
    for e in w.studies {
        studies.insert(e.study, e.state.map(StudyState::from_wire).transpose()?.unwrap_or_default());
    }
    Ok(Snapshot {
        version: w.version,
        catalog: w.catalog,
        partition: w.partition,
        next_offset: w.next_offset,
        studies,
        flagged_json: w.flagged_json,
    })
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
        self.save_encoded(snap.partition, &encode(snap), id).await
    }

    /// Writes an encoded snapshot of `partition` and waits until every
    /// chunk is acknowledged.
    pub async fn save_encoded(&self, partition: i32, bytes: &[u8], id: u64) -> Result<usize, SnapshotError> {
        let chunks: Vec<&[u8]> = bytes.chunks(CHUNK_BYTES).collect();
        let n = chunks.len().max(1);
        let id = format!("{id:016x}");
        // Sent one after another: with the idempotent producer they land in
        // order and contiguously (this process is the partition's only writer).
        for (i, chunk) in chunks.iter().enumerate() {
            let key = format!("{partition}/{i}");
            let index = format!("{i}/{n}");
            let headers = OwnedHeaders::new()
                .insert(Header { key: "fw-snapshot", value: Some(id.as_str()) })
                .insert(Header { key: "fw-chunk", value: Some(index.as_str()) });
            let record =
                FutureRecord::to(&self.topic).partition(partition).key(&key).payload(*chunk).headers(headers);
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
        match decode(&bytes) {
            Ok(s) if s.partition == partition => Ok(Some(s)),
            Ok(_) => Ok(None),
            Err(e) => {
                tracing::warn!(partition, error = %crate::errors::chain(&e), "snapshot does not decode; replaying the partition instead");
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
                Some(Err(e)) => {
                    // Unassigned either way: an assigned partition is
                    // fetched for as long as it stays assigned.
                    let _ = self.reader.unassign();
                    return Err(e.into());
                }
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
                // 2025-03-01T10:30:00Z
                Source { partition: 3, offset, received_at_ms: Some(1_740_825_000_000) };
            let step = pipeline::apply(&study, &mut state, &line, &Limits::default(), source);
            assert!(!matches!(step.fate, pipeline::Fate::Invalid(_)), "line {offset}: {:?}", step.fate);
            flagged.extend(step.flagged);
        }
        assert_eq!((state.interviews(), state.retries, state.duplicate_respondents), (4, 1, 1));
        assert_eq!(state.possible_duplicates(), 1);
        if version < 5 {
            // What format 4 did not keep.
            state.fieldwork.days.clear();
            state.fieldwork.interviewer_durations.clear();
            // Format 4 kept no first copy per fingerprint: what it reads as.
            let mut w = state.to_wire();
            w.fingerprint_firsts.clear();
            state = StudyState::from_wire(w).expect("reads");
        }
        Snapshot {
            version,
            catalog: 0x0123_4567_89ab_cdef,
            partition: 3,
            next_offset: lines.len() as i64,
            studies: [("golden".to_string(), state)].into_iter().collect(),
            flagged_json: serde_json::to_vec(&flagged).expect("json"),
        }
    }

    fn golden_path(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/snapshots").join(name)
    }

    #[test]
    fn a_format_3_bincode_snapshot_is_refused_cleanly() {
        // Written by the bincode encoder of format 3, before protobuf.
        let old = std::fs::read(golden_path("format-3-bincode.bin")).expect("golden file");
        assert!(decode(&old).is_err(), "format 3 must be refused, so the partition is replayed");
    }

    #[test]
    fn the_current_format_encodes_the_golden_state_to_its_golden_bytes() {
        // Fails when the encoding changes without a FORMAT_VERSION bump. To
        // bump: raise FORMAT_VERSION, then run this test once with
        // FIELDWATCH_WRITE_GOLDEN=1 to write the new version's file, and keep
        // the old files (they must still decode).
        let name = format!("format-{FORMAT_VERSION}.pb");
        let bytes = encode(&golden_snapshot(FORMAT_VERSION));
        if std::env::var_os("FIELDWATCH_WRITE_GOLDEN").is_some() && !golden_path(&name).exists() {
            std::fs::write(golden_path(&name), &bytes).expect("writes the golden file");
        }
        let golden = std::fs::read(golden_path(&name))
            .unwrap_or_else(|e| panic!("no golden file {name} for FORMAT_VERSION {FORMAT_VERSION}: {e}"));
        assert!(
            bytes == golden,
            "the snapshot encoding changed without a FORMAT_VERSION bump ({} bytes, golden {})",
            bytes.len(),
            golden.len()
        );
        assert_eq!(decode(&golden).expect("decodes"), golden_snapshot(FORMAT_VERSION));
    }

    #[test]
    fn every_golden_file_of_a_readable_format_still_decodes_to_the_golden_state() {
        for version in OLDEST_READABLE..=FORMAT_VERSION {
            let bytes = std::fs::read(golden_path(&format!("format-{version}.pb"))).expect("golden file");
            let snap = decode(&bytes).unwrap_or_else(|e| panic!("format {version}: {e}"));
            assert_eq!(snap.version, version);
            assert_eq!(snap.studies, golden_snapshot(version).studies, "format {version}");
        }
    }

    #[test]
    fn format_4_reads_with_its_interviews_undated_and_interviewer_medians_unknown() {
        let bytes = std::fs::read(golden_path("format-4.pb")).expect("golden file");
        let snap = decode(&bytes).expect("format 4 still decodes");
        let fw = &snap.studies["golden"].fieldwork;
        let days = crate::fieldwork::days::per_day(fw);
        assert!(days.days.is_empty());
        assert_eq!(days.undated, 4, "every counted interview, without a day");
        assert!(fw.interviewers["int01"].timed > 0);
        assert_eq!(fw.interviewer_median("int01"), None, "a median of none of the durations is not known");

        // Format 5 keeps both.
        let now = golden_snapshot(FORMAT_VERSION);
        let fw = &now.studies["golden"].fieldwork;
        let days = crate::fieldwork::days::per_day(fw);
        assert_eq!(days.undated, 0);
        assert_eq!(
            days.days.iter().map(|d| (d.date.as_str(), d.interviews)).collect::<Vec<_>>(),
            [("2025-03-01", 4)]
        );
        // int01 counted r1 (20 min) and r3 (30 min): r1's second submission is a duplicate.
        assert_eq!(fw.interviewer_median("int01"), Some(1500.0));
    }

    #[test]
    fn encoding_then_decoding_gives_the_snapshot_back_and_the_same_bytes() {
        let snap = golden_snapshot(FORMAT_VERSION);
        let back = decode(&encode(&snap)).expect("decodes");
        assert_eq!(back, snap);
        assert_eq!(encode(&back), encode(&snap), "encoding is deterministic");
    }

    #[test]
    fn truncated_or_corrupt_bytes_are_refused_without_panicking() {
        let bytes = encode(&golden_snapshot(FORMAT_VERSION));
        for cut in [1, bytes.len() / 3, bytes.len() - 1] {
            let _ = decode(&bytes[..cut]);
        }
        let mut flipped = bytes.clone();
        for b in flipped.iter_mut().step_by(7) {
            *b ^= 0x5a;
        }
        let _ = decode(&flipped);
        let old = pb::PartitionSnapshot { version: 3, ..Default::default() }.encode_to_vec();
        assert!(matches!(decode(&old), Err(FormatError::Version(3))));
        let newer =
            pb::PartitionSnapshot { version: FORMAT_VERSION + 1, ..Default::default() }.encode_to_vec();
        assert!(matches!(decode(&newer), Err(FormatError::Version(_))), "a newer format is refused");
    }

    #[test]
    #[ignore = "a measurement: run with --ignored --nocapture, in release for timings"]
    fn prints_bytes_per_interview_and_encode_and_decode_time_of_100_000_interviews() {
        let catalog = Catalog::demo();
        let study = catalog.get(crate::instrument::DEMO_STUDY_ID).expect("demo");
        let n = 100_000u64;
        let mut state = StudyState::new();
        let subs = crate::synth::interviews(study, n, 5, &crate::synth::Options { random_strings: false });
        for (offset, s) in (0..).zip(subs) {
            let line = Line::Interview(Box::new(s));
            let source = Source { partition: 0, offset, received_at_ms: None };
            pipeline::apply(study, &mut state, &line, &Limits::default(), source);
        }
        let snap = Snapshot {
            version: FORMAT_VERSION,
            catalog: 1,
            partition: 0,
            next_offset: n as i64,
            studies: [(study.id().to_string(), state)].into_iter().collect(),
            flagged_json: Vec::new(),
        };
        let t = std::time::Instant::now();
        let bytes = encode(&snap);
        let encoded = t.elapsed();
        let t = std::time::Instant::now();
        let back = decode(&bytes).expect("decodes");
        let decoded = t.elapsed();
        assert_eq!(back, snap);
        eprintln!(
            "format {FORMAT_VERSION}: {} bytes for {n} interviews, {:.1} bytes per interview, encode {encoded:?}, decode {decoded:?}",
            bytes.len(),
            bytes.len() as f64 / n as f64
        );
    }
}
