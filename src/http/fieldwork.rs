//! Fieldwork routes of the JSON API:
//! - `GET /api/v1/studies/{study}/fieldwork?by=DIM`: cases by disposition
//!   and the AAPOR rates, overall, by a declared dimension or by
//!   `interviewer` (then with each interviewer's quality beside the rest).
//! - `GET /api/v1/studies/{study}/flags?check=&form=&interviewer=&item=&page=&per_page=`:
//!   flagged interviews for review, pseudonymous, paged (`item`: a canonical item code).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{AppState, api_error};
use crate::fieldwork::review::FlagFilter;
use crate::quality::Check;

#[derive(Deserialize)]
pub(super) struct FieldworkQuery {
    by: Option<String>,
}

/// Cases by disposition and the AAPOR rates.
#[utoipa::path(get, path = "/api/v1/studies/{study}/fieldwork", tag = "fieldwork",
    params(("study" = String, Path, description = "study id", example = "le-trafficking"),
           ("by" = Option<String>, Query, description = "a dimension of the study, or `interviewer`"),
           ("after" = Option<String>, Query, description = "read tokens (docs/api.md, read-your-writes)")),
    responses((status = 200, description = "the fieldwork report", body = crate::fieldwork::summary::FieldworkReport),
              (status = 400, description = "a parameter is not valid", content((super::ApiError = "application/json"), (String = "text/plain"))),
              (status = 404, description = "no such study, or no aggregator in this process", body = super::ApiError),
              (status = 503, description = "`after`: the view does not include the records yet", body = super::consistency::NotYet)))]
pub(super) async fn fieldwork(
    State(s): State<AppState>,
    Path(study): Path<String>,
    Query(q): Query<FieldworkQuery>,
) -> Response {
    let (st, agg) = match super::study_and_aggregator(&s, &study) {
        Ok(x) => x,
        Err(why) => return api_error(StatusCode::NOT_FOUND, why.into()),
    };
    let view = agg.view();
    let state = view.study(&study);
    match crate::fieldwork::report(st, &state.fieldwork, q.by.as_deref().filter(|b| !b.is_empty())) {
        Ok(r) => {
            let mut v = serde_json::to_value(&r).unwrap_or_default();
            super::with_freshness(&mut v, &view);
            Json(v).into_response()
        }
        Err(e) => api_error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

#[derive(Deserialize)]
pub(super) struct FlagsQuery {
    check: Option<String>,
    form: Option<String>,
    interviewer: Option<String>,
    item: Option<String>,
    page: Option<usize>,
    per_page: Option<usize>,
}

/// Default page size of the flags list.
const DEFAULT_PER_PAGE: usize = 50;

/// Flagged interviews for review, pseudonymous, paged.
#[utoipa::path(get, path = "/api/v1/studies/{study}/flags", tag = "fieldwork",
    params(("study" = String, Path, description = "study id", example = "le-trafficking"),
           ("check" = Option<String>, Query, description = "only interviews that raised this check"),
           ("form" = Option<String>, Query, description = "only this form"),
           ("interviewer" = Option<String>, Query, description = "only this interviewer label"),
           ("page" = Option<usize>, Query, description = "page number, from 1"),
           ("per_page" = Option<usize>, Query, description = "page size (capped)"),
           ("after" = Option<String>, Query, description = "read tokens (docs/api.md, read-your-writes)")),
    responses((status = 200, description = "one page of flagged interviews", body = crate::fieldwork::review::FlagPage),
              (status = 400, description = "a parameter is not valid", content((super::ApiError = "application/json"), (String = "text/plain"))),
              (status = 404, description = "no such study, or no aggregator in this process", body = super::ApiError),
              (status = 503, description = "`after`: the view does not include the records yet", body = super::consistency::NotYet)))]
pub(super) async fn flags(
    State(s): State<AppState>,
    Path(study): Path<String>,
    Query(q): Query<FlagsQuery>,
) -> Response {
    let (st, agg) = match super::study_and_aggregator(&s, &study) {
        Ok(x) => x,
        Err(why) => return api_error(StatusCode::NOT_FOUND, why.into()),
    };
    let check = match q.check.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => match Check::ALL.into_iter().find(|k| k.as_str() == c) {
            Some(k) => Some(k),
            None => return api_error(StatusCode::BAD_REQUEST, "unknown check".into()),
        },
    };
    if let Some(f) = q.form.as_deref().filter(|f| !f.is_empty())
        && st.form(f).is_none()
    {
        return api_error(StatusCode::BAD_REQUEST, "the study has no such form".into());
    }
    let filter = FlagFilter {
        check,
        form: q.form.filter(|f| !f.is_empty()),
        interviewer: q.interviewer.filter(|i| !i.is_empty()),
        item: q.item.filter(|i| !i.is_empty()),
    };
    let view = agg.view();
    let page = view.flags(&study, &filter, q.page.unwrap_or(1), q.per_page.unwrap_or(DEFAULT_PER_PAGE));
    let mut v = serde_json::to_value(&page).unwrap_or_default();
    super::with_freshness(&mut v, &view);
    Json(v).into_response()
}
