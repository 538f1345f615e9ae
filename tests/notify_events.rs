//! The notify function's handler, built as its `main` builds it, fed the sample events
//! in `events/notify/`: a DynamoDB Streams record of a call (and one of an idempotency
//! item, which is no call) delivers the call's first event to a real receiver on
//! loopback; the receiver's 503 puts the call on the retry queue (SQS on moto) for when
//! its next attempt is due; that message, handed in as an SQS event, delivers it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use chrono::Utc;
use dialer_boot::Platform;
use dialer_boot::notify::{Batch, RetryMessage};
use dialer_boot::settings::{NotifyFunction, Vars};
use dialer_core::domain::{Call, CallPolicy, CallRequest, User, now};
use dialer_core::metrics::Metrics;
use dialer_core::store::{CallReads, CallStore, Store, UserStore};
use dialer_http::Routes;
use http::Request;
use integration::receiver::{Receiver, signature_verifies};
use integration::recording::RecordingPbx;
use serde_json::Value;
use tower::ServiceExt;
use uuid::Uuid;

fn read_event(file: &str, call_id: Uuid) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../events/notify")
        .join(file);
    let text = std::fs::read_to_string(path)
        .expect("event file")
        .replace("{{CALL_ID}}", &call_id.to_string());
    serde_json::from_str(&text).expect("event JSON")
}

/// The event as the Lambda runtime hands it to the handler: decoded from its JSON.
async fn invoke(notifier: &dialer_boot::notify::Notifier, event: Value) -> Value {
    let batch: Batch = serde_json::from_value(event).expect("a stream or SQS event");
    serde_json::to_value(notifier.handle(batch).await).expect("response serializes")
}

/// A call to `url` for every event, with event 1 (`pending`) due at once, as
/// `CallService::place_call` writes it.
fn call_with_webhook(owner: &str, url: &str) -> Call {
    let policy = CallPolicy {
        webhook_allow_insecure: true,
        ..CallPolicy::default()
    };
    let mut call = CallRequest {
        phone_number: "+15550010001".into(),
        status_callback: Some(url.into()),
        ..CallRequest::default()
    }
    .validate(&policy, owner, Uuid::new_v4(), now())
    .expect("valid");
    call.record_created_event();
    call
}

/// Messages on the queue now (short polls: moto serves one request at a time, and a
/// long poll would hold it).
async fn receive(sqs: &aws_sdk_sqs::Client, queue: &str) -> Vec<aws_sdk_sqs::types::Message> {
    sqs.receive_message()
        .queue_url(queue)
        .max_number_of_messages(10)
        .wait_time_seconds(0)
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default()
}

/// Messages on the queue, visible or delayed (not those received and not yet deleted).
async fn waiting(sqs: &aws_sdk_sqs::Client, queue: &str) -> u64 {
    use aws_sdk_sqs::types::QueueAttributeName as Name;
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(queue)
        .attribute_names(Name::ApproximateNumberOfMessages)
        .attribute_names(Name::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .unwrap_or_default();
    [
        Name::ApproximateNumberOfMessages,
        Name::ApproximateNumberOfMessagesDelayed,
    ]
    .iter()
    .map(|name| {
        attributes
            .get(name)
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name:?} in {attributes:?}"))
    })
    .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_delivers_from_a_dynamodb_stream_event_and_queues_retries() {
    let (store, tables, aws) = integration::aws::dynamo_store().await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let queue = sqs
        .create_queue()
        .queue_name(format!("retry-{}", Uuid::new_v4().simple()))
        .send()
        .await
        .expect("queue on moto")
        .queue_url
        .expect("queue URL");
    let receiver = Receiver::start(&[503]).await;

    let owner = format!("owner-{}", Uuid::new_v4().simple());
    let user = User::new(owner.clone(), "$2b$04$hash");
    let secret = user
        .webhook_secret
        .clone()
        .expect("a new user has a secret");
    store.insert_user(&user).await.expect("user");
    let call = call_with_webhook(&owner, &receiver.url);
    store.insert_call(&call).await.expect("call");

    let vars = [
        ("CALLS_TABLE", tables.calls.as_str()),
        ("USERS_TABLE", tables.users.as_str()),
        ("WEBHOOK_RETRY_QUEUE_URL", queue.as_str()),
        ("WEBHOOK_ALLOW_PRIVATE", "true"),
        ("WEBHOOK_ALLOW_INSECURE", "true"),
    ];
    let settings = NotifyFunction::from_env(&Vars(&vars)).expect("settings");
    let platform = Platform::with_aws(aws.clone());
    let notifier = dialer_boot::notify::notifier(&settings, &platform)
        .await
        .expect("notifier");

    // The stream reports the insert: event 1 is sent, and refused with a 503. The
    // idempotency item's record is no call and is passed over, not failed.
    let stream = read_event("stream.json", call.id);
    let response = invoke(&notifier, stream.clone()).await;
    assert_eq!(
        response["batchItemFailures"],
        serde_json::json!([]),
        "{response}"
    );
    let first = receiver.received();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].json()["sequence"], 1);
    let stored = store.get_call(call.id).await.expect("get").expect("call");
    let due = stored.events[0]
        .delivery
        .next_attempt_at
        .expect("a retry is due");
    assert_eq!(stored.events[0].delivery.attempts, 1);

    // The stream then reports notify's own write: nothing is due, nothing is sent, and
    // no second message is queued (the attempt's writer queued the one).
    let response = invoke(&notifier, stream).await;
    assert_eq!(response["batchItemFailures"], serde_json::json!([]));
    assert_eq!(receiver.received().len(), 1);
    assert_eq!(waiting(&sqs, &queue).await, 1, "one retry message");

    // One message, for the call and its next attempt, delayed until that attempt is due.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let messages = loop {
        let messages = receive(&sqs, &queue).await;
        if !messages.is_empty() {
            break messages;
        }
        assert!(tokio::time::Instant::now() < deadline, "no retry message");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let seen_at = Utc::now();
    assert_eq!(messages.len(), 1, "one retry message");
    let message = &messages[0];
    let body: RetryMessage =
        serde_json::from_str(message.body().expect("body")).expect("a retry message");
    assert_eq!(body.call_id, call.id);
    assert_eq!(body.due_at, Some(due));
    assert!(
        seen_at >= due,
        "the message stayed invisible until the attempt was due ({seen_at} < {due})"
    );

    // The message as the queue's event source mapping hands it in: event 1 is delivered.
    let mut retry = read_event("retry.json", call.id);
    retry["Records"][0]["body"] = Value::from(message.body().expect("body"));
    retry["Records"][0]["messageId"] = Value::from(message.message_id().expect("id"));
    let response = invoke(&notifier, retry).await;
    assert_eq!(
        response["batchItemFailures"],
        serde_json::json!([]),
        "{response}"
    );
    // Done with, the mapping deletes it.
    sqs.delete_message()
        .queue_url(&queue)
        .receipt_handle(message.receipt_handle().expect("receipt handle"))
        .send()
        .await
        .expect("delete");
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    let delivered = &received[1];
    assert_eq!(delivered.json()["sequence"], 1);
    assert_eq!(delivered.json()["event_id"], first[0].json()["event_id"]);
    assert!(
        signature_verifies(
            &delivered.header("dialer-signature"),
            &delivered.body,
            &secret
        ),
        "signed with the owner's secret"
    );

    // The call's timeline, as the status API shows it: delivered on the second attempt.
    let store: Arc<dyn Store> = Arc::new(store);
    let router = integration::router(
        store.clone(),
        Arc::new(RecordingPbx::default()),
        Arc::new(Metrics::new()),
        &[Routes::Status],
    );
    let token = integration::tokens().issue(&owner, 0).await.expect("token");
    let request = Request::get(format!("/api/v2/calls/{}/events", call.id))
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request");
    let answer = router.oneshot(request).await.expect("answered");
    assert_eq!(answer.status(), 200);
    let bytes = axum::body::to_bytes(answer.into_body(), 1 << 20)
        .await
        .expect("body");
    let timeline: Value = serde_json::from_slice(&bytes).expect("JSON");
    let delivery = &timeline["events"][0]["delivery"];
    assert_eq!(delivery["state"], "delivered", "{timeline}");
    assert_eq!(delivery["attempts"], 2, "{timeline}");

    // Nothing is left waiting, so nothing more is queued.
    assert_eq!(waiting(&sqs, &queue).await, 0, "no further retry");
}
