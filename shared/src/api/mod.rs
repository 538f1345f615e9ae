//! The HTTP routes: one implementation, served by the Lambdas and by the local server.

pub mod calls;
pub mod dto;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod ops;
pub mod token;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{delete, get, post};
use tower_http::catch_panic::CatchPanicLayer;

use crate::bridge::BridgeHealth;
use crate::metrics::Metrics;
use crate::service::{CallService, LoginService};

/// Request bodies larger than this are refused with 413.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub calls: CallService,
    pub login: LoginService,
    pub metrics: Arc<Metrics>,
    pub metrics_enabled: bool,
    /// Present where the bridge runs in the same process (the local server).
    pub bridge: Option<Arc<BridgeHealth>>,
}

/// Which routes a binary serves: each Lambda serves its own, the local server all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routes {
    Token,
    Originate,
    Status,
    /// `/health`, `/docs`, `/openapi.json`, `/metrics`.
    Ops,
}

impl Routes {
    pub const ALL: [Routes; 4] = [
        Routes::Token,
        Routes::Originate,
        Routes::Status,
        Routes::Ops,
    ];
}

/// One route of the product: what serves it locally, and which Lambda serves it behind
/// API Gateway (`None`: not exposed there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    pub method: &'static str,
    pub path: &'static str,
    pub set: Routes,
    pub lambda: Option<&'static str>,
}

/// Every route [`router`] serves. The infrastructure template, the `cargo lambda watch`
/// router and the tests are checked against this list.
pub const ROUTES: &[RouteSpec] = &[
    route("POST", "/api/v2/token", Routes::Token, Some("token")),
    route(
        "POST",
        "/api/v2/interaction/{number}",
        Routes::Originate,
        Some("originate"),
    ),
    route(
        "POST",
        "/api/v2/calls",
        Routes::Originate,
        Some("originate"),
    ),
    route(
        "DELETE",
        "/api/v2/calls/{call_id}",
        Routes::Originate,
        Some("originate"),
    ),
    route(
        "GET",
        "/api/v2/status/{call_id}",
        Routes::Status,
        Some("status"),
    ),
    route(
        "GET",
        "/api/v2/calls/{call_id}",
        Routes::Status,
        Some("status"),
    ),
    route("GET", "/api/v2/calls", Routes::Status, Some("status")),
    route("GET", "/health", Routes::Ops, Some("status")),
    route("GET", "/docs", Routes::Ops, Some("status")),
    route("GET", "/openapi.json", Routes::Ops, Some("status")),
    // Per-container counters mean nothing behind API Gateway: Lambdas report through
    // CloudWatch (EMF); `/metrics` is for the local server.
    route("GET", "/metrics", Routes::Ops, None),
];

const fn route(
    method: &'static str,
    path: &'static str,
    set: Routes,
    lambda: Option<&'static str>,
) -> RouteSpec {
    RouteSpec {
        method,
        path,
        set,
        lambda,
    }
}

pub fn router(state: AppState, routes: &[Routes]) -> Router {
    let mut router = Router::new();
    for set in routes {
        router = match set {
            Routes::Token => router.route("/api/v2/token", post(token::token)),
            // Cancel talks to the PBX, so it lives with originate (in the VPC).
            Routes::Originate => router
                .route("/api/v2/interaction/{number}", post(calls::interaction))
                .route("/api/v2/calls", post(calls::create))
                .route("/api/v2/calls/{call_id}", delete(calls::cancel)),
            Routes::Status => router
                .route("/api/v2/status/{call_id}", get(calls::status))
                .route("/api/v2/calls/{call_id}", get(calls::get))
                .route("/api/v2/calls", get(calls::list)),
            Routes::Ops => router
                .route("/health", get(ops::health))
                .route("/docs", get(ops::docs))
                .route("/openapi.json", get(ops::openapi_json))
                .route("/metrics", get(ops::metrics)),
        };
    }
    router
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            ops::count_requests,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(CatchPanicLayer::custom(ops::panic_response))
        .with_state(state)
}

/// Serves the router on a bound listener until `shutdown` completes (the local server;
/// the Lambdas are served by the Lambda runtime instead).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
