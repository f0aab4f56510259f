//! The consumer loop's path for the records ready in its queue: a batch
//! is decoded, validated and checked on every core while the loop's thread
//! applies it in order ([`LiveState::process_batch`]). One record's path is
//! in [`super::record`].

use super::LiveState;
use super::record::{Applying, Done, PreparedRecord};

/// Most records taken from the consumer's queue at once. A batch is
/// whatever is ready when the loop looks (one record at a time while
/// following live submissions; full batches while catching up). Each batch
/// starts and ends with a thread idle and starts its helpers: 1,024 records
/// (about 8 ms of work on two cores) made a backlog 7 % faster than 256
/// (`benches/core.rs`, docs/benchmarks.md "(d) pieces").
pub const BATCH_RECORDS: usize = 1024;

/// Records per piece of a batch: the unit a thread prepares, and the loop's
/// thread applies, at a time ([`LiveState::process_batch`]). A batch of
/// fewer than two pieces is prepared and applied on the loop's own thread.
pub const PIECE_RECORDS: usize = 32;

/// Prepared records of one piece of a batch, and who prepared them.
struct Piece<'a> {
    records: Vec<(i32, i64, PreparedRecord<'a>)>,
    by_helper: bool,
}

/// The pieces of a batch between the threads of
/// [`LiveState::process_batch`]: which is claimed next, the prepared ones
/// not applied yet, and the applied ones a helper is to free.
struct Board<'a> {
    next: std::sync::atomic::AtomicUsize,
    pieces: usize,
    state: std::sync::Mutex<BoardState<'a>>,
    changed: std::sync::Condvar,
}

struct BoardState<'a> {
    prepared: Vec<Option<Piece<'a>>>,
    applied: Vec<Option<Piece<'a>>>,
    helpers: usize,
    loop_done: bool,
}

#[derive(Clone, Copy)]
enum Slot {
    Prepared,
    Applied,
}

#[derive(Clone, Copy)]
enum Side {
    Helper,
    Loop,
}

/// Marks a helper, or the loop's thread, done when dropped (panics
/// included), so that no thread waits for it in vain.
struct Gone<'b, 'a>(&'b Board<'a>, Side);

impl Drop for Gone<'_, '_> {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        match self.1 {
            Side::Helper => s.helpers -= 1,
            Side::Loop => s.loop_done = true,
        }
        drop(s);
        self.0.changed.notify_all();
    }
}

impl<'a> Board<'a> {
    fn new(pieces: usize, helpers: usize) -> Self {
        let empty = || std::iter::repeat_with(|| None).take(pieces).collect();
        Board {
            next: std::sync::atomic::AtomicUsize::new(0),
            pieces,
            state: std::sync::Mutex::new(BoardState {
                prepared: empty(),
                applied: empty(),
                helpers,
                loop_done: false,
            }),
            changed: std::sync::Condvar::new(),
        }
    }

    /// The next piece nobody prepares yet.
    fn claim(&self) -> Option<usize> {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (i < self.pieces).then_some(i)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BoardState<'a>> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn put(&self, i: usize, piece: Piece<'a>) {
        self.lock().prepared[i] = Some(piece);
        self.changed.notify_all();
    }

    fn take(&self, i: usize) -> Option<Piece<'a>> {
        self.lock().prepared[i].take()
    }

    /// Hands piece `i`, applied, back to the helper that prepared it.
    fn applied(&self, i: usize, piece: Piece<'a>) {
        self.lock().applied[i] = Some(piece);
        self.changed.notify_all();
    }

    /// Waits until piece `i` is in `slot`; None when the other side is gone
    /// without putting it there (a panic).
    fn wait(&self, i: usize, slot: Slot) -> Option<Piece<'a>> {
        let mut s = self.lock();
        loop {
            let (found, gone) = match slot {
                Slot::Prepared => (s.prepared[i].take(), s.helpers == 0),
                Slot::Applied => (s.applied[i].take(), s.loop_done),
            };
            if found.is_some() || gone {
                return found;
            }
            s = self.changed.wait(s).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// Gives the calling thread the lowest scheduling priority (nice 19), so
/// that it runs mostly on cores that ingest, the HTTP server or a broker on
/// the same machine leave idle: a backlog is read on every idle core, and
/// on the consumer loop's own core, at normal priority, when none is idle
/// (docs/benchmarks.md, section "(d)", has the runs). On Linux the nice value is
/// the thread's own (`setpriority` with `who` 0); elsewhere, where it would
/// be the whole process's, nothing is changed. Should it fail, the thread
/// keeps its priority.
fn run_last() {
    #[cfg(target_os = "linux")]
    let _ = rustix::process::setpriority_process(None, 19);
}

impl LiveState {
    /// Decodes, validates, checks and applies a batch of records, in order,
    /// on up to as many threads as there are cores. Preparing
    /// ([`LiveState::prepare`]) is two thirds of a record's time and reads no
    /// state, so it runs on every thread, outside the lock; applying stays in
    /// order on the calling thread (the consumer loop's), under the lock one
    /// piece at a time. The batch is cut in pieces of [`PIECE_RECORDS`]; each
    /// thread claims the next unprepared piece; the loop's thread applies the
    /// next piece in order as soon as it is prepared, and prepares one itself
    /// when it is not. So applying overlaps the helpers' preparing instead of
    /// waiting for all of it, and when a helper gets no core (a broker on the
    /// same machine has it), the loop's thread prepares its pieces.
    ///
    /// Applying borrows a piece; the thread that prepared it frees it (a
    /// helper frees its pieces as they come back applied). Freed on the loop's
    /// thread while the helper still allocated, a helper's memory went back to
    /// the helper's glibc arena under that arena's lock, against the helper:
    /// with that, two threads took as long as one (docs/benchmarks.md, "(d)
    /// pieces"). The helpers run at the lowest priority (nice 19,
    /// `run_last`), on cores nothing else wants; they are scoped threads, so
    /// the records stay borrowed from the consumer's queue. Returns what
    /// [`LiveState::apply_batch`] returns for the same records.
    pub fn process_batch(&self, batch: &[(i32, i64, Option<&[u8]>)]) -> Vec<Done> {
        let prepare = |piece: &[(i32, i64, Option<&[u8]>)]| -> Vec<(i32, i64, PreparedRecord<'_>)> {
            piece
                .iter()
                .map(|&(partition, offset, payload)| (partition, offset, self.prepare(payload)))
                .collect()
        };
        // Read once: on Linux, std reads the cgroup's CPU quota from files on every call.
        static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let helpers = cores.min(batch.len().div_ceil(PIECE_RECORDS)).saturating_sub(1);
        if helpers == 0 {
            return self.apply_batch(prepare(batch));
        }
        let pieces: Vec<_> = batch.chunks(PIECE_RECORDS).collect();
        let board = Board::new(pieces.len(), helpers);
        std::thread::scope(|scope| {
            for _ in 0..helpers {
                scope.spawn(|| {
                    run_last();
                    // Marks the helper gone however it ends, panics included,
                    // so that the loop's thread never waits for it in vain.
                    let _gone = Gone(&board, Side::Helper);
                    let mut mine = Vec::new();
                    while let Some(i) = board.claim() {
                        board.put(i, Piece { records: prepare(pieces[i]), by_helper: true });
                        mine.push(i);
                    }
                    for i in mine {
                        // None: the loop's thread stopped early (a panic).
                        let Some(applied) = board.wait(i, Slot::Applied) else { break };
                        drop(applied);
                    }
                });
            }
            let _done = Gone(&board, Side::Loop);
            let mut applying = Applying::default();
            for i in 0..pieces.len() {
                let piece = loop {
                    if let Some(piece) = board.take(i) {
                        break piece;
                    }
                    if let Some(j) = board.claim() {
                        let piece = Piece { records: prepare(pieces[j]), by_helper: false };
                        if j == i {
                            break piece;
                        }
                        board.put(j, piece);
                        continue;
                    }
                    match board.wait(i, Slot::Prepared) {
                        Some(piece) => break piece,
                        // A helper panicked with the piece: the scope resumes its panic.
                        None => return applying.done,
                    }
                };
                self.apply_piece(&piece.records, &mut applying);
                if piece.by_helper {
                    board.applied(i, piece);
                }
            }
            applying.done
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Outcome;
    use crate::aggregate::test_study::live;

    /// The helpers' priority is their own: the thread that spawned them
    /// keeps its own.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_helper_runs_last_and_its_spawner_does_not() {
        let own = rustix::process::getpriority_process(None).expect("own priority");
        let helper = std::thread::spawn(|| {
            run_last();
            rustix::process::getpriority_process(None).expect("helper priority")
        })
        .join()
        .expect("helper");
        assert_eq!(helper, 19);
        assert_eq!(rustix::process::getpriority_process(None).expect("own priority"), own);
        assert!(own < 19, "the test runs at a normal priority: {own}");
    }

    /// An envelope of an interview of `study`: some with out-of-range
    /// answers (flagged), some with a number for a yes/no item (invalid);
    /// respondents repeat, so some are duplicates.
    fn envelope(study: &str, n: usize) -> Vec<u8> {
        let q2 = if n % 11 == 5 { serde_json::json!(7) } else { serde_json::json!("yes") };
        let answers = serde_json::json!({"q1": n % 7, "q2": q2});
        let (respondent, submission) = (format!("r{}", n % 150), format!("s{n}"));
        crate::aggregate::test_study::envelope(
            study,
            &respondent,
            &submission,
            answers,
            1_700_000_000 + n as i64,
        )
    }

    fn flags(shared: &LiveState) -> Vec<String> {
        let page = shared.flags("t", &Default::default(), 1, 1_000);
        page.flags.iter().map(|f| serde_json::to_string(f).expect("json")).collect()
    }

    #[test]
    fn a_batch_prepared_on_several_threads_applies_as_its_records_one_by_one() {
        // Three partitions interleaved, with a record that is no envelope
        // and one of a study the catalog does not have.
        let payloads: Vec<(i32, i64, Vec<u8>)> = (0..240)
            .map(|n| {
                let payload = match n {
                    17 => b"not an envelope".to_vec(),
                    18 => envelope("other", n),
                    _ => envelope("t", n),
                };
                ((n % 3) as i32, (n / 3) as i64, payload)
            })
            .collect();
        let batch: Vec<(i32, i64, Option<&[u8]>)> =
            payloads.iter().map(|(p, o, b)| (*p, *o, Some(b.as_slice()))).collect();
        let (one_by_one, batched) = (live(), live());
        for p in 0..3 {
            one_by_one.assign(p, None);
            batched.assign(p, None);
        }
        let expected: Vec<_> = batch
            .iter()
            .map(|&(p, o, b)| {
                let (outcome, flagged) = one_by_one.apply_record(p, o, b);
                (p, o, outcome, flagged.map(|q| q.flagged))
            })
            .collect();
        let got: Vec<_> = batched
            .process_batch(&batch)
            .into_iter()
            .map(|(p, o, outcome, q)| (p, o, outcome, q.map(|q| q.flagged)))
            .collect();
        assert_eq!(got, expected);
        let outcomes = batched.outcomes();
        for outcome in [Outcome::Applied, Outcome::Invalid, Outcome::DecodeError, Outcome::UnknownStudy] {
            assert!(outcomes.get(&outcome).is_some_and(|n| *n > 0), "{outcome:?} in {outcomes:?}");
        }
        assert_eq!(outcomes, one_by_one.outcomes());
        assert_eq!(batched.merged("t"), one_by_one.merged("t"));
        assert!(!flags(&batched).is_empty());
        assert_eq!(flags(&batched), flags(&one_by_one));
    }

    /// A thread that waits for a piece the other side will never hand over
    /// (it panicked) is let go instead of waiting for ever.
    #[test]
    fn a_wait_for_a_piece_ends_when_the_other_side_is_gone() {
        let board = Board::new(2, 1);
        let piece = || Piece { records: Vec::new(), by_helper: true };
        board.put(1, piece());
        assert!(board.wait(1, Slot::Prepared).is_some(), "a piece put is found");
        std::thread::scope(|scope| {
            let waiting = scope.spawn(|| board.wait(0, Slot::Prepared).is_none());
            drop(Gone(&board, Side::Helper));
            assert!(waiting.join().expect("the waiting thread"), "no piece: the helper is gone");
            let waiting = scope.spawn(|| board.wait(0, Slot::Applied).is_none());
            drop(Gone(&board, Side::Loop));
            assert!(waiting.join().expect("the waiting thread"), "no piece: the loop's thread is gone");
        });
        board.applied(1, piece());
        assert!(board.wait(1, Slot::Applied).is_some(), "a piece handed back is found");
        assert_eq!((board.claim(), board.claim(), board.claim()), (Some(0), Some(1), None));
    }

    #[test]
    fn after_a_gap_the_rest_of_its_partition_is_left_out_of_the_batch() {
        let shared = live();
        shared.assign(0, None);
        shared.assign(1, None);
        let e: Vec<Vec<u8>> = (20..26).map(|n| envelope("t", n)).collect();
        // Partition 0 skips offset 1; partition 1 is in order.
        let batch = [
            (0, 0, Some(&e[0][..])),
            (0, 2, Some(&e[1][..])),
            (1, 0, Some(&e[2][..])),
            (0, 3, Some(&e[3][..])),
            (1, 1, Some(&e[4][..])),
        ];
        let done: Vec<_> =
            shared.process_batch(&batch).into_iter().map(|(p, o, outcome, _)| (p, o, outcome)).collect();
        assert_eq!(
            done,
            [
                (0, 0, Outcome::Applied),
                (0, 2, Outcome::Gap),
                (1, 0, Outcome::Applied),
                (1, 1, Outcome::Applied)
            ]
        );
        assert_eq!((shared.next_offset(0), shared.next_offset(1)), (Some(1), Some(2)));
        // After the seek back, the partition's records come again from offset 1.
        let again = [(0, 1, Some(&e[5][..])), (0, 2, Some(&e[1][..])), (0, 3, Some(&e[3][..]))];
        let outcomes: Vec<_> = shared.process_batch(&again).into_iter().map(|d| d.2).collect();
        assert_eq!(outcomes, [Outcome::Applied; 3]);
        assert_eq!(shared.next_offset(0), Some(4));
    }
}
