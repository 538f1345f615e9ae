//! How many ARI events a second the bridge turns into store writes, with the in-process
//! store and a PBX that answers at once: the bridge's own cost, not the network's.
//!
//!     cargo bench -p bridge
//!
//! Three figures: the core alone (parsed events, one after another), the full path of
//! the running bridge (raw WebSocket text → parse → write queue lanes → core), and
//! parsing alone.

use std::sync::Arc;
use std::time::Instant;

use dialer_ari::AriEvent;
use dialer_bridge::CallEvents;
use dialer_bridge::queue::{Retry, WriteQueue};
use dialer_bridge::signal::signal_of;
use dialer_core::domain::{CallPolicy, CallRequest, CallStatus, Transition, now};
use dialer_core::metrics::Metrics;
use dialer_core::pbx::NullPbx;
use dialer_core::store::{CallBacklog, CallStore, MemoryStore};
use serde_json::json;
use uuid::Uuid;

const CALLS: usize = 20_000;

/// The frames a real Asterisk sends on an answered call's own channel (see
/// tests/ari-traces/stasis_continue_answered.jsonl), trimmed of fields the bridge
/// ignores but shaped the same.
fn frames_of(id: Uuid) -> Vec<String> {
    let channel = |state: &str| {
        json!({ "id": id.to_string(), "name": "Local/+15550010001@test-pstn-00000001;1", "state": state,
                "caller": { "name": "MyCompany", "number": "+15550000000" },
                "dialplan": { "context": "test-pstn", "exten": "+15550010001", "priority": 1 } })
    };
    let frames = [
        json!({ "type": "Dial", "dialstatus": "", "peer": channel("Down") }),
        json!({ "type": "ChannelStateChange", "channel": channel("Ringing") }),
        json!({ "type": "Dial", "dialstatus": "RINGING", "peer": channel("Ringing") }),
        json!({ "type": "ChannelStateChange", "channel": channel("Up") }),
        json!({ "type": "Dial", "dialstatus": "ANSWER", "peer": channel("Up") }),
        json!({ "type": "ChannelVarset", "variable": "STASISSTATUS", "value": "", "channel": channel("Up") }),
        json!({ "type": "StasisStart", "args": ["ivr"], "channel": channel("Up") }),
        json!({ "type": "StasisEnd", "channel": channel("Up") }),
        json!({ "type": "ChannelDestroyed", "cause": 16, "cause_txt": "Normal Clearing", "channel": channel("Up") }),
    ];
    frames
        .iter()
        .map(|f| {
            let mut f = f.clone();
            f["timestamp"] = json!("2026-11-24T11:34:28.485+0000");
            f["asterisk_id"] = json!("02:fc:00:00:00:01");
            f["application"] = json!("dialer");
            f.to_string()
        })
        .collect()
}

async fn store_with_calls() -> (Arc<MemoryStore>, Vec<Uuid>) {
    let store = Arc::new(MemoryStore::new());
    let policy = CallPolicy::default();
    let mut ids = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let id = Uuid::new_v4();
        let call = CallRequest {
            phone_number: "+15550010001".into(),
            ..CallRequest::default()
        }
        .validate(&policy, "bench", id, now())
        .expect("valid");
        store.insert_call(&call).await.expect("insert");
        store
            .transition(id, &Transition::to(CallStatus::Dialing, now()))
            .await
            .expect("dialing");
        ids.push(id);
    }
    (store, ids)
}

fn writes(metrics: &Metrics) -> f64 {
    ["applied", "refused", "not_found"]
        .iter()
        .map(|r| metrics.value("dialer_bridge_status_writes_total", &[("result", r)]))
        .sum()
}

fn report(label: &str, events: usize, writes: f64, seconds: f64) {
    println!(
        "{label:<34} {events:>8} events in {seconds:>6.3} s = {:>9.0} events/s, {:>9.0} status writes/s",
        events as f64 / seconds,
        writes / seconds
    );
}

/// The bridge's event handling on `store`, with a PBX that answers at once.
fn events_of(store: &Arc<MemoryStore>, metrics: &Arc<Metrics>) -> CallEvents {
    let pbx = NullPbx {
        listening: true,
        ..NullPbx::default()
    };
    CallEvents::new(store.clone(), Arc::new(pbx), metrics.clone())
}

async fn core_alone() {
    let (store, ids) = store_with_calls().await;
    let metrics = Arc::new(Metrics::new());
    let core = events_of(&store, &metrics);
    let events: Vec<AriEvent> = ids
        .iter()
        .flat_map(|id| frames_of(*id))
        .map(|f| AriEvent::parse(&f).expect("parses"))
        .collect();
    let start = Instant::now();
    for event in &events {
        core.handle(event).await.expect("memory store");
    }
    report(
        "core, parsed events, in order",
        events.len(),
        writes(&metrics),
        start.elapsed().as_secs_f64(),
    );
    let done = store.active_calls().await.expect("active").len();
    assert_eq!(done, 0, "every call ended");
}

async fn full_path() {
    let (store, ids) = store_with_calls().await;
    let metrics = Arc::new(Metrics::new());
    let core = events_of(&store, &metrics);
    let retry = Retry {
        first: std::time::Duration::from_millis(10),
        max: std::time::Duration::from_secs(1),
    };
    let queue = WriteQueue::start(core, 8, 10_000, retry, metrics.clone());
    // Interleave calls as a busy PBX would: the n-th event of every call, then the next.
    let per_call: Vec<Vec<String>> = ids.iter().map(|id| frames_of(*id)).collect();
    let frames: Vec<String> = (0..per_call[0].len())
        .flat_map(|n| per_call.iter().map(move |f| f[n].clone()))
        .collect();
    let start = Instant::now();
    for frame in &frames {
        let event = AriEvent::parse(frame).expect("parses");
        if let Some((call, _)) = signal_of(&event) {
            queue.push(call, event).await;
        }
    }
    queue.close(std::time::Duration::from_secs(600)).await;
    report(
        "full path, 8 lanes, raw frames",
        frames.len(),
        writes(&metrics),
        start.elapsed().as_secs_f64(),
    );
    assert_eq!(
        store.active_calls().await.expect("active").len(),
        0,
        "every call ended"
    );
}

fn parse_alone() {
    let frames: Vec<String> = (0..CALLS / 4)
        .flat_map(|_| frames_of(Uuid::new_v4()))
        .collect();
    let start = Instant::now();
    let mut ours = 0usize;
    for frame in &frames {
        if signal_of(&AriEvent::parse(frame).expect("parses")).is_some() {
            ours += 1;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{:<34} {:>8} frames in {seconds:>6.3} s = {:>9.0} frames/s ({ours} for our calls)",
        "parse + classify only",
        frames.len(),
        frames.len() as f64 / seconds
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("bridge event throughput, {CALLS} answered calls of 9 frames each (in-process store)");
    runtime.block_on(core_alone());
    runtime.block_on(full_path());
    parse_alone();
}
