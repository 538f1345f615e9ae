//! Secrets from AWS Secrets Manager, read once and then again after a TTL, so that a
//! rotated value is picked up without a redeploy. When a refresh fails the last value
//! read stays in use: a short Secrets Manager outage must not take the API down.

use std::time::{Duration, Instant};

use async_trait::async_trait;
pub use aws_sdk_secretsmanager::Client;
use tokio::sync::Mutex;
use tracing::warn;

use dialer_core::secrets::Secret;
use dialer_core::secrets::{SecretError, SecretSource};

pub struct SecretsManagerSecret {
    client: Client,
    secret_id: String,
    ttl: Duration,
    state: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    current: Option<(Secret, Instant)>,
    previous: Option<Secret>,
}

impl SecretsManagerSecret {
    pub fn new(client: Client, secret_id: String, ttl: Duration) -> Self {
        Self {
            client,
            secret_id,
            ttl,
            state: Mutex::new(Cached::default()),
        }
    }

    async fn fetch(&self) -> Result<Secret, SecretError> {
        let output = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| SecretError {
                secret: self.secret_id.clone(),
                source: Box::new(e),
            })?;
        let value = output
            .secret_string()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| SecretError {
                secret: self.secret_id.clone(),
                source: "no string value".into(),
            })?;
        Ok(Secret::new(value))
    }
}

#[async_trait]
impl SecretSource for SecretsManagerSecret {
    async fn current(&self) -> Result<Secret, SecretError> {
        let mut state = self.state.lock().await;
        if let Some((value, read_at)) = &state.current
            && read_at.elapsed() < self.ttl
        {
            return Ok(value.clone());
        }
        match self.fetch().await {
            Ok(fresh) => {
                if let Some((old, _)) = state.current.take()
                    && old != fresh
                {
                    state.previous = Some(old);
                }
                state.current = Some((fresh.clone(), Instant::now()));
                Ok(fresh)
            }
            Err(e) => match &state.current {
                Some((stale, _)) => {
                    warn!(error = %e, "secret refresh failed; keeping the last value");
                    Ok(stale.clone())
                }
                None => Err(e),
            },
        }
    }

    async fn previous(&self) -> Option<Secret> {
        self.state.lock().await.previous.clone()
    }
}
