//! The whole product on one machine: what the composition root's local process runs
//! (API on every route, bridge, in-process store or PostgreSQL), plus, unless
//! `ARI_HTTP_URL` points at a real Asterisk, a simulated PBX on a free loopback port in
//! front of it. `main` and the tests start it the same way.

use std::net::SocketAddr;
use std::sync::Arc;

use dialer_boot::BootError;
use dialer_boot::local::LocalProcess;
pub use dialer_boot::local::LocalSettings;
use dialer_core::health::BridgeHealth;
use dialer_core::metrics::Metrics;
use dialer_core::store::Store;
use pbx_sim::{SimConfig, SimHandle};

/// A running local server. Dropping it does not stop it; call [`Running::stop`].
pub struct Running {
    pub api_addr: SocketAddr,
    pub ari_url: String,
    pub pbx: Option<SimHandle>,
    pub store: Arc<dyn Store>,
    pub health: Arc<BridgeHealth>,
    pub metrics: Arc<Metrics>,
    process: LocalProcess,
}

impl Running {
    pub fn api_url(&self) -> String {
        self.process.api_url()
    }

    pub async fn stop(self) {
        self.process.stop().await;
        if let Some(pbx) = self.pbx {
            pbx.shutdown().await;
        }
    }
}

/// Starts the simulated PBX when the settings ask for one, then the local process.
pub async fn start(mut settings: LocalSettings) -> Result<Running, BootError> {
    let pbx = match settings.simulate_pbx {
        Some(time_scale) => {
            let sim = pbx_sim::start(SimConfig {
                bind: SocketAddr::from(([127, 0, 0, 1], 0)),
                username: settings.pbx.ari.username.clone(),
                password: settings.pbx.ari.password.expose().to_owned(),
                time_scale,
            })
            .await?;
            settings.pbx.ari.url = sim.base_url();
            Some(sim)
        }
        None => None,
    };
    let ari_url = settings.pbx.ari.url.clone();
    let process = dialer_boot::local::start(settings).await?;
    Ok(Running {
        api_addr: process.api_addr,
        ari_url,
        pbx,
        store: process.store.clone(),
        health: process.health.clone(),
        metrics: process.metrics.clone(),
        process,
    })
}
