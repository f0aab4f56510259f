//! Issue 15, item 1: a storm of unauthenticated reads does not take the
//! write path down. The whole service on the embedded broker over
//! loopback, the 121 seed interviews submitted over gRPC, then 200 tasks
//! GET `/metrics`, toplines and flags for about 10 s while interviews are
//! submitted one at a time. Latency figures belong in a benchmark; this
//! test asserts outcomes only.

#![cfg(feature = "embedded-broker")]

mod common;

use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::Service;
use fieldwatch::config::Config;
use fieldwatch::instrument::DEMO_STUDY_ID;
use fieldwatch::proto::v1::SubmitRequest;
use fieldwatch::proto::v1::ingest_service_client::IngestServiceClient;
use fieldwatch::read_token::ReadToken;
use fieldwatch::submit::{self, SubmitOptions};

/// Bounds the start, the shutdown, every call and every wait: far above
/// what they take, so only a hang fails the test (the machine may be loaded).
const WAIT: Duration = Duration::from_secs(120);
/// Concurrent readers in the storm.
const READERS: usize = 200;
/// How long the storm lasts.
const STORM: Duration = Duration::from_secs(10);
/// The bound on requests served at once, set low so the storm exceeds it
/// (the HTTP runtime has two worker threads, so two requests can be in
/// flight at once).
const MAX_CONCURRENT_REQUESTS: usize = 1;

fn path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The service on loopback with its own broker port, 4 partitions and a
/// low bound on concurrent HTTP requests.
fn config(dir: &std::path::Path) -> Config {
    let mut config = common::loopback_config(dir);
    config.broker.listen = "127.0.0.1:0".parse().expect("addr");
    config.kafka.partitions = 4;
    config.http.max_concurrent_requests = MAX_CONCURRENT_REQUESTS;
    config
}

/// What the readers saw.
#[derive(Default, Debug)]
struct Seen {
    ok: u64,
    too_many: u64,
    /// Any other status, with the path asked.
    other: Vec<(u16, String)>,
    /// Connections the server closed before answering: shed by its
    /// connection guards (`http.header_timeout_ms`, `http.max_connections`)
    /// while its threads were busy. Counted, allowed.
    shed: u64,
    /// Requests that got no complete answer otherwise (a timeout, a body cut off).
    failed: Vec<String>,
    slowest: Duration,
}

/// GETs `urls` in turn until `stop` is set; every request must answer
/// within [`WAIT`].
async fn read_until(
    client: reqwest::Client,
    urls: Arc<Vec<String>>,
    first: usize,
    stop: Arc<AtomicBool>,
    started: Instant,
) -> Seen {
    let mut seen = Seen::default();
    let mut i = first;
    while !stop.load(Ordering::Relaxed) {
        let url = &urls[i % urls.len()];
        i += 1;
        let start = Instant::now();
        let response = match client.get(url).send().await {
            Ok(r) => r,
            Err(e) if e.is_request() && !e.is_timeout() => {
                // The server closed the connection before reading the
                // request (overloaded reads are shed, not queued forever).
                seen.shed += 1;
                continue;
            }
            Err(e) => {
                seen.failed.push(format!("GET {url} at {:?}: {e:?}", started.elapsed()));
                break;
            }
        };
        let status = response.status().as_u16();
        // Read the whole body: a reply counts once it is complete.
        if let Err(e) = response.bytes().await {
            seen.failed.push(format!("body of {url} at {:?}: {e:?}", started.elapsed()));
            break;
        }
        seen.slowest = seen.slowest.max(start.elapsed());
        match status {
            200 => seen.ok += 1,
            429 => seen.too_many += 1,
            s => seen.other.push((s, url.clone())),
        }
    }
    seen
}

/// Submits valid interviews one at a time (unary, fresh ids) until `until`;
/// stops at the first that fails. Returns the read token of each that
/// succeeded, and the failure.
async fn submit_until(s: &Service, until: Instant) -> (Vec<ReadToken>, Option<String>) {
    let start = Instant::now();
    let mut client = IngestServiceClient::connect(format!("http://{}", s.grpc)).await.expect("connect");
    let mut tokens = Vec::new();
    while Instant::now() < until {
        let n = tokens.len();
        let sub = common::demo_interview(&format!("storm-r{n}"), &format!("storm-s{n}"));
        let call = client.submit(SubmitRequest { submission: Some(sub), disposition: None });
        let reply = match tokio::time::timeout(WAIT, call).await {
            Ok(Ok(reply)) => reply.into_inner(),
            Ok(Err(status)) => {
                return (tokens, Some(format!("Submit {n} failed at {:?}: {status:?}", start.elapsed())));
            }
            Err(_) => return (tokens, Some(format!("Submit {n} did not answer within {WAIT:?}"))),
        };
        tokens.push(reply.read_token.parse().expect("a read token"));
    }
    (tokens, None)
}

/// The highest token per partition, comma-separated: once the view
/// includes these, it includes every record before them too.
fn after(tokens: &[ReadToken]) -> String {
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for t in tokens {
        let o = last.entry(t.partition).or_insert(t.offset);
        *o = (*o).max(t.offset);
    }
    last.iter()
        .map(|(p, o)| ReadToken { partition: *p, offset: *o }.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

async fn storm(s: &Service) {
    let file = std::fs::File::open(path("tests/data/seed-121.jsonl")).expect("dataset");
    let opts =
        SubmitOptions { server: format!("http://{}", s.grpc), token: None, retry_for: WAIT, progress: false };
    let mut out = Vec::new();
    let seeded = submit::run(BufReader::new(file), &opts, &mut out).await.expect("submit runs");
    assert_eq!(
        (seeded.accepted, seeded.rejected, seeded.failed),
        (121, 0, 0),
        "{}",
        String::from_utf8_lossy(&out)
    );

    let base = format!("http://{}", s.http);
    let urls = Arc::new(vec![
        format!("{base}/metrics"),
        format!("{base}/api/v1/studies/{DEMO_STUDY_ID}/toplines?by=position"),
        format!("{base}/api/v1/studies/{DEMO_STUDY_ID}/flags?per_page=500"),
    ]);
    // One pool, one connection per reader (below `http.max_connections`).
    let storm_client = reqwest::Client::builder().timeout(WAIT).build().expect("client");
    let client = reqwest::Client::builder().timeout(WAIT).build().expect("client");
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    // The readers are other processes' load: they run on a runtime of
    // their own, so their work is not queued on the service's runtime.
    let storm_rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let readers: Vec<_> = (0..READERS)
        .map(|i| storm_rt.spawn(read_until(storm_client.clone(), urls.clone(), i, stop.clone(), started)))
        .collect();

    let (tokens, submit_failed) = submit_until(s, Instant::now() + STORM).await;
    stop.store(true, Ordering::Relaxed);
    let mut seen = Seen::default();
    for r in readers {
        let r =
            tokio::time::timeout(WAIT, r).await.expect("a reader stops").expect("a reader does not panic");
        seen.ok += r.ok;
        seen.too_many += r.too_many;
        seen.shed += r.shed;
        seen.other.extend(r.other);
        seen.failed.extend(r.failed);
        seen.slowest = seen.slowest.max(r.slowest);
    }
    storm_rt.shutdown_background();
    eprintln!(
        "read storm: {} submits, {} GETs answered 200, {} answered 429, {} connections shed, slowest GET {:?}",
        tokens.len(),
        seen.ok,
        seen.too_many,
        seen.shed,
        seen.slowest
    );
    assert_eq!(submit_failed, None, "every Submit during the read storm succeeds");
    assert!(
        seen.failed.is_empty(),
        "{} GETs got no answer: {:?}",
        seen.failed.len(),
        &seen.failed[..seen.failed.len().min(5)]
    );
    assert!(!tokens.is_empty(), "no Submit completed during the storm");
    assert!(
        seen.other.is_empty(),
        "GETs answered neither 200 nor 429: {:?}",
        &seen.other[..seen.other.len().min(10)]
    );
    assert!(seen.ok > 0, "no GET was served during the storm");
    assert!(seen.too_many > 0, "{READERS} readers never exceeded a bound of {MAX_CONCURRENT_REQUESTS}");

    let ready = client.get(format!("{base}/readyz")).send().await.expect("GET /readyz");
    assert_eq!(ready.status().as_u16(), 200, "ready after the storm");

    // Every interview submitted is counted, read through the read tokens.
    let url = format!("{base}/api/v1/studies/{DEMO_STUDY_ID}/toplines?after={}", after(&tokens));
    let deadline = Instant::now() + WAIT;
    let toplines: serde_json::Value = loop {
        let r = client.get(&url).send().await.expect("GET toplines");
        match r.status().as_u16() {
            200 => {
                assert_eq!(
                    r.headers().get("x-fieldwatch-includes").and_then(|v| v.to_str().ok()),
                    Some("true"),
                    "the view includes the writes"
                );
                break r.json().await.expect("json");
            }
            503 | 429 if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            s => panic!("toplines after the storm answered {s}"),
        }
    };
    assert_eq!(toplines["groups"][0]["interviews"], 121 + tokens.len() as u64, "every interview is counted");
}

// The HTTP server runs on a runtime of its own (src/app.rs,
// `spawn_isolated`), so the storm uses its two threads and the 429 bound,
// never the workers of ingest, the aggregator and the embedded broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_of_reads_leaves_every_submit_succeeding_and_every_interview_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    common::with_service(config(dir.path()), WAIT, |s| async move { storm(&s).await }).await;
}
