//! Events that arrive twice, late or out of order never move a status backwards, and
//! concurrent writers never reverse each other.

use std::sync::Arc;

use chrono::Utc;
use dialer_ari::AriEvent;
use dialer_bridge::CallEvents;
use dialer_core::domain::{CallStatus, Transition};
use dialer_core::metrics::Metrics;
use dialer_core::store::{CallReads, CallStore, MemoryStore};
use integration::traces::{self, Step};
use uuid::Uuid;

use integration::recording::RecordingPbx;

use crate::trace_replay::call_for;

/// A small deterministic generator, so a failing order can be reproduced from its seed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % bound.max(1)
    }
}

/// Replays `events` and returns the status after each one.
async fn statuses_along(trace: &traces::Trace, events: &[AriEvent]) -> Vec<CallStatus> {
    let store = Arc::new(MemoryStore::new());
    let bridge = CallEvents::new(
        store.clone(),
        Arc::new(RecordingPbx::default()),
        Arc::new(Metrics::new()),
    );
    let id = Uuid::parse_str(&trace.channel_id).expect("uuid");
    store
        .insert_call(&call_for(trace, id))
        .await
        .expect("insert");
    store
        .transition(id, &Transition::to(CallStatus::Dialing, Utc::now()))
        .await
        .expect("dialing");
    let mut seen = Vec::new();
    for event in events {
        bridge.handle(event).await.expect("memory store");
        seen.push(
            store
                .get_call(id)
                .await
                .expect("get")
                .expect("exists")
                .status,
        );
    }
    seen
}

fn parsed_events(trace: &traces::Trace) -> Vec<AriEvent> {
    trace
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Event(e) => AriEvent::parse(&e.to_string()).ok(),
            Step::Request { .. } => None,
        })
        .collect()
}

fn assert_monotonic(name: &str, seed: u64, seen: &[CallStatus]) {
    for pair in seen.windows(2) {
        let (before, after) = (pair[0], pair[1]);
        assert!(
            after == before || before.can_move_to(after),
            "{name} seed {seed}: {before} went to {after} ({seen:?})"
        );
    }
}

#[tokio::test]
async fn shuffled_and_duplicated_events_never_move_a_status_backwards() {
    for trace in traces::all()
        .iter()
        .filter(|t| t.name.starts_with("stasis_"))
    {
        let events = parsed_events(trace);
        for seed in 0..40u64 {
            let mut rng = Lcg(seed + 1);
            let mut mixed = events.clone();
            // Duplicate a few events, then shuffle everything.
            for _ in 0..3 {
                let pick = mixed[rng.next(mixed.len())].clone();
                mixed.push(pick);
            }
            for i in (1..mixed.len()).rev() {
                mixed.swap(i, rng.next(i + 1));
            }
            let seen = statuses_along(trace, &mixed).await;
            assert_monotonic(&trace.name, seed, &seen);
        }
    }
}

#[tokio::test]
async fn every_event_delivered_twice_gives_the_same_outcome() {
    for trace in traces::all()
        .iter()
        .filter(|t| t.name.starts_with("stasis_") && t.name != "stasis_cancel_while_ringing")
    {
        let events = parsed_events(trace);
        let once = statuses_along(trace, &events).await;
        let twice: Vec<AriEvent> = events.iter().flat_map(|e| [e.clone(), e.clone()]).collect();
        let doubled = statuses_along(trace, &twice).await;
        assert_eq!(once.last(), doubled.last(), "{}", trace.name);
    }
}

#[tokio::test]
async fn a_late_ringing_event_after_the_end_changes_nothing() {
    let trace = traces::load("stasis_continue_answered");
    let mut events = parsed_events(&trace);
    let ringing = events
        .iter()
        .find(
            |e| matches!(e, AriEvent::ChannelStateChange { channel } if channel.state == "Ringing"),
        )
        .cloned()
        .expect("a ringing event");
    events.push(ringing);
    let seen = statuses_along(&trace, &events).await;
    assert_eq!(seen.last(), Some(&CallStatus::Completed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_end_in_one_final_state_without_reversal() {
    let trace = traces::load("stasis_continue_answered");
    for round in 0..50 {
        let store = Arc::new(MemoryStore::new());
        let id = Uuid::new_v4();
        store
            .insert_call(&call_for(&trace, id))
            .await
            .expect("insert");
        let order = [
            CallStatus::Dialing,
            CallStatus::Ringing,
            CallStatus::Answered,
            CallStatus::Completed,
            CallStatus::Busy,
            CallStatus::Ringing,
            CallStatus::Dialing,
        ];
        let writers: Vec<_> = (0..32)
            .map(|i| {
                let store = store.clone();
                let status = order[(i + round) % order.len()];
                tokio::spawn(async move {
                    store
                        .transition(id, &Transition::to(status, Utc::now()))
                        .await
                        .expect("memory store")
                        .applied()
                        .then_some(status)
                })
            })
            .collect();
        let mut applied = Vec::new();
        for writer in writers {
            if let Some(status) = writer.await.expect("join") {
                applied.push(status);
            }
        }
        let finals: Vec<_> = applied.iter().filter(|s| s.is_final()).collect();
        assert_eq!(finals.len(), 1, "exactly one final write wins: {applied:?}");
        let stored = store.get_call(id).await.expect("get").expect("exists");
        assert_eq!(&stored.status, finals[0]);
    }
}
