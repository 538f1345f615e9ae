//! The bridge's small HTTP port: `/health` (connected, seconds since the last event,
//! queue depth; 503 once the process drains) and `/metrics` (Prometheus text).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Router};

use dialer_core::health::{BridgeHealth, Draining};
use dialer_core::metrics::Metrics;

#[derive(Clone)]
struct Port {
    health: Arc<BridgeHealth>,
    metrics: Arc<Metrics>,
}

pub fn router(health: Arc<BridgeHealth>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/health", get(health_report))
        .route("/metrics", get(metrics_text))
        .with_state(Port { health, metrics })
}

/// 503 `draining` from the moment the server serving it begins to stop, whatever the
/// socket's state: the process is going away.
async fn health_report(
    State(port): State<Port>,
    draining: Option<Extension<Draining>>,
) -> impl IntoResponse {
    let draining = draining.is_some_and(|Extension(d)| d.started());
    let mut body = port.health.report();
    body["status"] = if draining {
        "draining"
    } else if port.health.connected() {
        "ok"
    } else {
        "disconnected"
    }
    .into();
    let status = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, axum::Json(body))
}

async fn metrics_text(State(port): State<Port>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        port.metrics.render(),
    )
}
