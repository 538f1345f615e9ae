//! A bridge (the real event source and write queue) on a store chosen by the test, in
//! front of a simulated PBX: for tests that need a store the local server cannot give.

use std::sync::Arc;
use std::time::Duration;

use dialer_ari::{AriClient, AriSettings};
use dialer_bridge::{BridgeHealth, EventSource, EventSourceTiming};
use dialer_core::domain::{Call, CallPolicy};
use dialer_core::metrics::Metrics;
use dialer_core::secrets::Secret;
use dialer_core::service::CallService;
use dialer_core::store::{CallBacklog, CallStore};
use pbx_sim::{SimConfig, SimHandle};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{fast_timing, wait_until};

pub struct Bridged {
    pub sim: SimHandle,
    pub ari: AriClient,
    pub health: Arc<BridgeHealth>,
    pub metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// ARI settings for a simulated PBX at `url` (the simulator's default user).
pub fn ari_settings(url: String) -> AriSettings {
    AriSettings {
        url,
        username: "asterisk".into(),
        password: Secret::new("asterisk"),
        app: "dialer".into(),
        timeout: Duration::from_secs(10),
    }
}

/// A bridge for `store` reading ARI at `url`, connected when this returns.
pub async fn event_source(
    store: Arc<dyn CallBacklog>,
    url: String,
) -> (EventSource, Arc<BridgeHealth>) {
    event_source_with(store, url, fast_timing()).await
}

/// The same, with its own timing.
pub async fn event_source_with(
    store: Arc<dyn CallBacklog>,
    url: String,
    timing: EventSourceTiming,
) -> (EventSource, Arc<BridgeHealth>) {
    let ari = AriClient::new(ari_settings(url)).expect("ARI client");
    let source = dialer_boot::event_source(store, ari, Arc::new(Metrics::new()), timing);
    let health = source.health.clone();
    (source, health)
}

impl Bridged {
    pub async fn start(store: Arc<dyn CallBacklog>, time_scale: f64) -> Self {
        let sim = pbx_sim::start(SimConfig {
            time_scale,
            ..SimConfig::default()
        })
        .await
        .expect("sim starts");
        let (source, health) = event_source(store, sim.base_url()).await;
        let (ari, metrics) = (source.ari.clone(), source.metrics.clone());
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(source.run(stopped));
        wait_until(Duration::from_secs(10), || health.connected()).await;
        Self {
            sim,
            ari,
            health,
            metrics,
            stop,
            task,
        }
    }

    /// The originate side, on the same store and PBX.
    pub fn calls(&self, store: Arc<dyn CallStore>) -> CallService {
        let policy = CallPolicy {
            dial_endpoint: "Local/{number}@test-pstn".into(),
            ..CallPolicy::default()
        };
        // No users here: no call takes a default webhook.
        let users = Arc::new(dialer_core::store::MemoryStore::new());
        CallService::new(
            store,
            users.clone(),
            Arc::new(dialer_core::webhooks::AcceptAll),
            Arc::new(self.ari.clone()),
            policy,
            self.metrics.clone(),
            dialer_core::service::Pacer::new(users, Default::default()),
        )
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.expect("bridge stopped");
        self.sim.shutdown().await;
    }
}

/// Waits for the call to reach a final status and returns it.
pub async fn until_final(store: &dyn CallStore, id: Uuid, limit: Duration) -> Call {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let call = store.get_call(id).await.expect("get").expect("exists");
        if call.status.is_final() {
            return call;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{call:?} never ended"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
