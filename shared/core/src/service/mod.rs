//! The use cases behind the routes: logging in, placing, reading, listing and canceling
//! calls. They speak domain types and ports only; the HTTP layer maps their errors.

pub mod calls;
pub mod deliver;
pub mod dispatch;
pub mod login;
pub mod pacing;

pub use calls::{CallQueries, CallService};
pub use deliver::Deliverer;
pub use dispatch::{DispatchTiming, Dispatcher};
pub use login::{AuthError, Authenticator, IssuedToken, LoginService};
pub use pacing::Pacer;

use uuid::Uuid;

use crate::domain::ValidationError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("call not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("incorrect username or password")]
    BadCredentials,
    /// Too many failed logins for this username or from this address.
    #[error("too many failed logins; try again in {retry_after_seconds} s")]
    Throttled { retry_after_seconds: u64 },
    /// The user has `max_queued_calls` waiting already, or (`whole_service`) all users
    /// together have `MAX_QUEUED_CALLS`.
    #[error(
        "{}; try again in {retry_after_seconds} s",
        if *whole_service { "the service has too many calls queued" } else { "too many calls queued" }
    )]
    QueueFull {
        retry_after_seconds: u64,
        whole_service: bool,
    },
    /// The idempotency key was used before for a different request.
    #[error("this Idempotency-Key was used for a different request; use a new key for a new call")]
    IdempotencyKeyReused,
    #[error("no call bridge is listening for the PBX's events; the call was not placed")]
    BridgeDown,
    #[error("the PBX is unavailable: {reason}")]
    PbxUnavailable {
        reason: String,
        call_id: Option<Uuid>,
        #[source]
        source: crate::pbx::PbxError,
    },
    #[error("the PBX refused the call: {reason}")]
    PbxRejected {
        reason: String,
        call_id: Option<Uuid>,
    },
    #[error("the store is unavailable")]
    StoreUnavailable(#[source] StoreError),
    #[error("a secret could not be read; try again shortly")]
    SecretsUnavailable(#[source] crate::secrets::SecretError),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => ServiceError::Conflict("already exists".into()),
            unavailable @ StoreError::Unavailable(_) => ServiceError::StoreUnavailable(unavailable),
        }
    }
}
