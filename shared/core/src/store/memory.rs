//! The in-process store: for local use (`DISABLE_DB=true`) and tests. One mutex guards
//! the maps, so every conditional write is atomic.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    CallBacklog, CallPage, CallReads, CallStore, PacingStore, PageCursor, QueuedCall, StoreError,
    ThrottleStore, TransitionResult, UserReads, UserStore, Versioned,
};
use crate::domain::webhook::Delivery;
use crate::domain::{Annotation, Call, CallStatus, FailureCount, Pacing, Transition, User};

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    calls: HashMap<Uuid, Call>,
    users: HashMap<String, User>,
    idempotency: HashMap<(String, String), (Uuid, DateTime<Utc>)>,
    throttle: HashMap<String, FailureCount>,
    /// Webhook deliverers' claims: until when each call is held.
    claims: HashMap<Uuid, DateTime<Utc>>,
    /// The ids of the calls that are `queued`, of those not final, and of those with an
    /// event still to deliver: what the dispatcher, the bridge's sweeps and the webhook
    /// deliverer read every fraction of a second, without a scan of every call kept.
    queued: HashSet<Uuid>,
    active: HashSet<Uuid>,
    undelivered: HashSet<Uuid>,
    pacing: HashMap<String, Versioned<Pacing>>,
}

impl Inner {
    /// Keeps the indexes in step with call `id` after a write.
    fn reindex(&mut self, id: Uuid) {
        let call = self.calls.get(&id);
        for (index, holds) in [
            (
                &mut self.queued,
                call.is_some_and(|c| c.status == CallStatus::Queued),
            ),
            (&mut self.active, call.is_some_and(Call::is_active)),
            (
                &mut self.undelivered,
                call.is_some_and(Call::has_pending_events),
            ),
        ] {
            if holds {
                index.insert(id);
            } else {
                index.remove(&id);
            }
        }
    }
}

/// Past this many throttle counts, lapsed ones are dropped: a guesser rotating
/// addresses must not grow the map without bound.
const THROTTLE_PRUNE_AT: usize = 10_000;

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-written record: every
        // mutation is a single assignment on a clone-free path. Keep serving.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Up to `limit` of the queued calls due by `now` that `keep` keeps, in queue order.
    fn due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        keep: impl Fn(&QueuedCall) -> bool,
    ) -> Vec<QueuedCall> {
        let inner = self.lock();
        let mut due: Vec<QueuedCall> = inner
            .queued
            .iter()
            .filter_map(|id| QueuedCall::of(inner.calls.get(id)?))
            .filter(|q| q.due_at <= now && keep(q))
            .collect();
        due.sort_by_key(QueuedCall::order_key);
        due.truncate(limit);
        due
    }
}

#[async_trait]
impl CallReads for MemoryStore {
    async fn get_call(&self, id: Uuid) -> Result<Option<Call>, StoreError> {
        Ok(self.lock().calls.get(&id).cloned())
    }

    async fn calls_of(
        &self,
        owner: &str,
        before: Option<PageCursor>,
        limit: usize,
    ) -> Result<CallPage, StoreError> {
        let inner = self.lock();
        let mut calls: Vec<Call> = inner
            .calls
            .values()
            .filter(|c| c.owner == owner && before.is_none_or(|b| b.precedes(c)))
            .cloned()
            .collect();
        calls.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        calls.truncate(limit + 1);
        Ok(CallPage::from_overfetch(calls, limit))
    }
}

#[async_trait]
impl CallStore for MemoryStore {
    async fn insert_call(&self, call: &Call) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.calls.contains_key(&call.id) {
            return Err(StoreError::Conflict);
        }
        inner.calls.insert(call.id, call.clone());
        inner.reindex(call.id);
        Ok(())
    }

    async fn transition(
        &self,
        id: Uuid,
        change: &Transition,
    ) -> Result<TransitionResult, StoreError> {
        let mut inner = self.lock();
        let Some(call) = inner.calls.get_mut(&id) else {
            return Ok(TransitionResult::NotFound);
        };
        let result = if change.apply(call) {
            TransitionResult::Applied(call.clone())
        } else {
            TransitionResult::Refused(call.clone())
        };
        inner.reindex(id);
        Ok(result)
    }

    async fn annotate(&self, id: Uuid, note: &Annotation) -> Result<Option<Call>, StoreError> {
        let mut inner = self.lock();
        let Some(call) = inner.calls.get_mut(&id) else {
            return Ok(None);
        };
        let noted = note.apply(call).then(|| call.clone());
        inner.reindex(id);
        Ok(noted)
    }

    async fn claim_idempotency_key(
        &self,
        owner: &str,
        key: &str,
        call_id: Uuid,
        ttl_seconds: i64,
    ) -> Result<Option<Uuid>, StoreError> {
        let now = Utc::now();
        let mut inner = self.lock();
        let slot = (owner.to_owned(), key.to_owned());
        match inner.idempotency.get(&slot) {
            Some((existing, expires)) if *expires > now => Ok(Some(*existing)),
            _ => {
                let expires = now + chrono::Duration::seconds(ttl_seconds);
                inner.idempotency.insert(slot, (call_id, expires));
                Ok(None)
            }
        }
    }

    async fn idempotency_binding(
        &self,
        owner: &str,
        key: &str,
    ) -> Result<Option<Uuid>, StoreError> {
        let now = Utc::now();
        Ok(self
            .lock()
            .idempotency
            .get(&(owner.to_owned(), key.to_owned()))
            .filter(|(_, expires)| *expires > now)
            .map(|(id, _)| *id))
    }
}

#[async_trait]
impl CallBacklog for MemoryStore {
    async fn active_calls(&self) -> Result<Vec<Call>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .active
            .iter()
            .filter_map(|id| inner.calls.get(id))
            .cloned()
            .collect())
    }

    async fn record_delivery(
        &self,
        id: Uuid,
        sequence: u32,
        delivery: &Delivery,
    ) -> Result<Option<Call>, StoreError> {
        let mut inner = self.lock();
        let Some(call) = inner.calls.get_mut(&id) else {
            return Ok(None);
        };
        let recorded = call
            .record_delivery(sequence, delivery)
            .then(|| call.clone());
        inner.reindex(id);
        Ok(recorded)
    }

    async fn claim_due_calls(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: usize,
    ) -> Result<Vec<Uuid>, StoreError> {
        let mut inner = self.lock();
        let Inner {
            calls,
            claims,
            undelivered,
            ..
        } = &mut *inner;
        claims.retain(|_, until| *until > now);
        let mut due: Vec<(DateTime<Utc>, Uuid)> = undelivered
            .iter()
            .filter(|id| !claims.contains_key(id))
            .filter_map(|id| calls.get(id))
            .filter_map(|c| {
                let event = c.next_event_due(now)?;
                Some((event.delivery.next_attempt_at.unwrap_or(event.at), c.id))
            })
            .collect();
        due.sort();
        due.truncate(limit);
        for (_, id) in &due {
            claims.insert(*id, now + lease);
        }
        Ok(due.into_iter().map(|(_, id)| id).collect())
    }

    async fn release_call(&self, id: Uuid) -> Result<(), StoreError> {
        self.lock().claims.remove(&id);
        Ok(())
    }

    async fn due_calls(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<QueuedCall>, StoreError> {
        Ok(self.due(now, limit, |_| true))
    }

    async fn due_calls_of(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<QueuedCall>, StoreError> {
        Ok(self.due(now, limit, |q| q.owner == owner))
    }
}

#[async_trait]
impl PacingStore for MemoryStore {
    async fn load_pacing(&self, keys: &[String]) -> Result<Vec<Versioned<Pacing>>, StoreError> {
        let inner = self.lock();
        Ok(keys
            .iter()
            .map(|key| inner.pacing.get(key).cloned().unwrap_or_default())
            .collect())
    }

    async fn save_pacing(
        &self,
        writes: &[(String, Versioned<Pacing>)],
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let current = |key: &String| inner.pacing.get(key).map_or(0, |v| v.version);
        if writes
            .iter()
            .any(|(key, state)| current(key) != state.version)
        {
            return Ok(false);
        }
        for (key, state) in writes {
            inner.pacing.insert(
                key.clone(),
                Versioned {
                    value: state.value.clone(),
                    version: state.version + 1,
                },
            );
        }
        Ok(true)
    }
}

#[async_trait]
impl UserReads for MemoryStore {
    async fn get_user(&self, username: &str) -> Result<Option<User>, StoreError> {
        Ok(self.lock().users.get(username).cloned())
    }
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn insert_user(&self, user: &User) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.users.contains_key(&user.username) {
            return Err(StoreError::Conflict);
        }
        inner.users.insert(user.username.clone(), user.clone());
        Ok(())
    }

    async fn update_user(&self, user: &User) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        match inner.users.get_mut(&user.username) {
            Some(existing) => {
                *existing = user.clone();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let mut users: Vec<User> = self.lock().users.values().cloned().collect();
        users.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(users)
    }
}

#[async_trait]
impl ThrottleStore for MemoryStore {
    async fn failures(
        &self,
        key: &str,
        now: DateTime<Utc>,
        window: chrono::Duration,
    ) -> Result<Option<FailureCount>, StoreError> {
        Ok(self
            .lock()
            .throttle
            .get(key)
            .filter(|count| count.last_at + window > now)
            .copied())
    }

    async fn record_failure(
        &self,
        key: &str,
        now: DateTime<Utc>,
        window: chrono::Duration,
    ) -> Result<FailureCount, StoreError> {
        let mut inner = self.lock();
        if inner.throttle.len() >= THROTTLE_PRUNE_AT {
            inner
                .throttle
                .retain(|_, count| count.last_at + window > now);
        }
        let count = inner
            .throttle
            .entry(key.to_owned())
            .and_modify(|count| {
                if count.last_at + window > now {
                    count.failures = count.failures.saturating_add(1);
                } else {
                    count.failures = 1;
                }
                count.last_at = count.last_at.max(now);
            })
            .or_insert(FailureCount {
                failures: 1,
                last_at: now,
            });
        Ok(*count)
    }

    async fn clear_failures(&self, key: &str) -> Result<(), StoreError> {
        self.lock().throttle.remove(key);
        Ok(())
    }
}
