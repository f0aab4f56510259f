//! `fieldwatch submit` against the real service on the embedded broker
//! over loopback: more lines than its window, and a stream broken by a
//! restart of the service, lose no line (every one is stored or reported).

#![cfg(feature = "embedded-broker")]

mod common;

use std::io::Cursor;
use std::net::SocketAddr;
use std::time::Duration;

use fieldwatch::app::{self, Parts};
use fieldwatch::config::Config;
use fieldwatch::instrument::{Catalog, DEMO_STUDY_ID};
use fieldwatch::submit::{self, SubmitOptions};
use futures::FutureExt;

/// Bounds the start, the shutdown and every wait (generous: a loaded
/// two-core machine runs several builds beside the tests).
const WAIT: Duration = Duration::from_secs(120);

/// The service on loopback: gRPC on `grpc`, the broker on `broker`, 4 partitions.
fn config(dir: &std::path::Path, grpc: &str, broker: &str) -> Config {
    let mut config = common::loopback_config(dir);
    config.ingest.listen = grpc.parse().expect("addr");
    config.broker.listen = broker.parse().expect("addr");
    config.kafka.partitions = 4;
    config
}

fn opts(grpc: SocketAddr) -> SubmitOptions {
    SubmitOptions { server: format!("http://{grpc}"), token: None, retry_for: WAIT, progress: false }
}

/// `count` generated demo interviews as JSONL lines (seed 11).
fn generated(count: u64) -> Vec<String> {
    let catalog = Catalog::demo();
    let study = catalog.get(DEMO_STUDY_ID).expect("demo study");
    let mut out = Vec::new();
    let opts = fieldwatch::synth::Options { random_strings: false };
    fieldwatch::synth::write_jsonl(study, count, 11, &opts, &mut out).expect("generate");
    String::from_utf8(out).expect("utf8").lines().map(str::to_string).collect()
}

/// Interviews the live toplines count; with `caught_up`, only once the
/// aggregator has caught up.
async fn counted(http: SocketAddr, caught_up: bool) -> Option<u64> {
    let url = format!("http://{http}/api/v1/studies/{DEMO_STUDY_ID}/toplines");
    let v: serde_json::Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
    (!caught_up || v["caught_up"] == true).then(|| v["groups"][0]["interviews"].as_u64()).flatten()
}

/// Polls until the toplines count `n` interviews (within [`WAIT`]).
async fn wait_counted(http: SocketAddr, n: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        last = counted(http, true).await;
        if last == Some(n) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the toplines did not count {n} interviews within {WAIT:?} (last: {last:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn more_lines_than_the_window_are_all_stored_or_reported_by_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), "127.0.0.1:0", "127.0.0.1:0");
    common::with_service(cfg, WAIT, |r| async move {
        let mut lines = generated(400);
        // Line 101 is not JSON; line 202 is an interview of an item the form lacks.
        lines.insert(100, "{not json".to_string());
        let mut bad: serde_json::Value = serde_json::from_str(&lines[0]).expect("json");
        bad["submission_id"] = "bad-s1".into();
        bad["respondent_id"] = "bad-r1".into();
        bad["answers"]["q999"] = 1.into();
        lines.insert(201, bad.to_string());
        let input = lines.join("\n");
        let mut out = Vec::new();
        let window = 16;
        let s = submit::run_with_window(Cursor::new(input), &opts(r.grpc), window, &mut out)
            .await
            .expect("submit runs");
        let out = String::from_utf8(out).expect("utf8");
        assert_eq!((s.lines, s.accepted, s.rejected, s.failed), (402, 400, 2, 0), "{out}");
        assert!(out.contains("line 101: not a submission object"), "{out}");
        assert!(out.contains("line 202: answers.q999 (unknown_item)"), "{out}");
        assert_eq!(out.lines().count(), 2, "{out}");
        wait_counted(r.http, 400).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_broken_by_a_restart_of_the_service_loses_no_line() {
    const N: usize = 3000;
    let dir = tempfile::tempdir().expect("tempdir");
    let first = app::start(config(dir.path(), "127.0.0.1:0", "127.0.0.1:0"), Parts::All)
        .await
        .expect("service starts");
    let grpc = first.grpc_addr.expect("ingest runs");
    let broker = first.bootstrap.clone();
    assert!(first.wait_caught_up(WAIT).await, "the aggregator catches up");

    let input = generated(N as u64).join("\n");
    let task = tokio::spawn(async move {
        let mut out = Vec::new();
        let s = submit::run_with_window(Cursor::new(input), &opts(grpc), 64, &mut out).await;
        (s, String::from_utf8(out).expect("utf8"))
    });
    // Stop the service once it has stored a part of the lines.
    let deadline = tokio::time::Instant::now() + WAIT;
    while counted(first.http_addr, false).await.unwrap_or(0) < 50 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mid_run = !task.is_finished();
    first.shutdown(WAIT).await.expect("service stops cleanly");
    assert!(mid_run, "submit still ran when the service stopped (else raise N)");

    // The same addresses and data: submit reconnects and resends what got no result.
    let second = app::start(config(dir.path(), &grpc.to_string(), &broker), Parts::All)
        .await
        .expect("service starts again");
    let outcome = std::panic::AssertUnwindSafe(async {
        let (s, out) = tokio::time::timeout(WAIT, task).await.expect("submit ends in time").expect("task");
        let s = s.expect("submit runs");
        eprintln!("across the restart: {s}");
        assert_eq!((s.lines, s.accepted, s.rejected, s.failed), (N, N, 0, 0), "{out}");
        wait_counted(second.http_addr, N as u64).await;
    })
    .catch_unwind()
    .await;
    let stopped = second.shutdown(WAIT).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    stopped.expect("service stops cleanly");
}
