//! The login throttle's rule. Failed logins are counted three ways: for one username
//! from one client address, for one address (any usernames), and for one username from
//! every address together. A few failures under each of the first two are free; past
//! them each further failure doubles that key's wait, up to a ceiling, and a count
//! lapses a while after its last failure. So a guesser slows himself: his waits are
//! kept under his own address, and the account's owner, at another address, is not
//! slowed by them.
//!
//! The third count is for guessers spread over many addresses. Past its much higher
//! ceiling, an address that has already failed for that username within the window
//! waits, and one with no failure for it is still checked: each address gets one
//! guess, and the owner, who has not mistyped from where they are, still gets in.

use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};

/// Budgets, from the operator's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failed logins for one username from one client address that are not slowed.
    pub user_failures: u32,
    /// Failed logins from one client address (any usernames) that are not slowed.
    pub address_failures: u32,
    /// Failed logins for one username from all addresses together past which only an
    /// address with no failure of its own for that username is checked.
    pub user_ceiling: u32,
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
            user_ceiling: 100,
            window: Duration::minutes(15),
            max_backoff: Duration::minutes(15),
        }
    }
}

/// The failures recorded under one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailureCount {
    pub failures: u32,
    pub last_at: DateTime<Utc>,
}

/// What a throttle counts. An address is an [`address_key`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThrottleKey<'a> {
    /// One username tried from one client address.
    UserAtAddress(&'a str, &'a str),
    /// One client address, any usernames.
    Address(&'a str),
    /// One username, from every address together.
    User(&'a str),
}

impl ThrottleKey<'_> {
    /// The key's text form, as the stores keep it. Neither a username nor an address
    /// key holds a `#`, so no two keys share a text.
    pub fn text(&self) -> String {
        match self {
            ThrottleKey::UserAtAddress(name, address) => format!("user-address#{name}#{address}"),
            ThrottleKey::Address(address) => format!("address#{address}"),
            ThrottleKey::User(name) => format!("user#{name}"),
        }
    }
}

/// What the throttle counts of a client: an IPv4 address, or an IPv6 address's /64,
/// since one subscriber is given a whole /64 and could otherwise rotate through it.
pub fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The address key of a request the serving layer gave no address: all such requests
/// share one budget, as if from one address.
pub const UNKNOWN_ADDRESS: &str = "unknown";

/// The counts on record for one login attempt, unlapsed (`None`: none on record).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttemptCounts {
    pub user_at_address: Option<FailureCount>,
    pub address: Option<FailureCount>,
    pub user: Option<FailureCount>,
}

/// Why an attempt waits, and until when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocked {
    pub until: DateTime<Utc>,
    /// The count that ends latest.
    pub by: BlockedBy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockedBy {
    UserAtAddress,
    Address,
    User,
}

impl BlockedBy {
    /// For a log line.
    pub fn as_str(self) -> &'static str {
        match self {
            BlockedBy::UserAtAddress => "username from this address",
            BlockedBy::Address => "address",
            BlockedBy::User => "username from all addresses",
        }
    }
}

impl ThrottlePolicy {
    /// Until when this attempt is refused without its password being checked; `None`
    /// when it may go ahead.
    pub fn blocked(&self, counts: &AttemptCounts, now: DateTime<Utc>) -> Option<Blocked> {
        let live = |count: &Option<FailureCount>| count.filter(|c| now < c.last_at + self.window);
        let user_at_address = live(&counts.user_at_address);
        let mut waits = vec![
            (
                BlockedBy::UserAtAddress,
                self.slowed_until(self.user_failures, user_at_address, now),
            ),
            (
                BlockedBy::Address,
                self.slowed_until(self.address_failures, live(&counts.address), now),
            ),
        ];
        // The many-address count never stops an address that has not failed for this
        // username: the owner, typing the right password where they are, gets in.
        if user_at_address.is_some_and(|c| c.failures > 0) {
            waits.push((
                BlockedBy::User,
                self.slowed_until(self.user_ceiling, live(&counts.user), now),
            ));
        }
        waits
            .into_iter()
            .filter_map(|(by, until)| until.map(|until| Blocked { until, by }))
            .max_by_key(|blocked| blocked.until)
    }

    fn slowed_until(
        &self,
        free: u32,
        count: Option<FailureCount>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let count = count?;
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

    fn count(failures: u32, last: i64) -> Option<FailureCount> {
        Some(FailureCount {
            failures,
            last_at: at(last),
        })
    }

    fn from_here(failures: u32, last: i64) -> AttemptCounts {
        AttemptCounts {
            user_at_address: count(failures, last),
            ..AttemptCounts::default()
        }
    }

    fn until(policy: &ThrottlePolicy, counts: AttemptCounts, now: i64) -> Option<i64> {
        policy
            .blocked(&counts, at(now))
            .map(|b| (b.until - at(0)).num_seconds())
    }

    #[test]
    fn failures_within_the_budgets_are_not_slowed() {
        let policy = ThrottlePolicy::default();
        assert_eq!(until(&policy, from_here(4, 0), 0), None);
        let counts = AttemptCounts {
            user_at_address: count(4, 0),
            address: count(19, 0),
            user: count(99, 0),
        };
        assert_eq!(until(&policy, counts, 0), None);
    }

    #[test]
    fn each_failure_over_the_budget_doubles_the_wait() {
        let policy = ThrottlePolicy::default();
        assert_eq!(until(&policy, from_here(5, 0), 0), Some(1));
        assert_eq!(until(&policy, from_here(6, 0), 0), Some(2));
        assert_eq!(until(&policy, from_here(9, 0), 0), Some(16));
        assert_eq!(until(&policy, from_here(9, 0), 16), None);
        let address = AttemptCounts {
            address: count(21, 0),
            ..AttemptCounts::default()
        };
        let blocked = policy.blocked(&address, at(0)).expect("blocked");
        assert_eq!((blocked.until, blocked.by), (at(2), BlockedBy::Address));
    }

    #[test]
    fn the_wait_never_exceeds_the_ceiling_so_a_user_is_never_locked_out_for_good() {
        let policy = ThrottlePolicy::default();
        assert_eq!(until(&policy, from_here(u32::MAX, 0), 0), Some(15 * 60));
        assert_eq!(until(&policy, from_here(u32::MAX, 0), 15 * 60), None);
    }

    #[test]
    fn a_count_lapses_a_window_after_its_last_failure() {
        let policy = ThrottlePolicy {
            max_backoff: Duration::hours(2),
            ..ThrottlePolicy::default()
        };
        assert!(until(&policy, from_here(20, 0), 899).is_some());
        assert_eq!(until(&policy, from_here(20, 0), 900), None);
    }

    #[test]
    fn past_the_user_ceiling_an_address_without_failures_for_the_user_is_still_checked() {
        let policy = ThrottlePolicy::default();
        let flood = count(5_000, 0);
        let clean = AttemptCounts {
            user_at_address: None,
            address: None,
            user: flood,
        };
        assert_eq!(until(&policy, clean, 0), None, "the owner gets in");
        let failed_once = AttemptCounts {
            user_at_address: count(1, 0),
            address: count(1, 0),
            user: flood,
        };
        let blocked = policy.blocked(&failed_once, at(0)).expect("blocked");
        assert_eq!(blocked.by, BlockedBy::User);
        assert_eq!(blocked.until, at(15 * 60));
        // Its own failure lapsed: the address is clean again, whatever the flood.
        let lapsed = AttemptCounts {
            user_at_address: count(1, 0),
            address: None,
            user: count(5_000, 900),
        };
        assert_eq!(until(&policy, lapsed, 900), None);
        // Under the ceiling, one failure from here changes nothing.
        let quiet = AttemptCounts {
            user: count(99, 0),
            ..failed_once
        };
        assert_eq!(until(&policy, quiet, 0), None);
    }

    #[test]
    fn key_texts_differ_for_every_kind_and_value() {
        let keys = [
            ThrottleKey::UserAtAddress("alice", "192.0.2.1"),
            ThrottleKey::UserAtAddress("alice", "192.0.2.2"),
            ThrottleKey::Address("192.0.2.1"),
            ThrottleKey::User("alice"),
            ThrottleKey::User("192.0.2.1"),
        ];
        let texts: std::collections::HashSet<String> = keys.iter().map(|k| k.text()).collect();
        assert_eq!(texts.len(), keys.len());
    }

    #[test]
    fn an_ipv6_client_counts_as_its_64_and_a_mapped_ipv4_as_itself() {
        let v6 = |s: &str| address_key(s.parse().expect("address"));
        assert_eq!(v6("2001:db8:1:2::7"), "2001:db8:1:2::/64");
        assert_eq!(v6("2001:db8:1:2:ffff::1"), "2001:db8:1:2::/64");
        assert_eq!(v6("::ffff:192.0.2.9"), "192.0.2.9");
        assert_eq!(v6("192.0.2.9"), "192.0.2.9");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(at(10), at(0)), 10);
        let half = at(0) + Duration::milliseconds(500);
        assert_eq!(retry_after_seconds(at(1), half), 1);
        assert_eq!(retry_after_seconds(at(0), at(5)), 1);
    }
}
