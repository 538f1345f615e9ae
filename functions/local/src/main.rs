//! `cargo run -p local`: the whole product on one machine. Stops on SIGTERM or SIGINT
//! after the requests in flight are answered and the bridge's queue is flushed.

use std::process::ExitCode;

use dialer_boot::local::LocalSettings;
use dialer_boot::settings::ProcessEnv;

#[tokio::main]
async fn main() -> ExitCode {
    dialer_boot::telemetry::init();
    let signal = dialer_boot::serve::terminated();
    let settings = match LocalSettings::from_env(&ProcessEnv) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let admin = settings.admin_username.clone();
    let webhook_secret = settings.webhook_secret.clone();
    let secret_given = std::env::var_os("WEBHOOK_SECRET").is_some();
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
    tracing::info!("Bridge: following the PBX's events in this process");
    tracing::info!("Log in as {admin:?} (password from ADMIN_PASSWORD, default \"admin123\")");
    if !secret_given {
        // Printed, not logged: the demo user's secret for this run only, so that a
        // local receiver can check signatures.
        println!(
            "Webhook secret of {admin:?} for this run (set WEBHOOK_SECRET to keep one): {}",
            webhook_secret.expose()
        );
    }
    let signal = signal.await;
    tracing::info!("{signal}: finishing requests in flight, then stopping");
    running.stop().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}
