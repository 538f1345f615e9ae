//! The Lambda entry point: every function builds its adapters once per container and
//! serves its own routes from the shared router through `lambda_http`.

use std::sync::Arc;

use axum::Router;

use crate::api::{self, AppState, Routes};
use crate::auth::{Hasher, Tokens};
use crate::config::Config;
use crate::metrics::{EMF_NAMESPACE, Metrics};
use crate::pbx::Pbx;
use crate::service::{CallService, LoginService};
use crate::wiring;

/// Builds the router a function serves. Everything that can be done at init is done
/// here, not per request.
pub async fn app(routes: &[Routes]) -> Result<Router, lambda_http::Error> {
    let config = Config::from_env()?;
    app_with(&config, &wiring::aws_config().await, routes).await
}

/// The same from a configuration built by the caller (tests).
pub async fn app_with(
    config: &Config,
    aws: &aws_config::SdkConfig,
    routes: &[Routes],
) -> Result<Router, lambda_http::Error> {
    let adapters = wiring::adapters_with(config, aws).await?;
    Ok(api::router(state(config, adapters), routes))
}

/// Serves `routes` as the function `binary` until the Lambda runtime stops the
/// container. In AWS Lambda itself (not in an emulator such as `cargo lambda watch`,
/// where the defaults serve) the deployed variables must all be set.
pub async fn run(binary: &str, routes: &[Routes]) -> Result<(), lambda_http::Error> {
    crate::telemetry::init();
    if std::env::var("AWS_EXECUTION_ENV").is_ok_and(|e| e.starts_with("AWS_Lambda")) {
        crate::config::check_deployed(binary, &crate::config::ProcessEnv)?;
    }
    let app = app(routes).await?;
    lambda_http::run(app).await
}

fn state(config: &Config, adapters: wiring::Adapters) -> AppState {
    // Lambdas report metrics as CloudWatch Embedded Metric Format log lines.
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".into());
    let metrics = Arc::new(Metrics::new().with_emf(EMF_NAMESPACE, function));
    let pbx: Arc<dyn Pbx> = Arc::new(adapters.ari);
    AppState {
        calls: CallService::new(
            adapters.store.clone(),
            pbx,
            config.policy.clone(),
            metrics.clone(),
        ),
        login: LoginService::new(
            adapters.store,
            Hasher::new(config.bcrypt_cost),
            Tokens::new(config.tokens.clone(), adapters.signing_key),
            metrics.clone(),
        ),
        metrics,
        metrics_enabled: config.metrics_enabled,
        bridge: None,
    }
}
