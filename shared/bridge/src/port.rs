//! The bridge's small HTTP port: `/health` (connected, seconds since the last event,
//! queue depth) and `/metrics` (Prometheus text).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use dialer_core::health::BridgeHealth;
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

async fn health_report(State(port): State<Port>) -> impl IntoResponse {
    let mut body = port.health.report();
    body["status"] = if port.health.connected() {
        "ok"
    } else {
        "disconnected"
    }
    .into();
    axum::Json(body)
}

async fn metrics_text(State(port): State<Port>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        port.metrics.render(),
    )
}
