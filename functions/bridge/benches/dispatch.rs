//! The dispatcher's figures, against the simulated PBX over real HTTP and WebSocket,
//! with the in-process store and the real bridge following every call:
//!
//!     cargo bench -p bridge --bench dispatch
//!
//! 1. Throughput with no limits: originates a second placed directly (the API path)
//!    and through the queue (scheduled calls falling due together), side by side.
//! 2. The extra latency a queued call sees on an idle system: scheduled calls one at
//!    a time, from `send_at` to the originate reaching the PBX.
//! 3. Pacing accuracy under load: 1,000 calls at once at MAX_CALLS_PER_SECOND=50, the
//!    most originates the PBX saw in any one second, and the rate achieved.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dialer_ari::{AriClient, AriSettings};
use dialer_core::domain::{CallPolicy, CallRequest, TrunkLimits};
use dialer_core::metrics::Metrics;
use dialer_core::secrets::Secret;
use dialer_core::service::{CallService, DispatchTiming, Pacer};
use dialer_core::store::{MemoryStore, Store};
use pbx_sim::{SimConfig, SimHandle};
use tokio::sync::watch;

/// Busy at once: each call ends as soon as it is dialed.
const BUSY: &str = "+15550020001";

struct Rig {
    sim: SimHandle,
    service: CallService,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Rig {
    async fn start(limits: TrunkLimits) -> Self {
        let sim = pbx_sim::start(SimConfig {
            time_scale: 0.01,
            ..SimConfig::default()
        })
        .await
        .expect("sim");
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let ari = AriClient::new(AriSettings {
            url: sim.base_url(),
            username: "asterisk".into(),
            password: Secret::new("asterisk"),
            app: "dialer".into(),
            timeout: Duration::from_secs(10),
        })
        .expect("ARI client");
        let metrics = Arc::new(Metrics::new());
        let pacer = Pacer::new(store.clone(), limits);
        let mut source = dialer_boot::event_source(
            store.clone(),
            ari.clone(),
            metrics.clone(),
            Default::default(),
        );
        source.events = source.events.with_pacer(pacer.clone());
        let health = source.health.clone();
        let (stop, stopped) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(source.run(stopped.clone()))];
        let dispatcher = dialer_boot::dispatcher(
            store.clone(),
            Arc::new(ari.clone()),
            pacer.clone(),
            health.clone(),
            DispatchTiming::default(),
            metrics.clone(),
        );
        let mut dispatch_stopped = stopped;
        tasks.push(tokio::spawn(dispatcher.run(async move {
            let _ = dispatch_stopped.wait_for(|s| *s).await;
        })));
        while !health.connected() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let service = CallService::new(
            store.clone(),
            store,
            Arc::new(dialer_core::webhooks::AcceptAll),
            Arc::new(ari),
            CallPolicy {
                dial_endpoint: "Local/{number}@test-pstn".into(),
                ..CallPolicy::default()
            },
            metrics,
            pacer,
        );
        Self {
            sim,
            service,
            stop,
            tasks,
        }
    }

    /// Places `count` calls, `parallel` requests at a time.
    async fn place(&self, count: usize, parallel: usize, request: impl Fn() -> CallRequest) {
        let semaphore = Arc::new(tokio::sync::Semaphore::new(parallel));
        let mut tasks = Vec::new();
        for _ in 0..count {
            let permit = semaphore.clone().acquire_owned().await.expect("permit");
            let service = self.service.clone();
            let request = request();
            tasks.push(tokio::spawn(async move {
                service
                    .place_call("bench", request, None)
                    .await
                    .expect("placed");
                drop(permit);
            }));
        }
        for task in tasks {
            task.await.expect("task");
        }
    }

    async fn until_originated(&self, count: usize) {
        while self.sim.originates().len() < count {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.sim.shutdown().await;
    }
}

fn busy() -> CallRequest {
    CallRequest {
        phone_number: BUSY.into(),
        ..CallRequest::default()
    }
}

fn per_second(count: usize, first: Instant, last: Instant) -> f64 {
    count as f64 / (last - first).as_secs_f64().max(1e-9)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let calls = 2_000;
    // 1. Direct: eight requests at a time, as an HTTP client with eight connections.
    let rig = Rig::start(TrunkLimits::default()).await;
    rig.place(calls, 8, busy).await;
    rig.until_originated(calls).await;
    let times: Vec<Instant> = rig.sim.originates().iter().map(|(_, at)| *at).collect();
    let direct = per_second(calls, times[0], times[calls - 1]);
    rig.stop().await;
    // Through the queue: the same calls, all due at one moment a little ahead.
    let rig = Rig::start(TrunkLimits::default()).await;
    let due = chrono::Utc::now() + chrono::Duration::seconds(3);
    rig.place(calls, 8, || CallRequest {
        send_at: Some(due.to_rfc3339()),
        ..busy()
    })
    .await;
    assert!(rig.sim.originates().is_empty(), "dialed before send_at");
    rig.until_originated(calls).await;
    let times: Vec<Instant> = rig.sim.originates().iter().map(|(_, at)| *at).collect();
    let queued = per_second(calls, times[0], times[calls - 1]);
    rig.stop().await;
    println!("dispatcher throughput, no limits, {calls} calls, busy callee (in-process store):");
    println!("  direct (API path, 8 at a time): {direct:>8.0} originates/s");
    println!(
        "  through the queue:              {queued:>8.0} originates/s ({:.2}x direct)",
        queued / direct
    );

    // 2. Idle latency: one scheduled call at a time.
    let rig = Rig::start(TrunkLimits::default()).await;
    let mut late_ms = Vec::new();
    for n in 0..200 {
        let send_at = dialer_core::domain::now() + chrono::Duration::milliseconds(150);
        rig.place(1, 1, || CallRequest {
            send_at: Some(send_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            ..busy()
        })
        .await;
        rig.until_originated(n + 1).await;
        let dialed = chrono::Utc::now();
        late_ms.push((dialed - send_at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rig.stop().await;
    late_ms.sort_by(f64::total_cmp);
    let pct = |p: f64| late_ms[((late_ms.len() as f64 * p) as usize).min(late_ms.len() - 1)];
    println!("queued call on an idle system, send_at to the originate at the PBX (200 calls):");
    println!(
        "  p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(0.50),
        pct(0.99),
        late_ms[late_ms.len() - 1]
    );

    // 3. CPS accuracy under load.
    let rate = 50;
    let burst = 1_000;
    let rig = Rig::start(TrunkLimits {
        calls_per_second: Some(rate),
        concurrent_calls: None,
    })
    .await;
    let started = Instant::now();
    rig.place(burst, 64, busy).await;
    let accepted = started.elapsed();
    rig.until_originated(burst).await;
    let mut times: Vec<Instant> = rig.sim.originates().iter().map(|(_, at)| *at).collect();
    times.sort();
    let mut most = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= Duration::from_secs(1) {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    let achieved = per_second(burst - 1, times[0], times[burst - 1]);
    rig.stop().await;
    println!(
        "pacing at MAX_CALLS_PER_SECOND={rate}, {burst} calls at once (accepted in {:.2} s):",
        accepted.as_secs_f64()
    );
    println!(
        "  most originates in any one second: {most} (limit {rate}); achieved {achieved:.1}/s ({:.0}% of the limit)",
        achieved / f64::from(rate) * 100.0
    );
}
