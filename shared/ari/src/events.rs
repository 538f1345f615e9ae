//! ARI event messages, shaped like the recorded traces (`tests/ari-traces`). Only the
//! fields the bridge reads are declared; everything else is ignored, and an unknown
//! event type parses as [`AriEvent::Other`].

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "type")]
pub enum AriEvent {
    StasisStart {
        channel: Channel,
        #[serde(default)]
        args: Vec<String>,
    },
    StasisEnd {
        channel: Channel,
    },
    ChannelStateChange {
        channel: Channel,
    },
    /// On an originated call, our channel is the `peer`.
    Dial {
        peer: Channel,
        #[serde(default)]
        dialstatus: String,
    },
    ChannelHangupRequest {
        channel: Channel,
        #[serde(default)]
        cause: Option<i64>,
    },
    ChannelDestroyed {
        channel: Channel,
        #[serde(default)]
        cause: i64,
        #[serde(default)]
        cause_txt: String,
    },
    ChannelDtmfReceived {
        channel: Channel,
        digit: String,
    },
    PlaybackStarted {
        playback: Playback,
    },
    PlaybackContinuing {
        playback: Playback,
    },
    PlaybackFinished {
        playback: Playback,
    },
    /// Another connection took over our app: this socket will get no more events.
    ApplicationReplaced {
        #[serde(default)]
        application: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Channel {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub state: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Playback {
    pub id: String,
    #[serde(default)]
    pub media_uri: String,
    #[serde(default)]
    pub target_uri: String,
    #[serde(default)]
    pub state: String,
}

impl AriEvent {
    /// Parses one WebSocket text frame.
    pub fn parse(frame: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(frame)
    }

    /// A short, fixed name for metrics and logs (never an id).
    pub fn kind(&self) -> &'static str {
        match self {
            AriEvent::StasisStart { .. } => "StasisStart",
            AriEvent::StasisEnd { .. } => "StasisEnd",
            AriEvent::ChannelStateChange { .. } => "ChannelStateChange",
            AriEvent::Dial { .. } => "Dial",
            AriEvent::ChannelHangupRequest { .. } => "ChannelHangupRequest",
            AriEvent::ChannelDestroyed { .. } => "ChannelDestroyed",
            AriEvent::ChannelDtmfReceived { .. } => "ChannelDtmfReceived",
            AriEvent::PlaybackStarted { .. } => "PlaybackStarted",
            AriEvent::PlaybackContinuing { .. } => "PlaybackContinuing",
            AriEvent::PlaybackFinished { .. } => "PlaybackFinished",
            AriEvent::ApplicationReplaced { .. } => "ApplicationReplaced",
            AriEvent::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_event_from_a_trace_parses_with_the_call_as_peer() {
        let frame = r#"{"type": "Dial", "timestamp": "2026-11-24T11:34:28.487+0000", "dialstatus": "BUSY", "forward": "", "dialstring": "+15550020001@test-pstn", "peer": {"id": "ad5438de-a6fc-48bc-b15c-fdec1b49fe45", "name": "Local/+15550020001@test-pstn-0000001b;1", "state": "Down", "protocol_id": "", "caller": {"name": "MyCompany", "number": "+15550000000"}, "connected": {"name": "", "number": ""}, "accountcode": "", "dialplan": {"context": "test-pstn", "exten": "+15550020001", "priority": 1, "app_name": "AppDial2", "app_data": "(Outgoing Line)"}, "creationtime": "2026-11-24T11:34:28.485+0000", "language": "en"}, "asterisk_id": "02:fc:00:00:00:01", "application": "dialer"}"#;
        let AriEvent::Dial { peer, dialstatus } = AriEvent::parse(frame).expect("parses") else {
            panic!("not a Dial");
        };
        assert_eq!(peer.id, "ad5438de-a6fc-48bc-b15c-fdec1b49fe45");
        assert_eq!(dialstatus, "BUSY");
    }

    #[test]
    fn unknown_event_types_parse_as_other() {
        let frame =
            r#"{"type": "ChannelVarset", "variable": "X", "value": "1", "channel": {"id": "a"}}"#;
        assert_eq!(AriEvent::parse(frame).expect("parses"), AriEvent::Other);
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        for frame in ["", "{", "[]", r#"{"type": 5}"#, r#"{"type":"Dial"}"#] {
            assert!(AriEvent::parse(frame).is_err(), "{frame}");
        }
    }
}
