//! Secret values: the [`Secret`] string that never reaches a log line, and the
//! [`SecretSource`] port they are read from (fixed values from the environment here;
//! AWS Secrets Manager in `dialer-secrets-aws`, refreshed so a rotation is picked up
//! without a redeploy).

use std::fmt;

use async_trait::async_trait;

/// A secret could not be read: which one, and why (the cause is kept).
#[derive(Debug, thiserror::Error)]
#[error("secret {secret} unavailable")]
pub struct SecretError {
    pub secret: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

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

/// A string that must never reach a log line: its `Debug` and `Display` print a mask.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The only way to the value; grep for it when auditing.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_when_formatted() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret} {secret:?}"), "*** Secret(***)");
        assert_eq!(secret.expose(), "hunter2");
    }
}
