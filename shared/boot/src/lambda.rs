//! The Lambda entry point: a function reads its settings, builds its routes once per
//! container and serves them through `lambda_http`.

use std::future::Future;

use crate::settings::{Env, ProcessEnv, check_deployed, in_aws_lambda};
use crate::{BootError, Platform};

/// Serves the router `build` makes from the function's settings until the Lambda
/// runtime stops the container. In AWS Lambda itself the deployed variables must all be
/// set; in an emulator such as `cargo lambda watch` the defaults serve.
pub async fn run<S, F, Fut>(
    binary: &str,
    settings: fn(&dyn Env) -> Result<S, crate::settings::ConfigError>,
    build: F,
) -> Result<(), lambda_http::Error>
where
    F: FnOnce(S, Platform) -> Fut,
    Fut: Future<Output = Result<axum::Router, BootError>>,
{
    crate::telemetry::init();
    if in_aws_lambda(&ProcessEnv) {
        check_deployed(binary, &ProcessEnv)?;
    }
    let settings = settings(&ProcessEnv)?;
    let router = build(settings, Platform::from_lambda_env(&ProcessEnv)).await?;
    lambda_http::run(behind_api_gateway(router)).await
}

/// The router as API Gateway's events reach it: with the caller's address taken from
/// the event for the login throttle.
pub fn behind_api_gateway(router: axum::Router) -> axum::Router {
    router.layer(axum::middleware::from_fn(client_address))
}

/// API Gateway's `sourceIp` (the TCP peer it saw, not a header a client can write) as
/// the [`ClientAddress`](dialer_http::extract::ClientAddress) the login throttle counts.
async fn client_address(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use lambda_http::RequestExt;
    use lambda_http::request::RequestContext;
    let ip = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context
            .http
            .source_ip
            .as_deref()
            .and_then(|ip| ip.parse::<std::net::IpAddr>().ok()),
        _ => None,
    };
    if let Some(ip) = ip {
        request
            .extensions_mut()
            .insert(dialer_http::extract::ClientAddress(ip));
    }
    next.run(request).await
}
