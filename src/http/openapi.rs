//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers'
//! `#[utoipa::path]` attributes and the response types' `ToSchema`
//! derives, so it cannot drift from the code: `GET /api/v1/openapi.json`.
//! It also describes the intake routes of the ingest port (tag `ingest`,
//! served on `ingest.listen`, not on the HTTP port).

use axum::Json;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "fieldwatch",
        description = "Live results and live data quality for survey fieldwork. Human-readable \
                       reference: docs/api.md."
    ),
    paths(
        super::page,
        super::metrics,
        super::healthz,
        super::readyz,
        super::status,
        super::studies,
        super::study_toplines,
        super::fieldwork::fieldwork,
        super::fieldwork::flags,
        crate::ingest::web::submissions,
        crate::ingest::web::kobo_submission,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "results", description = "Live toplines (HTTP port)"),
        (name = "fieldwork", description = "Dispositions, AAPOR rates and flags for review (HTTP port)"),
        (name = "health", description = "Metrics, health and the live page (HTTP port)"),
        (name = "ingest", description = "Submitting over HTTP: served on the ingest port (`ingest.listen`)"),
    )
)]
pub struct ApiDoc;

/// Adds the bearer-token scheme the ingest routes use.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `GET /api/v1/openapi.json`.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health",
    responses((status = 200, description = "this document", body = serde_json::Value)))]
pub(super) async fn document() -> Response {
    Json(ApiDoc::openapi()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_and_lists_every_route() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("json");
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "{}", doc["openapi"]);
        for path in [
            "/api/v1/studies/{study}/toplines",
            "/api/v1/studies/{study}/fieldwork",
            "/api/v1/studies/{study}/flags",
            "/api/v1/studies/{study}/submissions",
            "/api/v1/studies/{study}/kobo",
            "/api/v1/status",
            "/metrics",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} is documented");
        }
        assert!(doc["components"]["schemas"]["ItemTopline"].is_object());
    }
}
