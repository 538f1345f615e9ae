//! What an ARI event means for one of our calls. Only events on the call's own channel
//! count: its id is the call id (a UUID); the far half of a Local channel (`…;2`) and
//! every other channel on the system fail that test and are ignored.

use uuid::Uuid;

use dialer_ari::AriEvent;
use dialer_core::domain::CallStatus;
use dialer_core::domain::outcome::{progress_of_channel_state, progress_of_dialstatus};

#[derive(Clone, Debug, PartialEq)]
pub enum Signal {
    /// Ringing or answered, from a state change or a `Dial` status.
    Progress {
        status: CallStatus,
        dialstatus: Option<String>,
    },
    /// A `Dial` status that is not progress (BUSY, CONGESTION, NOANSWER, …).
    DialStatus(String),
    /// Someone (the callee, the PBX, or we) asked for the channel to hang up.
    HangupRequested,
    /// The channel is gone.
    Destroyed {
        cause: i64,
        cause_txt: String,
    },
    /// The answered channel entered our app: time to drive it.
    StasisStart,
    Dtmf(char),
    /// Our playback on the call's channel ended; `failed` names the media item the PBX
    /// could not play, when it could not.
    PlaybackFinished {
        failed: Option<String>,
    },
}

/// The call an event is about, and what it says; `None` for everything we ignore.
pub fn signal_of(event: &AriEvent) -> Option<(Uuid, Signal)> {
    match event {
        AriEvent::ChannelStateChange { channel } => {
            let status = progress_of_channel_state(&channel.state)?;
            Some((
                call_id(&channel.id)?,
                Signal::Progress {
                    status,
                    dialstatus: None,
                },
            ))
        }
        AriEvent::Dial { peer, dialstatus } => {
            let id = call_id(&peer.id)?;
            if dialstatus.is_empty() {
                return None;
            }
            Some((
                id,
                match progress_of_dialstatus(dialstatus) {
                    Some(status) => Signal::Progress {
                        status,
                        dialstatus: Some(dialstatus.clone()),
                    },
                    None => Signal::DialStatus(dialstatus.clone()),
                },
            ))
        }
        AriEvent::ChannelHangupRequest { channel, .. } => {
            Some((call_id(&channel.id)?, Signal::HangupRequested))
        }
        AriEvent::ChannelDestroyed {
            channel,
            cause,
            cause_txt,
        } => Some((
            call_id(&channel.id)?,
            Signal::Destroyed {
                cause: *cause,
                cause_txt: cause_txt.clone(),
            },
        )),
        AriEvent::StasisStart { channel, .. } => Some((call_id(&channel.id)?, Signal::StasisStart)),
        AriEvent::ChannelDtmfReceived { channel, digit } => {
            let digit = single_dtmf_digit(digit)?;
            Some((call_id(&channel.id)?, Signal::Dtmf(digit)))
        }
        AriEvent::PlaybackFinished { playback } => {
            let target = playback.target_uri.strip_prefix("channel:")?;
            let failed = (playback.state == "failed").then(|| playback.media_uri.clone());
            Some((call_id(target)?, Signal::PlaybackFinished { failed }))
        }
        _ => None,
    }
}

/// The playback id we give a call's media list; one playback per call.
pub fn playback_id(call: Uuid) -> String {
    format!("{call}-p1")
}

fn call_id(channel_id: &str) -> Option<Uuid> {
    Uuid::try_parse(channel_id).ok()
}

fn single_dtmf_digit(digit: &str) -> Option<char> {
    let mut chars = digit.chars();
    let c = chars.next()?;
    (chars.next().is_none() && (c.is_ascii_digit() || "*#ABCD".contains(c))).then_some(c)
}
