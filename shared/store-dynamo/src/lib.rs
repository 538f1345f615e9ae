//! The DynamoDB store. Calls are keyed by `call_id`; two sparse or secondary indexes
//! serve listing (`owner` + `created_at`, newest first) and reconciliation (`active`,
//! present only while a call is not final). Every status write is one conditional
//! `UpdateItem` whose condition is the domain's forward-only rule, so two writers can
//! never reverse each other. `expires_at` carries the DynamoDB TTL.

use std::collections::HashMap;

use async_trait::async_trait;
pub use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ReturnValue, ScalarAttributeType, TimeToLiveSpecification,
};
use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use dialer_core::domain::validation::{
    CallerId, Context, Extension, Media, PhoneNumber, Variables,
};
use dialer_core::domain::{
    Annotation, Call, CallMode, CallStatus, FailureCount, FailureReason, Transition, User,
};
use dialer_core::store::{
    CallPage, CallStore, PageCursor, StoreError, ThrottleStore, TransitionResult, UserStore,
};

pub const OWNER_INDEX: &str = "owner-created-index";
pub const ACTIVE_INDEX: &str = "active-index";

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    calls_table: String,
    users_table: String,
    retention_days: i64,
}

type Item = HashMap<String, AttributeValue>;

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
        }
    }

    /// Creates both tables with their indexes and TTL (for tests and first-time local
    /// setup; in AWS the stack creates them).
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
            .key_schema(key("call_id", KeyType::Hash)?)
            .global_secondary_indexes(index(OWNER_INDEX, "owner")?)
            .global_secondary_indexes(index(ACTIVE_INDEX, "active")?)
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

    async fn update_call(&self, id: Uuid, update: Update) -> Result<Option<Call>, StoreError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.calls_table)
            .key("call_id", s(id.to_string()))
            .update_expression(update.expression)
            .condition_expression(update.condition)
            .return_values(ReturnValue::AllNew);
        for (name, value) in update.names {
            request = request.expression_attribute_names(name, value);
        }
        for (name, value) in update.values {
            request = request.expression_attribute_values(name, value);
        }
        match request.send().await {
            Ok(output) => output.attributes.as_ref().map(call_from_item).transpose(),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(None)
            }
            Err(e) => Err(unavailable(e)),
        }
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
impl CallStore for DynamoStore {
    async fn insert_call(&self, call: &Call) -> Result<(), StoreError> {
        let mut item = call_to_item(call);
        item.insert("expires_at".into(), self.expires_at(call.created_at));
        if self
            .put_if(&self.calls_table, item, "attribute_not_exists(call_id)")
            .await?
        {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    async fn get_call(&self, id: Uuid) -> Result<Option<Call>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.calls_table)
            .key("call_id", s(id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        output
            .item
            .as_ref()
            .filter(|item| item.contains_key("status"))
            .map(call_from_item)
            .transpose()
    }

    async fn transition(
        &self,
        id: Uuid,
        change: &Transition,
    ) -> Result<TransitionResult, StoreError> {
        match self.update_call(id, Update::transition(change)).await? {
            Some(call) => Ok(TransitionResult::Applied(call)),
            None => Ok(match self.get_call(id).await? {
                Some(call) => TransitionResult::Refused(call),
                None => TransitionResult::NotFound,
            }),
        }
    }

    async fn annotate(&self, id: Uuid, note: &Annotation) -> Result<Option<Call>, StoreError> {
        self.update_call(id, Update::annotation(note)).await
    }

    async fn claim_idempotency_key(
        &self,
        owner: &str,
        key: &str,
        call_id: Uuid,
        ttl_seconds: i64,
    ) -> Result<Option<Uuid>, StoreError> {
        // Bindings live in the calls table under a key no call id can take; they carry
        // no `status`, `owner` or `active`, so no index and no call read sees them.
        let slot = format!("idempotency#{owner}#{key}");
        let now = Utc::now().timestamp();
        let result = self
            .client
            .put_item()
            .table_name(&self.calls_table)
            .item("call_id", s(slot.clone()))
            .item("target", s(call_id.to_string()))
            .item("expires_at", n(now + ttl_seconds))
            .condition_expression("attribute_not_exists(call_id) OR expires_at < :now")
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                let output = self
                    .client
                    .get_item()
                    .table_name(&self.calls_table)
                    .key("call_id", s(slot))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(unavailable)?;
                let target = output.item.as_ref().and_then(|i| text(i, "target"));
                Ok(target.and_then(|t| Uuid::try_parse(&t).ok()))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

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
impl UserStore for DynamoStore {
    async fn get_user(&self, username: &str) -> Result<Option<User>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.users_table)
            .key("username", s(username.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        output.item.as_ref().map(user_from_item).transpose()
    }

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
        let output = self
            .client
            .get_item()
            .table_name(&self.calls_table)
            .key("call_id", s(throttle_slot(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output
            .item
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

/// One `UpdateItem`: the expression, its condition and their placeholders.
struct Update {
    expression: String,
    condition: String,
    names: Vec<(String, String)>,
    values: Vec<(String, AttributeValue)>,
}

impl Update {
    /// The DynamoDB form of [`Transition::apply`]: the same fields, under the same rule.
    fn transition(change: &Transition) -> Self {
        let mut set = vec!["#status = :status".to_owned()];
        let mut remove = Vec::new();
        let mut values = vec![(":status".to_owned(), s(change.status.as_str().to_owned()))];
        let at = s(timestamp(change.at));
        if change.dialed {
            set.push("dialed_at = if_not_exists(dialed_at, :at)".into());
        }
        match change.status {
            CallStatus::Ringing => set.push("ringing_at = :at".into()),
            CallStatus::Answered => set.push("answered_at = :at".into()),
            status if status.is_final() => {
                set.push("ended_at = :at".into());
                remove.push("active".to_owned());
                for (field, value) in [
                    (
                        "failure_reason",
                        change.failure_reason.as_ref().map(|r| s(r.to_text())),
                    ),
                    ("cause", change.cause.map(n)),
                    ("cause_txt", change.cause_txt.clone().map(s)),
                ] {
                    match value {
                        Some(value) => {
                            set.push(format!("{field} = :{field}"));
                            values.push((format!(":{field}"), value));
                        }
                        None => remove.push(field.to_owned()),
                    }
                }
            }
            _ => {}
        }
        if set.iter().any(|e| e.contains(":at")) {
            values.push((":at".into(), at));
        }
        if let Some(dialstatus) = &change.dialstatus {
            set.push("dialstatus = :dialstatus".into());
            values.push((":dialstatus".into(), s(dialstatus.clone())));
        }
        let allowed: Vec<String> = CallStatus::predecessors(change.status)
            .enumerate()
            .map(|(i, status)| {
                values.push((format!(":from{i}"), s(status.as_str().to_owned())));
                format!(":from{i}")
            })
            .collect();
        let condition = if allowed.is_empty() {
            // Nothing may move to this status (e.g. `pending`): a condition that fails.
            "attribute_not_exists(call_id)".to_owned()
        } else {
            format!(
                "attribute_exists(call_id) AND #status IN ({})",
                allowed.join(", ")
            )
        };
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        Self {
            expression,
            condition,
            names: vec![("#status".into(), "status".into())],
            values,
        }
    }

    /// The DynamoDB form of [`Annotation::apply`]: only while the call is active (a
    /// failed media item: on any call).
    fn annotation(note: &Annotation) -> Self {
        let (expression, extra_condition, values) = match note {
            Annotation::DialStatus(dialstatus) => (
                "SET dialstatus = :v",
                "",
                vec![(":v".to_owned(), s(dialstatus.clone()))],
            ),
            Annotation::Dtmf(digit) => (
                "SET dtmf = list_append(if_not_exists(dtmf, :empty), :v)",
                " AND (attribute_not_exists(dtmf) OR size(dtmf) < :max)",
                vec![
                    (
                        ":v".to_owned(),
                        AttributeValue::L(vec![s(digit.to_string())]),
                    ),
                    (":empty".to_owned(), AttributeValue::L(Vec::new())),
                    (":max".to_owned(), n(Annotation::MAX_DTMF as i64)),
                ],
            ),
            Annotation::CancelRequested(at) => (
                "SET cancel_requested_at = :v",
                " AND attribute_not_exists(cancel_requested_at)",
                vec![(":v".to_owned(), s(timestamp(*at)))],
            ),
            Annotation::OriginateUnconfirmed(at) => (
                "SET originate_unconfirmed_at = :v",
                " AND attribute_not_exists(originate_unconfirmed_at)",
                vec![(":v".to_owned(), s(timestamp(*at)))],
            ),
            Annotation::MediaFailed(media) => return Self::media_failed(media),
        };
        Self {
            expression: expression.to_owned(),
            condition: format!("attribute_exists(active){extra_condition}"),
            names: Vec::new(),
            values,
        }
    }

    /// A failed media item goes into a string set: each item once, on any call (the
    /// failure may be reported just before the end); `contains` keeps a repeat from
    /// counting as a write.
    fn media_failed(media: &str) -> Self {
        Self {
            expression: "ADD media_failed :v".to_owned(),
            condition: "attribute_exists(call_id) AND (attribute_not_exists(media_failed) \
                        OR (size(media_failed) < :max AND NOT contains(media_failed, :m)))"
                .to_owned(),
            names: Vec::new(),
            values: vec![
                (":v".to_owned(), AttributeValue::Ss(vec![media.to_owned()])),
                (":m".to_owned(), s(media.to_owned())),
                (":max".to_owned(), n(Annotation::MAX_MEDIA_FAILED as i64)),
            ],
        }
    }
}

fn call_to_item(call: &Call) -> Item {
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
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            put(key, value);
        }
    }
    item
}

fn call_from_item(item: &Item) -> Result<Call, StoreError> {
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
    Ok(Call {
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
        webhook: None,
        events: Vec::new(),
    })
}

fn user_to_item(user: &User) -> Item {
    HashMap::from([
        ("username".to_owned(), s(user.username.clone())),
        ("password_hash".to_owned(), s(user.password_hash.clone())),
        ("disabled".to_owned(), AttributeValue::Bool(user.disabled)),
        (
            "token_version".to_owned(),
            AttributeValue::N(user.token_version.to_string()),
        ),
    ])
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
    })
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

fn corrupt(field: &str) -> StoreError {
    StoreError::unavailable(format!("stored call has a bad or missing {field}"))
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::unavailable(e)
}
