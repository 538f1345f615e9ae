//! The webhook ports: checking a callback before a call is accepted, and sending one
//! event. The adapter (`dialer-webhooks`) resolves, refuses forbidden addresses, signs
//! and posts; the delivery rules (order, retries, giving up) are the core's.

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::ValidationError;
use crate::domain::webhook::{CallEvent, CallbackUrl, SendOutcome};

/// Checks a callback URL when a call is requested: a host that resolves to a forbidden
/// address (see [`forbidden_address`](crate::domain::webhook::forbidden_address)) is
/// refused, naming `status_callback`.
#[async_trait]
pub trait CallbackGuard: Send + Sync {
    async fn check(&self, url: &CallbackUrl) -> Result<(), ValidationError>;
}

/// Sends one event of call `call_id` to `url`, signed with each of `secrets` (the
/// current secret first), checking again the address it actually connects to.
#[async_trait]
pub trait WebhookSender: Send + Sync {
    async fn send(
        &self,
        url: &CallbackUrl,
        call_id: Uuid,
        event: &CallEvent,
        secrets: &[&str],
    ) -> SendOutcome;
}

/// A guard that accepts every callback: for tests of everything else, and for builds
/// without the webhook adapter.
pub struct AcceptAll;

#[async_trait]
impl CallbackGuard for AcceptAll {
    async fn check(&self, _: &CallbackUrl) -> Result<(), ValidationError> {
        Ok(())
    }
}
