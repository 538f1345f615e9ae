//! ARI event messages, shaped like the recorded traces (`tests/ari-traces`). Only the
//! fields the bridge reads are declared; everything else is ignored, and an unknown
//! event type parses as [`AriEvent::Other`].

use std::borrow::Cow;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

#[derive(Clone, Debug, PartialEq)]
pub enum AriEvent {
    StasisStart {
        channel: Channel,
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
        dialstatus: String,
    },
    ChannelHangupRequest {
        channel: Channel,
        cause: Option<i64>,
    },
    ChannelDestroyed {
        channel: Channel,
        cause: i64,
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
        application: String,
    },
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
    /// Parses one WebSocket text frame: a JSON object whose `type` names the event. A
    /// field an event needs is required, one it may lack takes its default, and a field
    /// of the wrong shape is an error; an unknown type is [`AriEvent::Other`] whatever
    /// its fields hold.
    pub fn parse(frame: &str) -> Result<Self, serde_json::Error> {
        // Serde's tagged enums copy the whole frame (every nested object of the
        // channel: caller, dialplan, …) into a tree of owned values before reading the
        // tag. Delimiting the fields first and parsing only those the event reads, from
        // their text, parses frames 1.6x as fast (`cargo bench -p bridge`).
        if !frame.trim_start().starts_with('{') {
            return Err(serde_json::Error::custom("an ARI event is a JSON object"));
        }
        let f: Frame = serde_json::from_str(frame)?;
        Ok(match f.kind.as_ref() {
            "StasisStart" => AriEvent::StasisStart {
                channel: required(f.channel, "channel")?,
                args: or_default(f.args)?,
            },
            "StasisEnd" => AriEvent::StasisEnd {
                channel: required(f.channel, "channel")?,
            },
            "ChannelStateChange" => AriEvent::ChannelStateChange {
                channel: required(f.channel, "channel")?,
            },
            "Dial" => AriEvent::Dial {
                peer: required(f.peer, "peer")?,
                dialstatus: or_default(f.dialstatus)?,
            },
            "ChannelHangupRequest" => AriEvent::ChannelHangupRequest {
                channel: required(f.channel, "channel")?,
                cause: or_default(f.cause)?,
            },
            "ChannelDestroyed" => AriEvent::ChannelDestroyed {
                channel: required(f.channel, "channel")?,
                cause: or_default(f.cause)?,
                cause_txt: or_default(f.cause_txt)?,
            },
            "ChannelDtmfReceived" => AriEvent::ChannelDtmfReceived {
                channel: required(f.channel, "channel")?,
                digit: required(f.digit, "digit")?,
            },
            "PlaybackStarted" => AriEvent::PlaybackStarted {
                playback: required(f.playback, "playback")?,
            },
            "PlaybackContinuing" => AriEvent::PlaybackContinuing {
                playback: required(f.playback, "playback")?,
            },
            "PlaybackFinished" => AriEvent::PlaybackFinished {
                playback: required(f.playback, "playback")?,
            },
            "ApplicationReplaced" => AriEvent::ApplicationReplaced {
                application: or_default(f.application)?,
            },
            _ => AriEvent::Other,
        })
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

/// A frame's type and the text of each field some event reads; every other field is
/// skipped. A field given as `null` is kept (as the text `null`), so that it is an
/// error where the event needs a value, as it is in the event's own shape.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "present")]
    channel: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    peer: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    args: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    dialstatus: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    cause: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    cause_txt: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    digit: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    playback: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    application: Option<&'a RawValue>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

fn required<'a, T: Deserialize<'a>>(
    raw: Option<&'a RawValue>,
    name: &'static str,
) -> Result<T, serde_json::Error> {
    match raw {
        Some(raw) => serde_json::from_str(raw.get()),
        None => Err(serde_json::Error::missing_field(name)),
    }
}

fn or_default<'a, T: Deserialize<'a> + Default>(
    raw: Option<&'a RawValue>,
) -> Result<T, serde_json::Error> {
    raw.map_or_else(|| Ok(T::default()), |raw| serde_json::from_str(raw.get()))
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
    fn an_unknown_event_type_is_other_whatever_shape_its_fields_have() {
        let frame = r#"{"type": "BridgeCreated", "channel": 5, "cause": "x", "peer": null}"#;
        assert_eq!(AriEvent::parse(frame).expect("parses"), AriEvent::Other);
    }

    #[test]
    fn a_known_event_with_a_field_of_the_wrong_shape_or_null_is_an_error() {
        for frame in [
            r#"{"type": "ChannelDestroyed", "channel": {"id": "a"}, "cause": "16"}"#,
            r#"{"type": "ChannelDestroyed", "channel": {"id": "a"}, "cause": null}"#,
            r#"{"type": "StasisStart", "channel": {"id": "a"}, "args": [1]}"#,
            r#"{"type": "StasisEnd", "channel": null}"#,
            r#"{"type": "StasisEnd", "channel": {"name": "no id"}}"#,
            r#"{"type": "ChannelDtmfReceived", "channel": {"id": "a"}}"#,
            r#"["StasisEnd", {"id": "a"}]"#,
        ] {
            assert!(AriEvent::parse(frame).is_err(), "{frame}");
        }
    }

    #[test]
    fn optional_fields_take_their_defaults_and_a_null_hangup_cause_is_none() {
        let frame = r#"{"type": "ChannelHangupRequest", "channel": {"id": "a"}, "cause": null}"#;
        assert_eq!(
            AriEvent::parse(frame).expect("parses"),
            AriEvent::ChannelHangupRequest {
                channel: Channel {
                    id: "a".into(),
                    name: String::new(),
                    state: String::new(),
                },
                cause: None,
            }
        );
        let frame = r#"{"type": "ChannelDestroyed", "channel": {"id": "a", "state": "Up"}}"#;
        let AriEvent::ChannelDestroyed {
            cause, cause_txt, ..
        } = AriEvent::parse(frame).expect("parses")
        else {
            panic!("not a ChannelDestroyed");
        };
        assert_eq!((cause, cause_txt.as_str()), (0, ""));
    }

    #[test]
    fn escaped_text_in_the_type_and_fields_is_read_unescaped() {
        let frame =
            r#"{"type": "Stasis\u0053tart", "channel": {"id": "a\"b"}, "args": ["i\u0076r"]}"#;
        let AriEvent::StasisStart { channel, args } = AriEvent::parse(frame).expect("parses")
        else {
            panic!("not a StasisStart");
        };
        assert_eq!(
            (channel.id.as_str(), args),
            ("a\"b", vec!["ivr".to_owned()])
        );
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        for frame in ["", "{", "[]", r#"{"type": 5}"#, r#"{"type":"Dial"}"#] {
            assert!(AriEvent::parse(frame).is_err(), "{frame}");
        }
    }
}
