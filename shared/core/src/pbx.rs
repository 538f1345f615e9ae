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

/// A channel as the PBX holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelView {
    /// Its state: `Ring`, `Ringing`, `Up`, ….
    pub state: String,
    /// Still held by our app after the answer: neither sent into the dialplan nor hung
    /// up. Whoever drives the call has not done so, or is playing media to it.
    pub in_app: bool,
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

    /// The channel as the PBX holds it now, or `None` when it no longer exists.
    async fn channel(&self, call_id: Uuid) -> Result<Option<ChannelView>, PbxError>;

    /// Whether the playback `playback_id` is still queued or playing.
    async fn playing(&self, playback_id: &str) -> Result<bool, PbxError>;
}

/// A PBX whose event listener is the bridge of this very process (the local server):
/// whether the bridge is listening is its own connection state, known here at once and
/// cleared the moment its socket drops, rather than a round trip to the PBX per call
/// (`GET /ari/applications/{app}`; it was half of what the PBX did for each call).
/// Everything else goes to the PBX. Where the bridge runs elsewhere (the originate
/// function) the PBX is asked.
pub struct FollowedByLocalBridge<P> {
    pbx: P,
    bridge: std::sync::Arc<crate::health::BridgeHealth>,
}

impl<P: Pbx> FollowedByLocalBridge<P> {
    pub fn new(pbx: P, bridge: std::sync::Arc<crate::health::BridgeHealth>) -> Self {
        Self { pbx, bridge }
    }
}

#[async_trait]
impl<P: Pbx> Pbx for FollowedByLocalBridge<P> {
    async fn app_connected(&self) -> Result<bool, PbxError> {
        Ok(self.bridge.connected())
    }

    async fn originate(&self, spec: &OriginateSpec<'_>) -> Result<(), PbxError> {
        self.pbx.originate(spec).await
    }

    async fn continue_in_dialplan(
        &self,
        call_id: Uuid,
        context: &Context,
        extension: &Extension,
        priority: u32,
    ) -> Result<(), PbxError> {
        self.pbx
            .continue_in_dialplan(call_id, context, extension, priority)
            .await
    }

    async fn play(
        &self,
        call_id: Uuid,
        playback_id: &str,
        media: &[Media],
    ) -> Result<(), PbxError> {
        self.pbx.play(call_id, playback_id, media).await
    }

    async fn hangup(&self, call_id: Uuid) -> Result<(), PbxError> {
        self.pbx.hangup(call_id).await
    }

    async fn channel(&self, call_id: Uuid) -> Result<Option<ChannelView>, PbxError> {
        self.pbx.channel(call_id).await
    }

    async fn playing(&self, playback_id: &str) -> Result<bool, PbxError> {
        self.pbx.playing(playback_id).await
    }
}

/// A PBX that accepts every request at once and places nothing: for tests and benches
/// of what lies around the PBX. It says whether the app listens as `listening` tells,
/// and counts the hang-ups it is asked for.
#[cfg(any(test, feature = "test-support"))]
#[derive(Debug, Default)]
pub struct NullPbx {
    pub listening: bool,
    pub hangups: std::sync::atomic::AtomicUsize,
}

#[cfg(any(test, feature = "test-support"))]
#[async_trait]
impl Pbx for NullPbx {
    async fn app_connected(&self) -> Result<bool, PbxError> {
        Ok(self.listening)
    }

    async fn originate(&self, _: &OriginateSpec<'_>) -> Result<(), PbxError> {
        Ok(())
    }

    async fn continue_in_dialplan(
        &self,
        _: Uuid,
        _: &Context,
        _: &Extension,
        _: u32,
    ) -> Result<(), PbxError> {
        Ok(())
    }

    async fn play(&self, _: Uuid, _: &str, _: &[Media]) -> Result<(), PbxError> {
        Ok(())
    }

    async fn hangup(&self, _: Uuid) -> Result<(), PbxError> {
        self.hangups
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    async fn channel(&self, _: Uuid) -> Result<Option<ChannelView>, PbxError> {
        Ok(None)
    }

    async fn playing(&self, _: &str) -> Result<bool, PbxError> {
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::BridgeHealth;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_local_bridge_answers_whether_it_listens_and_the_pbx_does_the_rest() {
        let bridge = Arc::new(BridgeHealth::default());
        let pbx = FollowedByLocalBridge::new(NullPbx::default(), bridge.clone());
        assert!(
            !pbx.app_connected().await.expect("answer"),
            "not yet connected"
        );
        bridge.set_connected(true);
        assert!(
            pbx.app_connected().await.expect("answer"),
            "the bridge's own state"
        );
        bridge.set_connected(false);
        assert!(
            !pbx.app_connected().await.expect("answer"),
            "cleared at its drop"
        );
        pbx.hangup(Uuid::new_v4()).await.expect("hang up");
        assert_eq!(
            pbx.pbx.hangups.load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }
}
