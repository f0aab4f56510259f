//! (a) the raw producer and (b) acknowledged ingest through `SubmitStream`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::{BufMut, Bytes};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use prost::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::task::JoinSet;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Endpoint;

use super::clock::{CpuClock, Progress};
use super::report::Throughput;
use super::{BenchError, BenchOptions};
use crate::instrument::DEMO_STUDY_ID;
use crate::kafka::{self, KafkaConfig};
use crate::proto::v1::ingest_service_client::IngestServiceClient;
use crate::proto::v1::{GetInstrumentRequest, SubmitRequest, SubmitResult};

/// (a): every envelope through a bare `FutureProducer` with fieldwatch's
/// producer settings, `opts.window` deliveries awaited concurrently.
pub(super) async fn raw_produce(
    kafka: &KafkaConfig,
    bootstrap: &str,
    envelopes: &[(String, Vec<u8>)],
    opts: &BenchOptions,
) -> Result<Throughput, BenchError> {
    const PHASE: &str = "(a) raw producer";
    let producer: FutureProducer = kafka::producer_config(kafka, bootstrap).create()?;
    let total = envelopes.len() as u64;
    let done = Arc::new(AtomicU64::new(0));
    let _progress = Progress::start(PHASE, total, done.clone());
    let cpu = CpuClock::start();
    let start = Instant::now();
    // Deliveries in flight; at most `opts.window`, the other end is
    // librdkafka's delivery callback (bounded by message.timeout.ms).
    let mut inflight = FuturesUnordered::new();
    let mut failed = 0u64;
    let count =
        |r: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, _>, failed: &mut u64| match r {
            Ok(Ok(_)) => {
                done.fetch_add(1, Ordering::Relaxed);
            }
            _ => *failed += 1,
        };
    let work = async {
        for (key, payload) in envelopes {
            while inflight.len() >= opts.window {
                if let Some(r) = inflight.next().await {
                    count(r, &mut failed);
                }
            }
            match producer.send_result(FutureRecord::to(&kafka.responses_topic).key(key).payload(payload)) {
                Ok(delivery) => inflight.push(delivery),
                Err((e, _)) => {
                    tracing::warn!(error = %crate::errors::chain(&e), "raw producer: enqueue failed");
                    failed += 1;
                }
            }
        }
        while let Some(r) = inflight.next().await {
            count(r, &mut failed);
        }
    };
    let timeout = opts.phase_timeout();
    if tokio::time::timeout(timeout, work).await.is_err() {
        return Err(BenchError::Timeout { phase: PHASE, timeout, done: done.load(Ordering::Relaxed), total });
    }
    let elapsed = start.elapsed();
    Ok(Throughput { records: done.load(Ordering::Relaxed), failed, elapsed, cpu: cpu.elapsed() })
}

/// (b): the interviews through `SubmitStream`, one call per chunk, all
/// concurrently, each on its own connection; counts accepted results.
pub(super) async fn ingest_streams(
    endpoint: &Endpoint,
    streams: Vec<Vec<SubmitRequest>>,
    opts: &BenchOptions,
) -> Result<(Throughput, BTreeMap<i32, u64>), BenchError> {
    const PHASE: &str = "(b) ingest SubmitStream";
    let total: u64 = streams.iter().map(|s| s.len() as u64).sum();
    // Connect first and make one call on each connection, so connection
    // set-up is not measured.
    let mut channels = Vec::with_capacity(streams.len());
    for _ in &streams {
        let channel = endpoint.connect().await?;
        IngestServiceClient::new(channel.clone())
            .get_instrument(GetInstrumentRequest { study: DEMO_STUDY_ID.to_owned() })
            .await
            .map_err(|status| BenchError::Call { phase: PHASE, status })?;
        channels.push(channel);
    }
    // Encoded before the clock starts, as (a)'s envelopes are: the load
    // generator's encoding is not the system under test.
    let streams: Vec<Vec<Bytes>> = streams
        .into_iter()
        .map(|requests| requests.iter().map(|r| Bytes::from(r.encode_to_vec())).collect())
        .collect();
    let accepted = Arc::new(AtomicU64::new(0));
    let _progress = Progress::start(PHASE, total, accepted.clone());
    let cpu = CpuClock::start();
    let start = Instant::now();
    // One task per stream; dropping the set (timeout) aborts them.
    let mut tasks = JoinSet::new();
    for (requests, channel) in streams.into_iter().zip(channels) {
        let accepted = accepted.clone();
        tasks.spawn(async move {
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            let path = tonic::codegen::http::uri::PathAndQuery::from_static(SUBMIT_STREAM_PATH);
            let request = tonic::Request::new(futures::stream::iter(requests));
            let mut results = grpc.streaming(request, path, PreEncoded).await?.into_inner();
            let mut rejected: BTreeMap<i32, u64> = BTreeMap::new();
            while let Some(r) = results.message().await? {
                if r.accepted {
                    accepted.fetch_add(1, Ordering::Relaxed);
                } else {
                    *rejected.entry(r.code).or_default() += 1;
                }
            }
            Ok::<_, tonic::Status>(rejected)
        });
    }
    let timeout = opts.phase_timeout();
    let joined = tokio::time::timeout(timeout, async {
        let mut rejected: BTreeMap<i32, u64> = BTreeMap::new();
        while let Some(r) = tasks.join_next().await {
            let per_stream = r
                .map_err(|e| BenchError::Task(PHASE, e))?
                .map_err(|status| BenchError::Call { phase: PHASE, status })?;
            for (code, n) in per_stream {
                *rejected.entry(code).or_default() += n;
            }
        }
        Ok::<_, BenchError>(rejected)
    })
    .await;
    let elapsed = start.elapsed();
    let cpu = cpu.elapsed();
    let records = accepted.load(Ordering::Relaxed);
    let rejected = match joined {
        Err(_) => return Err(BenchError::Timeout { phase: PHASE, timeout, done: records, total }),
        Ok(r) => r?,
    };
    Ok((Throughput { records, failed: total - records, elapsed, cpu }, rejected))
}

/// gRPC method path of `IngestService.SubmitStream`.
const SUBMIT_STREAM_PATH: &str = "/fieldwatch.v1.IngestService/SubmitStream";

/// Client codec of (b): sends `SubmitRequest`s encoded in advance, decodes
/// `SubmitResult`s with prost.
#[derive(Debug, Clone, Copy)]
struct PreEncoded;

impl Codec for PreEncoded {
    type Encode = Bytes;
    type Decode = SubmitResult;
    type Encoder = PreEncoded;
    type Decoder = PreEncoded;

    fn encoder(&mut self) -> PreEncoded {
        PreEncoded
    }

    fn decoder(&mut self) -> PreEncoded {
        PreEncoded
    }
}

impl Encoder for PreEncoded {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for PreEncoded {
    type Item = SubmitResult;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<SubmitResult>, tonic::Status> {
        SubmitResult::decode(src).map(Some).map_err(|e| tonic::Status::internal(e.to_string()))
    }
}
