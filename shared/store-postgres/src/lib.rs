//! The PostgreSQL store (feature `postgres`, selected by `DATABASE_URL`). Queries are
//! checked at run time, so building needs no database; migrations are embedded and
//! applied at start, safe to run twice. Every status write is one conditional
//! `UPDATE … WHERE status = ANY(…)`: two writers can never reverse each other.

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
use dialer_core::domain::{
    Annotation, Call, CallMode, CallStatus, FailureCount, FailureReason, Transition, User,
};
use dialer_core::store::{
    CallPage, CallStore, PageCursor, StoreError, ThrottleStore, TransitionResult, UserStore,
};

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

/// The columns of a call, as a literal: every statement here is a `&'static str` built
/// with `concat!`, so no text from outside can ever become SQL.
macro_rules! call_columns {
    () => {
        "call_id, owner, phone_number, status, mode, channel, context, extension, priority, \
         caller_id, timeout_ms, max_duration_ms, variables, media, gather_dtmf, dtmf, created_at, \
         dialed_at, ringing_at, answered_at, ended_at, failure_reason, cause, cause_txt, dialstatus, \
         attempt_number, cancel_requested_at, originate_unconfirmed_at, media_failed"
    };
}

const ACTIVE: [&str; 4] = ["pending", "dialing", "ringing", "answered"];

#[async_trait]
impl CallStore for PgStore {
    async fn insert_call(&self, call: &Call) -> Result<(), StoreError> {
        let sql = concat!(
            "INSERT INTO calls (",
            call_columns!(),
            ") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,\
             $21,$22,$23,$24,$25,$26,$27,$28,$29)"
        );
        let result = sqlx::query(sql)
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
            .execute(&self.pool)
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn get_call(&self, id: Uuid) -> Result<Option<Call>, StoreError> {
        let sql = concat!("SELECT ", call_columns!(), " FROM calls WHERE call_id = $1");
        self.fetch_call(sqlx::query(sql).bind(id)).await
    }

    async fn transition(
        &self,
        id: Uuid,
        change: &Transition,
    ) -> Result<TransitionResult, StoreError> {
        // The SQL form of `Transition::apply`: the same fields, under the same rule.
        let predecessors: Vec<&str> = CallStatus::predecessors(change.status)
            .map(CallStatus::as_str)
            .collect();
        let is_final = change.status.is_final();
        let sql = concat!(
            "UPDATE calls SET
                status = $2,
                dialed_at = CASE WHEN $4 THEN COALESCE(dialed_at, $3) ELSE dialed_at END,
                ringing_at = CASE WHEN $2 = 'ringing' THEN $3 ELSE ringing_at END,
                answered_at = CASE WHEN $2 = 'answered' THEN $3 ELSE answered_at END,
                ended_at = CASE WHEN $5 THEN $3 ELSE ended_at END,
                failure_reason = CASE WHEN $5 THEN $6 ELSE failure_reason END,
                cause = CASE WHEN $5 THEN $7 ELSE cause END,
                cause_txt = CASE WHEN $5 THEN $8 ELSE cause_txt END,
                dialstatus = COALESCE($9, dialstatus)
             WHERE call_id = $1 AND status = ANY($10)
             RETURNING ",
            call_columns!()
        );
        let query = sqlx::query(sql)
            .bind(id)
            .bind(change.status.as_str())
            .bind(change.at)
            .bind(change.dialed)
            .bind(is_final)
            .bind(change.failure_reason.as_ref().map(FailureReason::to_text))
            .bind(change.cause)
            .bind(&change.cause_txt)
            .bind(&change.dialstatus)
            .bind(&predecessors);
        match self.fetch_call(query).await? {
            Some(call) => Ok(TransitionResult::Applied(call)),
            None => Ok(match self.get_call(id).await? {
                Some(call) => TransitionResult::Refused(call),
                None => TransitionResult::NotFound,
            }),
        }
    }

    async fn annotate(&self, id: Uuid, note: &Annotation) -> Result<Option<Call>, StoreError> {
        // The SQL form of `Annotation::apply`: only while the call is active.
        let (sql, value): (&'static str, String) = match note {
            Annotation::DialStatus(dialstatus) => (
                concat!(
                    "UPDATE calls SET dialstatus = $3 WHERE call_id = $1 AND status = ANY($2) RETURNING ",
                    call_columns!()
                ),
                dialstatus.clone(),
            ),
            Annotation::Dtmf(digit) => (
                concat!(
                    "UPDATE calls SET dtmf = dtmf || $3 WHERE call_id = $1 AND status = ANY($2) \
                     AND length(dtmf) < 64 RETURNING ",
                    call_columns!()
                ),
                digit.to_string(),
            ),
            Annotation::CancelRequested(at) => (
                concat!(
                    "UPDATE calls SET cancel_requested_at = $3::timestamptz WHERE call_id = $1 \
                     AND status = ANY($2) AND cancel_requested_at IS NULL RETURNING ",
                    call_columns!()
                ),
                at.to_rfc3339(),
            ),
            Annotation::OriginateUnconfirmed(at) => (
                concat!(
                    "UPDATE calls SET originate_unconfirmed_at = $3::timestamptz WHERE call_id = $1 \
                     AND status = ANY($2) AND originate_unconfirmed_at IS NULL RETURNING ",
                    call_columns!()
                ),
                at.to_rfc3339(),
            ),
            Annotation::MediaFailed(media) => {
                // On any call, each item once, kept in byte order (as the domain sorts).
                let sql = concat!(
                    "UPDATE calls SET media_failed = ARRAY(SELECT m FROM unnest(media_failed || $2::text) AS m \
                     ORDER BY m COLLATE \"C\") WHERE call_id = $1 AND NOT ($2 = ANY(media_failed)) \
                     AND cardinality(media_failed) < $3 RETURNING ",
                    call_columns!()
                );
                let max = i32::try_from(Annotation::MAX_MEDIA_FAILED).unwrap_or(i32::MAX);
                return self
                    .fetch_call(sqlx::query(sql).bind(id).bind(media).bind(max))
                    .await;
            }
        };
        self.fetch_call(sqlx::query(sql).bind(id).bind(&ACTIVE[..]).bind(value))
            .await
    }

    async fn claim_idempotency_key(
        &self,
        owner: &str,
        key: &str,
        call_id: Uuid,
        ttl_seconds: i64,
    ) -> Result<Option<Uuid>, StoreError> {
        let expires = Utc::now() + chrono::Duration::seconds(ttl_seconds);
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys (owner, key, call_id, expires_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (owner, key) DO UPDATE
                 SET call_id = EXCLUDED.call_id, expires_at = EXCLUDED.expires_at
                 WHERE idempotency_keys.expires_at < now()
             RETURNING call_id",
        )
        .bind(owner)
        .bind(key)
        .bind(call_id)
        .bind(expires)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        if claimed.is_some() {
            return Ok(None);
        }
        let existing =
            sqlx::query("SELECT call_id FROM idempotency_keys WHERE owner = $1 AND key = $2")
                .bind(owner)
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
        existing
            .map(|row| row.try_get::<Uuid, _>("call_id").map_err(unavailable))
            .transpose()
    }

    async fn active_calls(&self) -> Result<Vec<Call>, StoreError> {
        let sql = concat!(
            "SELECT ",
            call_columns!(),
            " FROM calls WHERE status = ANY($1) ORDER BY created_at"
        );
        let rows = sqlx::query(sql)
            .bind(&ACTIVE[..])
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter().map(call_from_row).collect()
    }

    async fn calls_of(
        &self,
        owner: &str,
        before: Option<PageCursor>,
        limit: usize,
    ) -> Result<CallPage, StoreError> {
        // The list's order is (created_at, call_id): a row comparison resumes exactly
        // after the cursor's call.
        let sql = concat!(
            "SELECT ",
            call_columns!(),
            " FROM calls WHERE owner = $1
               AND ($2::timestamptz IS NULL OR (created_at, call_id) < ($2, $3::uuid))
             ORDER BY created_at DESC, call_id DESC LIMIT $4"
        );
        let rows = sqlx::query(sql)
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
impl UserStore for PgStore {
    async fn get_user(&self, username: &str) -> Result<Option<User>, StoreError> {
        let row =
            sqlx::query("SELECT username, password_hash, disabled, token_version FROM users WHERE username = $1")
                .bind(username)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn insert_user(&self, user: &User) -> Result<(), StoreError> {
        let result = sqlx::query(
            "INSERT INTO users (username, password_hash, disabled, token_version) VALUES ($1, $2, $3, $4)",
        )
        .bind(&user.username)
        .bind(&user.password_hash)
        .bind(user.disabled)
        .bind(version_column(user.token_version)?)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn update_user(&self, user: &User) -> Result<bool, StoreError> {
        let result = sqlx::query(concat!(
            "UPDATE users SET password_hash = $2, disabled = $3, token_version = $4",
            " WHERE username = $1"
        ))
        .bind(&user.username)
        .bind(&user.password_hash)
        .bind(user.disabled)
        .bind(version_column(user.token_version)?)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(result.rows_affected() == 1)
    }

    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query(
            "SELECT username, password_hash, disabled, token_version FROM users ORDER BY username",
        )
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
        webhook: None,
        events: Vec::new(),
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
    })
}

fn version_column(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version).map_err(unavailable)
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::unavailable(e)
}
