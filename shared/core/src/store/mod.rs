//! The store port: where calls and users live. Every implementation enforces the status
//! rule itself, atomically, so that the API and the bridge can write one call at the
//! same moment without either reversing the other.

pub mod memory;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::webhook::Delivery;
use crate::domain::{Annotation, Call, FailureCount, Pacing, Transition, User};

pub use memory::MemoryStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("already exists")]
    Conflict,
    /// The store could not be reached or answered with an error; the cause is kept.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    pub fn unavailable(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError::Unavailable(cause.into())
    }
}

/// The result of a conditional status write.
#[derive(Clone, Debug, PartialEq)]
pub enum TransitionResult {
    /// The write happened; the record as it is now.
    Applied(Call),
    /// The status rule refused it; the record as it is (unchanged).
    Refused(Call),
    NotFound,
}

impl TransitionResult {
    pub fn call(&self) -> Option<&Call> {
        match self {
            TransitionResult::Applied(call) | TransitionResult::Refused(call) => Some(call),
            TransitionResult::NotFound => None,
        }
    }

    pub fn applied(&self) -> bool {
        matches!(self, TransitionResult::Applied(_))
    }
}

/// One page of a user's calls, newest first.
#[derive(Clone, Debug, Default)]
pub struct CallPage {
    pub calls: Vec<Call>,
    /// Pass back as `before` to get the next page.
    pub next: Option<PageCursor>,
}

/// A place in a user's list of calls, which is ordered by (`created_at`, call id),
/// newest first: a total order, so that a page boundary can never fall between two
/// calls made in the same millisecond and skip or repeat one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageCursor {
    pub created_at: DateTime<Utc>,
    /// `Uuid::nil()` for a cursor made from a time alone ([`PageCursor::before_time`]).
    pub id: Uuid,
}

impl PageCursor {
    /// The place right after `call`: the next page starts with the call listed after it.
    pub fn after(call: &Call) -> Self {
        Self {
            created_at: call.created_at,
            id: call.id,
        }
    }

    /// Every call created strictly before `at`.
    pub fn before_time(at: DateTime<Utc>) -> Self {
        Self {
            created_at: at,
            id: Uuid::nil(),
        }
    }

    /// Whether `call` comes after this place in the newest-first order.
    pub fn precedes(&self, call: &Call) -> bool {
        (call.created_at, call.id) < (self.created_at, self.id)
    }

    /// The opaque text form a client passes back.
    pub fn encode(&self) -> String {
        format!(
            "c1.{}.{}",
            self.created_at.timestamp_millis(),
            self.id.simple()
        )
    }

    pub fn decode(text: &str) -> Option<Self> {
        let rest = text.strip_prefix("c1.")?;
        let (millis, id) = rest.split_once('.')?;
        Some(Self {
            created_at: DateTime::from_timestamp_millis(millis.parse().ok()?)?,
            id: Uuid::try_parse(id).ok()?,
        })
    }
}

impl CallPage {
    /// A page from up to `limit + 1` calls, newest first: the extra one, when there,
    /// only says that another page follows.
    pub fn from_overfetch(mut calls: Vec<Call>, limit: usize) -> Self {
        let more = calls.len() > limit;
        calls.truncate(limit);
        let next = if more {
            calls.last().map(PageCursor::after)
        } else {
            None
        };
        Self { calls, next }
    }
}

/// Reading calls: all the status routes ask of the store. A port of its own so that a
/// process that only reads (the status function) holds a `dyn CallReads`, and its
/// binary links none of a store's writes.
#[async_trait]
pub trait CallReads: Send + Sync {
    async fn get_call(&self, id: Uuid) -> Result<Option<Call>, StoreError>;

    /// A user's calls, newest first (by `created_at`, then call id), after `before` in
    /// that order when given.
    async fn calls_of(
        &self,
        owner: &str,
        before: Option<PageCursor>,
        limit: usize,
    ) -> Result<CallPage, StoreError>;
}

#[async_trait]
pub trait CallStore: CallReads {
    /// Writes a new call; `Conflict` when the id is taken.
    async fn insert_call(&self, call: &Call) -> Result<(), StoreError>;

    /// The conditional status write (see [`Transition::apply`]).
    async fn transition(
        &self,
        id: Uuid,
        change: &Transition,
    ) -> Result<TransitionResult, StoreError>;

    /// Records a fact that does not move the status (see [`Annotation::apply`]).
    /// Returns the record when the annotation was applied.
    async fn annotate(&self, id: Uuid, note: &Annotation) -> Result<Option<Call>, StoreError>;

    /// Binds `owner`'s idempotency `key` to `binding` unless it is bound already; returns
    /// what it was already bound to. Bindings last at least `ttl_seconds`.
    async fn claim_idempotency_key(
        &self,
        owner: &str,
        key: &str,
        binding: &IdempotencyBinding,
        ttl_seconds: i64,
    ) -> Result<Option<IdempotencyBinding>, StoreError>;

    /// What `owner`'s idempotency `key` is bound to, if it is bound and has not lapsed;
    /// binds nothing. A request refused before it could bind its key (a full queue)
    /// still answers a repeat of an earlier request with that request's call.
    async fn idempotency_binding(
        &self,
        owner: &str,
        key: &str,
    ) -> Result<Option<IdempotencyBinding>, StoreError>;
}

/// What an idempotency key is bound to: the call its first request placed, and that
/// request's fingerprint (see `CallRequest::fingerprint`), so that a reuse of the key
/// for a different request is told apart from a repeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyBinding {
    pub call_id: Uuid,
    /// Empty for a binding written before fingerprints were kept: it matches any
    /// request, as every binding did then.
    pub fingerprint: String,
}

impl IdempotencyBinding {
    /// Whether a request with `fingerprint` repeats the one that made this binding.
    pub fn repeated_by(&self, fingerprint: &str) -> bool {
        self.fingerprint.is_empty() || self.fingerprint == fingerprint
    }
}

/// The calls waiting on the always-on service: every active call (what it reconciles),
/// the webhook outbox, and the queue. A port of its own so that the API functions, which
/// never work through them, hold a `dyn CallStore` and link none of it.
#[async_trait]
pub trait CallBacklog: CallStore {
    /// Every call not yet in a final status, queued ones included.
    async fn active_calls(&self) -> Result<Vec<Call>, StoreError>;

    /// The calls between their claim from the queue (or their placement) and a final
    /// status: [`CallBacklog::active_calls`] without the queued ones, which have no
    /// channel. What the bridge reconciles and sweeps, and what holds a line. A store
    /// that can leave the queue unread here should: a long queue must not make every
    /// sweep cost its length.
    async fn calls_in_progress(&self) -> Result<Vec<Call>, StoreError> {
        let mut calls = self.active_calls().await?;
        calls.retain(|c| c.status != crate::domain::CallStatus::Queued);
        Ok(calls)
    }

    /// Every queued call, as the queue lists it (no call bodies): what the dispatcher
    /// counts the queue from.
    async fn queued_calls(&self) -> Result<Vec<QueuedCall>, StoreError> {
        Ok(self
            .active_calls()
            .await?
            .iter()
            .filter_map(QueuedCall::of)
            .collect())
    }

    // The webhook outbox. Events are written by `insert_call`, `transition` and
    // `annotate` themselves, in the same atomic write as the change each reports
    // (see `Call::events`); these record how their delivery goes.

    /// Writes the state of event `sequence`'s delivery, unless that event is settled
    /// already (delivered or dead): a second deliverer that raced this one cannot undo
    /// its outcome. Returns the record when written.
    async fn record_delivery(
        &self,
        id: Uuid,
        sequence: u32,
        delivery: &Delivery,
    ) -> Result<Option<Call>, StoreError>;

    /// Up to `limit` calls with an event due by `now` (see `Call::next_event_due`), each
    /// claimed until `now + lease` or [`CallBacklog::release_call`]: two deliverers never
    /// hold the same call, so its events go out one at a time, in order. Stores whose
    /// deployment delivers another way (DynamoDB: its stream feeds the `notify`
    /// function) may answer none.
    async fn claim_due_calls(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: usize,
    ) -> Result<Vec<Uuid>, StoreError>;

    /// Ends a claim made by [`CallStore::claim_due_calls`].
    async fn release_call(&self, id: Uuid) -> Result<(), StoreError>;

    /// The queue: up to `limit` `queued` calls whose `queued_until` is at or before
    /// `now`, soonest due first (then oldest first). The dispatcher claims each with a
    /// conditional [`Transition::claim`], so a call listed to two dispatchers is still
    /// dialed once.
    async fn due_calls(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<QueuedCall>, StoreError>;

    /// One user's part of the queue: up to `limit` of `owner`'s `queued` calls due by
    /// `now`, in the order of [`CallBacklog::due_calls`]. The dispatcher reads it for each
    /// user with calls waiting when the queue is deeper than one batch, so that a long
    /// backlog of one user cannot hold back another's calls queued after it.
    async fn due_calls_of(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<QueuedCall>, StoreError>;
}

/// A queued call as the queue lists it: enough to order and claim it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedCall {
    pub id: Uuid,
    pub owner: String,
    pub attempt_number: u32,
    pub due_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

impl QueuedCall {
    pub fn of(call: &Call) -> Option<Self> {
        (call.status == crate::domain::CallStatus::Queued).then(|| Self {
            id: call.id,
            owner: call.owner.clone(),
            attempt_number: call.attempt_number,
            due_at: call.queued_until.unwrap_or(call.created_at),
            created_at: call.created_at,
        })
    }

    /// The queue's order: soonest due, then oldest, then by id (a total order).
    pub fn order_key(&self) -> (DateTime<Utc>, DateTime<Utc>, Uuid) {
        (self.due_at, self.created_at, self.id)
    }
}

/// A stored value and the version its next write must find (0: never written).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

/// The pacing states (see [`crate::domain::pacing`]): the trunk's under
/// [`PACING_TRUNK`], each user's under [`pacing_user_key`]. They live in the store so
/// that the limits hold across every container and dispatcher.
#[async_trait]
pub trait PacingStore: Send + Sync {
    /// The states under `keys`, in that order; a key never written reads as the default
    /// state at version 0.
    async fn load_pacing(&self, keys: &[String]) -> Result<Vec<Versioned<Pacing>>, StoreError>;

    /// Writes every state, each at its version + 1, if every one is still at the
    /// version given: all or none, atomically. `false` when another write came first.
    async fn save_pacing(&self, writes: &[(String, Versioned<Pacing>)])
    -> Result<bool, StoreError>;
}

pub const PACING_TRUNK: &str = "trunk";

pub fn pacing_user_key(username: &str) -> String {
    format!("user#{username}")
}

/// A user's queue count, apart from its lines: admissions and releases do not touch it,
/// so reconciliation can see it stand still and set it right.
pub fn pacing_queue_key(username: &str) -> String {
    format!("queue#{username}")
}

/// All users' queue count together, for `MAX_QUEUED_CALLS` (no username makes a
/// [`pacing_queue_key`] of it).
pub const PACING_QUEUE_TOTAL: &str = "queue-total";

/// Reading a user: all that checking a token or a password asks of the user store (see
/// [`CallReads`] for why it is a port of its own).
#[async_trait]
pub trait UserReads: Send + Sync {
    async fn get_user(&self, username: &str) -> Result<Option<User>, StoreError>;
}

#[async_trait]
pub trait UserStore: UserReads {
    /// Creates a user; `Conflict` when the name is taken.
    async fn insert_user(&self, user: &User) -> Result<(), StoreError>;

    /// Replaces an existing user's hash and flags; `false` when there is no such user.
    async fn update_user(&self, user: &User) -> Result<bool, StoreError>;

    async fn list_users(&self) -> Result<Vec<User>, StoreError>;
}

/// The login throttle's counters. They live in the store, not in a process, so that the
/// budget holds across every Lambda container at once. Keys are
/// [`ThrottleKey::text`](crate::domain::ThrottleKey::text).
#[async_trait]
pub trait ThrottleStore: Send + Sync {
    /// The count under `key`, unless it lapsed (`window` after its last failure) by `now`.
    async fn failures(
        &self,
        key: &str,
        now: DateTime<Utc>,
        window: chrono::Duration,
    ) -> Result<Option<FailureCount>, StoreError>;

    /// Adds one failure at `now`, atomically: two containers recording at once both
    /// count. A lapsed count starts again from one. Returns the count after.
    async fn record_failure(
        &self,
        key: &str,
        now: DateTime<Utc>,
        window: chrono::Duration,
    ) -> Result<FailureCount, StoreError>;

    /// Forgets the count under `key` (a successful login).
    async fn clear_failures(&self, key: &str) -> Result<(), StoreError>;
}

/// A store that holds all of them.
pub trait Store: CallBacklog + UserStore + ThrottleStore + PacingStore {}

impl<T: CallBacklog + UserStore + ThrottleStore + PacingStore> Store for T {}
