//! The HTTP side: `/metrics` (Prometheus text), the JSON API under
//! `/api/v1/`, health (`/healthz` live, `/readyz` caught up) and the live
//! page at `/`. It listens on its own address, separate from gRPC ingest.
//!
//! Routes:
//! - `GET /api/v1/studies`: the loaded studies with forms, dimensions and counted interviews.
//! - `GET /api/v1/studies/{study}/toplines?by=DIM`: the same toplines as `fieldwatch report`.
//! - `GET /api/v1/studies/{study}/fieldwork?by=DIM`: dispositions and AAPOR rates.
//! - `GET /api/v1/studies/{study}/flags?check=&form=&interviewer=&page=&per_page=`: flagged interviews.
//! - `GET /api/v1/status`: partitions, lag and readiness.
//! - `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of all of this ([`openapi`]).
//!
//! Every study route takes `?after=TOKEN` (read-your-writes, see [`consistency`]).

pub mod consistency;
mod fieldwork;
pub mod openapi;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus::{Encoder, Registry, TextEncoder};
use serde::{Deserialize, Serialize};

use crate::aggregate::Shared;
use crate::instrument::Catalog;
use crate::results::toplines;

/// HTTP settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address for metrics, the JSON API and the live page.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Longest a JSON API request with `?after=TOKEN` waits for the view
    /// to include the token's record before answering 503, in
    /// milliseconds.
    #[serde(default = "default_read_wait_ms")]
    pub read_wait_ms: u64,
}

fn default_read_wait_ms() -> u64 {
    5_000
}

impl HttpConfig {
    /// [`Self::read_wait_ms`] as a duration.
    pub fn read_wait(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.read_wait_ms)
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { listen: default_listen(), read_wait_ms: default_read_wait_ms() }
    }
}

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    /// Process-wide metrics (ingest, runtime).
    pub registry: Registry,
    /// The aggregator, when this process runs one.
    pub aggregator: Option<Arc<Shared>>,
    /// Loaded studies.
    pub catalog: Arc<Catalog>,
    /// Readiness of parts other than the aggregator (e.g. ingest connected).
    pub ready: Arc<std::sync::atomic::AtomicBool>,
    /// Longest wait for `?after=TOKEN` (`http.read_wait_ms`).
    pub read_wait: std::time::Duration,
}

/// Errors of the HTTP server.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The server failed.
    #[error("http server")]
    Serve(#[source] std::io::Error),
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/status", get(status))
        .route("/api/v1/studies", get(studies))
        .route("/api/v1/studies/{study}/toplines", get(study_toplines))
        .route("/api/v1/studies/{study}/fieldwork", get(fieldwork::fieldwork))
        .route("/api/v1/studies/{study}/flags", get(fieldwork::flags))
        .route("/api/v1/openapi.json", get(openapi::document))
        .layer(axum::middleware::from_fn_with_state(state.clone(), consistency::after))
        .with_state(state)
}

/// Serves on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await.map_err(HttpError::Serve)
}

fn is_ready(s: &AppState) -> bool {
    s.ready.load(std::sync::atomic::Ordering::Relaxed) && s.aggregator.as_ref().is_none_or(|a| a.caught_up())
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "the process is up", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: every owned partition caught up (and ingest connected).
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "ready", body = String, content_type = "text/plain"),
    (status = 503, description = "not ready", body = String, content_type = "text/plain")))]
async fn readyz(State(s): State<AppState>) -> Response {
    if is_ready(&s) {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, description = "the metrics", body = String, content_type = "text/plain"),
    (status = 500, description = "the metrics could not be gathered", body = String, content_type = "text/plain")))]
async fn metrics(State(s): State<AppState>) -> Response {
    let mut families = s.registry.gather();
    if let Some(a) = &s.aggregator {
        match crate::aggregate::metrics::snapshot(a) {
            Ok(reg) => families.extend(reg.gather()),
            Err(e) => {
                tracing::error!(error = %e, "metrics snapshot failed");
                return (StatusCode::INTERNAL_SERVER_ERROR, "metrics snapshot failed").into_response();
            }
        }
    }
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let mut buf = Vec::new();
    let enc = TextEncoder::new();
    if let Err(e) = enc.encode(&families, &mut buf) {
        tracing::error!(error = %e, "metrics encoding failed");
        return (StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed").into_response();
    }
    ([(header::CONTENT_TYPE, enc.format_type().to_string())], buf).into_response()
}

/// A refused read.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ApiError {
    /// A sentence.
    error: String,
}

fn api_error(code: StatusCode, msg: String) -> Response {
    (code, Json(ApiError { error: msg })).into_response()
}

#[derive(Serialize)]
struct StudySummary<'a> {
    study: &'a str,
    title: &'a str,
    forms: Vec<&'a str>,
    dimensions: Vec<&'a str>,
    min_cell_size: u32,
    interviews: Option<u64>,
}

/// The loaded studies with forms, dimensions and counted interviews.
#[utoipa::path(get, path = "/api/v1/studies", tag = "results",
    responses((status = 200, description = "`{\"studies\": [{study, title, forms, dimensions, min_cell_size, interviews}]}`", body = serde_json::Value)))]
async fn studies(State(s): State<AppState>) -> Response {
    let list: Vec<StudySummary<'_>> = s
        .catalog
        .studies()
        .map(|st| StudySummary {
            study: st.id(),
            title: &st.def.title,
            forms: st.forms.iter().map(|f| f.id.as_str()).collect(),
            dimensions: st.dims.iter().map(|d| d.name.as_str()).collect(),
            min_cell_size: st.def.reporting.min_cell_size,
            interviews: s.aggregator.as_ref().map(|a| a.merged(st.id()).interviews()),
        })
        .collect();
    Json(serde_json::json!({ "studies": list })).into_response()
}

#[derive(Deserialize)]
struct TopQuery {
    by: Option<String>,
}

/// Live toplines, overall or by a dimension: the same as `fieldwatch report`,
/// plus `caught_up`, `retries`, `duplicate_respondents`, `possible_duplicates`.
#[utoipa::path(get, path = "/api/v1/studies/{study}/toplines", tag = "results",
    params(("study" = String, Path, description = "study id", example = "le-trafficking"),
           ("by" = Option<String>, Query, description = "a dimension of the study"),
           ("after" = Option<String>, Query, description = "read tokens (docs/api.md, read-your-writes)")),
    responses((status = 200, description = "the toplines", body = crate::results::toplines::Toplines),
              (status = 400, description = "a parameter is not valid", content((ApiError = "application/json"), (String = "text/plain"))),
              (status = 404, description = "no such study, or no aggregator in this process", body = ApiError),
              (status = 503, description = "`after`: the view does not include the records yet", body = consistency::NotYet)))]
async fn study_toplines(
    State(s): State<AppState>,
    Path(study): Path<String>,
    Query(q): Query<TopQuery>,
) -> Response {
    let Some(st) = s.catalog.get(&study) else {
        return api_error(StatusCode::NOT_FOUND, "no such study".into());
    };
    let Some(agg) = &s.aggregator else {
        return api_error(StatusCode::NOT_FOUND, "this process runs no aggregator".into());
    };
    let state = agg.merged(&study);
    match toplines(st, &state, q.by.as_deref().filter(|b| !b.is_empty())) {
        Ok(t) => {
            let mut v = serde_json::to_value(&t).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("caught_up".into(), agg.caught_up().into());
                o.insert("retries".into(), state.retries.into());
                o.insert("duplicate_respondents".into(), state.duplicate_respondents.into());
                o.insert("possible_duplicates".into(), state.possible_duplicates().into());
            }
            Json(v).into_response()
        }
        Err(e) => api_error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// Partitions, lag and readiness.
#[utoipa::path(get, path = "/api/v1/status", tag = "health",
    responses((status = 200, description = "`{ready, caught_up, partitions: [...]}`", body = serde_json::Value)))]
async fn status(State(s): State<AppState>) -> Response {
    let partitions = s.aggregator.as_ref().map(|a| a.partitions()).unwrap_or_default();
    Json(serde_json::json!({
        "ready": is_ready(&s),
        "caught_up": s.aggregator.as_ref().map(|a| a.caught_up()),
        "partitions": partitions,
    }))
    .into_response()
}

/// The live page.
#[utoipa::path(get, path = "/", tag = "health",
    responses((status = 200, description = "the live page", body = String, content_type = "text/html")))]
async fn page() -> Html<&'static str> {
    Html(include_str!("live.html"))
}
