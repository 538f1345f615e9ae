//! The use cases behind the routes: logging in, placing, reading, listing and canceling
//! calls. They speak domain types and ports only; the HTTP layer maps their errors.

pub mod calls;
pub mod login;

pub use calls::CallService;
pub use login::LoginService;

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
    #[error("no call bridge is listening for the PBX's events; the call was not placed")]
    BridgeDown,
    #[error("the PBX is unavailable: {reason}")]
    PbxUnavailable {
        reason: String,
        call_id: Option<Uuid>,
    },
    #[error("the PBX refused the call: {reason}")]
    PbxRejected {
        reason: String,
        call_id: Option<Uuid>,
    },
    #[error("the store is unavailable")]
    StoreUnavailable(String),
    #[error("a secret could not be read; try again shortly")]
    SecretsUnavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => ServiceError::Conflict("already exists".into()),
            StoreError::Unavailable(detail) => ServiceError::StoreUnavailable(detail),
        }
    }
}
