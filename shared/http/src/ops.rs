//! Operational routes: health, metrics, the API docs, and the JSON answers for unknown
//! routes and methods.

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

use std::sync::Arc;

use dialer_core::metrics::Metrics;

use super::error::ApiError;
use crate::OpsState;

/// Liveness, and the bridge's state when it runs in this process.
#[utoipa::path(get, path = "/health", tag = "ops", responses((status = 200, description = "Up")))]
pub async fn health(State(state): State<OpsState>) -> Json<serde_json::Value> {
    let mut body = json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") });
    if let Some(bridge) = &state.bridge {
        body["bridge"] = bridge.report();
    }
    Json(body)
}

/// Prometheus text, when `METRICS_ENABLED=true`.
pub async fn metrics(State(state): State<OpsState>) -> Response {
    if !state.metrics_enabled {
        return ApiError::status(StatusCode::NOT_FOUND, "not found").into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Swagger UI, loaded by the browser from a CDN: nothing is bundled or downloaded at
/// build time.
pub async fn docs() -> Html<&'static str> {
    Html(DOCS_PAGE)
}

pub async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::openapi::document(),
    )
        .into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::status(StatusCode::NOT_FOUND, "not found")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::status(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

/// A handler panicked: the client gets a JSON 500, the log says why, and the process
/// (a Lambda container, the local server) keeps serving.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let why = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = why, "request handler panicked");
    ApiError::status(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}

/// A body declared larger than the limit is refused before a byte of it is read, so a
/// client announcing 100 MB cannot keep a connection waiting for it.
pub async fn refuse_declared_oversize(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > super::MAX_BODY_BYTES as u64) {
        let mut response = ApiError::status(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body too large: at most {} bytes",
                super::MAX_BODY_BYTES
            ),
        )
        .into_response();
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return response;
    }
    next.run(request).await
}

/// Counts requests by route template and status code: never by raw path, which would
/// put ids and numbers in the labels.
pub async fn count_requests(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    metrics.inc(
        "dialer_http_requests_total",
        &[
            ("route", &route),
            ("method", &method),
            ("status", response.status().as_str()),
        ],
    );
    response
}

const DOCS_PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Outbound IVR dialer API</title>
  <link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css">
</head>
<body>
  <div id="ui"></div>
  <script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#ui" });
  </script>
</body>
</html>
"##;
