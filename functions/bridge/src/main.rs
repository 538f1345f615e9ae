//! The always-on ARI event bridge (a container on ECS Fargate in production): follows
//! the Stasis app's events and writes every status change to the store. Serves
//! `/health` and `/metrics` on `BRIDGE_PORT` (default 8080), drains the webhook
//! outbox (on DynamoDB the `notify` function delivers instead) and dispatches queued
//! calls within the trunk's limits. On SIGTERM or SIGINT it stops dispatching and
//! reading, drains its port (`/health` answers 503 `draining` at once; see
//! `dialer_boot::serve`), flushes its write queue and exits 0.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use dialer_boot::serve::{Limits, serve_with, terminated};
use dialer_boot::settings::{BridgeSettings, ProcessEnv};
use dialer_boot::{BridgeProcess, Platform};
use dialer_core::metrics::Metrics;
use tokio::sync::watch;

#[tokio::main]
async fn main() -> ExitCode {
    dialer_boot::telemetry::init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let signal = terminated();
    let settings = BridgeSettings::from_env(&ProcessEnv)?;
    let port_limits = Limits {
        drain: dialer_boot::settings::shutdown_drain(&ProcessEnv)?,
        ..Limits::default()
    };
    let BridgeProcess {
        source,
        port,
        metrics,
        deliverer,
        dispatcher,
    } = dialer_boot::bridge(&settings, &Platform::from_env().await).await?;
    let (stop, stopped) = watch::channel(false);
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], settings.port))).await?;
    tracing::info!(port = settings.port, app = %settings.pbx.ari.app, "bridge starting");
    let mut port_stopped = stopped.clone();
    let http = tokio::spawn(serve_with(listener, port, port_limits, async move {
        let _ = port_stopped.wait_for(|s| *s).await;
    }));
    let outbox = tokio::spawn(deliverer.drain(Default::default(), stopped.clone()));
    let mut dispatch_stopped = stopped.clone();
    let queue = tokio::spawn(dispatcher.run(async move {
        let _ = dispatch_stopped.wait_for(|s| *s).await;
    }));
    let events = tokio::spawn(source.run(stopped));
    let sampler = tokio::spawn(publish_every_minute(metrics));
    let signal = signal.await;
    tracing::info!("{signal}: stopping");
    let _ = stop.send(true);
    queue.await?;
    events.await?;
    outbox.await?;
    sampler.abort();
    http.await??;
    tracing::info!("bridge stopped");
    Ok(())
}

/// Gauges go to CloudWatch once a minute: enough for an alarm, cheap in log volume.
async fn publish_every_minute(metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tick.tick().await;
        metrics.publish("dialer_bridge_connected", &[]);
        metrics.publish("dialer_bridge_queue_depth", &[]);
    }
}
