//! The dispatcher: dials queued calls as soon as their time has come and the limits
//! allow. It runs in the always-on service (the bridge, the local server); any number
//! may run at once, since each call is claimed with a conditional write and every limit
//! is counted in the store.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::calls::Dialer;
use super::pacing::Pacer;
use crate::domain::outcome::progress_of_channel_state;
use crate::domain::{Admission, Annotation, CallStatus, FailureReason, Transition, UserLimits};
use crate::metrics::Metrics;
use crate::store::{
    CallBacklog, PACING_QUEUE_TOTAL, PACING_TRUNK, QueuedCall, StoreError, TransitionResult,
    UserStore, pacing_queue_key, pacing_user_key,
};

/// How a dispatcher runs.
#[derive(Clone, Debug)]
pub struct DispatchTiming {
    /// How often the queue is read when nothing in this process signals work.
    pub poll: Duration,
    /// How often the pacing counts are brought in line with the store's active calls.
    pub reconcile: Duration,
    /// A claimed call that has not been dialed this long after its claim lost its
    /// dispatcher (a crash): settled from what the PBX knows.
    pub claim_timeout: Duration,
    /// Queued calls read per round.
    pub batch: usize,
    /// Originates in flight at once, at most.
    pub concurrency: usize,
}

impl Default for DispatchTiming {
    fn default() -> Self {
        Self {
            poll: Duration::from_millis(100),
            reconcile: Duration::from_secs(5),
            claim_timeout: Duration::from_secs(60),
            batch: 256,
            concurrency: 64,
        }
    }
}

/// The longest a dispatcher sleeps when told to wait (a spent rate).
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// How long one admission in a round may keep losing the race for the pacing state
/// before the round gives way: as long as a new call's placement waits.
const ADMIT_PATIENCE: Duration = super::pacing::PLACEMENT_PATIENCE;

/// The users' own queues read in one round at most, when the queue is deeper than a
/// batch (see [`Dispatcher::round`]).
const HEADS_PER_ROUND: usize = 32;

/// The counter of the dispatcher's queries of the queue (each a query on DynamoDB).
pub const QUEUE_READS: &str = "dialer_queue_reads_total";

/// Whether the dispatcher may dial now: the bridge that will follow the calls is
/// connected to the PBX.
pub type Ready = Arc<dyn Fn() -> bool + Send + Sync>;

#[derive(Clone)]
pub struct Dispatcher {
    calls: Arc<dyn CallBacklog>,
    users: Arc<dyn UserStore>,
    dialer: Dialer,
    pacer: Pacer,
    ready: Ready,
    timing: DispatchTiming,
    metrics: Arc<Metrics>,
    /// The calls this dispatcher is dialing now.
    in_flight: Arc<Mutex<HashSet<Uuid>>>,
    /// The users with calls in the queue, as the last reconciliation found them and
    /// the rounds since saw: whose queues a round reads when one batch of the whole
    /// queue cannot show every user. A hint, rebuilt from the store at every
    /// reconciliation: no limit or claim rests on it.
    waiting_users: Arc<Mutex<BTreeSet<String>>>,
    /// The user whose call this dispatcher claimed last: the next round's turns begin
    /// with the user after them (by name, round the list), so the users take turns
    /// across rounds, not only within one.
    last_served: Arc<Mutex<Option<String>>>,
}

/// What one round of the dispatcher did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub claimed: usize,
    /// Why the round stopped early, if it did: when the next dial may go.
    pub wait_until: Option<DateTime<Utc>>,
    /// The round stopped because the trunk's dial rate is spent until `wait_until`. No
    /// dispatcher with the same limits can be admitted a dial before then, so neither a
    /// freed line nor new work wakes the loop early: on a store billed or slowed by the
    /// query, the queue is not read again for nothing. (A dial booked again later, on a
    /// slow store, may open a window sooner; it is found a window late at worst.)
    pub rate_limited: bool,
    /// The earliest call falling due before the next poll: the loop wakes for it
    /// instead of finding it a poll late.
    pub next_due: Option<DateTime<Utc>>,
    /// As many originates are in flight as `concurrency` allows: the loop waits for
    /// one to finish.
    pub saturated: bool,
}

impl Dispatcher {
    pub fn new(
        calls: Arc<dyn CallBacklog>,
        users: Arc<dyn UserStore>,
        dialer: Dialer,
        ready: Ready,
        timing: DispatchTiming,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            pacer: dialer.pacer().clone(),
            calls,
            users,
            dialer,
            ready,
            timing,
            metrics,
            in_flight: Arc::default(),
            waiting_users: Arc::default(),
            last_served: Arc::default(),
        }
    }

    /// Dials queued calls until `stop` resolves; then lets the originates in flight
    /// finish. Store errors are logged and the loop goes on.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let wake = self.pacer.freed();
        let mut dials = JoinSet::new();
        let mut counts = ReconcileMemory::default();
        let mut next_reconcile = tokio::time::Instant::now();
        info!("dispatcher started");
        loop {
            while dials.try_join_next().is_some() {}
            if tokio::time::Instant::now() >= next_reconcile {
                if let Err(e) = self.reconcile(&mut counts).await {
                    warn!(error = %e, "pacing reconciliation failed; trying again later");
                }
                next_reconcile = tokio::time::Instant::now() + self.timing.reconcile;
            }
            let mut pause = self.timing.poll;
            let mut saturated = false;
            let mut wakeable = true;
            if (self.ready)() {
                match self.round(&mut dials).await {
                    Ok(round) => {
                        saturated = round.saturated;
                        if let Some(until) = round.wait_until {
                            // Nothing can be dialed before then (but for a spent rate,
                            // a freed line or new work in this process wakes the loop).
                            let wait = (until - Utc::now()).to_std().unwrap_or_default();
                            pause = wait.min(MAX_PAUSE);
                            wakeable = !round.rate_limited;
                        } else if round.claimed > 0 {
                            // There may be more due right behind these.
                            pause = Duration::ZERO;
                        }
                        if let Some(due) = round.next_due
                            && wakeable
                        {
                            let wait = (due - Utc::now()).to_std().unwrap_or_default();
                            pause = pause.min(wait);
                        }
                    }
                    Err(e) => warn!(error = %e, "dispatch round failed; trying again"),
                }
            }
            if saturated {
                tokio::select! {
                    () = &mut stop => break,
                    _ = dials.join_next() => {}
                }
                continue;
            }
            tokio::select! {
                () = &mut stop => break,
                () = wake.notified(), if wakeable && !pause.is_zero() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
        while dials.join_next().await.is_some() {}
        info!("dispatcher stopped");
    }

    /// One pass over the calls due now, fair between users: each user's calls in the
    /// order they were queued, the users taking turns (the first turn is the next
    /// user's after the one served last).
    pub async fn round(&self, dials: &mut JoinSet<()>) -> Result<Round, StoreError> {
        let now = crate::domain::now();
        let horizon = now + chrono::Duration::from_std(self.timing.poll).unwrap_or_default();
        let (due, soon): (Vec<_>, Vec<_>) = self
            .listing(horizon)
            .await?
            .into_iter()
            .partition(|q| q.due_at <= now);
        let mut round = Round {
            next_due: soon.iter().map(|q| q.due_at).min(),
            ..Round::default()
        };
        let mut full_users = HashSet::new();
        let mut limits: HashMap<String, UserLimits> = HashMap::new();
        let after = self.last_served_user();
        for queued in fair_order(due, after.as_deref()) {
            if full_users.contains(&queued.owner) {
                continue;
            }
            if dials.len() >= self.timing.concurrency {
                // Enough originates in flight; the next round takes the rest.
                round.saturated = true;
                break;
            }
            if !self.ready_to_claim(&queued, now).await? {
                continue;
            }
            let user_limits = match limits.get(&queued.owner) {
                Some(l) => *l,
                None => {
                    let l = self
                        .users
                        .get_user(&queued.owner)
                        .await?
                        .map(|u| u.limits)
                        .unwrap_or_default();
                    limits.insert(queued.owner.clone(), l);
                    l
                }
            };
            let slot = crate::domain::Slot {
                call: queued.id,
                attempt: queued.attempt_number,
            };
            let paced = self.pacer.applies(user_limits);
            let Some((admission, granted_at)) = self
                .pacer
                .admit_within(&queued.owner, user_limits, slot, ADMIT_PATIENCE)
                .await?
            else {
                // Other writers kept winning the trunk's state: they are placing
                // calls. The round ends and the next one tries again, rather than
                // holding the loop (and its stop) for the pacer's whole patience.
                round.wait_until = Some(Utc::now() + self.timing.poll);
                break;
            };
            match admission {
                Admission::Granted => {}
                Admission::RateLimited { until } => {
                    // `until` is a booking time, and a dial is booked DIAL_LEAD ahead
                    // of its admission: the window opens to admissions that much sooner.
                    round.wait_until = Some(until - crate::domain::pacing::DIAL_LEAD);
                    round.rate_limited = true;
                    break;
                }
                Admission::TrunkFull => {
                    // A freed line wakes the loop; the poll covers other processes.
                    round.wait_until = Some(Utc::now() + self.timing.poll);
                    break;
                }
                Admission::UserFull => {
                    full_users.insert(queued.owner.clone());
                    continue;
                }
            }
            match self.claim(&queued, paced, granted_at, dials).await? {
                Claim::Won => {
                    round.claimed += 1;
                    *self.last_served.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(queued.owner.clone());
                }
                // The line is the attempt's, not this dispatcher's: while another
                // dispatcher dials the attempt it keeps the line this one also admitted.
                Claim::Lost { dialing: true } => {}
                Claim::Lost { dialing: false } => {
                    if paced {
                        self.pacer.release(&queued.owner, slot).await?;
                    }
                }
            }
        }
        if round.claimed > 0 {
            debug!(claimed = round.claimed, "dispatched queued calls");
        }
        Ok(round)
    }

    /// The calls due by `horizon` that a round chooses from. Mostly one batch of the
    /// whole queue, soonest first, which shows every user with calls due. When the
    /// queue is deeper than that batch it may hold one user's backlog alone; then the
    /// head of every waiting user's own queue is added, so that the users still take
    /// turns across the whole queue. At most [`HEADS_PER_ROUND`] users' queues are read
    /// in one round, those whose turns come next, so that a round's reads stay bounded
    /// however many users wait.
    async fn listing(&self, horizon: DateTime<Utc>) -> Result<Vec<QueuedCall>, StoreError> {
        let batch = self.timing.batch.max(1);
        self.metrics.inc(QUEUE_READS, &[]);
        let mut listed = self.calls.due_calls(horizon, batch).await?;
        let after = self.last_served_user();
        let turns = {
            let mut waiting = self.waiting_users.lock().unwrap_or_else(|p| p.into_inner());
            for queued in &listed {
                if !waiting.contains(&queued.owner) {
                    waiting.insert(queued.owner.clone());
                }
            }
            if listed.len() < batch || waiting.len() < 2 {
                return Ok(listed);
            }
            // Only the users read this round are copied out: with thousands waiting, a
            // round costs no more than with a few.
            next_turns(&waiting, after.as_deref(), HEADS_PER_ROUND)
        };
        let read = turns.len();
        // Each user's head, as deep as a round could take of it when every user read
        // takes a turn.
        let depth = (batch / read).max(1);
        let mut seen: HashSet<Uuid> = listed.iter().map(|q| q.id).collect();
        let mut emptied = Vec::new();
        for user in &turns {
            self.metrics.inc(QUEUE_READS, &[]);
            let head = self.calls.due_calls_of(user, horizon, depth).await?;
            if head.is_empty() {
                emptied.push(user.clone());
                continue;
            }
            listed.extend(head.into_iter().filter(|q| seen.insert(q.id)));
        }
        if !emptied.is_empty() {
            let mut waiting = self.waiting_users.lock().unwrap_or_else(|p| p.into_inner());
            for user in &emptied {
                waiting.remove(user);
            }
        }
        Ok(listed)
    }

    fn last_served_user(&self) -> Option<String> {
        self.last_served
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the queued call may be claimed now, from its record: a call whose cancel
    /// was requested (a cancel that raced a retry) ends `canceled` here, never dialed;
    /// one whose calling window closed while it waited (behind the limits, say) waits
    /// for the window's next opening.
    async fn ready_to_claim(
        &self,
        queued: &QueuedCall,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let Some(call) = self.calls.get_call(queued.id).await? else {
            return Ok(false);
        };
        if call.status != CallStatus::Queued || call.attempt_number != queued.attempt_number {
            return Ok(false);
        }
        if call.cancel_requested_at.is_some() {
            self.dialer.cancel_in_queue(&call).await?;
            return Ok(false);
        }
        if let Some(window) = &call.window
            && !window.is_open(now)
        {
            let opens = window.next_open(now);
            self.calls
                .annotate(call.id, &Annotation::DeferUntil(opens))
                .await?;
            debug!(call = %call.id, opens = %opens, "window closed; the call waits for it");
            return Ok(false);
        }
        Ok(true)
    }

    /// Takes the call out of the queue with a conditional write and dials it; `Lost`
    /// when another dispatcher (or a cancel) came first.
    async fn claim(
        &self,
        queued: &QueuedCall,
        paced: bool,
        granted_at: DateTime<Utc>,
        dials: &mut JoinSet<()>,
    ) -> Result<Claim, StoreError> {
        let claim = Transition::claim(queued.attempt_number, paced, crate::domain::now());
        let call = match self.calls.transition(queued.id, &claim).await? {
            TransitionResult::Applied(call) => call,
            TransitionResult::Refused(now) => {
                return Ok(Claim::Lost {
                    dialing: now.attempt_number == queued.attempt_number
                        && now.is_active()
                        && now.status != CallStatus::Queued,
                });
            }
            TransitionResult::NotFound => return Ok(Claim::Lost { dialing: false }),
        };
        if queued.attempt_number == 1 {
            self.pacer.dequeue(&queued.owner).await?;
        }
        let waited = (Utc::now() - queued.due_at).num_milliseconds().max(0) as f64 / 1000.0;
        self.metrics
            .observe("dialer_queue_wait_seconds", &[], waited);
        self.metrics.inc("dialer_dispatched_total", &[]);
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(call.id);
        let dialer = self.dialer.clone();
        let in_flight = Arc::clone(&self.in_flight);
        let rate_limited = paced && self.pacer.limits().calls_per_second.is_some();
        dials.spawn(async move {
            let id = call.id;
            if rate_limited && let Err(e) = dialer.pacer().before_dial(granted_at).await {
                // Dialing anyway would break the rate; the claim is settled as lost.
                warn!(call = %id, error = %e, "could not pace the dial; left to reconciliation");
                in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                return;
            }
            if let Err(e) = dialer.dial_unless_canceled(call).await {
                warn!(call = %id, error = %e, "queued call not dialed");
            }
            in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        });
        Ok(Claim::Won)
    }

    /// Brings the pacing states in line with the calls the store holds as active:
    /// lines of attempts that ended without freeing them (a crash between the two
    /// writes) are dropped, and a user's queue count that disagrees with the queue is
    /// set right once it has stood still for a whole interval (so that no count in
    /// the middle of a change is overwritten). Settles claims whose dispatcher died
    /// before dialing them.
    pub async fn reconcile(&self, memory: &mut ReconcileMemory) -> Result<(), StoreError> {
        let active = self.calls.calls_in_progress().await?;
        let queued = self.calls.queued_calls().await?;
        let now = crate::domain::now();
        *self.waiting_users.lock().unwrap_or_else(|p| p.into_inner()) =
            queued.iter().map(|q| q.owner.clone()).collect();
        let holding: HashSet<(Uuid, u32)> =
            active.iter().map(|c| (c.id, c.attempt_number)).collect();
        let holds = |slot: crate::domain::Slot| holding.contains(&(slot.call, slot.attempt));
        let grace =
            chrono::Duration::from_std(self.timing.claim_timeout).unwrap_or(chrono::Duration::MAX);
        let mut keys = vec![PACING_TRUNK.to_owned(), PACING_QUEUE_TOTAL.to_owned()];
        let users = self.users.list_users().await?;
        // Every user's queue count: the default queue limit counts the calls of users
        // with no limits of their own too.
        for user in &users {
            if user.limits.max_concurrent_calls.is_some() {
                keys.push(pacing_user_key(&user.username));
            }
            keys.push(pacing_queue_key(&user.username));
        }
        let mut queued_of: HashMap<String, u32> = HashMap::new();
        for call in queued.iter().filter(|q| q.attempt_number == 1) {
            *queued_of.entry(pacing_queue_key(&call.owner)).or_default() += 1;
            *queued_of.entry(PACING_QUEUE_TOTAL.to_owned()).or_default() += 1;
        }
        let states = self.pacer.load(&keys).await?;
        let mut freed = 0;
        for (key, mut state) in keys.iter().zip(states) {
            let before = state.value.clone();
            freed += state.value.prune(now, grace, holds);
            if key.starts_with("queue#") || key == PACING_QUEUE_TOTAL {
                let actual = queued_of.get(key).copied().unwrap_or(0);
                let still = memory.seen.get(key) == Some(&state.version);
                if state.value.queued != actual && still {
                    warn!(
                        key,
                        counted = state.value.queued,
                        actual,
                        "queue count set right"
                    );
                    state.value.queued = actual;
                }
            }
            let version = state.version;
            if state.value != before {
                if self.pacer.save(key, state).await? {
                    memory.seen.insert(key.clone(), version + 1);
                }
            } else {
                memory.seen.insert(key.clone(), version);
            }
        }
        if freed > 0 {
            warn!(freed, "freed lines whose attempts had ended");
            self.pacer.wake();
        }
        self.settle_lost_claims(&active, now).await
    }

    /// A claimed call still `pending` long after its claim, and not being dialed here,
    /// lost its dispatcher between the claim and the originate's answer. The PBX says
    /// whether the originate got through: a channel goes on as usual; none means the
    /// call cannot be known to have been placed, and ends as an unconfirmed originate
    /// does (`failed`, `originate_unconfirmed`; its retry policy may try it again).
    async fn settle_lost_claims(
        &self,
        active: &[crate::domain::Call],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let timeout =
            chrono::Duration::from_std(self.timing.claim_timeout).unwrap_or(chrono::Duration::MAX);
        let in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for call in active.iter().filter(|c| {
            c.status == CallStatus::Pending
                && c.claimed_at.is_some_and(|at| now - at >= timeout)
                && !in_flight.contains(&c.id)
        }) {
            let change = match self.dialer.pbx().channel(call.id).await {
                Ok(Some(channel)) => Transition::to(
                    progress_of_channel_state(&channel.state).unwrap_or(CallStatus::Dialing),
                    now,
                ),
                Ok(None) if call.cancel_requested_at.is_some() => {
                    Transition::to(CallStatus::Canceled, now)
                }
                Ok(None) => Transition::to(CallStatus::Failed, now)
                    .with_reason(Some(FailureReason::OriginateUnconfirmed)),
                Err(e) => {
                    warn!(call = %call.id, error = %e, "cannot ask the PBX about a lost claim");
                    continue;
                }
            }
            .of_attempt(call.attempt_number);
            let result = self.calls.transition(call.id, &change).await?;
            if result.applied() {
                warn!(call = %call.id, status = %change.status, "settled a claim its dispatcher lost");
            }
            self.dialer.release_ended(&result).await;
        }
        Ok(())
    }
}

enum Claim {
    Won,
    /// Another came first; `dialing`: someone is dialing this very attempt now.
    Lost {
        dialing: bool,
    },
}

/// What reconciliation remembers between passes: the version each pacing state had.
#[derive(Debug, Default)]
pub struct ReconcileMemory {
    seen: HashMap<String, u64>,
}

/// The queue in dispatch order: users take turns, each user's calls in queue order;
/// the turns go by name, round the list, and begin with the first user after `after`
/// (the one served last).
pub fn fair_order(due: Vec<QueuedCall>, after: Option<&str>) -> Vec<QueuedCall> {
    let mut per_owner: std::collections::BTreeMap<String, std::collections::VecDeque<QueuedCall>> =
        std::collections::BTreeMap::new();
    let mut due = due;
    due.sort_by_key(QueuedCall::order_key);
    for call in due {
        per_owner
            .entry(call.owner.clone())
            .or_default()
            .push_back(call);
    }
    let mut owners: Vec<String> = per_owner.keys().cloned().collect();
    let first = first_turn(&owners, after);
    owners.rotate_left(first);
    let mut ordered = Vec::new();
    loop {
        let mut any = false;
        for owner in &owners {
            if let Some(call) = per_owner.get_mut(owner).and_then(|q| q.pop_front()) {
                ordered.push(call);
                any = true;
            }
        }
        if !any {
            return ordered;
        }
    }
}

/// The next `n` users (or all, if fewer) whose turns come, in name order round the set,
/// starting with the first after `after`.
fn next_turns(users: &BTreeSet<String>, after: Option<&str>, n: usize) -> Vec<String> {
    match after {
        Some(after) => users
            .range::<str, _>((Bound::Excluded(after), Bound::Unbounded))
            .chain(users.range::<str, _>((Bound::Unbounded, Bound::Included(after))))
            .take(n)
            .cloned()
            .collect(),
        None => users.iter().take(n).cloned().collect(),
    }
}

/// Where the turns begin in `users` (sorted): at the first user after `after`, round
/// the list.
fn first_turn(users: &[String], after: Option<&str>) -> usize {
    match after {
        Some(after) if !users.is_empty() => {
            users.partition_point(|u| u.as_str() <= after) % users.len()
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(owner: &str, n: i64) -> QueuedCall {
        let at = DateTime::from_timestamp_millis(1_800_000_000_000 + n).expect("a valid time");
        QueuedCall {
            id: Uuid::from_u128(n as u128),
            owner: owner.into(),
            attempt_number: 1,
            due_at: at,
            created_at: at,
        }
    }

    #[test]
    fn the_users_read_next_are_those_after_the_last_served_round_the_set() {
        let users: BTreeSet<String> = ["ann", "bob", "cat", "dan"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(next_turns(&users, None, 2), ["ann", "bob"]);
        assert_eq!(next_turns(&users, Some("bob"), 3), ["cat", "dan", "ann"]);
        assert_eq!(
            next_turns(&users, Some("dan"), 9),
            ["ann", "bob", "cat", "dan"]
        );
        // A last-served user no longer waiting: the turn goes on from where it was.
        assert_eq!(next_turns(&users, Some("bz"), 2), ["cat", "dan"]);
        assert_eq!(
            next_turns(&users, Some("zed"), 9),
            ["ann", "bob", "cat", "dan"]
        );
        assert!(next_turns(&BTreeSet::new(), Some("ann"), 4).is_empty());
    }

    #[test]
    fn users_take_turns_and_each_keeps_its_order() {
        let due = vec![
            queued("alice", 1),
            queued("alice", 2),
            queued("alice", 3),
            queued("bob", 4),
            queued("carol", 5),
            queued("bob", 6),
        ];
        let order = |after: Option<&str>| -> Vec<i64> {
            fair_order(due.clone(), after)
                .iter()
                .map(|q| q.id.as_u128() as i64)
                .collect()
        };
        assert_eq!(order(None), vec![1, 4, 5, 2, 6, 3]);
        assert_eq!(order(Some("alice")), vec![4, 5, 1, 6, 2, 3], "bob's turn");
        assert_eq!(
            order(Some("bert")),
            vec![4, 5, 1, 6, 2, 3],
            "after bert: bob"
        );
        assert_eq!(
            order(Some("carol")),
            vec![1, 4, 5, 2, 6, 3],
            "round the list"
        );
        assert_eq!(order(Some("zed")), vec![1, 4, 5, 2, 6, 3]);
    }
}
