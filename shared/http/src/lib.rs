//! The HTTP routes: one implementation, served by the Lambdas and by the local server.

pub mod answer;
pub mod calls;
pub mod dto;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod ops;
pub mod token;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::middleware;
use axum::routing::{delete, get, post};
use dialer_core::health::BridgeHealth;
use dialer_core::metrics::Metrics;
use dialer_core::service::{Authenticator, CallQueries, CallService, LoginService};
use tower_http::catch_panic::CatchPanicLayer;

/// Request bodies larger than this are refused with 413.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// What the token route needs.
#[derive(Clone)]
pub struct TokenState {
    pub login: LoginService,
}

/// What the originate and cancel routes need.
#[derive(Clone)]
pub struct OriginateState {
    pub calls: CallService,
    pub auth: Authenticator,
}

/// What the status and list routes need: the store, never the PBX.
#[derive(Clone)]
pub struct StatusState {
    pub calls: CallQueries,
    pub auth: Authenticator,
}

/// What the operational routes need.
#[derive(Clone)]
pub struct OpsState {
    pub metrics: Arc<Metrics>,
    pub metrics_enabled: bool,
    /// Present where the bridge runs in the same process (the local server).
    pub bridge: Option<Arc<BridgeHealth>>,
}

impl FromRef<OriginateState> for Authenticator {
    fn from_ref(state: &OriginateState) -> Self {
        state.auth.clone()
    }
}

impl FromRef<StatusState> for Authenticator {
    fn from_ref(state: &StatusState) -> Self {
        state.auth.clone()
    }
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

/// Every route [`Api`] serves. The infrastructure template, the `cargo lambda watch`
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
    route(
        "GET",
        "/api/v2/calls/{call_id}/events",
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

/// Builds a router from route sets, each with its own state: a binary adds only the
/// sets it serves, so it links only their handlers and adapters.
pub struct Api {
    router: Router,
    metrics: Arc<Metrics>,
}

impl Api {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            router: Router::new(),
            metrics,
        }
    }

    /// [`Routes::Token`].
    pub fn token(self, state: TokenState) -> Self {
        self.merge(
            Router::new()
                .route("/api/v2/token", post(token::token))
                .with_state(state),
        )
    }

    /// [`Routes::Originate`]. Cancel talks to the PBX, so it lives with originate (in
    /// the VPC).
    pub fn originate(self, state: OriginateState) -> Self {
        self.merge(
            Router::new()
                .route("/api/v2/interaction/{number}", post(calls::interaction))
                .route("/api/v2/calls", post(calls::create))
                .route("/api/v2/calls/{call_id}", delete(calls::cancel))
                .with_state(state),
        )
    }

    /// [`Routes::Status`].
    pub fn status(self, state: StatusState) -> Self {
        self.merge(
            Router::new()
                .route("/api/v2/status/{call_id}", get(calls::status))
                .route("/api/v2/calls/{call_id}", get(calls::get))
                .route("/api/v2/calls/{call_id}/events", get(calls::events))
                .route("/api/v2/calls", get(calls::list))
                .with_state(state),
        )
    }

    /// [`Routes::Ops`].
    pub fn ops(self, state: OpsState) -> Self {
        self.merge(
            Router::new()
                .route("/health", get(ops::health))
                .route("/docs", get(ops::docs))
                .route("/openapi.json", get(ops::openapi_json))
                .route("/metrics", get(ops::metrics))
                .with_state(state),
        )
    }

    /// The router with what every set shares: JSON answers for unknown routes and
    /// methods, request counting, the body limit and panic recovery.
    pub fn build(self) -> Router {
        self.router
            .fallback(ops::not_found)
            .method_not_allowed_fallback(ops::method_not_allowed)
            .layer(middleware::from_fn_with_state(
                self.metrics,
                ops::count_requests,
            ))
            .layer(middleware::from_fn(ops::refuse_declared_oversize))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .layer(CatchPanicLayer::custom(ops::panic_response))
    }

    fn merge(mut self, routes: Router) -> Self {
        self.router = self.router.merge(routes);
        self
    }
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
