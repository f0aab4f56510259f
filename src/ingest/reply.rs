//! The HTTP intake routes' replies: the status for each gRPC code, and the
//! JSON bodies of a stored record, a refusal and an NDJSON batch (all in
//! the OpenAPI document). A refusal never echoes submitted values.

use std::time::SystemTime;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tonic::Code;

use super::error::IngestError;
use super::metrics::code_label;
use crate::proto::v1::SubmitResponse;
use crate::validate::Violation;

/// How long a client should wait before retrying a shed (429) or
/// unavailable (503) request, in seconds: a hint in `Retry-After`, as
/// `fieldwatch submit` starts its backoff well below it.
const RETRY_AFTER_SECONDS: &str = "1";

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

/// The refusals both intake routes answer with, for their OpenAPI
/// description (`responses(..., IntakeRefusals)`): one status each, every
/// body a [`Refusal`]. Only described, never built: the replies come from
/// `refusal_response` and the early refusals of admission.
#[derive(utoipa::IntoResponses)]
pub enum IntakeRefusals {
    /// The record or body is invalid.
    #[response(status = 400, description = "invalid submission or body; one violation per problem")]
    BadRequest(Refusal),
    /// No valid token.
    #[response(status = 401, description = "no valid bearer token")]
    Unauthorized(Refusal),
    /// Unknown study.
    #[response(status = 404, description = "the study is not loaded")]
    NotFound(Refusal),
    /// Body over the limit.
    #[response(status = 413, description = "the body is larger than `ingest.max_http_body_bytes`")]
    TooLarge(Refusal),
    /// Shed by the in-flight limit.
    #[response(status = 429, description = "shed: retry after `Retry-After`")]
    Shed(Refusal),
    /// Broker unavailable or shutting down.
    #[response(status = 503, description = "broker unavailable or shutting down: retry after `Retry-After`")]
    Unavailable(Refusal),
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
pub(super) enum Early {
    /// Refused with a mapped ingest error.
    Ingest(IngestError),
    /// The body is larger than the limit.
    TooLarge,
    /// The body is not what the route takes.
    Malformed(JsonViolation),
}

impl Early {
    pub(super) fn code(&self) -> Code {
        match self {
            Early::Ingest(e) => e.code(),
            Early::TooLarge => Code::ResourceExhausted,
            Early::Malformed(_) => Code::InvalidArgument,
        }
    }

    pub(super) fn into_response(self, max_body_bytes: usize) -> Response {
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

pub(super) fn refusal(e: &IngestError) -> Refusal {
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
pub(super) fn refusal_response(e: &IngestError) -> Response {
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

pub(super) fn stored(r: SubmitResponse) -> Stored {
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

pub(super) fn malformed(message: impl Into<String>) -> Early {
    Early::Malformed(JsonViolation {
        field: "body".into(),
        rule: "malformed".into(),
        message: message.into(),
    })
}

/// A JSON parse error as a sentence of bounded length (it may quote a
/// field name of the request, never a value).
pub(super) fn bounded(e: &serde_json::Error) -> String {
    const MAX: usize = 200;
    let s = e.to_string();
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
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
}
