//! The pacer: the pacing rules ([`crate::domain::pacing`]) applied to the states the
//! store keeps, by read, decide, conditional write, and again on a lost race. Every
//! container that dials (the originate function, each dispatcher) goes through one, so
//! the limits hold across all of them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use crate::domain::pacing::{self, Admission, Pacing, QueueLimits, Slot, TrunkLimits, UserLimits};
use crate::store::{
    PACING_QUEUE_TOTAL, PACING_TRUNK, PacingStore, StoreError, Versioned, pacing_queue_key,
    pacing_user_key,
};

/// The furthest ahead a late dial is booked again (see [`Pacer::before_dial`]).
pub const MAX_REBOOK_LEAD: chrono::Duration = chrono::Duration::seconds(2);

#[derive(Clone)]
pub struct Pacer {
    store: Arc<dyn PacingStore>,
    limits: TrunkLimits,
    queue: QueueLimits,
    freed: Arc<Notify>,
}

/// Why a new call could not be queued: `queued` calls wait already, the user's own or
/// (`whole_service`) all users' together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueFull {
    pub queued: u32,
    pub whole_service: bool,
}

impl Pacer {
    pub fn new(store: Arc<dyn PacingStore>, limits: TrunkLimits) -> Self {
        Self {
            store,
            limits,
            queue: QueueLimits::default(),
            freed: Arc::new(Notify::new()),
        }
    }

    /// Bounds the queue (see [`QueueLimits`]); unbounded without.
    pub fn with_queue_limits(mut self, queue: QueueLimits) -> Self {
        self.queue = queue;
        self
    }

    pub fn queue_limits(&self) -> QueueLimits {
        self.queue
    }

    pub fn limits(&self) -> TrunkLimits {
        self.limits
    }

    /// Whether a dial for a user with `user` limits is counted at all. With no limit
    /// anywhere nothing is read or written: the unpaced path costs nothing.
    pub fn applies(&self, user: UserLimits) -> bool {
        self.limits.any() || user.max_concurrent_calls.is_some()
    }

    /// Signalled whenever a line is freed or work is queued in this process: what a
    /// dispatcher waits on between its polls of the store.
    pub fn freed(&self) -> Arc<Notify> {
        Arc::clone(&self.freed)
    }

    /// May `slot` be dialed now? On `Granted` its line is held (and its dial counted)
    /// in the store until [`Pacer::release`]. Returns the answer and the grant's time:
    /// with a rate limit, the moment the dial is booked for ([`pacing::DIAL_LEAD`]
    /// ahead; see [`Pacer::before_dial`]). It is taken afresh for every try of the
    /// conditional write: a grant stamped at a first, lost try would look older than it
    /// is, and let the next window open early.
    pub async fn admit(
        &self,
        owner: &str,
        user: UserLimits,
        slot: Slot,
    ) -> Result<(Admission, DateTime<Utc>), StoreError> {
        self.admit_within(owner, user, slot, UPDATE_PATIENCE)
            .await?
            .ok_or_else(contended)
    }

    /// [`Pacer::admit`], trying for no longer than `patience` while other writers keep
    /// winning the race for the same state: `None` then. A new call's placement asks
    /// this way and queues the call on `None`, for a dispatcher to admit, rather than
    /// keep its client waiting or answer 503 because the trunk is busy.
    pub async fn admit_within(
        &self,
        owner: &str,
        user: UserLimits,
        slot: Slot,
        patience: Duration,
    ) -> Result<Option<(Admission, DateTime<Utc>)>, StoreError> {
        let track_trunk = self.limits.any();
        let track_user = user.max_concurrent_calls.is_some();
        let mut keys = Vec::new();
        if track_trunk {
            keys.push(PACING_TRUNK.to_owned());
        }
        if track_user {
            keys.push(pacing_user_key(owner));
        }
        if keys.is_empty() {
            return Ok(Some((Admission::Granted, crate::domain::now())));
        }
        let limits = self.limits;
        let lead = if limits.calls_per_second.is_some() {
            pacing::DIAL_LEAD
        } else {
            chrono::Duration::zero()
        };
        self.update_within(keys, patience, |states| {
            let now = crate::domain::now() + lead;
            let (trunk, user_state) = match (track_trunk, states) {
                (true, [trunk, user_state]) => (Some(trunk), Some(user_state)),
                (true, [trunk]) => (Some(trunk), None),
                (false, [user_state]) => (None, Some(user_state)),
                _ => (None, None),
            };
            // A line held already (another dispatcher admitted this attempt, or an
            // admission whose claim failed) keeps the dial time booked with it, so
            // that the dial is paced by that booking and never leaves unbooked.
            let booked = trunk
                .as_ref()
                .and_then(|t| t.lines.get(&slot.key()).copied());
            (
                pacing::admit(trunk, user_state, slot, now, limits, user),
                booked.unwrap_or(now),
            )
        })
        .await
    }

    /// Before a rate-limited dial booked for `granted_at` leaves: waits for that
    /// moment; when it has passed by more than [`pacing::LATE_AFTER`] (the work since
    /// the booking took longer than [`pacing::DIAL_LEAD`]), books the dial again (the
    /// earliest time with room, which always exists) and waits for that. So a dial
    /// leaves within `LATE_AFTER` of a time the log holds. A booking made again lies
    /// ahead by twice what the last write took (at least `DIAL_LEAD`, at most
    /// [`MAX_REBOOK_LEAD`]): on a store slower than `DIAL_LEAD` a fixed lead would be
    /// spent before the write returned, every time, and the dial would never leave.
    pub async fn before_dial(&self, granted_at: DateTime<Utc>) -> Result<(), StoreError> {
        if self.limits.calls_per_second.is_none() {
            return Ok(());
        }
        let limits = self.limits;
        let mut booked = granted_at;
        let mut lead = pacing::DIAL_LEAD;
        loop {
            let now = Utc::now();
            if let Ok(wait) = (booked - now).to_std() {
                // Not looked at again after the sleep: on a loaded host a timer often
                // wakes more than LATE_AFTER late, and booking such a dial again sent it
                // behind every dial booked meanwhile, over and over (a CI run saw one
                // wait 14 s). The margin in RATE_WINDOW covers a wake-up's lateness.
                tokio::time::sleep(wait).await;
                return Ok(());
            }
            if now - booked <= pacing::LATE_AFTER {
                return Ok(());
            }
            let from = booked;
            let writing = std::time::Instant::now();
            booked = self
                .update(vec![PACING_TRUNK.to_owned()], |states| {
                    let at = crate::domain::now() + lead;
                    pacing::restamp(&mut states[0], from, at, limits)
                })
                .await?;
            let took = chrono::Duration::from_std(writing.elapsed()).unwrap_or(MAX_REBOOK_LEAD);
            lead = (took * 2).clamp(pacing::DIAL_LEAD, MAX_REBOOK_LEAD);
        }
    }

    /// Frees `slot`'s line, wherever it is held. Freeing one not held is no error: the
    /// end of an attempt may be written twice (an event and the sweeper).
    pub async fn release(&self, owner: &str, slot: Slot) -> Result<(), StoreError> {
        let keys = vec![PACING_TRUNK.to_owned(), pacing_user_key(owner)];
        let freed = self
            .update(keys, |states| {
                // Every state, not just the first that held it.
                let mut freed = false;
                for state in states.iter_mut() {
                    freed |= state.release(slot);
                }
                freed
            })
            .await?;
        if freed {
            self.freed.notify_one();
        }
        Ok(())
    }

    /// Counts a new queued call for `owner`, unless the user's queue or the whole
    /// service's is full. Both counts move in one conditional write.
    pub async fn enqueue(
        &self,
        owner: &str,
        user: UserLimits,
    ) -> Result<Result<(), QueueFull>, StoreError> {
        // Each count that has a bound, with it: all users' first, so that a full
        // service says so even to a user whose own queue is full too.
        let bounds: Vec<(String, u32, bool)> = [
            (PACING_QUEUE_TOTAL.to_owned(), self.queue.total, true),
            (pacing_queue_key(owner), self.queue.of_user(user), false),
        ]
        .into_iter()
        .filter_map(|(key, max, whole_service)| Some((key, max?, whole_service)))
        .collect();
        if bounds.is_empty() {
            return Ok(Ok(()));
        }
        let keys = bounds.iter().map(|(key, _, _)| key.clone()).collect();
        self.update(keys, |states| {
            let full = states
                .iter()
                .zip(&bounds)
                .find(|(state, (_, max, _))| state.queued >= *max);
            if let Some((state, (_, _, whole_service))) = full {
                return Err(QueueFull {
                    queued: state.queued,
                    whole_service: *whole_service,
                });
            }
            for state in states.iter_mut() {
                state.enqueue(None);
            }
            Ok(())
        })
        .await
    }

    /// A new call of `owner`'s left the queue (claimed, canceled, or never stored): it
    /// no longer counts in the user's queue nor in the whole service's.
    pub async fn dequeue(&self, owner: &str) -> Result<(), StoreError> {
        let keys = vec![pacing_queue_key(owner), PACING_QUEUE_TOTAL.to_owned()];
        self.update(keys, |states| {
            for state in states.iter_mut() {
                state.dequeue();
            }
        })
        .await?;
        Ok(())
    }

    /// Wakes a dispatcher in this process: there is queued work.
    pub fn wake(&self) {
        self.freed.notify_one();
    }

    /// The states under `keys`, as the store holds them now.
    pub async fn load(&self, keys: &[String]) -> Result<Vec<Versioned<Pacing>>, StoreError> {
        self.store.load_pacing(keys).await
    }

    /// Writes `state` for `key` unless it moved on since `version`; returns whether it
    /// wrote.
    pub async fn save(&self, key: &str, state: Versioned<Pacing>) -> Result<bool, StoreError> {
        self.store.save_pacing(&[(key.to_owned(), state)]).await
    }

    /// Read, apply `change`, write back if it changed anything, unless another writer
    /// came first: then again from what that writer left, for up to [`UPDATE_PATIENCE`].
    async fn update<R>(
        &self,
        keys: Vec<String>,
        change: impl FnMut(&mut [Pacing]) -> R,
    ) -> Result<R, StoreError> {
        self.update_within(keys, UPDATE_PATIENCE, change)
            .await?
            .ok_or_else(contended)
    }

    /// [`Pacer::update`], giving up with `None` once `patience` is spent on lost races.
    async fn update_within<R>(
        &self,
        keys: Vec<String>,
        patience: Duration,
        mut change: impl FnMut(&mut [Pacing]) -> R,
    ) -> Result<Option<R>, StoreError> {
        let started = Instant::now();
        let mut backoff = BackOff::new();
        loop {
            let tried = Instant::now();
            let read = self.store.load_pacing(&keys).await?;
            let mut states: Vec<Pacing> = read.iter().map(|v| v.value.clone()).collect();
            let answer = change(&mut states);
            let writes: Vec<(String, Versioned<Pacing>)> = keys
                .iter()
                .zip(read.iter().zip(states))
                .filter(|(_, (before, after))| before.value != *after)
                .map(|(key, (before, after))| {
                    (
                        key.clone(),
                        Versioned {
                            value: after,
                            version: before.version,
                        },
                    )
                })
                .collect();
            if writes.is_empty() || self.store.save_pacing(&writes).await? {
                return Ok(Some(answer));
            }
            let pause = backoff.next(tried.elapsed());
            if started.elapsed() + pause > patience {
                return Ok(None);
            }
            tokio::time::sleep(pause).await;
        }
    }
}

/// How long a pacing write keeps trying while other writers win the race for its state.
pub const UPDATE_PATIENCE: Duration = Duration::from_secs(10);

/// How long a new call's placement tries to win the trunk's state before it queues the
/// call instead (see [`Pacer::admit_within`]).
pub const PLACEMENT_PATIENCE: Duration = Duration::from_secs(1);

fn contended() -> StoreError {
    StoreError::unavailable("the pacing state kept changing under concurrent writes")
}

/// Random pauses between tries of a lost race ("full jitter"), so that writers who
/// collided spread out instead of colliding again in step. The window doubles after
/// each loss, from the time one try took: on a slow store a try takes long, and as many
/// writers contend as can start during one, so pauses shorter than a try would only
/// collide again (on a loaded moto, 60 writers lost 100 tries each that way).
struct BackOff {
    losses: u32,
}

impl BackOff {
    /// The longest pause, however many races were lost.
    const MAX: Duration = Duration::from_secs(1);

    fn new() -> Self {
        Self { losses: 0 }
    }

    fn next(&mut self, try_took: Duration) -> Duration {
        self.losses = self.losses.saturating_add(1);
        let base = try_took.max(Duration::from_millis(1));
        let window = base.saturating_mul(1 << self.losses.min(8)).min(Self::MAX);
        let micros = window.as_micros().max(1) as u64;
        Duration::from_micros(fastrand::u64(0..micros))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn slot(n: u128) -> Slot {
        Slot {
            call: uuid::Uuid::from_u128(n),
            attempt: 1,
        }
    }

    #[test]
    fn pauses_after_lost_races_grow_from_what_a_try_took_and_stay_below_a_second() {
        let try_took = Duration::from_millis(40);
        let mut backoff = BackOff::new();
        let mut longest = Vec::new();
        for losses in 1..=12_u32 {
            let window = (try_took * (1 << losses.min(8))).min(BackOff::MAX);
            let pause = backoff.next(try_took);
            assert!(pause < window, "{pause:?} after {losses} losses");
            longest.push(window);
        }
        assert_eq!(longest[0], Duration::from_millis(80));
        assert_eq!(*longest.last().expect("pauses"), BackOff::MAX);
        // Spread, not in step: of many pauses in one window, hardly any repeat.
        let mut backoff = BackOff::new();
        let pauses: std::collections::HashSet<Duration> =
            (0..200).map(|_| backoff.next(try_took)).collect();
        assert!(
            pauses.len() > 190,
            "{} distinct pauses of 200",
            pauses.len()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_admissions_never_exceed_the_trunk_limit() {
        let pacer = Pacer::new(
            Arc::new(MemoryStore::new()),
            TrunkLimits {
                calls_per_second: None,
                concurrent_calls: Some(8),
            },
        );
        let mut tasks = Vec::new();
        for n in 0..64 {
            let pacer = pacer.clone();
            tasks.push(tokio::spawn(async move {
                pacer
                    .admit("alice", UserLimits::default(), slot(n))
                    .await
                    .expect("the store answers")
                    .0
            }));
        }
        let mut granted = Vec::new();
        for (n, task) in tasks.into_iter().enumerate() {
            if task.await.expect("the store answers") == Admission::Granted {
                granted.push(n as u128);
            }
        }
        assert_eq!(granted.len(), 8);
        // Which eight won is up to the race; one of them hangs up.
        pacer
            .release("alice", slot(granted[0]))
            .await
            .expect("the store answers");
        let state = pacer
            .load(&[PACING_TRUNK.to_owned()])
            .await
            .expect("the store answers");
        assert_eq!(state[0].value.lines.len(), 7);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_until_a_call_leaves_it() {
        let pacer = Pacer::new(Arc::new(MemoryStore::new()), TrunkLimits::default());
        let limits = UserLimits {
            max_concurrent_calls: None,
            max_queued_calls: Some(2),
        };
        let enqueue = |who: &'static str| {
            let pacer = pacer.clone();
            async move { pacer.enqueue(who, limits).await.expect("the store answers") }
        };
        assert_eq!(enqueue("bob").await, Ok(()));
        assert_eq!(enqueue("bob").await, Ok(()));
        assert_eq!(
            enqueue("bob").await,
            Err(QueueFull {
                queued: 2,
                whole_service: false
            })
        );
        assert_eq!(enqueue("carol").await, Ok(()), "another user's queue");
        pacer.dequeue("bob").await.expect("the store answers");
        assert_eq!(enqueue("bob").await, Ok(()));
    }

    #[tokio::test]
    async fn a_user_without_a_limit_of_their_own_gets_the_default_queue_limit() {
        let pacer = Pacer::new(Arc::new(MemoryStore::new()), TrunkLimits::default())
            .with_queue_limits(QueueLimits {
                per_user: Some(1),
                total: None,
            });
        let enqueue = |limits: UserLimits| {
            let pacer = pacer.clone();
            async move {
                pacer
                    .enqueue("dan", limits)
                    .await
                    .expect("the store answers")
            }
        };
        assert_eq!(enqueue(UserLimits::default()).await, Ok(()));
        assert_eq!(
            enqueue(UserLimits::default()).await,
            Err(QueueFull {
                queued: 1,
                whole_service: false
            })
        );
        let own = UserLimits {
            max_concurrent_calls: None,
            max_queued_calls: Some(3),
        };
        assert_eq!(enqueue(own).await, Ok(()), "the user's own limit wins");
    }

    #[tokio::test]
    async fn the_whole_services_queue_limit_holds_across_users_and_frees_as_calls_leave() {
        let pacer = Pacer::new(Arc::new(MemoryStore::new()), TrunkLimits::default())
            .with_queue_limits(QueueLimits {
                per_user: Some(10),
                total: Some(3),
            });
        let enqueue = |who: &'static str| {
            let pacer = pacer.clone();
            async move {
                pacer
                    .enqueue(who, UserLimits::default())
                    .await
                    .expect("the store answers")
            }
        };
        for who in ["ann", "ben", "cat"] {
            assert_eq!(enqueue(who).await, Ok(()));
        }
        assert_eq!(
            enqueue("dee").await,
            Err(QueueFull {
                queued: 3,
                whole_service: true
            })
        );
        pacer.dequeue("ben").await.expect("the store answers");
        assert_eq!(
            enqueue("dee").await,
            Ok(()),
            "a place freed by another user"
        );
        let counts = pacer
            .load(&[PACING_QUEUE_TOTAL.to_owned(), pacing_queue_key("ben")])
            .await
            .expect("the store answers");
        assert_eq!((counts[0].value.queued, counts[1].value.queued), (3, 0));
    }

    /// The in-process store, each pacing read and write taking `delay`.
    struct Slow {
        inner: MemoryStore,
        delay: std::time::Duration,
    }

    #[async_trait::async_trait]
    impl PacingStore for Slow {
        async fn load_pacing(&self, keys: &[String]) -> Result<Vec<Versioned<Pacing>>, StoreError> {
            tokio::time::sleep(self.delay).await;
            self.inner.load_pacing(keys).await
        }
        async fn save_pacing(
            &self,
            writes: &[(String, Versioned<Pacing>)],
        ) -> Result<bool, StoreError> {
            tokio::time::sleep(self.delay).await;
            self.inner.save_pacing(writes).await
        }
    }

    #[tokio::test]
    async fn a_late_dial_on_a_store_slower_than_the_lead_still_leaves_on_a_booked_time() {
        let store = Arc::new(Slow {
            inner: MemoryStore::new(),
            delay: std::time::Duration::from_millis(120),
        });
        let limits = TrunkLimits {
            calls_per_second: Some(5),
            concurrent_calls: None,
        };
        let pacer = Pacer::new(store.clone(), limits);
        let (admission, granted) = pacer
            .admit("alice", UserLimits::default(), slot(1))
            .await
            .expect("admit");
        assert_eq!(admission, Admission::Granted);
        // The grant's 50 ms lead went by during the write itself: the dial is late, and
        // each booking again takes longer than that lead too.
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            pacer.before_dial(granted),
        )
        .await
        .expect("the dial leaves")
        .expect("store");
        let left = Utc::now();
        let booked = store
            .inner
            .load_pacing(&[PACING_TRUNK.to_owned()])
            .await
            .expect("read")
            .remove(0)
            .value
            .recent;
        assert_eq!(booked.len(), 1, "booked once: {booked:?}");
        let late = left - booked[0];
        assert!(
            late >= chrono::Duration::zero() && late <= pacing::LATE_AFTER,
            "left {late} after its booked time"
        );
    }

    #[tokio::test]
    async fn without_limits_nothing_is_written() {
        let store = Arc::new(MemoryStore::new());
        let pacer = Pacer::new(store.clone(), TrunkLimits::default());
        assert!(!pacer.applies(UserLimits::default()));
        assert_eq!(
            pacer
                .admit("alice", UserLimits::default(), slot(1))
                .await
                .expect("the store answers")
                .0,
            Admission::Granted
        );
        let state = pacer
            .load(&[PACING_TRUNK.to_owned()])
            .await
            .expect("the store answers");
        assert_eq!(state[0].version, 0);
    }
}
