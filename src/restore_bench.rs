//! `fieldwatch bench-restore`: how long a fresh aggregator takes to be ready
//! when the responses topic already holds many interviews (default
//! 1,000,000; target under 10 s), with the partition snapshots an earlier
//! aggregator left, and — for comparison — without them (a replay).
//!
//! Steps, on one embedded broker (or `--brokers`): write N envelopes with
//! the raw producer; run an aggregator until it has caught up and stop it
//! (it saves its partitions); start a fresh aggregator in the same group
//! and time start → ready; optionally time a replay by a new group.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use prost::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::aggregate::{self, AggregateConfig, Shared};
use crate::ingest::{Pseudonymizer, record_key};
use crate::instrument::{Catalog, DEMO_STUDY_ID};
use crate::kafka::{self, KafkaConfig};
use crate::proto::{ENVELOPE_VERSION, v1};
use crate::synth;

/// Options of `bench-restore`.
#[derive(Debug, Clone, clap::Args)]
pub struct RestoreOptions {
    /// Interviews in the topic.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// Also time a replay from offset 0 by a new group (no snapshots).
    #[arg(long)]
    pub replay: bool,
    /// Bootstrap servers of an existing cluster (default: embedded broker).
    #[arg(long)]
    pub brokers: Option<String>,
    /// Partitions of the topics.
    #[arg(long, default_value_t = 6)]
    pub partitions: u32,
}

/// Starts an aggregator and returns the time until it is ready, with its
/// shared state and the way to stop it.
async fn time_to_ready(
    kafka: &KafkaConfig,
    bootstrap: &str,
    group: &str,
    catalog: &Arc<Catalog>,
    expect: u64,
) -> anyhow::Result<(Duration, Arc<Shared>, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>)> {
    let shared = Shared::new(catalog.clone(), Default::default());
    let config = AggregateConfig { group_id: group.to_string(), ..AggregateConfig::default() };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let (k, b, s) = (kafka.clone(), bootstrap.to_string(), shared.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = aggregate::run(&k, &b, &config, s, async move {
            let _ = stop_rx.await;
        })
        .await
        {
            tracing::error!(error = %e, "aggregator failed");
        }
    });
    let mut last = Instant::now();
    loop {
        if shared.caught_up() && shared.merged(DEMO_STUDY_ID).interviews() == expect {
            return Ok((started.elapsed(), shared, stop_tx, task));
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("the aggregator was not ready after 30 minutes");
        }
        if last.elapsed() > Duration::from_secs(5) {
            last = Instant::now();
            let applied: i64 = shared.partitions().iter().map(|p| p.next_offset).sum();
            eprintln!("bench-restore: {group}: {applied} of {expect} records applied");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the benchmark and prints its figures.
pub async fn run(opts: &RestoreOptions) -> anyhow::Result<()> {
    let catalog = Arc::new(Catalog::demo());
    let study = catalog.get(DEMO_STUDY_ID).context("demo study")?.clone();
    let dir = tempfile_dir()?;
    #[cfg(feature = "embedded-broker")]
    let mut broker = None;
    let bootstrap = match &opts.brokers {
        Some(b) => b.clone(),
        None => {
            #[cfg(feature = "embedded-broker")]
            {
                let b = crate::broker::EmbeddedBroker::start(crate::broker::BrokerConfig::new(
                    "127.0.0.1:0".parse().context("addr")?,
                    dir.join("broker"),
                ))
                .await?;
                let addr = b.bootstrap();
                broker = Some(b);
                addr
            }
            #[cfg(not(feature = "embedded-broker"))]
            bail!("no embedded broker in this build: pass --brokers")
        }
    };
    let run_id = std::process::id();
    let kafka = KafkaConfig {
        responses_topic: format!("bench-restore-{run_id}.responses"),
        quality_topic: format!("bench-restore-{run_id}.quality"),
        state_topic: format!("bench-restore-{run_id}.state"),
        partitions: opts.partitions,
        ..KafkaConfig::default()
    };
    kafka::ensure_topics(&kafka, &bootstrap).await?;

    // 1. N envelopes through the raw producer. 4,096 distinct interviews,
    //    each sent under many respondent and submission ids.
    let opts_synth = synth::Options { random_strings: false };
    let pool = synth::interviews(&study, 4096, 1, &opts_synth);
    let producer: FutureProducer = kafka::producer_config(&kafka, &bootstrap).create()?;
    let pseudo = Pseudonymizer::new(b"fieldwatch-bench-key-not-secret");
    let started = Instant::now();
    let mut inflight = FuturesUnordered::new();
    let mut acked = 0u64;
    let mut last = Instant::now();
    for n in 0..opts.records {
        let mut sub = pool[(n % pool.len() as u64) as usize].clone();
        sub.respondent_id = pseudo.key(&format!("r{n}"));
        sub.submission_id = format!("s{n}");
        let key = record_key(DEMO_STUDY_ID, &sub.respondent_id);
        let env = v1::Envelope {
            version: ENVELOPE_VERSION,
            received_at: None,
            frontend: "bench".into(),
            submission: Some(sub.into()),
            ..Default::default()
        };
        let payload = env.encode_to_vec();
        let p = producer.clone();
        let topic = kafka.responses_topic.clone();
        inflight.push(async move {
            p.send(FutureRecord::to(&topic).key(&key).payload(&payload), Duration::from_secs(30))
                .await
                .map(|_| ())
        });
        while inflight.len() >= 2048 {
            if let Some(r) = inflight.next().await {
                r.map_err(|(e, _)| e)?;
                acked += 1;
            }
        }
        if last.elapsed() > Duration::from_secs(5) {
            last = Instant::now();
            eprintln!("bench-restore: {acked} of {} records written", opts.records);
        }
    }
    while let Some(r) = inflight.next().await {
        r.map_err(|(e, _)| e)?;
        acked += 1;
    }
    let write = started.elapsed();
    println!(
        "wrote {acked} interviews in {:.1} s ({:.0}/s)",
        write.as_secs_f64(),
        acked as f64 / write.as_secs_f64()
    );

    // 2. A first aggregator reads everything, then stops (saving snapshots).
    let group = format!("bench-restore-{run_id}");
    let (first, shared, stop, task) = time_to_ready(&kafka, &bootstrap, &group, &catalog, acked).await?;
    println!(
        "first aggregator (replay from offset 0, {} partitions): ready after {:.1} s",
        opts.partitions,
        first.as_secs_f64()
    );
    let stopping = Instant::now();
    let _ = stop.send(());
    task.await.context("aggregator task")?;
    let (written, _) = shared.snapshot_counts();
    println!("it stopped in {:.1} s, saving {written} partition snapshots", stopping.elapsed().as_secs_f64());

    // 3. A fresh aggregator in the same group: restore, then ready.
    let (restore, shared2, stop, task) = time_to_ready(&kafka, &bootstrap, &group, &catalog, acked).await?;
    let (_, restored) = shared2.snapshot_counts();
    println!(
        "fresh aggregator with snapshots: ready after {:.2} s ({restored} partitions restored; target < 10 s: {})",
        restore.as_secs_f64(),
        if restore < Duration::from_secs(10) { "met" } else { "NOT met" }
    );
    let _ = stop.send(());
    task.await.context("aggregator task")?;

    if opts.replay {
        // A new group with its own, empty state topic: nothing to restore.
        let fresh =
            KafkaConfig { state_topic: format!("bench-restore-{run_id}.state-replay"), ..kafka.clone() };
        kafka::ensure_topics(&fresh, &bootstrap).await?;
        let (replay, _, stop, task) =
            time_to_ready(&fresh, &bootstrap, &format!("{group}-replay"), &catalog, acked).await?;
        println!(
            "fresh aggregator in a new group (replay, no snapshots): ready after {:.1} s",
            replay.as_secs_f64()
        );
        let _ = stop.send(());
        task.await.context("aggregator task")?;
    }
    #[cfg(feature = "embedded-broker")]
    if let Some(b) = broker {
        b.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("fieldwatch-bench-restore-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
