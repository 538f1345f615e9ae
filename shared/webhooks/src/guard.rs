//! The check made when a call is requested.

use async_trait::async_trait;
use dialer_core::domain::ValidationError;
use dialer_core::domain::webhook::CallbackUrl;
use dialer_core::webhooks::CallbackGuard;

use crate::Settings;
use crate::dns_cache::Resolver;
use crate::resolve::{Unusable, check, resolve};

/// Refuses a callback whose host does not resolve, or resolves to any forbidden
/// address. Nothing is connected to: a literal address is judged as it is written.
pub struct Guard {
    settings: Settings,
    resolver: Resolver,
}

impl Guard {
    /// Resolving through the system resolver, behind a cache of its own.
    pub fn new(settings: Settings) -> Self {
        let resolver = Resolver::system(settings.dns_cache.clone());
        Self::with_resolver(settings, resolver)
    }

    /// Resolving through `resolver` (shared with a sender, or a test's fake).
    pub fn with_resolver(settings: Settings, resolver: Resolver) -> Self {
        Self { settings, resolver }
    }
}

#[async_trait]
impl CallbackGuard for Guard {
    async fn check(&self, url: &CallbackUrl) -> Result<(), ValidationError> {
        let refused = |Unusable(message)| ValidationError::new("status_callback", message);
        let addresses = resolve(url, &self.resolver, self.settings.resolve_timeout)
            .await
            .map_err(refused)?;
        if self.settings.allow_private {
            return Ok(());
        }
        check(url, &addresses).map_err(refused)
    }
}
