//! One contract for every store: the in-process store, PostgreSQL and DynamoDB (on
//! moto) must behave the same in every respect the rest of the product relies on.

use std::sync::Arc;

use chrono::Duration;
use dialer_core::domain::schedule::{RetryRequest, WindowRequest};
use dialer_core::domain::webhook::{Delivery, EventType, SendOutcome};
use dialer_core::domain::{
    Annotation, Attempt, Call, CallPolicy, CallRequest, CallStatus, CallingWindow, FailureReason,
    Pacing, RetryPolicy, Slot, Transition, User, UserLimits, now,
};
use dialer_core::store::{
    IdempotencyBinding, PACING_TRUNK, QueuedCall, Store, StoreError, TransitionResult, Versioned,
    pacing_user_key,
};
use uuid::Uuid;

fn new_call(owner: &str) -> Call {
    CallRequest {
        phone_number: "+15550010001".into(),
        caller_id: Some("MyCompany <+15550000000>".into()),
        variables: Some([("CUSTOMER".to_owned(), "42".to_owned())].into()),
        ..CallRequest::default()
    }
    .validate(&CallPolicy::default(), owner, Uuid::new_v4(), now())
    .expect("valid")
}

/// A call with a webhook, as the service writes it: with its first event (`pending`),
/// when the filter asks for that one. `events`: the filter; `None` for every event.
fn call_with_webhook(owner: &str, events: Option<&[&str]>) -> Call {
    let mut call = CallRequest {
        phone_number: "+15550010001".into(),
        status_callback: Some("https://hooks.example.com/dialer?tenant=7".into()),
        status_callback_events: events.map(|names| names.iter().map(|&n| n.into()).collect()),
        ..CallRequest::default()
    }
    .validate(&CallPolicy::default(), owner, Uuid::new_v4(), now())
    .expect("valid");
    call.record_created_event();
    call
}

fn without_events(call: &Call) -> Call {
    Call {
        events: Vec::new(),
        ..call.clone()
    }
}

fn to(status: CallStatus) -> Transition {
    Transition::to(status, now())
}

async fn insert(store: &dyn Store, call: &Call) {
    store.insert_call(call).await.expect("insert");
}

pub async fn a_call_reads_back_exactly_as_written(store: Arc<dyn Store>) {
    let call = new_call("alice");
    insert(&*store, &call).await;
    assert_eq!(
        store.get_call(call.id).await.expect("get"),
        Some(call.clone())
    );
    assert!(matches!(
        store.insert_call(&call).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.get_call(Uuid::new_v4()).await.expect("get"), None);
}

pub async fn transitions_only_move_forward(store: Arc<dyn Store>) {
    let call = new_call("alice");
    insert(&*store, &call).await;
    let ringing = store
        .transition(call.id, &to(CallStatus::Ringing))
        .await
        .expect("write");
    let TransitionResult::Applied(after) = ringing else {
        panic!("ringing applies: {ringing:?}")
    };
    assert_eq!(after.status, CallStatus::Ringing);
    assert!(after.dialed_at.is_some() && after.ringing_at.is_some());
    let back = store
        .transition(call.id, &to(CallStatus::Dialing))
        .await
        .expect("write");
    assert!(
        matches!(&back, TransitionResult::Refused(c) if c.status == CallStatus::Ringing),
        "{back:?}"
    );
    let same = store
        .transition(call.id, &to(CallStatus::Ringing))
        .await
        .expect("write");
    assert!(
        matches!(same, TransitionResult::Refused(_)),
        "a duplicate is refused"
    );
    let done = to(CallStatus::Busy)
        .with_cause(Some(17), Some("User busy".into()))
        .with_dialstatus(Some("BUSY".into()));
    let busy = store.transition(call.id, &done).await.expect("write");
    let TransitionResult::Applied(busy) = busy else {
        panic!("busy applies")
    };
    assert_eq!(
        (
            busy.cause,
            busy.cause_txt.as_deref(),
            busy.dialstatus.as_deref()
        ),
        (Some(17), Some("User busy"), Some("BUSY"))
    );
    assert!(busy.ended_at.is_some());
    for late in [
        CallStatus::Answered,
        CallStatus::Completed,
        CallStatus::Failed,
    ] {
        let result = store.transition(call.id, &to(late)).await.expect("write");
        assert!(
            matches!(&result, TransitionResult::Refused(c) if c.status == CallStatus::Busy),
            "{late}: {result:?}"
        );
    }
    assert_eq!(
        store
            .transition(Uuid::new_v4(), &to(CallStatus::Dialing))
            .await
            .expect("write"),
        TransitionResult::NotFound
    );
}

pub async fn a_store_applies_transitions_as_the_domain_does(store: Arc<dyn Store>) {
    let mut expected = new_call("alice");
    insert(&*store, &expected).await;
    let steps = [
        to(CallStatus::Dialing),
        to(CallStatus::Answered).with_dialstatus(Some("ANSWER".into())),
        to(CallStatus::Completed).with_cause(Some(16), Some("Normal Clearing".into())),
    ];
    for step in &steps {
        assert!(step.apply(&mut expected));
        let stored = store.transition(expected.id, step).await.expect("write");
        assert_eq!(stored, TransitionResult::Applied(expected.clone()));
    }
    let mut refused = new_call("alice");
    insert(&*store, &refused).await;
    let failed = Transition::not_dialed(FailureReason::PbxUnreachable, now());
    assert!(failed.apply(&mut refused));
    assert_eq!(
        store.transition(refused.id, &failed).await.expect("write"),
        TransitionResult::Applied(refused.clone())
    );
    assert_eq!(refused.dialed_at, None);
}

pub async fn annotations_apply_only_while_active(store: Arc<dyn Store>) {
    let call = new_call("alice");
    insert(&*store, &call).await;
    store
        .annotate(call.id, &Annotation::DialStatus("RINGING".into()))
        .await
        .expect("note");
    store
        .annotate(call.id, &Annotation::Dtmf('1'))
        .await
        .expect("note");
    let noted = store
        .annotate(call.id, &Annotation::Dtmf('#'))
        .await
        .expect("note")
        .expect("applied");
    assert_eq!(
        (noted.dtmf.as_str(), noted.dialstatus.as_deref()),
        ("1#", Some("RINGING"))
    );
    assert!(
        store
            .annotate(call.id, &Annotation::CancelRequested(now()))
            .await
            .expect("note")
            .is_some()
    );
    assert!(
        store
            .annotate(call.id, &Annotation::CancelRequested(now()))
            .await
            .expect("note")
            .is_none(),
        "once"
    );
    store
        .transition(call.id, &to(CallStatus::Canceled))
        .await
        .expect("write");
    assert!(
        store
            .annotate(call.id, &Annotation::Dtmf('2'))
            .await
            .expect("note")
            .is_none()
    );
    assert_eq!(
        store
            .get_call(call.id)
            .await
            .expect("get")
            .expect("exists")
            .dtmf,
        "1#"
    );
    assert!(
        store
            .annotate(Uuid::new_v4(), &Annotation::Dtmf('1'))
            .await
            .expect("note")
            .is_none()
    );
}

pub async fn racing_writers_leave_one_final_state(store: Arc<dyn Store>) {
    let call = new_call("alice");
    insert(&*store, &call).await;
    let statuses = [
        CallStatus::Dialing,
        CallStatus::Ringing,
        CallStatus::Answered,
        CallStatus::Completed,
        CallStatus::NoAnswer,
        CallStatus::Failed,
        CallStatus::Busy,
        CallStatus::Canceled,
    ];
    let writers: Vec<_> = (0..24)
        .map(|i| {
            let store = store.clone();
            let status = statuses[i % statuses.len()];
            tokio::spawn(async move {
                let result = store.transition(call.id, &to(status)).await.expect("write");
                result.applied().then_some(status)
            })
        })
        .collect();
    let mut applied = Vec::new();
    for writer in writers {
        applied.extend(writer.await.expect("join"));
    }
    let finals: Vec<_> = applied.iter().filter(|s| s.is_final()).collect();
    assert_eq!(finals.len(), 1, "one final write wins: {applied:?}");
    let stored = store.get_call(call.id).await.expect("get").expect("exists");
    assert_eq!(&stored.status, finals[0]);
    assert!(stored.ended_at.is_some());
}

pub async fn active_calls_are_those_not_final(store: Arc<dyn Store>) {
    let owner = format!("owner-{}", Uuid::new_v4().simple());
    let ringing = new_call(&owner);
    let ended = new_call(&owner);
    let waiting = queued_call(&owner, now(), now() + Duration::hours(1));
    for call in [&ringing, &ended, &waiting] {
        insert(&*store, call).await;
    }
    store
        .transition(ringing.id, &to(CallStatus::Ringing))
        .await
        .expect("write");
    store
        .transition(ended.id, &to(CallStatus::Busy))
        .await
        .expect("write");
    let ids = |calls: Vec<Call>| calls.iter().map(|c| c.id).collect::<Vec<Uuid>>();
    let active = ids(store.active_calls().await.expect("active"));
    assert!(active.contains(&ringing.id));
    assert!(active.contains(&waiting.id), "queued is not final");
    assert!(!active.contains(&ended.id));
    // Split in two: the calls in progress (no queued ones) and the queue.
    let in_progress = ids(store.calls_in_progress().await.expect("in progress"));
    assert!(in_progress.contains(&ringing.id));
    assert!(!in_progress.contains(&ended.id), "final");
    assert!(!in_progress.contains(&waiting.id), "queued");
    let queued = store.queued_calls().await.expect("queued");
    let mine: Vec<&QueuedCall> = queued.iter().filter(|q| q.owner == owner).collect();
    assert_eq!(
        mine,
        [&QueuedCall::of(&waiting).expect("queued")],
        "the queued call alone, as the queue lists it"
    );
}

pub async fn a_users_calls_list_newest_first_in_pages(store: Arc<dyn Store>) {
    let owner = format!("owner-{}", Uuid::new_v4().simple());
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut call = new_call(&owner);
        call.created_at = now() - Duration::seconds(100 - i);
        insert(&*store, &call).await;
        ids.push(call.id);
    }
    insert(&*store, &new_call("someone-else")).await;
    ids.reverse();
    let first = store.calls_of(&owner, None, 2).await.expect("page");
    assert_eq!(
        first.calls.iter().map(|c| c.id).collect::<Vec<_>>(),
        ids[..2]
    );
    let second = store.calls_of(&owner, first.next, 2).await.expect("page");
    assert_eq!(
        second.calls.iter().map(|c| c.id).collect::<Vec<_>>(),
        ids[2..4]
    );
    let last = store.calls_of(&owner, second.next, 2).await.expect("page");
    assert_eq!(
        last.calls.iter().map(|c| c.id).collect::<Vec<_>>(),
        ids[4..]
    );
    assert_eq!(last.next, None);
}

/// Calls made in bursts share their millisecond: whatever the page size, and while
/// newer calls keep arriving, paging returns every older call exactly once, in order.
/// Random instances, reproducible by seed.
pub async fn paging_never_skips_or_repeats_a_call(store: Arc<dyn Store>) {
    for seed in 0..4u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let owner = format!("pager-{seed}-{}", Uuid::new_v4().simple());
        let base = now() - Duration::seconds(600);
        let mut existing = Vec::new();
        for _ in 0..rng.usize(20..45) {
            let mut call = new_call(&owner);
            // Few distinct milliseconds: many calls per millisecond.
            call.created_at = base + Duration::milliseconds(rng.i64(0..4));
            insert(&*store, &call).await;
            existing.push(call);
        }
        for limit in [1, 2, 3, 7, rng.usize(4..12)] {
            let mut seen = Vec::new();
            let mut before = None;
            loop {
                let page = store.calls_of(&owner, before, limit).await.expect("page");
                assert!(page.calls.len() <= limit);
                seen.extend(page.calls.iter().map(|c| c.id));
                // A call made while paging is newer than any page still to come.
                let mut newer = new_call(&owner);
                newer.created_at = now();
                insert(&*store, &newer).await;
                match page.next {
                    Some(next) => before = Some(next),
                    None => break,
                }
            }
            // Newest first by creation time; within one millisecond each store keeps
            // an order of its own, so compare those as sets.
            let older: Vec<&Call> = seen
                .iter()
                .filter_map(|id| existing.iter().find(|c| c.id == *id))
                .collect();
            assert!(
                older.windows(2).all(|w| w[0].created_at >= w[1].created_at),
                "seed {seed}, limit {limit}: not newest first"
            );
            let mut got: Vec<Uuid> = older.iter().map(|c| c.id).collect();
            let mut expected: Vec<Uuid> = existing.iter().map(|c| c.id).collect();
            got.sort();
            expected.sort();
            assert_eq!(
                got, expected,
                "seed {seed}, limit {limit}: skipped or repeated"
            );
            let mut unique = seen.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(
                unique.len(),
                seen.len(),
                "seed {seed}, limit {limit}: a call twice"
            );
        }
    }
}

/// What the bridge learns beside the status: an unconfirmed originate (once, while
/// active) and media the PBX could not play (each item once, sorted, even after the end).
pub async fn unconfirmed_originates_and_failed_media_are_kept(store: Arc<dyn Store>) {
    let call = new_call("alice");
    insert(&*store, &call).await;
    let at = now();
    let noted = store
        .annotate(call.id, &Annotation::OriginateUnconfirmed(at))
        .await
        .expect("annotate")
        .expect("applied");
    assert_eq!(noted.originate_unconfirmed_at, Some(at));
    assert!(
        store
            .annotate(call.id, &Annotation::OriginateUnconfirmed(now()))
            .await
            .expect("annotate")
            .is_none(),
        "recorded once"
    );
    for media in ["sound:zz-missing", "sound:aa-missing"] {
        store
            .annotate(call.id, &Annotation::MediaFailed(media.into()))
            .await
            .expect("annotate")
            .expect("applied");
    }
    assert!(
        store
            .annotate(call.id, &Annotation::MediaFailed("sound:aa-missing".into()))
            .await
            .expect("annotate")
            .is_none(),
        "each item once"
    );
    store
        .transition(call.id, &to(CallStatus::Completed))
        .await
        .expect("end");
    let after_end = store
        .annotate(call.id, &Annotation::MediaFailed("sound:late".into()))
        .await
        .expect("annotate")
        .expect("applied after the end too");
    assert_eq!(
        after_end.media_failed,
        vec!["sound:aa-missing", "sound:late", "sound:zz-missing"]
    );
    let read = store.get_call(call.id).await.expect("get").expect("exists");
    assert_eq!(read, after_end);
}

pub async fn users_are_created_once_and_updated_in_place(store: Arc<dyn Store>) {
    let name = format!("user-{}", Uuid::new_v4().simple());
    let user = User {
        username: name.clone(),
        password_hash: "$2b$04$hash".into(),
        disabled: false,
        token_version: 0,
        webhook_url: None,
        webhook_secret: None,
        previous_webhook_secret: None,
        limits: UserLimits::default(),
    };
    store.insert_user(&user).await.expect("insert");
    assert!(matches!(
        store.insert_user(&user).await,
        Err(StoreError::Conflict)
    ));
    let disabled = User {
        disabled: true,
        ..user.clone()
    };
    assert!(store.update_user(&disabled).await.expect("update"));
    assert_eq!(store.get_user(&name).await.expect("get"), Some(disabled));
    let ghost = User {
        username: "ghost-user".into(),
        ..user
    };
    assert!(!store.update_user(&ghost).await.expect("update"));
    assert_eq!(store.get_user("ghost-user").await.expect("get"), None);
    assert!(
        store
            .list_users()
            .await
            .expect("list")
            .iter()
            .any(|u| u.username == name)
    );
}

pub async fn an_idempotency_key_binds_once_per_owner(store: Arc<dyn Store>) {
    let binding = |fingerprint: &str| IdempotencyBinding {
        call_id: Uuid::new_v4(),
        fingerprint: fingerprint.to_owned(),
    };
    let (first, second) = (binding("request-a"), binding("request-b"));
    let claim = |owner: &'static str, key: &'static str, binding: IdempotencyBinding, ttl| {
        let store = store.clone();
        async move {
            store
                .claim_idempotency_key(owner, key, &binding, ttl)
                .await
                .expect("claim")
        }
    };
    assert_eq!(claim("alice", "key-1", first.clone(), 60).await, None);
    assert_eq!(
        claim("alice", "key-1", second.clone(), 60).await,
        Some(first.clone()),
        "the first binding, with the fingerprint of its request"
    );
    assert_eq!(claim("bob", "key-1", second.clone(), 60).await, None);
    assert!(
        store.get_call(first.call_id).await.expect("get").is_none(),
        "a binding is not a call"
    );
    let bound = |owner: &'static str, key: &'static str| {
        let store = store.clone();
        async move { store.idempotency_binding(owner, key).await.expect("read") }
    };
    assert_eq!(bound("alice", "key-1").await, Some(first));
    assert_eq!(bound("bob", "key-1").await, Some(second.clone()));
    assert_eq!(bound("alice", "key-2").await, None, "a read binds nothing");
    assert_eq!(
        claim("alice", "key-2", second.clone(), 60).await,
        None,
        "the key read before is still free"
    );
    assert_eq!(claim("carol", "key-1", binding("x"), -5).await, None);
    assert_eq!(bound("carol", "key-1").await, None, "a lapsed binding");
    let fresh = binding("y");
    assert_eq!(
        claim("carol", "key-1", fresh.clone(), 60).await,
        None,
        "a lapsed binding is taken over"
    );
    assert_eq!(bound("carol", "key-1").await, Some(fresh));
}

pub async fn a_users_token_version_is_kept(store: Arc<dyn Store>) {
    let name = format!("user-{}", Uuid::new_v4().simple());
    let mut user = User::new(name.clone(), "$2b$04$hash");
    store.insert_user(&user).await.expect("insert");
    assert_eq!(
        store
            .get_user(&name)
            .await
            .expect("get")
            .map(|u| u.token_version),
        Some(0)
    );
    user.token_version = 7;
    assert!(store.update_user(&user).await.expect("update"));
    assert_eq!(
        store.get_user(&name).await.expect("get"),
        Some(user.clone())
    );
    assert!(
        store
            .list_users()
            .await
            .expect("list")
            .iter()
            .any(|u| u.username == name && u.token_version == 7)
    );
}

pub async fn login_failures_count_up_lapse_and_clear(store: Arc<dyn Store>) {
    let key = format!("user#{}", Uuid::new_v4().simple());
    let window = chrono::Duration::minutes(15);
    let now = chrono::Utc::now();
    assert_eq!(store.failures(&key, now, window).await.expect("read"), None);
    for expected in 1..=3 {
        let count = store
            .record_failure(&key, now, window)
            .await
            .expect("record");
        assert_eq!(count.failures, expected);
    }
    let read = store
        .failures(&key, now, window)
        .await
        .expect("read")
        .expect("a live count");
    assert_eq!(read.failures, 3);
    assert!(
        (read.last_at - now).num_milliseconds().abs() <= 1,
        "{read:?}"
    );
    // Read a window later, the count has lapsed; the next failure starts again.
    let later = now + window + chrono::Duration::seconds(1);
    assert_eq!(
        store.failures(&key, later, window).await.expect("read"),
        None
    );
    let restarted = store
        .record_failure(&key, later, window)
        .await
        .expect("record");
    assert_eq!(restarted.failures, 1);
    store.clear_failures(&key).await.expect("clear");
    assert_eq!(
        store.failures(&key, later, window).await.expect("read"),
        None
    );
    assert!(
        store.get_call(Uuid::new_v4()).await.expect("get").is_none()
            && store.active_calls().await.expect("active").is_empty(),
        "a count is not a call"
    );
}

pub async fn concurrent_login_failures_are_all_counted(store: Arc<dyn Store>) {
    let key = format!("address#{}", Uuid::new_v4().simple());
    let window = chrono::Duration::minutes(15);
    let now = chrono::Utc::now();
    let writers: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            let key = key.clone();
            tokio::spawn(async move { store.record_failure(&key, now, window).await })
        })
        .collect();
    for writer in writers {
        writer.await.expect("joined").expect("record");
    }
    let count = store
        .failures(&key, now, window)
        .await
        .expect("read")
        .expect("a live count");
    assert_eq!(count.failures, 16, "every container's failure counts");
}

pub async fn a_calls_events_are_written_with_the_changes_they_report(store: Arc<dyn Store>) {
    let call = call_with_webhook("alice", None);
    insert(&*store, &call).await;
    assert_eq!(call.events.len(), 1);
    assert_eq!(
        store.get_call(call.id).await.expect("get"),
        Some(call.clone()),
        "the pending event is written with the call"
    );
    let mut before = call;
    for (i, status) in [
        CallStatus::Dialing,
        CallStatus::Ringing,
        CallStatus::Answered,
        CallStatus::Completed,
    ]
    .into_iter()
    .enumerate()
    {
        let change = to(status).with_dialstatus(Some("ANSWER".into()));
        let result = store.transition(before.id, &change).await.expect("write");
        let TransitionResult::Applied(after) = result else {
            panic!("{status} applies: {result:?}")
        };
        assert_eq!(after.events.len(), i + 2, "{status}: one event more");
        assert_eq!(
            after.events[..i + 1],
            before.events[..],
            "earlier events kept"
        );
        let event = after.events.last().expect("an event");
        assert_eq!(event.sequence as usize, i + 2);
        assert_eq!(event.kind, EventType::Status);
        assert_eq!(event.status, status);
        assert_eq!(event.previous_status, Some(before.status));
        assert_eq!(event.at, change.at);
        assert_eq!(event.digit, None);
        assert_eq!(
            *event.call,
            without_events(&after),
            "{status}: the snapshot"
        );
        assert_eq!(event.delivery.next_attempt_at, Some(change.at));
        assert!(!event.delivery.is_settled());
        assert_eq!(
            store.get_call(after.id).await.expect("get").as_ref(),
            Some(&after),
            "{status}: what the write returned is what is stored"
        );
        before = after;
    }
    let refused = store
        .transition(before.id, &to(CallStatus::Ringing))
        .await
        .expect("write");
    assert_eq!(
        refused,
        TransitionResult::Refused(before.clone()),
        "a refused change adds no event"
    );

    // Only what the filter names: no pending, dialing, ringing or completed events here.
    let filtered = call_with_webhook("alice", Some(&["answered", "dtmf"]));
    assert!(filtered.events.is_empty());
    insert(&*store, &filtered).await;
    for status in [CallStatus::Dialing, CallStatus::Ringing] {
        let result = store
            .transition(filtered.id, &to(status))
            .await
            .expect("write");
        assert!(
            matches!(&result, TransitionResult::Applied(c) if c.events.is_empty()),
            "{status}: {result:?}"
        );
    }
    store
        .transition(filtered.id, &to(CallStatus::Answered))
        .await
        .expect("write");
    let pressed = store
        .annotate(filtered.id, &Annotation::Dtmf('5'))
        .await
        .expect("note")
        .expect("applied");
    let [answered, digit] = &pressed.events[..] else {
        panic!("answered and dtmf: {:?}", pressed.events)
    };
    assert_eq!(
        (answered.sequence, answered.status, answered.previous_status),
        (1, CallStatus::Answered, Some(CallStatus::Ringing))
    );
    assert_eq!(
        (digit.sequence, digit.kind, digit.status, digit.digit),
        (2, EventType::Dtmf, CallStatus::Answered, Some('5'))
    );
    assert_eq!(digit.previous_status, None);
    assert_eq!(*digit.call, without_events(&pressed));
    assert_eq!(digit.call.dtmf, "5");
    let noted = store
        .annotate(filtered.id, &Annotation::DialStatus("ANSWER".into()))
        .await
        .expect("note")
        .expect("applied");
    assert_eq!(
        noted.events.len(),
        2,
        "an annotation no filter names adds none"
    );
    let TransitionResult::Applied(ended) = store
        .transition(filtered.id, &to(CallStatus::Completed))
        .await
        .expect("write")
    else {
        panic!("completed applies")
    };
    assert_eq!(ended.events.len(), 2, "completed is not in the filter");
    assert_eq!(store.get_call(ended.id).await.expect("get"), Some(ended));

    // No webhook, no events.
    let plain = new_call("alice");
    insert(&*store, &plain).await;
    let TransitionResult::Applied(rang) = store
        .transition(plain.id, &to(CallStatus::Ringing))
        .await
        .expect("write")
    else {
        panic!("ringing applies")
    };
    assert!(rang.events.is_empty());
}

/// Writers racing on one call each compute their event from the record they replace:
/// the events are numbered 1..n with no gap and no repeat, each status event names the
/// status before it, and the digits' events follow the digits kept. At most nine of the
/// writes can apply, so a writer loses at most eight races: within the ten tries a
/// store that retries lost races takes (DynamoDB) before it gives up.
pub async fn racing_writers_number_events_without_gaps(store: Arc<dyn Store>) {
    let call = call_with_webhook("alice", None);
    insert(&*store, &call).await;
    let statuses = [
        CallStatus::Dialing,
        CallStatus::Ringing,
        CallStatus::Answered,
    ];
    let writers: Vec<_> = (0..12)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                if i < 6 {
                    let status = statuses[i % statuses.len()];
                    let result = store.transition(call.id, &to(status)).await.expect("write");
                    usize::from(result.applied())
                } else {
                    let digit = char::from(b'0' + (i % 10) as u8);
                    let noted = store
                        .annotate(call.id, &Annotation::Dtmf(digit))
                        .await
                        .expect("note");
                    usize::from(noted.is_some())
                }
            })
        })
        .collect();
    let mut applied = 0;
    for writer in writers {
        applied += writer.await.expect("join");
    }
    let stored = store.get_call(call.id).await.expect("get").expect("exists");
    assert_eq!(
        stored.events.len(),
        1 + applied,
        "one event per applied write"
    );
    let sequences: Vec<u32> = stored.events.iter().map(|e| e.sequence).collect();
    let expected: Vec<u32> = (1..=u32::try_from(stored.events.len()).expect("few")).collect();
    assert_eq!(sequences, expected, "numbered without gaps");
    let mut status = CallStatus::Pending;
    for event in stored.events.iter().skip(1) {
        match event.kind {
            EventType::Status => {
                assert_eq!(event.previous_status, Some(status), "{event:?}");
                status = event.status;
            }
            EventType::Dtmf => assert_eq!(event.status, status, "{event:?}"),
        }
        assert_eq!(event.call.status, event.status);
    }
    assert_eq!(status, stored.status);
    let digits: String = stored.events.iter().filter_map(|e| e.digit).collect();
    assert_eq!(
        digits.len(),
        6,
        "every digit applies while the call is active"
    );
    assert_eq!(digits, stored.dtmf, "the digits' events in the order kept");
    let mut ids: Vec<Uuid> = stored.events.iter().map(|e| e.event_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), stored.events.len(), "no event twice");
}

/// A call at every size limit (32 variables of 256 characters, 20 media items, a 2,048
/// character callback, 64 digits, 20 failed media) keeps every one of its 69 events.
pub async fn a_call_at_every_limit_keeps_all_its_events(store: Arc<dyn Store>) {
    let url = format!("https://hooks.example.com/{}", "p".repeat(2048 - 26));
    let mut call = CallRequest {
        phone_number: "+15550010001".into(),
        mode: Some("playback".into()),
        media: Some(
            (0..20)
                .map(|i| format!("sound:{}{i:02}", "m".repeat(126)))
                .collect(),
        ),
        variables: Some(
            (0..32)
                .map(|i| (format!("V{i:02}{}", "n".repeat(61)), "v".repeat(256)))
                .collect(),
        ),
        status_callback: Some(url),
        ..CallRequest::default()
    }
    .validate(&CallPolicy::default(), "alice", Uuid::new_v4(), now())
    .expect("valid at every limit");
    call.record_created_event();
    insert(&*store, &call).await;
    for status in [
        CallStatus::Dialing,
        CallStatus::Ringing,
        CallStatus::Answered,
    ] {
        store.transition(call.id, &to(status)).await.expect("write");
    }
    for i in 0..Annotation::MAX_DTMF {
        let digit = char::from(b'0' + (i % 10) as u8);
        store
            .annotate(call.id, &Annotation::Dtmf(digit))
            .await
            .expect("note")
            .expect("applied");
        if i % 3 == 0 && i / 3 < Annotation::MAX_MEDIA_FAILED {
            let failed = format!("sound:{}{i:02}", "f".repeat(126));
            store
                .annotate(call.id, &Annotation::MediaFailed(failed))
                .await
                .expect("note")
                .expect("applied");
        }
    }
    let TransitionResult::Applied(ended) = store
        .transition(call.id, &to(CallStatus::Completed))
        .await
        .expect("write")
    else {
        panic!("completed applies")
    };
    assert_eq!(ended.events.len(), 4 + Annotation::MAX_DTMF + 1);
    assert_eq!(ended.media_failed.len(), Annotation::MAX_MEDIA_FAILED);
    assert_eq!(
        store.get_call(call.id).await.expect("get"),
        Some(ended.clone())
    );
    let full = serde_json::to_string(&ended.events).expect("JSON").len();
    assert!(
        full > 400 * 1024,
        "the events in full ({full} bytes) would not fit one DynamoDB item"
    );
}

pub async fn a_delivery_is_recorded_once_and_a_settled_event_cannot_be_undone(
    store: Arc<dyn Store>,
) {
    let call = call_with_webhook("alice", None);
    insert(&*store, &call).await;
    let TransitionResult::Applied(dialing) = store
        .transition(call.id, &to(CallStatus::Dialing))
        .await
        .expect("write")
    else {
        panic!("dialing applies")
    };
    let max_age = Duration::hours(24);
    let mut first = dialing.events[0].clone();
    let failed_at = now();
    first.record(&SendOutcome::from_status(503), failed_at, max_age, 1.0);
    assert_eq!(
        first.delivery.next_attempt_at,
        Some(failed_at + Duration::seconds(1))
    );
    let retried = store
        .record_delivery(call.id, 1, &first.delivery)
        .await
        .expect("record")
        .expect("written");
    assert_eq!(retried.events[0].delivery, first.delivery);
    assert_eq!(
        retried.events[1], dialing.events[1],
        "other events untouched"
    );
    assert_eq!(
        (retried.status, retried.dialed_at),
        (dialing.status, dialing.dialed_at)
    );
    assert_eq!(
        store.get_call(call.id).await.expect("get"),
        Some(retried.clone())
    );

    let mut delivered = first.clone();
    delivered.record(&SendOutcome::from_status(204), now(), max_age, 1.0);
    let settled = store
        .record_delivery(call.id, 1, &delivered.delivery)
        .await
        .expect("record")
        .expect("written");
    assert!(settled.events[0].delivery.is_settled());
    assert_eq!(settled.events[0].delivery.attempts, 2);

    // A second deliverer that raced this one, or a repeat: the outcome stands.
    let mut late = first;
    late.record(&SendOutcome::from_status(410), now(), max_age, 1.0);
    assert_eq!(
        store
            .record_delivery(call.id, 1, &late.delivery)
            .await
            .expect("record"),
        None
    );
    assert_eq!(
        store
            .record_delivery(call.id, 1, &delivered.delivery)
            .await
            .expect("record"),
        None,
        "a settled event is written once"
    );
    assert_eq!(
        store
            .record_delivery(call.id, 99, &delivered.delivery)
            .await
            .expect("record"),
        None,
        "no such event"
    );
    assert_eq!(
        store
            .record_delivery(Uuid::new_v4(), 1, &delivered.delivery)
            .await
            .expect("record"),
        None,
        "no such call"
    );
    assert_eq!(
        store.get_call(call.id).await.expect("get"),
        Some(settled.clone())
    );

    // The next event's outcome, and a status change after: both kept.
    let mut second = settled.events[1].clone();
    second.record(&SendOutcome::from_status(200), now(), max_age, 1.0);
    store
        .record_delivery(call.id, 2, &second.delivery)
        .await
        .expect("record")
        .expect("written");
    let TransitionResult::Applied(ringing) = store
        .transition(call.id, &to(CallStatus::Ringing))
        .await
        .expect("write")
    else {
        panic!("ringing applies")
    };
    assert_eq!(ringing.events[0].delivery, delivered.delivery);
    assert_eq!(ringing.events[1].delivery, second.delivery);
    assert!(!ringing.events[2].delivery.is_settled());
}

/// The poll that lets more than one deliverer drain the outbox: a due call goes to one
/// of them until it releases it or its lease runs out; a call whose first waiting event
/// is not due yet, or that has none, goes to nobody.
pub async fn due_calls_are_claimed_by_one_deliverer_at_a_time(store: Arc<dyn Store>) {
    let lease = Duration::seconds(30);
    let mut due = Vec::new();
    for _ in 0..6 {
        let call = call_with_webhook("alice", None);
        insert(&*store, &call).await;
        due.push(call.id);
    }
    // Waiting an hour to be retried.
    let later = call_with_webhook("alice", None);
    insert(&*store, &later).await;
    let mut retry = later.events[0].clone();
    retry.delivery = Delivery {
        attempts: 1,
        last_response_code: Some(503),
        last_error: Some("the receiver answered 503".into()),
        next_attempt_at: Some(now() + Duration::hours(1)),
        ..Delivery::default()
    };
    store
        .record_delivery(later.id, 1, &retry.delivery)
        .await
        .expect("record")
        .expect("written");
    // Everything delivered.
    let done = call_with_webhook("alice", None);
    insert(&*store, &done).await;
    let delivered = Delivery {
        attempts: 1,
        last_response_code: Some(200),
        delivered_at: Some(now()),
        ..Delivery::default()
    };
    store
        .record_delivery(done.id, 1, &delivered)
        .await
        .expect("record")
        .expect("written");
    // No webhook at all.
    insert(&*store, &new_call("alice")).await;
    // Every event so far happened by now.
    let start = now();

    let claim = |at, limit| {
        let store = store.clone();
        tokio::spawn(async move { store.claim_due_calls(at, lease, limit).await })
    };
    let (a, b) = (claim(start, 4), claim(start, 4));
    let a = a.await.expect("join").expect("claim");
    let b = b.await.expect("join").expect("claim");
    assert!(a.len() <= 4 && b.len() <= 4, "{a:?} {b:?}");
    assert!(
        a.iter().all(|id| !b.contains(id)),
        "claimed twice: {a:?} {b:?}"
    );
    let mut claimed: Vec<Uuid> = a.iter().chain(&b).copied().collect();
    claimed.sort();
    let mut expected = due.clone();
    expected.sort();
    assert_eq!(claimed, expected, "every due call, and only those");
    assert_eq!(
        claim(start, 10).await.expect("join").expect("claim"),
        Vec::<Uuid>::new(),
        "held while claimed"
    );

    store.release_call(due[0]).await.expect("release");
    assert_eq!(
        claim(start, 10).await.expect("join").expect("claim"),
        vec![due[0]],
        "released, it can be claimed again"
    );

    let expired = start + lease + Duration::seconds(1);
    let mut again = claim(expired, 10).await.expect("join").expect("claim");
    again.sort();
    assert_eq!(again, expected, "a lapsed lease frees the call");
    assert_eq!(
        claim(expired, 10).await.expect("join").expect("claim"),
        Vec::<Uuid>::new()
    );

    let mut hour_later = claim(start + Duration::hours(2), 10)
        .await
        .expect("join")
        .expect("claim");
    hour_later.sort();
    let mut with_retry = expected.clone();
    with_retry.push(later.id);
    with_retry.sort();
    assert_eq!(
        hour_later, with_retry,
        "the retried call once its time comes"
    );
}

/// DynamoDB answers no due calls: its table's stream feeds the `notify` function.
pub async fn a_store_delivering_by_stream_claims_nothing(store: Arc<dyn Store>) {
    let call = call_with_webhook("alice", None);
    insert(&*store, &call).await;
    assert_eq!(
        store
            .claim_due_calls(now(), Duration::seconds(30), 10)
            .await
            .expect("claim"),
        Vec::<Uuid>::new()
    );
    store.release_call(call.id).await.expect("release");
}

pub async fn a_users_webhook_settings_are_kept(store: Arc<dyn Store>) {
    let name = format!("user-{}", Uuid::new_v4().simple());
    let mut user = User::new(name.clone(), "$2b$04$hash");
    user.webhook_url = Some("https://hooks.example.com/dialer".into());
    assert!(user.webhook_secret.is_some());
    store.insert_user(&user).await.expect("insert");
    assert_eq!(
        store.get_user(&name).await.expect("get"),
        Some(user.clone())
    );
    user.rotate_webhook_secret(now());
    assert!(user.previous_webhook_secret.is_some());
    assert!(store.update_user(&user).await.expect("update"));
    assert_eq!(
        store.get_user(&name).await.expect("get"),
        Some(user.clone())
    );
    assert!(store.list_users().await.expect("list").contains(&user));
    let cleared = User {
        webhook_url: None,
        webhook_secret: None,
        previous_webhook_secret: None,
        ..user
    };
    assert!(store.update_user(&cleared).await.expect("update"));
    assert_eq!(store.get_user(&name).await.expect("get"), Some(cleared));
}

fn retry_on_busy(max_attempts: i64) -> RetryPolicy {
    RetryPolicy::parse(&RetryRequest {
        max_attempts: Some(max_attempts),
        on: Some(vec!["busy".into()]),
        delay_ms: Some(1_000),
    })
    .expect("valid retry")
}

/// A call waiting in the queue until `due`, created at `created`.
fn queued_call(
    owner: &str,
    created: chrono::DateTime<chrono::Utc>,
    due: chrono::DateTime<chrono::Utc>,
) -> Call {
    let mut call = new_call(owner);
    call.created_at = created;
    call.enqueue(due);
    call
}

pub async fn a_queued_call_with_every_scheduling_field_reads_back_exactly(store: Arc<dyn Store>) {
    let at = now();
    let mut call = queued_call("alice", at, at + Duration::minutes(5));
    call.retry = Some(retry_on_busy(3));
    call.send_at = Some(at + Duration::minutes(5));
    call.window = Some(
        CallingWindow::parse(&WindowRequest {
            start: Some("09:00".into()),
            end: Some("17:30".into()),
            time_zone: Some("America/New_York".into()),
        })
        .expect("valid window"),
    );
    call.attempt_number = 2;
    call.attempts = vec![Attempt {
        attempt_number: 1,
        status: CallStatus::Busy,
        failure_reason: None,
        cause: Some(17),
        dialed_at: Some(at - Duration::minutes(2)),
        answered_at: None,
        ended_at: Some(at - Duration::minutes(1)),
    }];
    insert(&*store, &call).await;
    assert_eq!(
        store.get_call(call.id).await.expect("get"),
        Some(call.clone())
    );

    // Claimed: `claimed_at` and `paced` are set, `queued_until` is gone.
    let claim = Transition::claim(2, true, at + Duration::minutes(6));
    let mut expected = call.clone();
    assert!(claim.apply(&mut expected));
    assert!(expected.paced && expected.claimed_at.is_some());
    assert_eq!(
        store.transition(call.id, &claim).await.expect("write"),
        TransitionResult::Applied(expected.clone())
    );
    assert_eq!(store.get_call(call.id).await.expect("get"), Some(expected));
}

pub async fn due_calls_lists_the_queued_calls_due_in_queue_order(store: Arc<dyn Store>) {
    let at = now();
    let ago = |s: i64| at - Duration::seconds(s);
    let first = queued_call("alice", ago(60), ago(30));
    let second = queued_call("bob", ago(50), ago(10));
    // Due at the same time as `second`, created later.
    let third = queued_call("alice", ago(40), ago(10));
    // Same due time and creation time: the call id decides.
    let (mut fourth, mut fifth) = (
        queued_call("carol", ago(35), ago(10)),
        queued_call("carol", ago(35), ago(10)),
    );
    if fifth.id < fourth.id {
        std::mem::swap(&mut fourth, &mut fifth);
    }
    let due_now = queued_call("alice", ago(20), at);
    let later = queued_call("alice", ago(70), at + Duration::hours(1));
    let pending = new_call("alice");
    let mut retried = queued_call("dave", ago(30), ago(5));
    retried.attempt_number = 3;
    for call in [
        &later, &fifth, &third, &pending, &first, &due_now, &fourth, &second, &retried,
    ] {
        insert(&*store, call).await;
    }
    let order: Vec<QueuedCall> = [&first, &second, &third, &fourth, &fifth, &retried, &due_now]
        .into_iter()
        .map(|c| QueuedCall::of(c).expect("queued"))
        .collect();
    assert_eq!(store.due_calls(at, 100).await.expect("due"), order);
    assert_eq!(
        store.due_calls(at, 3).await.expect("due"),
        order[..3].to_vec(),
        "the limit keeps the first ones"
    );
    assert_eq!(
        store
            .due_calls(at - Duration::milliseconds(1), 100)
            .await
            .expect("due"),
        order[..6].to_vec(),
        "a call due after `now` waits"
    );
    assert_eq!(store.due_calls(ago(3_600), 100).await.expect("due"), []);

    let claimed = store
        .transition(first.id, &Transition::claim(1, false, at))
        .await
        .expect("claim");
    assert!(claimed.applied(), "{claimed:?}");
    let canceled = store
        .transition(second.id, &to(CallStatus::Canceled))
        .await
        .expect("cancel");
    assert!(canceled.applied(), "{canceled:?}");
    assert_eq!(
        store.due_calls(at, 100).await.expect("due"),
        order[2..].to_vec(),
        "claimed and canceled calls leave the queue"
    );
    let whole = store
        .due_calls(at + Duration::hours(2), 100)
        .await
        .expect("due");
    assert_eq!(whole.len(), order.len() - 2 + 1, "{whole:?}");
    assert_eq!(whole.last().map(|q| q.id), Some(later.id));
}

pub async fn a_users_queue_lists_only_their_due_calls_in_queue_order(store: Arc<dyn Store>) {
    let at = now();
    let ago = |s: i64| at - Duration::seconds(s);
    let first = queued_call("alice", ago(60), ago(30));
    let bobs = queued_call("bob", ago(70), ago(40));
    let second = queued_call("alice", ago(50), ago(10));
    let mut retried = queued_call("alice", ago(90), ago(5));
    retried.attempt_number = 2;
    let later = queued_call("alice", ago(80), at + Duration::minutes(5));
    let dialing = new_call("alice");
    for call in [&later, &retried, &bobs, &second, &dialing, &first] {
        insert(&*store, call).await;
    }
    let alices: Vec<QueuedCall> = [&first, &second, &retried]
        .into_iter()
        .map(|c| QueuedCall::of(c).expect("queued"))
        .collect();
    assert_eq!(
        store.due_calls_of("alice", at, 100).await.expect("due"),
        alices
    );
    assert_eq!(
        store.due_calls_of("alice", at, 2).await.expect("due"),
        alices[..2].to_vec(),
        "the limit keeps the first ones"
    );
    assert_eq!(
        store.due_calls_of("bob", at, 100).await.expect("due"),
        [QueuedCall::of(&bobs).expect("queued")]
    );
    assert_eq!(store.due_calls_of("carol", at, 100).await.expect("due"), []);
    let claimed = store
        .transition(first.id, &Transition::claim(1, false, at))
        .await
        .expect("claim");
    assert!(claimed.applied(), "{claimed:?}");
    assert_eq!(
        store.due_calls_of("alice", at, 100).await.expect("due"),
        alices[1..].to_vec(),
        "a claimed call leaves its user's queue"
    );
    assert_eq!(
        store
            .due_calls_of("alice", at + Duration::minutes(10), 100)
            .await
            .expect("due")
            .last()
            .map(|q| q.id),
        Some(later.id)
    );
}

pub async fn concurrent_claims_of_one_queued_call_apply_once(store: Arc<dyn Store>) {
    for _ in 0..3 {
        let at = now();
        let call = queued_call("alice", at, at);
        insert(&*store, &call).await;
        let claimers: Vec<_> = (0..2)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .transition(call.id, &Transition::claim(1, true, now()))
                        .await
                        .expect("claim")
                })
            })
            .collect();
        let mut applied = 0;
        for claimer in claimers {
            applied += usize::from(claimer.await.expect("join").applied());
        }
        assert_eq!(applied, 1, "exactly one dispatcher dials the call");
        let stored = store.get_call(call.id).await.expect("get").expect("exists");
        assert_eq!(stored.status, CallStatus::Pending);
        assert!(stored.paced && stored.queued_until.is_none());
    }
}

pub async fn a_retried_attempt_goes_back_to_the_queue_and_late_news_of_it_is_refused(
    store: Arc<dyn Store>,
) {
    let mut call = new_call("alice");
    call.retry = Some(retry_on_busy(2));
    insert(&*store, &call).await;
    let at = now();
    let busy = Transition::to(CallStatus::Busy, at).with_cause(Some(17), Some("User busy".into()));
    let mut expected = call.clone();
    assert!(busy.apply(&mut expected));
    let result = store.transition(call.id, &busy).await.expect("write");
    assert_eq!(result, TransitionResult::Applied(expected.clone()));
    let requeued = result.call().expect("a call").clone();
    assert_eq!(requeued.status, CallStatus::Queued);
    assert_eq!(requeued.attempt_number, 2);
    assert_eq!(requeued.attempts.len(), 1);
    assert_eq!(
        (
            requeued.attempts[0].attempt_number,
            requeued.attempts[0].status
        ),
        (1, CallStatus::Busy)
    );
    assert_eq!(requeued.queued_until, Some(at + Duration::seconds(1)));
    assert_eq!(
        store.get_call(call.id).await.expect("get"),
        Some(requeued.clone())
    );

    // A second word of the first attempt's end changes nothing.
    let late = Transition::to(CallStatus::Busy, now()).of_attempt(1);
    assert_eq!(
        store.transition(call.id, &late).await.expect("write"),
        TransitionResult::Refused(requeued.clone())
    );
    assert_eq!(store.due_calls(at, 10).await.expect("due"), []);
    assert_eq!(
        store
            .due_calls(at + Duration::seconds(1), 10)
            .await
            .expect("due"),
        vec![QueuedCall::of(&requeued).expect("queued")]
    );

    // The second attempt is the last: its busy is final.
    let claimed = store
        .transition(call.id, &Transition::claim(2, false, now()))
        .await
        .expect("claim");
    assert!(claimed.applied(), "{claimed:?}");
    let ended = store
        .transition(call.id, &to(CallStatus::Busy).of_attempt(2))
        .await
        .expect("write");
    let ended = ended.call().expect("a call");
    assert_eq!((ended.status, ended.attempt_number), (CallStatus::Busy, 2));
    assert_eq!(ended.attempts.len(), 1);
}

fn pacing_state(queued: u32) -> Pacing {
    let slot = Slot {
        call: Uuid::new_v4(),
        attempt: 1,
    };
    Pacing {
        lines: [(slot.key(), now())].into(),
        recent: [now() - Duration::milliseconds(300), now()].into(),
        queued,
    }
}

fn fresh_key() -> String {
    pacing_user_key(&format!("user-{}", Uuid::new_v4().simple()))
}

pub async fn a_pacing_state_is_written_only_at_the_version_it_was_read(store: Arc<dyn Store>) {
    let key = fresh_key();
    let loaded = store
        .load_pacing(std::slice::from_ref(&key))
        .await
        .expect("load");
    assert_eq!(loaded, vec![Versioned::<Pacing>::default()]);

    let state = pacing_state(3);
    let first = Versioned {
        value: state.clone(),
        version: 0,
    };
    assert!(
        store
            .save_pacing(&[(key.clone(), first.clone())])
            .await
            .expect("save")
    );
    let stored = Versioned {
        value: state.clone(),
        version: 1,
    };
    assert_eq!(
        store
            .load_pacing(std::slice::from_ref(&key))
            .await
            .expect("load"),
        vec![stored.clone()]
    );

    // A save at a version that is no longer current is refused and changes nothing.
    let stale = Versioned {
        value: pacing_state(9),
        version: 0,
    };
    assert!(
        !store
            .save_pacing(&[(key.clone(), stale)])
            .await
            .expect("save")
    );
    let ahead = Versioned {
        value: pacing_state(9),
        version: 7,
    };
    assert!(
        !store
            .save_pacing(&[(key.clone(), ahead)])
            .await
            .expect("save")
    );
    assert_eq!(
        store
            .load_pacing(std::slice::from_ref(&key))
            .await
            .expect("load"),
        vec![stored]
    );

    // Pacing states are no calls: neither the queue nor reconciliation sees them.
    assert_eq!(
        store
            .due_calls(now() + Duration::days(1), 10)
            .await
            .expect("due"),
        []
    );
    assert_eq!(store.active_calls().await.expect("active"), []);
}

pub async fn a_pacing_save_of_two_keys_writes_both_or_neither(store: Arc<dyn Store>) {
    let (trunk, user) = (
        format!("{PACING_TRUNK}-{}", Uuid::new_v4().simple()),
        fresh_key(),
    );
    let keys = [trunk.clone(), user.clone()];
    let both = |a: u32, b: u32, version: u64| {
        [
            (
                trunk.clone(),
                Versioned {
                    value: pacing_state(a),
                    version,
                },
            ),
            (
                user.clone(),
                Versioned {
                    value: pacing_state(b),
                    version,
                },
            ),
        ]
    };
    let first = both(1, 2, 0);
    assert!(store.save_pacing(&first).await.expect("save"));
    let loaded = store.load_pacing(&keys).await.expect("load");
    assert_eq!(
        loaded,
        first
            .iter()
            .map(|(_, v)| Versioned {
                value: v.value.clone(),
                version: 1,
            })
            .collect::<Vec<_>>()
    );

    // The user's state moves on alone; a save of both from the old read is refused.
    let moved = Versioned {
        value: pacing_state(5),
        version: 1,
    };
    assert!(
        store
            .save_pacing(&[(user.clone(), moved.clone())])
            .await
            .expect("save")
    );
    let after_move = store.load_pacing(&keys).await.expect("load");
    assert_eq!(after_move[1].version, 2);
    let stale = both(7, 8, 1);
    assert!(!store.save_pacing(&stale).await.expect("save"));
    let mut reversed = stale.to_vec();
    reversed.reverse();
    assert!(!store.save_pacing(&reversed).await.expect("save"));
    assert_eq!(
        store.load_pacing(&keys).await.expect("load"),
        after_move,
        "neither state was written"
    );

    // A new key and a stale one: the new one is not created either.
    let fresh = fresh_key();
    let mixed = [
        (
            fresh.clone(),
            Versioned {
                value: pacing_state(1),
                version: 0,
            },
        ),
        (
            trunk.clone(),
            Versioned {
                value: pacing_state(1),
                version: 0,
            },
        ),
    ];
    assert!(!store.save_pacing(&mixed).await.expect("save"));
    assert_eq!(
        store
            .load_pacing(std::slice::from_ref(&fresh))
            .await
            .expect("load"),
        vec![Versioned::<Pacing>::default()]
    );

    // Both at their current versions: both written.
    let current = [
        (
            trunk.clone(),
            Versioned {
                value: pacing_state(10),
                version: after_move[0].version,
            },
        ),
        (
            user.clone(),
            Versioned {
                value: pacing_state(20),
                version: after_move[1].version,
            },
        ),
    ];
    assert!(store.save_pacing(&current).await.expect("save"));
    let last = store.load_pacing(&keys).await.expect("load");
    assert_eq!(
        (
            last[0].value.queued,
            last[0].version,
            last[1].value.queued,
            last[1].version
        ),
        (10, 2, 20, 3)
    );
}

/// `writers` read-modify-save loops at once, each adding one to `queued` of every key.
async fn count_up_concurrently(store: &Arc<dyn Store>, keys: Vec<String>, writers: u32) {
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let store = store.clone();
            let keys = keys.clone();
            tokio::spawn(async move {
                for _ in 0..1_000 {
                    let states = store.load_pacing(&keys).await.expect("load");
                    let writes: Vec<(String, Versioned<Pacing>)> = keys
                        .iter()
                        .cloned()
                        .zip(states)
                        .map(|(key, mut state)| {
                            state.value.enqueue(None);
                            (key, state)
                        })
                        .collect();
                    if store.save_pacing(&writes).await.expect("save") {
                        return;
                    }
                    tokio::task::yield_now().await;
                }
                panic!("a pacing write kept losing");
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("joined");
    }
    for state in store.load_pacing(&keys).await.expect("load") {
        assert_eq!(
            (state.value.queued, state.version),
            (writers, u64::from(writers)),
            "every writer's change landed, once"
        );
    }
}

pub async fn concurrent_pacing_updates_all_land(store: Arc<dyn Store>) {
    count_up_concurrently(&store, vec![fresh_key()], 12).await;
    let trunk = format!("{PACING_TRUNK}-{}", Uuid::new_v4().simple());
    count_up_concurrently(&store, vec![trunk, fresh_key()], 8).await;
}

/// `MAX_CONCURRENT_CALLS` at its ceiling (5,000 lines) and a window's bookings at 1,000
/// calls a second: the largest state the pacer keeps reads back exactly, and so does each
/// change of it (a release, an admission, every line freed).
pub async fn a_pacing_state_with_thousands_of_lines_reads_back_exactly(store: Arc<dyn Store>) {
    let key = format!("{PACING_TRUNK}-{}", Uuid::new_v4().simple());
    let start = now();
    let mut state = Pacing {
        queued: 7,
        ..Pacing::default()
    };
    let mut slots = Vec::new();
    for n in 0..5_000_i64 {
        let slot = Slot {
            call: Uuid::new_v4(),
            attempt: 1 + (n % 3) as u32,
        };
        // The pacer's times are whole milliseconds; finer ones must keep every digit.
        let granted = if n % 500 == 0 {
            chrono::Utc::now() - Duration::nanoseconds(n)
        } else {
            start - Duration::milliseconds(n * 37)
        };
        state.lines.insert(slot.key(), granted);
        slots.push(slot);
    }
    state.recent = (0..1_100)
        .map(|n| start + Duration::milliseconds(n))
        .collect();
    // Out of order and to the nanosecond: kept as written all the same.
    state.recent[550] = chrono::Utc::now() + Duration::nanoseconds(1);
    state.recent.push_back(start);

    let mut version = 0;
    let mut round_trip = async |state: &Pacing, what: &str| {
        let write = Versioned {
            value: state.clone(),
            version,
        };
        assert!(
            store
                .save_pacing(&[(key.clone(), write)])
                .await
                .expect("save"),
            "{what}: saved"
        );
        version += 1;
        let loaded = store
            .load_pacing(std::slice::from_ref(&key))
            .await
            .expect("load");
        assert!(
            loaded
                == [Versioned {
                    value: state.clone(),
                    version,
                }],
            "{what}: the state read back differs from the one written"
        );
    };
    round_trip(&state, "5,000 lines").await;

    assert!(state.release(slots[2_500]));
    round_trip(&state, "a release").await;

    let admitted = Slot {
        call: Uuid::new_v4(),
        attempt: 1,
    };
    state
        .lines
        .insert(admitted.key(), start + Duration::seconds(1));
    state.recent.pop_front();
    state.recent.push_back(start + Duration::seconds(1));
    round_trip(&state, "an admission").await;

    state.lines.clear();
    state.queued = 0;
    round_trip(&state, "every line freed").await;
}

pub async fn a_users_limits_are_kept(store: Arc<dyn Store>) {
    let name = format!("user-{}", Uuid::new_v4().simple());
    let mut user = User::new(name.clone(), "$2b$04$hash");
    user.limits = UserLimits {
        max_concurrent_calls: Some(3),
        max_queued_calls: None,
    };
    store.insert_user(&user).await.expect("insert");
    assert_eq!(
        store.get_user(&name).await.expect("get"),
        Some(user.clone())
    );
    user.limits = UserLimits {
        max_concurrent_calls: None,
        max_queued_calls: Some(100_000),
    };
    assert!(store.update_user(&user).await.expect("update"));
    assert_eq!(
        store.get_user(&name).await.expect("get"),
        Some(user.clone())
    );
    assert!(store.list_users().await.expect("list").contains(&user));
    user.limits = UserLimits::default();
    assert!(store.update_user(&user).await.expect("update"));
    assert_eq!(store.get_user(&name).await.expect("get"), Some(user));
}

/// `polled`: checks of the deliverers' poll, which DynamoDB does not serve (its stream
/// does the work); `streamed`: what DynamoDB does instead.
macro_rules! contract {
    ($($name:ident),* $(,)?; polled: $($polled:ident),* ; streamed: $($streamed:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(std::sync::Arc::new(dialer_core::store::MemoryStore::new())).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $polled() {
                    super::$polled(std::sync::Arc::new(dialer_core::store::MemoryStore::new())).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _schema) = integration::pg::pg_store().await;
                    super::$name(std::sync::Arc::new(store)).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $polled() {
                    let (store, _schema) = integration::pg::pg_store().await;
                    super::$polled(std::sync::Arc::new(store)).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _, _) = integration::aws::dynamo_store().await;
                    super::$name(std::sync::Arc::new(store)).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $streamed() {
                    let (store, _, _) = integration::aws::dynamo_store().await;
                    super::$streamed(std::sync::Arc::new(store)).await;
                }
            )*
        }
    };
}

contract!(
    a_call_reads_back_exactly_as_written,
    transitions_only_move_forward,
    a_store_applies_transitions_as_the_domain_does,
    annotations_apply_only_while_active,
    racing_writers_leave_one_final_state,
    active_calls_are_those_not_final,
    a_users_calls_list_newest_first_in_pages,
    paging_never_skips_or_repeats_a_call,
    unconfirmed_originates_and_failed_media_are_kept,
    users_are_created_once_and_updated_in_place,
    an_idempotency_key_binds_once_per_owner,
    a_users_token_version_is_kept,
    login_failures_count_up_lapse_and_clear,
    concurrent_login_failures_are_all_counted,
    a_calls_events_are_written_with_the_changes_they_report,
    racing_writers_number_events_without_gaps,
    a_call_at_every_limit_keeps_all_its_events,
    a_delivery_is_recorded_once_and_a_settled_event_cannot_be_undone,
    a_users_webhook_settings_are_kept,
    a_queued_call_with_every_scheduling_field_reads_back_exactly,
    due_calls_lists_the_queued_calls_due_in_queue_order,
    a_users_queue_lists_only_their_due_calls_in_queue_order,
    concurrent_claims_of_one_queued_call_apply_once,
    a_retried_attempt_goes_back_to_the_queue_and_late_news_of_it_is_refused,
    a_pacing_state_is_written_only_at_the_version_it_was_read,
    a_pacing_save_of_two_keys_writes_both_or_neither,
    concurrent_pacing_updates_all_land,
    a_pacing_state_with_thousands_of_lines_reads_back_exactly,
    a_users_limits_are_kept;
    polled: due_calls_are_claimed_by_one_deliverer_at_a_time;
    streamed: a_store_delivering_by_stream_claims_nothing,
);

/// A page of one user's calls among many on DynamoDB reads its length (DynamoDB's own
/// count of the items a query read), not the user's history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_a_users_calls_reads_its_length_not_the_users_history_dynamodb() {
    use dialer_core::store::CallReads;
    let (store, _, _) = integration::aws::dynamo_store().await;
    for n in 0..300 {
        let mut call = new_call(if n % 3 == 0 { "bob" } else { "alice" });
        call.created_at = now() - Duration::seconds(1_000 - n);
        insert(&store, &call).await;
    }
    let before = store.items_read();
    let first = store.calls_of("alice", None, 1).await.expect("page");
    assert_eq!(first.calls.len(), 1);
    let next = first.next.expect("another page");
    let second = store.calls_of("alice", Some(next), 10).await.expect("page");
    assert_eq!(second.calls.len(), 10);
    assert_eq!(
        store.items_read() - before,
        2 + 11,
        "each page read its length and one more, not alice's 200 calls"
    );
}
