//! Study-wide answers from every instance (issue 10, item 1): one ingest
//! and two `aggregate` instances in one consumer group on the embedded
//! broker, each owning part of the partitions. Each instance's toplines,
//! fieldwork and flags must be the whole study (from its own partitions and
//! the other partitions' snapshots in the state topic), say `complete`, and
//! equal the other instance's; their Prometheus counts stay per instance and
//! sum to the study.
#![cfg(feature = "embedded-broker")]

mod common;

use std::io::BufReader;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use fieldwatch::app::{self, Parts, Running};
use fieldwatch::instrument::DEMO_STUDY_ID;
use fieldwatch::submit::{self, SubmitOptions};

/// Bounds every wait (a loaded machine; the answers come within seconds).
const WAIT: Duration = Duration::from_secs(120);

async fn get_json(url: &str) -> serde_json::Value {
    reqwest::get(url).await.expect("GET").json().await.expect("json")
}

/// Polls `path` on `http` until `done` holds for the answer.
async fn until(http: SocketAddr, path: &str, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let url = format!("http://{http}{path}");
    let start = std::time::Instant::now();
    loop {
        let v = get_json(&url).await;
        if done(&v) {
            return v;
        }
        assert!(start.elapsed() < WAIT, "{path} on {http} did not get there within {WAIT:?}: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sum of a metric's samples whose line starts with `prefix`.
fn metric_sum(scrape: &str, prefix: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_instance_answers_for_the_whole_study_and_says_it_is_complete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = common::embedded_broker(dir.path()).await;
    let mut config = common::loopback_config(dir.path());
    config.kafka.brokers = Some(broker.bootstrap());
    config.kafka.partitions = 4;
    config.aggregate.group_id = "studywide-test".into();
    config.aggregate.snapshot_interval_ms = 1_000;

    let ingest = app::start(config.clone(), Parts::Ingest).await.expect("ingest starts");
    let a = app::start(config.clone(), Parts::Aggregate).await.expect("first aggregator starts");
    let b = app::start(config.clone(), Parts::Aggregate).await.expect("second aggregator starts");
    let outcome = std::panic::AssertUnwindSafe(check(&ingest, &a, &b));
    let outcome = futures::FutureExt::catch_unwind(outcome).await;
    for r in [a, b, ingest] {
        let _ = r.shutdown(WAIT).await;
    }
    broker.shutdown().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn check(ingest: &Running, a: &Running, b: &Running) {
    // Both members own part of the four partitions.
    let (sa, sb) = (a.aggregator.clone().expect("a"), b.aggregator.clone().expect("b"));
    let start = std::time::Instant::now();
    while sa.partitions().is_empty()
        || sb.partitions().is_empty()
        || sa.partitions().len() + sb.partitions().len() != 4
    {
        assert!(start.elapsed() < WAIT, "the two instances share the partitions");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let owned = (sa.partitions().len(), sb.partitions().len());

    let file =
        std::fs::File::open(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/seed-121.jsonl"))
            .expect("dataset");
    let opts = SubmitOptions {
        server: format!("http://{}", ingest.grpc_addr.expect("grpc")),
        token: None,
        retry_for: WAIT,
        progress: false,
    };
    assert_eq!(
        submit::run(BufReader::new(file), &opts, &mut Vec::new()).await.expect("submit").accepted,
        121
    );

    let toplines = format!("/api/v1/studies/{DEMO_STUDY_ID}/toplines");
    let whole = |v: &serde_json::Value| v["complete"] == true && v["groups"][0]["interviews"] == 121;
    let ta = until(a.http_addr, &toplines, whole).await;
    let tb = until(b.http_addr, &toplines, whole).await;
    assert_eq!(ta["groups"], tb["groups"], "both instances give the same toplines");
    let sources: Vec<&str> = ta["freshness"]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .filter_map(|p| p["source"].as_str())
        .collect();
    assert_eq!(sources.len(), 4);
    assert!(
        sources.contains(&"owned") && sources.contains(&"snapshot"),
        "owned and snapshot parts: {sources:?}"
    );
    assert_eq!(ta["freshness"]["lag_records"], 0);

    let by = format!("{toplines}?by=position");
    let all_groups = |v: &serde_json::Value| {
        v["complete"] == true
            && v["groups"]
                .as_array()
                .is_some_and(|g| g.iter().filter_map(|g| g["interviews"].as_u64()).sum::<u64>() == 121)
    };
    let (pa, pb) = (until(a.http_addr, &by, all_groups).await, until(b.http_addr, &by, all_groups).await);
    assert_eq!(pa["groups"], pb["groups"], "the same toplines by position");
    let fieldwork = format!("/api/v1/studies/{DEMO_STUDY_ID}/fieldwork");
    let complete = |v: &serde_json::Value| v["complete"] == true;
    let (fa, fb) =
        (until(a.http_addr, &fieldwork, complete).await, until(b.http_addr, &fieldwork, complete).await);
    assert_eq!(without_freshness(fa), without_freshness(fb), "the same fieldwork");
    let flags = format!("/api/v1/studies/{DEMO_STUDY_ID}/flags?per_page=500");
    let (ga, gb) = (until(a.http_addr, &flags, complete).await, until(b.http_addr, &flags, complete).await);
    assert_eq!(ga["total"], gb["total"], "the same flags");
    assert_eq!(ga["flags"], gb["flags"]);
    let studies = until(a.http_addr, "/api/v1/studies", complete).await;
    assert_eq!(studies["studies"][0]["interviews"], 121);

    // Prometheus stays per instance: each exports its own partitions, the sum is the study.
    let scrape = |h: SocketAddr| async move {
        let text =
            reqwest::get(format!("http://{h}/metrics")).await.expect("GET").text().await.expect("text");
        metric_sum(&text, "fieldwatch_interviews{")
    };
    let start = std::time::Instant::now();
    let (na, nb) = loop {
        let (na, nb) = (scrape(a.http_addr).await, scrape(b.http_addr).await);
        if na + nb == 121.0 || start.elapsed() > WAIT {
            break (na, nb);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(na + nb, 121.0, "per-instance counts sum to the study (owned {owned:?})");
    assert!(na > 0.0 && nb > 0.0, "each instance exports only its own partitions: {na} + {nb}");
}

/// An answer without the fields that say when and how it was built.
fn without_freshness(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("freshness");
    }
    v
}
