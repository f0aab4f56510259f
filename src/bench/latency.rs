//! (c): unary `Submit` latency at a fixed, open-loop request rate.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tonic::transport::Endpoint;

use super::clock::{CpuClock, Progress, progress};
use super::report::Latency;
use super::{BenchError, BenchOptions, REQUEST_TIMEOUT, WARMUP_REQUESTS, WARMUP_SECONDS};
use crate::proto::v1::ingest_service_client::IngestServiceClient;
use crate::proto::v1::{self, SubmitRequest};

/// (c): unary `Submit` at `opts.rate` per second for `opts.seconds`,
/// open-loop: each call is spawned at its scheduled time whether or not
/// earlier ones have answered.
pub(super) async fn unary_latency(
    endpoint: &Endpoint,
    submissions: Vec<v1::Submission>,
    opts: &BenchOptions,
) -> Result<Latency, BenchError> {
    const PHASE: &str = "(c) unary Submit";
    let client = IngestServiceClient::new(endpoint.connect().await?);
    let mut submissions = submissions.into_iter();
    progress(format_args!("{PHASE}: {WARMUP_REQUESTS} warm-up calls"));
    for sub in submissions.by_ref().take(WARMUP_REQUESTS as usize) {
        let _ = tokio::time::timeout(
            REQUEST_TIMEOUT,
            client.clone().submit(SubmitRequest { submission: Some(sub), disposition: None }),
        )
        .await;
    }

    let warmup = u64::from(opts.rate) * WARMUP_SECONDS;
    let total = u64::from(opts.rate) * opts.seconds;
    let period = Duration::from_secs_f64(1.0 / f64::from(opts.rate));
    let answered = Arc::new(AtomicU64::new(0));
    let _progress = Progress::start(PHASE, warmup + total, answered.clone());
    // Samples of answered calls. Its capacity is the number of calls, so a
    // call never waits to report; the senders are the ticker and the call
    // tasks, and the receiver ends once all of them are done.
    let (samples_tx, mut samples_rx) =
        mpsc::channel::<Sample>(usize::try_from(warmup + total).unwrap_or(usize::MAX).max(1));
    // Set when the phase times out: the ticker stops scheduling calls.
    let abandon = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Handle::current();
    let cpu = CpuClock::start();
    let started = Instant::now();
    // The ticker runs on a blocking-pool thread because std's sleep wakes
    // within microseconds of the deadline, while tokio's timer rounds up to
    // the next millisecond, which would add up to 1 ms to every latency.
    // Each call is spawned onto the runtime at its scheduled time, whether
    // or not earlier calls have answered (open loop). Every call ends by
    // REQUEST_TIMEOUT.
    let ticker = tokio::task::spawn_blocking({
        let (answered, abandon) = (answered.clone(), abandon.clone());
        move || {
            // The measured span starts after the warm-up calls.
            let begin = Instant::now() + Duration::from_millis(10) + period.mul_f64(warmup as f64);
            let mut max_lag = Duration::ZERO;
            let mut last = begin;
            for (i, sub) in submissions.enumerate() {
                if abandon.load(Ordering::Relaxed) {
                    break;
                }
                let at = (begin + period.mul_f64(i as f64)) - period.mul_f64(warmup as f64);
                let now = Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                }
                let now = Instant::now();
                if at >= begin {
                    max_lag = max_lag.max(now.saturating_duration_since(at));
                    last = now;
                }
                let (mut client, samples, answered) = (client.clone(), samples_tx.clone(), answered.clone());
                runtime.spawn(async move {
                    let sent = Instant::now();
                    let r = tokio::time::timeout(
                        REQUEST_TIMEOUT,
                        client.submit(SubmitRequest { submission: Some(sub), disposition: None }),
                    )
                    .await;
                    let from_send = sent.elapsed();
                    let from_schedule = at.elapsed();
                    answered.fetch_add(1, Ordering::Relaxed);
                    let error = match r {
                        Ok(Ok(_)) => None,
                        Ok(Err(status)) => Some(format!("{:?}", status.code())),
                        Err(_) => Some("Timeout".to_owned()),
                    };
                    // Cannot be full: one slot per call.
                    // Warm-up calls (scheduled before `begin`) are not reported.
                    if let Some(offset) = at.checked_duration_since(begin) {
                        let _ = samples.try_send(Sample { offset, from_schedule, from_send, error });
                    }
                });
            }
            (max_lag, last.saturating_duration_since(begin))
        }
    });
    let timeout = opts.phase_timeout().max(Duration::from_secs(opts.seconds) + REQUEST_TIMEOUT * 2);
    let collected = tokio::time::timeout(timeout, async {
        let mut samples: Vec<Sample> = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        while let Some(s) = samples_rx.recv().await {
            samples.push(s);
        }
        samples
    })
    .await;
    let samples = match collected {
        Ok(samples) => samples,
        Err(_) => {
            abandon.store(true, Ordering::Relaxed);
            return Err(BenchError::Timeout {
                phase: PHASE,
                timeout,
                done: answered.load(Ordering::Relaxed),
                total,
            });
        }
    };
    let (cpu, elapsed) = (cpu.elapsed(), started.elapsed());
    let (max_send_lag, span) = ticker.await.map_err(|e| BenchError::Task(PHASE, e))?;
    let span = span.as_secs_f64();
    if let Some(path) = &opts.latency_csv {
        write_samples(path, &samples).map_err(|source| BenchError::Csv { path: path.clone(), source })?;
    }
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for s in &samples {
        if let Some(e) = &s.error {
            *errors.entry(e.clone()).or_default() += 1;
        }
    }
    let ok = samples.iter().filter(|s| s.error.is_none()).count() as u64;
    let mut scheduled: Vec<Duration> = samples.iter().map(|s| s.from_schedule).collect();
    let mut sent_at: Vec<Duration> = samples.iter().map(|s| s.from_send).collect();
    Ok(Latency {
        sent: samples.len() as u64,
        ok,
        errors,
        scheduled: percentiles(&mut scheduled),
        sent_at: percentiles(&mut sent_at),
        max_send_lag,
        achieved_rate: if span > 0.0 { (samples.len() as f64 - 1.0) / span } else { 0.0 },
        cpu,
        elapsed,
    })
}

/// One unary call of (c).
struct Sample {
    /// Scheduled send time, from the first call's.
    offset: Duration,
    from_schedule: Duration,
    from_send: Duration,
    /// The status code name, or `Timeout`; `None` when OK.
    error: Option<String>,
}

/// The calls of (c) as CSV, in schedule order.
fn write_samples(path: &std::path::Path, samples: &[Sample]) -> std::io::Result<()> {
    let mut sorted: Vec<&Sample> = samples.iter().collect();
    sorted.sort_by_key(|s| s.offset);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "offset_ms,latency_ms,from_send_ms,error")?;
    for s in sorted {
        writeln!(
            out,
            "{:.3},{:.3},{:.3},{}",
            s.offset.as_secs_f64() * 1e3,
            s.from_schedule.as_secs_f64() * 1e3,
            s.from_send.as_secs_f64() * 1e3,
            s.error.as_deref().unwrap_or("")
        )?;
    }
    out.flush()
}

/// p50, p99 and max (nearest rank); sorts `v`.
fn percentiles(v: &mut [Duration]) -> [Duration; 3] {
    if v.is_empty() {
        return [Duration::ZERO; 3];
    }
    v.sort_unstable();
    let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    [rank(0.50), rank(0.99), v[v.len() - 1]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let [p50, p99, max] = percentiles(&mut v);
        assert_eq!(
            (p50, p99, max),
            (Duration::from_millis(50), Duration::from_millis(99), Duration::from_millis(100))
        );
        assert_eq!(percentiles(&mut []), [Duration::ZERO; 3]);
    }
}
