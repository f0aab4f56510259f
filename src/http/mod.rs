//! The HTTP side: `/metrics` (Prometheus text), the JSON API under
//! `/api/v1/`, health (`/healthz` live, `/readyz` caught up) and the live
//! page at `/`. It listens on its own address, separate from gRPC ingest.
//!
//! Every JSON answer about a study is study-wide on every instance: it comes
//! from the aggregator's study-wide view ([`crate::aggregate::view`]),
//! rebuilt once per `aggregate.view_interval_ms` off the request path, and
//! carries `complete` and `freshness` (the offsets and time it reflects).
//!
//! Routes:
//! - `GET /api/v1/studies`: the loaded studies with forms, dimensions and counted interviews.
//! - `GET /api/v1/studies/{study}/toplines?by=DIM`: the same toplines as `fieldwatch report`.
//! - `GET /api/v1/studies/{study}/fieldwork?by=DIM`: dispositions and AAPOR rates.
//! - `GET /api/v1/studies/{study}/flags?check=&form=&interviewer=&item=&page=&per_page=`: flagged interviews.
//! - `GET /api/v1/studies/{study}/quotas`: quota cells, achieved against target and cap.
//! - `GET /api/v1/studies/{study}/quality`: flags per check with the most flagged items.
//! - `GET /api/v1/status`: owned partitions, lag, readiness, and the view's freshness.
//! - `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of all of this ([`openapi`]).
//!
//! Every study route takes `?after=TOKEN` (read-your-writes, see [`consistency`]).

pub mod access;
pub mod consistency;
mod fieldwork;
pub mod openapi;
mod quotas;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus::{Encoder, Registry, TextEncoder};
use serde::{Deserialize, Serialize};

use crate::aggregate::LiveState;
use crate::instrument::Catalog;
use crate::results::toplines;

/// HTTP settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address for metrics, the JSON API and the live page.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Readers of the JSON API and the live page, each with the SHA-256 of
    /// its bearer token. Empty: open to anyone who reaches the port.
    #[serde(default)]
    pub read_tokens: Vec<ReaderToken>,
    /// Scrapers of `/metrics` (read tokens work too). Empty with no read
    /// tokens: `/metrics` is open.
    #[serde(default)]
    pub metrics_tokens: Vec<ReaderToken>,
    /// Most requests served at once (health probes aside); one more is 429
    /// with `Retry-After`.
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// Most connections open at once; one more is accepted and closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Longest a new connection may take to send its first request's
    /// headers, in milliseconds; then it is closed.
    #[serde(default = "default_header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// How long a keep-alive connection with no request in progress stays
    /// open after its last request, in milliseconds.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Longest a JSON API request with `?after=TOKEN` waits for the view
    /// to include the token's record before answering 503, in
    /// milliseconds.
    #[serde(default = "default_read_wait_ms")]
    pub read_wait_ms: u64,
}

fn default_read_wait_ms() -> u64 {
    5_000
}

/// One reader allowed on the HTTP port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReaderToken {
    /// Who holds the token (`grafana`, `field-team`); for people, not logged.
    pub name: String,
    /// SHA-256 of the bearer token as 64 hex characters, e.g. from
    /// `printf %s "$TOKEN" | sha256sum`.
    pub sha256: String,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}
fn default_max_concurrent_requests() -> usize {
    32
}
fn default_max_connections() -> usize {
    256
}
fn default_header_timeout_ms() -> u64 {
    10_000
}
fn default_idle_timeout_ms() -> u64 {
    60_000
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen(),
            read_tokens: Vec::new(),
            metrics_tokens: Vec::new(),
            max_concurrent_requests: default_max_concurrent_requests(),
            max_connections: default_max_connections(),
            header_timeout_ms: default_header_timeout_ms(),
            idle_timeout_ms: default_idle_timeout_ms(),
            read_wait_ms: default_read_wait_ms(),
        }
    }
}

impl HttpConfig {
    /// [`Self::read_wait_ms`] as a duration.
    pub fn read_wait(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.read_wait_ms)
    }

    /// The limits of the HTTP listener.
    pub fn conn_limits(&self) -> crate::conn::ConnLimits {
        crate::conn::ConnLimits {
            max_connections: self.max_connections,
            header_timeout: std::time::Duration::from_millis(self.header_timeout_ms),
            idle_timeout: std::time::Duration::from_millis(self.idle_timeout_ms),
            connection_bytes: 0,
        }
    }

    /// Cross-field checks.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_concurrent_requests == 0 || self.max_connections == 0 {
            return Err("http.max_concurrent_requests and http.max_connections must be at least 1".into());
        }
        if self.header_timeout_ms == 0 || self.idle_timeout_ms == 0 {
            return Err("http.header_timeout_ms and http.idle_timeout_ms must be at least 1".into());
        }
        for t in self.read_tokens.iter().chain(&self.metrics_tokens) {
            let mut hash = [0u8; 32];
            if t.name.is_empty() || hex::decode_to_slice(t.sha256.trim(), &mut hash).is_err() {
                return Err(format!("http token `{}`: needs a name and a 64-hex-digit sha256", t.name));
            }
        }
        Ok(())
    }

    fn tokens(list: &[ReaderToken]) -> Vec<crate::ingest::TokenConfig> {
        list.iter()
            .map(|t| crate::ingest::TokenConfig { frontend: t.name.clone(), sha256: t.sha256.clone() })
            .collect()
    }
}

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    /// Process-wide metrics (ingest, runtime).
    pub registry: Registry,
    /// The aggregator, when this process runs one.
    pub aggregator: Option<Arc<LiveState>>,
    /// Loaded studies.
    pub catalog: Arc<Catalog>,
    /// Readiness of parts other than the aggregator (e.g. ingest connected).
    pub ready: Arc<std::sync::atomic::AtomicBool>,
    /// Whether ingest can publish, when this process runs ingest (see
    /// [`crate::ingest::IngestServer::health`]).
    pub ingest_health: Option<tokio::sync::watch::Receiver<bool>>,
    /// Longest wait for `?after=TOKEN` (`http.read_wait_ms`).
    pub read_wait: std::time::Duration,
}

/// Errors of the HTTP server.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The server failed.
    #[error("http server")]
    Serve(#[source] std::io::Error),
    /// The HTTP configuration is not usable.
    #[error("invalid http config: {0}")]
    Config(String),
    /// A metric could not be registered.
    #[error("cannot register http metrics")]
    Metrics(#[source] prometheus::Error),
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/page.js", get(page_js))
        .route("/page.css", get(page_css))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/status", get(status))
        .route("/api/v1/studies", get(studies))
        .route("/api/v1/studies/{study}/toplines", get(study_toplines))
        .route("/api/v1/studies/{study}/fieldwork", get(fieldwork::fieldwork))
        .route("/api/v1/studies/{study}/flags", get(fieldwork::flags))
        .route("/api/v1/studies/{study}/quotas", get(quotas::quotas))
        .route("/api/v1/studies/{study}/quality", get(quotas::quality))
        .route("/api/v1/openapi.json", get(openapi::document))
        .layer(axum::middleware::from_fn_with_state(state.clone(), consistency::after))
        .with_state(state)
}

/// Serves on `listener` until `shutdown` resolves, with the access rules
/// and connection limits of `config`. Set-up (config checks, metric
/// registration) happens before the future is returned.
pub fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    config: &HttpConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<impl std::future::Future<Output = Result<(), HttpError>> + Send + 'static, HttpError> {
    config.validate().map_err(HttpError::Config)?;
    let access = Arc::new(access::Access::new(
        &HttpConfig::tokens(&config.read_tokens),
        &HttpConfig::tokens(&config.metrics_tokens),
        config.max_concurrent_requests,
        &state.registry,
    )?);
    let conn_metrics =
        crate::conn::ConnMetrics::register(&state.registry, "http").map_err(HttpError::Metrics)?;
    // Turns `true` when shutdown begins: idle keep-alive connections close
    // at once instead of holding the graceful shutdown up.
    let (draining, draining_rx) = tokio::sync::watch::channel(false);
    let listener = crate::conn::Listener::new(listener, config.conn_limits(), draining_rx, conn_metrics);
    let app = router(state)
        .layer(axum::middleware::from_fn_with_state(access, access::guard))
        .into_make_service_with_connect_info::<crate::conn::ConnHandle>();
    Ok(async move {
        let signal = async move {
            shutdown.await;
            draining.send_replace(true);
        };
        axum::serve(listener, app).with_graceful_shutdown(signal).await.map_err(HttpError::Serve)
    })
}

fn is_ready(s: &AppState) -> bool {
    s.ready.load(std::sync::atomic::Ordering::Relaxed)
        && s.ingest_health.as_ref().is_none_or(|h| *h.borrow())
        && s.aggregator.as_ref().is_none_or(|a| a.caught_up())
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
        match crate::aggregate::metrics::scrape(a) {
            Ok(reg) => families.extend(reg.gather()),
            Err(e) => {
                tracing::error!(error = %crate::errors::chain(&e), "metrics scrape failed");
                return (StatusCode::INTERNAL_SERVER_ERROR, "metrics scrape failed").into_response();
            }
        }
    }
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let mut buf = Vec::new();
    let enc = TextEncoder::new();
    if let Err(e) = enc.encode(&families, &mut buf) {
        tracing::error!(error = %crate::errors::chain(&e), "metrics encoding failed");
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

/// The study and this process's aggregator, or why not (a 404).
fn study_and_aggregator<'a>(
    s: &'a AppState,
    study: &str,
) -> Result<(&'a crate::instrument::Study, &'a crate::aggregate::LiveState), &'static str> {
    let st = s.catalog.get(study).ok_or("no such study")?;
    let agg = s.aggregator.as_deref().ok_or("this process runs no aggregator")?;
    Ok((st, agg))
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

/// Adds the view's completeness and freshness to a JSON answer: `complete`,
/// `caught_up` (the same, kept for older clients) and `freshness`.
fn with_freshness(v: &mut serde_json::Value, view: &crate::aggregate::view::View) {
    if let Some(o) = v.as_object_mut() {
        let f = view.freshness();
        o.insert("complete".into(), f.complete.into());
        o.insert("caught_up".into(), f.complete.into());
        o.insert("freshness".into(), serde_json::to_value(f).unwrap_or_default());
    }
}

/// The loaded studies with forms, dimensions and counted interviews.
#[utoipa::path(get, path = "/api/v1/studies", tag = "results",
    responses((status = 200, description = "`{\"studies\": [{study, title, forms, dimensions, min_cell_size, interviews}]}`", body = serde_json::Value)))]
async fn studies(State(s): State<AppState>) -> Response {
    let view = s.aggregator.as_ref().map(|a| a.view());
    let list: Vec<StudySummary<'_>> = s
        .catalog
        .studies()
        .map(|st| StudySummary {
            study: st.id(),
            title: &st.def.title,
            forms: st.forms.iter().map(|f| f.id.as_str()).collect(),
            dimensions: st.dims.iter().map(|d| d.name.as_str()).collect(),
            min_cell_size: st.def.reporting.min_cell_size,
            interviews: view.as_ref().map(|v| v.study(st.id()).interviews()),
        })
        .collect();
    let mut v = serde_json::json!({ "studies": list });
    if let Some(view) = &view {
        with_freshness(&mut v, view);
    }
    Json(v).into_response()
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
    let (st, agg) = match study_and_aggregator(&s, &study) {
        Ok(x) => x,
        Err(why) => return api_error(StatusCode::NOT_FOUND, why.into()),
    };
    let view = agg.view();
    let state = view.study(&study);
    match toplines(st, &state, q.by.as_deref().filter(|b| !b.is_empty())) {
        Ok(t) => {
            let mut v = serde_json::to_value(&t).unwrap_or_default();
            with_freshness(&mut v, &view);
            if let Some(o) = v.as_object_mut() {
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
    let view = s.aggregator.as_ref().map(|a| a.view());
    Json(serde_json::json!({
        "ready": is_ready(&s),
        "caught_up": s.aggregator.as_ref().map(|a| a.caught_up()),
        "partitions": partitions,
        "complete": view.as_ref().map(|v| v.freshness().complete),
        "freshness": view.as_ref().map(|v| v.freshness()),
    }))
    .into_response()
}

// The page at `/` (docs/page.md): HTML, script and style built into the
// binary; everything it shows comes from the JSON API above.
/// The live page.
#[utoipa::path(get, path = "/", tag = "health",
    responses((status = 200, description = "the live page", body = String, content_type = "text/html")))]
async fn page() -> Html<&'static str> {
    Html(include_str!("page/index.html"))
}

async fn page_js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("page/page.js")).into_response()
}

async fn page_css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("page/page.css")).into_response()
}
