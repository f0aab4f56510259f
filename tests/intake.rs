//! Every front door of the ingest port with a real client over loopback,
//! against `serve` on the embedded broker: JSON and NDJSON posts (reqwest),
//! gRPC-Web (tonic-web's client layer over HTTP/1.1), a recorded-shape
//! KoboToolbox REST-service payload, and native gRPC for comparison. Each
//! stored record is read back through the JSON API with `?after=TOKEN`
//! (read-your-writes) instead of sleeping, and counted once.

#![cfg(feature = "embedded-broker")]

mod common;

use std::time::Duration;

use common::Service;
use fieldwatch::config::Config;
use fieldwatch::ingest::TokenConfig;
use fieldwatch::ingest::auth::token_hash;
use fieldwatch::instrument::DEMO_STUDY_ID;
use fieldwatch::proto::v1::ingest_service_client::IngestServiceClient;
use fieldwatch::proto::v1::{self, SubmitRequest};
use serde_json::{Value, json};
use tonic::Code;
use tonic_types::StatusExt;

/// Bounds the start, the shutdown and every wait.
const WAIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "token-of-the-web-survey-5e21";
const ORIGIN: &str = "https://survey.example.org";

fn config(dir: &std::path::Path) -> Config {
    let mut c = common::loopback_config(dir);
    c.kafka.partitions = 2;
    c.ingest.tokens = vec![TokenConfig { frontend: "web".into(), sha256: token_hash(TOKEN) }];
    c.ingest.cors_origins = vec![ORIGIN.into()];
    c.ingest.max_http_body_bytes = 64 * 1024;
    c.http.read_wait_ms = 30_000;
    c
}

fn submissions_url(s: &Service, study: &str) -> String {
    format!("http://{}/api/v1/studies/{study}/submissions", s.grpc)
}

/// A valid demo interview in the JSONL shape.
fn interview(respondent: &str, submission: &str) -> Value {
    let (form, item, min) = common::demo_scale_item();
    json!({"study": DEMO_STUDY_ID, "form": form, "respondent_id": respondent,
           "submission_id": submission, "answers": {item: min}})
}

/// The same interview with two problems: a scale answered with text, and
/// an item the form lacks.
fn invalid(respondent: &str, submission: &str) -> Value {
    let (_, item, _) = common::demo_scale_item();
    let mut v = interview(respondent, submission);
    v["answers"][item.as_str()] = json!("very");
    v["answers"]["q999"] = json!(1);
    v
}

async fn post_json(s: &Service, body: &Value, token: Option<&str>) -> reqwest::Response {
    let mut r = reqwest::Client::new().post(submissions_url(s, DEMO_STUDY_ID)).json(body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.expect("POST")
}

/// The live toplines once the view includes `tokens`.
async fn toplines_after(s: &Service, tokens: &[&str]) -> Value {
    let url = format!("http://{}/api/v1/studies/{DEMO_STUDY_ID}/toplines?after={}", s.http, tokens.join(","));
    let r = reqwest::get(url).await.expect("GET toplines");
    assert_eq!(r.status(), 200, "the view includes the records within the wait");
    assert_eq!(r.headers().get("x-fieldwatch-includes").map(|v| v.as_bytes()), Some(&b"true"[..]));
    r.json().await.expect("json")
}

fn interviews(toplines: &Value) -> u64 {
    toplines["groups"][0]["interviews"].as_u64().expect("interviews")
}

/// `(field, rule)` of each violation in a JSON refusal.
fn json_violations(v: &Value) -> Vec<(String, String)> {
    let mut out: Vec<_> = v["violations"]
        .as_array()
        .expect("violations")
        .iter()
        .map(|x| {
            (x["field"].as_str().expect("field").to_string(), x["rule"].as_str().expect("rule").to_string())
        })
        .collect();
    out.sort();
    out
}

/// `(field, rule)` of each violation in a gRPC status.
fn status_violations(status: &tonic::Status) -> Vec<(String, String)> {
    let bad = status.get_details_bad_request().expect("BadRequest details");
    let mut out: Vec<_> = bad.field_violations.iter().map(|f| (f.field.clone(), f.reason.clone())).collect();
    out.sort();
    out
}

fn grpc_request(s: Value) -> tonic::Request<SubmitRequest> {
    let plain: fieldwatch::validate::Submission = serde_json::from_value(s).expect("submission");
    let mut r = tonic::Request::new(SubmitRequest {
        submission: Some(v1::Submission::from(plain)),
        disposition: None,
    });
    r.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().expect("ascii"));
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_ndjson_posts_are_stored_once_and_refused_like_grpc() {
    let dir = tempfile::tempdir().expect("tempdir");
    common::with_service(config(dir.path()), WAIT, |s| async move {
        // One interview: 200 with where it went; read back with its token.
        let r = post_json(&s, &interview("R-1", "S-1"), Some(TOKEN)).await;
        assert_eq!(r.status(), 200);
        let stored: Value = r.json().await.expect("json");
        let first = stored["read_token"].as_str().expect("read_token").to_string();
        assert_eq!(first, format!("{}:{}", stored["partition"], stored["offset"]));
        assert_eq!(interviews(&toplines_after(&s, &[&first]).await), 1);

        // The same submission id again is a retry: stored, counted once.
        let again: Value =
            post_json(&s, &interview("R-1", "S-1"), Some(TOKEN)).await.json().await.expect("json");
        let retry = again["read_token"].as_str().expect("read_token").to_string();
        assert_ne!(retry, first, "a second record");
        assert_eq!(interviews(&toplines_after(&s, &[&retry]).await), 1, "a retry counts once");

        // NDJSON: two valid lines around an invalid one, answered per line.
        let body = [interview("R-2", "S-2"), invalid("R-3", "S-3"), interview("R-4", "S-4")]
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        let r = reqwest::Client::new()
            .post(submissions_url(&s, DEMO_STUDY_ID))
            .bearer_auth(TOKEN)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .expect("POST ndjson");
        assert_eq!(r.status(), 200);
        let batch: Value = r.json().await.expect("json");
        let statuses: Vec<u64> = batch["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|x| x["status"].as_u64().expect("status"))
            .collect();
        assert_eq!(statuses, vec![200, 400, 200]);
        assert_eq!((batch["accepted"].as_u64(), batch["rejected"].as_u64()), (Some(2), Some(1)));
        let tokens: Vec<&str> = batch["results"]
            .as_array()
            .expect("results")
            .iter()
            .filter_map(|x| x["read_token"].as_str())
            .collect();
        assert_eq!(interviews(&toplines_after(&s, &tokens).await), 3);

        // The same bad interview over HTTP and over gRPC: the same violations.
        let r = post_json(&s, &invalid("R-5", "S-5"), Some(TOKEN)).await;
        assert_eq!(r.status(), 400);
        let http = json_violations(&r.json().await.expect("json"));
        let mut grpc = IngestServiceClient::connect(format!("http://{}", s.grpc)).await.expect("connect");
        let status = grpc.submit(grpc_request(invalid("R-5", "S-5"))).await.expect_err("invalid");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(http, status_violations(&status));
        assert_eq!(http.len(), 2, "{http:?}");

        // Unknown study: 404 over HTTP; NOT_FOUND with a BadRequest over gRPC.
        let r = reqwest::Client::new()
            .post(submissions_url(&s, "no-such-study"))
            .bearer_auth(TOKEN)
            .json(&interview("R-6", "S-6"))
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), 404);
        assert_eq!(
            json_violations(&r.json().await.expect("json")),
            vec![("study".into(), "unknown_study".into())]
        );
        let mut other = interview("R-6", "S-6");
        other["study"] = json!("no-such-study");
        let status = grpc.submit(grpc_request(other)).await.expect_err("unknown study");
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status_violations(&status), vec![("study".into(), "unknown_study".into())]);

        // No token, a wrong one: 401 with WWW-Authenticate; nothing read.
        for token in [None, Some("wrong")] {
            let r = post_json(&s, &interview("R-7", "S-7"), token).await;
            assert_eq!(r.status(), 401);
            assert_eq!(r.headers().get("www-authenticate").map(|v| v.as_bytes()), Some(&b"Bearer"[..]));
        }
        // Larger than the limit: 413. Unknown top-level field: 400 malformed.
        let big = json!({"study": DEMO_STUDY_ID, "padding": "x".repeat(70 * 1024)});
        assert_eq!(post_json(&s, &big, Some(TOKEN)).await.status(), 413);
        let mut unknown = interview("R-8", "S-8");
        unknown["colour"] = json!("red");
        let r = post_json(&s, &unknown, Some(TOKEN)).await;
        assert_eq!(r.status(), 400);
        assert_eq!(
            json_violations(&r.json().await.expect("json")),
            vec![("body".into(), "malformed".into())]
        );

        // A malformed token is a 400 on the read side, not a wait.
        let r = reqwest::get(format!("http://{}/api/v1/studies/{DEMO_STUDY_ID}/toplines?after=nope", s.http))
            .await
            .expect("GET");
        assert_eq!(r.status(), 400);
        assert_eq!(interviews(&toplines_after(&s, &tokens).await), 3, "nothing refused was counted");
    })
    .await;
}

/// A KoboToolbox REST-service payload in the shape current Kobo servers
/// post, for the demo's investigator form (keys, metadata and string values
/// as Kobo sends them): `uuid` is this version's, `root` the first version's
/// (the same unless the submission was edited).
fn kobo_payload(uuid: &str, root: &str, q6: &str) -> Value {
    json!({
        "_id": 81234567,
        "formhub/uuid": "5c9d4b0c0a5e4b4d9d1f2c9e8b7a6d5c",
        "start": "2026-03-05T10:02:11.123+01:00",
        "end": "2026-03-05T10:14:40.456+01:00",
        "today": "2026-03-05",
        "deviceid": "enketo.ee.kobotoolbox.org:AbCdEf",
        "background/q1_years": "2_to_3_years",
        "background/q2": "spanish portuguese",
        "knowledge/q5": "yes",
        "knowledge/q6": q6,
        "knowledge/q7": "dk",
        "__version__": "vA8xFQ2yHcBxk6R5gS8Wd9",
        "meta/instanceID": format!("uuid:{uuid}"),
        "meta/rootUuid": format!("uuid:{root}"),
        "_xform_id_string": "aW9rLx2tPqR8sKd3",
        "_uuid": uuid,
        "_attachments": [],
        "_status": "submitted_via_web",
        "_geolocation": [null, null],
        "_submission_time": "2026-03-05T09:14:42",
        "_tags": [],
        "_notes": [],
        "_validation_status": {},
        "_submitted_by": null
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kobo_payload_is_counted_once_and_a_bad_one_refused_like_grpc() {
    let dir = tempfile::tempdir().expect("tempdir");
    common::with_service(config(dir.path()), WAIT, |s| async move {
        let url = format!("http://{}/api/v1/studies/{DEMO_STUDY_ID}/kobo?form=investigator", s.grpc);
        let post = |body: Value| {
            let url = url.clone();
            async move {
                reqwest::Client::new().post(url).bearer_auth(TOKEN).json(&body).send().await.expect("POST")
            }
        };
        let uuid = "0b6f8a34-7c2e-4d1b-9a55-3e8f1c2d4b6a";
        let r = post(kobo_payload(uuid, uuid, "4")).await;
        assert_eq!(r.status(), 200);
        let stored: Value = r.json().await.expect("json");
        assert_eq!(stored["submission_id"], format!("uuid:{uuid}"));
        // Kobo retries a delivery it did not see acknowledged: counted once.
        let again: Value = post(kobo_payload(uuid, uuid, "4")).await.json().await.expect("json");
        let tokens =
            [stored["read_token"].as_str().expect("token"), again["read_token"].as_str().expect("token")];
        let t = toplines_after(&s, &tokens).await;
        assert_eq!(interviews(&t), 1);
        // An edit in Kobo posts the new version: a new instanceID, the same
        // rootUuid, so the same respondent; the first one still counts.
        let edited = "7c9e2f10-5d4b-4a3c-8e21-9f0a1b2c3d4e";
        let r = post(kobo_payload(edited, uuid, "2")).await;
        assert_eq!(r.status(), 200);
        let edit: Value = r.json().await.expect("json");
        assert_eq!(edit["submission_id"], format!("uuid:{edited}"));
        let t = toplines_after(&s, &[edit["read_token"].as_str().expect("token")]).await;
        assert_eq!(interviews(&t), 1, "an edit is no second interview");

        const BAD: &str = "1d2c3b4a-0000-4000-8000-000000000001";
        // A text where the scale wants a number, and the same interview over
        // gRPC: the same violation.
        let r = post(kobo_payload(BAD, BAD, "very")).await;
        assert_eq!(r.status(), 400);
        let http = json_violations(&r.json().await.expect("json"));
        assert_eq!(http, vec![("answers.q6".into(), "wrong_kind".into())]);
        let mut grpc = IngestServiceClient::connect(format!("http://{}", s.grpc)).await.expect("connect");
        let same = json!({"study": DEMO_STUDY_ID, "form": "investigator", "respondent_id": "R-K",
                          "submission_id": "S-K", "answers": {"q6": "very"}});
        let status = grpc.submit(grpc_request(same)).await.expect_err("invalid");
        assert_eq!(status_violations(&status), http);
    })
    .await;
}

/// A Kobo form carries more than the instrument's items: a calculate
/// field, an `*_other` text, custom metadata, a repeat group. The Kobo
/// route leaves them out and counts them (no label from the request); the
/// JSON route stays strict. A REST service's custom wrapper
/// (`payload_template` `{"fields": %SUBMISSION%}`) is taken off with
/// `?wrapper=fields`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kobo_keys_the_form_lacks_are_left_out_and_counted_while_json_stays_strict() {
    let dir = tempfile::tempdir().expect("tempdir");
    common::with_service(config(dir.path()), WAIT, |s| async move {
        let uuid = "3e5a9c1d-2b4f-4e6a-8c0d-1f2e3a4b5c6d";
        let mut payload = kobo_payload(uuid, uuid, "4");
        payload["knowledge/score_calc"] = json!("17");
        payload["background/q2_other"] = json!("a language nobody listed");
        payload["project_code"] = json!("ET-2026-03");
        payload["visits"] = json!([{"visits/when": "2"}, {"visits/when": "5"}]);
        let base = format!("http://{}/api/v1/studies/{DEMO_STUDY_ID}/kobo?form=investigator", s.grpc);
        let post = |url: String, body: Value| async move {
            reqwest::Client::new().post(url).bearer_auth(TOKEN).json(&body).send().await.expect("POST")
        };

        let r = post(format!("{base}&wrapper=fields"), json!({"fields": payload})).await;
        assert_eq!(r.status(), 200);
        let stored: Value = r.json().await.expect("json");
        assert_eq!(stored["submission_id"], format!("uuid:{uuid}"));
        let t = toplines_after(&s, &[stored["read_token"].as_str().expect("token")]).await;
        assert_eq!(interviews(&t), 1, "stored and counted despite the extra keys");
        let metrics = reqwest::get(format!("http://{}/metrics", s.http))
            .await
            .expect("GET")
            .text()
            .await
            .expect("text");
        let line = format!("fieldwatch_ingest_kobo_ignored_keys_total{{study=\"{DEMO_STUDY_ID}\"}} 4");
        assert!(metrics.contains(&line), "{line} in /metrics");
        assert!(
            !metrics.contains("score_calc") && !metrics.contains("project_code"),
            "no key names in metrics"
        );

        // Without the wrapper key the wrapped body has no submission in it.
        let r = post(format!("{base}&wrapper=data"), json!({"fields": kobo_payload(uuid, uuid, "4")})).await;
        assert_eq!(r.status(), 400);
        assert_eq!(
            json_violations(&r.json().await.expect("json")),
            vec![("body".into(), "malformed".into())]
        );

        // The JSON route refuses an answer to an item the form lacks.
        let mut strict = interview("J-1", "JS-1");
        strict["answers"]["score_calc"] = json!(17);
        let r = post_json(&s, &strict, Some(TOKEN)).await;
        assert_eq!(r.status(), 400);
        let v = json_violations(&r.json().await.expect("json"));
        assert_eq!(v, vec![("answers.score_calc".into(), "unknown_item".into())]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_web_client_submits_with_the_same_tokens_and_codes() {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use tonic_web::GrpcWebClientLayer;

    let dir = tempfile::tempdir().expect("tempdir");
    common::with_service(config(dir.path()), WAIT, |s| async move {
        // gRPC-Web over HTTP/1.1, as a browser sends it.
        let http1 = Client::builder(TokioExecutor::new()).build_http();
        let svc = tower::ServiceBuilder::new().layer(GrpcWebClientLayer::new()).service(http1);
        let origin = format!("http://{}", s.grpc).try_into().expect("uri");
        let mut client = IngestServiceClient::with_origin(svc, origin);

        let ok = client.submit(grpc_request(interview("W-1", "WS-1"))).await.expect("stored").into_inner();
        assert!(!ok.read_token.is_empty());
        assert_eq!(ok.read_token, format!("{}:{}", ok.partition, ok.offset));
        assert_eq!(interviews(&toplines_after(&s, &[&ok.read_token]).await), 1);

        let status = client.submit(grpc_request(invalid("W-2", "WS-2"))).await.expect_err("invalid");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status_violations(&status).len(), 2);

        let mut anonymous = grpc_request(interview("W-3", "WS-3"));
        anonymous.metadata_mut().remove("authorization");
        let status = client.submit(anonymous).await.expect_err("no token");
        assert_eq!(status.code(), Code::Unauthenticated);

        // The browser's CORS preflight: the configured origin is allowed,
        // another is not.
        let preflight = |origin: &'static str| {
            reqwest::Client::new()
                .request(
                    reqwest::Method::OPTIONS,
                    format!("http://{}/fieldwatch.v1.IngestService/Submit", s.grpc),
                )
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "authorization,content-type,x-grpc-web")
                .send()
        };
        let r = preflight(ORIGIN).await.expect("preflight");
        assert_eq!(
            r.headers().get("access-control-allow-origin").map(|v| v.as_bytes()),
            Some(ORIGIN.as_bytes())
        );
        let r = preflight("https://elsewhere.example.com").await.expect("preflight");
        assert!(r.headers().get("access-control-allow-origin").is_none());
    })
    .await;
}
