//! The notify function: status webhooks in AWS. The calls table's stream (KEYS_ONLY)
//! names each call as it is written; a call whose next attempt lies ahead comes back
//! through the retry queue (SQS, `DelaySeconds`) when it is due. Either way the call's
//! due events are delivered in order by [`Deliverer::deliver_call`].
//!
//! A stream invocation and a retry-queue invocation may work on one call at the same
//! moment (within one shard a call's records arrive in order, but the queue is another
//! path). That is safe: `deliver_call` only ever sends the head unsettled event and
//! records each outcome conditionally (never over a settled one), so at worst an event
//! is sent twice, never out of order and never one while an earlier one is unsettled.
//!
//! Who queues a call again: every delivery write comes back through the stream, so if
//! every invocation that finds an event waiting queued the call, each attempt would add
//! a message and the messages would multiply. Instead a call has one chain of retry
//! messages: the invocation that recorded an attempt queues the next one, and a message
//! that finds its own due time still ahead (it arrived early: SQS delays at most 15
//! minutes) queues itself again. A message whose time was superseded by someone else's
//! attempt ends, since that attempt queued its own.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dialer_core::domain::webhook::Delivery;
use dialer_core::domain::{Annotation, Call, Transition};
use dialer_core::metrics::Metrics;
use dialer_core::service::Deliverer;
use dialer_core::store::{
    CallBacklog, CallPage, CallReads, CallStore, IdempotencyBinding, PageCursor, QueuedCall, Store,
    StoreError, TransitionResult,
};
use dialer_core::webhooks::WebhookSender;
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};
use uuid::Uuid;

use crate::settings::{
    ConfigError, Env, NotifyFunction, ProcessEnv, check_deployed, in_aws_lambda,
};
use crate::{BootError, Platform};

/// The longest delay SQS gives a message.
pub const MAX_DELAY_SECONDS: i32 = 900;

/// Runs the handler `build` makes from the function's settings until the Lambda runtime
/// stops the container. In AWS Lambda itself the deployed variables must all be set.
pub async fn run<S, F, Fut>(
    binary: &str,
    settings: fn(&dyn Env) -> Result<S, ConfigError>,
    build: F,
) -> Result<(), lambda_runtime::Error>
where
    F: FnOnce(S, Platform) -> Fut,
    Fut: Future<Output = Result<Notifier, BootError>>,
{
    crate::telemetry::init();
    if in_aws_lambda(&ProcessEnv) {
        check_deployed(binary, &ProcessEnv)?;
    }
    let settings = settings(&ProcessEnv)?;
    let notifier = Arc::new(build(settings, Platform::from_lambda_env(&ProcessEnv)).await?);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<Batch>| {
            let notifier = notifier.clone();
            async move { Ok::<_, lambda_runtime::Error>(notifier.handle(event.payload).await) }
        },
    ))
    .await
}

/// The notify handler over the store and the retry queue the settings name.
pub async fn notifier(
    settings: &NotifyFunction,
    platform: &Platform,
) -> Result<Notifier, BootError> {
    let aws = platform.aws("WEBHOOK_RETRY_QUEUE_URL")?;
    let store = crate::open_store(&settings.store, platform).await?;
    let sender = dialer_webhooks::Sender::new(crate::webhook_adapter_settings(&settings.webhooks))
        .map_err(BootError::Webhooks)?;
    Ok(Notifier {
        store,
        sender: Arc::new(sender),
        max_age: settings.webhooks.max_age,
        metrics: crate::metrics(&settings.metrics),
        queue: RetryQueue {
            client: aws_sdk_sqs::Client::new(aws),
            url: settings.retry_queue_url.clone(),
        },
        owed: Mutex::new(HashSet::new()),
    })
}

/// One invocation's records: from the calls table's stream or from the retry queue.
/// Only the fields notify reads are named (`aws_lambda_events` would bring in
/// `serde_dynamo` and `serde_with` for the same few fields).
#[derive(Debug, Deserialize)]
pub struct Batch {
    #[serde(rename = "Records", default)]
    pub records: Vec<Record>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "eventSource")]
pub enum Record {
    #[serde(rename = "aws:dynamodb")]
    Stream {
        #[serde(rename = "eventName", default)]
        event_name: String,
        dynamodb: StreamChange,
    },
    #[serde(rename = "aws:sqs")]
    Queue {
        #[serde(rename = "messageId")]
        message_id: String,
        body: String,
    },
}

/// The part of a stream record notify reads: the item's key (a KEYS_ONLY stream carries
/// no more), and the record's sequence number, which names it in a batch failure.
#[derive(Debug, Deserialize)]
pub struct StreamChange {
    #[serde(rename = "Keys", default)]
    keys: BTreeMap<String, KeyValue>,
    #[serde(rename = "SequenceNumber")]
    sequence_number: String,
}

#[derive(Debug, Deserialize)]
struct KeyValue {
    #[serde(rename = "S")]
    s: Option<String>,
}

/// A retry-queue message: the call, and the time of the attempt it was queued for.
#[derive(Debug, Deserialize, Serialize)]
pub struct RetryMessage {
    pub call_id: Uuid,
    /// Absent in a message written by hand (or redriven from elsewhere): such a message
    /// is always acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<DateTime<Utc>>,
}

/// What Lambda gets back: the records to hand in again (stream sequence numbers or SQS
/// message ids); every other record of the batch is done. The same shape serves both
/// event source mappings (`ReportBatchItemFailures`).
#[derive(Debug, Default, Serialize)]
pub struct BatchResponse {
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<ItemFailure>,
}

#[derive(Debug, Serialize)]
pub struct ItemFailure {
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

/// Delivers the calls an invocation names.
pub struct Notifier {
    store: Arc<dyn Store>,
    sender: Arc<dyn WebhookSender>,
    max_age: chrono::Duration,
    metrics: Arc<Metrics>,
    queue: RetryQueue,
    /// Calls whose retry message this container failed to queue after recording an
    /// attempt: when their record is handed in again, nothing is due and nothing is
    /// written, yet the message is still owed.
    owed: Mutex<HashSet<Uuid>>,
}

/// What a batch asks of one call: the records that named it, and the retry messages'
/// claims on its chain.
#[derive(Default)]
struct Work {
    items: Vec<String>,
    holds: Vec<Hold>,
}

/// A retry message's claim on its call's chain of messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hold {
    /// A message without a time.
    Any,
    /// A message queued for the attempt due at this time.
    At(DateTime<Utc>),
}

impl Notifier {
    /// Delivers every call the batch names, each once however many records name it, all
    /// at once (a slow receiver holds up only its own call). Records whose call could
    /// not be read or written, or could not be queued again, are reported for Lambda to
    /// hand in again.
    pub async fn handle(&self, batch: Batch) -> BatchResponse {
        let mut work: BTreeMap<Uuid, Work> = BTreeMap::new();
        for record in batch.records {
            match record {
                Record::Stream {
                    event_name,
                    dynamodb,
                } => {
                    // A removed item (its TTL) has nothing left to deliver.
                    if event_name == "REMOVE" {
                        continue;
                    }
                    // The table also holds idempotency#… and throttle#… items.
                    let Some(id) = dynamodb
                        .keys
                        .get("call_id")
                        .and_then(|key| key.s.as_deref())
                        .and_then(|key| Uuid::try_parse(key).ok())
                    else {
                        continue;
                    };
                    work.entry(id)
                        .or_default()
                        .items
                        .push(dynamodb.sequence_number);
                }
                Record::Queue { message_id, body } => {
                    let message = match serde_json::from_str::<RetryMessage>(&body) {
                        Ok(message) => message,
                        Err(e) => {
                            // Handing it in again would not make it readable.
                            warn!(message_id, error = %e, "retry message dropped: not a call");
                            continue;
                        }
                    };
                    let entry = work.entry(message.call_id).or_default();
                    entry.items.push(message_id);
                    entry.holds.push(message.due_at.map_or(Hold::Any, Hold::At));
                }
            }
        }
        let outcomes =
            futures_util::future::join_all(work.into_iter().map(|(id, work)| async move {
                let result = self.deliver(id, &work.holds).await;
                (id, work.items, result)
            }))
            .await;
        let mut response = BatchResponse::default();
        for (id, items, result) in outcomes {
            if let Err(e) = result {
                warn!(call_id = %id, error = %e, "webhook delivery failed; the records are handed in again");
                response.batch_item_failures.extend(
                    items
                        .into_iter()
                        .map(|item_identifier| ItemFailure { item_identifier }),
                );
            }
        }
        response
    }

    /// Delivers call `id`'s due events, then queues it for its next attempt if this
    /// invocation holds its chain of retry messages (see the module's notes).
    async fn deliver(&self, id: Uuid, holds: &[Hold]) -> Result<(), NotifyError> {
        let watched = Arc::new(Watched {
            calls: self.store.clone(),
            wrote: AtomicBool::new(false),
        });
        let deliverer = Deliverer::new(
            watched.clone(),
            self.store.clone(),
            self.sender.clone(),
            self.max_age,
            self.metrics.clone(),
        );
        let next = deliverer
            .deliver_call(id)
            .await
            .map_err(|e| NotifyError::Store(e.to_string()))?;
        let owed = lock(&self.owed).remove(&id);
        let Some(next) = next else {
            return Ok(());
        };
        if !queues_again(watched.wrote.load(Ordering::SeqCst), owed, holds, next) {
            debug!(call_id = %id, next = %next, "another invocation holds the retry");
            return Ok(());
        }
        if let Err(e) = self.queue.send(id, next, Utc::now()).await {
            lock(&self.owed).insert(id);
            return Err(e);
        }
        debug!(call_id = %id, next = %next, "queued for the next attempt");
        Ok(())
    }
}

/// Whether an invocation queues its call for the attempt due at `next`: when it recorded
/// an attempt itself (`wrote`), owes a message it failed to queue before, or handles a
/// retry message queued for that very attempt (which arrived early) or for none.
fn queues_again(wrote: bool, owed: bool, holds: &[Hold], next: DateTime<Utc>) -> bool {
    wrote
        || owed
        || holds.iter().any(|hold| match hold {
            Hold::Any => true,
            Hold::At(due) => *due == next,
        })
}

/// `DelaySeconds` for an attempt due at `due`: rounded up, so that the message does not
/// come before it is due; at most SQS's 15 minutes (a longer wait takes several hops).
pub fn delay_seconds(due: DateTime<Utc>, now: DateTime<Utc>) -> i32 {
    let millis = (due - now).num_milliseconds();
    let seconds = millis.div_euclid(1000) + i64::from(millis.rem_euclid(1000) > 0);
    i32::try_from(seconds.clamp(0, i64::from(MAX_DELAY_SECONDS))).unwrap_or(MAX_DELAY_SECONDS)
}

#[derive(Debug, thiserror::Error)]
enum NotifyError {
    #[error("store: {0}")]
    Store(String),
    #[error("retry queue: {0}")]
    Queue(String),
}

/// The retry queue (SQS).
struct RetryQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl RetryQueue {
    async fn send(
        &self,
        id: Uuid,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), NotifyError> {
        let body = serde_json::to_string(&RetryMessage {
            call_id: id,
            due_at: Some(due),
        })
        .map_err(|e| NotifyError::Queue(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .delay_seconds(delay_seconds(due, now))
            .send()
            .await
            .map_err(|e| {
                NotifyError::Queue(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
            })?;
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The call store, noting whether a delivery outcome was written through it: that is
/// how an invocation knows it made an attempt (a send, or an event that could not be
/// signed) and so holds the call's next retry message.
struct Watched {
    calls: Arc<dyn Store>,
    wrote: AtomicBool,
}

#[async_trait]
impl CallReads for Watched {
    async fn get_call(&self, id: Uuid) -> Result<Option<Call>, StoreError> {
        self.calls.get_call(id).await
    }

    async fn calls_of(
        &self,
        owner: &str,
        before: Option<PageCursor>,
        limit: usize,
    ) -> Result<CallPage, StoreError> {
        self.calls.calls_of(owner, before, limit).await
    }
}

#[async_trait]
impl CallStore for Watched {
    async fn insert_call(&self, call: &Call) -> Result<(), StoreError> {
        self.calls.insert_call(call).await
    }

    async fn transition(
        &self,
        id: Uuid,
        change: &Transition,
    ) -> Result<TransitionResult, StoreError> {
        self.calls.transition(id, change).await
    }

    async fn annotate(&self, id: Uuid, note: &Annotation) -> Result<Option<Call>, StoreError> {
        self.calls.annotate(id, note).await
    }

    async fn claim_idempotency_key(
        &self,
        owner: &str,
        key: &str,
        binding: &IdempotencyBinding,
        ttl_seconds: i64,
    ) -> Result<Option<IdempotencyBinding>, StoreError> {
        self.calls
            .claim_idempotency_key(owner, key, binding, ttl_seconds)
            .await
    }

    async fn idempotency_binding(
        &self,
        owner: &str,
        key: &str,
    ) -> Result<Option<IdempotencyBinding>, StoreError> {
        self.calls.idempotency_binding(owner, key).await
    }
}

#[async_trait]
impl CallBacklog for Watched {
    async fn active_calls(&self) -> Result<Vec<Call>, StoreError> {
        self.calls.active_calls().await
    }

    async fn record_delivery(
        &self,
        id: Uuid,
        sequence: u32,
        delivery: &Delivery,
    ) -> Result<Option<Call>, StoreError> {
        let written = self.calls.record_delivery(id, sequence, delivery).await?;
        if written.is_some() {
            self.wrote.store(true, Ordering::SeqCst);
        }
        Ok(written)
    }

    async fn claim_due_calls(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: usize,
    ) -> Result<Vec<Uuid>, StoreError> {
        self.calls.claim_due_calls(now, lease, limit).await
    }

    async fn release_call(&self, id: Uuid) -> Result<(), StoreError> {
        self.calls.release_call(id).await
    }

    async fn due_calls(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<QueuedCall>, StoreError> {
        self.calls.due_calls(now, limit).await
    }

    async fn due_calls_of(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<QueuedCall>, StoreError> {
        self.calls.due_calls_of(owner, now, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap_or_default()
    }

    #[test]
    fn the_delay_is_rounded_up_and_kept_within_what_sqs_allows() {
        let now = at(0);
        assert_eq!(delay_seconds(at(0), now), 0);
        assert_eq!(delay_seconds(at(-30), now), 0);
        assert_eq!(
            delay_seconds(now + chrono::Duration::milliseconds(300), now),
            1
        );
        assert_eq!(delay_seconds(at(4), now), 4);
        assert_eq!(delay_seconds(at(3600), now), 900);
    }

    #[test]
    fn only_the_attempt_writer_or_the_chains_own_message_queues_a_call_again() {
        let next = at(60);
        // A stream record of someone else's write: the writer queued already.
        assert!(!queues_again(false, false, &[], next));
        // The invocation that recorded an attempt.
        assert!(queues_again(true, false, &[], next));
        // A message that came early for its attempt goes round again.
        assert!(queues_again(false, false, &[Hold::At(next)], next));
        // A message whose attempt someone else made meanwhile ends.
        assert!(!queues_again(false, false, &[Hold::At(at(30))], next));
        // A message without a time, and a message owed since a failed send.
        assert!(queues_again(false, false, &[Hold::Any], next));
        assert!(queues_again(false, true, &[], next));
    }

    #[test]
    fn stream_and_queue_records_are_read_and_other_keys_are_not_calls() {
        let id = Uuid::new_v4();
        let batch: Batch = serde_json::from_value(serde_json::json!({
            "Records": [
                {"eventSource": "aws:dynamodb", "eventName": "MODIFY",
                 "dynamodb": {"Keys": {"call_id": {"S": id.to_string()}}, "SequenceNumber": "1"}},
                {"eventSource": "aws:dynamodb", "eventName": "INSERT",
                 "dynamodb": {"Keys": {"call_id": {"S": "throttle#user#admin"}}, "SequenceNumber": "2"}},
                {"eventSource": "aws:sqs", "messageId": "m-1",
                 "body": format!("{{\"call_id\":\"{id}\"}}")},
            ]
        }))
        .expect("a batch");
        assert_eq!(batch.records.len(), 3);
        let Record::Queue { body, .. } = &batch.records[2] else {
            panic!("an SQS record");
        };
        let message: RetryMessage = serde_json::from_str(body).expect("a retry message");
        assert_eq!((message.call_id, message.due_at), (id, None));
    }
}
