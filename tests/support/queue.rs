//! A paced trunk for the queue tests: a simulated PBX that notes the time of every
//! originate, the real bridge (which frees each attempt's line), the call service and
//! any number of dispatchers, all on one store chosen by the test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dialer_ari::AriClient;
use dialer_bridge::{BridgeHealth, EventSourceTiming};
use dialer_core::domain::{Call, CallPolicy, CallRequest, TrunkLimits};
use dialer_core::metrics::Metrics;
use dialer_core::service::calls::Dialer;
use dialer_core::service::{CallService, DispatchTiming, Dispatcher, Pacer};
use dialer_core::store::{PacingStore, Store};
use pbx_sim::{SimConfig, SimHandle};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::bridge::event_source_with;
use super::{fast_timing, wait_until};

pub struct Trunk {
    pub sim: SimHandle,
    pub store: Arc<dyn Store>,
    pub service: CallService,
    pub pacer: Pacer,
    pub health: Arc<BridgeHealth>,
    pub ari: AriClient,
    /// The counters of the call service and of every dispatcher started here.
    pub metrics: Arc<Metrics>,
    stop_bridge: watch::Sender<bool>,
    bridge: JoinHandle<()>,
    dispatchers: Vec<RunningDispatcher>,
}

/// A dispatcher task; `kill` aborts it where it stands, as a crash would.
pub struct RunningDispatcher {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunningDispatcher {
    pub fn kill(self) {
        self.task.abort();
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Dispatcher timing for tests: quick polls, and lost claims settled after 20 s (longer
/// than a claimed call may take to reach its dial on a loaded CI machine against moto,
/// 8.6 s seen: a claim still on its way must not be taken for lost).
pub fn fast_dispatch() -> DispatchTiming {
    DispatchTiming {
        poll: Duration::from_millis(20),
        reconcile: Duration::from_millis(500),
        claim_timeout: Duration::from_secs(20),
        ..DispatchTiming::default()
    }
}

impl Trunk {
    pub async fn start(store: Arc<dyn Store>, limits: TrunkLimits, time_scale: f64) -> Self {
        let pacing: Arc<dyn PacingStore> = store.clone();
        Self::start_with_pacing(store, pacing, limits, time_scale).await
    }

    /// The same, with the pacing states kept by `pacing` (a store that loses races on
    /// demand, for one).
    pub async fn start_with_pacing(
        store: Arc<dyn Store>,
        pacing: Arc<dyn PacingStore>,
        limits: TrunkLimits,
        time_scale: f64,
    ) -> Self {
        let sim = pbx_sim::start(SimConfig {
            time_scale,
            ..SimConfig::default()
        })
        .await
        .expect("sim starts");
        let pacer = Pacer::new(pacing, limits);
        // The sweeper is not what these tests are about; at its test pace (200 ms) its
        // reads of the active calls alone would keep moto, which serves one request at a
        // time and scans for each such query (~100 ms), busy half the time.
        let timing = EventSourceTiming {
            sweep_every: Duration::from_secs(2),
            ..fast_timing()
        };
        let (mut source, health) = event_source_with(store.clone(), sim.base_url(), timing).await;
        source.events = source.events.with_pacer(pacer.clone());
        let ari = source.ari.clone();
        let (stop_bridge, stopped) = watch::channel(false);
        let bridge = tokio::spawn(source.run(stopped));
        wait_until(Duration::from_secs(10), || health.connected()).await;
        let metrics = Arc::new(Metrics::new());
        let service = CallService::new(
            store.clone(),
            store.clone(),
            Arc::new(dialer_core::webhooks::AcceptAll),
            Arc::new(ari.clone()),
            CallPolicy {
                dial_endpoint: "Local/{number}@test-pstn".into(),
                ..CallPolicy::default()
            },
            metrics.clone(),
            pacer.clone(),
        );
        Self {
            sim,
            store,
            service,
            pacer,
            health,
            ari,
            metrics,
            stop_bridge,
            bridge,
            dispatchers: Vec::new(),
        }
    }

    /// A dispatcher on this trunk's store, PBX and pacer, not yet running.
    pub fn dispatcher(&self) -> Dispatcher {
        self.dispatcher_with(fast_dispatch())
    }

    /// The same, with its own timing.
    pub fn dispatcher_with(&self, timing: DispatchTiming) -> Dispatcher {
        let health = self.health.clone();
        Dispatcher::new(
            self.store.clone(),
            self.store.clone(),
            Dialer::new(
                self.store.clone(),
                Arc::new(self.ari.clone()),
                self.pacer.clone(),
            ),
            Arc::new(move || health.connected()),
            timing,
            self.metrics.clone(),
        )
    }

    /// Starts a dispatcher that runs until the trunk stops (or it is killed).
    pub fn run_dispatcher(&mut self) {
        let running = self.spawn_dispatcher();
        self.dispatchers.push(running);
    }

    /// Starts a dispatcher with its own timing that runs until the trunk stops.
    pub fn run_dispatcher_with(&mut self, timing: DispatchTiming) {
        let running = self.spawn(self.dispatcher_with(timing));
        self.dispatchers.push(running);
    }

    pub fn spawn_dispatcher(&self) -> RunningDispatcher {
        self.spawn(self.dispatcher())
    }

    fn spawn(&self, dispatcher: Dispatcher) -> RunningDispatcher {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(dispatcher.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        RunningDispatcher { stop, task }
    }

    /// Places `count` calls to `number` at once, as one user, through the call service.
    pub async fn place_at_once(&self, owner: &str, number: &str, count: usize) -> Vec<Call> {
        self.place_many(owner, count, |_| CallRequest {
            phone_number: number.into(),
            ..CallRequest::default()
        })
        .await
    }

    pub async fn place_many(
        &self,
        owner: &str,
        count: usize,
        request: impl Fn(usize) -> CallRequest,
    ) -> Vec<Call> {
        let mut tasks = Vec::new();
        for n in 0..count {
            let service = self.service.clone();
            let owner = owner.to_owned();
            let request = request(n);
            tasks.push(tokio::spawn(async move {
                service.place_call(&owner, request, None).await
            }));
        }
        let mut calls = Vec::new();
        for task in tasks {
            calls.push(task.await.expect("task").expect("accepted"));
        }
        calls
    }

    /// Waits until every call is final; returns them as stored.
    pub async fn all_final(&self, calls: &[Call], limit: Duration) -> Vec<Call> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut ended: Vec<Option<Call>> = vec![None; calls.len()];
        loop {
            // Only the calls not yet seen final are read again, and the pause between
            // passes is twice what a pass took: a slow store (moto serves one request
            // at a time) spends at most a third of its time on the test's own reads.
            let pass = tokio::time::Instant::now();
            for (call, slot) in calls.iter().zip(ended.iter_mut()) {
                if slot.is_none() {
                    let stored = self
                        .store
                        .get_call(call.id)
                        .await
                        .expect("get")
                        .expect("stored");
                    if stored.is_completed() {
                        *slot = Some(stored);
                    }
                }
            }
            let open = ended.iter().filter(|c| c.is_none()).count();
            if open == 0 {
                return ended.into_iter().flatten().collect();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{open} of {} calls not final",
                calls.len()
            );
            tokio::time::sleep((pass.elapsed() * 2).max(Duration::from_millis(200))).await;
        }
    }

    /// The originates the PBX saw, as (channel id, time).
    pub fn originates(&self) -> Vec<(String, Instant)> {
        self.sim.originates()
    }

    pub async fn stop(self) {
        for dispatcher in self.dispatchers {
            dispatcher.stop().await;
        }
        let _ = self.stop_bridge.send(true);
        let _ = self.bridge.await;
        self.sim.shutdown().await;
    }
}

/// The most originates that fell within any one `window`.
pub fn most_within(times: &[Instant], window: Duration) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort();
    let mut most = 0;
    let mut start = 0;
    for end in 0..sorted.len() {
        while sorted[end] - sorted[start] >= window {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}
