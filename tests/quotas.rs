//! Quotas end to end over real gRPC and HTTP, through the embedded broker:
//! the demo study's victim-witness cell (target 7) counts exactly through
//! retries and duplicate respondents, and `CheckQuota` says full exactly
//! when the cell reached its target, from the study-wide view; `report`
//! shows the seed's quota cells.

#![cfg(feature = "embedded-broker")]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fieldwatch::instrument::DEMO_STUDY_ID;
use fieldwatch::proto::v1::ingest_service_client::IngestServiceClient;
use fieldwatch::proto::v1::{CheckQuotaRequest, CheckQuotaResponse, SubmitRequest};
use tonic::Code;
use tonic::transport::Channel;

/// Generous: the machine may be loaded.
const WAIT: Duration = Duration::from_secs(120);

fn victim_witness(respondent: &str, submission: &str) -> SubmitRequest {
    let mut s = common::demo_interview(respondent, submission);
    s.form = "victim_witness".into();
    s.answers.clear();
    SubmitRequest { submission: Some(s), ..Default::default() }
}

fn position(value: &str) -> CheckQuotaRequest {
    CheckQuotaRequest {
        study: DEMO_STUDY_ID.into(),
        values: BTreeMap::from([("position".to_string(), value.to_string())]).into_iter().collect(),
    }
}

/// Asks until the answer's cell shows `achieved` (the view is rebuilt
/// periodically), or panics after [`WAIT`].
async fn check_when(c: &mut IngestServiceClient<Channel>, value: &str, achieved: u64) -> CheckQuotaResponse {
    let start = Instant::now();
    loop {
        let r = c.check_quota(position(value)).await.expect("check_quota").into_inner();
        if r.cells.first().is_some_and(|cell| cell.achieved == achieved) && r.complete {
            return r;
        }
        assert!(start.elapsed() < WAIT, "cell {value} never reached {achieved}: {r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn quotas_json(http: std::net::SocketAddr) -> serde_json::Value {
    let url = format!("http://{http}/api/v1/studies/{DEMO_STUDY_ID}/quotas");
    reqwest::get(url).await.expect("GET quotas").json().await.expect("json")
}

#[test]
fn the_report_command_shows_the_seed_quotas_in_the_table_and_the_json() {
    let run = |format: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fieldwatch"))
            .args(["report", "--input"])
            .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/seed-121.jsonl"))
            .args(["--format", format])
            .output()
            .expect("run fieldwatch report");
        assert!(out.status.success(), "report failed");
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let table = run("table");
    assert!(table.contains("quota position by position: 121 of 121 (3 cells full)"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&run("json")).expect("json");
    let cells: Vec<(String, u64, u64)> = json["quotas"][0]["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .map(|c| {
            (
                c["values"][0].as_str().unwrap_or("").to_string(),
                c["achieved"].as_u64().unwrap_or(0),
                c["target"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        cells,
        [("investigator".into(), 84, 84), ("line_officer".into(), 30, 30), ("victim_witness".into(), 7, 7)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_quota_says_full_exactly_when_the_cell_reached_its_target_through_retries_and_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    common::with_service(common::loopback_config(dir.path()), WAIT, |svc| async move {
        let mut c = IngestServiceClient::connect(format!("http://{}", svc.grpc)).await.expect("connect");
        for i in 1..=6 {
            c.submit(victim_witness(&format!("vw-{i}"), &format!("vw-sub-{i}"))).await.expect("accepted");
        }
        // A retry (same submission id) and a duplicate respondent (same
        // respondent, new submission id): neither may count.
        c.submit(victim_witness("vw-1", "vw-sub-1")).await.expect("retry accepted");
        c.submit(victim_witness("vw-2", "vw-sub-2-again")).await.expect("duplicate accepted");

        let r = check_when(&mut c, "victim_witness", 6).await;
        assert!(r.allowed, "{r:?}");
        let cell = &r.cells[0];
        assert_eq!((cell.quota.as_str(), cell.values.as_slice()), ("position", ["victim_witness".to_string()].as_slice()));
        assert_eq!((cell.target, cell.remaining, cell.full, cell.closed), (7, 1, false, false));
        assert!(r.as_of.is_some());
        assert_eq!(r.lag_records, 0);

        let json = quotas_json(svc.http).await;
        let cells = &json["quotas"][0]["cells"];
        assert_eq!(cells[2]["values"][0], "victim_witness");
        assert_eq!(cells[2]["achieved"], 6);
        assert_eq!(cells[0]["achieved"], 0);
        assert_eq!(json["complete"], true);

        c.submit(victim_witness("vw-7", "vw-sub-7")).await.expect("accepted");
        let r = check_when(&mut c, "victim_witness", 7).await;
        assert!(!r.allowed, "{r:?}");
        assert_eq!((r.cells[0].full, r.cells[0].closed, r.cells[0].remaining), (true, true, 0));

        // Another position's cell is still open.
        let r = c.check_quota(position("investigator")).await.expect("check").into_inner();
        assert!(r.allowed && !r.cells[0].full);
        // A quota dimension without a value, or an undeclared dimension, is invalid.
        let empty = CheckQuotaRequest { study: DEMO_STUDY_ID.into(), values: Default::default() };
        assert_eq!(c.check_quota(empty).await.expect_err("invalid").code(), Code::InvalidArgument);
        let mut odd = position("investigator");
        odd.values.insert("shoe_size".into(), "9".into());
        assert_eq!(c.check_quota(odd).await.expect_err("invalid").code(), Code::InvalidArgument);
        let mut unknown = position("investigator");
        unknown.study = "no-such-study".into();
        assert_eq!(c.check_quota(unknown).await.expect_err("not found").code(), Code::NotFound);

        let metrics = reqwest::get(format!("http://{}/metrics", svc.http))
            .await
            .expect("GET metrics")
            .text()
            .await
            .expect("text");
        let series = format!(
            "fieldwatch_quota_achieved_interviews{{cell=\"victim_witness\",quota=\"position\",study=\"{DEMO_STUDY_ID}\"}} 7"
        );
        assert!(metrics.contains(&series), "no {series}");
    })
    .await;
}
