//! End-to-end checks of the gRPC ingest: a real tonic client over loopback,
//! the real server, the embedded broker, and the records read back from the
//! responses topic.
#![cfg(feature = "embedded-broker")]

mod common;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use common::HMAC_KEY;
use fieldwatch::ingest::{self, IngestConfig, Pseudonymizer, Publisher, TokenConfig};
use fieldwatch::instrument::{Catalog, DEMO_STUDY_ID};
use fieldwatch::kafka::{self, KafkaConfig};
use fieldwatch::proto::v1::ingest_service_client::IngestServiceClient;
use fieldwatch::proto::v1::{self, Envelope, GetInstrumentRequest, SubmitRequest};
use futures::FutureExt;
use prometheus::{Encoder, Registry};
use prost::Message as _;
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, OwnedMessage};
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

/// A respondent id that must never show up in Kafka or in metrics.
const RAW_ID: &str = "RAW-RESPONDENT-7f3a9c";
/// Bounds each wait on the broker or the server: far above what they take,
/// so only a hang fails a test.
const WAIT: Duration = Duration::from_secs(30);

/// What a test body gets: the running server's address and how to read
/// back what it published.
#[derive(Clone)]
struct Ctx {
    addr: SocketAddr,
    bootstrap: String,
    kafka: KafkaConfig,
    registry: Registry,
    catalog: Arc<Catalog>,
    /// Stops the server early (the harness stops it anyway at the end).
    stop: Arc<std::sync::Mutex<Option<oneshot::Sender<()>>>>,
}

impl Ctx {
    /// Sends the server's shutdown signal.
    fn shut_down(&self) {
        if let Some(stop) = self.stop.lock().expect("lock").take() {
            let _ = stop.send(());
        }
    }
}

/// Starts the broker and the ingest server (tokens as given), runs `body`,
/// and shuts both down whether `body` returns or panics; checks that the
/// server shut down cleanly.
async fn with_ingest<F, Fut>(tokens: Vec<TokenConfig>, body: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    with_ingest_config(tokens, |_| {}, body).await;
}

/// [`with_ingest`] with the ingest config changed by `tweak` first.
async fn with_ingest_config<F, Fut>(tokens: Vec<TokenConfig>, tweak: impl FnOnce(&mut IngestConfig), body: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = common::embedded_broker(dir.path()).await;
    let bootstrap = broker.bootstrap();
    let kafka = KafkaConfig::default();
    kafka::ensure_topics(&kafka, &bootstrap).await.expect("topics");

    let catalog = Arc::new(Catalog::demo());
    let registry = Registry::new();
    let publisher = Publisher::from_kafka(&kafka, &bootstrap, true).expect("publisher");
    let listener = ingest::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut config = IngestConfig { hmac_key: Some(HMAC_KEY.into()), tokens, ..IngestConfig::default() };
    tweak(&mut config);
    // Stops the server; the receiver is the server's shutdown future.
    let (stop, stopped) = oneshot::channel::<()>();
    let server =
        tokio::spawn(ingest::serve(config, catalog.clone(), publisher, &registry, listener, async {
            let _ = stopped.await;
        }));

    let ctx = Ctx { addr, bootstrap, kafka, registry, catalog, stop: Arc::new(Some(stop).into()) };
    let outcome = std::panic::AssertUnwindSafe(body(ctx.clone())).catch_unwind().await;

    ctx.shut_down();
    let served = tokio::time::timeout(WAIT, server).await;
    broker.shutdown().await;
    match outcome {
        Ok(()) => {
            let served = served.expect("server stops within the wait").expect("server task");
            assert!(served.is_ok(), "server ended with {served:?}");
        }
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

async fn client(ctx: &Ctx) -> IngestServiceClient<Channel> {
    IngestServiceClient::connect(format!("http://{}", ctx.addr)).await.expect("connect")
}

/// A valid interview answering the first scale item.
fn valid(respondent: &str, submission: &str) -> v1::Submission {
    common::demo_interview(respondent, submission)
}

/// An interview with three problems: no respondent id, text for a scale,
/// an answer to an item the form lacks.
fn invalid(submission: &str) -> v1::Submission {
    let (_, item, _) = common::demo_scale_item();
    let mut s = valid("", submission);
    s.answers.insert(item, v1::Answer { value: Some(v1::answer::Value::Text("four".into())) });
    s.answers.insert("zz_no_such_item".into(), v1::Answer { value: Some(v1::answer::Value::Integer(1)) });
    s
}

fn request(s: v1::Submission) -> SubmitRequest {
    SubmitRequest { submission: Some(s), disposition: None }
}

/// Records in the responses topic.
fn stored_count(ctx: &Ctx) -> i64 {
    common::topic_records(&ctx.kafka, &ctx.bootstrap, &ctx.kafka.responses_topic, WAIT)
}

/// Reads exactly `n` records of the responses topic with a fresh group.
async fn read_records(ctx: &Ctx, n: usize) -> Vec<OwnedMessage> {
    let group = format!("test-{}", std::process::id());
    let consumer: StreamConsumer =
        kafka::consumer_config(&ctx.kafka, &ctx.bootstrap, &group).create().expect("consumer");
    consumer.subscribe(&[&ctx.kafka.responses_topic]).expect("subscribe");
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let m = tokio::time::timeout(WAIT, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} records within {WAIT:?}", out.len()))
            .expect("consume");
        out.push(m.detach());
    }
    out
}

fn envelope(m: &OwnedMessage) -> Envelope {
    Envelope::decode(m.payload().expect("payload")).expect("an envelope")
}

fn metrics_text(ctx: &Ctx) -> String {
    let mut buf = Vec::new();
    prometheus::TextEncoder::new().encode(&ctx.registry.gather(), &mut buf).expect("encode");
    String::from_utf8(buf).expect("utf-8")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_interview_is_stored_under_its_respondent_key_and_the_raw_id_goes_nowhere() {
    with_ingest(Vec::new(), |ctx| async move {
        let mut c = client(&ctx).await;
        let reply = c.submit(request(valid(RAW_ID, "sub-1"))).await.expect("accepted").into_inner();
        assert_eq!(reply.submission_id, "sub-1");
        assert!(reply.received_at.is_some());

        let records = read_records(&ctx, 1).await;
        let m = &records[0];
        let respondent_key = Pseudonymizer::new(HMAC_KEY.as_bytes()).key(RAW_ID);
        let key = m.key().expect("key");
        assert_eq!(key, ingest::record_key(DEMO_STUDY_ID, &respondent_key).as_bytes());

        let env = envelope(m);
        assert_eq!(env.version, 1);
        assert_eq!(env.frontend, "anonymous");
        assert!(env.received_at.is_some());
        let sub = env.submission.expect("submission");
        assert_eq!(sub.respondent_id, respondent_key);
        assert_eq!(sub.submission_id, "sub-1");
        assert_eq!(sub.answers, valid(RAW_ID, "sub-1").answers);

        let raw = RAW_ID.as_bytes();
        assert!(!contains(key, raw));
        assert!(!contains(m.payload().expect("payload"), raw));
        if let Some(headers) = m.headers() {
            for h in headers.iter() {
                assert!(!contains(h.key.as_bytes(), raw) && !h.value.is_some_and(|v| contains(v, raw)));
            }
        }
        assert_eq!(stored_count(&ctx), 1);

        let text = metrics_text(&ctx);
        assert!(!text.contains(RAW_ID));
        assert!(
            text.contains(r#"fieldwatch_ingest_records_total{outcome="accepted",study="le-trafficking"} 1"#)
        );
        assert!(text.contains(r#"fieldwatch_ingest_requests_total{code="OK",method="submit"} 1"#));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_interview_gets_one_field_violation_per_problem_and_publishes_nothing() {
    with_ingest(Vec::new(), |ctx| async move {
        let (_, item, _) = common::demo_scale_item();
        let status = client(&ctx).await.submit(request(invalid("sub-bad"))).await.expect_err("rejected");
        assert_eq!(status.code(), Code::InvalidArgument);
        let bad = status.get_details_bad_request().expect("BadRequest details");
        let mut got: Vec<(String, String)> =
            bad.field_violations.iter().map(|v| (v.field.clone(), v.reason.clone())).collect();
        got.sort();
        let mut want = vec![
            (format!("answers.{item}"), "wrong_kind".to_string()),
            ("answers.zz_no_such_item".to_string(), "unknown_item".to_string()),
            ("respondent_id".to_string(), "required".to_string()),
        ];
        want.sort();
        assert_eq!(got, want);
        assert!(bad.field_violations.iter().all(|v| !v.description.is_empty()));

        assert_eq!(stored_count(&ctx), 0);
        let text = metrics_text(&ctx);
        assert!(
            text.contains(
                r#"fieldwatch_ingest_rejections_total{rule="wrong_kind",study="le-trafficking"} 1"#
            )
        );
        assert!(
            text.contains(r#"fieldwatch_ingest_requests_total{code="InvalidArgument",method="submit"} 1"#)
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_error_detail_cap_lists_fewer_violations_and_says_how_many_there_are() {
    with_ingest_config(
        Vec::new(),
        |c| c.max_error_violations = 2,
        |ctx| async move {
            let status =
                client(&ctx).await.submit(request(invalid("sub-capped"))).await.expect_err("rejected");
            assert_eq!(status.code(), Code::InvalidArgument);
            let bad = status.get_details_bad_request().expect("BadRequest details");
            assert_eq!(bad.field_violations.len(), 2, "ingest.max_error_violations = 2");
            let info = status.get_details_error_info().expect("ErrorInfo");
            assert_eq!(info.metadata.get("violations").map(String::as_str), Some("3"));
            assert_eq!(info.metadata.get("listed").map(String::as_str), Some("2"));
            assert!(status.message().contains("the first 2 are listed"), "{}", status.message());
            assert_eq!(stored_count(&ctx), 0);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_study_is_not_found_and_publishes_nothing() {
    with_ingest(Vec::new(), |ctx| async move {
        let mut c = client(&ctx).await;
        let mut s = valid(RAW_ID, "sub-x");
        s.study = "no-such-study".into();
        let status = c.submit(request(s)).await.expect_err("rejected");
        assert_eq!(status.code(), Code::NotFound);
        assert!(!status.message().contains("no-such-study"));

        let status = c
            .get_instrument(GetInstrumentRequest { study: "no-such-study".into() })
            .await
            .expect_err("unknown");
        assert_eq!(status.code(), Code::NotFound);

        assert_eq!(stored_count(&ctx), 0);
        let text = metrics_text(&ctx);
        assert!(!text.contains("no-such-study"));
        assert!(text.contains(r#"fieldwatch_ingest_records_total{outcome="rejected",study="unknown"} 1"#));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_gets_one_result_per_record_in_order_and_only_valid_records_are_stored() {
    with_ingest(Vec::new(), |ctx| async move {
        // Every third record is invalid; record 7 names an unknown study.
        let mut records = Vec::new();
        let mut expect_ok = Vec::new();
        for i in 0..20 {
            let sub_id = format!("stream-{i:02}");
            let s = if i == 7 {
                let mut s = valid(&format!("R-{i}"), &sub_id);
                s.study = "nope".into();
                s
            } else if i % 3 == 0 {
                invalid(&sub_id)
            } else {
                valid(&format!("R-{i}"), &sub_id)
            };
            expect_ok.push(i != 7 && i % 3 != 0);
            records.push(request(s));
        }

        let mut results = client(&ctx)
            .await
            .submit_stream(futures::stream::iter(records))
            .await
            .expect("stream opens")
            .into_inner();
        let mut got = Vec::new();
        while let Some(r) = results.message().await.expect("stream result") {
            got.push(r);
        }
        assert_eq!(got.len(), expect_ok.len());
        for (i, (r, ok)) in got.iter().zip(&expect_ok).enumerate() {
            assert_eq!(r.index, i as u64, "results come in request order");
            assert_eq!(r.accepted, *ok, "record {i}: {r:?}");
            if *ok {
                assert_eq!(r.code, 0);
                assert!(r.violations.is_empty());
            }
        }
        assert_eq!(got[0].code, Code::InvalidArgument as i32);
        assert_eq!(got[0].violations.len(), 3, "{:?}", got[0].violations);
        assert_eq!(got[7].code, Code::NotFound as i32);
        assert_eq!(got[7].violations[0].rule, "unknown_study");

        let want: Vec<String> = expect_ok
            .iter()
            .enumerate()
            .filter(|(_, ok)| **ok)
            .map(|(i, _)| format!("stream-{i:02}"))
            .collect();
        let stored = read_records(&ctx, want.len()).await;
        let mut ids: Vec<String> =
            stored.iter().map(|m| envelope(m).submission.expect("submission").submission_id).collect();
        ids.sort();
        assert_eq!(ids, want);
        assert_eq!(stored_count(&ctx), want.len() as i64);
        assert!(
            metrics_text(&ctx)
                .contains(r#"fieldwatch_ingest_requests_total{code="OK",method="submit_stream"} 1"#)
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_configured_calls_without_a_valid_one_are_unauthenticated_and_publish_nothing() {
    let tokens =
        vec![TokenConfig { frontend: "cati-east".into(), sha256: ingest::auth::token_hash("s3cret-token") }];
    with_ingest(tokens, |ctx| async move {
        let mut c = client(&ctx).await;
        let with_token = |token: Option<&str>| {
            let mut r = tonic::Request::new(request(valid(RAW_ID, "sub-auth")));
            if let Some(t) = token {
                r.metadata_mut().insert("authorization", format!("Bearer {t}").parse().expect("ascii"));
            }
            r
        };
        for token in [None, Some("wrong-token")] {
            let status = c.submit(with_token(token)).await.expect_err("refused");
            assert_eq!(status.code(), Code::Unauthenticated, "token {token:?}");
        }
        let status = c
            .submit_stream(futures::stream::iter(vec![request(valid(RAW_ID, "sub-auth"))]))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::Unauthenticated);
        let status = c
            .get_instrument(GetInstrumentRequest { study: DEMO_STUDY_ID.into() })
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(stored_count(&ctx), 0);

        c.submit(with_token(Some("s3cret-token"))).await.expect("accepted with the right token");
        let records = read_records(&ctx, 1).await;
        assert_eq!(envelope(&records[0]).frontend, "cati-east");
        assert_eq!(stored_count(&ctx), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reflection_and_the_instrument_answer() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    with_ingest(Vec::new(), |ctx| async move {
        let channel = Channel::from_shared(format!("http://{}", ctx.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect");

        let mut health = HealthClient::new(channel.clone());
        for service in ["", "fieldwatch.v1.IngestService"] {
            let status = health
                .check(tonic_health::pb::HealthCheckRequest { service: service.into() })
                .await
                .expect("health answers")
                .into_inner()
                .status;
            assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
        }

        let mut reflection = ServerReflectionClient::new(channel.clone());
        let ask = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = reflection
            .server_reflection_info(futures::stream::iter(vec![ask]))
            .await
            .expect("reflection")
            .into_inner();
        let answer = answers.message().await.expect("answer").expect("one answer");
        let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
            panic!("not a service list: {answer:?}");
        };
        let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"fieldwatch.v1.IngestService"), "{names:?}");
        assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");

        let instrument = IngestServiceClient::new(channel)
            .get_instrument(GetInstrumentRequest { study: DEMO_STUDY_ID.into() })
            .await
            .expect("instrument")
            .into_inner();
        let study = ctx.catalog.get(DEMO_STUDY_ID).expect("demo");
        assert_eq!(instrument.study, DEMO_STUDY_ID);
        assert_eq!(instrument.forms.len(), study.forms.len());
        assert!(instrument.yaml.contains(DEMO_STUDY_ID));
        let (form, item, _) = common::demo_scale_item();
        let f = instrument.forms.iter().find(|f| f.id == form).expect("form");
        assert!(f.items.iter().any(|i| i.id == item && i.kind == "scale"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_broker_cannot_take_the_write_in_time_the_call_is_unavailable() {
    // No broker at all: a port nothing listens on, and a short produce timeout.
    let dead = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let bootstrap = dead.local_addr().expect("addr").to_string();
    drop(dead);
    let kafka = KafkaConfig { produce_timeout_ms: 300, ..KafkaConfig::default() };
    let catalog = Arc::new(Catalog::demo());
    let registry = Registry::new();
    let publisher = Publisher::from_kafka(&kafka, &bootstrap, true).expect("publisher");
    let listener = ingest::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config =
        IngestConfig { hmac_key: Some(HMAC_KEY.into()), shutdown_grace_ms: 2_000, ..IngestConfig::default() };
    let (stop, stopped) = oneshot::channel::<()>();
    let server =
        tokio::spawn(ingest::serve(config, catalog.clone(), publisher, &registry, listener, async {
            let _ = stopped.await;
        }));
    let ctx = Ctx { addr, bootstrap, kafka, registry: registry.clone(), catalog, stop: Default::default() };

    let outcome = std::panic::AssertUnwindSafe(async {
        let status =
            client(&ctx).await.submit(request(valid(RAW_ID, "sub-down"))).await.expect_err("no broker");
        assert_eq!(status.code(), Code::Unavailable);
        let text = metrics_text(&ctx);
        assert!(text.contains(r#"fieldwatch_ingest_publish_failures_total{reason="timeout"} 1"#), "{text}");
        assert!(text.contains(r#"fieldwatch_ingest_requests_total{code="Unavailable",method="submit"} 1"#));
    })
    .catch_unwind()
    .await;

    let _ = stop.send(());
    let served = tokio::time::timeout(WAIT, server).await.expect("server stops").expect("server task");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    // Nothing is left queued: the only write already failed.
    assert!(served.is_ok(), "{served:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_shutdown_an_open_stream_ends_with_unavailable_after_its_pending_results() {
    with_ingest(Vec::new(), |ctx| async move {
        // The client's side of the request stream; kept open until shutdown.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut results = client(&ctx)
            .await
            .submit_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("stream opens")
            .into_inner();
        tx.send(request(valid("R-1", "open-1"))).await.expect("send");
        let first = results.message().await.expect("result").expect("one result");
        assert!(first.accepted, "{first:?}");

        ctx.shut_down();
        let end = tokio::time::timeout(WAIT, results.message()).await.expect("the stream ends promptly");
        let status = end.expect_err("ends with a status");
        assert_eq!(status.code(), Code::Unavailable);
        drop(tx);
        assert_eq!(stored_count(&ctx), 1);
    })
    .await;
}
