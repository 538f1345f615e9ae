//! A PBX stand-in that records what it is asked, for tests with no live PBX to answer
//! (replays of recorded traces, routers driven directly).

use std::sync::Mutex;

use async_trait::async_trait;
use dialer_core::domain::validation::{Context, Extension, Media};
use dialer_core::pbx::{ChannelView, OriginateSpec, Pbx, PbxError};
use uuid::Uuid;

/// Records what the bridge asks of the PBX. A replay has no live PBX to answer: the
/// recorded events are the PBX's side. It holds no channel and plays nothing, unless a
/// test says otherwise ([`RecordingPbx::holding`]).
#[derive(Default)]
pub struct RecordingPbx {
    actions: Mutex<Vec<String>>,
    channel: Mutex<Option<ChannelView>>,
    playing: Mutex<bool>,
}

impl RecordingPbx {
    /// A PBX that answers every channel question with `channel`, and says a playback
    /// runs when `playing`.
    pub fn holding(channel: ChannelView, playing: bool) -> Self {
        Self {
            channel: Mutex::new(Some(channel)),
            playing: Mutex::new(playing),
            ..Self::default()
        }
    }

    pub fn actions(&self) -> Vec<String> {
        self.actions.lock().expect("lock").clone()
    }

    fn record(&self, action: String) -> Result<(), PbxError> {
        self.actions.lock().expect("lock").push(action);
        Ok(())
    }
}

#[async_trait]
impl Pbx for RecordingPbx {
    async fn app_connected(&self) -> Result<bool, PbxError> {
        Ok(true)
    }
    async fn originate(&self, spec: &OriginateSpec<'_>) -> Result<(), PbxError> {
        self.record(format!("originate {}", spec.endpoint))
    }
    async fn continue_in_dialplan(
        &self,
        _: Uuid,
        context: &Context,
        extension: &Extension,
        priority: u32,
    ) -> Result<(), PbxError> {
        self.record(format!("continue {context} {extension} {priority}"))
    }
    async fn play(&self, _: Uuid, playback_id: &str, media: &[Media]) -> Result<(), PbxError> {
        let media: Vec<&str> = media.iter().map(Media::as_str).collect();
        self.record(format!("play {playback_id} {}", media.join(",")))
    }
    async fn hangup(&self, _: Uuid) -> Result<(), PbxError> {
        self.record("hangup".into())
    }
    async fn channel(&self, _: Uuid) -> Result<Option<ChannelView>, PbxError> {
        Ok(self.channel.lock().expect("lock").clone())
    }
    async fn playing(&self, _: &str) -> Result<bool, PbxError> {
        Ok(*self.playing.lock().expect("lock"))
    }
}
