//! Clocks and progress of the bench: CPU time of this process and of the
//! machine from `/proc`, the load average, and progress lines.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::PROGRESS_EVERY;
use super::report::CpuUse;

/// A progress line: a `tracing` event (stderr with the binary's subscriber).
pub(super) fn progress(what: fmt::Arguments<'_>) {
    tracing::info!(target: "fieldwatch::bench", "{what}");
}

/// Reports `label: done/total` as progress every [`PROGRESS_EVERY`] until dropped.
pub(super) struct Progress(JoinHandle<()>);

impl Progress {
    pub(super) fn start(label: &'static str, total: u64, done: Arc<AtomicU64>) -> Progress {
        progress(format_args!("{label}: {total} records"));
        let start = Instant::now();
        Progress(tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROGRESS_EVERY).await;
                let n = done.load(Ordering::Relaxed);
                let rate = n as f64 / start.elapsed().as_secs_f64();
                progress(format_args!("{label}: {n}/{total} ({rate:.0}/s)"));
            }
        }))
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// CPU time of this process (all threads: broker, clients, servers) and of
/// the whole machine since `start`, from `/proc` (10 ms resolution); `None`
/// elsewhere.
pub(super) struct CpuClock {
    own: Option<Duration>,
    machine: Option<Duration>,
}

impl CpuClock {
    pub(super) fn start() -> CpuClock {
        CpuClock { own: process_cpu(), machine: machine_cpu() }
    }

    pub(super) fn elapsed(&self) -> CpuUse {
        let own = process_cpu().zip(self.own).map(|(now, then)| now.saturating_sub(then));
        let machine = machine_cpu().zip(self.machine).map(|(now, then)| now.saturating_sub(then));
        CpuUse { own, others: machine.zip(own).map(|(m, o)| m.saturating_sub(o)) }
    }
}

/// Busy time of all CPUs (everything but idle and iowait) from `/proc/stat`,
/// in USER_HZ ticks like [`process_cpu`].
fn machine_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line.split_whitespace().skip(1).map_while(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is in user)
    let busy: u64 =
        ticks.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    Some(Duration::from_millis(busy * 10))
}

/// utime + stime of this process. The kernel reports them in USER_HZ ticks,
/// 100 per second on every Linux architecture fieldwatch builds for.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// The CPU model from `/proc/cpuinfo`, when known.
pub(super) fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
}

/// The 1-minute load average from `/proc/loadavg`, when known.
pub(super) fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}
