//! Quota and quality routes of the JSON API (what the page shows beside
//! the toplines and fieldwork):
//! - `GET /api/v1/studies/{study}/quotas`: every quota cell of the study,
//!   achieved (counted interviews, study-wide) against target and cap, with
//!   the view's completeness and freshness.
//! - `GET /api/v1/studies/{study}/quality`: flags per check and the items
//!   with the most flags.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{AppState, api_error};

pub(super) async fn quotas(State(s): State<AppState>, Path(study): Path<String>) -> Response {
    study_document(&s, &study, "quotas", |st, state| {
        serde_json::to_value(crate::results::quotas::quotas(st, state)).unwrap_or_default()
    })
}

/// `GET /api/v1/studies/{study}/quality`: flags per check with the worst
/// items, study-wide, with the view's completeness and freshness.
pub(super) async fn quality(State(s): State<AppState>, Path(study): Path<String>) -> Response {
    study_document(&s, &study, "checks", |st, state| {
        serde_json::to_value(crate::results::flags::by_check(st, state)).unwrap_or_default()
    })
}

/// `{study, interviews, <key>: what(study, state)}` from the study-wide
/// view, with the view's completeness and freshness; 404 for an unknown
/// study or a process without an aggregator.
fn study_document(
    s: &AppState,
    study: &str,
    key: &str,
    what: impl FnOnce(&crate::instrument::Study, &crate::results::StudyState) -> serde_json::Value,
) -> Response {
    let (st, agg) = match super::study_and_aggregator(s, study) {
        Ok(x) => x,
        Err(why) => return api_error(StatusCode::NOT_FOUND, why.into()),
    };
    let view = agg.view();
    let state = view.study(study);
    let mut v = serde_json::json!({ "study": st.id(), "interviews": state.interviews() });
    if let Some(o) = v.as_object_mut() {
        o.insert(key.into(), what(st, &state));
    }
    super::with_freshness(&mut v, &view);
    Json(v).into_response()
}
