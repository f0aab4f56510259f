//! `fieldwatch submit`: streams a JSONL file of submissions — interviews
//! and case dispositions (`"kind": "disposition"`, see
//! [`crate::fieldwork::parse_line`]) — to a running service over gRPC
//! (`SubmitStream`), shows progress, prints each rejected
//! line with its reasons, and resends records that got a retryable code
//! (UNAVAILABLE, RESOURCE_EXHAUSTED) or no result at all (the stream broke)
//! with the same submission ids, so a retry is counted once.
//!
//! The input is read as it is sent: at most `window` records are held at
//! once (read and not yet stored, rejected or given up), each as its
//! encoded request ([`window::Pending`]), so memory does not grow with the
//! input. One stream carries the whole input while it lasts; records that
//! got a retryable code wait beside it and go first on the next stream,
//! which starts when the input is sent, when the window holds nothing but
//! such records, or when the stream broke.

mod input;
mod window;
mod wire;

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Endpoint;

use crate::proto::v1::SubmitResult;
use input::{Input, Read};
use window::{InFlight, Pending};

/// Records held at once by [`run`]: a few megabytes of encoded demo
/// interviews, far more than the server reads ahead of its results
/// (`ingest.stream_window`, 256), so the stream never waits for the window
/// unless many records wait for a resend.
pub const DEFAULT_WINDOW: usize = 4096;

/// Encoded records handed to the connection and not yet written: the
/// connection task reads them as HTTP/2 flow control lets it; the loop in
/// [`Run::attempt`] holds the sender and waits for room. Part of the window.
const REQUEST_BUFFER: usize = 32;

/// How often a progress line is printed (when asked for).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Options of `submit`.
#[derive(Debug, Clone)]
pub struct SubmitOptions {
    /// gRPC endpoint, e.g. `http://127.0.0.1:50051`.
    pub server: String,
    /// Bearer token, if the server requires one.
    pub token: Option<String>,
    /// Give up retrying after this long without progress.
    pub retry_for: Duration,
    /// Print progress to stderr.
    pub progress: bool,
}

/// The outcome of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmitSummary {
    /// Non-empty lines read.
    pub lines: usize,
    /// Records the server stored.
    pub accepted: usize,
    /// Lines rejected (invalid JSON or invalid interview).
    pub rejected: usize,
    /// Records that still had no success when retrying gave up.
    pub failed: usize,
    /// Resends after retryable outcomes.
    pub resent: usize,
}

impl std::fmt::Display for SubmitSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "submitted {} lines: {} accepted, {} rejected, {} not stored, {} resends",
            self.lines, self.accepted, self.rejected, self.failed, self.resent
        )
    }
}

impl SubmitSummary {
    /// Whether every line was stored.
    pub fn all_stored(&self) -> bool {
        self.rejected == 0 && self.failed == 0
    }
}

/// Errors of `submit`.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The input could not be read.
    #[error("cannot read input")]
    Read(#[source] std::io::Error),
    /// The server address is not a valid endpoint.
    #[error("invalid server address")]
    Endpoint(#[source] tonic::transport::Error),
    /// The token is not a valid header value.
    #[error("the token is not a valid header value")]
    Token,
}

/// Reads `input` and submits it with [`DEFAULT_WINDOW`]; rejected lines
/// are written to `out`.
pub async fn run(
    input: impl BufRead,
    opts: &SubmitOptions,
    out: &mut impl Write,
) -> Result<SubmitSummary, SubmitError> {
    run_with_window(input, opts, DEFAULT_WINDOW, out).await
}

/// [`run`], holding at most `window` records (at least 1) at once.
///
/// Reading blocks the calling task: the input is a file or a pipe. (The
/// binary runs this future on its main thread, not on a runtime worker.)
pub async fn run_with_window(
    input: impl BufRead,
    opts: &SubmitOptions,
    window: usize,
    out: &mut impl Write,
) -> Result<SubmitSummary, SubmitError> {
    let endpoint = Endpoint::from_shared(opts.server.clone())
        .map_err(SubmitError::Endpoint)?
        .connect_timeout(Duration::from_secs(5));
    let auth: Option<MetadataValue<Ascii>> = match &opts.token {
        Some(t) => Some(format!("Bearer {t}").parse().map_err(|_| SubmitError::Token)?),
        None => None,
    };
    let started = Instant::now();
    let mut run = Run {
        input: Input::new(input),
        out,
        progress: opts.progress.then(|| started + PROGRESS_EVERY),
        started,
        window: window.max(1),
        summary: SubmitSummary::default(),
        to_send: VecDeque::new(),
        in_flight: InFlight::default(),
        resend: VecDeque::new(),
        settled: false,
    };
    let mut backoff = Duration::from_millis(200);
    let mut stalled_since = Instant::now();
    loop {
        run.settled = false;
        if let Some(status) = run.attempt(&endpoint, auth.as_ref()).await? {
            let _ = writeln!(run.out, "server refused the stream: {:?}: {}", status.code(), status.message());
            run.fail_rest(false)?;
            break;
        }
        // Records with a retryable result, then those without a result (sent
        // later), go first on the next stream, before lines not sent yet.
        let again: Vec<Pending> = run.resend.drain(..).chain(run.in_flight.drain()).collect();
        let resends = again.len();
        for p in again.into_iter().rev() {
            run.to_send.push_front(p);
        }
        if run.to_send.is_empty() && run.input.done() {
            break;
        }
        if run.settled {
            stalled_since = Instant::now();
            backoff = Duration::from_millis(200);
        }
        if stalled_since.elapsed() > opts.retry_for {
            run.fail_rest(true)?;
            break;
        }
        run.summary.resent += resends;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    Ok(run.summary)
}

/// The state of one run: the input, the held records and the counts.
/// Held records: `to_send` (read or to resend, not sent on this stream),
/// `in_flight` (sent, no result yet) and `resend` (a retryable result,
/// waiting for the next stream); together at most `window`.
struct Run<'o, R, W> {
    input: Input<R>,
    out: &'o mut W,
    /// When the next progress line is due; `None`: no progress lines.
    progress: Option<Instant>,
    started: Instant,
    window: usize,
    summary: SubmitSummary,
    to_send: VecDeque<Pending>,
    in_flight: InFlight,
    resend: VecDeque<Pending>,
    /// Whether a record was stored or rejected during this attempt.
    settled: bool,
}

impl<R: BufRead, W: Write> Run<'_, R, W> {
    fn held(&self) -> usize {
        self.to_send.len() + self.in_flight.len() + self.resend.len()
    }

    /// Reads lines until the window is full or the input ends; lines that
    /// are not submission objects are reported at once.
    fn fill(&mut self) -> Result<(), SubmitError> {
        while self.held() < self.window {
            match self.input.next()? {
                None => break,
                Some(read) => {
                    self.summary.lines += 1;
                    match read {
                        Read::Record(p) => self.to_send.push_back(p),
                        Read::Invalid(line, e) => {
                            self.summary.rejected += 1;
                            let _ = writeln!(self.out, "line {line}: not a submission object: {e}");
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// One stream: sends held and newly read records while results come
    /// back, until the server ends the stream (after this side finished
    /// sending, or early). Returns the status of a refused stream.
    async fn attempt(
        &mut self,
        endpoint: &Endpoint,
        auth: Option<&MetadataValue<Ascii>>,
    ) -> Result<Option<tonic::Status>, SubmitError> {
        self.fill()?;
        if self.to_send.is_empty() && self.resend.is_empty() && self.input.done() {
            return Ok(None);
        }
        // Dropping `tx` ends the request stream (half-close); the server
        // then answers what it read and ends the results.
        let (tx, rx) = mpsc::channel::<Bytes>(REQUEST_BUFFER);
        let mut results = match wire::open(endpoint, auth, ReceiverStream::new(rx)).await {
            Ok(results) => results,
            Err(status) if retryable(status.code()) => {
                tracing::warn!(code = ?status.code(), "stream failed; will retry");
                return Ok(None);
            }
            Err(status) => return Ok(Some(status)),
        };
        let mut tx = Some(tx);
        loop {
            self.fill()?;
            // Nothing more to send on this stream: the input is sent, or
            // the window holds only records waiting for the next stream.
            let last_sent = self.input.done() || (self.in_flight.is_empty() && self.held() >= self.window);
            if self.to_send.is_empty() && last_sent {
                tx = None;
            }
            let mut closed = false;
            tokio::select! {
                // Results first: each one frees room in the window.
                biased;
                message = results.message() => match message {
                    Ok(Some(r)) => self.settle(r),
                    Ok(None) => break,
                    Err(s) => {
                        tracing::warn!(code = ?s.code(), waiting = self.in_flight.len(), "stream ended early");
                        break;
                    }
                },
                permit = reserve(tx.as_ref()), if !self.to_send.is_empty() => match permit {
                    Some(permit) => {
                        if let Some(p) = self.to_send.pop_front() {
                            permit.send(p.bytes.clone());
                            self.in_flight.push(p);
                        }
                    }
                    // The connection dropped the request stream: the
                    // results end soon, and the records go on the next one.
                    None => closed = true,
                },
                () = sleep_until(self.progress) => self.print_progress(),
            }
            if closed {
                tx = None;
            }
        }
        Ok(None)
    }

    /// Counts a record's result: stored, rejected (printed with its line)
    /// or held for a resend.
    fn settle(&mut self, r: SubmitResult) {
        let Some(p) = self.in_flight.take(r.index) else {
            tracing::warn!(index = r.index, "a result for no record sent; ignored");
            return;
        };
        if r.accepted {
            self.summary.accepted += 1;
            self.settled = true;
        } else if retryable(tonic::Code::from_i32(r.code)) {
            self.resend.push_back(p);
        } else {
            self.summary.rejected += 1;
            self.settled = true;
            if r.violations.is_empty() {
                let _ = writeln!(self.out, "line {}: {}", p.line, r.message);
            }
            for v in &r.violations {
                let _ = writeln!(self.out, "line {}: {} ({}): {}", p.line, v.field, v.rule, v.message);
            }
        }
    }

    /// Counts every held record and the rest of the input as not stored
    /// (printing each line when retrying `gave_up`); lines that are not
    /// submission objects are still reported as rejected.
    fn fail_rest(&mut self, gave_up: bool) -> Result<(), SubmitError> {
        loop {
            let held: Vec<Pending> =
                self.to_send.drain(..).chain(self.in_flight.drain()).chain(self.resend.drain(..)).collect();
            for p in held {
                self.summary.failed += 1;
                if gave_up {
                    let _ = writeln!(
                        self.out,
                        "line {}: not stored (server unavailable; gave up retrying)",
                        p.line
                    );
                }
            }
            if self.input.done() {
                return Ok(());
            }
            self.fill()?;
        }
    }

    fn print_progress(&mut self) {
        self.progress = Some(Instant::now() + PROGRESS_EVERY);
        let s = &self.summary;
        let rate = s.accepted as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        eprintln!(
            "submit: {} lines read, {} accepted, {} rejected, {} resends, {} held ({rate:.0}/s)",
            s.lines,
            s.accepted,
            s.rejected,
            s.resent,
            self.held()
        );
    }
}

/// Room for one request on the stream; never ready once the stream is
/// closed (`None`), or `None` when the connection dropped the receiver.
async fn reserve(tx: Option<&mpsc::Sender<Bytes>>) -> Option<mpsc::Permit<'_, Bytes>> {
    match tx {
        Some(tx) => tx.reserve().await.ok(),
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`; never wakes for `None`.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Codes worth sending the same records again for.
fn retryable(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unavailable
            | tonic::Code::ResourceExhausted
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Cancelled
            | tonic::Code::Unknown
            | tonic::Code::Aborted
    )
}
