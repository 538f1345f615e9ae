//! The PostgreSQL store (feature `postgres`, selected by `DATABASE_URL`). Queries are
//! checked at run time, so building needs no database; migrations are embedded and
//! applied at start, safe to run twice.
//!
//! A change to a call is computed by the domain: in one transaction the store locks
//! the row (`SELECT … FOR UPDATE`), applies [`Transition::apply`] or
//! [`Annotation::apply`] to it and writes the whole new row back. Two writers queue on
//! the lock, so the second applies the forward-only rule to the first one's result and
//! neither can reverse the other; and the event a change reports (its sequence, the
//! status before, the call after) is written with it, atomically: the webhook outbox.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Postgres;
use sqlx::postgres::{PgArguments, PgPool, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{Row, types::Json};
use uuid::Uuid;

use dialer_core::domain::validation::{
    CallerId, Context, Extension, Media, PhoneNumber, Variables,
};
use dialer_core::domain::webhook::{CallEvent, Delivery, Webhook};
use dialer_core::domain::{
    Annotation, Attempt, Call, CallMode, CallStatus, CallingWindow, FailureCount, FailureReason,
    Pacing, RetryPolicy, Transition, User, UserLimits,
};
use dialer_core::store::{
    CallBacklog, CallPage, CallReads, CallStore, IdempotencyBinding, PacingStore, PageCursor,
    QueuedCall, StoreError, ThrottleStore, TransitionResult, UserReads, UserStore, Versioned,
};

/// The columns of a call, as a literal: every statement here is a `&'static str` built
/// with `concat!`, so no text from outside can ever become SQL.
macro_rules! call_columns {
    () => {
        "call_id, owner, phone_number, status, mode, channel, context, extension, priority, \
         caller_id, timeout_ms, max_duration_ms, variables, media, gather_dtmf, dtmf, created_at, \
         dialed_at, ringing_at, answered_at, ended_at, failure_reason, cause, cause_txt, dialstatus, \
         attempt_number, cancel_requested_at, originate_unconfirmed_at, media_failed, webhook, \
         events, retry, send_at, calling_window, queued_until, claimed_at, paced, attempts"
    };
}

/// The columns of a user, as a literal (see [`call_columns!`]).
macro_rules! user_columns {
    () => {
        "username, password_hash, disabled, token_version, webhook_url, webhook_secret, \
         previous_webhook_secret, previous_webhook_secret_at, max_concurrent_calls, \
         max_queued_calls"
    };
}

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

/// Pool size for a process: a Lambda container handles one request at a time and
/// many containers share the server, so it keeps its pool small.
pub fn default_pool_size() -> u32 {
    if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
        2
    } else {
        10
    }
}

impl PgStore {
    /// Connects and applies the migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| match &e {
                // Say what to do rather than only that it failed.
                sqlx::Error::Database(db) if db.code().as_deref() == Some("3D000") => {
                    StoreError::unavailable(format!(
                        "{}: create the database first, e.g. psql -h HOST -U postgres -c 'CREATE DATABASE name'",
                        db.message()
                    ))
                }
                _ => unavailable(e),
            })?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies pending migrations; a second run finds none to apply.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations")
            .run(&self.pool)
            .await
            .map_err(unavailable)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies `change` to the locked row and writes the result, if `change` says it
    /// changed anything.
    async fn modify_call(
        &self,
        id: Uuid,
        change: impl Fn(&mut Call) -> bool + Send + Sync,
    ) -> Result<Modified, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let sql = concat!(
            "SELECT ",
            call_columns!(),
            " FROM calls WHERE call_id = $1 FOR UPDATE"
        );
        let row = sqlx::query(sql)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
        let Some(row) = row else {
            return Ok(Modified::NotFound);
        };
        let current = call_from_row(&row)?;
        let mut next = current.clone();
        if !change(&mut next) {
            // Dropping the transaction rolls it back and lets the row go.
            return Ok(Modified::Unchanged(current));
        }
        let sql = concat!(
            "UPDATE calls SET (",
            call_columns!(),
            ", next_event_at, version) = ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,\
             $16,$17,$18,$19,$20,$21,$22,$23,$24,$25,$26,$27,$28,$29,$30,$31,$32,$33,$34,$35,\
             $36,$37,$38,$39, version + 1) WHERE call_id = $1"
        );
        bind_call(sqlx::query(sql), &next)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(Modified::Written(next))
    }

    /// Runs a statement that yields at most one call.
    async fn fetch_call(
        &self,
        query: Query<'_, Postgres, PgArguments>,
    ) -> Result<Option<Call>, StoreError> {
        let row = query
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(call_from_row).transpose()
    }
}

/// What [`PgStore::modify_call`] did.
enum Modified {
    NotFound,
    /// The domain refused the change; the row as it is.
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

/// Binds a call's columns in [`call_columns!`] order, then `next_event_at`.
fn bind_call<'q>(
    query: Query<'q, Postgres, PgArguments>,
    call: &'q Call,
) -> Query<'q, Postgres, PgArguments> {
    query
        .bind(call.id)
        .bind(&call.owner)
        .bind(call.phone_number.as_str())
        .bind(call.status.as_str())
        .bind(call.mode.as_str())
        .bind(&call.channel)
        .bind(call.context.as_str())
        .bind(call.extension.as_str())
        .bind(i32::try_from(call.priority).unwrap_or(i32::MAX))
        .bind(call.caller_id.as_ref().map(CallerId::as_str))
        .bind(i64::try_from(call.timeout_ms).unwrap_or(i64::MAX))
        .bind(
            call.max_duration_ms
                .map(|m| i64::try_from(m).unwrap_or(i64::MAX)),
        )
        .bind(Json(call.variables.as_map()))
        .bind(Json(
            call.media.iter().map(Media::as_str).collect::<Vec<_>>(),
        ))
        .bind(call.gather_dtmf)
        .bind(&call.dtmf)
        .bind(call.created_at)
        .bind(call.dialed_at)
        .bind(call.ringing_at)
        .bind(call.answered_at)
        .bind(call.ended_at)
        .bind(call.failure_reason.as_ref().map(FailureReason::to_text))
        .bind(call.cause)
        .bind(&call.cause_txt)
        .bind(&call.dialstatus)
        .bind(i32::try_from(call.attempt_number).unwrap_or(1))
        .bind(call.cancel_requested_at)
        .bind(call.originate_unconfirmed_at)
        .bind(&call.media_failed)
        .bind(call.webhook.as_ref().map(Json))
        .bind(Json(&call.events))
        .bind(call.retry.as_ref().map(Json))
        .bind(call.send_at)
        .bind(call.window.as_ref().map(Json))
        .bind(call.queued_until)
        .bind(call.claimed_at)
        .bind(call.paced)
        .bind(Json(&call.attempts))
        .bind(next_event_at(call))
}

/// When the deliverer should next look at `call`: its first event not yet settled is
/// due then (events go out in order, so later ones wait behind it).
fn next_event_at(call: &Call) -> Option<DateTime<Utc>> {
    let head = call.events.iter().find(|e| !e.delivery.is_settled())?;
    Some(head.delivery.next_attempt_at.unwrap_or(head.at))
}

/// The statuses a call can still leave (`queued` among them), as stored.
impl PgStore {
    /// Every call whose status is one of `statuses`, oldest first.
    async fn calls_in(&self, statuses: Vec<&'static str>) -> Result<Vec<Call>, StoreError> {
        let sql = concat!(
            "SELECT ",
            call_columns!(),
            " FROM calls WHERE status = ANY($1) ORDER BY created_at"
        );
        let rows = sqlx::query(sql)
            .bind(statuses)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter().map(call_from_row).collect()
    }
}

fn active_statuses() -> Vec<&'static str> {
    CallStatus::ACTIVE.iter().map(|s| s.as_str()).collect()
}

/// The queued calls due by `$due`, `$filter` narrowing them, in queue order, at most
/// `$limit`: the text both queue reads share (each with the index that serves it).
macro_rules! queue_range {
    ($filter:literal, $due:literal, $limit:literal) => {
        concat!(
            "SELECT call_id, owner, attempt_number, created_at,",
            " COALESCE(queued_until, created_at) AS due_at FROM calls",
            " WHERE status = 'queued'",
            $filter,
            " AND COALESCE(queued_until, created_at) <= ",
            $due,
            " ORDER BY COALESCE(queued_until, created_at), created_at, call_id LIMIT ",
            $limit
        )
    };
}

/// A page of a user's calls (`$1` the owner, `$2`/`$3` the cursor's time and id or null,
/// `$4` how many). The list's order is (created_at, call_id): a row comparison resumes
/// exactly after the cursor's call, and the `calls_owner_created_id` index serves it in
/// that order, so a page reads its length, not the user's history (a test reads the
/// plan of this very text).
pub const PAGE_OF_CALLS: &str = concat!(
    "SELECT ",
    call_columns!(),
    " FROM calls WHERE owner = $1
       AND ($2::timestamptz IS NULL OR (created_at, call_id) < ($2, $3::uuid))
     ORDER BY created_at DESC, call_id DESC LIMIT $4"
);

#[async_trait]
impl CallReads for PgStore {
    async fn get_call(&self, id: Uuid) -> Result<Option<Call>, StoreError> {
        let sql = concat!("SELECT ", call_columns!(), " FROM calls WHERE call_id = $1");
        self.fetch_call(sqlx::query(sql).bind(id)).await
    }

    async fn calls_of(
        &self,
        owner: &str,
        before: Option<PageCursor>,
        limit: usize,
    ) -> Result<CallPage, StoreError> {
        let rows = sqlx::query(PAGE_OF_CALLS)
            .bind(owner)
            .bind(before.map(|c| c.created_at))
            .bind(before.map_or(Uuid::nil(), |c| c.id))
            .bind(i64::try_from(limit + 1).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        let calls = rows
            .iter()
            .map(call_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CallPage::from_overfetch(calls, limit))
    }
}

#[async_trait]
impl CallStore for PgStore {
    async fn insert_call(&self, call: &Call) -> Result<(), StoreError> {
        let sql = concat!(
            "INSERT INTO calls (",
            call_columns!(),
            ", next_event_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,\
             $17,$18,$19,$20,$21,$22,$23,$24,$25,$26,$27,$28,$29,$30,$31,$32,$33,$34,$35,$36,\
             $37,$38,$39)"
        );
        let result = bind_call(sqlx::query(sql), call).execute(&self.pool).await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict),
            Err(e) => Err(unavailable(e)),
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
        let expires = Utc::now() + chrono::Duration::seconds(ttl_seconds);
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys (owner, key, call_id, fingerprint, expires_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (owner, key) DO UPDATE
                 SET call_id = EXCLUDED.call_id, fingerprint = EXCLUDED.fingerprint,
                     expires_at = EXCLUDED.expires_at
                 WHERE idempotency_keys.expires_at < now()
             RETURNING call_id",
        )
        .bind(owner)
        .bind(key)
        .bind(binding.call_id)
        .bind(&binding.fingerprint)
        .bind(expires)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        if claimed.is_some() {
            return Ok(None);
        }
        // The binding that won, lapsed or not: it was live when the claim met it.
        self.binding(
            "SELECT call_id, fingerprint FROM idempotency_keys WHERE owner = $1 AND key = $2",
            owner,
            key,
        )
        .await
    }

    async fn idempotency_binding(
        &self,
        owner: &str,
        key: &str,
    ) -> Result<Option<IdempotencyBinding>, StoreError> {
        self.binding(
            "SELECT call_id, fingerprint FROM idempotency_keys
             WHERE owner = $1 AND key = $2 AND expires_at >= now()",
            owner,
            key,
        )
        .await
    }
}

impl PgStore {
    /// The idempotency binding `sql` finds for `owner`'s `key` (`$1`, `$2`).
    async fn binding(
        &self,
        sql: &'static str,
        owner: &str,
        key: &str,
    ) -> Result<Option<IdempotencyBinding>, StoreError> {
        sqlx::query(sql)
            .bind(owner)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?
            .as_ref()
            .map(binding_from_row)
            .transpose()
    }
}

fn binding_from_row(row: &sqlx::postgres::PgRow) -> Result<IdempotencyBinding, StoreError> {
    Ok(IdempotencyBinding {
        call_id: row.try_get("call_id").map_err(unavailable)?,
        fingerprint: row.try_get("fingerprint").map_err(unavailable)?,
    })
}

#[async_trait]
impl CallBacklog for PgStore {
    async fn active_calls(&self) -> Result<Vec<Call>, StoreError> {
        self.calls_in(active_statuses()).await
    }

    async fn calls_in_progress(&self) -> Result<Vec<Call>, StoreError> {
        let mut statuses = active_statuses();
        statuses.retain(|s| *s != CallStatus::Queued.as_str());
        self.calls_in(statuses).await
    }

    async fn queued_calls(&self) -> Result<Vec<QueuedCall>, StoreError> {
        let rows = sqlx::query(
            "SELECT call_id, owner, attempt_number, COALESCE(queued_until, created_at) AS due_at,
                    created_at
             FROM calls WHERE status = 'queued'",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(queued_call_of_row).collect()
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

    async fn claim_due_calls(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: usize,
    ) -> Result<Vec<Uuid>, StoreError> {
        // SKIP LOCKED: a second deliverer claiming at the same moment passes over the
        // rows this one is taking (and a call being written) instead of waiting for
        // them, so each due call goes to one of them.
        let rows = sqlx::query(concat!(
            "WITH due AS (",
            " SELECT call_id, next_event_at FROM calls",
            " WHERE next_event_at <= $1 AND (claimed_until IS NULL OR claimed_until <= $1)",
            " ORDER BY next_event_at, call_id LIMIT $3 FOR UPDATE SKIP LOCKED",
            "), claimed AS (",
            " UPDATE calls SET claimed_until = $2 FROM due WHERE calls.call_id = due.call_id",
            " RETURNING calls.call_id, due.next_event_at",
            ")",
            " SELECT call_id FROM claimed ORDER BY next_event_at, call_id"
        ))
        .bind(now)
        .bind(now + lease)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|row| row.try_get::<Uuid, _>("call_id").map_err(unavailable))
            .collect()
    }

    async fn release_call(&self, id: Uuid) -> Result<(), StoreError> {
        sqlx::query("UPDATE calls SET claimed_until = NULL WHERE call_id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// The queue by its index (`calls_queue`), in its order.
    async fn due_calls(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<QueuedCall>, StoreError> {
        let rows = sqlx::query(queue_range!("", "$1", "$2"))
            .bind(now)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter().map(queued_call_of_row).collect()
    }

    /// One user's queue by its index (`calls_queue_owner`), in the same order.
    async fn due_calls_of(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<QueuedCall>, StoreError> {
        let rows = sqlx::query(queue_range!(" AND owner = $1", "$2", "$3"))
            .bind(owner)
            .bind(now)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter().map(queued_call_of_row).collect()
    }
}

fn queued_call_of_row(row: &PgRow) -> Result<QueuedCall, StoreError> {
    Ok(QueuedCall {
        id: row.try_get("call_id").map_err(unavailable)?,
        owner: row.try_get("owner").map_err(unavailable)?,
        attempt_number: u32::try_from(
            row.try_get::<i32, _>("attempt_number")
                .map_err(unavailable)?,
        )
        .unwrap_or(1),
        due_at: row.try_get("due_at").map_err(unavailable)?,
        created_at: row.try_get("created_at").map_err(unavailable)?,
    })
}

/// Pacing states are rows of `pacing`, each with the version its next write must find.
/// A save writes every row in one transaction, each only at its expected version (an
/// `INSERT … ON CONFLICT DO NOTHING` for version 0, an `UPDATE … WHERE version = $v`
/// otherwise); a row not written rolls the whole of it back. Rows are written in key
/// order, so two saves of the same keys lock them in the same order and cannot
/// deadlock.
#[async_trait]
impl PacingStore for PgStore {
    async fn load_pacing(&self, keys: &[String]) -> Result<Vec<Versioned<Pacing>>, StoreError> {
        let rows = sqlx::query("SELECT key, state, version FROM pacing WHERE key = ANY($1)")
            .bind(keys)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let key: String = row.try_get("key").map_err(unavailable)?;
            let Json(value): Json<Pacing> = row.try_get("state").map_err(unavailable)?;
            let version: i64 = row.try_get("version").map_err(unavailable)?;
            found.insert(
                key,
                Versioned {
                    value,
                    version: u64::try_from(version).map_err(unavailable)?,
                },
            );
        }
        Ok(keys
            .iter()
            .map(|key| found.get(key).cloned().unwrap_or_default())
            .collect())
    }

    async fn save_pacing(
        &self,
        writes: &[(String, Versioned<Pacing>)],
    ) -> Result<bool, StoreError> {
        let mut ordered: Vec<&(String, Versioned<Pacing>)> = writes.iter().collect();
        ordered.sort_by(|a, b| a.0.cmp(&b.0));
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        for (key, state) in ordered {
            let version = version_column(state.version)?;
            let written = if state.version == 0 {
                sqlx::query(
                    "INSERT INTO pacing (key, state, version) VALUES ($1, $2, 1)
                     ON CONFLICT (key) DO NOTHING",
                )
                .bind(key)
                .bind(Json(&state.value))
                .execute(&mut *tx)
                .await
            } else {
                sqlx::query(
                    "UPDATE pacing SET state = $2, version = version + 1
                     WHERE key = $1 AND version = $3",
                )
                .bind(key)
                .bind(Json(&state.value))
                .bind(version)
                .execute(&mut *tx)
                .await
            }
            .map_err(unavailable)?;
            if written.rows_affected() != 1 {
                // Dropping the transaction rolls back what it wrote so far.
                return Ok(false);
            }
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(true)
    }
}

#[async_trait]
impl UserReads for PgStore {
    async fn get_user(&self, username: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE username = $1"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.as_ref().map(user_from_row).transpose()
    }
}

#[async_trait]
impl UserStore for PgStore {
    async fn insert_user(&self, user: &User) -> Result<(), StoreError> {
        let sql = concat!(
            "INSERT INTO users (",
            user_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        );
        let result = bind_user(sqlx::query(sql), user)?.execute(&self.pool).await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn update_user(&self, user: &User) -> Result<bool, StoreError> {
        let sql = concat!(
            "UPDATE users SET (",
            user_columns!(),
            ") = ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) WHERE username = $1"
        );
        let result = bind_user(sqlx::query(sql), user)?
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(result.rows_affected() == 1)
    }

    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY username"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(user_from_row).collect()
    }
}

fn call_from_row(row: &PgRow) -> Result<Call, StoreError> {
    let text = |column: &str| row.try_get::<String, _>(column).map_err(unavailable);
    let status: CallStatus = text("status")?.parse().map_err(unavailable)?;
    let mode = CallMode::parse(&text("mode")?).map_err(unavailable)?;
    let Json(variables) = row.try_get("variables").map_err(unavailable)?;
    let Json(media): Json<Vec<String>> = row.try_get("media").map_err(unavailable)?;
    let get = |column: &str| {
        row.try_get::<Option<DateTime<Utc>>, _>(column)
            .map_err(unavailable)
    };
    Ok(Call {
        id: row.try_get("call_id").map_err(unavailable)?,
        owner: text("owner")?,
        phone_number: PhoneNumber::parse(&text("phone_number")?).map_err(unavailable)?,
        status,
        mode,
        channel: text("channel")?,
        context: Context::from_record(&text("context")?).map_err(unavailable)?,
        extension: Extension::parse(&text("extension")?).map_err(unavailable)?,
        priority: u32::try_from(row.try_get::<i32, _>("priority").map_err(unavailable)?)
            .unwrap_or(1),
        caller_id: row
            .try_get::<Option<String>, _>("caller_id")
            .map_err(unavailable)?
            .map(|c| CallerId::parse(&c))
            .transpose()
            .map_err(unavailable)?,
        timeout_ms: u64::try_from(row.try_get::<i64, _>("timeout_ms").map_err(unavailable)?)
            .unwrap_or(0),
        max_duration_ms: row
            .try_get::<Option<i64>, _>("max_duration_ms")
            .map_err(unavailable)?
            .and_then(|m| u64::try_from(m).ok()),
        variables: Variables::parse(&variables).map_err(unavailable)?,
        media: media
            .iter()
            .map(|m| Media::parse(m))
            .collect::<Result<_, _>>()
            .map_err(unavailable)?,
        gather_dtmf: row.try_get("gather_dtmf").map_err(unavailable)?,
        dtmf: text("dtmf")?,
        created_at: row.try_get("created_at").map_err(unavailable)?,
        dialed_at: get("dialed_at")?,
        ringing_at: get("ringing_at")?,
        answered_at: get("answered_at")?,
        ended_at: get("ended_at")?,
        failure_reason: row
            .try_get::<Option<String>, _>("failure_reason")
            .map_err(unavailable)?
            .map(|r| {
                FailureReason::parse(&r)
                    .ok_or_else(|| StoreError::unavailable(format!("unknown failure_reason {r:?}")))
            })
            .transpose()?,
        cause: row.try_get("cause").map_err(unavailable)?,
        cause_txt: row.try_get("cause_txt").map_err(unavailable)?,
        dialstatus: row.try_get("dialstatus").map_err(unavailable)?,
        attempt_number: u32::try_from(
            row.try_get::<i32, _>("attempt_number")
                .map_err(unavailable)?,
        )
        .unwrap_or(1),
        cancel_requested_at: get("cancel_requested_at")?,
        originate_unconfirmed_at: get("originate_unconfirmed_at")?,
        media_failed: row.try_get("media_failed").map_err(unavailable)?,
        webhook: row
            .try_get::<Option<Json<Webhook>>, _>("webhook")
            .map_err(unavailable)?
            .map(|Json(webhook)| webhook),
        events: row
            .try_get::<Json<Vec<CallEvent>>, _>("events")
            .map_err(unavailable)?
            .0,
        retry: row
            .try_get::<Option<Json<RetryPolicy>>, _>("retry")
            .map_err(unavailable)?
            .map(|Json(retry)| retry),
        send_at: get("send_at")?,
        window: row
            .try_get::<Option<Json<CallingWindow>>, _>("calling_window")
            .map_err(unavailable)?
            .map(|Json(window)| window),
        queued_until: get("queued_until")?,
        claimed_at: get("claimed_at")?,
        paced: row.try_get("paced").map_err(unavailable)?,
        attempts: row
            .try_get::<Json<Vec<Attempt>>, _>("attempts")
            .map_err(unavailable)?
            .0,
    })
}

/// A count lapses `window` after its last failure; one statement adds to a live count
/// or starts a lapsed or missing one, under the row lock PostgreSQL takes for it.
#[async_trait]
impl ThrottleStore for PgStore {
    async fn failures(
        &self,
        key: &str,
        now: DateTime<Utc>,
        window: chrono::Duration,
    ) -> Result<Option<FailureCount>, StoreError> {
        let row = sqlx::query(
            "SELECT failures, last_at FROM login_failures WHERE key = $1 AND last_at > $2",
        )
        .bind(key)
        .bind(now - window)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.as_ref().map(failure_count_from_row).transpose()
    }

    async fn record_failure(
        &self,
        key: &str,
        now: DateTime<Utc>,
        window: chrono::Duration,
    ) -> Result<FailureCount, StoreError> {
        let row = sqlx::query(concat!(
            "INSERT INTO login_failures (key, failures, last_at) VALUES ($1, 1, $2)",
            " ON CONFLICT (key) DO UPDATE SET",
            " failures = CASE WHEN login_failures.last_at > $3",
            " THEN LEAST(login_failures.failures + 1, 1000000) ELSE 1 END,",
            " last_at = GREATEST(login_failures.last_at, EXCLUDED.last_at)",
            " RETURNING failures, last_at"
        ))
        .bind(key)
        .bind(now)
        .bind(now - window)
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        failure_count_from_row(&row)
    }

    async fn clear_failures(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM login_failures WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

fn failure_count_from_row(row: &PgRow) -> Result<FailureCount, StoreError> {
    let failures: i32 = row.try_get("failures").map_err(unavailable)?;
    Ok(FailureCount {
        failures: u32::try_from(failures).unwrap_or(0),
        last_at: row.try_get("last_at").map_err(unavailable)?,
    })
}

fn user_from_row(row: &PgRow) -> Result<User, StoreError> {
    let version: i64 = row.try_get("token_version").map_err(unavailable)?;
    Ok(User {
        username: row.try_get("username").map_err(unavailable)?,
        password_hash: row.try_get("password_hash").map_err(unavailable)?,
        disabled: row.try_get("disabled").map_err(unavailable)?,
        token_version: u64::try_from(version).map_err(unavailable)?,
        webhook_url: row.try_get("webhook_url").map_err(unavailable)?,
        webhook_secret: row.try_get("webhook_secret").map_err(unavailable)?,
        previous_webhook_secret: match (
            row.try_get::<Option<String>, _>("previous_webhook_secret")
                .map_err(unavailable)?,
            row.try_get::<Option<DateTime<Utc>>, _>("previous_webhook_secret_at")
                .map_err(unavailable)?,
        ) {
            (Some(secret), Some(at)) => Some((secret, at)),
            _ => None,
        },
        limits: UserLimits {
            max_concurrent_calls: limit_from_row(row, "max_concurrent_calls")?,
            max_queued_calls: limit_from_row(row, "max_queued_calls")?,
        },
    })
}

fn limit_from_row(row: &PgRow, column: &str) -> Result<Option<u32>, StoreError> {
    row.try_get::<Option<i32>, _>(column)
        .map_err(unavailable)?
        .map(|limit| u32::try_from(limit).map_err(unavailable))
        .transpose()
}

fn limit_column(limit: Option<u32>) -> Result<Option<i32>, StoreError> {
    limit
        .map(|limit| i32::try_from(limit).map_err(unavailable))
        .transpose()
}

/// Binds a user's columns in [`user_columns!`] order.
fn bind_user<'q>(
    query: Query<'q, Postgres, PgArguments>,
    user: &'q User,
) -> Result<Query<'q, Postgres, PgArguments>, StoreError> {
    let previous = user.previous_webhook_secret.as_ref();
    Ok(query
        .bind(&user.username)
        .bind(&user.password_hash)
        .bind(user.disabled)
        .bind(version_column(user.token_version)?)
        .bind(&user.webhook_url)
        .bind(&user.webhook_secret)
        .bind(previous.map(|(secret, _)| secret.as_str()))
        .bind(previous.map(|(_, at)| *at))
        .bind(limit_column(user.limits.max_concurrent_calls)?)
        .bind(limit_column(user.limits.max_queued_calls)?))
}

fn version_column(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version).map_err(unavailable)
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::unavailable(e)
}
