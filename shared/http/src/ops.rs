//! Operational routes: health, metrics, the API docs, and the JSON answers for unknown
//! routes and methods.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
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

/// The API reference, readable offline.
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

/// The API reference, rendered in the browser from `/openapi.json` by the page's own
/// script: no CDN, no outside asset, so it works on networks that block them.
const DOCS_PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Outbound IVR dialer API</title>
<style>
  body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 60rem; padding: 1rem 1.5rem; color: #1d2330; }
  h1 { font-size: 1.6rem; margin-bottom: .2rem; }
  h2 { margin-top: 2rem; border-bottom: 1px solid #d8dce6; padding-bottom: .2rem; }
  .op { border: 1px solid #d8dce6; border-radius: 6px; margin: .8rem 0; padding: .6rem .9rem; }
  .method { display: inline-block; min-width: 4.5rem; font-weight: 700; font-family: ui-monospace, monospace; }
  .get { color: #0b6bcb; } .post { color: #1a7f37; } .delete { color: #c0392b; }
  code, .path { font-family: ui-monospace, monospace; }
  table { border-collapse: collapse; margin: .4rem 0; width: 100%; }
  td, th { border-top: 1px solid #eceef3; padding: .25rem .5rem; text-align: left; vertical-align: top; }
  th { font-weight: 600; color: #4a5266; }
  .muted { color: #6b7385; }
</style>
</head>
<body>
<h1 id="title">Outbound IVR dialer API</h1>
<p id="description" class="muted"></p>
<p class="muted">The machine-readable document: <a href="/openapi.json">/openapi.json</a>.</p>
<div id="paths"><p>Loading the API description…</p></div>
<h2>Schemas</h2>
<div id="schemas"></div>
<script>
"use strict";
const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; };
const refName = (ref) => ref.split("/").pop();
function typeOf(schema) {
  if (!schema) return "";
  if (schema.$ref) return refName(schema.$ref);
  if (schema.type === "array") return typeOf(schema.items) + "[]";
  if (schema.oneOf) return schema.oneOf.map(typeOf).join(" | ");
  const t = Array.isArray(schema.type) ? schema.type.filter(x => x !== "null").join(" | ") : (schema.type || "object");
  return schema.format ? t + " (" + schema.format + ")" : t;
}
function row(table, cells) { const tr = el("tr"); cells.forEach(c => tr.appendChild(el("td", null, c))); table.appendChild(tr); }
function header(table, names) { const tr = el("tr"); names.forEach(n => tr.appendChild(el("th", null, n))); table.appendChild(tr); }
fetch("/openapi.json").then(r => r.json()).then(doc => {
  document.getElementById("title").textContent = doc.info.title + " " + (doc.info.version || "");
  document.getElementById("description").textContent = doc.info.description || "";
  const paths = document.getElementById("paths");
  paths.textContent = "";
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const [method, op] of Object.entries(item)) {
      const box = el("div", "op");
      const title = el("div");
      title.appendChild(el("span", "method " + method, method.toUpperCase()));
      title.appendChild(el("span", "path", path));
      box.appendChild(title);
      if (op.summary || op.description) box.appendChild(el("p", null, op.summary || op.description));
      if (op.security) box.appendChild(el("p", "muted", "Needs a bearer token (POST /api/v2/token)."));
      if (op.parameters && op.parameters.length) {
        const t = el("table"); header(t, ["parameter", "in", "type", "about"]);
        op.parameters.forEach(p => row(t, [p.name + (p.required ? " *" : ""), p.in, typeOf(p.schema), p.description || ""]));
        box.appendChild(t);
      }
      if (op.requestBody) {
        const content = op.requestBody.content || {};
        for (const [type, media] of Object.entries(content)) box.appendChild(el("p", null, "Body (" + type + "): " + typeOf(media.schema)));
      }
      const t = el("table"); header(t, ["answer", "body", "about"]);
      for (const [code, resp] of Object.entries(op.responses || {})) {
        const media = resp.content && Object.values(resp.content)[0];
        row(t, [code, media ? typeOf(media.schema) : "", resp.description || ""]);
      }
      box.appendChild(t);
      paths.appendChild(box);
    }
  }
  const schemas = document.getElementById("schemas");
  for (const [name, schema] of Object.entries((doc.components || {}).schemas || {})) {
    schemas.appendChild(el("h3", null, name));
    if (schema.description) schemas.appendChild(el("p", null, schema.description));
    const t = el("table"); header(t, ["field", "type", "about"]);
    const required = new Set(schema.required || []);
    for (const [field, prop] of Object.entries(schema.properties || {})) row(t, [field + (required.has(field) ? " *" : ""), typeOf(prop), prop.description || ""]);
    schemas.appendChild(t);
  }
}).catch(e => { document.getElementById("paths").textContent = "Could not load /openapi.json: " + e; });
</script>
</body>
</html>
"##;
