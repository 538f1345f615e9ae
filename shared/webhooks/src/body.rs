//! What a receiver is sent.

use dialer_core::domain::webhook::{CallEvent, EventType};
use dialer_http::dto::{CallView, rfc3339};
use serde::Serialize;
use uuid::Uuid;

#[derive(Serialize)]
struct Payload<'a> {
    event_id: Uuid,
    call_id: Uuid,
    sequence: u32,
    #[serde(rename = "type")]
    kind: EventType,
    status: &'a str,
    previous_status: Option<&'a str>,
    at: String,
    attempt_number: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    digit: Option<String>,
    /// The same document `GET /api/v2/calls/{id}` answers, so that a receiver needs
    /// one parser for both.
    call: CallView,
}

/// The JSON body for `event` of call `call_id`: the event's fields, then the call as it
/// was when the event happened. These exact bytes are what the signature covers.
pub fn event_body(call_id: Uuid, event: &CallEvent) -> Vec<u8> {
    let payload = Payload {
        event_id: event.event_id,
        call_id,
        sequence: event.sequence,
        kind: event.kind,
        status: event.status.as_str(),
        previous_status: event.previous_status.map(|s| s.as_str()),
        at: rfc3339(event.at),
        attempt_number: event.attempt_number,
        digit: match event.kind {
            EventType::Dtmf => event.digit.map(String::from),
            EventType::Status => None,
        },
        call: CallView::from(&*event.call),
    };
    serde_json::to_vec(&payload)
        .unwrap_or_else(|_| unreachable!("strings, numbers and a derived view always serialize"))
}
