//! The optional access log (`ACCESS_LOG=true`): one line per request answered, for an
//! operator following traffic in the logs. It names the route, not the path, so that a
//! callee's number in `/api/v2/interaction/{number}` never reaches a log; and nothing of
//! a request's headers or body (a token, a password).

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

pub async fn access_log(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "(no route)".to_owned(), |p| p.as_str().to_owned());
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|peer| peer.0.ip());
    let response = next.run(request).await;
    tracing::info!(
        target: "access",
        method = %method,
        route = %route,
        status = response.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1000.0,
        client = client.map(tracing::field::display),
        "request"
    );
    response
}
