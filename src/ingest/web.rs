//! The ingest port's non-gRPC front doors, beside the gRPC services on the
//! same listener (HTTP/1.1 and HTTP/2):
//!
//! - gRPC-Web (tonic-web), for web surveys in a browser; CORS for the
//!   configured origins ([`WebConfig::cors_layer`]).
//! - `POST /api/v1/studies/{study}/submissions`: one submission in the
//!   JSONL shape of `docs/submissions.md` (`application/json`), or several
//!   as NDJSON (`application/x-ndjson`), one result per line.
//! - `POST /api/v1/studies/{study}/kobo?form=FORM`: the JSON a KoboToolbox
//!   REST service posts per submission, mapped by [`super::kobo`].
//!
//! Both routes are one handler, [`intake`]: admit (token, study, body
//! size), read the body the route's way, submit, count the request.
//! Every record goes through [`Intake::submit`], the path gRPC takes:
//! the same tokens, in-flight limit, validation, idempotency and
//! ack-after-broker-ack. The HTTP status comes from the gRPC code of
//! [`IngestError::to_status`] (the one mapping) via [`http_status`]; the
//! reply bodies are in [`super::reply`].

use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method as HttpMethod, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use serde::Deserialize;
use tonic::Code;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::error::IngestError;
use super::intake::Intake;
use super::metrics::{Method, code_label};
use super::reply::{
    BatchReply, Early, IntakeRefusals, JsonViolation, LineResult, Refusal, Stored, bounded, http_status,
    malformed, refusal, refusal_response, stored,
};
use super::{IngestConfig, kobo};
use crate::fieldwork::{Line, parse_line};
use crate::proto::v1::SubmitRequest;

/// What the HTTP side of the ingest port needs from `ingest.*`.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Allowed browser origins (`ingest.cors_origins`), checked at start-up.
    origins: Vec<HeaderValue>,
    /// Largest request body of the HTTP intake routes, in bytes.
    max_body_bytes: usize,
}

/// How long browsers may cache a CORS preflight answer.
const CORS_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(600);

impl WebConfig {
    /// Checks the origins and takes the body limit.
    pub fn from_ingest(config: &IngestConfig) -> Result<WebConfig, IngestError> {
        let origins = config
            .cors_origins
            .iter()
            .map(|o| {
                HeaderValue::from_str(o.trim_end_matches('/'))
                    .ok()
                    .filter(|_| o.starts_with("http://") || o.starts_with("https://"))
                    .ok_or_else(|| {
                        IngestError::Config(format!("cors_origins: {o:?} is not an http(s) origin"))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(WebConfig { origins, max_body_bytes: config.max_http_body_bytes })
    }

    /// CORS for gRPC-Web and the intake routes: the configured origins may
    /// call from a page, sending `authorization`; with none configured no
    /// CORS headers are sent and browsers allow same-origin calls only.
    pub fn cors_layer(&self) -> CorsLayer {
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(self.origins.clone()))
            .allow_methods([HttpMethod::POST, HttpMethod::OPTIONS])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::HeaderName::from_static("x-grpc-web"),
                header::HeaderName::from_static("x-user-agent"),
                header::HeaderName::from_static("grpc-timeout"),
            ])
            .expose_headers([
                header::HeaderName::from_static("grpc-status"),
                header::HeaderName::from_static("grpc-message"),
                header::HeaderName::from_static("grpc-status-details-bin"),
                header::RETRY_AFTER,
            ])
            .max_age(CORS_MAX_AGE)
    }
}

/// The state of the intake routes.
#[derive(Clone)]
pub(crate) struct Web {
    intake: Intake,
    max_body_bytes: usize,
}

/// The HTTP intake routes, to serve beside the gRPC services.
pub fn routes(intake: Intake, config: &WebConfig) -> axum::Router {
    axum::Router::new()
        .route("/api/v1/studies/{study}/submissions", post(submissions))
        .route("/api/v1/studies/{study}/kobo", post(kobo_submission))
        .with_state(Web { intake, max_body_bytes: config.max_body_bytes })
}

/// Which intake route a request came by, and what it takes from the query.
enum Route {
    /// JSON (one submission) or NDJSON (several).
    Submissions { ndjson: bool },
    /// A KoboToolbox REST service's post.
    Kobo(KoboQuery),
}

impl Route {
    fn method(&self) -> Method {
        match self {
            Route::Submissions { .. } => Method::HttpSubmissions,
            Route::Kobo(_) => Method::HttpKobo,
        }
    }
}

/// Query of the KoboToolbox route.
#[derive(Debug, Deserialize)]
pub(crate) struct KoboQuery {
    /// The form (version) of the study the submissions answer; optional
    /// when the study has one form or the payload has a `form` field.
    form: Option<String>,
    /// The key under which a REST service's custom wrapper
    /// (`payload_template`, e.g. `{"fields": %SUBMISSION%}`) puts the
    /// submission; without it the body is the submission.
    wrapper: Option<String>,
}

/// One submission (JSON) or several (NDJSON), on the ingest port.
#[utoipa::path(post, path = "/api/v1/studies/{study}/submissions", tag = "ingest",
    params(("study" = String, Path, description = "study id", example = "le-trafficking")),
    request_body(description = "a submission in the JSONL shape of docs/submissions.md, or NDJSON of them",
        content((serde_json::Value = "application/json"), (String = "application/x-ndjson"))),
    responses((status = 200, description = "stored (JSON), or one result per line (NDJSON)",
                content((Stored = "application/json"), (BatchReply = "application/json"))),
              IntakeRefusals),
    security(("bearer" = [])))]
pub(crate) async fn submissions(
    State(web): State<Web>,
    Path(study): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let route = Route::Submissions { ndjson: is_ndjson(&headers) };
    intake(&web, route, &study, headers, body).await
}

/// One KoboToolbox REST-service submission, on the ingest port.
#[utoipa::path(post, path = "/api/v1/studies/{study}/kobo", tag = "ingest",
    params(("study" = String, Path, description = "study id", example = "le-trafficking"),
           ("form" = Option<String>, Query, description = "the form; optional for a study with one form"),
           ("wrapper" = Option<String>, Query, description = "the key of a REST service's custom wrapper (`payload_template`) that holds the submission")),
    request_body(content = serde_json::Value, description = "the JSON a KoboToolbox REST service posts (docs/api.md)"),
    responses((status = 200, description = "stored", body = Stored),
              IntakeRefusals),
    security(("bearer" = [])))]
pub(crate) async fn kobo_submission(
    State(web): State<Web>,
    Path(study): Path<String>,
    Query(q): Query<KoboQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    intake(&web, Route::Kobo(q), &study, headers, body).await
}

/// Both intake routes: admit the request (token, study, body size), read
/// its body the route's way and submit, then count the request with the
/// gRPC code its outcome maps to.
async fn intake(web: &Web, route: Route, study: &str, headers: HeaderMap, body: Body) -> Response {
    let start = Instant::now();
    let method = route.method();
    let (code, response) = match admit(web, headers, study, body).await {
        Err(early) => (early.code(), early.into_response(web.max_body_bytes)),
        Ok((frontend, bytes)) => match route {
            Route::Submissions { ndjson } => match std::str::from_utf8(&bytes) {
                Ok(text) if ndjson => batch(web, &frontend, study, text).await,
                Ok(text) => single(web, &frontend, study, text).await,
                Err(_) => (
                    Code::InvalidArgument,
                    malformed("the body is not UTF-8").into_response(web.max_body_bytes),
                ),
            },
            Route::Kobo(q) => kobo_post(web, &frontend, study, &q, &bytes).await,
        },
    };
    web.intake.count_request(method, code, start.elapsed().as_secs_f64());
    response
}

/// A KoboToolbox post: unwrapped when the query names a wrapper key,
/// mapped by the study's form (keys that name no item of it left out and
/// counted), then submitted as one submission.
async fn kobo_post(web: &Web, frontend: &str, study: &str, q: &KoboQuery, bytes: &[u8]) -> (Code, Response) {
    let payload: serde_json::Map<String, serde_json::Value> = match serde_json::from_slice(bytes) {
        Ok(p) => p,
        Err(e) => return (Code::InvalidArgument, malformed(bounded(&e)).into_response(web.max_body_bytes)),
    };
    let payload = match q.wrapper.as_deref().filter(|w| !w.is_empty()) {
        Some(key) => match kobo::unwrap(payload, key) {
            Some(p) => p,
            None => {
                let e = malformed("the body has no submission object under the wrapper key");
                return (Code::InvalidArgument, e.into_response(web.max_body_bytes));
            }
        },
        None => payload,
    };
    // `admit` checked that the study is loaded.
    let Some(st) = web.intake.catalog().get(study) else {
        return (Code::NotFound, refusal_response(&IngestError::UnknownStudy));
    };
    let mapped = kobo::submission(st, q.form.as_deref(), &payload);
    web.intake.kobo_keys_ignored(st.id(), mapped.ignored);
    let request = SubmitRequest { submission: Some(mapped.submission.into()), disposition: None };
    submit_one(web, frontend, request).await
}

/// Authenticates, checks the study, then reads the body up to the limit:
/// in that order, so nothing is buffered for a caller without a token.
async fn admit(
    web: &Web,
    headers: HeaderMap,
    study: &str,
    body: Body,
) -> Result<(String, bytes::Bytes), Early> {
    let frontend = web
        .intake
        .identify(&tonic::metadata::MetadataMap::from_headers(headers.clone()))
        .map_err(Early::Ingest)?;
    if web.intake.catalog().get(study).is_none() {
        return Err(Early::Ingest(IngestError::UnknownStudy));
    }
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > web.max_body_bytes as u64) {
        return Err(Early::TooLarge);
    }
    let bytes = axum::body::to_bytes(body, web.max_body_bytes).await.map_err(|_| Early::TooLarge)?;
    Ok((frontend, bytes))
}

/// A JSONL line for the study in the path: an interview or a disposition.
/// A `study` in the body must be the path's; an empty one is filled in.
fn request_for(study: &str, line: &str) -> Result<SubmitRequest, JsonViolation> {
    let mismatch = || JsonViolation {
        field: "study".into(),
        rule: "study_mismatch".into(),
        message: "the body names another study than the path".into(),
    };
    match parse_line(line) {
        Ok(Line::Interview(mut s)) => {
            if s.study.is_empty() {
                s.study = study.to_string();
            } else if s.study != study {
                return Err(mismatch());
            }
            Ok(SubmitRequest { submission: Some((*s).into()), disposition: None })
        }
        Ok(Line::Disposition(mut d)) => {
            if d.study.is_empty() {
                d.study = study.to_string();
            } else if d.study != study {
                return Err(mismatch());
            }
            Ok(SubmitRequest { submission: None, disposition: Some(d.into()) })
        }
        Err(e) => Err(JsonViolation { field: "body".into(), rule: "malformed".into(), message: bounded(&e) }),
    }
}

fn is_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| {
            matches!(v.as_str(), "application/x-ndjson" | "application/jsonl" | "application/x-jsonlines")
        })
}

/// One submission: 200 with where it was stored, or the refusal.
async fn single(web: &Web, frontend: &str, study: &str, text: &str) -> (Code, Response) {
    let request = match request_for(study, text.trim()) {
        Ok(r) => r,
        Err(v) => return (Code::InvalidArgument, Early::Malformed(v).into_response(web.max_body_bytes)),
    };
    submit_one(web, frontend, request).await
}

async fn submit_one(web: &Web, frontend: &str, request: SubmitRequest) -> (Code, Response) {
    match web.intake.submit(frontend, request).await {
        Ok(r) => (Code::Ok, Json(stored(r)).into_response()),
        Err(e) => (e.code(), refusal_response(&e)),
    }
}

/// NDJSON: every non-empty line submitted, up to the stream window at
/// once, answered in body order. The request itself succeeds (200) once
/// the body was read; each line has its own status.
async fn batch(web: &Web, frontend: &str, study: &str, text: &str) -> (Code, Response) {
    let lines: Vec<(usize, &str)> =
        text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).map(|(n, l)| (n + 1, l)).collect();
    // Up to `window` lines of this request are in flight at once; the
    // in-flight limit over all requests still applies to each one.
    let results: Vec<LineResult> = futures::stream::iter(0..lines.len())
        .map(|i| line_result(web, frontend, study, lines[i].0, lines[i].1))
        .buffered(web.intake.window())
        .collect()
        .await;
    let accepted = results.iter().filter(|r| r.accepted).count();
    let reply = BatchReply { accepted, rejected: results.len() - accepted, results };
    (Code::Ok, Json(reply).into_response())
}

/// One NDJSON line, submitted, as its result.
async fn line_result(web: &Web, frontend: &str, study: &str, line_no: usize, line: &str) -> LineResult {
    let outcome = match request_for(study, line.trim()) {
        Ok(request) => web.intake.submit(frontend, request).await.map_err(|e| (refusal(&e), e.code())),
        Err(v) => Err((
            Refusal {
                error: "the line is not a submission".into(),
                code: code_label(Code::InvalidArgument).into(),
                violations: vec![v],
            },
            Code::InvalidArgument,
        )),
    };
    match outcome {
        Ok(r) => {
            LineResult { line: line_no, accepted: true, status: 200, stored: Some(stored(r)), refusal: None }
        }
        Err((refusal, code)) => LineResult {
            line: line_no,
            accepted: false,
            status: http_status(code).as_u16(),
            stored: None,
            refusal: Some(refusal),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_for_another_study_is_refused_and_an_empty_study_is_filled_in() {
        let e = request_for("le-trafficking", r#"{"study": "other", "form": "f"}"#).expect_err("mismatch");
        assert_eq!(e.rule, "study_mismatch");
        let r = request_for("le-trafficking", r#"{"form": "f", "respondent_id": "r"}"#).expect("parses");
        assert_eq!(r.submission.expect("interview").study, "le-trafficking");
    }

    #[test]
    fn unknown_top_level_fields_and_non_string_attributes_are_malformed() {
        let e = request_for("s", r#"{"form": "f", "colour": "red"}"#).expect_err("unknown field");
        assert_eq!((e.field.as_str(), e.rule.as_str()), ("body", "malformed"));
        assert!(e.message.contains("colour"), "{}", e.message);
        let e = request_for("s", r#"{"form": "f", "attributes": {"region": 3}}"#).expect_err("number");
        assert_eq!(e.rule, "malformed");
    }

    #[test]
    fn ndjson_is_recognised_by_its_content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_ndjson(&h));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson; charset=utf-8"));
        assert!(is_ndjson(&h));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert!(!is_ndjson(&h));
    }

    #[test]
    fn origins_must_be_http_urls() {
        let mut c =
            IngestConfig { cors_origins: vec!["https://survey.example.org/".into()], ..Default::default() };
        assert_eq!(WebConfig::from_ingest(&c).expect("valid").origins[0], "https://survey.example.org");
        c.cors_origins = vec!["survey.example.org".into()];
        assert!(WebConfig::from_ingest(&c).is_err());
    }
}
