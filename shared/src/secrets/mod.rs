//! Where secret values come from: fixed values from the environment, or (with the `aws`
//! feature) AWS Secrets Manager, cached and refreshed so a rotation is picked up without
//! a redeploy.

use async_trait::async_trait;

use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
#[error("secret unavailable: {0}")]
pub struct SecretError(pub String);

#[async_trait]
pub trait SecretSource: Send + Sync {
    /// The value in force now.
    async fn current(&self) -> Result<Secret, SecretError>;

    /// The value before the last rotation this source saw, if any: tokens signed just
    /// before a rotation stay valid until they expire.
    async fn previous(&self) -> Option<Secret> {
        None
    }
}

/// A value that never changes (from the environment).
pub struct Fixed(pub Secret);

#[async_trait]
impl SecretSource for Fixed {
    async fn current(&self) -> Result<Secret, SecretError> {
        Ok(self.0.clone())
    }
}

#[cfg(feature = "aws")]
pub mod aws;
