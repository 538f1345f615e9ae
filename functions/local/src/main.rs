//! `cargo run -p local`: the whole product on one machine.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    shared::telemetry::init();
    let settings = match local::LocalSettings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let admin = settings.admin_username.clone();
    let simulated = settings.simulate_pbx.is_some();
    let running = match local::start(settings).await {
        Ok(running) => running,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let pbx = if simulated {
        "simulated PBX"
    } else {
        "Asterisk ARI"
    };
    tracing::info!(
        "API:  {}  (docs at {}/docs)",
        running.api_url(),
        running.api_url()
    );
    tracing::info!("PBX:  {pbx} at {}", running.ari_url);
    tracing::info!("Log in as {admin:?} (password from ADMIN_PASSWORD, default \"admin123\")");
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down");
    running.stop().await;
    ExitCode::SUCCESS
}
