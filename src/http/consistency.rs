//! Read-your-writes on the JSON API: `GET /api/v1/studies/...?after=TOKEN`
//! answers once the aggregator's view includes the record(s) of the
//! token(s) (comma-separated, from `SubmitResponse.read_token` or the HTTP
//! intake's reply), or with 503 after `http.read_wait_ms`.
//!
//! A middleware in front of the study routes, so every view gets it the
//! same way; the question itself is [`crate::read_token::view_includes`].

use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use crate::read_token::{parse_after, wait_until_included};

#[derive(Deserialize)]
struct AfterQuery {
    after: Option<String>,
}

/// The 503 body when the view does not include a token in time.
#[derive(Serialize, utoipa::ToSchema)]
pub struct NotYet {
    /// A sentence.
    error: String,
    /// Always false: the view does not include every token yet.
    includes: bool,
    /// How long the server waited, in milliseconds.
    waited_ms: u128,
}

/// Header set on an answer that waited for `after`: the view includes it.
pub const INCLUDES_HEADER: &str = "x-fieldwatch-includes";

/// Waits for `after` on the study routes, then hands the request on.
pub(super) async fn after(State(s): State<AppState>, request: Request, next: Next) -> Response {
    let after = Query::<AfterQuery>::try_from_uri(request.uri())
        .ok()
        .and_then(|Query(q)| q.after)
        .filter(|a| !a.is_empty());
    let Some(after) = after.filter(|_| request.uri().path().starts_with("/api/v1/studies/")) else {
        return next.run(request).await;
    };
    let tokens = match parse_after(&after) {
        Ok(t) => t,
        Err(e) => return super::api_error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    // Without an aggregator the route itself answers 404.
    let Some(view) = s.aggregator.clone() else {
        return next.run(request).await;
    };
    let start = std::time::Instant::now();
    if wait_until_included(&view, &tokens, s.read_wait).await {
        let mut response = next.run(request).await;
        response.headers_mut().insert(INCLUDES_HEADER, HeaderValue::from_static("true"));
        return response;
    }
    let body = NotYet {
        error: "the view does not include every record of `after` yet; retry later".into(),
        includes: false,
        waited_ms: start.elapsed().as_millis(),
    };
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::aggregate::LiveState;
    use crate::instrument::{Catalog, DEMO_STUDY_ID};

    fn app(view: &Arc<LiveState>) -> axum::Router {
        super::super::router(AppState {
            registry: prometheus::Registry::new(),
            aggregator: Some(view.clone()),
            catalog: view.catalog().clone(),
            ready: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            ingest_health: None,
            read_wait: Duration::from_millis(100),
        })
    }

    async fn get(view: &Arc<LiveState>, query: &str) -> Response {
        let uri = format!("/api/v1/studies/{DEMO_STUDY_ID}/toplines{query}");
        app(view).oneshot(Request::get(uri).body(Body::empty()).expect("request")).await.expect("response")
    }

    #[tokio::test]
    async fn a_read_after_a_record_the_view_lacks_is_503_after_the_wait_then_200_once_applied() {
        let view = LiveState::new(Arc::new(Catalog::demo()), Default::default());
        view.assign(0, None);
        let r = get(&view, "?after=0:1").await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers().get(header::RETRY_AFTER).map(|v| v.as_bytes()), Some(&b"1"[..]));
        view.apply(0, 0, None);
        view.apply(0, 1, None);
        view.rebuild_view_from_owned();
        let r = get(&view, "?after=0:1").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers().get(INCLUDES_HEADER).map(|v| v.as_bytes()), Some(&b"true"[..]));
    }

    #[tokio::test]
    async fn without_after_nothing_waits_and_a_malformed_token_is_a_400() {
        let view = LiveState::new(Arc::new(Catalog::demo()), Default::default());
        let r = get(&view, "").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers().get(INCLUDES_HEADER).is_none());
        assert_eq!(get(&view, "?after=zero").await.status(), StatusCode::BAD_REQUEST);
    }
}
