//! The password grant: username and password in, access token out.

use std::sync::Arc;

use super::ServiceError;
use crate::auth::jwt::TokenError;
use crate::auth::{Hasher, Tokens};
use crate::metrics::Metrics;
use crate::store::UserStore;

#[derive(Clone)]
pub struct LoginService {
    users: Arc<dyn UserStore>,
    hasher: Hasher,
    tokens: Arc<Tokens>,
    metrics: Arc<Metrics>,
}

pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: i64,
}

impl LoginService {
    pub fn new(
        users: Arc<dyn UserStore>,
        hasher: Hasher,
        tokens: Tokens,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            users,
            hasher,
            tokens: Arc::new(tokens),
            metrics,
        }
    }

    /// Unknown user, disabled user and wrong password give the same error after the
    /// same bcrypt work.
    pub async fn login(&self, username: &str, password: &str) -> Result<IssuedToken, ServiceError> {
        let user = self.users.get_user(username).await?;
        let hasher = self.hasher;
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || hasher.check(user.as_ref(), &password))
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        self.metrics.inc(
            "dialer_token_requests_total",
            &[("result", if ok { "issued" } else { "denied" })],
        );
        if !ok {
            self.metrics.inc("dialer_token_failures_total", &[]);
            return Err(ServiceError::BadCredentials);
        }
        let access_token = self.tokens.issue(username).await.map_err(|e| match e {
            TokenError::KeyUnavailable(e) => ServiceError::SecretsUnavailable(e.to_string()),
            TokenError::Invalid => ServiceError::Internal("token encoding failed".into()),
        })?;
        Ok(IssuedToken {
            access_token,
            expires_in: self.tokens.ttl_seconds(),
        })
    }

    /// The username a token speaks for.
    pub async fn authenticate(&self, token: &str) -> Result<String, TokenError> {
        self.tokens.verify(token).await
    }
}
