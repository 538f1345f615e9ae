//! One contract for every store: the in-process store and DynamoDB (on moto) must
//! behave the same in every respect the rest of the product relies on.

use std::sync::Arc;

use chrono::Duration;
use dialer_core::domain::{
    Annotation, Call, CallPolicy, CallRequest, CallStatus, FailureReason, Transition, User, now,
};
use dialer_core::store::{Store, StoreError, TransitionResult};
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
        .with_cause(Some(0), Some("Unknown".into()))
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
        (Some(0), Some("Unknown"), Some("BUSY"))
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
    let ringing = new_call("alice");
    let ended = new_call("alice");
    insert(&*store, &ringing).await;
    insert(&*store, &ended).await;
    store
        .transition(ringing.id, &to(CallStatus::Ringing))
        .await
        .expect("write");
    store
        .transition(ended.id, &to(CallStatus::Busy))
        .await
        .expect("write");
    let active: Vec<Uuid> = store
        .active_calls()
        .await
        .expect("active")
        .iter()
        .map(|c| c.id)
        .collect();
    assert!(active.contains(&ringing.id));
    assert!(!active.contains(&ended.id));
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
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(
        store
            .claim_idempotency_key("alice", "key-1", first, 60)
            .await
            .expect("claim"),
        None
    );
    assert_eq!(
        store
            .claim_idempotency_key("alice", "key-1", second, 60)
            .await
            .expect("claim"),
        Some(first)
    );
    assert_eq!(
        store
            .claim_idempotency_key("bob", "key-1", second, 60)
            .await
            .expect("claim"),
        None
    );
    assert!(
        store.get_call(first).await.expect("get").is_none(),
        "a binding is not a call"
    );
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

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(std::sync::Arc::new(dialer_core::store::MemoryStore::new())).await;
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
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _, _) = integration::aws::dynamo_store().await;
                    super::$name(std::sync::Arc::new(store)).await;
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
);
