//! Who may read, and how much at once: the middleware in front of every
//! HTTP route.
//!
//! - `/healthz` and `/readyz` are always open and never limited (probes).
//! - `/metrics` needs a scrape token (`http.metrics_tokens`) or a read
//!   token when any token is configured.
//! - Everything else (the JSON API and the live page) needs a read token
//!   (`http.read_tokens`) when read tokens are configured. Browsers reach
//!   the page through an authenticating proxy that adds the
//!   `authorization` header (see `docs/security.md`).
//! - A missing or wrong token is 401 with `WWW-Authenticate: Bearer`.
//! - At most `http.max_concurrent_requests` requests are served at once;
//!   one more is 429 with `Retry-After`.
//!
//! Every request also counts as in progress on its connection (see
//! [`crate::conn`]) until its response has been produced.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::conn::ConnHandle;
use crate::ingest::auth::{Authenticator, TokenConfig};

/// Access rules of the HTTP port.
#[derive(Debug)]
pub struct Access {
    /// Read tokens (API and page); open when empty.
    read: Authenticator,
    /// Scrape tokens for `/metrics`, which also takes read tokens.
    scrape: Authenticator,
    /// Requests being served, over all connections: a permit is held from
    /// the route's start until its response is produced. `try_acquire`
    /// only: when none is left the request gets 429 at once. Never closed.
    requests: Arc<Semaphore>,
    throttled: prometheus::IntCounter,
    unauthorized: prometheus::IntCounter,
}

impl Access {
    /// The rules for the configured tokens and request bound, with their
    /// metrics registered into `registry`.
    pub fn new(
        read: &[TokenConfig],
        scrape: &[TokenConfig],
        max_concurrent_requests: usize,
        registry: &prometheus::Registry,
    ) -> Result<Access, super::HttpError> {
        let config = |e: crate::ingest::IngestError| super::HttpError::Config(e.to_string());
        let throttled = prometheus::IntCounter::new(
            "fieldwatch_http_throttled_requests_total",
            "HTTP requests answered 429 because the concurrent request bound was reached.",
        )
        .map_err(super::HttpError::Metrics)?;
        let unauthorized = prometheus::IntCounter::new(
            "fieldwatch_http_unauthorized_requests_total",
            "HTTP requests answered 401 for a missing or wrong token.",
        )
        .map_err(super::HttpError::Metrics)?;
        registry.register(Box::new(throttled.clone())).map_err(super::HttpError::Metrics)?;
        registry.register(Box::new(unauthorized.clone())).map_err(super::HttpError::Metrics)?;
        Ok(Access {
            read: Authenticator::new(read).map_err(config)?,
            scrape: Authenticator::new(&[scrape, read].concat()).map_err(config)?,
            requests: Arc::new(Semaphore::new(max_concurrent_requests)),
            throttled,
            unauthorized,
        })
    }

    /// Whether the request may read `path`.
    fn allowed(&self, path: &str, headers: &axum::http::HeaderMap) -> bool {
        let auth = if path == "/metrics" { &self.scrape } else { &self.read };
        auth.identify_headers(headers).is_ok()
    }
}

/// Paths probes use: always open, never limited.
fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

/// The middleware; see the module docs.
pub async fn guard(State(access): State<Arc<Access>>, request: Request, next: Next) -> Response {
    let _in_progress = request.extensions().get::<ConnectInfo<ConnHandle>>().map(|c| c.0.begin());
    let path = request.uri().path();
    if is_probe(path) {
        return next.run(request).await;
    }
    if !access.allowed(path, request.headers()) {
        access.unauthorized.inc();
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
            "a valid bearer token is required\n",
        )
            .into_response();
    }
    let Ok(_permit) = access.requests.clone().try_acquire_owned() else {
        access.throttled.inc();
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, HeaderValue::from_static("1"))],
            "too many concurrent requests; retry later\n",
        )
            .into_response();
    };
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::routing::get;

    use super::*;

    #[tokio::test]
    async fn beyond_the_request_bound_reads_get_429_with_retry_after_and_probes_still_answer() {
        let access = Arc::new(Access::new(&[], &[], 1, &prometheus::Registry::new()).expect("access"));
        let release = Arc::new(tokio::sync::Notify::new());
        let held = release.clone();
        let app = Router::new()
            .route(
                "/slow",
                get(move || async move {
                    held.notified().await;
                    "done"
                }),
            )
            .route("/healthz", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(access.clone(), guard));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let url = |p: &str| format!("http://{addr}{p}");
        let first = tokio::spawn(reqwest::get(url("/slow")));
        while access.requests.available_permits() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let second = reqwest::get(url("/slow")).await.expect("answer");
        assert_eq!(second.status(), 429);
        assert_eq!(second.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
        assert_eq!(
            reqwest::get(url("/healthz")).await.expect("answer").status(),
            200,
            "probes are not limited"
        );
        assert_eq!(access.throttled.get(), 1);
        release.notify_one();
        assert_eq!(first.await.expect("task").expect("answer").status(), 200);
    }
}
