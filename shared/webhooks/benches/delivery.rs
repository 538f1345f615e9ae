//! Webhook delivery, measured: events delivered per second to a receiver on loopback,
//! and the time from a status change to its delivery (p50, p99). The whole path runs:
//! the in-process store's outbox, the deliverer's drain loop, the signed,
//! address-checked sender, real HTTP.
//!
//!     cargo bench -p dialer-webhooks --bench delivery      # CALLS=2000 by default

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use chrono::Utc;
use dialer_core::domain::User;
use dialer_core::domain::{CallPolicy, CallRequest, CallStatus, Transition};
use dialer_core::metrics::Metrics;
use dialer_core::service::Deliverer;
use dialer_core::service::deliver::DrainTiming;
use dialer_core::store::{CallStore, MemoryStore, UserStore};
use dialer_webhooks::{Sender, Settings};
use uuid::Uuid;

type Latencies = Arc<Mutex<Vec<f64>>>;

#[tokio::main]
async fn main() {
    let calls: usize = std::env::var("CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let latencies: Latencies = Arc::default();
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .with_state(latencies.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let store = Arc::new(MemoryStore::new());
    store
        .insert_user(&User::new("bench", "unused"))
        .await
        .expect("user");
    let policy = CallPolicy {
        webhook_allow_insecure: true,
        ..CallPolicy::default()
    };
    let mut ids = Vec::with_capacity(calls);
    for _ in 0..calls {
        let request = CallRequest {
            phone_number: "+15550010001".into(),
            status_callback: Some(url.clone()),
            ..CallRequest::default()
        };
        let call = request
            .validate(&policy, "bench", Uuid::new_v4(), dialer_core::domain::now())
            .expect("valid");
        store.insert_call(&call).await.expect("insert");
        ids.push(call.id);
    }
    let sender = Sender::new(Settings {
        allow_private: true,
        ..Settings::default()
    })
    .expect("sender");
    let deliverer = Deliverer::new(
        store.clone(),
        store.clone(),
        Arc::new(sender),
        chrono::Duration::hours(1),
        Arc::new(Metrics::new()),
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let drain = tokio::spawn(deliverer.drain(DrainTiming::default(), stopped));

    // Each call moves to dialing: one event each, written with the change.
    let started = Instant::now();
    for id in &ids {
        let change = Transition::to(CallStatus::Dialing, dialer_core::domain::now());
        store.transition(*id, &change).await.expect("transition");
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while latencies.lock().expect("lock").len() < calls {
        assert!(Instant::now() < deadline, "not every event arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let burst = std::mem::take(&mut *latencies.lock().expect("lock"));

    // Then one change every 10 ms, as calls progress on a quiet system.
    let spaced = calls.min(300);
    for id in ids.iter().take(spaced) {
        let change = Transition::to(CallStatus::Ringing, dialer_core::domain::now());
        store.transition(*id, &change).await.expect("transition");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    while latencies.lock().expect("lock").len() < spaced {
        assert!(Instant::now() < deadline, "not every event arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = stop.send(true);
    let _ = drain.await;
    let quiet = latencies.lock().expect("lock").clone();

    println!("webhook delivery to one loopback receiver (in-process store)");
    println!(
        "  burst: {calls} events delivered in {:.2} s: {:.0} events/s; change to delivery {}",
        elapsed.as_secs_f64(),
        calls as f64 / elapsed.as_secs_f64(),
        percentiles(burst)
    );
    println!(
        "  one change every 10 ms ({spaced} events): change to delivery {}",
        percentiles(quiet)
    );
}

fn percentiles(mut millis: Vec<f64>) -> String {
    millis.sort_by(f64::total_cmp);
    let at = |q: f64| millis[((millis.len() as f64 - 1.0) * q).round() as usize];
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        at(0.5),
        at(0.99),
        at(1.0)
    )
}

async fn receive(State(latencies): State<Latencies>, body: Bytes) -> &'static str {
    let event: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    let at = event["at"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .expect("at");
    let millis = (Utc::now() - at.with_timezone(&Utc))
        .num_microseconds()
        .unwrap_or(0) as f64
        / 1000.0;
    latencies.lock().expect("lock").push(millis);
    "ok"
}
