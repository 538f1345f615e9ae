//! `pbx-sim`: a simulated Asterisk ARI, configured by `PBX_SIM_*` variables, until Ctrl-C.

use std::process::ExitCode;

use pbx_sim::SimConfig;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let config = match SimConfig::from_env() {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("invalid configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    let handle = match pbx_sim::start(config).await {
        Ok(handle) => handle,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!("pbx-sim serving ARI at {}/ari", handle.base_url());
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::error!("cannot wait for Ctrl-C: {e}");
    }
    handle.shutdown().await;
    ExitCode::SUCCESS
}
