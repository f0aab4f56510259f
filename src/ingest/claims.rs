//! Study-wide submission ids: the first respondent to use a submission id
//! keeps it, study-wide, whatever partition its records land in.
//!
//! Records are keyed by respondent, so two respondents' records can sit in
//! different partitions, and no aggregator sees both. Ingest therefore
//! claims each new submission id before publishing the interview: it writes
//! a claim (a keyed hash of study and submission id, and one of the
//! respondent, never the ids themselves) to the claims topic, a single
//! partition read by every ingest instance, so every instance sees the
//! claims in one order. The first claim of an id wins:
//!
//! - an id first claimed by the same respondent is accepted (a retry; the
//!   aggregator counts it once, as before);
//! - an id first claimed by another respondent is refused
//!   (`submission_id_taken`), so it is never published or counted.
//!
//! Claims go in batches, one in flight at a time (group commit): while one
//! batch waits for the broker, the next collects. The broker's cost is
//! mostly per request, so under load batches are paced, at most one every
//! 10 ms; the pace eases with the rate of new ids (at 1,000 a second, one
//! every 4 ms), so a claim adds little to a reply when ingest is not busy
//! (`docs/benchmarks.md`). A batch is decided once
//! every claim stored before it has been read: at once when nothing else
//! was written in between (one ingest instance), otherwise when the
//! reader has caught up. The reader fetches only then (and at start, up to
//! the claims stored before): with one ingest instance it never fetches
//! once caught up, and costs the broker nothing. An id already in the book
//! needs no write at all.
//! The book holds 24 bytes of key and value per submission id (33 with
//! alignment and the hash map's control byte).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio::sync::{Notify, oneshot, watch};

use super::error::{IngestError, PublishFailure};

/// Claims written in one record at most (24 bytes each: about 96 KiB).
const MAX_BATCH: usize = 4096;
/// Version byte in front of every claims record.
const FORMAT: u8 = 1;
/// Bytes per claim: 16 of submission key, 8 of respondent key.
const CLAIM_BYTES: usize = 24;
/// The longest the writer waits between batches, for claims to join the next
/// one (the broker's cost is mostly per request): reached at [`FULL_RATE`].
const GATHER: Duration = Duration::from_millis(10);
/// New ids per second at which batches are paced a full [`GATHER`] apart
/// (25 claims each, or more above it); below it the pace eases in proportion.
const FULL_RATE: f64 = 2500.0;
/// How long the reader waits for a record, or idle for a batch to need it,
/// before checking it is still needed.
const POLL: Duration = Duration::from_millis(100);

/// One claim: the keyed hashes of (study, submission id) and of the respondent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// Keyed hash of the study and submission id.
    pub submission: u128,
    /// Keyed hash of the respondent id.
    pub respondent: u64,
}

/// The claims read so far: the first respondent of every submission id, and
/// the offset of the next claims record to read.
#[derive(Debug, Default)]
struct Book {
    first: HashMap<u128, u64>,
    next: i64,
}

impl Book {
    /// Applies the claims record at `offset` if it is the next one; a record
    /// read again (one this instance applied as it was written) changes
    /// nothing, as every claim in it is already in the book.
    fn apply(&mut self, offset: i64, claims: impl Iterator<Item = Claim>) {
        if offset < self.next {
            return;
        }
        for c in claims {
            self.first.entry(c.submission).or_insert(c.respondent);
        }
        self.next = offset + 1;
    }

    /// Whether `claim`'s respondent holds its submission id, once decided.
    fn holds(&self, claim: Claim) -> Option<bool> {
        self.first.get(&claim.submission).map(|&r| r == claim.respondent)
    }
}

/// Encodes claims as one record's payload.
pub fn encode(claims: &[Claim]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + claims.len() * CLAIM_BYTES);
    out.push(FORMAT);
    for c in claims {
        out.extend_from_slice(&c.submission.to_le_bytes());
        out.extend_from_slice(&c.respondent.to_le_bytes());
    }
    out
}

/// Decodes a record's payload; `None` for one of another format.
pub fn decode(payload: &[u8]) -> Option<impl Iterator<Item = Claim> + '_> {
    let (&version, body) = payload.split_first()?;
    if version != FORMAT || body.len() % CLAIM_BYTES != 0 {
        return None;
    }
    Some(body.chunks_exact(CLAIM_BYTES).map(|c| {
        let (s, r) = c.split_at(16);
        Claim {
            submission: u128::from_le_bytes(s.try_into().unwrap_or_default()),
            respondent: u64::from_le_bytes(r.try_into().unwrap_or_default()),
        }
    }))
}

/// When the writer may send its next batch: a [`GATHER`] after the last
/// one, shortened in proportion to the rate of claims below [`FULL_RATE`].
#[derive(Debug, Clone, Copy)]
struct Pace {
    last: tokio::time::Instant,
    /// Claims per second, smoothed over batches.
    rate: f64,
}

impl Pace {
    fn new(now: tokio::time::Instant) -> Pace {
        Pace { last: now, rate: 0.0 }
    }

    /// The earliest time for the next batch.
    fn next(&self) -> tokio::time::Instant {
        self.last + GATHER.mul_f64((self.rate / FULL_RATE).min(1.0))
    }

    /// A batch of `claims` taken at `now`: the rate since the last one
    /// counts for half of the new estimate.
    fn taken(&mut self, claims: usize, now: tokio::time::Instant) {
        let since = now.saturating_duration_since(self.last).as_secs_f64().max(1e-3);
        self.rate = (self.rate + claims as f64 / since) / 2.0;
        self.last = now;
    }
}

struct Waiting {
    claim: Claim,
    reply: oneshot::Sender<Result<bool, IngestError>>,
}

struct Inner {
    topic: String,
    producer: FutureProducer,
    book: Mutex<Book>,
    /// The book's `next`, for the batch waiting on the reader.
    read: watch::Sender<i64>,
    /// The claims' high watermark when the reader started: the book is
    /// complete once `next` reaches it.
    start_end: i64,
    /// The offset the book must reach for the batch waiting on the reader
    /// (the reader fetches only while `next` is below it), and its signal.
    need: Mutex<i64>,
    needed: Condvar,
    waiting: Mutex<Vec<Waiting>>,
    wake: Notify,
    writer: OnceLock<()>,
    timeout: Duration,
}

/// The study-wide book of submission ids (see the module docs). Cheap to
/// clone; the reader and the writer stop once every clone is dropped, so
/// their Kafka clients are gone before a `serve` stops its embedded broker
/// (a client left connected logs `AllBrokersDown` at ERROR).
#[derive(Clone)]
pub struct Claims {
    inner: Arc<Inner>,
    /// Held by every clone and by nothing else (the writer and the reader
    /// hold `inner` and a `Weak` of this): they run while it is held.
    alive: Arc<Alive>,
}

/// Dropped with the last [`Claims`] (its count is 0 by then): wakes the
/// writer and the reader so that they end now rather than at their next
/// poll. The writer then drops the producer instead of waiting for claims
/// that cannot come.
struct Alive(Arc<Inner>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.wake.notify_one();
        // Under the lock the reader waits with, which checks the count first.
        let _need = lock(&self.0.need);
        self.0.needed.notify_all();
    }
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claims").field("topic", &self.inner.topic).finish()
    }
}

impl Claims {
    /// Starts reading the claims `topic` (partition 0) from the beginning
    /// with a consumer made from `reader`; claims are written with
    /// `producer`, each write and read bounded by `timeout`.
    pub fn start(
        producer: FutureProducer,
        reader: &ClientConfig,
        topic: impl Into<String>,
        timeout: Duration,
    ) -> Result<Claims, IngestError> {
        let topic = topic.into();
        let consumer: BaseConsumer = reader.create().map_err(IngestError::Producer)?;
        let start_end = consumer.fetch_watermarks(&topic, 0, timeout).map(|(_, high)| high).unwrap_or(0);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Beginning).map_err(IngestError::Producer)?;
        consumer.assign(&tpl).map_err(IngestError::Producer)?;
        let inner = Arc::new(Inner {
            topic,
            producer,
            book: Mutex::new(Book::default()),
            read: watch::Sender::new(0),
            start_end,
            need: Mutex::new(start_end),
            needed: Condvar::new(),
            waiting: Mutex::new(Vec::new()),
            wake: Notify::new(),
            writer: OnceLock::new(),
            timeout,
        });
        let alive = Arc::new(Alive(inner.clone()));
        let (reader_inner, reader_alive) = (inner.clone(), Arc::downgrade(&alive));
        std::thread::Builder::new()
            .name("fieldwatch-claims".into())
            .spawn(move || read(consumer, &reader_inner, &reader_alive))
            .map_err(|e| IngestError::Config(format!("cannot start the claims reader: {e}")))?;
        Ok(Claims { inner, alive })
    }

    /// Whether every claim stored when this instance started has been read.
    pub fn caught_up(&self) -> bool {
        lock(&self.inner.book).next >= self.inner.start_end
    }

    /// Claims a submission id for a respondent: `true` when the respondent
    /// holds it (claimed now or before by the same respondent), `false` when
    /// another respondent claimed it first. Fails like a publish when the
    /// claim cannot be written or decided in time.
    pub async fn claim(&self, claim: Claim) -> Result<bool, IngestError> {
        if let Some(holds) = lock(&self.inner.book).holds(claim) {
            return Ok(holds);
        }
        let (reply, answer) = oneshot::channel();
        lock(&self.inner.waiting).push(Waiting { claim, reply });
        let inner = &self.inner;
        inner.writer.get_or_init(|| {
            tokio::spawn(write(inner.clone(), Arc::downgrade(&self.alive)));
        });
        inner.wake.notify_one();
        // The writer answers every claim within its bounds (the write's and
        // the reader's `timeout`), so no timer of its own per claim.
        answer.await.unwrap_or(Err(IngestError::Publish { reason: PublishFailure::Canceled, source: None }))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The reader: applies every claims record in order, while the book is
/// short of what is needed (the claims stored at start, or those before a
/// batch being decided), until every [`Claims`] is dropped. Otherwise its
/// partition is paused: no fetches. On resuming, it reads on from the last
/// record it read; records the writer applied meanwhile apply again as no-ops.
fn read(consumer: BaseConsumer, inner: &Inner, alive: &Weak<Alive>) {
    let mut partition = TopicPartitionList::new();
    partition.add_partition(&inner.topic, 0);
    let mut paused = false;
    while alive.strong_count() > 0 {
        let next = lock(&inner.book).next;
        let short = next < *lock(&inner.need);
        if short == paused {
            let turn = if short { consumer.resume(&partition) } else { consumer.pause(&partition) };
            match turn {
                Ok(()) => paused = !short,
                Err(e) => {
                    tracing::debug!(error = %crate::errors::chain(&e), "claims: pause or resume failed");
                    // Not in a loop without a wait: try again after a poll's time.
                    std::thread::sleep(POLL);
                }
            }
        }
        if paused {
            // The writer raises `need` under its lock, so a raise after the
            // check above is seen here or wakes the wait.
            let need = lock(&inner.need);
            if alive.strong_count() > 0 && lock(&inner.book).next >= *need {
                let _ = inner.needed.wait_timeout(need, POLL);
            }
            continue;
        }
        match consumer.poll(POLL) {
            None => {}
            Some(Err(e)) => {
                // A broker outage shows in health (the probe); this would repeat every poll.
                tracing::debug!(error = %crate::errors::chain(&e), "claims: read failed");
            }
            Some(Ok(m)) => {
                let mut book = lock(&inner.book);
                match m.payload().and_then(decode) {
                    Some(claims) => book.apply(m.offset(), claims),
                    None => {
                        tracing::warn!(offset = m.offset(), "claims: a record of another format skipped");
                        book.apply(m.offset(), std::iter::empty());
                    }
                }
                let next = book.next;
                drop(book);
                inner.read.send_replace(next);
            }
        }
    }
}

/// The writer: one batch in flight at a time.
async fn write(inner: Arc<Inner>, alive: Weak<Alive>) {
    let mut pace = Pace::new(tokio::time::Instant::now());
    loop {
        // Claims arriving meanwhile share the batch.
        tokio::time::sleep_until(pace.next()).await;
        let batch: Vec<Waiting> = {
            let mut w = lock(&inner.waiting);
            let n = w.len().min(MAX_BATCH);
            w.drain(..n).collect()
        };
        if batch.is_empty() {
            // A claim holds its `Claims`, so none is waiting once all are gone.
            if alive.strong_count() == 0 {
                return;
            }
            inner.wake.notified().await;
            continue;
        }
        pace.taken(batch.len(), tokio::time::Instant::now());
        match decide(&inner, &batch).await {
            Ok(holds) => {
                for (w, holds) in batch.into_iter().zip(holds) {
                    let _ = w.reply.send(Ok(holds));
                }
            }
            Err(reason) => {
                for w in batch {
                    let _ = w.reply.send(Err(IngestError::Publish { reason, source: None }));
                }
            }
        }
    }
}

/// Writes a batch and decides it, once every record before it is in the
/// book: whether each claim's respondent holds its submission id.
async fn decide(inner: &Inner, batch: &[Waiting]) -> Result<Vec<bool>, PublishFailure> {
    let claims: Vec<Claim> = batch.iter().map(|w| w.claim).collect();
    let started = std::time::Instant::now();
    let payload = encode(&claims);
    let record: FutureRecord<'_, (), [u8]> = FutureRecord::to(&inner.topic).partition(0).payload(&payload);
    let (_, offset) =
        super::publisher::deliver(&inner.producer, record, inner.timeout).await.map_err(|e| match e {
            IngestError::Publish { reason, .. } => reason,
            _ => PublishFailure::Broker,
        })?;
    let acked = started.elapsed();
    let mut read = inner.read.subscribe();
    if lock(&inner.book).next < offset {
        // Another instance wrote in between: the reader fetches up to it.
        let mut need = lock(&inner.need);
        *need = (*need).max(offset);
        inner.needed.notify_one();
    }
    tokio::time::timeout(inner.timeout, read.wait_for(|&next| next >= offset))
        .await
        .map_err(|_| PublishFailure::Timeout)?
        .map_err(|_| PublishFailure::Canceled)?;
    let mut book = lock(&inner.book);
    book.apply(offset, claims.iter().copied());
    let next = book.next;
    // Every claim of the batch is in the book now, so each is decided.
    let holds = claims.iter().map(|&c| book.holds(c) == Some(true)).collect();
    drop(book);
    inner.read.send_replace(next);
    tracing::debug!(claims = claims.len(), ?acked, decided = ?started.elapsed(), "claims batch");
    Ok(holds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(submission: u128, respondent: u64) -> Claim {
        Claim { submission, respondent }
    }

    #[test]
    fn claims_round_trip_and_other_formats_are_refused() {
        let claims = vec![c(u128::MAX - 1, 7), c(3, u64::MAX)];
        let bytes = encode(&claims);
        assert_eq!(bytes.len(), 1 + 2 * CLAIM_BYTES);
        assert_eq!(decode(&bytes).expect("decodes").collect::<Vec<_>>(), claims);
        assert!(decode(&[]).is_none());
        assert!(decode(&[2]).is_none());
        assert!(decode(&bytes[..bytes.len() - 1]).is_none());
        assert_eq!(decode(&[FORMAT]).expect("empty batch").count(), 0);
    }

    #[test]
    fn batches_are_paced_by_the_rate_of_claims_up_to_the_full_gather() {
        let t0 = tokio::time::Instant::now();
        let ms = Duration::from_millis;
        let mut pace = Pace::new(t0);
        assert_eq!(pace.next(), t0, "no claims yet: the first batch goes at once");
        // 10 claims in 10 ms: 1,000/s, half of it counted at first.
        pace.taken(10, t0 + ms(10));
        assert_eq!(pace.next(), t0 + ms(10) + ms(2));
        pace.taken(2, t0 + ms(11));
        assert_eq!((pace.rate, pace.next()), (1250.0, t0 + ms(11) + ms(5)));
        // Busy: 100 claims in 10 ms is far over FULL_RATE: a full GATHER.
        pace.taken(100, t0 + ms(21));
        pace.taken(100, t0 + ms(31));
        assert_eq!(pace.next(), t0 + ms(31) + GATHER);
        // After an idle second the estimate halves at each batch, and so
        // does the wait.
        let mut at = t0 + ms(31);
        for _ in 0..2 {
            at += ms(1000);
            pace.taken(1, at);
        }
        assert!(pace.rate < FULL_RATE && pace.next() < at + GATHER);
        at += ms(1000);
        pace.taken(1, at);
        assert!(pace.rate < FULL_RATE / 2.0 && pace.next() < at + GATHER / 2);
    }

    #[test]
    fn the_first_claim_of_an_id_wins_and_records_apply_once_in_order() {
        let mut book = Book::default();
        assert_eq!(book.holds(c(1, 10)), None);
        book.apply(0, [c(1, 10), c(1, 11), c(2, 20)].into_iter());
        assert_eq!(book.next, 1);
        assert_eq!(book.holds(c(1, 10)), Some(true));
        assert_eq!(book.holds(c(1, 11)), Some(false));
        // Read again (applied as written, then read back): nothing changes.
        book.apply(0, [c(3, 30)].into_iter());
        assert_eq!((book.next, book.holds(c(3, 30))), (1, None));
        // A later record cannot take an id over.
        book.apply(1, [c(2, 21), c(3, 30)].into_iter());
        assert_eq!(
            (book.holds(c(2, 21)), book.holds(c(2, 20)), book.holds(c(3, 30))),
            (Some(false), Some(true), Some(true))
        );
        assert_eq!(book.next, 2);
    }
}
