//! `fieldwatch submit`: streams a JSONL file of submissions — interviews
//! and case dispositions (`"kind": "disposition"`, see
//! [`crate::fieldwork::parse_line`]) — to a running service over gRPC
//! (`SubmitStream`), shows progress, prints each rejected
//! line with its reasons, and resends records that got a retryable code
//! (UNAVAILABLE, RESOURCE_EXHAUSTED) or no result at all (the stream broke)
//! with the same submission ids, so a retry is counted once.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

use crate::fieldwork::{Line, parse_line};
use crate::proto::v1::ingest_service_client::IngestServiceClient;
use crate::proto::v1::{SubmitRequest, SubmitResult};

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

struct Pending {
    line: usize,
    request: SubmitRequest,
}

/// Reads `input` and submits it; rejected lines are written to `out`.
pub async fn run(
    input: impl BufRead,
    opts: &SubmitOptions,
    out: &mut impl Write,
) -> Result<SubmitSummary, SubmitError> {
    let mut summary = SubmitSummary::default();
    let mut pending = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line = line.map_err(SubmitError::Read)?;
        if line.trim().is_empty() {
            continue;
        }
        summary.lines += 1;
        let request = match parse_line(&line) {
            Ok(Line::Interview(s)) => Ok(SubmitRequest { submission: Some((*s).into()), disposition: None }),
            Ok(Line::Disposition(d)) => Ok(SubmitRequest { submission: None, disposition: Some(d.into()) }),
            Err(e) => Err(e),
        };
        match request {
            Ok(request) => pending.push(Pending { line: n + 1, request }),
            Err(e) => {
                summary.rejected += 1;
                let _ = writeln!(out, "line {}: not a submission object: {e}", n + 1);
            }
        }
    }
    let endpoint = Endpoint::from_shared(opts.server.clone())
        .map_err(SubmitError::Endpoint)?
        .connect_timeout(Duration::from_secs(5));
    let auth: Option<MetadataValue<_>> = match &opts.token {
        Some(t) => Some(format!("Bearer {t}").parse().map_err(|_| SubmitError::Token)?),
        None => None,
    };

    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut backoff = Duration::from_millis(200);
    let mut stalled_since = Instant::now();
    let total = pending.len();
    while !pending.is_empty() {
        let before = pending.len();
        let results = match stream_once(&endpoint, auth.as_ref(), &pending).await {
            Ok(r) => r,
            Err(status) if !retryable(status.code()) => {
                summary.failed = pending.len();
                let _ = writeln!(out, "server refused the stream: {:?}: {}", status.code(), status.message());
                break;
            }
            Err(status) => {
                tracing::warn!(code = ?status.code(), "stream failed; will retry");
                Vec::new()
            }
        };
        let mut retry = Vec::new();
        let mut by_index: Vec<Option<SubmitResult>> = vec![None; pending.len()];
        for r in results {
            if let Some(slot) = usize::try_from(r.index).ok().and_then(|i| by_index.get_mut(i)) {
                *slot = Some(r);
            }
        }
        for (p, r) in pending.into_iter().zip(by_index) {
            match r {
                Some(r) if r.accepted => summary.accepted += 1,
                Some(r) if retryable(tonic::Code::from_i32(r.code)) => retry.push(p),
                Some(r) => {
                    summary.rejected += 1;
                    if r.violations.is_empty() {
                        let _ = writeln!(out, "line {}: {}", p.line, r.message);
                    }
                    for v in &r.violations {
                        let _ = writeln!(out, "line {}: {} ({}): {}", p.line, v.field, v.rule, v.message);
                    }
                }
                None => retry.push(p),
            }
        }
        if opts.progress && (last_progress.elapsed() > Duration::from_secs(1) || retry.is_empty()) {
            last_progress = Instant::now();
            let rate = summary.accepted as f64 / started.elapsed().as_secs_f64().max(1e-3);
            eprintln!(
                "submit: {}/{} accepted, {} rejected, {} to resend ({rate:.0}/s)",
                summary.accepted,
                total,
                summary.rejected,
                retry.len()
            );
        }
        if retry.len() < before {
            stalled_since = Instant::now();
            backoff = Duration::from_millis(200);
        }
        if !retry.is_empty() {
            if stalled_since.elapsed() > opts.retry_for {
                summary.failed = retry.len();
                for p in &retry {
                    let _ =
                        writeln!(out, "line {}: not stored (server unavailable; gave up retrying)", p.line);
                }
                break;
            }
            summary.resent += retry.len();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        pending = retry;
    }
    Ok(summary)
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

/// One `SubmitStream` call over `pending`; returns the results received
/// before the stream ended (all of them unless it broke).
async fn stream_once(
    endpoint: &Endpoint,
    auth: Option<&MetadataValue<tonic::metadata::Ascii>>,
    pending: &[Pending],
) -> Result<Vec<SubmitResult>, tonic::Status> {
    let channel: Channel =
        endpoint.connect().await.map_err(|e| tonic::Status::unavailable(format!("connect: {e}")))?;
    let mut client = IngestServiceClient::new(channel).max_decoding_message_size(16 << 20);
    let reqs: Vec<SubmitRequest> = pending.iter().map(|p| p.request.clone()).collect();
    let mut request = tonic::Request::new(futures::stream::iter(reqs));
    if let Some(a) = auth {
        request.metadata_mut().insert("authorization", a.clone());
    }
    let mut stream = client.submit_stream(request).await?.into_inner();
    let mut out = Vec::with_capacity(pending.len());
    loop {
        match stream.message().await {
            Ok(Some(r)) => out.push(r),
            Ok(None) => break,
            Err(s) => {
                tracing::warn!(code = ?s.code(), received = out.len(), "stream ended early");
                break;
            }
        }
    }
    Ok(out)
}
