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
//! Every record goes through [`Intake::submit`], the path gRPC takes:
//! the same tokens, in-flight limit, validation, idempotency and
//! ack-after-broker-ack. The HTTP status comes from the gRPC code of
//! [`IngestError::to_status`] (the one mapping) via [`http_status`].

use std::time::{Instant, SystemTime};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method as HttpMethod, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tonic::Code;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::error::IngestError;
use super::metrics::{Method, code_label};
use super::server::Intake;
use super::{IngestConfig, kobo};
use crate::fieldwork::{Line, parse_line};
use crate::proto::v1::{SubmitRequest, SubmitResponse};
use crate::validate::Violation;

/// What the HTTP side of the ingest port needs from `ingest.*`.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Allowed browser origins (`ingest.cors_origins`), checked at start-up.
    origins: Vec<HeaderValue>,
    /// Largest request body of the HTTP intake routes, in bytes.
    max_body_bytes: usize,
}

/// How long a client should wait before retrying a shed (429) or
/// unavailable (503) request, in seconds: a hint in `Retry-After`, as
/// `fieldwatch submit` starts its backoff well below it.
const RETRY_AFTER_SECONDS: &str = "1";

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

/// The HTTP status for a gRPC code, as the JSON intake answers it.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// One problem, as JSON (the gRPC `FieldViolation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JsonViolation {
    /// Path of the field (`answers.q6`), `body` for an unreadable body.
    pub field: String,
    /// The rule broken (`wrong_kind`); `malformed` for an unreadable body,
    /// `study_mismatch` when the body names another study than the path.
    pub rule: String,
    /// A sentence for people.
    pub message: String,
}

impl From<Violation> for JsonViolation {
    fn from(v: Violation) -> Self {
        JsonViolation { field: v.field, rule: v.rule.as_str().to_string(), message: v.message }
    }
}

/// A stored record: where it went, and the read token for `?after=`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stored {
    /// The submission id, as sent (empty for a disposition).
    pub submission_id: String,
    /// When ingest received it, RFC 3339.
    pub received_at: String,
    /// Partition of the responses topic.
    pub partition: i32,
    /// Offset in that partition.
    pub offset: i64,
    /// Read-your-writes token: `GET /api/v1/...?after=TOKEN`.
    pub read_token: String,
}

/// The body of every refusal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Refusal {
    /// A sentence; never echoes submitted values.
    pub error: String,
    /// The gRPC code name the same record gets over gRPC (`InvalidArgument`).
    pub code: String,
    /// One entry per problem; empty unless the record is invalid or the
    /// study unknown.
    pub violations: Vec<JsonViolation>,
}

/// One line's outcome in an NDJSON reply.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LineResult {
    /// Line number in the body, from 1.
    pub line: usize,
    /// True when stored (the broker acknowledged it).
    pub accepted: bool,
    /// The HTTP status this line alone would get (200, 400, 404, 429, 503).
    pub status: u16,
    /// Where it was stored, when accepted.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub stored: Option<Stored>,
    /// Why not, when not accepted.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
}

/// The reply to an NDJSON post.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BatchReply {
    /// Lines stored.
    pub accepted: usize,
    /// Lines not stored (invalid, or 429/503: worth resending).
    pub rejected: usize,
    /// One entry per non-empty line, in body order.
    pub results: Vec<LineResult>,
}

/// Why a request was refused before any record was submitted.
enum Early {
    /// Refused with a mapped ingest error.
    Ingest(IngestError),
    /// The body is larger than the limit.
    TooLarge,
    /// The body is not what the route takes.
    Malformed(JsonViolation),
}

impl Early {
    fn code(&self) -> Code {
        match self {
            Early::Ingest(e) => e.code(),
            Early::TooLarge => Code::ResourceExhausted,
            Early::Malformed(_) => Code::InvalidArgument,
        }
    }

    fn into_response(self, max_body_bytes: usize) -> Response {
        match self {
            Early::Ingest(e) => refusal_response(&e),
            Early::TooLarge => {
                let body = Refusal {
                    error: format!("the request body is larger than {max_body_bytes} bytes"),
                    code: code_label(Code::ResourceExhausted).into(),
                    violations: Vec::new(),
                };
                (StatusCode::PAYLOAD_TOO_LARGE, Json(body)).into_response()
            }
            Early::Malformed(v) => {
                let body = Refusal {
                    error: "the request body is not a submission".into(),
                    code: code_label(Code::InvalidArgument).into(),
                    violations: vec![v],
                };
                (StatusCode::BAD_REQUEST, Json(body)).into_response()
            }
        }
    }
}

fn refusal(e: &IngestError) -> Refusal {
    let status = e.to_status();
    Refusal {
        error: status.message().to_string(),
        code: code_label(status.code()).into(),
        violations: e.violations().into_iter().map(JsonViolation::from).collect(),
    }
}

/// An ingest error as an HTTP reply: status from the gRPC code, the
/// violations as JSON, `Retry-After` when worth retrying, and
/// `WWW-Authenticate` on 401.
fn refusal_response(e: &IngestError) -> Response {
    let status = http_status(e.code());
    let mut response = (status, Json(refusal(e))).into_response();
    let headers = response.headers_mut();
    match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
        }
        StatusCode::UNAUTHORIZED => {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        _ => {}
    }
    response
}

fn stored(r: SubmitResponse) -> Stored {
    let received_at = r
        .received_at
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| chrono::DateTime::<chrono::Utc>::from(SystemTime::now()).to_rfc3339());
    Stored {
        submission_id: r.submission_id,
        received_at,
        partition: r.partition,
        offset: r.offset,
        read_token: r.read_token,
    }
}

fn malformed(message: impl Into<String>) -> Early {
    Early::Malformed(JsonViolation {
        field: "body".into(),
        rule: "malformed".into(),
        message: message.into(),
    })
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

/// A JSON parse error as a sentence of bounded length (it may quote a
/// field name of the request, never a value).
fn bounded(e: &serde_json::Error) -> String {
    const MAX: usize = 200;
    let s = e.to_string();
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
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

/// One submission (JSON) or several (NDJSON), on the ingest port.
#[utoipa::path(post, path = "/api/v1/studies/{study}/submissions", tag = "ingest",
    params(("study" = String, Path, description = "study id", example = "le-trafficking")),
    request_body(description = "a submission in the JSONL shape of docs/submissions.md, or NDJSON of them",
        content((serde_json::Value = "application/json"), (String = "application/x-ndjson"))),
    responses((status = 200, description = "stored (JSON), or one result per line (NDJSON)",
                content((Stored = "application/json"), (BatchReply = "application/json"))),
              (status = 400, description = "invalid submission or body; one violation per problem", body = Refusal),
              (status = 401, description = "no valid bearer token", body = Refusal),
              (status = 404, description = "the study is not loaded", body = Refusal),
              (status = 413, description = "the body is larger than `ingest.max_http_body_bytes`", body = Refusal),
              (status = 429, description = "shed: retry after `Retry-After`", body = Refusal),
              (status = 503, description = "broker unavailable or shutting down: retry after `Retry-After`", body = Refusal)),
    security(("bearer" = [])))]
pub(crate) async fn submissions(
    State(web): State<Web>,
    Path(study): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let start = Instant::now();
    let ndjson = is_ndjson(&headers);
    let (frontend, bytes) = match admit(&web, headers, &study, body).await {
        Ok(x) => x,
        Err(early) => {
            web.intake.count_request(Method::HttpSubmissions, early.code(), start.elapsed().as_secs_f64());
            return early.into_response(web.max_body_bytes);
        }
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        web.intake.count_request(
            Method::HttpSubmissions,
            Code::InvalidArgument,
            start.elapsed().as_secs_f64(),
        );
        return malformed("the body is not UTF-8").into_response(web.max_body_bytes);
    };
    let response = if ndjson {
        batch(&web, &frontend, &study, text).await
    } else {
        single(&web, &frontend, &study, text).await
    };
    web.intake.count_request(Method::HttpSubmissions, response.0, start.elapsed().as_secs_f64());
    response.1
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

/// Query of the KoboToolbox route.
#[derive(Debug, Deserialize)]
pub(crate) struct KoboQuery {
    /// The form (version) of the study the submissions answer; optional
    /// when the study has one form or the payload has a `form` field.
    form: Option<String>,
}

/// One KoboToolbox REST-service submission, on the ingest port.
#[utoipa::path(post, path = "/api/v1/studies/{study}/kobo", tag = "ingest",
    params(("study" = String, Path, description = "study id", example = "le-trafficking"),
           ("form" = Option<String>, Query, description = "the form; optional for a study with one form")),
    request_body(content = serde_json::Value, description = "the JSON a KoboToolbox REST service posts (docs/api.md)"),
    responses((status = 200, description = "stored", body = Stored),
              (status = 400, description = "invalid submission or body; one violation per problem", body = Refusal),
              (status = 401, description = "no valid bearer token", body = Refusal),
              (status = 404, description = "the study is not loaded", body = Refusal),
              (status = 413, description = "the body is larger than `ingest.max_http_body_bytes`", body = Refusal),
              (status = 429, description = "shed: retry after `Retry-After`", body = Refusal),
              (status = 503, description = "broker unavailable or shutting down: retry after `Retry-After`", body = Refusal)),
    security(("bearer" = [])))]
pub(crate) async fn kobo_submission(
    State(web): State<Web>,
    Path(study): Path<String>,
    Query(q): Query<KoboQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let start = Instant::now();
    let (frontend, bytes) = match admit(&web, headers, &study, body).await {
        Ok(x) => x,
        Err(early) => {
            web.intake.count_request(Method::HttpKobo, early.code(), start.elapsed().as_secs_f64());
            return early.into_response(web.max_body_bytes);
        }
    };
    let payload: serde_json::Map<String, serde_json::Value> = match serde_json::from_slice(&bytes) {
        Ok(p) => p,
        Err(e) => {
            web.intake.count_request(Method::HttpKobo, Code::InvalidArgument, start.elapsed().as_secs_f64());
            return malformed(bounded(&e)).into_response(web.max_body_bytes);
        }
    };
    // `admit` checked that the study is loaded.
    let (code, response) = match web.intake.catalog().get(&study) {
        Some(st) => {
            let submission = kobo::submission(st, q.form.as_deref(), &payload);
            let request = SubmitRequest { submission: Some(submission.into()), disposition: None };
            submit_one(&web, &frontend, request).await
        }
        None => (Code::NotFound, refusal_response(&IngestError::UnknownStudy)),
    };
    web.intake.count_request(Method::HttpKobo, code, start.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_map_to_the_documented_http_statuses() {
        assert_eq!(http_status(Code::InvalidArgument), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(http_status(Code::ResourceExhausted), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(http_status(Code::Unavailable), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(http_status(Code::Internal), StatusCode::INTERNAL_SERVER_ERROR);
    }

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
