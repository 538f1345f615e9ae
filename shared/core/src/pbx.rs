//! The PBX port: what the API and the bridge ask of the telephony side. The ARI client
//! implements it for Asterisk (and the simulated PBX); tests may record calls to it.
//! A call's channel id is always its call id.

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::validation::{CallerId, Context, Extension, Media, Variables};

/// Everything needed to place one call into the Stasis app.
#[derive(Clone, Debug)]
pub struct OriginateSpec<'a> {
    pub call_id: Uuid,
    pub endpoint: &'a str,
    pub app_args: &'a str,
    pub caller_id: Option<&'a CallerId>,
    pub timeout_seconds: u64,
    pub variables: &'a Variables,
}

#[derive(Debug, thiserror::Error)]
pub enum PbxError {
    /// The request did not get an answer; `reason` is short and safe to show a client,
    /// the cause is kept.
    #[error("PBX unreachable: {reason}")]
    Unreachable {
        reason: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The request was sent but no answer came (a timeout, a connection that broke
    /// off): the PBX may have acted on it. For an originate the call may be ringing.
    #[error("PBX did not answer: {reason}")]
    Unconfirmed {
        reason: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("PBX refused ({status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("not found")]
    NotFound,
}

impl PbxError {
    pub fn unreachable(
        reason: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        PbxError::Unreachable {
            reason: reason.into(),
            source: Some(source.into()),
        }
    }

    pub fn unconfirmed(
        reason: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        PbxError::Unconfirmed {
            reason: reason.into(),
            source: source.into(),
        }
    }
}

#[async_trait]
pub trait Pbx: Send + Sync {
    /// Whether an event listener (the bridge) is connected for our Stasis app.
    async fn app_connected(&self) -> Result<bool, PbxError>;

    async fn originate(&self, spec: &OriginateSpec<'_>) -> Result<(), PbxError>;

    /// Sends an answered channel on into the dialplan.
    async fn continue_in_dialplan(
        &self,
        call_id: Uuid,
        context: &Context,
        extension: &Extension,
        priority: u32,
    ) -> Result<(), PbxError>;

    /// Plays the media list, in order, as one playback.
    async fn play(&self, call_id: Uuid, playback_id: &str, media: &[Media])
    -> Result<(), PbxError>;

    async fn hangup(&self, call_id: Uuid) -> Result<(), PbxError>;

    /// The channel's state (`Ringing`, `Up`, …), or `None` when it no longer exists.
    async fn channel_state(&self, call_id: Uuid) -> Result<Option<String>, PbxError>;
}
