//! Builders of the ARI event JSON that the traces show. Each returns the event without
//! `application`, which [`addressed`] adds once the recipient is known.

use serde_json::{Map, Value, json};

use crate::channel::{Channel, timestamp_now};

/// The `asterisk_id` of the recorded Asterisk.
pub(crate) const ASTERISK_ID: &str = "02:fc:00:00:00:01";

/// The event as sent to `app`.
pub(crate) fn addressed(mut event: Map<String, Value>, app: &str) -> Map<String, Value> {
    event.insert("asterisk_id".to_owned(), json!(ASTERISK_ID));
    event.insert("application".to_owned(), json!(app));
    event
}

pub(crate) fn application_replaced(app: &str) -> Map<String, Value> {
    addressed(base("ApplicationReplaced"), app)
}

pub(crate) fn dial(peer: &Channel, dialstatus: &str, dialstring: &str) -> Map<String, Value> {
    let mut event = base("Dial");
    event.insert("dialstatus".to_owned(), json!(dialstatus));
    event.insert("forward".to_owned(), json!(""));
    event.insert("dialstring".to_owned(), json!(dialstring));
    event.insert("peer".to_owned(), channel_json(peer));
    event
}

pub(crate) fn state_change(channel: &Channel) -> Map<String, Value> {
    with_channel("ChannelStateChange", channel)
}

pub(crate) fn varset(channel: &Channel, variable: &str, value: &str) -> Map<String, Value> {
    let mut event = with_channel("ChannelVarset", channel);
    event.insert("variable".to_owned(), json!(variable));
    event.insert("value".to_owned(), json!(value));
    event
}

pub(crate) fn stasis_start(channel: &Channel, args: &[String]) -> Map<String, Value> {
    let mut event = with_channel("StasisStart", channel);
    event.insert("args".to_owned(), json!(args));
    event
}

pub(crate) fn stasis_end(channel: &Channel) -> Map<String, Value> {
    with_channel("StasisEnd", channel)
}

/// `soft` is present only when true, as in the traces.
pub(crate) fn hangup_request(channel: &Channel, cause: u16, soft: bool) -> Map<String, Value> {
    let mut event = with_channel("ChannelHangupRequest", channel);
    event.insert("cause".to_owned(), json!(cause));
    if soft {
        event.insert("soft".to_owned(), json!(true));
    }
    event
}

pub(crate) fn destroyed(channel: &Channel, cause: u16) -> Map<String, Value> {
    let mut event = with_channel("ChannelDestroyed", channel);
    event.insert("cause".to_owned(), json!(cause));
    event.insert("cause_txt".to_owned(), json!(cause_txt(cause)));
    event
}

/// Announces the dialplan step the channel is now on.
pub(crate) fn dialplan(channel: &Channel) -> Map<String, Value> {
    let mut event = with_channel("ChannelDialplan", channel);
    event.insert("dialplan_app".to_owned(), json!(channel.dialplan.app_name));
    event.insert(
        "dialplan_app_data".to_owned(),
        json!(channel.dialplan.app_data),
    );
    event
}

pub(crate) fn dtmf(channel: &Channel, digit: &str, duration_ms: u64) -> Map<String, Value> {
    let mut event = with_channel("ChannelDtmfReceived", channel);
    event.insert("digit".to_owned(), json!(digit));
    event.insert("duration_ms".to_owned(), json!(duration_ms));
    event
}

/// `PlaybackStarted`, `PlaybackContinuing` or `PlaybackFinished`.
pub(crate) fn playback(kind: &str, playback: Value) -> Map<String, Value> {
    let mut event = base(kind);
    event.insert("playback".to_owned(), playback);
    event
}

/// Q.850 cause texts as Asterisk words them.
pub(crate) fn cause_txt(cause: u16) -> &'static str {
    match cause {
        1 => "Unallocated (unassigned) number",
        16 => "Normal Clearing",
        17 => "User busy",
        18 => "No user responding",
        19 => "User alerting, no answer",
        21 => "Call Rejected",
        34 => "Circuit/channel congestion",
        _ => "Unknown",
    }
}

fn base(kind: &str) -> Map<String, Value> {
    let mut event = Map::new();
    event.insert("type".to_owned(), json!(kind));
    event.insert("timestamp".to_owned(), json!(timestamp_now()));
    event
}

fn with_channel(kind: &str, channel: &Channel) -> Map<String, Value> {
    let mut event = base(kind);
    event.insert("channel".to_owned(), channel_json(channel));
    event
}

fn channel_json(channel: &Channel) -> Value {
    serde_json::to_value(channel).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::{Endpoint, Party};

    fn channel() -> Channel {
        let endpoint = Endpoint::parse("Local/+15550020001@test-pstn").expect("valid");
        Channel::originated(
            "c1".to_owned(),
            endpoint.channel_name(1),
            &endpoint,
            Party::default(),
        )
    }

    #[test]
    fn addressed_events_carry_asterisk_id_and_application() {
        let event = addressed(destroyed(&channel(), 0), "dialer");
        assert_eq!(event["type"], "ChannelDestroyed");
        assert_eq!(event["cause"], 0);
        assert_eq!(event["cause_txt"], "Unknown");
        assert_eq!(event["asterisk_id"], ASTERISK_ID);
        assert_eq!(event["application"], "dialer");
        assert_eq!(event["channel"]["id"], "c1");
        assert!(event["timestamp"].is_string());
    }

    #[test]
    fn hangup_request_has_soft_only_when_soft() {
        assert!(!hangup_request(&channel(), 16, false).contains_key("soft"));
        assert_eq!(hangup_request(&channel(), 32, true)["soft"], true);
    }

    #[test]
    fn dial_event_carries_peer_and_dialstring() {
        let event = dial(&channel(), "BUSY", "+15550020001@test-pstn");
        assert_eq!(event["peer"]["id"], "c1");
        assert_eq!(event["dialstatus"], "BUSY");
        assert_eq!(event["forward"], "");
        assert_eq!(event["dialstring"], "+15550020001@test-pstn");
    }
}
