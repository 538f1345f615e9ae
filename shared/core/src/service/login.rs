//! The password grant (username and password in, access token out), its throttle, and
//! the check of the bearer token on every other request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::Semaphore;

use super::ServiceError;
use crate::auth::{PasswordHasher, TokenError, Tokens, accepts};
use crate::domain::throttle::{
    AttemptCounts, FailureCount, ThrottleKey, ThrottlePolicy, UNKNOWN_ADDRESS, address_key,
    retry_after_seconds,
};
use crate::domain::user::valid_username;
use crate::metrics::Metrics;
use crate::secrets::SecretError;
use crate::store::{StoreError, ThrottleStore, UserReads};

#[derive(Clone)]
pub struct LoginService {
    users: Arc<dyn UserReads>,
    throttle: Arc<dyn ThrottleStore>,
    policy: ThrottlePolicy,
    hasher: Arc<dyn PasswordHasher>,
    /// bcrypt checks running at once: fewer than the cores, so that a storm of logins
    /// queues here instead of starving every other route of CPU.
    checks: Arc<Semaphore>,
    tokens: Arc<Tokens>,
    metrics: Arc<Metrics>,
}

/// Who a bearer token speaks for: a valid token of a user who exists, is enabled and
/// has not had their tokens revoked since it was issued.
#[derive(Clone)]
pub struct Authenticator {
    tokens: Arc<Tokens>,
    users: Arc<dyn UserReads>,
    cache: Arc<UserCache>,
}

pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: i64,
}

/// Why a bearer token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("could not validate credentials")]
    Invalid,
    #[error(transparent)]
    KeyUnavailable(#[from] SecretError),
    #[error("the store is unavailable")]
    StoreUnavailable(#[source] StoreError),
}

impl LoginService {
    pub fn new(
        users: Arc<dyn UserReads>,
        throttle: Arc<dyn ThrottleStore>,
        policy: ThrottlePolicy,
        hasher: Arc<dyn PasswordHasher>,
        tokens: Arc<Tokens>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            users,
            throttle,
            policy,
            hasher,
            checks: Arc::new(Semaphore::new(cores.saturating_sub(1).max(1))),
            tokens,
            metrics,
        }
    }

    /// Unknown user, disabled user and wrong password give the same error after the
    /// same bcrypt work. An attempt the throttle holds back (see
    /// [`crate::domain::throttle`]) is refused with [`ServiceError::Throttled`] before
    /// any password is checked. `client`: the address the request came from, when the
    /// serving layer knows it.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<IssuedToken, ServiceError> {
        let address = client.map_or_else(|| UNKNOWN_ADDRESS.to_owned(), address_key);
        // A name no user can have gets no counts of its own: its guesses count against
        // the address only, and cannot fill the store with junk keys.
        let name = valid_username(username).then_some(username);
        let attempt = Attempt {
            user_at_address: name.map(|name| ThrottleKey::UserAtAddress(name, &address)),
            address: ThrottleKey::Address(&address),
            user: name.map(ThrottleKey::User),
            // Only a name a user could have is logged; anything else might be a
            // password typed into the wrong field, or junk.
            logged_name: name.unwrap_or("(not a valid username)"),
            logged_client: client.map_or_else(|| UNKNOWN_ADDRESS.to_owned(), |ip| ip.to_string()),
        };
        self.refuse_if_throttled(&attempt).await?;

        let user = self.users.get_user(username).await?;
        let ok = {
            let _slot = self
                .checks
                .acquire()
                .await
                .map_err(|e| ServiceError::Internal(Box::new(e)))?;
            // Guesses sent all at once pass the first check together; those that waited
            // here for a slot are looked at again, so the failures recorded meanwhile
            // stop them before they cost a bcrypt check each.
            self.refuse_if_throttled(&attempt).await?;
            let hasher = self.hasher.clone();
            let password = password.to_owned();
            let user = user.clone();
            tokio::task::spawn_blocking(move || accepts(&*hasher, user.as_ref(), &password))
                .await
                .map_err(|e| ServiceError::Internal(Box::new(e)))?
        };
        self.metrics.inc(
            "dialer_token_requests_total",
            &[("result", if ok { "issued" } else { "denied" })],
        );
        let user = match user {
            Some(user) if ok => user,
            _ => {
                self.metrics.inc("dialer_token_failures_total", &[]);
                // The client hears one answer for all three; the operator may tell
                // them apart.
                let reason = match &user {
                    None => "unknown username",
                    Some(user) if user.disabled => "disabled user",
                    Some(_) => "wrong password",
                };
                tracing::warn!(
                    username = attempt.logged_name,
                    client = %attempt.logged_client,
                    reason,
                    "failed login"
                );
                self.record_failure(&attempt).await?;
                return Err(ServiceError::BadCredentials);
            }
        };
        // The owner proved themselves from this address: its own count goes. The
        // username's count over all addresses stays, or a flood spread over many
        // addresses would start afresh at every login of the owner.
        if let Some(key) = attempt.user_at_address {
            self.throttle.clear_failures(&key.text()).await?;
        }
        let access_token = self
            .tokens
            .issue(username, user.token_version)
            .await
            .map_err(|e| match e {
                TokenError::KeyUnavailable(e) => ServiceError::SecretsUnavailable(e),
                invalid @ TokenError::Invalid => ServiceError::Internal(Box::new(invalid)),
            })?;
        Ok(IssuedToken {
            access_token,
            expires_in: self.tokens.ttl_seconds(),
        })
    }

    /// Refuses the attempt, with a log line, when the throttle holds it back.
    async fn refuse_if_throttled(&self, attempt: &Attempt<'_>) -> Result<(), ServiceError> {
        let now = Utc::now();
        let (user_at_address, address, user) = tokio::try_join!(
            self.failures(attempt.user_at_address, now),
            self.failures(Some(attempt.address), now),
            self.failures(attempt.user, now),
        )?;
        let counts = AttemptCounts {
            user_at_address,
            address,
            user,
        };
        let Some(blocked) = self.policy.blocked(&counts, now) else {
            return Ok(());
        };
        self.metrics
            .inc("dialer_token_requests_total", &[("result", "throttled")]);
        let retry_after_seconds = retry_after_seconds(blocked.until, now);
        tracing::info!(
            username = attempt.logged_name,
            client = %attempt.logged_client,
            counted_by = blocked.by.as_str(),
            retry_after_seconds,
            "login throttled"
        );
        Err(ServiceError::Throttled {
            retry_after_seconds,
        })
    }

    /// One failure under each of the attempt's keys, all three at once.
    async fn record_failure(&self, attempt: &Attempt<'_>) -> Result<(), ServiceError> {
        let now = Utc::now();
        tokio::try_join!(
            self.record(attempt.user_at_address, now),
            self.record(Some(attempt.address), now),
            self.record(attempt.user, now),
        )?;
        Ok(())
    }

    async fn record(
        &self,
        key: Option<ThrottleKey<'_>>,
        now: chrono::DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if let Some(key) = key {
            self.throttle
                .record_failure(&key.text(), now, self.policy.window)
                .await?;
        }
        Ok(())
    }

    async fn failures(
        &self,
        key: Option<ThrottleKey<'_>>,
        now: chrono::DateTime<Utc>,
    ) -> Result<Option<FailureCount>, StoreError> {
        match key {
            Some(key) => {
                self.throttle
                    .failures(&key.text(), now, self.policy.window)
                    .await
            }
            None => Ok(None),
        }
    }
}

/// The throttle's keys for one login attempt (the username's two only when it is a
/// name a user could have), and how its log lines name it.
struct Attempt<'a> {
    user_at_address: Option<ThrottleKey<'a>>,
    address: ThrottleKey<'a>,
    user: Option<ThrottleKey<'a>>,
    logged_name: &'a str,
    logged_client: String,
}

impl Authenticator {
    /// `user_cache`: how long one container may trust what it last read about a user
    /// (zero: read the store on every request). A disabled user or a revoked token
    /// stops working at most this long after the change.
    pub fn new(tokens: Arc<Tokens>, users: Arc<dyn UserReads>, user_cache: Duration) -> Self {
        Self {
            tokens,
            users,
            cache: Arc::new(UserCache::new(user_cache)),
        }
    }

    /// The username a token speaks for.
    pub async fn authenticate(&self, token: &str) -> Result<String, AuthError> {
        let subject = self.tokens.verify(token).await.map_err(|e| match e {
            TokenError::Invalid => AuthError::Invalid,
            TokenError::KeyUnavailable(e) => AuthError::KeyUnavailable(e),
        })?;
        let standing = match self.cache.get(&subject.username) {
            Some(standing) => standing,
            None => {
                let user = self
                    .users
                    .get_user(&subject.username)
                    .await
                    .map_err(AuthError::StoreUnavailable)?;
                let standing = user.map(|u| Standing {
                    disabled: u.disabled,
                    token_version: u.token_version,
                });
                self.cache.put(&subject.username, standing);
                standing
            }
        };
        match standing {
            Some(s) if !s.disabled && s.token_version == subject.version => Ok(subject.username),
            _ => Err(AuthError::Invalid),
        }
    }
}

/// What a token check needs to know about a user.
#[derive(Clone, Copy, Debug)]
struct Standing {
    disabled: bool,
    token_version: u64,
}

/// A short per-container memory of users' standing, so that a burst of requests with
/// one token costs one store read, not one each.
struct UserCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Option<Standing>)>>,
}

/// Past this many users the cache starts again: it is a cache, not a copy of the table.
const USER_CACHE_MAX: usize = 10_000;

impl UserCache {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(None)`: known not to exist; `None`: not known (or too old).
    fn get(&self, username: &str) -> Option<Option<Standing>> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(username)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, standing)| *standing)
    }

    fn put(&self, username: &str, standing: Option<Standing>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= USER_CACHE_MAX {
            entries.clear();
        }
        entries.insert(username.to_owned(), (Instant::now(), standing));
    }
}
