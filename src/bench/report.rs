//! The figures one `fieldwatch bench` run measured, and their table.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::{BenchOptions, TARGET_AGGREGATE_RATIO, TARGET_INGEST_RATIO, TARGET_P99};

/// Records per second over a timed span.
#[derive(Debug, Clone, Copy, Default)]
pub struct Throughput {
    /// Records that succeeded (acknowledged, accepted, read or applied).
    pub records: u64,
    /// Records that failed (not acknowledged, not accepted).
    pub failed: u64,
    /// The measured span.
    pub elapsed: Duration,
    /// CPU time over the span, when known.
    pub cpu: CpuUse,
}

/// CPU time spent during a span.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    /// By this process: broker, clients and servers.
    pub own: Option<Duration>,
    /// By every other process on the machine (the bench shares the CPUs).
    pub others: Option<Duration>,
}

impl Throughput {
    /// Process CPU time per successful record.
    pub fn cpu_per_record(&self) -> Option<Duration> {
        self.cpu.own.map(|c| c / u32::try_from(self.records.max(1)).unwrap_or(u32::MAX))
    }

    /// `12,345 rec/s, 81 µs CPU/rec`.
    fn figure(&self) -> String {
        match self.cpu_per_record() {
            Some(c) => format!(
                "{} rec/s, {:.0} µs CPU/rec, {} cores (+{} others)",
                thousands(self.rate()),
                c.as_secs_f64() * 1e6,
                cores(self.cpu.own, self.elapsed),
                cores(self.cpu.others, self.elapsed),
            ),
            _ => format!("{} rec/s", thousands(self.rate())),
        }
    }

    /// Successful records per second.
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Latency figures of (c).
#[derive(Debug, Clone, Default)]
pub struct Latency {
    /// Requests sent.
    pub sent: u64,
    /// Requests answered OK.
    pub ok: u64,
    /// Requests not answered OK (by code name), timeouts included.
    pub errors: BTreeMap<String, u64>,
    /// Percentiles from the scheduled send time: p50, p99, max.
    pub scheduled: [Duration; 3],
    /// Percentiles from the actual send: p50, p99, max.
    pub sent_at: [Duration; 3],
    /// Largest delay between a scheduled send and the actual one.
    pub max_send_lag: Duration,
    /// Requests per second actually achieved (sent / span of sends).
    pub achieved_rate: f64,
    /// CPU time over the measured span (warm-up included).
    pub cpu: CpuUse,
    /// The span `cpu` covers.
    pub elapsed: Duration,
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// The options of the run.
    pub options: BenchOptions,
    /// What the broker was.
    pub broker: String,
    /// Logical CPUs (like `nproc`).
    pub cpus: usize,
    /// CPU model, when known.
    pub cpu_model: Option<String>,
    /// 1-minute load average before and after the run, when known.
    pub load: (Option<f64>, Option<f64>),
    /// `linger.ms` of the producers, as configured.
    pub linger_ms: String,
    /// The ingest server's `stream_window` and `max_inflight`.
    pub ingest_limits: (usize, usize),
    /// Mean encoded envelope size, bytes.
    pub envelope_bytes: usize,
    /// (a) raw producer.
    pub raw_produce: Throughput,
    /// (b) ingest through `SubmitStream`.
    pub ingest: Throughput,
    /// (b) rejected results by code.
    pub ingest_rejected: BTreeMap<i32, u64>,
    /// (c) unary latency.
    pub latency: Latency,
    /// (d) raw consumer read rate (first to last record), the faster of two
    /// passes.
    pub raw_consume: Throughput,
    /// (d) the rates of the raw pass before and after the aggregator.
    pub raw_passes: (f64, f64),
    /// (d) aggregator apply rate (first to last record).
    pub aggregate: Throughput,
    /// (d) the aggregator's outcomes.
    pub outcomes: BTreeMap<&'static str, u64>,
    /// (d) consumer-group join time (subscribe to first record): raw, aggregator.
    pub join: (Duration, Duration),
}

impl BenchReport {
    /// (b)/(a).
    pub fn ingest_ratio(&self) -> f64 {
        self.ingest.rate() / self.raw_produce.rate().max(1e-9)
    }

    /// (d) aggregator / raw consumer.
    pub fn aggregate_ratio(&self) -> f64 {
        self.aggregate.rate() / self.raw_consume.rate().max(1e-9)
    }

    /// Whether every target is met.
    pub fn all_met(&self) -> bool {
        self.ingest_ratio() >= TARGET_INGEST_RATIO
            && self.latency.scheduled[1] < TARGET_P99
            && self.latency.errors.is_empty()
            && self.aggregate_ratio() >= TARGET_AGGREGATE_RATIO
    }
}

/// `12345.6` as `12,346`.
pub(super) fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT MET" }
}

/// CPU time over a span as cores, `?` when unknown.
fn cores(cpu: Option<Duration>, span: Duration) -> String {
    cpu.map_or("?".to_owned(), |c| format!("{:.1}", c.as_secs_f64() / span.as_secs_f64().max(1e-9)))
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        let l = &self.latency;
        let load = |x: Option<f64>| x.map_or("?".to_owned(), |v| format!("{v:.2}"));
        writeln!(f, "fieldwatch bench")?;
        writeln!(
            f,
            "machine: {} cpus (nproc){}; load avg (1 min) {} before, {} after; {} build",
            self.cpus,
            self.cpu_model.as_deref().map(|m| format!(", {m}")).unwrap_or_default(),
            load(self.load.0),
            load(self.load.1),
            if cfg!(debug_assertions) { "DEBUG (figures not representative)" } else { "release" },
        )?;
        writeln!(
            f,
            "broker: {}; {} partitions; {} records of the demo study, {} bytes per envelope on average",
            self.broker, o.partitions, o.records, self.envelope_bytes
        )?;
        writeln!(
            f,
            "settings: producer linger.ms {}; ingest stream_window {}, max_inflight {}, study-wide submission ids {}{}",
            self.linger_ms,
            self.ingest_limits.0,
            self.ingest_limits.1,
            if o.no_claims { "off" } else { "on" },
            self.options.kafka_properties.iter().map(|(k, v)| format!("; {k}={v}")).collect::<String>(),
        )?;
        writeln!(f)?;
        let row = |f: &mut fmt::Formatter<'_>, what: &str, figure: &str, target: &str, verdict: &str| {
            writeln!(f, "{what:<52} {figure:>56}  {target:<14} {verdict}")
        };
        row(f, "phase", "figure", "target", "")?;
        row(f, &"-".repeat(52), &"-".repeat(56), &"-".repeat(14), "-------")?;
        row(
            f,
            &format!("(a) raw producer, acks=all, idempotent, {} in flight", o.window),
            &self.raw_produce.figure(),
            "",
            "",
        )?;
        row(
            f,
            &format!("(b) ingest SubmitStream, {} streams, accepted only", o.streams),
            &self.ingest.figure(),
            "",
            "",
        )?;
        let ratio = self.ingest_ratio();
        row(
            f,
            "    ratio (b)/(a)",
            &format!("{:.1} %", ratio * 100.0),
            &format!(">= {:.0} %", TARGET_INGEST_RATIO * 100.0),
            met(ratio >= TARGET_INGEST_RATIO),
        )?;
        row(
            f,
            &format!("(c) unary Submit, {}/s for {} s, open loop", o.rate, o.seconds),
            &format!("p50 {}  p99 {}  max {}", ms(l.scheduled[0]), ms(l.scheduled[1]), ms(l.scheduled[2])),
            &format!("p99 < {} ms", TARGET_P99.as_millis()),
            met(l.scheduled[1] < TARGET_P99 && l.errors.is_empty()),
        )?;
        row(
            f,
            "    (from the actual send)",
            &format!("p50 {}  p99 {}  max {}", ms(l.sent_at[0]), ms(l.sent_at[1]), ms(l.sent_at[2])),
            "",
            "",
        )?;
        row(f, "(d) raw consumer read rate", &self.raw_consume.figure(), "", "")?;
        row(f, "(d) aggregator apply rate (aggregate::run)", &self.aggregate.figure(), "", "")?;
        let ratio = self.aggregate_ratio();
        row(
            f,
            "    ratio aggregator / raw consumer",
            &format!("{:.1} %", ratio * 100.0),
            &format!(">= {:.0} %", TARGET_AGGREGATE_RATIO * 100.0),
            met(ratio >= TARGET_AGGREGATE_RATIO),
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "details: (a) {} acked, {} failed in {:.2} s; (b) {} accepted, {} not accepted {:?} in {:.2} s",
            self.raw_produce.records,
            self.raw_produce.failed,
            self.raw_produce.elapsed.as_secs_f64(),
            self.ingest.records,
            self.ingest.failed,
            self.ingest_rejected,
            self.ingest.elapsed.as_secs_f64(),
        )?;
        writeln!(
            f,
            "         (c) {} sent at {:.0}/s achieved, {} ok, errors {:?}, latest send {} behind schedule; \
             {} cores (+{} others)",
            l.sent,
            l.achieved_rate,
            l.ok,
            l.errors,
            ms(l.max_send_lag),
            cores(l.cpu.own, l.elapsed),
            cores(l.cpu.others, l.elapsed),
        )?;
        writeln!(
            f,
            "         (d) {} records each, first to last: raw {:.2} s, aggregator {:.2} s; raw passes \
             {} and {} rec/s; group join {:.2} s / {:.2} s; outcomes {:?}",
            self.raw_consume.records,
            self.raw_consume.elapsed.as_secs_f64(),
            self.aggregate.elapsed.as_secs_f64(),
            thousands(self.raw_passes.0),
            thousands(self.raw_passes.1),
            self.join.0.as_secs_f64(),
            self.join.1.as_secs_f64(),
            self.outcomes,
        )?;
        let cpu = |base: &Throughput, x: &Throughput| match (base.cpu_per_record(), x.cpu_per_record()) {
            (Some(b), Some(x)) if !x.is_zero() => {
                format!("{:.0} %", b.as_secs_f64() / x.as_secs_f64() * 100.0)
            }
            _ => "?".to_owned(),
        };
        writeln!(
            f,
            "         CPU per record, baseline / measured: (b) {}, (d) {} (the ratios to expect when the \
             process is CPU-bound; load avg and cores used show whether it was)",
            cpu(&self.raw_produce, &self.ingest),
            cpu(&self.raw_consume, &self.aggregate),
        )?;
        writeln!(f, "all targets {}", if self.all_met() { "met" } else { "NOT met" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1234.0), "1,234");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }
}
