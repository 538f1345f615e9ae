//! Pacing: what the trunk and each user may have in flight, and when the next dial may
//! go out. The rules are plain functions over a [`Pacing`] state that the store keeps
//! (with a version, written back conditionally), so that every Lambda container and
//! every dispatcher reads and moves the same numbers.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

/// The operator's limits over all users together (`MAX_CALLS_PER_SECOND`,
/// `MAX_CONCURRENT_CALLS`); `None` is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrunkLimits {
    pub calls_per_second: Option<u32>,
    pub concurrent_calls: Option<u32>,
}

/// One user's limits, kept in the user record (`dialer-users set-limits`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserLimits {
    /// The user's calls between their dial and their end, at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_calls: Option<u32>,
    /// The user's new calls waiting in the queue, at most; past it a request gets 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queued_calls: Option<u32>,
}

/// How many new calls may wait in the queue: each user's, unless the user's record sets
/// its own `max_queued_calls` (`DEFAULT_MAX_QUEUED_CALLS`), and all users' together
/// (`MAX_QUEUED_CALLS`). `None` is unlimited. A queued call is held in the store until
/// it is dialed, so without these one client could fill the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueLimits {
    pub per_user: Option<u32>,
    pub total: Option<u32>,
}

impl QueueLimits {
    /// What a process serving the internet uses when the operator sets nothing.
    pub const DEFAULT: Self = Self {
        per_user: Some(1_000),
        total: Some(50_000),
    };

    /// The most new calls `user` may have waiting.
    pub fn of_user(&self, user: UserLimits) -> Option<u32> {
        user.max_queued_calls.or(self.per_user)
    }
}

/// The ranges the limits may take (environment and `set-limits` alike).
pub const CALLS_PER_SECOND_RANGE: std::ops::RangeInclusive<u32> = 1..=1_000;
pub const CONCURRENT_CALLS_RANGE: std::ops::RangeInclusive<u32> = 1..=5_000;
pub const QUEUED_CALLS_RANGE: std::ops::RangeInclusive<u32> = 1..=100_000;

/// The span over which `calls_per_second` dials may be granted: a second, and a margin
/// for the time between a grant and its originate reaching the PBX, which varies from
/// one call to the next. Without it two grants a second apart could reach the PBX
/// closer together than that.
pub const RATE_WINDOW: Duration = Duration::milliseconds(1_100);

/// How far ahead a rate-limited dial is booked: its grant is for this long after the
/// decision, and the dial waits for that moment to leave. The work between a decision
/// and its originate (a claim, a record) takes a varying time; booked ahead, dials
/// leave at the times the log holds, whatever that work took, as long as it took less.
pub const DIAL_LEAD: Duration = Duration::milliseconds(50);

/// A rate-limited dial ready to leave more than this after its booked time (a slow
/// store, a loaded host) is booked again ([`restamp`]), so that its lateness cannot
/// crowd it into the next window.
pub const LATE_AFTER: Duration = Duration::milliseconds(20);

/// One attempt of one call, as it holds a line: the key it is counted under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Slot {
    pub call: Uuid,
    pub attempt: u32,
}

impl Slot {
    pub fn key(&self) -> String {
        format!("{}#{}", self.call.simple(), self.attempt)
    }

    pub fn parse(key: &str) -> Option<Self> {
        let (call, attempt) = key.split_once('#')?;
        Some(Self {
            call: Uuid::try_parse(call).ok()?,
            attempt: attempt.parse().ok()?,
        })
    }
}

/// One scope's pacing state (the trunk's, or one user's), as the store keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pacing {
    /// The attempts holding a line, by [`Slot::key`], with when each was granted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lines: BTreeMap<String, DateTime<Utc>>,
    /// The times dials are booked for, in order: the past [`RATE_WINDOW`]'s and any
    /// ahead. No `calls_per_second + 1` of them lie within one window.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub recent: VecDeque<DateTime<Utc>>,
    /// New calls waiting in the queue (a user's, for `max_queued_calls`).
    #[serde(default)]
    pub queued: u32,
}

/// The answer to "may this attempt be dialed now?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Dial it: its line is held, its dial counted.
    Granted,
    /// The trunk's dial rate is spent until `until`.
    RateLimited { until: DateTime<Utc> },
    /// The trunk has `concurrent_calls` in flight.
    TrunkFull,
    /// The user has `max_concurrent_calls` in flight.
    UserFull,
}

impl TrunkLimits {
    pub fn any(&self) -> bool {
        self.calls_per_second.is_some() || self.concurrent_calls.is_some()
    }
}

impl UserLimits {
    pub fn any(&self) -> bool {
        self.max_concurrent_calls.is_some() || self.max_queued_calls.is_some()
    }
}

/// Decides whether `slot` may be dialed at `now`, and if so records it in the states it
/// is counted in: `trunk` when the trunk has limits, `user` when the user limits its
/// concurrent calls. An attempt already holding its line is granted again unchanged, so
/// a retried admission cannot count one call twice.
pub fn admit(
    trunk: Option<&mut Pacing>,
    user: Option<&mut Pacing>,
    slot: Slot,
    now: DateTime<Utc>,
    trunk_limits: TrunkLimits,
    user_limits: UserLimits,
) -> Admission {
    let key = slot.key();
    let held = trunk.as_ref().is_some_and(|t| t.lines.contains_key(&key))
        || user.as_ref().is_some_and(|u| u.lines.contains_key(&key));
    if held {
        return Admission::Granted;
    }
    if let Some(trunk) = trunk.as_ref() {
        if trunk_limits
            .concurrent_calls
            .is_some_and(|max| trunk.lines.len() >= max as usize)
        {
            return Admission::TrunkFull;
        }
        if let Some(rate) = trunk_limits.calls_per_second {
            let free = earliest_free(&trunk.recent, now, rate);
            if free > now {
                return Admission::RateLimited { until: free };
            }
        }
    }
    if let (Some(user), Some(max)) = (user.as_ref(), user_limits.max_concurrent_calls)
        && user.lines.len() >= max as usize
    {
        return Admission::UserFull;
    }
    if let Some(trunk) = trunk {
        trunk.lines.insert(key.clone(), now);
        if trunk_limits.calls_per_second.is_some() {
            book(&mut trunk.recent, now);
        } else {
            trunk.recent.clear();
        }
    }
    if let (Some(user), Some(_)) = (user, user_limits.max_concurrent_calls) {
        user.lines.insert(key, now);
    }
    Admission::Granted
}

/// Books a late dial again: drops its booking for `granted` and books the earliest
/// time from `at` on that keeps the rate in every window, before and after it (other
/// dials may be booked ahead already). Returns that time; it always finds one, so a
/// late dial cannot be starved by the dials granted after it.
pub fn restamp(
    trunk: &mut Pacing,
    granted: DateTime<Utc>,
    at: DateTime<Utc>,
    limits: TrunkLimits,
) -> DateTime<Utc> {
    let Some(rate) = limits.calls_per_second else {
        return at;
    };
    if let Some(found) = trunk.recent.iter().position(|t| *t == granted) {
        trunk.recent.remove(found);
    }
    let booked = earliest_free(&trunk.recent, at, rate);
    book(&mut trunk.recent, booked);
    booked
}

/// The earliest time from `from` on at which one more dial keeps every window of
/// [`RATE_WINDOW`] to at most `rate` dials: any `rate + 1` bookings in a row, the new
/// one among them, must span a whole window. Candidates are `from` and the moments
/// bookings leave a window; the last one always fits.
fn earliest_free(
    booked: &VecDeque<DateTime<Utc>>,
    from: DateTime<Utc>,
    rate: u32,
) -> DateTime<Utc> {
    let rate = rate.max(1) as usize;
    let fits = |t: DateTime<Utc>| {
        let mut times: Vec<DateTime<Utc>> = booked.iter().copied().collect();
        times.push(t);
        times.sort();
        times
            .windows(rate + 1)
            .all(|run| run[rate] - run[0] >= RATE_WINDOW)
    };
    let mut candidates: Vec<DateTime<Utc>> = std::iter::once(from)
        .chain(
            booked
                .iter()
                .map(|t| *t + RATE_WINDOW)
                .filter(|t| *t > from),
        )
        .collect();
    candidates.sort();
    candidates
        .into_iter()
        .find(|t| fits(*t))
        .unwrap_or_else(|| booked.iter().max().map_or(from, |t| *t + RATE_WINDOW))
}

/// Adds a booking, and forgets those that can no longer share a window with any new
/// one (older than a window before the newest).
fn book(booked: &mut VecDeque<DateTime<Utc>>, at: DateTime<Utc>) {
    booked.push_back(at);
    booked.make_contiguous().sort();
    let newest = booked.back().copied().unwrap_or(at);
    while booked
        .front()
        .is_some_and(|t| newest - *t >= RATE_WINDOW + RATE_WINDOW)
    {
        booked.pop_front();
    }
}

impl Pacing {
    /// Frees `slot`'s line; returns whether it held one.
    pub fn release(&mut self, slot: Slot) -> bool {
        self.lines.remove(&slot.key()).is_some()
    }

    /// Counts one more queued call unless `max` are queued already; returns whether it
    /// did.
    pub fn enqueue(&mut self, max: Option<u32>) -> bool {
        if max.is_some_and(|max| self.queued >= max) {
            return false;
        }
        self.queued = self.queued.saturating_add(1);
        true
    }

    /// One queued call left the queue (dialed or canceled).
    pub fn dequeue(&mut self) -> bool {
        let before = self.queued;
        self.queued = self.queued.saturating_sub(1);
        before != self.queued
    }

    /// Drops the lines whose attempt no longer needs one: `holds` says, from the store's
    /// active calls, whether an attempt is still between its claim and its end. A line
    /// younger than `grace` is kept whatever `holds` says, since its call may not show
    /// its claim yet. Returns how many were dropped.
    pub fn prune(
        &mut self,
        now: DateTime<Utc>,
        grace: Duration,
        holds: impl Fn(Slot) -> bool,
    ) -> usize {
        let before = self.lines.len();
        self.lines
            .retain(|key, granted| now - *granted < grace || Slot::parse(key).is_some_and(&holds));
        before - self.lines.len()
    }
}

/// How long a client is told to wait (`Retry-After`, seconds) when a user's queue is
/// full: the time the trunk needs to dial what waits, within a second and a minute.
pub fn queue_full_retry_after(queued: u32, trunk: TrunkLimits) -> u64 {
    match trunk.calls_per_second {
        Some(rate) => u64::from(queued.div_ceil(rate.max(1))).clamp(1, 60),
        None => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(n: u128) -> Slot {
        Slot {
            call: Uuid::from_u128(n),
            attempt: 1,
        }
    }

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms).expect("a valid time")
    }

    const RATE_5: TrunkLimits = TrunkLimits {
        calls_per_second: Some(5),
        concurrent_calls: None,
    };

    #[test]
    fn the_rate_allows_at_most_n_dials_in_any_window() {
        let mut trunk = Pacing::default();
        let mut granted = Vec::new();
        for ms in (0..5_000).step_by(10) {
            let s = slot(granted.len() as u128);
            if admit(
                Some(&mut trunk),
                None,
                s,
                at(ms),
                RATE_5,
                UserLimits::default(),
            ) == Admission::Granted
            {
                granted.push(ms);
            }
        }
        for (i, first) in granted.iter().enumerate() {
            let within = granted[i..]
                .iter()
                .take_while(|ms| **ms - first < RATE_WINDOW.num_milliseconds())
                .count();
            assert!(
                within <= 5,
                "{within} dials within a window from {first} ms"
            );
        }
        assert!(granted.len() >= 20, "only {} granted in 5 s", granted.len());
    }

    #[test]
    fn a_spent_rate_says_when_the_next_dial_may_go() {
        let mut trunk = Pacing::default();
        for n in 0..5 {
            assert_eq!(
                admit(
                    Some(&mut trunk),
                    None,
                    slot(n),
                    at(n as i64),
                    RATE_5,
                    UserLimits::default()
                ),
                Admission::Granted
            );
        }
        assert_eq!(
            admit(
                Some(&mut trunk),
                None,
                slot(9),
                at(500),
                RATE_5,
                UserLimits::default()
            ),
            Admission::RateLimited {
                until: at(0) + RATE_WINDOW
            }
        );
        assert_eq!(
            admit(
                Some(&mut trunk),
                None,
                slot(9),
                at(1_100),
                RATE_5,
                UserLimits::default()
            ),
            Admission::Granted
        );
    }

    #[test]
    fn a_late_dial_is_booked_again_where_the_rate_has_room() {
        let mut trunk = Pacing::default();
        for n in 0..5 {
            admit(
                Some(&mut trunk),
                None,
                slot(n),
                at(n as i64 * 10),
                RATE_5,
                UserLimits::default(),
            );
        }
        // The first dial is 300 ms late: booked again at once (there is room then).
        assert_eq!(restamp(&mut trunk, at(0), at(300), RATE_5), at(300));
        // So the next grant waits a window after the second dial, not the first.
        assert_eq!(
            admit(
                Some(&mut trunk),
                None,
                slot(9),
                at(1_105),
                RATE_5,
                UserLimits::default()
            ),
            Admission::RateLimited {
                until: at(10) + RATE_WINDOW
            }
        );
        // With a window ahead full of bookings, a late dial is booked after them.
        let mut full = Pacing::default();
        full.recent.push_back(at(0));
        for n in 0..5 {
            full.recent.push_back(at(1_000 + n));
        }
        let booked = restamp(&mut full, at(0), at(1_050), RATE_5);
        assert_eq!(booked, at(1_000) + RATE_WINDOW);
        let times: Vec<_> = full.recent.iter().copied().collect();
        for run in times.windows(6) {
            assert!(run[5] - run[0] >= RATE_WINDOW, "{run:?}");
        }
    }

    #[test]
    fn a_grant_between_bookings_ahead_keeps_every_window() {
        let mut trunk = Pacing::default();
        // Five dials booked ahead, half a window from now.
        for n in 0..5 {
            trunk.recent.push_back(at(600 + n));
        }
        // Now itself would put six within one window with them.
        match admit(
            Some(&mut trunk),
            None,
            slot(9),
            at(0),
            RATE_5,
            UserLimits::default(),
        ) {
            Admission::RateLimited { until } => assert!(until > at(0)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn concurrent_lines_are_held_until_released() {
        let limits = TrunkLimits {
            calls_per_second: None,
            concurrent_calls: Some(2),
        };
        let mut trunk = Pacing::default();
        let users = UserLimits::default();
        assert_eq!(
            admit(Some(&mut trunk), None, slot(1), at(0), limits, users),
            Admission::Granted
        );
        assert_eq!(
            admit(Some(&mut trunk), None, slot(2), at(0), limits, users),
            Admission::Granted
        );
        assert_eq!(
            admit(Some(&mut trunk), None, slot(3), at(0), limits, users),
            Admission::TrunkFull
        );
        // Admitting a line already held changes nothing and is no refusal.
        assert_eq!(
            admit(Some(&mut trunk), None, slot(2), at(0), limits, users),
            Admission::Granted
        );
        assert!(trunk.release(slot(1)));
        assert!(!trunk.release(slot(1)));
        assert_eq!(
            admit(Some(&mut trunk), None, slot(3), at(0), limits, users),
            Admission::Granted
        );
    }

    #[test]
    fn a_user_limit_counts_only_that_users_lines() {
        let user_limits = UserLimits {
            max_concurrent_calls: Some(1),
            max_queued_calls: None,
        };
        let mut trunk = Pacing::default();
        let mut alice = Pacing::default();
        let trunk_limits = TrunkLimits::default();
        assert_eq!(
            admit(
                Some(&mut trunk),
                Some(&mut alice),
                slot(1),
                at(0),
                trunk_limits,
                user_limits
            ),
            Admission::Granted
        );
        assert_eq!(
            admit(
                Some(&mut trunk),
                Some(&mut alice),
                slot(2),
                at(0),
                trunk_limits,
                user_limits
            ),
            Admission::UserFull
        );
        let mut bob = Pacing::default();
        assert_eq!(
            admit(
                Some(&mut trunk),
                Some(&mut bob),
                slot(2),
                at(0),
                trunk_limits,
                user_limits
            ),
            Admission::Granted
        );
    }

    #[test]
    fn a_refused_admission_leaves_every_state_as_it_was() {
        let limits = TrunkLimits {
            calls_per_second: Some(10),
            concurrent_calls: Some(5),
        };
        let user_limits = UserLimits {
            max_concurrent_calls: Some(1),
            max_queued_calls: None,
        };
        let mut trunk = Pacing::default();
        let mut user = Pacing::default();
        admit(
            Some(&mut trunk),
            Some(&mut user),
            slot(1),
            at(0),
            limits,
            user_limits,
        );
        let (trunk_before, user_before) = (trunk.clone(), user.clone());
        assert_eq!(
            admit(
                Some(&mut trunk),
                Some(&mut user),
                slot(2),
                at(1),
                limits,
                user_limits
            ),
            Admission::UserFull
        );
        assert_eq!((trunk, user), (trunk_before, user_before));
    }

    #[test]
    fn the_queue_count_stops_at_its_maximum() {
        let mut user = Pacing::default();
        assert!(user.enqueue(Some(2)));
        assert!(user.enqueue(Some(2)));
        assert!(!user.enqueue(Some(2)));
        assert!(user.dequeue());
        assert!(user.enqueue(Some(2)));
        user.queued = 0;
        assert!(!user.dequeue(), "never below zero");
    }

    #[test]
    fn pruning_keeps_young_lines_and_those_still_in_use() {
        let mut trunk = Pacing::default();
        trunk.lines.insert(slot(1).key(), at(0));
        trunk.lines.insert(slot(2).key(), at(0));
        trunk.lines.insert(slot(3).key(), at(9_500));
        trunk.lines.insert("garbage".into(), at(0));
        let dropped = trunk.prune(at(10_000), Duration::seconds(5), |s| s == slot(2));
        assert_eq!(dropped, 2);
        assert!(trunk.lines.contains_key(&slot(2).key()));
        assert!(trunk.lines.contains_key(&slot(3).key()));
    }

    #[test]
    fn slot_keys_round_trip() {
        let s = Slot {
            call: Uuid::new_v4(),
            attempt: 3,
        };
        assert_eq!(Slot::parse(&s.key()), Some(s));
        assert_eq!(Slot::parse("x#1"), None);
    }
}
