//! (d): the aggregator (`aggregate::run`) against a bare consumer with the
//! same settings and start offsets, over the records ingest accepted in (b).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::clock::{CpuClock, Progress};
use super::report::Throughput;
use super::{BenchError, BenchOptions, STOP_TIMEOUT};
use crate::aggregate::{self, AggregateConfig, LiveState, Outcome};
use crate::instrument::Catalog;
use crate::kafka::{self, KafkaConfig};
use crate::validate::Limits;

/// The baseline consumer's rebalance: on assignment, every partition starts
/// at offset 0, set in the callback, as the aggregator's
/// (`aggregate::consumer`) sets a partition without a snapshot. Left to
/// librdkafka (committed offset, else `auto.offset.reset`), the partitions
/// are fetched in another order (the last partition first, in the runs
/// measured), and on the embedded broker the order alone moves a pass by
/// several per cent: tansu fills each fetch up to 5 MiB from the
/// partitions in the order requested, so the order decides where each
/// fetch ends and how many small reads it takes (docs/benchmarks.md,
/// "4 December, evening: the baseline read the topic in another order").
struct FromStart;

impl ClientContext for FromStart {}

impl ConsumerContext for FromStart {
    fn rebalance(&self, c: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let done = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                for mut elem in tpl.elements() {
                    if let Err(e) = elem.set_offset(Offset::Offset(0)) {
                        tracing::warn!(error = %crate::errors::chain(&e), "raw consumer: cannot set the start offset");
                    }
                }
                c.assign(tpl)
            }
            _ => c.unassign(),
        };
        if let Err(e) = done {
            tracing::warn!(error = %crate::errors::chain(&e), "raw consumer: rebalance failed");
        }
    }
}

/// (d) baseline: a bare `StreamConsumer` with the aggregator's consumer
/// settings and start offsets ([`FromStart`]), counting `total` records.
/// Returns the rate from the first to the last record, and the time from
/// subscribing to the first record.
pub(super) async fn raw_consume(
    kafka: &KafkaConfig,
    bootstrap: &str,
    group: &str,
    total: u64,
    opts: &BenchOptions,
) -> Result<(Throughput, Duration), BenchError> {
    const PHASE: &str = "(d) raw consumer";
    let consumer: StreamConsumer<FromStart> =
        kafka::consumer_config(kafka, bootstrap, group).create_with_context(FromStart)?;
    consumer.subscribe(&[kafka.responses_topic.as_str()])?;
    let read = Arc::new(AtomicU64::new(0));
    let _progress = Progress::start(PHASE, total, read.clone());
    let start = Instant::now();
    let mut first: Option<(Instant, CpuClock)> = None;
    let mut bytes = 0usize;
    let work = async {
        while read.load(Ordering::Relaxed) < total {
            match consumer.recv().await {
                Ok(m) => {
                    first.get_or_insert_with(|| (Instant::now(), CpuClock::start()));
                    bytes += m.payload().map_or(0, <[u8]>::len);
                    read.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(error = %crate::errors::chain(&e), "raw consumer: consume error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    };
    let timeout = opts.phase_timeout();
    if tokio::time::timeout(timeout, work).await.is_err() {
        return Err(BenchError::Timeout { phase: PHASE, timeout, done: read.load(Ordering::Relaxed), total });
    }
    std::hint::black_box(bytes);
    let end = Instant::now();
    let (first, cpu) = first.unwrap_or((end, CpuClock::start()));
    let cpu = cpu.elapsed();
    consumer.unsubscribe();
    Ok((Throughput { records: total, failed: 0, elapsed: end - first, cpu }, first - start))
}

/// (d): `aggregate::run` in a fresh group until it has processed `total`
/// records. Returns the rate from the first to the last record, the
/// outcomes, and the time from start to the first record.
pub(super) async fn aggregate(
    kafka: &KafkaConfig,
    bootstrap: &str,
    group: &str,
    catalog: &Arc<Catalog>,
    total: u64,
    opts: &BenchOptions,
) -> Result<(Throughput, BTreeMap<&'static str, u64>, Duration), BenchError> {
    const PHASE: &str = "(d) aggregator";
    let shared = LiveState::new(catalog.clone(), Limits::default());
    let config = AggregateConfig { group_id: group.to_owned(), ..AggregateConfig::default() };
    // Stops the aggregator; the receiver is its shutdown future.
    let (stop, stopped) = oneshot::channel::<()>();
    let task: JoinHandle<Result<(), aggregate::AggregateError>> = {
        let (kafka, bootstrap, shared) = (kafka.clone(), bootstrap.to_owned(), shared.clone());
        tokio::spawn(async move {
            aggregate::run(&kafka, &bootstrap, &config, shared, async {
                let _ = stopped.await;
            })
            .await
        })
    };
    let processed = Arc::new(AtomicU64::new(0));
    let _progress = Progress::start(PHASE, total, processed.clone());
    let start = Instant::now();
    let mut first: Option<(Instant, CpuClock)> = None;
    // Polls the outcome counters (the aggregator's own bookkeeping); 1 ms
    // granularity is small next to the phase.
    let work = async {
        loop {
            let n: u64 = shared.outcomes().values().sum();
            processed.store(n, Ordering::Relaxed);
            if n > 0 {
                first.get_or_insert_with(|| (Instant::now(), CpuClock::start()));
            }
            if n >= total || task.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let timeout = opts.phase_timeout();
    let finished = tokio::time::timeout(timeout, work).await.is_ok();
    let end = Instant::now();
    let (first, cpu) = first.unwrap_or((end, CpuClock::start()));
    let cpu = cpu.elapsed();
    let _ = stop.send(());
    let stopped = tokio::time::timeout(STOP_TIMEOUT, task).await;
    let done = processed.load(Ordering::Relaxed);
    if !finished {
        return Err(BenchError::Timeout { phase: PHASE, timeout, done, total });
    }
    match stopped {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(e.into()),
        Ok(Err(e)) => return Err(BenchError::Task(PHASE, e)),
        Err(_) => tracing::warn!("the aggregator did not stop within {STOP_TIMEOUT:?}"),
    }
    if done < total {
        return Err(BenchError::Timeout { phase: PHASE, timeout, done, total });
    }
    let outcomes = shared.outcomes();
    let by_name = Outcome::ALL
        .iter()
        .filter_map(|o| outcomes.get(o).filter(|n| **n > 0).map(|n| (o.as_str(), *n)))
        .collect();
    let applied = outcomes.get(&Outcome::Applied).copied().unwrap_or(0);
    Ok((
        Throughput { records: done, failed: done - applied, elapsed: end - first, cpu },
        by_name,
        first - start,
    ))
}
