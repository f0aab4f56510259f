//! Fieldwork end to end: the seed study's dispositions (121 completes, 11
//! refusals, 78 non-contacts, 82 ineligible) give RR1 = 57.6% offline in
//! `report`, and live through ingest, the embedded broker, the aggregator,
//! the JSON API and `/metrics` (whose disposition series are the input of
//! the promtool test of `deploy/prometheus/fieldwork-rules.yaml`). Flagged
//! interviews reach `/flags` and the quality topic once, even after the
//! aggregator restarts and replays the responses topic.

#[cfg(feature = "embedded-broker")]
mod common;

use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use fieldwatch::instrument::{Catalog, DEMO_STUDY_ID};
use fieldwatch::report;
use fieldwatch::validate::Limits;

const SEED: &str = "tests/data/seed-121.jsonl";
const FIELDWORK: &str = "tests/data/seed-fieldwork.jsonl";
const RR1: f64 = 121.0 / 210.0;

fn path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn seed_input() -> Vec<u8> {
    let mut all = std::fs::read(path(SEED)).expect("read seed-121.jsonl");
    all.extend(std::fs::read(path(FIELDWORK)).expect("read seed-fieldwork.jsonl"));
    all
}

#[test]
fn the_seed_fieldwork_gives_rr1_57_6_percent_in_the_report() {
    let catalog = Catalog::demo();
    let study = catalog.get(DEMO_STUDY_ID).expect("demo");
    let input = seed_input();
    let tally = report::tally(study, BufReader::new(input.as_slice()), &Limits::default()).expect("tally");
    assert!(tally.errors.is_empty(), "{:?}", tally.errors.first());
    let f = report::fieldwork(study, &tally, None).expect("fieldwork");
    let all = &f.groups[0];
    let c = all.counts;
    assert_eq!(
        (c.complete, c.refusal, c.non_contact, c.not_eligible, c.partial, c.other, c.unknown()),
        (121, 11, 78, 82, 0, 0, 0)
    );
    assert_eq!(all.cases, 292);
    assert!((all.rates.rr1.expect("rr1") - RR1).abs() < 1e-12);
    // Many records changed a case's disposition; each case counts once.
    assert!(f.superseded > 0 && f.records > 292, "{} records, {} superseded", f.records, f.superseded);
    // By position: every case belongs to a form's position.
    let by = report::fieldwork(study, &tally, Some("position")).expect("by position");
    assert_eq!(by.groups.iter().map(|g| g.cases).sum::<u64>(), 292);
    assert!(by.groups.iter().all(|g| g.segment != "unknown"));
    // By interviewer: the six interviewers, each with quality measures.
    let by = report::fieldwork(study, &tally, Some("interviewer")).expect("by interviewer");
    let labels: Vec<&str> = by.groups.iter().map(|g| g.segment.as_str()).collect();
    assert_eq!(labels, vec!["int01", "int02", "int03", "int04", "int05", "int06"]);
    assert_eq!(by.groups.iter().map(|g| g.counts.complete).sum::<u64>(), 121);
}

#[test]
fn the_report_command_prints_the_fieldwork_section() {
    let run = |format: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fieldwatch"))
            .args(["report", "--input", "-", "--format", format])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run fieldwatch report");
        let mut stdin = child.stdin.take().expect("stdin");
        let input = seed_input();
        let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
        let mut out = String::new();
        child.stdout.take().expect("stdout").read_to_string(&mut out).expect("read stdout");
        let status = child.wait().expect("wait");
        writer.join().expect("writer").expect("write stdin");
        assert!(status.success(), "report failed");
        out
    };
    let doc: serde_json::Value = serde_json::from_str(&run("json")).expect("report prints JSON");
    let all = &doc["fieldwork"]["groups"][0];
    assert_eq!(all["cases"], 292);
    assert!((all["rates"]["rr1"].as_f64().expect("rr1") - RR1).abs() < 1e-12);
    let table = run("table");
    assert!(table.contains("I 121 P 0 R 11 NC 78 O 0 UH 0 UO 0 NE 82"), "{table}");
    assert!(table.contains("RR1 57.6%"), "{table}");
}

/// `promtool test rules` on the fieldwork rules, where promtool is
/// installed (Debian package `prometheus`); said and skipped elsewhere.
#[test]
fn the_fieldwork_rules_pass_their_promtool_tests() {
    let tests = path("deploy/prometheus/tests/fieldwork-rules-test.yaml");
    let out = match Command::new("promtool").arg("test").arg("rules").arg(&tests).output() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("promtool not runnable ({e}): fieldwork rule tests skipped");
            return;
        }
    };
    assert!(
        out.status.success(),
        "promtool test rules failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(feature = "embedded-broker")]
mod live {
    use std::collections::BTreeMap;

    use super::common::{self, HMAC_KEY};
    use fieldwatch::ingest::Pseudonymizer;
    use fieldwatch::kafka;
    use fieldwatch::proto::v1::ingest_service_client::IngestServiceClient;
    use fieldwatch::proto::v1::{self, SubmitDispositionRequest};
    use fieldwatch::submit::{self, SubmitOptions};
    use tonic::Code;
    use tonic_types::StatusExt;

    use std::time::Duration;

    use super::*;

    /// Bounds each wait: far above what it takes, so only a hang fails.
    const WAIT: Duration = Duration::from_secs(60);

    async fn get(http: std::net::SocketAddr, path: &str) -> serde_json::Value {
        let r = reqwest::get(format!("http://{http}{path}")).await.expect("GET");
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.expect("JSON")
    }

    /// Polls `path` until `done` holds for its JSON.
    async fn until(
        http: std::net::SocketAddr,
        path: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let v = get(http, path).await;
            if done(&v) {
                return v;
            }
            assert!(tokio::time::Instant::now() < deadline, "{path} never got there: {v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Records in the quality topic.
    fn quality_records(bootstrap: &str) -> i64 {
        let k = kafka::KafkaConfig::default();
        common::topic_records(&k, bootstrap, &k.quality_topic, WAIT)
    }

    /// A 10-minute interview (the seed's take about an hour): a speeder.
    fn speeder() -> String {
        r#"{"study":"le-trafficking","form":"investigator","respondent_id":"FAST-001","submission_id":"FAST-001-1","started_at":"2005-09-01T14:00:00Z","completed_at":"2005-09-01T14:10:00Z","interviewer":"int03","attributes":{"region":"west"},"answers":{"q6":6}}"#.to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn seed_fieldwork_through_the_broker_gives_rr1_in_the_api_and_flags_are_published_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = "/api/v1/studies/le-trafficking/fieldwork";
        let total = common::with_service(common::loopback_config(dir.path()), WAIT, |svc| async move {
        let (grpc, http, bootstrap) = (svc.grpc, svc.http, svc.bootstrap.clone());

        // The seed through the real `submit` client: interviews and dispositions.
        let opts =
            SubmitOptions { server: format!("http://{grpc}"), token: None, retry_for: WAIT, progress: false };
        let mut out = Vec::new();
        let input = seed_input();
        let s = submit::run(BufReader::new(input.as_slice()), &opts, &mut out).await.expect("submit");
        assert_eq!(
            (s.accepted, s.rejected, s.failed),
            (121 + 598, 0, 0),
            "{}",
            String::from_utf8_lossy(&out)
        );

        // RR1 = 121 / 210 = 57.6% in the API, once every record is applied
        // (the 292 cases exist before their last moves are in).
        let f = until(http, path, |v| v["records"] == 121 + 598).await;
        let all = &f["groups"][0];
        assert_eq!(all["cases"], 292);
        let rr1 = |v: &serde_json::Value| v["rates"]["rr1"].as_f64().expect("rr1");
        assert!((rr1(all) - RR1).abs() < 1e-12, "{all}");
        assert_eq!(format!("{:.1}", rr1(all) * 100.0), "57.6");
        let c = &all["counts"];
        let n = |k: &str| c[k].as_u64().expect("count");
        assert_eq!((n("complete"), n("refusal"), n("non_contact"), n("not_eligible")), (121, 11, 78, 82));

        // Interviews per day and each interviewer's median duration: live
        // (merged over the partitions) exactly as `report` gives them offline.
        let catalog = Catalog::demo();
        let study = catalog.get(DEMO_STUDY_ID).expect("demo");
        let input = super::seed_input();
        let tally = report::tally(study, BufReader::new(input.as_slice()), &Limits::default()).expect("tally");
        let offline = report::fieldwork(study, &tally, Some("interviewer")).expect("by interviewer");
        let want = serde_json::to_value(&offline.interviews_per_day).expect("json");
        assert_eq!(f["interviews_per_day"], want);
        assert_eq!(want["undated"], 0);
        assert_eq!(want["days"].as_array().map(Vec::len), Some(80), "the seed's 80 fieldwork days");
        let by = get(http, &format!("{path}?by=interviewer")).await;
        for g in &offline.groups {
            let median = g.quality.as_ref().and_then(|q| q.median_duration_secs);
            assert!(median.is_some(), "{}: the seed's interviews are timed", g.segment);
            let live = by["groups"].as_array().expect("groups").iter().find(|x| x["segment"] == g.segment.as_str());
            assert_eq!(live.map(|x| x["quality"]["median_duration_secs"].as_f64()), Some(median), "{}", g.segment);
        }

        // /metrics: the disposition counts the recording rules read (the
        // input series of deploy/prometheus/tests/fieldwork-rules-test.yaml).
        let metrics =
            reqwest::get(format!("http://{http}/metrics")).await.expect("GET").text().await.expect("text");
        for (d, n) in [
            ("complete", 121),
            ("refusal", 11),
            ("non_contact", 78),
            ("not_eligible", 82),
            ("partial", 0),
            ("unknown_other", 0),
        ] {
            let series = format!(
                r#"fieldwatch_dispositions{{dimension="all",disposition="{d}",segment="all",study="le-trafficking"}} {n}"#
            );
            assert!(metrics.contains(&series), "missing {series}");
        }
        assert!(metrics.contains(
            r#"fieldwatch_fieldwork_eligibility_estimate{method="proportional",study="le-trafficking"} 0.719"#
        ));
        assert!(metrics.contains(
            r#"fieldwatch_dispositions{dimension="interviewer",disposition="complete",segment="int03""#
        ));
        assert!(!metrics.contains("LE-0001"), "no raw id in metrics");

        // A speeder, a case of unknown eligibility through the unary call,
        // and a disposition rejected per field.
        let mut input = speeder().into_bytes();
        input.push(b'\n');
        let s = submit::run(BufReader::new(input.as_slice()), &opts, &mut out).await.expect("submit");
        assert_eq!(s.accepted, 1);
        let mut client = IngestServiceClient::connect(format!("http://{grpc}")).await.expect("connect");
        let d = v1::Disposition {
            study: DEMO_STUDY_ID.into(),
            case_id: "LE-LATE-1".into(),
            disposition: "unknown_household".into(),
            time: "2005-09-01T10:00:00Z".into(),
            interviewer: Some("int02".into()),
            form: None,
            attributes: BTreeMap::new(),
        };
        client
            .submit_disposition(SubmitDispositionRequest { disposition: Some(d.clone()) })
            .await
            .expect("accepted");
        let bad = v1::Disposition { disposition: "maybe".into(), time: "later".into(), ..d };
        let status = client
            .submit_disposition(SubmitDispositionRequest { disposition: Some(bad) })
            .await
            .expect_err("invalid");
        assert_eq!(status.code(), Code::InvalidArgument);
        let rules: Vec<String> = status
            .get_details_bad_request()
            .expect("BadRequest")
            .field_violations
            .iter()
            .map(|v| format!("{}:{}", v.field, v.reason))
            .collect();
        assert_eq!(rules, vec!["disposition:unknown_disposition", "time:bad_timestamp"]);

        // 122 completes of 212 eligible or unknown; RR3 = 122 / (211 + e),
        // e = 211 / 293 (proportional).
        let f = until(http, path, |v| v["records"] == 121 + 598 + 2).await;
        let all = &f["groups"][0];
        assert_eq!(all["cases"], 294);
        assert_eq!(all["counts"]["complete"], 122);
        assert_eq!(all["counts"]["unknown_household"], 1);
        assert!((rr1(all) - 122.0 / 212.0).abs() < 1e-12, "{all}");
        let e = f["eligibility_estimate"].as_f64().expect("e");
        assert!((e - 211.0 / 293.0).abs() < 1e-12, "{e}");
        assert!((all["rates"]["rr3"].as_f64().expect("rr3") - 122.0 / (211.0 + e)).abs() < 1e-12);
        let r = reqwest::get(format!("http://{http}{path}?by=nope")).await.expect("GET");
        assert_eq!(r.status(), reqwest::StatusCode::BAD_REQUEST);

        // By interviewer: int03 did the speeder.
        let by = get(http, &format!("{path}?by=interviewer")).await;
        let int03 =
            by["groups"].as_array().expect("groups").iter().find(|g| g["segment"] == "int03").expect("int03");
        assert_eq!(
            int03["quality"]["measures"]["speeding"]["rate"].as_f64().map(|r| r > 0.0),
            Some(true),
            "{int03}"
        );
        let metrics =
            reqwest::get(format!("http://{http}/metrics")).await.expect("GET").text().await.expect("text");
        assert!(metrics.contains(
            r#"fieldwatch_interviewer_speeders{interviewer="int03",study="le-trafficking"} 1"#
        ));
        assert!(!metrics.contains("FAST-001"));

        // /flags: the speeder, pseudonymous; filters and pages.
        let flags =
            until(http, "/api/v1/studies/le-trafficking/flags?check=speeder", |v| v["total"] == 1).await;
        let flag = &flags["flags"][0];
        let key = Pseudonymizer::new(HMAC_KEY.as_bytes()).key("FAST-001");
        assert_eq!(flag["respondent_key"], key.as_str());
        assert_eq!(flag["submission_id"], "FAST-001-1");
        assert_eq!(flag["interviewer"], "int03");
        let checks: Vec<&str> =
            flag["checks"].as_array().expect("checks").iter().filter_map(|c| c["check"].as_str()).collect();
        assert!(checks.contains(&"speeder") && checks.contains(&"out_of_range"), "{checks:?}");
        assert!(!flags.to_string().contains("FAST-001\""), "no raw id");
        let all_flags = get(http, "/api/v1/studies/le-trafficking/flags?per_page=1").await;
        let total = all_flags["total"].as_u64().expect("total");
        assert!(total >= 1 && all_flags["flags"].as_array().map(Vec::len) == Some(1));
        let none = get(http, "/api/v1/studies/le-trafficking/flags?check=speeder&interviewer=int01").await;
        assert_eq!(none["total"], 0);

        // The quality topic holds one record per flagged interview.
        let deadline = tokio::time::Instant::now() + WAIT;
        while quality_records(&bootstrap) < total as i64 {
            assert!(tokio::time::Instant::now() < deadline, "quality records never reached {total}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        total
        })
        .await;

        // Restart on the same data: the aggregator restores its partitions
        // (flags included) from the snapshots saved at shutdown, or replays
        // them, and publishes nothing again.
        common::with_service(common::loopback_config(dir.path()), WAIT, |svc| async move {
            let http = svc.http;
            until(http, path, |v| v["records"] == 121 + 598 + 2).await;
            until(http, "/api/v1/studies/le-trafficking/flags", |v| v["total"] == total).await;
            let metrics = reqwest::get(format!("http://{http}/metrics"))
                .await
                .expect("GET")
                .text()
                .await
                .expect("text");
            assert!(
                metrics.contains(r#"fieldwatch_quality_records_total{outcome="published"} 0"#),
                "nothing is published again after the restart"
            );
            // ... and the quality topic holds no second copy.
            assert_eq!(quality_records(&svc.bootstrap), total as i64, "replayed flags were republished");
        })
        .await;
    }

    /// Flagged interview `offset` of responses partition 0 (a speeder).
    fn flagged(offset: i64) -> fieldwatch::fieldwork::review::FlaggedInterview {
        fieldwatch::fieldwork::review::FlaggedInterview {
            study: "le-trafficking".into(),
            form: "investigator".into(),
            submission_id: format!("S-{offset}"),
            respondent_key: format!("k{offset}"),
            interviewer: "int03".into(),
            received_at: None,
            checks: vec![fieldwatch::fieldwork::review::FlaggedCheck {
                check: fieldwatch::quality::Check::Speeder,
                item: None,
                code: None,
                message: None,
            }],
            source_partition: 0,
            source_offset: offset,
        }
    }

    /// A partition that comes back (a new generation) while its flags are
    /// still on their way to the broker (the publisher does not wait for
    /// each acknowledgement, and its producer lingers): the replay is
    /// skipped, not published a second time, because the watermark is read
    /// only once what was sent before is acknowledged.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn flags_still_in_flight_when_a_partition_comes_back_are_not_published_twice() {
        use fieldwatch::aggregate::LiveState;
        use fieldwatch::aggregate::flag_publisher::{QualityPublisher, QualityRecord};
        use std::sync::Arc;

        const FLAGS: i64 = 40;
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = common::embedded_broker(dir.path()).await;
        let bootstrap = broker.bootstrap();
        let kafka = kafka::KafkaConfig::default();
        kafka::ensure_topics(&kafka, &bootstrap).await.expect("topics");
        let shared = LiveState::new(Arc::new(Catalog::demo()), Limits::default());
        let publisher = QualityPublisher::new(&kafka, &bootstrap, shared.clone()).expect("publisher");
        let (tx, rx) = tokio::sync::mpsc::channel(fieldwatch::aggregate::flag_publisher::CHANNEL_CAPACITY);
        let task = tokio::spawn(publisher.run(rx));
        // The first generation publishes every flag; the second, at once,
        // replays the same records.
        for generation in [1, 2] {
            for offset in 0..FLAGS {
                let record = QualityRecord { generation, flagged: flagged(offset), late: false };
                tx.send(record).await.expect("publisher runs");
            }
        }
        drop(tx);
        tokio::time::timeout(WAIT, task).await.expect("the publisher drains and stops").expect("no panic");
        let counters = shared.quality_counters();
        let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(count(&counters.published), FLAGS as u64, "published once");
        assert_eq!(count(&counters.replayed), FLAGS as u64, "the replay is skipped");
        assert_eq!(count(&counters.failed), 0);
        assert_eq!(quality_records(&bootstrap), FLAGS, "the quality topic holds each flag once");
        broker.shutdown().await;
    }
}
