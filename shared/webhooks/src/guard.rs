//! The check made when a call is requested.

use async_trait::async_trait;
use dialer_core::domain::ValidationError;
use dialer_core::domain::webhook::CallbackUrl;
use dialer_core::webhooks::CallbackGuard;

use crate::Settings;
use crate::resolve::{Unusable, check, resolve};

/// Refuses a callback whose host does not resolve, or resolves to any forbidden
/// address. Nothing is connected to: a literal address is judged as it is written.
pub struct Guard {
    settings: Settings,
}

impl Guard {
    pub fn new(settings: Settings) -> Self {
        Self { settings }
    }
}

#[async_trait]
impl CallbackGuard for Guard {
    async fn check(&self, url: &CallbackUrl) -> Result<(), ValidationError> {
        let refused = |Unusable(message)| ValidationError::new("status_callback", message);
        let addresses = resolve(url, self.settings.resolve_timeout)
            .await
            .map_err(refused)?;
        if self.settings.allow_private {
            return Ok(());
        }
        check(url, &addresses).map_err(refused)
    }
}
