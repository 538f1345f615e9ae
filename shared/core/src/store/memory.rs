//! The in-process store: for local use (`DISABLE_DB=true`) and tests. One mutex guards
//! the maps, so every conditional write is atomic.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    CallBacklog, CallPage, CallReads, CallStore, IdempotencyBinding, PacingStore, PageCursor,
    QueuedCall, StoreError, ThrottleStore, TransitionResult, UserReads, UserStore, Versioned,
};
use crate::domain::webhook::Delivery;
use crate::domain::{Annotation, Call, FailureCount, Pacing, Transition, User};

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    calls: HashMap<Uuid, Call>,
    users: HashMap<String, User>,
    idempotency: HashMap<(String, String), (IdempotencyBinding, DateTime<Utc>)>,
    throttle: HashMap<String, FailureCount>,
    /// Webhook deliverers' claims: until when each call is held.
    claims: HashMap<Uuid, DateTime<Utc>>,
    /// Each user's calls in list order, so that a page costs its length, not the
    /// user's whole history.
    by_owner: HashMap<String, BTreeSet<(DateTime<Utc>, Uuid)>>,
    /// The queue in its order, whole and per user, and each queued call's place in it:
    /// the dispatcher reads the head every fraction of a second, and a long queue of
    /// calls not yet due must cost it nothing.
    queued: HashMap<Uuid, QueueKey>,
    queue: BTreeSet<QueueKey>,
    queue_of: HashMap<String, BTreeSet<QueueKey>>,
    /// The ids of the calls not final, and of those with an event still to deliver:
    /// what the bridge's sweeps and the webhook deliverer read, without a scan of every
    /// call kept.
    active: HashSet<Uuid>,
    undelivered: HashSet<Uuid>,
    pacing: HashMap<String, Versioned<Pacing>>,
    /// Calls looked at by list and queue reads (see [`MemoryStore::records_examined`]).
    examined: u64,
}

/// A queued call's place: [`QueuedCall::order_key`].
type QueueKey = (DateTime<Utc>, DateTime<Utc>, Uuid);

impl Inner {
    /// Keeps the indexes in step with call `id` after a write.
    fn reindex(&mut self, id: Uuid) {
        let call = self.calls.get(&id);
        let place = call.and_then(QueuedCall::of);
        if self.queued.get(&id) != place.as_ref().map(QueuedCall::order_key).as_ref() {
            if let Some(old) = self.queued.remove(&id) {
                self.queue.remove(&old);
                if let Some(call) = call
                    && let Some(mine) = self.queue_of.get_mut(&call.owner)
                {
                    mine.remove(&old);
                    if mine.is_empty() {
                        self.queue_of.remove(&call.owner);
                    }
                }
            }
            if let Some(queued) = place {
                let key = queued.order_key();
                self.queued.insert(id, key);
                self.queue.insert(key);
                self.queue_of.entry(queued.owner).or_default().insert(key);
            }
        }
        for (index, holds) in [
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

    /// Up to `limit` queued calls due by `now`, in queue order, from `queue`.
    fn due_from(
        calls: &HashMap<Uuid, Call>,
        queue: Option<&BTreeSet<QueueKey>>,
        now: DateTime<Utc>,
        limit: usize,
        examined: &mut u64,
    ) -> Vec<QueuedCall> {
        let Some(queue) = queue else {
            return Vec::new();
        };
        queue
            .iter()
            .take_while(|(due_at, _, _)| *due_at <= now)
            .take(limit)
            .filter_map(|(_, _, id)| {
                *examined += 1;
                QueuedCall::of(calls.get(id)?)
            })
            .collect()
    }
}

/// Past this many throttle counts, lapsed ones are dropped: a guesser rotating
/// addresses must not grow the map without bound.
const THROTTLE_PRUNE_AT: usize = 10_000;

/// Past this many idempotency bindings, lapsed ones are dropped, for the same reason:
/// every call with a key leaves one behind.
const IDEMPOTENCY_PRUNE_AT: usize = 10_000;

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

    /// How many calls list and queue reads have looked at so far: what a read costs
    /// here. Tests use it to show that a page or a queue head costs its length however
    /// many calls are kept.
    pub fn records_examined(&self) -> u64 {
        self.lock().examined
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
        let mut inner = self.lock();
        let Inner {
            calls,
            by_owner,
            examined,
            ..
        } = &mut *inner;
        let Some(mine) = by_owner.get(owner) else {
            return Ok(CallPage::default());
        };
        let upper = match before {
            Some(cursor) => std::ops::Bound::Excluded((cursor.created_at, cursor.id)),
            None => std::ops::Bound::Unbounded,
        };
        let calls: Vec<Call> = mine
            .range((std::ops::Bound::Unbounded, upper))
            .rev()
            .take(limit + 1)
            .filter_map(|(_, id)| {
                *examined += 1;
                calls.get(id).cloned()
            })
            .collect();
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
        inner
            .by_owner
            .entry(call.owner.clone())
            .or_default()
            .insert((call.created_at, call.id));
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
        binding: &IdempotencyBinding,
        ttl_seconds: i64,
    ) -> Result<Option<IdempotencyBinding>, StoreError> {
        let now = Utc::now();
        let mut inner = self.lock();
        if inner.idempotency.len() >= IDEMPOTENCY_PRUNE_AT {
            inner.idempotency.retain(|_, (_, expires)| *expires > now);
        }
        let slot = (owner.to_owned(), key.to_owned());
        match inner.idempotency.get(&slot) {
            Some((existing, expires)) if *expires > now => Ok(Some(existing.clone())),
            _ => {
                let expires = now + chrono::Duration::seconds(ttl_seconds);
                inner.idempotency.insert(slot, (binding.clone(), expires));
                Ok(None)
            }
        }
    }

    async fn idempotency_binding(
        &self,
        owner: &str,
        key: &str,
    ) -> Result<Option<IdempotencyBinding>, StoreError> {
        let now = Utc::now();
        Ok(self
            .lock()
            .idempotency
            .get(&(owner.to_owned(), key.to_owned()))
            .filter(|(_, expires)| *expires > now)
            .map(|(binding, _)| binding.clone()))
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

    async fn calls_in_progress(&self) -> Result<Vec<Call>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .active
            .iter()
            .filter(|id| !inner.queued.contains_key(id))
            .filter_map(|id| inner.calls.get(id))
            .cloned()
            .collect())
    }

    async fn queued_calls(&self) -> Result<Vec<QueuedCall>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .queue
            .iter()
            .filter_map(|(_, _, id)| QueuedCall::of(inner.calls.get(id)?))
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
        let mut inner = self.lock();
        let Inner {
            calls,
            queue,
            examined,
            ..
        } = &mut *inner;
        Ok(Inner::due_from(calls, Some(queue), now, limit, examined))
    }

    async fn due_calls_of(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<QueuedCall>, StoreError> {
        let mut inner = self.lock();
        let Inner {
            calls,
            queue_of,
            examined,
            ..
        } = &mut *inner;
        Ok(Inner::due_from(
            calls,
            queue_of.get(owner),
            now,
            limit,
            examined,
        ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CallPolicy, CallRequest};

    fn call(owner: &str, at_ms: i64, send_at: Option<DateTime<Utc>>) -> Call {
        let now = DateTime::from_timestamp_millis(1_800_000_000_000 + at_ms).expect("a time");
        let request = CallRequest {
            phone_number: "+15550020001".into(),
            ..CallRequest::default()
        };
        let mut call = request
            .validate(&CallPolicy::default(), owner, Uuid::new_v4(), now)
            .expect("valid");
        if let Some(due) = send_at {
            call.enqueue(due);
        }
        call
    }

    #[tokio::test]
    async fn a_page_of_a_users_calls_costs_its_length_however_many_calls_are_kept() {
        let store = MemoryStore::new();
        for n in 0..5_000 {
            store
                .insert_call(&call("alice", n, None))
                .await
                .expect("insert");
            store
                .insert_call(&call("bob", n, None))
                .await
                .expect("insert");
        }
        let before = store.records_examined();
        let page = store.calls_of("alice", None, 1).await.expect("page");
        assert_eq!(page.calls.len(), 1);
        assert_eq!(
            page.calls[0].created_at.timestamp_millis(),
            1_800_000_004_999
        );
        let next = page.next.expect("another page");
        let second = store.calls_of("alice", Some(next), 10).await.expect("page");
        assert_eq!(second.calls.len(), 10);
        assert!(second.calls.iter().all(|c| next.precedes(c)));
        assert_eq!(
            store.records_examined() - before,
            2 + 11,
            "each page looked at its length and one more, not the 10,000 calls kept"
        );
        assert!(
            store
                .calls_of("nobody", None, 5)
                .await
                .expect("page")
                .calls
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_long_queue_of_calls_not_yet_due_costs_a_queue_read_nothing() {
        let store = MemoryStore::new();
        let far = DateTime::from_timestamp_millis(1_900_000_000_000).expect("a time");
        for n in 0..5_000 {
            store
                .insert_call(&call("alice", n, Some(far)))
                .await
                .expect("insert");
        }
        let soon = call(
            "bob",
            1,
            Some(DateTime::from_timestamp_millis(1_800_000_000_500).expect("a time")),
        );
        store.insert_call(&soon).await.expect("insert");
        let now = DateTime::from_timestamp_millis(1_800_000_001_000).expect("a time");
        let before = store.records_examined();
        let due = store.due_calls(now, 100).await.expect("due");
        assert_eq!(due.iter().map(|q| q.id).collect::<Vec<_>>(), vec![soon.id]);
        assert!(
            store
                .due_calls_of("alice", now, 100)
                .await
                .expect("due")
                .is_empty()
        );
        assert_eq!(
            store
                .due_calls_of("bob", now, 100)
                .await
                .expect("due")
                .len(),
            1
        );
        assert_eq!(
            store.records_examined() - before,
            2,
            "only the due call was looked at, twice"
        );
        let later = store.due_calls(far, 3).await.expect("due");
        assert_eq!(later.len(), 3, "a batch of the head, in queue order");
        assert!(
            later
                .windows(2)
                .all(|w| w[0].order_key() <= w[1].order_key())
        );
    }
}
