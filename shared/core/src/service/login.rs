//! The password grant (username and password in, access token out), its throttle, and
//! the check of the bearer token on every other request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::Semaphore;

use super::ServiceError;
use crate::auth::{PasswordHasher, TokenError, Tokens, accepts};
use crate::domain::throttle::retry_after_seconds;
use crate::domain::user::valid_username;
use crate::domain::{ThrottleKey, ThrottlePolicy};
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
    /// same bcrypt work. A username or client address over its failure budget is
    /// refused with [`ServiceError::Throttled`] before any password is checked.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: Option<&str>,
    ) -> Result<IssuedToken, ServiceError> {
        // A name no user can have gets no counter of its own: its guesses count against
        // the address only, and cannot fill the store with junk keys.
        let user_key = valid_username(username).then_some(ThrottleKey::User(username));
        let keys: Vec<ThrottleKey<'_>> = user_key
            .into_iter()
            .chain(client.map(ThrottleKey::Address))
            .collect();
        self.refuse_if_throttled(&keys).await?;

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
            self.refuse_if_throttled(&keys).await?;
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
                let now = Utc::now();
                for key in &keys {
                    self.throttle
                        .record_failure(&key.text(), now, self.policy.window)
                        .await?;
                }
                return Err(ServiceError::BadCredentials);
            }
        };
        if let Some(key) = user_key {
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

    async fn refuse_if_throttled(&self, keys: &[ThrottleKey<'_>]) -> Result<(), ServiceError> {
        let now = Utc::now();
        let mut until = None;
        for key in keys {
            let count = self
                .throttle
                .failures(&key.text(), now, self.policy.window)
                .await?;
            if let Some(blocked) = count.and_then(|c| self.policy.blocked_until(*key, &c, now)) {
                until = until.max(Some(blocked));
            }
        }
        match until {
            Some(until) => {
                self.metrics
                    .inc("dialer_token_requests_total", &[("result", "throttled")]);
                Err(ServiceError::Throttled {
                    retry_after_seconds: retry_after_seconds(until, now),
                })
            }
            None => Ok(()),
        }
    }
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
