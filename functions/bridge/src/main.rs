//! The always-on ARI event bridge (a container on ECS Fargate in production): follows
//! the Stasis app's events and writes every status change to the store. Serves
//! `/health` and `/metrics` on `BRIDGE_PORT` (default 8080). On SIGTERM it stops
//! reading, flushes its write queue and exits.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use shared::bridge::{BridgeHealth, CallEvents, EventSource, EventSourceTiming};
use shared::config::{Config, ProcessEnv};
use shared::metrics::{EMF_NAMESPACE, Metrics};
use shared::secret::Secret;
use shared::{api, bridge, wiring};
use tokio::sync::watch;

#[tokio::main]
async fn main() -> ExitCode {
    shared::telemetry::init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // The bridge signs no tokens: it needs no SECRET_KEY.
    let config = Config::load_with(&ProcessEnv, Some(Secret::new("unused-by-the-bridge")))?;
    let port: u16 = std::env::var("BRIDGE_PORT").map_or(Ok(8080), |p| {
        p.parse().map_err(|_| "BRIDGE_PORT: not a port number")
    })?;
    let adapters = wiring::adapters(&config).await?;
    // CloudWatch gets the bridge's state as EMF log lines (the "disconnected" alarm
    // reads them); Prometheus scrapes /metrics where there is one.
    let metrics = Arc::new(Metrics::new().with_emf(EMF_NAMESPACE, "bridge".into()));
    let health = Arc::new(BridgeHealth::default());
    let pbx = Arc::new(adapters.ari.clone());
    let metrics_for_sampler = metrics.clone();
    let source = EventSource {
        ari: adapters.ari,
        events: CallEvents::new(adapters.store, pbx, metrics.clone()),
        health: health.clone(),
        metrics: metrics.clone(),
        timing: EventSourceTiming::default(),
    };
    let (stop, stopped) = watch::channel(false);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))).await?;
    tracing::info!(port, app = %config.ari.app, "bridge starting");
    let mut port_stopped = stopped.clone();
    let http = tokio::spawn(api::serve(
        listener,
        bridge::http::router(health, metrics),
        async move {
            let _ = port_stopped.wait_for(|s| *s).await;
        },
    ));
    let events = tokio::spawn(source.run(stopped));
    let sampler = tokio::spawn(publish_every_minute(metrics_for_sampler));
    terminated().await;
    tracing::info!("SIGTERM: stopping");
    let _ = stop.send(true);
    events.await?;
    sampler.abort();
    http.await??;
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

/// SIGTERM (ECS stopping the task) or Ctrl-C.
async fn terminated() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler can be installed");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
