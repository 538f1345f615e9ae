//! The DynamoDB store. Calls are keyed by `call_id`; three sparse or secondary indexes
//! serve listing (`owner` + `created_at`, newest first), reconciliation (`active`,
//! present only while a call is not final) and the queue (`queue` + `queue_at`, present
//! only while a call is `queued`). `expires_at` carries the DynamoDB TTL. Pacing states
//! live in the calls table too, under `pace#` keys (see [`pacing`]).
//!
//! A change to a call is computed by the domain, not by an update expression: the
//! store reads the record, applies [`Transition::apply`] or [`Annotation::apply`] to it,
//! and puts the whole new record back on the condition that its `version` is still the
//! one read (optimistic concurrency; a lost race reads again). That is what lets the
//! event a change reports (its sequence, the status before, the call as it is after)
//! go into the same atomic write as the change: the webhook outbox. Two writers still
//! never reverse each other: the loser re-applies the forward-only rule to the winner's
//! record.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
pub use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::AsyncSleep;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ReturnValue, ScalarAttributeType, StreamSpecification,
    StreamViewType, TimeToLiveSpecification,
};
use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use dialer_core::domain::validation::{
    CallerId, Context, Extension, Media, PhoneNumber, Variables,
};
use dialer_core::domain::webhook::{CallEvent, Delivery};
use dialer_core::domain::{
    Annotation, Call, CallMode, CallStatus, FailureCount, FailureReason, Transition, User,
    UserLimits,
};
use dialer_core::store::{
    CallBacklog, CallPage, CallReads, CallStore, IdempotencyBinding, PageCursor, QueuedCall,
    StoreError, ThrottleStore, TransitionResult, UserReads, UserStore,
};

pub mod pacing;

pub const OWNER_INDEX: &str = "owner-created-index";
pub const ACTIVE_INDEX: &str = "active-index";
/// The queue: a sparse index of the `queued` calls, partition `queue` (always "1"),
/// sorted by `queue_at` (see [`queue_at`]), projecting what [`QueuedCall`] needs.
pub const QUEUE_INDEX: &str = "queue-index";
/// The attributes [`QUEUE_INDEX`] projects besides its keys and the table's.
pub const QUEUE_INDEX_ATTRIBUTES: [&str; 4] =
    ["owner", "attempt_number", "created_at", "queued_until"];
/// Each user's queue: the same calls partitioned by `owner`, in the same order; sparse
/// like [`QUEUE_INDEX`] since only a queued call has `queue_at`.
pub const OWNER_QUEUE_INDEX: &str = "owner-queue-index";
/// The attributes [`OWNER_QUEUE_INDEX`] projects besides its keys and the table's.
pub const OWNER_QUEUE_INDEX_ATTRIBUTES: [&str; 3] =
    ["attempt_number", "created_at", "queued_until"];

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    calls_table: String,
    users_table: String,
    retention_days: i64,
    pacing_memo: pacing::PacingMemo,
    /// Items the call queries have read (DynamoDB's `ScannedCount`), for
    /// [`DynamoStore::items_read`].
    items_read: Arc<AtomicU64>,
}

type Item = HashMap<String, AttributeValue>;

/// How many times a call write that lost a race starts over before giving up.
const WRITE_ATTEMPTS: u32 = 10;

struct Versioned {
    call: Call,
    version: i64,
    expires_at: Option<AttributeValue>,
}

/// What [`DynamoStore::modify_call`] did.
enum Modified {
    NotFound,
    /// The domain refused the change; the record as it is.
    Unchanged(Call),
    Written(Call),
}

impl Modified {
    fn written(self) -> Option<Call> {
        match self {
            Modified::Written(call) => Some(call),
            Modified::NotFound | Modified::Unchanged(_) => None,
        }
    }
}

impl DynamoStore {
    pub fn new(
        client: Client,
        calls_table: String,
        users_table: String,
        retention_days: i64,
    ) -> Self {
        Self {
            client,
            calls_table,
            users_table,
            retention_days,
            pacing_memo: Default::default(),
            items_read: Arc::default(),
        }
    }

    /// How many items the call queries (pages, the queue, the active calls) have read
    /// so far: what a read costs. Tests use it to show that a page costs its length
    /// however many calls a user has.
    pub fn items_read(&self) -> u64 {
        self.items_read.load(Ordering::Relaxed)
    }

    /// Creates both tables with their indexes ([`OWNER_INDEX`], [`ACTIVE_INDEX`],
    /// [`QUEUE_INDEX`], [`OWNER_QUEUE_INDEX`]) and TTL, and the calls table's stream
    /// (what feeds webhook delivery in AWS), for tests and first-time local setup; in
    /// AWS the stack creates them.
    pub async fn create_tables(&self) -> Result<(), StoreError> {
        let s = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(unavailable)
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(unavailable)
        };
        let queue_index = |name: &str,
                           pk: &str,
                           attributes: &[&str]|
         -> Result<GlobalSecondaryIndex, StoreError> {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(pk, KeyType::Hash)?)
                .key_schema(key("queue_at", KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::Include)
                        .set_non_key_attributes(Some(
                            attributes.iter().map(|a| (*a).to_owned()).collect(),
                        ))
                        .build(),
                )
                .build()
                .map_err(unavailable)
        };
        let index = |name: &str, pk: &str| -> Result<GlobalSecondaryIndex, StoreError> {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(pk, KeyType::Hash)?)
                .key_schema(key("created_at", KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .map_err(unavailable)
        };
        self.client
            .create_table()
            .table_name(&self.calls_table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(s("call_id")?)
            .attribute_definitions(s("owner")?)
            .attribute_definitions(s("created_at")?)
            .attribute_definitions(s("active")?)
            .attribute_definitions(s("queue")?)
            .attribute_definitions(s("queue_at")?)
            .key_schema(key("call_id", KeyType::Hash)?)
            .global_secondary_indexes(index(OWNER_INDEX, "owner")?)
            .global_secondary_indexes(index(ACTIVE_INDEX, "active")?)
            .global_secondary_indexes(queue_index(QUEUE_INDEX, "queue", &QUEUE_INDEX_ATTRIBUTES)?)
            .global_secondary_indexes(queue_index(
                OWNER_QUEUE_INDEX,
                "owner",
                &OWNER_QUEUE_INDEX_ATTRIBUTES,
            )?)
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewAndOldImages)
                    .build()
                    .map_err(unavailable)?,
            )
            .send()
            .await
            .map_err(unavailable)?;
        self.client
            .update_time_to_live()
            .table_name(&self.calls_table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name("expires_at")
                    .enabled(true)
                    .build()
                    .map_err(unavailable)?,
            )
            .send()
            .await
            .map_err(unavailable)?;
        self.client
            .create_table()
            .table_name(&self.users_table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(s("username")?)
            .key_schema(key("username", KeyType::Hash)?)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    fn expires_at(&self, created: DateTime<Utc>) -> AttributeValue {
        n((created + chrono::Duration::days(self.retention_days)).timestamp())
    }

    /// A conditional `PutItem`: false when the condition did not hold.
    async fn put_if(&self, table: &str, item: Item, condition: &str) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            .condition_expression(condition)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(false)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// A call as stored, with the version its next write must find, and its TTL.
    async fn read_versioned(&self, id: Uuid) -> Result<Option<Versioned>, StoreError> {
        let item = self.read_slot(&id.to_string()).await?;
        let Some(item) = item.filter(|item| item.contains_key("status")) else {
            return Ok(None);
        };
        Ok(Some(Versioned {
            call: call_from_item(&item)?,
            // Records written before versions existed count as version 0.
            version: number(&item, "version").unwrap_or(0),
            expires_at: item.get("expires_at").cloned(),
        }))
    }

    /// Applies `change` to the stored call and writes the result, if `change` says it
    /// changed anything, unless another write came first; then it starts over from the
    /// record that write left.
    async fn modify_call(
        &self,
        id: Uuid,
        change: impl Fn(&mut Call) -> bool + Send + Sync,
    ) -> Result<Modified, StoreError> {
        for attempt in 0..WRITE_ATTEMPTS {
            let Some(read) = self.read_versioned(id).await? else {
                return Ok(Modified::NotFound);
            };
            let mut next = read.call.clone();
            if !change(&mut next) {
                return Ok(Modified::Unchanged(read.call));
            }
            let mut item = call_to_item(&next)?;
            item.insert(
                "expires_at".into(),
                read.expires_at
                    .unwrap_or_else(|| self.expires_at(next.created_at)),
            );
            item.insert("version".into(), n(read.version + 1));
            // `attribute_exists(call_id)`: a call removed meanwhile (its TTL) is not
            // brought back.
            let condition = if read.version == 0 {
                "attribute_exists(call_id) AND (attribute_not_exists(version) OR version = :version)"
            } else {
                "version = :version"
            };
            let result = self
                .client
                .put_item()
                .table_name(&self.calls_table)
                .set_item(Some(item))
                .condition_expression(condition)
                .expression_attribute_values(":version", n(read.version))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(Modified::Written(next)),
                Err(SdkError::ServiceError(e))
                    if e.err().is_conditional_check_failed_exception() =>
                {
                    if attempt + 1 < WRITE_ATTEMPTS {
                        self.back_off(attempt).await;
                    }
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(StoreError::unavailable(format!(
            "call {id} kept changing under concurrent writes"
        )))
    }

    /// A random wait before trying again, its range doubling with each lost race (10 ms
    /// up to 640 ms), so that writers who collided spread out instead of colliding
    /// again in step.
    async fn back_off(&self, attempt: u32) {
        let Some(sleep) = self.client.config().sleep_impl() else {
            return;
        };
        let ceiling = 10_u128 << attempt.min(6);
        // A v4 UUID is random enough for a jitter and spares this crate an RNG.
        let millis = Uuid::new_v4().as_u128() % ceiling;
        sleep
            .sleep(std::time::Duration::from_millis(millis as u64))
            .await;
    }

    async fn query_calls(
        &self,
        index: &str,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
        newest_first: bool,
        limit: Option<i32>,
        mut start: Option<Item>,
    ) -> Result<Vec<Call>, StoreError> {
        let mut calls = Vec::new();
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.calls_table)
                .index_name(index)
                .key_condition_expression(condition)
                .expression_attribute_names(
                    "#pk",
                    if index == OWNER_INDEX {
                        "owner"
                    } else {
                        "active"
                    },
                )
                .scan_index_forward(!newest_first)
                .set_exclusive_start_key(start.take());
            for (name, value) in &values {
                request = request.expression_attribute_values(*name, value.clone());
            }
            if let Some(limit) = limit {
                request = request.limit(limit);
            }
            let output = request.send().await.map_err(unavailable)?;
            self.items_read.fetch_add(
                u64::try_from(output.scanned_count()).unwrap_or(0),
                Ordering::Relaxed,
            );
            for item in output.items() {
                calls.push(call_from_item(item)?);
            }
            match output.last_evaluated_key {
                Some(key) if limit.is_none() || calls.len() < limit.unwrap_or(0) as usize => {
                    start = Some(key)
                }
                _ => return Ok(calls),
            }
        }
    }
}

#[async_trait]
impl CallReads for DynamoStore {
    async fn get_call(&self, id: Uuid) -> Result<Option<Call>, StoreError> {
        self.read_slot(&id.to_string())
            .await?
            .as_ref()
            .filter(|item| item.contains_key("status"))
            .map(call_from_item)
            .transpose()
    }

    async fn calls_of(
        &self,
        owner: &str,
        before: Option<PageCursor>,
        limit: usize,
    ) -> Result<CallPage, StoreError> {
        // After a call: the index resumes right after that very item (its key is what
        // DynamoDB itself would hand back as the page's end), so calls of the same
        // millisecond are neither skipped nor repeated. Before a time: a plain range.
        let (condition, mut values, start) = match before {
            Some(cursor) if cursor.id.is_nil() => (
                "#pk = :owner AND created_at < :before",
                vec![(":before", s(timestamp(cursor.created_at)))],
                None,
            ),
            Some(cursor) => (
                "#pk = :owner AND created_at <= :before",
                vec![(":before", s(timestamp(cursor.created_at)))],
                Some(HashMap::from([
                    ("call_id".to_owned(), s(cursor.id.to_string())),
                    ("owner".to_owned(), s(owner.to_owned())),
                    ("created_at".to_owned(), s(timestamp(cursor.created_at))),
                ])),
            ),
            None => ("#pk = :owner", Vec::new(), None),
        };
        values.push((":owner", s(owner.to_owned())));
        let want = i32::try_from(limit + 1).unwrap_or(i32::MAX);
        let calls = self
            .query_calls(OWNER_INDEX, condition, values, true, Some(want), start)
            .await?;
        Ok(CallPage::from_overfetch(calls, limit))
    }
}

#[async_trait]
impl CallStore for DynamoStore {
    async fn insert_call(&self, call: &Call) -> Result<(), StoreError> {
        let item = new_call_item(call, self.expires_at(call.created_at))?;
        if self
            .put_if(&self.calls_table, item, "attribute_not_exists(call_id)")
            .await?
        {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    async fn transition(
        &self,
        id: Uuid,
        change: &Transition,
    ) -> Result<TransitionResult, StoreError> {
        Ok(
            match self.modify_call(id, |call| change.apply(call)).await? {
                Modified::Written(call) => TransitionResult::Applied(call),
                Modified::Unchanged(call) => TransitionResult::Refused(call),
                Modified::NotFound => TransitionResult::NotFound,
            },
        )
    }

    async fn annotate(&self, id: Uuid, note: &Annotation) -> Result<Option<Call>, StoreError> {
        Ok(self
            .modify_call(id, |call| note.apply(call))
            .await?
            .written())
    }

    async fn claim_idempotency_key(
        &self,
        owner: &str,
        key: &str,
        binding: &IdempotencyBinding,
        ttl_seconds: i64,
    ) -> Result<Option<IdempotencyBinding>, StoreError> {
        // Bindings live in the calls table under a key no call id can take; they carry
        // no `status`, `owner` or `active`, so no index and no call read sees them.
        let slot = idempotency_slot(owner, key);
        let now = Utc::now().timestamp();
        let result = self
            .client
            .put_item()
            .table_name(&self.calls_table)
            .item("call_id", s(slot.clone()))
            .item("target", s(binding.call_id.to_string()))
            .item("fingerprint", s(binding.fingerprint.clone()))
            .item("expires_at", n(now + ttl_seconds))
            .condition_expression("attribute_not_exists(call_id) OR expires_at < :now")
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(self.read_slot(&slot).await?.as_ref().and_then(binding_of))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// A lapsed binding may still be on record until the TTL sweeps it: its
    /// `expires_at` decides.
    async fn idempotency_binding(
        &self,
        owner: &str,
        key: &str,
    ) -> Result<Option<IdempotencyBinding>, StoreError> {
        let now = Utc::now().timestamp();
        let item = self.read_slot(&idempotency_slot(owner, key)).await?;
        Ok(item
            .filter(|i| number(i, "expires_at").is_some_and(|at| at >= now))
            .as_ref()
            .and_then(binding_of))
    }
}

/// An idempotency binding's item; one written before fingerprints were kept has none.
fn binding_of(item: &Item) -> Option<IdempotencyBinding> {
    Some(IdempotencyBinding {
        call_id: Uuid::try_parse(&text(item, "target")?).ok()?,
        fingerprint: text(item, "fingerprint").unwrap_or_default(),
    })
}

#[async_trait]
impl CallBacklog for DynamoStore {
    async fn active_calls(&self) -> Result<Vec<Call>, StoreError> {
        self.query_calls(
            ACTIVE_INDEX,
            "#pk = :active",
            vec![(":active", s("1".to_owned()))],
            false,
            None,
            None,
        )
        .await
    }

    async fn record_delivery(
        &self,
        id: Uuid,
        sequence: u32,
        delivery: &Delivery,
    ) -> Result<Option<Call>, StoreError> {
        let written = self
            .modify_call(id, |call| call.record_delivery(sequence, delivery))
            .await?;
        Ok(written.written())
    }

    /// None: in AWS the calls table's stream (see [`DynamoStore::create_tables`]) feeds
    /// the `notify` function, which delivers each call's events as their writes arrive,
    /// so nothing polls this table for due calls.
    async fn claim_due_calls(
        &self,
        _now: DateTime<Utc>,
        _lease: chrono::Duration,
        _limit: usize,
    ) -> Result<Vec<Uuid>, StoreError> {
        Ok(Vec::new())
    }

    /// Nothing to release: [`DynamoStore::claim_due_calls`] claims none.
    async fn release_call(&self, _id: Uuid) -> Result<(), StoreError> {
        Ok(())
    }

    /// A range of [`QUEUE_INDEX`], which holds the `queued` calls alone, in queue order.
    /// The index is eventually consistent: a call just claimed may still be listed (the
    /// claim's conditional write settles it) and one just queued may wait a poll.
    async fn due_calls(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<QueuedCall>, StoreError> {
        self.queue_range(QUEUE_INDEX, "queue", "1", now, limit)
            .await
    }

    /// A range of [`OWNER_QUEUE_INDEX`]: the user's own queue, as consistent as
    /// [`QUEUE_INDEX`].
    async fn due_calls_of(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<QueuedCall>, StoreError> {
        self.queue_range(OWNER_QUEUE_INDEX, "owner", owner, now, limit)
            .await
    }
}

impl DynamoStore {
    /// Up to `limit` calls due by `now` from one partition of a queue index.
    async fn queue_range(
        &self,
        index: &str,
        partition: &str,
        value: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<QueuedCall>, StoreError> {
        let mut due = Vec::new();
        if limit == 0 {
            return Ok(due);
        }
        let mut start: Option<Item> = None;
        loop {
            let want = limit - due.len();
            let output = self
                .client
                .query()
                .table_name(&self.calls_table)
                .index_name(index)
                .key_condition_expression("#pk = :partition AND queue_at <= :upper")
                .expression_attribute_names("#pk", partition)
                .expression_attribute_values(":partition", s(value.to_owned()))
                .expression_attribute_values(":upper", s(queue_upper_bound(now)))
                .scan_index_forward(true)
                .limit(i32::try_from(want).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            for item in output.items() {
                let queued = queued_call_from_item(item)?;
                // The bound is by the millisecond; the time itself decides.
                if queued.due_at <= now {
                    due.push(queued);
                }
            }
            match output.last_evaluated_key {
                Some(key) if due.len() < limit => start = Some(key),
                _ => break,
            }
        }
        due.sort_by_key(QueuedCall::order_key);
        due.truncate(limit);
        Ok(due)
    }
}

impl DynamoStore {
    /// The item under `key` in the calls table (a call, an idempotency binding, a
    /// throttle count, a pacing state), read consistently.
    async fn read_slot(&self, key: &str) -> Result<Option<Item>, StoreError> {
        self.read_item(&self.calls_table, "call_id", key).await
    }

    /// One item by its partition key, read consistently: what every point read of
    /// this store is.
    async fn read_item(
        &self,
        table: &str,
        key_name: &str,
        key: &str,
    ) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(table)
            .key(key_name, s(key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output.item)
    }
}

fn idempotency_slot(owner: &str, key: &str) -> String {
    format!("idempotency#{owner}#{key}")
}

/// The queue's sort key: (due time, creation time, call id) as fixed-width text, so
/// that text order is queue order. A call queued with no `queued_until` is due at its
/// creation, as [`QueuedCall::of`] has it.
fn queue_at(call: &Call) -> String {
    let due = call.queued_until.unwrap_or(call.created_at);
    format!(
        "{}#{}#{}",
        queue_millis(due),
        queue_millis(call.created_at),
        call.id
    )
}

/// The highest [`queue_at`] of a call due in `now`'s millisecond: `~` sorts after the
/// `#` that follows every key's first field.
fn queue_upper_bound(now: DateTime<Utc>) -> String {
    format!("{}~", queue_millis(now))
}

fn queue_millis(at: DateTime<Utc>) -> String {
    format!("{:015}", at.timestamp_millis().max(0))
}

fn queued_call_from_item(item: &Item) -> Result<QueuedCall, StoreError> {
    let time = |key: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
        text(item, key)
            .map(|t| {
                DateTime::parse_from_rfc3339(&t)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| corrupt(key))
            })
            .transpose()
    };
    let created_at = time("created_at")?.ok_or_else(|| corrupt("created_at"))?;
    Ok(QueuedCall {
        id: text(item, "call_id")
            .and_then(|id| Uuid::try_parse(&id).ok())
            .ok_or_else(|| corrupt("call_id"))?,
        owner: text(item, "owner").ok_or_else(|| corrupt("owner"))?,
        attempt_number: number(item, "attempt_number")
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or(1),
        due_at: time("queued_until")?.unwrap_or(created_at),
        created_at,
    })
}

#[async_trait]
impl UserReads for DynamoStore {
    async fn get_user(&self, username: &str) -> Result<Option<User>, StoreError> {
        self.read_item(&self.users_table, "username", username)
            .await?
            .as_ref()
            .map(user_from_item)
            .transpose()
    }
}

#[async_trait]
impl UserStore for DynamoStore {
    async fn insert_user(&self, user: &User) -> Result<(), StoreError> {
        if self
            .put_if(
                &self.users_table,
                user_to_item(user),
                "attribute_not_exists(username)",
            )
            .await?
        {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    async fn update_user(&self, user: &User) -> Result<bool, StoreError> {
        self.put_if(
            &self.users_table,
            user_to_item(user),
            "attribute_exists(username)",
        )
        .await
    }

    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let mut users = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let output = self
                .client
                .scan()
                .table_name(&self.users_table)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            for item in output.items() {
                users.push(user_from_item(item)?);
            }
            match output.last_evaluated_key {
                Some(key) => start = Some(key),
                None => break,
            }
        }
        users.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(users)
    }
}

/// Login-throttle counts live in the calls table under a key no call id can take, like
/// idempotency bindings, with the table's TTL on `expires_at`. Each change is one
/// conditional write: an `UpdateItem` that adds to a live count, or, when there is none
/// (never made, or lapsed), a `PutItem` that starts one only if there still is none.
#[async_trait]
impl ThrottleStore for DynamoStore {
    async fn failures(
        &self,
        key: &str,
        now: DateTime<Utc>,
        window: chrono::Duration,
    ) -> Result<Option<FailureCount>, StoreError> {
        Ok(self
            .read_slot(&throttle_slot(key))
            .await?
            .as_ref()
            .and_then(failure_count_from_item)
            .filter(|count| count.last_at + window > now))
    }

    async fn record_failure(
        &self,
        key: &str,
        now: DateTime<Utc>,
        window: chrono::Duration,
    ) -> Result<FailureCount, StoreError> {
        let slot = throttle_slot(key);
        let cutoff = n((now - window).timestamp_millis());
        let expires = n((now + window).timestamp() + 1);
        // Two rounds cover every race: a count that lapses or appears between the two
        // writes sends the loser back to the other branch once.
        for _ in 0..3 {
            let added = self
                .client
                .update_item()
                .table_name(&self.calls_table)
                .key("call_id", s(slot.clone()))
                .update_expression(
                    "SET failures = failures + :one, last_at = :now, expires_at = :expires",
                )
                .condition_expression("last_at > :cutoff")
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":now", n(now.timestamp_millis()))
                .expression_attribute_values(":expires", expires.clone())
                .expression_attribute_values(":cutoff", cutoff.clone())
                .return_values(ReturnValue::AllNew)
                .send()
                .await;
            match added {
                Ok(output) => {
                    return output
                        .attributes
                        .as_ref()
                        .and_then(failure_count_from_item)
                        .ok_or_else(|| corrupt("failures"));
                }
                Err(SdkError::ServiceError(e))
                    if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)) => {}
                Err(e) => return Err(unavailable(e)),
            }
            let first = HashMap::from([
                ("call_id".to_owned(), s(slot.clone())),
                ("failures".to_owned(), n(1)),
                ("last_at".to_owned(), n(now.timestamp_millis())),
                ("expires_at".to_owned(), expires.clone()),
            ]);
            let started = self
                .client
                .put_item()
                .table_name(&self.calls_table)
                .set_item(Some(first))
                .condition_expression("attribute_not_exists(call_id) OR last_at <= :cutoff")
                .expression_attribute_values(":cutoff", cutoff.clone())
                .send()
                .await;
            match started {
                Ok(_) => {
                    return Ok(FailureCount {
                        failures: 1,
                        last_at: now,
                    });
                }
                Err(SdkError::ServiceError(e))
                    if e.err().is_conditional_check_failed_exception() => {}
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(StoreError::unavailable(
            "a login-failure count kept changing under concurrent writes",
        ))
    }

    async fn clear_failures(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.calls_table)
            .key("call_id", s(throttle_slot(key)))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

fn throttle_slot(key: &str) -> String {
    format!("throttle#{key}")
}

fn failure_count_from_item(item: &Item) -> Option<FailureCount> {
    Some(FailureCount {
        failures: u32::try_from(number(item, "failures")?).ok()?,
        last_at: DateTime::from_timestamp_millis(number(item, "last_at")?)?,
    })
}

/// The size DynamoDB counts for `call`'s item as this store writes it (the measure of
/// its 400 KB item limit and of the capacity a write takes): each attribute's name and
/// value, by DynamoDB's published rules. The benchmark of a queued call's cost reads it.
pub fn stored_item_size(call: &Call) -> Result<usize, StoreError> {
    // A time of the same width as the retention's expiry.
    let item = new_call_item(call, n(call.created_at.timestamp()))?;
    Ok(item
        .iter()
        .map(|(name, value)| name.len() + value_size(value))
        .sum())
}

/// A value's size as DynamoDB counts it: text and binary by their bytes, a number by
/// its significant digits (two a byte, plus one), a list or map 3 bytes plus each
/// element (and each key's name), 1 byte an element of overhead.
fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(text) => text.len(),
        AttributeValue::N(number) => number_size(number),
        AttributeValue::B(blob) => blob.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(items) => items.iter().map(String::len).sum(),
        AttributeValue::Ns(items) => items.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(items) => items.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(items) => 3 + items.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        AttributeValue::M(map) => {
            3 + map
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
        _ => 0,
    }
}

fn number_size(number: &str) -> usize {
    let digits = number
        .trim_start_matches('-')
        .replace('.', "")
        .trim_start_matches('0')
        .trim_end_matches('0')
        .len();
    digits.max(1).div_ceil(2) + 1
}

/// A new call's item as `insert_call` writes it: the call, its expiry and version 0.
fn new_call_item(call: &Call, expires_at: AttributeValue) -> Result<Item, StoreError> {
    let mut item = call_to_item(call)?;
    item.insert("expires_at".into(), expires_at);
    item.insert("version".into(), n(0));
    Ok(item)
}

fn call_to_item(call: &Call) -> Result<Item, StoreError> {
    let mut item: Item = HashMap::new();
    let mut put = |k: &str, v: AttributeValue| {
        item.insert(k.to_owned(), v);
    };
    put("call_id", s(call.id.to_string()));
    put("owner", s(call.owner.clone()));
    put("phone_number", s(call.phone_number.to_string()));
    put("status", s(call.status.as_str().to_owned()));
    put("mode", s(call.mode.as_str().to_owned()));
    put("channel", s(call.channel.clone()));
    put("context", s(call.context.to_string()));
    put("extension", s(call.extension.to_string()));
    put("priority", n(i64::from(call.priority)));
    put("timeout_ms", n(call.timeout_ms as i64));
    put("gather_dtmf", AttributeValue::Bool(call.gather_dtmf));
    put("attempt_number", n(i64::from(call.attempt_number)));
    put("created_at", s(timestamp(call.created_at)));
    if call.is_active() {
        put("active", s("1".to_owned()));
    }
    if call.status == CallStatus::Queued {
        put("queue", s("1".to_owned()));
        put("queue_at", s(queue_at(call)));
    }
    if call.paced {
        put("paced", AttributeValue::Bool(true));
    }
    if !call.variables.is_empty() {
        put(
            "variables",
            AttributeValue::M(
                call.variables
                    .as_map()
                    .iter()
                    .map(|(k, v)| (k.clone(), s(v.clone())))
                    .collect(),
            ),
        );
    }
    if !call.media.is_empty() {
        put(
            "media",
            AttributeValue::L(call.media.iter().map(|m| s(m.to_string())).collect()),
        );
    }
    if !call.dtmf.is_empty() {
        put(
            "dtmf",
            AttributeValue::L(call.dtmf.chars().map(|c| s(c.to_string())).collect()),
        );
    }
    let optional = [
        (
            "caller_id",
            call.caller_id.as_ref().map(|c| s(c.to_string())),
        ),
        ("max_duration_ms", call.max_duration_ms.map(|m| n(m as i64))),
        ("dialed_at", call.dialed_at.map(timestamp).map(s)),
        ("ringing_at", call.ringing_at.map(timestamp).map(s)),
        ("answered_at", call.answered_at.map(timestamp).map(s)),
        ("ended_at", call.ended_at.map(timestamp).map(s)),
        (
            "failure_reason",
            call.failure_reason.as_ref().map(|r| s(r.to_text())),
        ),
        ("cause", call.cause.map(n)),
        ("cause_txt", call.cause_txt.clone().map(s)),
        ("dialstatus", call.dialstatus.clone().map(s)),
        (
            "cancel_requested_at",
            call.cancel_requested_at.map(timestamp).map(s),
        ),
        (
            "originate_unconfirmed_at",
            call.originate_unconfirmed_at.map(timestamp).map(s),
        ),
        (
            "media_failed",
            (!call.media_failed.is_empty()).then(|| AttributeValue::Ss(call.media_failed.clone())),
        ),
        ("send_at", call.send_at.map(timestamp).map(s)),
        ("queued_until", call.queued_until.map(timestamp).map(s)),
        ("claimed_at", call.claimed_at.map(timestamp).map(s)),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            put(key, value);
        }
    }
    if let Some(webhook) = &call.webhook {
        put(
            "webhook",
            s(serde_json::to_string(webhook).map_err(unavailable)?),
        );
    }
    if let Some(retry) = &call.retry {
        put(
            "retry",
            s(serde_json::to_string(retry).map_err(unavailable)?),
        );
    }
    if let Some(window) = &call.window {
        put(
            "window",
            s(serde_json::to_string(window).map_err(unavailable)?),
        );
    }
    if !call.attempts.is_empty() {
        put(
            "attempts",
            s(serde_json::to_string(&call.attempts).map_err(unavailable)?),
        );
    }
    if !call.events.is_empty() {
        put("events", s(events_to_text(call)?));
    }
    Ok(item)
}

/// A call from its item, as a read or the table's stream gives it (the stream's
/// consumer reads the events the same way the store does).
pub fn call_from_item(item: &Item) -> Result<Call, StoreError> {
    let required = |key: &str| text(item, key).ok_or_else(|| corrupt(key));
    let id = Uuid::try_parse(&required("call_id")?).map_err(|_| corrupt("call_id"))?;
    let status: CallStatus = required("status")?.parse().map_err(|_| corrupt("status"))?;
    let mode = CallMode::parse(&required("mode")?).map_err(|_| corrupt("mode"))?;
    let time = |key: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
        text(item, key)
            .map(|t| {
                DateTime::parse_from_rfc3339(&t)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| corrupt(key))
            })
            .transpose()
    };
    let list = |key: &str| -> Vec<String> {
        match item.get(key) {
            Some(AttributeValue::L(values)) => values
                .iter()
                .filter_map(|v| v.as_s().ok().cloned())
                .collect(),
            _ => Vec::new(),
        }
    };
    let mut call = Call {
        id,
        owner: required("owner")?,
        phone_number: PhoneNumber::parse(&required("phone_number")?)
            .map_err(|_| corrupt("phone_number"))?,
        status,
        mode,
        channel: required("channel")?,
        context: Context::from_record(&required("context")?).map_err(|_| corrupt("context"))?,
        extension: Extension::parse(&required("extension")?).map_err(|_| corrupt("extension"))?,
        priority: number(item, "priority")
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(1),
        caller_id: text(item, "caller_id")
            .map(|c| CallerId::parse(&c))
            .transpose()
            .map_err(|_| corrupt("caller_id"))?,
        timeout_ms: number(item, "timeout_ms")
            .and_then(|t| u64::try_from(t).ok())
            .unwrap_or(30_000),
        max_duration_ms: number(item, "max_duration_ms").and_then(|t| u64::try_from(t).ok()),
        variables: Variables::parse(&match item.get("variables") {
            Some(AttributeValue::M(map)) => map
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_s().ok()?.clone())))
                .collect(),
            _ => Default::default(),
        })
        .map_err(|_| corrupt("variables"))?,
        media: list("media")
            .iter()
            .map(|m| Media::parse(m))
            .collect::<Result<_, _>>()
            .map_err(|_| corrupt("media"))?,
        gather_dtmf: matches!(item.get("gather_dtmf"), Some(AttributeValue::Bool(true))),
        dtmf: list("dtmf").concat(),
        created_at: time("created_at")?.ok_or_else(|| corrupt("created_at"))?,
        dialed_at: time("dialed_at")?,
        ringing_at: time("ringing_at")?,
        answered_at: time("answered_at")?,
        ended_at: time("ended_at")?,
        failure_reason: text(item, "failure_reason")
            .map(|r| FailureReason::parse(&r).ok_or_else(|| corrupt("failure_reason")))
            .transpose()?,
        cause: number(item, "cause"),
        cause_txt: text(item, "cause_txt"),
        dialstatus: text(item, "dialstatus"),
        attempt_number: number(item, "attempt_number")
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or(1),
        cancel_requested_at: time("cancel_requested_at")?,
        originate_unconfirmed_at: time("originate_unconfirmed_at")?,
        media_failed: match item.get("media_failed") {
            Some(AttributeValue::Ss(items)) => {
                let mut items = items.clone();
                items.sort();
                items
            }
            _ => Vec::new(),
        },
        webhook: json(item, "webhook")?,
        events: Vec::new(),
        retry: json(item, "retry")?,
        send_at: time("send_at")?,
        window: json(item, "window")?,
        queued_until: time("queued_until")?,
        claimed_at: time("claimed_at")?,
        paced: matches!(item.get("paced"), Some(AttributeValue::Bool(true))),
        attempts: json(item, "attempts")?.unwrap_or_default(),
    };
    if let Some(events) = text(item, "events") {
        call.events = events_from_text(&events, &call).map_err(|_| corrupt("events"))?;
    }
    Ok(call)
}

/// The calls' `events` attribute: a JSON list of the events, in which each event's
/// snapshot of the call is kept as its difference from the record it is stored in
/// (`call_changes`: the fields that differ; `call_absent`: those the snapshot lacks).
/// Full snapshots could pass DynamoDB's 400 KB item limit: a call may have 69 events
/// (5 statuses, 64 digits) and a snapshot may reach ~20 KB (32 variables of 256
/// characters, 20 media items, a 2 KB callback URL), most of which never changes.
/// The record is rewritten whole on every change, events and all, so a difference is
/// always read against the record it was taken from.
fn events_to_text(call: &Call) -> Result<String, StoreError> {
    let record = record_fields(call)?;
    let mut events = Vec::with_capacity(call.events.len());
    for event in &call.events {
        let mut event = object(serde_json::to_value(event).map_err(unavailable)?)?;
        let snapshot = object(event.remove("call").unwrap_or_default())?;
        let absent: Vec<&String> = record
            .keys()
            .filter(|key| !snapshot.contains_key(*key))
            .collect();
        if !absent.is_empty() {
            event.insert("call_absent".into(), serde_json::json!(absent));
        }
        let changes: serde_json::Map<String, serde_json::Value> = snapshot
            .into_iter()
            .filter(|(key, value)| record.get(key) != Some(value))
            .collect();
        event.insert("call_changes".into(), changes.into());
        events.push(serde_json::Value::Object(event));
    }
    serde_json::to_string(&events).map_err(unavailable)
}

fn events_from_text(text: &str, call: &Call) -> Result<Vec<CallEvent>, StoreError> {
    let record = record_fields(call)?;
    let stored: Vec<serde_json::Value> = serde_json::from_str(text).map_err(unavailable)?;
    stored
        .into_iter()
        .map(|event| {
            let mut event = object(event)?;
            let mut snapshot = record.clone();
            if let Some(serde_json::Value::Array(absent)) = event.remove("call_absent") {
                for key in absent.iter().filter_map(serde_json::Value::as_str) {
                    snapshot.remove(key);
                }
            }
            snapshot.extend(object(event.remove("call_changes").unwrap_or_default())?);
            event.insert("call".into(), snapshot.into());
            serde_json::from_value(event.into()).map_err(unavailable)
        })
        .collect()
}

/// The record's own fields, as its events' snapshots hold them (no events).
fn record_fields(call: &Call) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
    let mut fields = object(serde_json::to_value(call).map_err(unavailable)?)?;
    fields.remove("events");
    Ok(fields)
}

fn object(
    value: serde_json::Value,
) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
    match value {
        serde_json::Value::Object(map) => Ok(map),
        serde_json::Value::Null => Ok(serde_json::Map::new()),
        _ => Err(corrupt("events")),
    }
}

fn user_to_item(user: &User) -> Item {
    let mut item = HashMap::from([
        ("username".to_owned(), s(user.username.clone())),
        ("password_hash".to_owned(), s(user.password_hash.clone())),
        ("disabled".to_owned(), AttributeValue::Bool(user.disabled)),
        (
            "token_version".to_owned(),
            AttributeValue::N(user.token_version.to_string()),
        ),
    ]);
    for (key, value) in [
        ("max_concurrent_calls", user.limits.max_concurrent_calls),
        ("max_queued_calls", user.limits.max_queued_calls),
    ] {
        if let Some(value) = value {
            item.insert(key.to_owned(), n(i64::from(value)));
        }
    }
    let previous = user.previous_webhook_secret.as_ref();
    for (key, value) in [
        ("webhook_url", user.webhook_url.clone()),
        ("webhook_secret", user.webhook_secret.clone()),
        ("previous_webhook_secret", previous.map(|(p, _)| p.clone())),
        (
            "previous_webhook_secret_at",
            previous.map(|(_, at)| timestamp(*at)),
        ),
    ] {
        if let Some(value) = value {
            item.insert(key.to_owned(), s(value));
        }
    }
    item
}

fn user_from_item(item: &Item) -> Result<User, StoreError> {
    Ok(User {
        username: text(item, "username").ok_or_else(|| corrupt("username"))?,
        password_hash: text(item, "password_hash").ok_or_else(|| corrupt("password_hash"))?,
        disabled: matches!(item.get("disabled"), Some(AttributeValue::Bool(true))),
        // Users written before token versions existed are at version 0.
        token_version: match item.get("token_version") {
            Some(AttributeValue::N(v)) => v.parse().map_err(|_| corrupt("token_version"))?,
            _ => 0,
        },
        webhook_url: text(item, "webhook_url"),
        webhook_secret: text(item, "webhook_secret"),
        previous_webhook_secret: match (
            text(item, "previous_webhook_secret"),
            text(item, "previous_webhook_secret_at"),
        ) {
            (Some(secret), Some(at)) => Some((
                secret,
                DateTime::parse_from_rfc3339(&at)
                    .map_err(|_| corrupt("previous_webhook_secret_at"))?
                    .with_timezone(&Utc),
            )),
            _ => None,
        },
        limits: UserLimits {
            max_concurrent_calls: limit(item, "max_concurrent_calls")?,
            max_queued_calls: limit(item, "max_queued_calls")?,
        },
    })
}

fn limit(item: &Item, key: &str) -> Result<Option<u32>, StoreError> {
    item.get(key)
        .map(|_| {
            number(item, key)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| corrupt(key))
        })
        .transpose()
}

/// Fixed-width UTC timestamps, so that string order is time order in the indexes.
fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn s(value: String) -> AttributeValue {
    AttributeValue::S(value)
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn text(item: &Item, key: &str) -> Option<String> {
    item.get(key)?.as_s().ok().cloned()
}

fn number(item: &Item, key: &str) -> Option<i64> {
    item.get(key)?.as_n().ok()?.parse().ok()
}

/// An attribute that holds a value as JSON text, when present.
fn json<T: serde::de::DeserializeOwned>(item: &Item, key: &str) -> Result<Option<T>, StoreError> {
    text(item, key)
        .map(|value| serde_json::from_str(&value))
        .transpose()
        .map_err(|_| corrupt(key))
}

fn corrupt(field: &str) -> StoreError {
    StoreError::unavailable(format!("stored call has a bad or missing {field}"))
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::unavailable(e)
}
