//! Operational routes: health, metrics, the API docs, and the JSON answers for unknown
//! routes and methods.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;

use std::sync::Arc;

use dialer_core::health::Draining;
use dialer_core::metrics::Metrics;

use super::error::ApiError;
use crate::OpsState;

/// Liveness, and the bridge's state when it runs in this process. From the moment the
/// server serving it begins to stop, 503 with `"status": "draining"`, so that a load
/// balancer stops sending work before the process goes away.
#[utoipa::path(get, path = "/health", tag = "ops", responses(
    (status = 200, description = "Up"),
    (status = 503, description = "Draining: the process is stopping"),
))]
pub async fn health(
    State(state): State<OpsState>,
    draining: Option<Extension<Draining>>,
) -> Response {
    let draining = draining.is_some_and(|Extension(d)| d.started());
    let mut body = json!({
        "status": if draining { "draining" } else { "ok" },
        "version": env!("CARGO_PKG_VERSION"),
    });
    if let Some(bridge) = &state.bridge {
        body["bridge"] = bridge.report();
    }
    let status = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}

/// Prometheus text, when `METRICS_ENABLED=true`.
pub async fn metrics(State(state): State<OpsState>) -> Response {
    if !state.metrics_enabled {
        return ApiError::status(
            StatusCode::NOT_FOUND,
            "metrics are off; the operator turns them on with METRICS_ENABLED=true",
        )
        .into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// The API reference, readable offline, with a console that sends each route's request
/// to this server (a bearer token from the page's Authorize box).
pub async fn docs() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, docs_policy()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        DOCS_PAGE,
    )
        .into_response()
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
    // Both kept as the request had them (a shared path, a method's own text): no copy.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let response = next.run(request).await;
    metrics.inc(
        "dialer_http_requests_total",
        &[
            (
                "route",
                route.as_ref().map_or("unmatched", MatchedPath::as_str),
            ),
            ("method", method.as_str()),
            ("status", response.status().as_str()),
        ],
    );
    response
}

/// The API reference and its console, rendered in the browser from `/openapi.json` by
/// the page's own script (`assets/`): no CDN, no outside asset, so it works on networks
/// that block them, and a Lambda carries some 13 KiB for it rather than a UI framework.
const DOCS_PAGE: &str = concat!(
    "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
    "<title>Outbound IVR dialer API</title>\n<style>",
    include_str!("../assets/docs.css"),
    "</style>\n</head>\n<body>\n",
    include_str!("../assets/docs.html"),
    "<script>",
    include_str!("../assets/docs.js"),
    "</script>\n</body>\n</html>\n",
);

/// The page's policy: its own inline style and script (by hash) and requests to this
/// server, nothing else; no framing, no `<base>`, no form posted elsewhere.
fn docs_policy() -> &'static str {
    static POLICY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    POLICY.get_or_init(|| {
        use base64::Engine;
        use sha2::Digest;
        let hash = |text: &str| {
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(text))
        };
        format!(
            "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; \
             connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
            hash(include_str!("../assets/docs.js")),
            hash(include_str!("../assets/docs.css")),
        )
    })
}
