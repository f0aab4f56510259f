//! The order of the phases: inputs prepared before any clock starts, then
//! (c), (a), (b) and (d), each against its own topic, with an ingest server
//! started in-process where a phase needs one.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;

use prost::Message as _;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Endpoint;

use super::clock::{cpu_model, progress};
use super::consume::{aggregate, raw_consume};
use super::latency::unary_latency;
use super::produce::{ingest_streams, raw_produce};
use super::report::BenchReport;
use super::{
    ANONYMOUS, BenchError, BenchOptions, CONNECT_TIMEOUT, HMAC_KEY, STOP_TIMEOUT, WARMUP_REQUESTS,
    WARMUP_SECONDS, run_id,
};
use crate::ingest::{self, IngestConfig, IngestError, Pseudonymizer, Publisher, record_key};
use crate::instrument::{Catalog, DEMO_STUDY_ID};
use crate::kafka::{self, KafkaConfig};
use crate::proto::v1::{self, Envelope, SubmitRequest};
use crate::synth;

/// Inputs prepared before any clock starts.
struct Inputs {
    /// (a): record key and encoded envelope, as ingest would write them.
    envelopes: Vec<(String, Vec<u8>)>,
    /// (b): the same interviews as requests, split between the streams.
    streams: Vec<Vec<SubmitRequest>>,
    /// (c): warm-up requests, then the measured ones.
    unary: Vec<v1::Submission>,
}

fn prepare(catalog: &Catalog, opts: &BenchOptions) -> Result<Inputs, BenchError> {
    let study = catalog.get(DEMO_STUDY_ID).ok_or(BenchError::NoDemoStudy)?;
    let plain = synth::Options { random_strings: false };
    progress(format_args!("generating {} synthetic interviews", opts.records));
    let subs: Vec<v1::Submission> =
        synth::interviews(study, opts.records, 1, &plain).into_iter().map(v1::Submission::from).collect();
    let pseudonyms = Pseudonymizer::new(HMAC_KEY.as_bytes());
    let received_at = SystemTime::now();
    let envelopes = subs
        .iter()
        .map(|s| {
            let respondent_key = pseudonyms.key(&s.respondent_id);
            let key = record_key(study.id(), &respondent_key);
            let envelope = Envelope::of_submission(
                v1::Submission { respondent_id: respondent_key, ..s.clone() },
                Some(received_at.into()),
                ANONYMOUS,
            );
            (key, envelope.encode_to_vec())
        })
        .collect();
    let per_stream = subs.len().div_ceil(opts.streams);
    let mut streams: Vec<Vec<SubmitRequest>> = Vec::with_capacity(opts.streams);
    let mut requests = subs.into_iter().map(|s| SubmitRequest { submission: Some(s), disposition: None });
    for _ in 0..opts.streams {
        let chunk: Vec<SubmitRequest> = requests.by_ref().take(per_stream).collect();
        if !chunk.is_empty() {
            streams.push(chunk);
        }
    }
    let unary_count = u64::from(opts.rate) * (WARMUP_SECONDS + opts.seconds) + WARMUP_REQUESTS;
    // Another seed: other respondent and submission ids than (b).
    let unary =
        synth::interviews(study, unary_count, 2, &plain).into_iter().map(v1::Submission::from).collect();
    Ok(Inputs { envelopes, streams, unary })
}

pub(super) async fn phases(
    opts: &BenchOptions,
    bootstrap: &str,
    broker: &str,
) -> Result<BenchReport, BenchError> {
    let run = run_id();
    let topic = |what: &str| format!("fieldwatch.bench.{run}.{what}");
    let mut kafka = KafkaConfig {
        brokers: Some(bootstrap.to_owned()),
        responses_topic: topic("ingest"),
        quality_topic: topic("quality"),
        // A fresh book of submission ids for each phase, so every interview
        // is claimed anew, as in fieldwork.
        claims_topic: topic("claims"),
        partitions: opts.partitions,
        ..KafkaConfig::default()
    };
    kafka.client_properties.extend(opts.kafka_properties.iter().cloned());
    if let Some(linger) = opts.linger_ms {
        kafka.client_properties.insert("linger.ms".to_owned(), linger.to_string());
    }
    let raw_kafka = KafkaConfig {
        responses_topic: topic("raw"),
        quality_topic: topic("raw-quality"),
        claims_topic: topic("raw-claims"),
        ..kafka.clone()
    };
    let latency_kafka = KafkaConfig {
        responses_topic: topic("latency"),
        quality_topic: topic("latency-quality"),
        claims_topic: topic("latency-claims"),
        ..kafka.clone()
    };
    for k in [&kafka, &raw_kafka, &latency_kafka] {
        kafka::ensure_topics(k, bootstrap).await?;
    }

    let linger_ms =
        kafka::producer_config(&kafka, bootstrap).get("linger.ms").unwrap_or("librdkafka default").to_owned();
    let catalog = Arc::new(Catalog::demo());
    let inputs = prepare(&catalog, opts)?;
    let envelope_bytes =
        inputs.envelopes.iter().map(|(_, p)| p.len()).sum::<usize>() / inputs.envelopes.len().max(1);

    // (c) first, on its own topic: after the bulk phases the broker spends
    // seconds checkpointing their writes, which is not the steady state.
    let server = IngestUnderTest::start(&latency_kafka, bootstrap, &catalog, opts).await?;
    let ingest_limits = server.limits;
    let measured = match server.endpoint() {
        Ok(endpoint) => unary_latency(&endpoint, inputs.unary, opts).await,
        Err(e) => Err(e),
    };
    let stopped = server.stop().await;
    let latency = measured?;
    stopped?;

    let raw_produce = raw_produce(&raw_kafka, bootstrap, &inputs.envelopes, opts).await?;
    drop(inputs.envelopes);

    let server = IngestUnderTest::start(&kafka, bootstrap, &catalog, opts).await?;
    let measured = match server.endpoint() {
        Ok(endpoint) => ingest_streams(&endpoint, inputs.streams, opts).await,
        Err(e) => Err(e),
    };
    let stopped = server.stop().await;
    let (ingest, ingest_rejected) = measured?;
    stopped?;

    // The topic holds exactly the records accepted in (b). The raw consumer
    // reads it before and after the aggregator and the faster pass is the
    // baseline, so neither gains from going second (warm caches).
    let (raw_before, raw_join) =
        raw_consume(&kafka, bootstrap, &format!("fieldwatch-bench-{run}-raw-1"), ingest.records, opts)
            .await?;
    let (aggregate, outcomes, agg_join) = aggregate(
        &kafka,
        bootstrap,
        &format!("fieldwatch-bench-{run}-aggregator"),
        &catalog,
        ingest.records,
        opts,
    )
    .await?;
    let (raw_after, _) =
        raw_consume(&kafka, bootstrap, &format!("fieldwatch-bench-{run}-raw-2"), ingest.records, opts)
            .await?;
    let raw_passes = (raw_before.rate(), raw_after.rate());
    let raw_consume = if raw_after.rate() > raw_before.rate() { raw_after } else { raw_before };
    let join = (raw_join, agg_join);

    Ok(BenchReport {
        options: opts.clone(),
        broker: broker.to_owned(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model: cpu_model(),
        load: (None, None),
        linger_ms,
        ingest_limits,
        envelope_bytes,
        raw_produce,
        ingest,
        ingest_rejected,
        latency,
        raw_consume,
        raw_passes,
        aggregate,
        outcomes,
        join,
    })
}

/// An ingest server started in-process for one phase.
struct IngestUnderTest {
    addr: SocketAddr,
    /// `stream_window` and `max_inflight` of the server.
    limits: (usize, usize),
    /// Stops the server; the receiver is the server's shutdown future.
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), IngestError>>,
}

impl IngestUnderTest {
    /// `ingest::serve` on 127.0.0.1:0, publishing to `kafka.responses_topic`.
    async fn start(
        kafka: &KafkaConfig,
        bootstrap: &str,
        catalog: &Arc<Catalog>,
        opts: &BenchOptions,
    ) -> Result<IngestUnderTest, BenchError> {
        let publisher = Publisher::from_kafka(kafka, bootstrap, !opts.no_claims)?;
        let listener = ingest::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let addr = listener.local_addr().map_err(BenchError::LocalAddr)?;
        let mut config = IngestConfig { hmac_key: Some(HMAC_KEY.to_owned()), ..IngestConfig::default() };
        if let Some(window) = opts.stream_window {
            config.stream_window = window;
        }
        config.study_wide_submission_ids = !opts.no_claims;
        let limits = (config.stream_window, config.max_inflight);
        let (stop, stopped) = oneshot::channel::<()>();
        let serve = ingest::serve(
            config,
            catalog.clone(),
            publisher,
            &prometheus::Registry::new(),
            listener,
            async {
                let _ = stopped.await;
            },
        );
        Ok(IngestUnderTest { addr, limits, stop, task: tokio::spawn(serve) })
    }

    fn endpoint(&self) -> Result<Endpoint, BenchError> {
        Ok(Endpoint::from_shared(format!("http://{}", self.addr))?.connect_timeout(CONNECT_TIMEOUT))
    }

    /// Shuts the server down (drain, flush) and waits for it, within [`STOP_TIMEOUT`].
    async fn stop(self) -> Result<(), BenchError> {
        let _ = self.stop.send(());
        match tokio::time::timeout(STOP_TIMEOUT, self.task).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(e.into()),
            Ok(Err(e)) => Err(BenchError::Task("ingest server", e)),
            Err(_) => {
                tracing::warn!("the ingest server did not stop within {STOP_TIMEOUT:?}");
                Ok(())
            }
        }
    }
}
