//! Set-up shared by the integration tests: the whole service on loopback
//! port 0 in a temporary data dir, always shut down; the records a topic
//! holds; a valid demo interview. Each test binary uses part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fieldwatch::aggregate::LiveState;
use fieldwatch::app::{self, Parts};
use fieldwatch::config::Config;
use fieldwatch::instrument::{Catalog, DEMO_STUDY_ID, KindDef};
use fieldwatch::kafka::{self, KafkaConfig};
use fieldwatch::proto::v1;
use futures::FutureExt;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// The embedded broker on 127.0.0.1 at a port the system picks, storing
/// in `dir`.
#[cfg(feature = "embedded-broker")]
pub async fn embedded_broker(dir: &Path) -> fieldwatch::broker::EmbeddedBroker {
    let addr = SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0));
    fieldwatch::broker::EmbeddedBroker::start(fieldwatch::broker::BrokerConfig::new(addr, dir))
        .await
        .expect("broker starts")
}

/// The pseudonym key of every test service.
pub const HMAC_KEY: &str = "integration-test-hmac-key-0123456789";

/// The service with ingest and HTTP on loopback port 0, its data (and the
/// embedded broker's) in `dir`.
pub fn loopback_config(dir: &Path) -> Config {
    let mut c = Config { data_dir: dir.to_path_buf(), ..Config::default() };
    c.ingest.listen = "127.0.0.1:0".parse().expect("addr");
    c.http.listen = "127.0.0.1:0".parse().expect("addr");
    c.ingest.hmac_key = Some(HMAC_KEY.into());
    c
}

/// What a test body gets from the running service.
#[derive(Clone)]
pub struct Service {
    /// gRPC ingest address.
    pub grpc: SocketAddr,
    /// HTTP address (`/metrics`, JSON API).
    pub http: SocketAddr,
    /// Bootstrap servers of the (embedded) broker.
    pub bootstrap: String,
    /// The aggregator's state.
    pub aggregator: Arc<LiveState>,
}

/// Starts the service, waits (up to `wait`) for its aggregator to catch
/// up, runs `body`, and shuts the service down within `wait` whether `body`
/// returns or panics. A clean shutdown is part of passing.
pub async fn with_service<F, Fut, T>(config: Config, wait: Duration, body: F) -> T
where
    F: FnOnce(Service) -> Fut,
    Fut: Future<Output = T>,
{
    let running = app::start(config, Parts::All).await.expect("service starts");
    let service = Service {
        grpc: running.grpc_addr.expect("ingest runs"),
        http: running.http_addr,
        bootstrap: running.bootstrap.clone(),
        aggregator: running.aggregator.clone().expect("aggregator runs"),
    };
    let outcome = std::panic::AssertUnwindSafe(async {
        assert!(running.wait_caught_up(wait).await, "the aggregator catches up");
        body(service).await
    })
    .catch_unwind()
    .await;
    let stopped = running.shutdown(wait).await;
    match outcome {
        Ok(t) => {
            stopped.expect("service stops cleanly");
            t
        }
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Records in `topic`: the sum over its partitions of high minus low
/// watermark. Ingest replies only after the broker acknowledged a write,
/// so a refused call that had published would show here at once.
pub fn topic_records(kafka: &KafkaConfig, bootstrap: &str, topic: &str, wait: Duration) -> i64 {
    let consumer: BaseConsumer =
        kafka::consumer_config(kafka, bootstrap, "watermarks").create().expect("consumer");
    (0..kafka.partitions as i32)
        .map(|p| {
            let (low, high) = consumer.fetch_watermarks(topic, p, wait).expect("watermarks");
            high - low
        })
        .sum()
}

/// The demo study's first form, and the id and lowest point of its first
/// scale item (read from the catalog, which may grow).
pub fn demo_scale_item() -> (String, String, i64) {
    let catalog = Catalog::demo();
    let study = catalog.get(DEMO_STUDY_ID).expect("demo study");
    let form = &study.forms[0];
    let (item, min) = form
        .items
        .iter()
        .find_map(|i| match i.kind {
            KindDef::Scale { min, .. } => Some((i.id.clone(), min)),
            _ => None,
        })
        .expect("a scale item");
    (form.id.clone(), item, min)
}

/// A valid interview of the demo study: its first form, the first scale
/// item at its lowest point.
pub fn demo_interview(respondent: &str, submission: &str) -> v1::Submission {
    let (form, item, min) = demo_scale_item();
    v1::Submission {
        study: DEMO_STUDY_ID.into(),
        form,
        respondent_id: respondent.into(),
        submission_id: submission.into(),
        started_at: Some("2005-03-01T10:00:00Z".into()),
        completed_at: Some("2005-03-01T10:52:00Z".into()),
        interviewer: Some("int03".into()),
        attributes: BTreeMap::new(),
        answers: [(item, v1::Answer { value: Some(v1::answer::Value::Integer(min)) })].into(),
    }
}
