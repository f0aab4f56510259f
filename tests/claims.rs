//! Study-wide submission ids (`ingest::claims`): two ingest processes'
//! worth of servers on one embedded broker, real gRPC over loopback. A
//! submission id belongs to the first respondent who used it, whichever
//! instance took it; nothing else is stored; the claims topic carries no id.
#![cfg(feature = "embedded-broker")]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use common::HMAC_KEY;
use fieldwatch::ingest::{self, IngestConfig, Publisher};
use fieldwatch::instrument::Catalog;
use fieldwatch::kafka::{self, KafkaConfig};
use fieldwatch::proto::v1::SubmitRequest;
use fieldwatch::proto::v1::ingest_service_client::IngestServiceClient;
use rdkafka::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

const WAIT: Duration = Duration::from_secs(30);

/// One ingest server on the broker at `bootstrap`; dropping the sender stops it.
async fn instance(
    kafka: &KafkaConfig,
    bootstrap: &str,
) -> (IngestServiceClient<Channel>, oneshot::Sender<()>) {
    instance_with(kafka, bootstrap, true).await
}

/// [`instance`] with `ingest.study_wide_submission_ids` as given.
async fn instance_with(
    kafka: &KafkaConfig,
    bootstrap: &str,
    study_wide: bool,
) -> (IngestServiceClient<Channel>, oneshot::Sender<()>) {
    let publisher = Publisher::from_kafka(kafka, bootstrap, study_wide).expect("publisher");
    let listener = ingest::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = IngestConfig {
        hmac_key: Some(HMAC_KEY.into()),
        study_wide_submission_ids: study_wide,
        ..IngestConfig::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let registry = prometheus::Registry::new();
    tokio::spawn(ingest::serve(config, Arc::new(Catalog::demo()), publisher, &registry, listener, async {
        let _ = stopped.await;
    }));
    let client = IngestServiceClient::connect(format!("http://{addr}")).await.expect("connect");
    (client, stop)
}

/// Submits an interview of `respondent` under `submission`: `Ok` when
/// stored, else the refusal's code and the rule of its first violation.
async fn submit(
    c: &mut IngestServiceClient<Channel>,
    respondent: &str,
    submission: &str,
) -> Result<(), (Code, String)> {
    let request =
        SubmitRequest { submission: Some(common::demo_interview(respondent, submission)), disposition: None };
    match c.submit(request).await {
        Ok(_) => Ok(()),
        Err(status) => {
            let rule = status
                .get_details_bad_request()
                .and_then(|b| b.field_violations.first().map(|v| format!("{}:{}", v.field, v.description)))
                .unwrap_or_default();
            Err((status.code(), rule))
        }
    }
}

fn taken(r: Result<(), (Code, String)>) -> bool {
    matches!(&r, Err((Code::InvalidArgument, v)) if v.starts_with("submission_id:") && v.contains("another respondent"))
}

/// Every payload of `topic`, partition 0.
fn payloads(kafka: &KafkaConfig, bootstrap: &str, topic: &str) -> Vec<Vec<u8>> {
    let consumer: BaseConsumer =
        kafka::consumer_config(kafka, bootstrap, "claims-test-reader").create().expect("consumer");
    let (_, high) = consumer.fetch_watermarks(topic, 0, WAIT).expect("watermarks");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning).expect("partition");
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while (out.len() as i64) < high && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            out.push(m.payload().unwrap_or_default().to_vec());
        }
    }
    assert_eq!(out.len() as i64, high, "read every record");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_id_belongs_to_its_first_respondent_whichever_instance_took_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = common::embedded_broker(dir.path()).await;
    let bootstrap = broker.bootstrap();
    let kafka = KafkaConfig::default();
    kafka::ensure_topics(&kafka, &bootstrap).await.expect("topics");
    let (mut a, stop_a) = instance(&kafka, &bootstrap).await;
    let (mut b, stop_b) = instance(&kafka, &bootstrap).await;

    // One instance: the first respondent keeps the id; its resend is stored
    // again (the aggregator counts it once); another respondent is refused.
    assert_eq!(submit(&mut a, "RAW-R1", "RAW-S1").await, Ok(()));
    assert!(taken(submit(&mut a, "RAW-R2", "RAW-S1").await));
    assert_eq!(submit(&mut a, "RAW-R1", "RAW-S1").await, Ok(()));
    // The other instance knows the claim from the topic, and the other way round.
    assert!(taken(submit(&mut b, "RAW-R2", "RAW-S1").await));
    assert_eq!(submit(&mut b, "RAW-R3", "RAW-S2").await, Ok(()));
    assert!(taken(submit(&mut a, "RAW-R4", "RAW-S2").await));
    assert_eq!(submit(&mut a, "RAW-R3", "RAW-S2").await, Ok(()));

    // Both instances at once, one id, two respondents, many rounds: exactly
    // one of each pair is stored.
    let mut stored = 4;
    for round in 0..20 {
        let id = format!("RAW-RACE-{round}");
        let (ra, rb) = tokio::join!(submit(&mut a, "RAW-RA", &id), submit(&mut b, "RAW-RB", &id));
        assert!(ra.is_ok() != rb.is_ok(), "round {round}: exactly one stored: {ra:?} {rb:?}");
        assert!(taken(if ra.is_ok() { rb } else { ra }));
        stored += 1;
    }
    assert_eq!(common::topic_records(&kafka, &bootstrap, &kafka.responses_topic, WAIT), stored);

    // A new instance reads the claims before it decides.
    let (mut c, stop_c) = instance(&kafka, &bootstrap).await;
    assert!(taken(submit(&mut c, "RAW-R9", "RAW-S2").await));
    assert!(taken(submit(&mut c, "RAW-R9", "RAW-RACE-7").await));

    // The claims hold keyed hashes only: no id, respondent or study name.
    for p in payloads(&kafka, &bootstrap, &kafka.claims_topic) {
        for raw in [&b"RAW-"[..], b"le-trafficking"] {
            assert!(!p.windows(raw.len()).any(|w| w == raw), "a raw string in a claim");
        }
    }
    // Switched off, an instance claims nothing and refuses nothing.
    let (mut d, stop_d) = instance_with(&kafka, &bootstrap, false).await;
    assert_eq!(submit(&mut d, "RAW-R9", "RAW-S2").await, Ok(()));
    assert_eq!(common::topic_records(&kafka, &bootstrap, &kafka.responses_topic, WAIT), stored + 1);
    for stop in [stop_a, stop_b, stop_c, stop_d] {
        let _ = stop.send(());
    }
    broker.shutdown().await;
}
