//! The bridge loses no call: the event socket dropping in the middle of calls, two
//! bridges for one app, a store that fails for a while, a flood of events for unknown
//! channels and malformed frames. And it drives answered calls: playback in order, a
//! callee hanging up mid-playback, the maximum duration; and, restarted, those an earlier
//! bridge left waiting in the app, once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use dialer_core::domain::{Annotation, Call, CallPolicy, CallRequest, CallStatus, Transition};
use dialer_core::store::{
    CallBacklog, CallPage, CallReads, CallStore, IdempotencyBinding, MemoryStore, StoreError,
    TransitionResult,
};
use integration::api::Api;
use integration::bridge::{Bridged, event_source, until_final};
use integration::{ADMIN, Options, Session, session, start_local, wait_until};
use serde_json::{Value, json};
use tokio::sync::watch;
use uuid::Uuid;

const LIMIT: Duration = Duration::from_secs(20);

async fn wait_for_status(api: &Api, token: &str, id: &str, status: &str) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while api.status(token, id).await["status"] != status {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} never reached {status}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn an_answered_call_that_ends_while_the_socket_is_down_ends_completed() {
    let Session { server, api, token } = session(Options {
        time_scale: 0.1,
        ..Options::default()
    })
    .await;
    let media: Vec<&str> = vec!["sound:hello-world"; 10];
    // 001 answers after 1 s and hangs up 2 s later, in the middle of the playback.
    let id = api
        .call(
            &token,
            "+15550010001",
            json!({ "mode": "playback", "media": media }),
        )
        .await;
    wait_for_status(&api, &token, &id, "answered").await;
    let sim = server.pbx.as_ref().expect("sim");
    sim.drop_connections(Duration::from_millis(600));
    let (doc, _) = api.until_final(&token, &id, LIMIT).await;
    assert_eq!(doc["status"], "completed", "{doc}");
    assert!(
        doc["ended_at"].is_string() && doc["duration"].is_f64(),
        "{doc}"
    );
    assert!(server.health.connections() >= 2, "the bridge reconnected");
    server.stop().await;
}

#[tokio::test]
async fn a_ringing_call_goes_on_normally_after_a_short_drop() {
    let Session { server, api, token } = session(Options {
        time_scale: 1.0,
        ..Options::default()
    })
    .await;
    let id = api.call(&token, "+15550010001", json!({})).await;
    wait_for_status(&api, &token, &id, "ringing").await;
    server
        .pbx
        .as_ref()
        .expect("sim")
        .drop_connections(Duration::from_millis(100));
    let (doc, seen) = api.until_final(&token, &id, LIMIT).await;
    assert_eq!(doc["status"], "completed", "{doc}");
    assert!(seen.contains(&"answered".to_owned()), "{seen:?}");
    assert!(doc["answered_at"].is_string());
    server.stop().await;
}

#[tokio::test]
async fn a_call_that_rings_out_while_the_bridge_is_away_ends_no_answer() {
    let Session { server, api, token } = session(Options {
        time_scale: 1.0,
        ..Options::default()
    })
    .await;
    let id = api
        .call(&token, "+15550030001", json!({ "timeout": 1000 }))
        .await;
    wait_for_status(&api, &token, &id, "ringing").await;
    server
        .pbx
        .as_ref()
        .expect("sim")
        .drop_connections(Duration::from_millis(1500));
    let (doc, _) = api.until_final(&token, &id, LIMIT).await;
    assert_eq!(doc["status"], "no_answer", "{doc}");
    server.stop().await;
}

#[tokio::test]
async fn a_busy_call_whose_end_is_lost_still_ends_busy() {
    let Session { server, api, token } = session(Options {
        time_scale: 1.0,
        ..Options::default()
    })
    .await;
    // The bridge saw Dial BUSY but not the ChannelDestroyed: reconciliation decides from
    // the dialstatus on the record.
    let id = Uuid::new_v4();
    let call = CallRequest {
        phone_number: "+15550020001".into(),
        ..CallRequest::default()
    }
    .validate(
        &CallPolicy::default(),
        ADMIN.0,
        id,
        dialer_core::domain::now(),
    )
    .expect("valid");
    server.store.insert_call(&call).await.expect("insert");
    server
        .store
        .transition(
            id,
            &Transition::to(CallStatus::Dialing, dialer_core::domain::now()),
        )
        .await
        .expect("dialing");
    server
        .store
        .annotate(id, &Annotation::DialStatus("BUSY".into()))
        .await
        .expect("note");
    let sim = server.pbx.as_ref().expect("sim");
    // A reconnect reconciles: the channel does not exist on the PBX.
    tokio::time::sleep(Duration::from_millis(100)).await;
    sim.drop_connections(Duration::from_millis(50));
    let (doc, _) = api.until_final(&token, &id.to_string(), LIMIT).await;
    assert_eq!(doc["status"], "busy", "{doc}");
    server.stop().await;
}

#[tokio::test]
async fn two_bridges_for_one_app_keep_calls_right_without_a_reconnect_storm() {
    let server = start_local(Options {
        time_scale: 0.05,
        ..Options::default()
    })
    .await;
    let (second, second_health) = event_source(server.store.clone(), server.ari_url.clone()).await;
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(second.run(stopped));
    let api = Api::new(server.api_url());
    let token = api.token(ADMIN.0, ADMIN.1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut calls = Vec::new();
    for (number, status) in [
        ("+15550020001", "busy"),
        ("+15550010001", "completed"),
        ("+15550060001", "failed"),
    ] {
        loop {
            let response = api.interaction(&token, number, json!({})).await;
            if response.status() == 200 {
                let body: Value = response.json().await.expect("json");
                calls.push((body["call_id"].as_str().expect("id").to_owned(), status));
                break;
            }
            // The app is between two bridges for an instant: try again.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for (id, status) in &calls {
        let (doc, _) = api.until_final(&token, id, LIMIT).await;
        assert_eq!(doc["status"], *status, "{doc}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let connections = server.health.connections() + second_health.connections();
    // With a 500 ms stand-by after being replaced, two bridges connect a few times a
    // second at most; a storm would be hundreds.
    assert!(
        connections <= 14,
        "{connections} connections in about 2.5 s"
    );
    let _ = stop.send(true);
    let _ = task.await;
    server.stop().await;
}

#[tokio::test]
async fn a_flood_of_foreign_events_and_malformed_frames_changes_nothing() {
    let server = start_local(Options {
        time_scale: 0.05,
        ..Options::default()
    })
    .await;
    let sim = server.pbx.as_ref().expect("sim");
    let garbage = [
        "{",
        "[]",
        "null",
        "\"text\"",
        "{\"type\": 5}",
        "{\"type\":\"Dial\"}",
        "\u{0}\u{1}",
    ];
    for frame in garbage {
        assert!(sim.inject("dialer", frame));
    }
    for i in 0..2_000 {
        let id = if i % 2 == 0 {
            Uuid::new_v4().to_string()
        } else {
            format!("{};2", Uuid::new_v4())
        };
        let frame = json!({
            "type": if i % 3 == 0 { "ChannelDestroyed" } else { "ChannelStateChange" },
            "cause": 16, "cause_txt": "Normal Clearing",
            "channel": { "id": id, "name": "PJSIP/x", "state": "Up" },
        });
        sim.inject("dialer", &frame.to_string());
    }
    let api = Api::new(server.api_url());
    let token = api.token(ADMIN.0, ADMIN.1).await;
    let (_, doc) = api.call_to_end(&token, "+15550020001", json!({})).await;
    assert_eq!(doc["status"], "busy");
    assert_eq!(server.health.connections(), 1, "no reconnect");
    assert_eq!(server.store.active_calls().await.expect("active").len(), 0);
    let list: Value = api
        .get(&token, "/api/v2/calls?limit=100")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        list["calls"].as_array().map(Vec::len),
        Some(1),
        "nothing but our call was stored"
    );
    assert_eq!(
        server
            .metrics
            .value("dialer_bridge_events_total", &[("type", "malformed")]),
        garbage.len() as f64
    );
    server.stop().await;
}

#[tokio::test]
async fn playback_plays_every_item_in_order_then_hangs_up() {
    let Session { server, api, token } = session(Options {
        time_scale: 0.05,
        ..Options::default()
    })
    .await;
    let media = ["sound:one", "sound:two", "recording:three", "digits:42"];
    // 008 answers at once and would stay up for a minute: only our hang-up ends it.
    let (id, doc) = api
        .call_to_end(
            &token,
            "+15550080001",
            json!({ "mode": "playback", "media": media }),
        )
        .await;
    assert_eq!(doc["status"], "completed", "{doc}");
    assert_eq!(server.pbx.as_ref().expect("sim").played(&id), media);
    let duration = doc["duration"].as_f64().expect("duration");
    assert!(
        (0.15..3.0).contains(&duration),
        "four items of 50 ms, then the hang-up: {duration}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_callee_hanging_up_in_the_middle_of_playback_ends_completed() {
    let Session { server, api, token } = session(Options {
        time_scale: 0.05,
        ..Options::default()
    })
    .await;
    let media = vec!["sound:hello-world"; 10];
    let (id, doc) = api
        .call_to_end(
            &token,
            "+15550010001",
            json!({ "mode": "playback", "media": media }),
        )
        .await;
    assert_eq!(doc["status"], "completed", "{doc}");
    let played = server.pbx.as_ref().expect("sim").played(&id);
    assert!(
        !played.is_empty() && played.len() < 10,
        "cut short: {played:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_maximum_duration_hangs_up() {
    let Session { server, api, token } = session(Options {
        time_scale: 1.0,
        ..Options::default()
    })
    .await;
    // 008 in playback with a long list would stay up for 20 s; the limit ends it at 1 s.
    let media = vec!["sound:hello-world"; 20];
    let (_, doc) = api
        .call_to_end(
            &token,
            "+15550080001",
            json!({ "mode": "playback", "media": media, "max_duration": 1000 }),
        )
        .await;
    assert_eq!(doc["status"], "completed", "{doc}");
    let duration = doc["duration"].as_f64().expect("duration");
    assert!((0.9..3.0).contains(&duration), "{duration}");
    server.stop().await;
}

/// A store that refuses every call write while `down` is set.
struct FlakyStore {
    inner: MemoryStore,
    down: AtomicBool,
}

impl FlakyStore {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::Relaxed) {
            Err(StoreError::Unavailable("simulated outage".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl CallReads for FlakyStore {
    async fn get_call(&self, id: Uuid) -> Result<Option<Call>, StoreError> {
        self.check()?;
        self.inner.get_call(id).await
    }

    async fn calls_of(
        &self,
        o: &str,
        b: Option<dialer_core::store::PageCursor>,
        l: usize,
    ) -> Result<CallPage, StoreError> {
        self.check()?;
        self.inner.calls_of(o, b, l).await
    }
}

#[async_trait]
impl CallStore for FlakyStore {
    async fn insert_call(&self, call: &Call) -> Result<(), StoreError> {
        self.check()?;
        self.inner.insert_call(call).await
    }

    async fn transition(
        &self,
        id: Uuid,
        change: &Transition,
    ) -> Result<TransitionResult, StoreError> {
        self.check()?;
        self.inner.transition(id, change).await
    }

    async fn annotate(&self, id: Uuid, note: &Annotation) -> Result<Option<Call>, StoreError> {
        self.check()?;
        self.inner.annotate(id, note).await
    }

    async fn claim_idempotency_key(
        &self,
        o: &str,
        k: &str,
        binding: &IdempotencyBinding,
        ttl: i64,
    ) -> Result<Option<IdempotencyBinding>, StoreError> {
        self.check()?;
        self.inner.claim_idempotency_key(o, k, binding, ttl).await
    }

    async fn idempotency_binding(
        &self,
        o: &str,
        k: &str,
    ) -> Result<Option<IdempotencyBinding>, StoreError> {
        self.check()?;
        self.inner.idempotency_binding(o, k).await
    }
}

#[async_trait]
impl CallBacklog for FlakyStore {
    async fn active_calls(&self) -> Result<Vec<Call>, StoreError> {
        self.check()?;
        self.inner.active_calls().await
    }

    async fn record_delivery(
        &self,
        id: Uuid,
        sequence: u32,
        delivery: &dialer_core::domain::webhook::Delivery,
    ) -> Result<Option<Call>, StoreError> {
        self.check()?;
        self.inner.record_delivery(id, sequence, delivery).await
    }

    async fn claim_due_calls(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        lease: chrono::Duration,
        limit: usize,
    ) -> Result<Vec<Uuid>, StoreError> {
        self.check()?;
        self.inner.claim_due_calls(now, lease, limit).await
    }

    async fn release_call(&self, id: Uuid) -> Result<(), StoreError> {
        self.check()?;
        self.inner.release_call(id).await
    }

    async fn due_calls(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<dialer_core::store::QueuedCall>, StoreError> {
        self.check()?;
        self.inner.due_calls(now, limit).await
    }

    async fn due_calls_of(
        &self,
        owner: &str,
        now: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<dialer_core::store::QueuedCall>, StoreError> {
        self.check()?;
        self.inner.due_calls_of(owner, now, limit).await
    }
}

#[tokio::test]
async fn a_store_that_fails_for_a_while_loses_no_status() {
    let store = Arc::new(FlakyStore {
        inner: MemoryStore::new(),
        down: AtomicBool::new(false),
    });
    let bridged = Bridged::start(store.clone(), 0.05).await;
    let calls = bridged.calls(store.clone());
    let mut placed = Vec::new();
    for (number, status) in [
        ("+15550020001", CallStatus::Busy),
        ("+15550010001", CallStatus::Completed),
        ("+15550040001", CallStatus::Failed),
        ("+15550070001", CallStatus::Completed),
    ] {
        let request = CallRequest {
            phone_number: number.into(),
            ..CallRequest::default()
        };
        let call = calls
            .place_call("alice", request, None)
            .await
            .expect("placed");
        placed.push((call.id, status));
    }
    store.down.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        bridged.health.queue_depth() > 0,
        "events wait in the queue while the store is down"
    );
    store.down.store(false, Ordering::Relaxed);
    for (id, status) in &placed {
        assert_eq!(until_final(&store.inner, *id, LIMIT).await.status, *status);
    }
    wait_until(LIMIT, || bridged.health.queue_depth() == 0).await;
    bridged.stop().await;
}

#[tokio::test]
async fn the_sweeper_finishes_calls_that_outlived_any_possible_end() {
    let server = start_local(Options::default()).await;
    let id = Uuid::new_v4();
    let mut call = CallRequest {
        phone_number: "+15550030001".into(),
        timeout: Some(1000),
        max_duration: Some(1000),
        ..CallRequest::default()
    }
    .validate(
        &CallPolicy::default(),
        ADMIN.0,
        id,
        dialer_core::domain::now(),
    )
    .expect("valid");
    call.created_at -= chrono::Duration::minutes(5);
    server.store.insert_call(&call).await.expect("insert");
    server
        .store
        .transition(
            id,
            &Transition::to(CallStatus::Ringing, dialer_core::domain::now()),
        )
        .await
        .expect("ringing");
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let call = server
            .store
            .get_call(id)
            .await
            .expect("get")
            .expect("exists");
        if call.status.is_final() {
            assert_eq!(call.status, CallStatus::Failed, "{call:?}");
            assert_eq!(
                call.failure_reason.map(|r| r.to_text()).as_deref(),
                Some("outcome_lost")
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never swept");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_writes_to_dynamodb_as_to_any_store() {
    let (store, _, _) = integration::aws::dynamo_store().await;
    bridge_on(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_writes_to_postgres_as_to_any_store() {
    let (store, _schema) = integration::pg::pg_store().await;
    bridge_on(Arc::new(store)).await;
}

async fn bridge_on(store: Arc<dyn dialer_core::store::Store>) {
    let bridged = Bridged::start(store.clone(), 0.05).await;
    let calls = bridged.calls(store.clone());
    let mut placed = Vec::new();
    for (number, status) in [
        ("+15550010001", CallStatus::Completed),
        ("+15550020001", CallStatus::Busy),
        ("+15550050001", CallStatus::Failed),
    ] {
        let request = CallRequest {
            phone_number: number.into(),
            ..CallRequest::default()
        };
        placed.push((
            calls
                .place_call("alice", request, None)
                .await
                .expect("placed")
                .id,
            status,
        ));
    }
    for (id, status) in placed {
        let call = until_final(&*store, id, LIMIT).await;
        assert_eq!(call.status, status, "{call:?}");
        assert!(call.ended_at.is_some());
    }
    bridged.stop().await;
}

#[tokio::test]
async fn on_shutdown_the_bridge_writes_everything_it_had_queued() {
    let store = Arc::new(FlakyStore {
        inner: MemoryStore::new(),
        down: AtomicBool::new(false),
    });
    let bridged = Bridged::start(store.clone(), 0.05).await;
    let calls = bridged.calls(store.clone());
    let request = CallRequest {
        phone_number: "+15550020001".into(),
        ..CallRequest::default()
    };
    let id = calls
        .place_call("alice", request, None)
        .await
        .expect("placed")
        .id;
    store.down.store(true, Ordering::Relaxed);
    wait_until(LIMIT, || bridged.health.queue_depth() > 0).await;
    // The store comes back as the stop arrives: the stop must wait for the queue.
    store.down.store(false, Ordering::Relaxed);
    let health = bridged.health.clone();
    bridged.stop().await;
    assert_eq!(health.queue_depth(), 0, "flushed before exiting");
    let call = store
        .inner
        .get_call(id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(call.status, CallStatus::Busy, "{call:?}");
}

/// An answered call, as a record, whose channel the PBX holds in our app; and the bridge
/// core of a process that has not driven it (a restarted one).
async fn answered_call_waiting_in_the_app(
    request: CallRequest,
    playing: bool,
) -> (
    Arc<MemoryStore>,
    Arc<integration::recording::RecordingPbx>,
    dialer_bridge::CallEvents,
    Uuid,
) {
    let store = Arc::new(MemoryStore::new());
    let pbx = Arc::new(integration::recording::RecordingPbx::holding(
        dialer_core::pbx::ChannelView {
            state: "Up".into(),
            in_app: true,
        },
        playing,
    ));
    let events = dialer_bridge::CallEvents::new(
        store.clone(),
        pbx.clone(),
        Arc::new(dialer_core::metrics::Metrics::new()),
    );
    let id = Uuid::new_v4();
    let policy = CallPolicy {
        dial_endpoint: "Local/{number}@test-pstn".into(),
        ..CallPolicy::default()
    };
    let call = request
        .validate(&policy, ADMIN.0, id, dialer_core::domain::now())
        .expect("valid");
    store.insert_call(&call).await.expect("insert");
    for status in [CallStatus::Dialing, CallStatus::Answered] {
        store
            .transition(id, &Transition::to(status, dialer_core::domain::now()))
            .await
            .expect("transition");
    }
    (store, pbx, events, id)
}

async fn reconcile_now(events: &dialer_bridge::CallEvents) -> dialer_bridge::core::Reconciled {
    let connected_at = chrono::Utc::now() + chrono::Duration::seconds(1);
    let reconciled = events
        .reconcile(connected_at, Duration::ZERO, Duration::ZERO)
        .await
        .expect("reconciled");
    // Call control runs on spawned tasks; let them finish.
    tokio::time::sleep(Duration::from_millis(50)).await;
    reconciled
}

#[tokio::test]
async fn a_restarted_bridge_continues_an_answered_ivr_call_left_waiting_and_only_once() {
    let request = CallRequest {
        phone_number: "+15550090001".into(),
        max_duration: Some(60_000),
        ..CallRequest::default()
    };
    let (_store, pbx, events, _) = answered_call_waiting_in_the_app(request, false).await;
    assert_eq!(reconcile_now(&events).await.resumed, 1);
    assert_eq!(pbx.actions(), vec!["continue outbound-ivr s 1"]);
    // A reconnect of the same process: it drove the call already.
    assert_eq!(reconcile_now(&events).await.resumed, 0);
    assert_eq!(pbx.actions(), vec!["continue outbound-ivr s 1"]);
}

#[tokio::test]
async fn a_restarted_bridge_plays_a_waiting_call_s_media_unless_its_playback_still_runs() {
    let request = || CallRequest {
        phone_number: "+15550090001".into(),
        mode: Some("playback".into()),
        media: Some(vec!["sound:hello-world".into()]),
        ..CallRequest::default()
    };
    let (_, pbx, events, id) = answered_call_waiting_in_the_app(request(), false).await;
    assert_eq!(reconcile_now(&events).await.resumed, 1);
    assert_eq!(
        pbx.actions(),
        vec![format!("play {id}-p1 sound:hello-world")]
    );

    let (_, pbx, events, _) = answered_call_waiting_in_the_app(request(), true).await;
    assert_eq!(reconcile_now(&events).await.resumed, 0);
    assert!(pbx.actions().is_empty(), "{:?}", pbx.actions());
}

#[tokio::test]
async fn a_restarted_bridge_hangs_up_a_canceled_call_left_waiting_instead_of_driving_it() {
    let request = CallRequest {
        phone_number: "+15550090001".into(),
        ..CallRequest::default()
    };
    let (store, pbx, events, id) = answered_call_waiting_in_the_app(request, false).await;
    store
        .annotate(id, &Annotation::CancelRequested(dialer_core::domain::now()))
        .await
        .expect("annotate");
    assert_eq!(reconcile_now(&events).await.resumed, 0);
    assert_eq!(pbx.actions(), vec!["hangup"]);
}
