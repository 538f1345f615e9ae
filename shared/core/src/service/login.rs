//! The password grant (username and password in, access token out) and the check of
//! the bearer token on every other request.

use std::sync::Arc;

use super::ServiceError;
use crate::auth::{PasswordHasher, TokenError, Tokens, accepts};
use crate::metrics::Metrics;
use crate::store::UserStore;

#[derive(Clone)]
pub struct LoginService {
    users: Arc<dyn UserStore>,
    hasher: Arc<dyn PasswordHasher>,
    tokens: Arc<Tokens>,
    metrics: Arc<Metrics>,
}

/// Who a bearer token speaks for.
#[derive(Clone)]
pub struct Authenticator {
    tokens: Arc<Tokens>,
}

pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: i64,
}

impl LoginService {
    pub fn new(
        users: Arc<dyn UserStore>,
        hasher: Arc<dyn PasswordHasher>,
        tokens: Arc<Tokens>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            users,
            hasher,
            tokens,
            metrics,
        }
    }

    /// Unknown user, disabled user and wrong password give the same error after the
    /// same bcrypt work.
    pub async fn login(&self, username: &str, password: &str) -> Result<IssuedToken, ServiceError> {
        let user = self.users.get_user(username).await?;
        let hasher = self.hasher.clone();
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || accepts(&*hasher, user.as_ref(), &password))
            .await
            .map_err(|e| ServiceError::Internal(Box::new(e)))?;
        self.metrics.inc(
            "dialer_token_requests_total",
            &[("result", if ok { "issued" } else { "denied" })],
        );
        if !ok {
            self.metrics.inc("dialer_token_failures_total", &[]);
            return Err(ServiceError::BadCredentials);
        }
        let access_token = self.tokens.issue(username).await.map_err(|e| match e {
            TokenError::KeyUnavailable(e) => ServiceError::SecretsUnavailable(e),
            invalid @ TokenError::Invalid => ServiceError::Internal(Box::new(invalid)),
        })?;
        Ok(IssuedToken {
            access_token,
            expires_in: self.tokens.ttl_seconds(),
        })
    }
}

impl Authenticator {
    pub fn new(tokens: Arc<Tokens>) -> Self {
        Self { tokens }
    }

    /// The username a token speaks for.
    pub async fn authenticate(&self, token: &str) -> Result<String, TokenError> {
        self.tokens.verify(token).await
    }
}
