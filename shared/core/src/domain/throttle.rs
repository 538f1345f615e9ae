//! The login throttle's rule: a few failed logins are free; after that each further
//! failure doubles the wait before the next attempt is checked, up to a ceiling, and
//! the count lapses a while after the last failure. A user is therefore slowed, never
//! locked out for good, and a guesser gets a handful of tries per window instead of
//! thousands.

use chrono::{DateTime, Duration, Utc};

/// Budgets, from the operator's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failed logins for one username that are not slowed.
    pub user_failures: u32,
    /// Failed logins from one client address (any usernames) that are not slowed.
    pub address_failures: u32,
    /// A count lapses this long after its last failure.
    pub window: Duration,
    /// The longest wait the doubling reaches.
    pub max_backoff: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            user_failures: 5,
            address_failures: 20,
            window: Duration::minutes(15),
            max_backoff: Duration::minutes(15),
        }
    }
}

/// The failures recorded under one key (a username or a client address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailureCount {
    pub failures: u32,
    pub last_at: DateTime<Utc>,
}

/// What a throttle counts: one username, or one client address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThrottleKey<'a> {
    User(&'a str),
    Address(&'a str),
}

impl ThrottleKey<'_> {
    /// The key's text form, as the stores keep it.
    pub fn text(&self) -> String {
        match self {
            ThrottleKey::User(name) => format!("user#{name}"),
            ThrottleKey::Address(address) => format!("address#{address}"),
        }
    }
}

impl ThrottlePolicy {
    /// Until when attempts under this key are refused without being checked; `None`
    /// when the next attempt may go ahead.
    pub fn blocked_until(
        &self,
        key: ThrottleKey<'_>,
        count: &FailureCount,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if now >= count.last_at + self.window {
            return None;
        }
        let free = match key {
            ThrottleKey::User(_) => self.user_failures,
            ThrottleKey::Address(_) => self.address_failures,
        };
        let over = count.failures.checked_sub(free)?;
        // 1 s after the first failure over the budget, then 2, 4, 8 ...
        let backoff = Duration::seconds(1_i64 << over.min(30)).min(self.max_backoff);
        let until = count.last_at + backoff;
        (until > now).then_some(until)
    }
}

/// Whole seconds a client should wait, for `Retry-After`: at least 1.
pub fn retry_after_seconds(until: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    let millis = u64::try_from((until - now).num_milliseconds()).unwrap_or(0);
    millis.div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("in range")
    }

    fn count(failures: u32, last: i64) -> FailureCount {
        FailureCount {
            failures,
            last_at: at(last),
        }
    }

    #[test]
    fn failures_within_the_budget_are_not_slowed() {
        let policy = ThrottlePolicy::default();
        let user = ThrottleKey::User("alice");
        assert_eq!(policy.blocked_until(user, &count(4, 0), at(0)), None);
        assert_eq!(
            policy.blocked_until(ThrottleKey::Address("192.0.2.1"), &count(19, 0), at(0)),
            None
        );
    }

    #[test]
    fn each_failure_over_the_budget_doubles_the_wait() {
        let policy = ThrottlePolicy::default();
        let user = ThrottleKey::User("alice");
        assert_eq!(policy.blocked_until(user, &count(5, 0), at(0)), Some(at(1)));
        assert_eq!(policy.blocked_until(user, &count(6, 0), at(0)), Some(at(2)));
        assert_eq!(
            policy.blocked_until(user, &count(9, 0), at(0)),
            Some(at(16))
        );
        assert_eq!(policy.blocked_until(user, &count(9, 0), at(16)), None);
    }

    #[test]
    fn the_wait_never_exceeds_the_ceiling_so_a_user_is_never_locked_out_for_good() {
        let policy = ThrottlePolicy::default();
        let user = ThrottleKey::User("alice");
        let until = policy.blocked_until(user, &count(u32::MAX, 0), at(0));
        assert_eq!(until, Some(at(15 * 60)));
        assert_eq!(
            policy.blocked_until(user, &count(u32::MAX, 0), at(15 * 60)),
            None
        );
    }

    #[test]
    fn a_count_lapses_a_window_after_its_last_failure() {
        let policy = ThrottlePolicy {
            max_backoff: Duration::hours(2),
            ..ThrottlePolicy::default()
        };
        let user = ThrottleKey::User("alice");
        assert!(policy.blocked_until(user, &count(20, 0), at(899)).is_some());
        assert_eq!(policy.blocked_until(user, &count(20, 0), at(900)), None);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(at(10), at(0)), 10);
        let half = at(0) + Duration::milliseconds(500);
        assert_eq!(retry_after_seconds(at(1), half), 1);
        assert_eq!(retry_after_seconds(at(0), at(5)), 1);
    }
}
