//! Failover of `serve`, the one-command mode: loaded and fully committed,
//! killed with SIGKILL, started again on the same data with no new
//! submission, it must be ready with every interview counted within
//! [`READY_BOUND`] (docs/benchmarks.md, "Failover"). `serve` assigns itself
//! every partition instead of joining a consumer group, so nothing waits
//! for a group session or for a new record.
//!
//! Runs the real binary (a SIGKILL must not hit the test process) on the
//! embedded broker on loopback.

#![cfg(feature = "embedded-broker")]

use std::io::BufReader;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fieldwatch::instrument::DEMO_STUDY_ID;
use fieldwatch::submit::{self, SubmitOptions};

/// From the restart to ready with every interview counted (stated in
/// docs/benchmarks.md; generous for a loaded CI machine: measured ~3 s).
const READY_BOUND: Duration = Duration::from_secs(60);

/// Bounds the first start and each wait before the kill.
const WAIT: Duration = Duration::from_secs(120);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A `serve` process, SIGKILLed when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Ports of one service, kept across the restart.
struct Ports {
    grpc: u16,
    http: u16,
    broker: u16,
}

fn serve(dir: &Path, ports: &Ports, log: &str) -> Serve {
    let err = std::fs::File::create(dir.join(log)).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_fieldwatch"))
        .args(["serve", "--grpc-addr", &format!("127.0.0.1:{}", ports.grpc)])
        .args(["--http-addr", &format!("127.0.0.1:{}", ports.http)])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("FIELDWATCH__BROKER__LISTEN", format!("127.0.0.1:{}", ports.broker))
        .env("FIELDWATCH__KAFKA__PARTITIONS", "4")
        .env("FIELDWATCH__INGEST__HMAC_KEY", "failover-test-hmac-key-0123456789")
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("serve starts");
    Serve(child)
}

async fn get(url: &str) -> Option<(u16, String)> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().ok()?;
    let r = client.get(url).send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

/// Waits until `/readyz` is 200 and the toplines count `interviews`
/// completely; returns how long that took, or none within `bound`.
async fn ready_with(http: u16, interviews: u64, bound: Duration) -> Option<Duration> {
    let start = Instant::now();
    let toplines = format!("http://127.0.0.1:{http}/api/v1/studies/{DEMO_STUDY_ID}/toplines");
    while start.elapsed() < bound {
        let ready = get(&format!("http://127.0.0.1:{http}/readyz")).await.is_some_and(|(s, _)| s == 200);
        if ready
            && let Some((200, body)) = get(&toplines).await
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&body)
            && v["complete"] == true
            && v["groups"][0]["interviews"] == interviews
        {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn seed() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/seed-121.jsonl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_serve_started_again_without_new_submissions_is_ready_with_every_interview() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = Ports { grpc: free_port(), http: free_port(), broker: free_port() };
    let first = serve(dir.path(), &ports, "first.log");
    assert!(ready_with(ports.http, 0, WAIT).await.is_some(), "serve starts and is ready");
    let file = std::fs::File::open(seed()).expect("dataset");
    let opts = SubmitOptions {
        server: format!("http://127.0.0.1:{}", ports.grpc),
        token: None,
        retry_for: WAIT,
        progress: false,
    };
    let summary = submit::run(BufReader::new(file), &opts, &mut Vec::new()).await.expect("submit runs");
    assert_eq!(summary.accepted, 121);
    assert!(ready_with(ports.http, 121, WAIT).await.is_some(), "every interview counted before the kill");
    // Fully committed: at least one snapshot interval (5 s) after the last record.
    tokio::time::sleep(Duration::from_secs(7)).await;

    drop(first); // SIGKILL
    let _second = serve(dir.path(), &ports, "second.log");
    let took = ready_with(ports.http, 121, READY_BOUND).await;
    let log = std::fs::read_to_string(dir.path().join("second.log")).unwrap_or_default();
    assert!(
        took.is_some(),
        "ready with 121 interviews within {READY_BOUND:?} of the restart; log:\n{}",
        log.lines().rev().take(30).collect::<Vec<_>>().join("\n")
    );
    eprintln!("restart to ready with every interview: {:?}", took.unwrap_or_default());
}
