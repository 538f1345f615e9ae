//! Request and response bodies, as in the original spec (fields added, none renamed),
//! with their OpenAPI schemas.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::schema::{
    Array, ArrayBuilder, KnownFormat, Object, ObjectBuilder, SchemaFormat, SchemaType, Type,
};
use uuid::Uuid;

use dialer_core::domain::schedule::{RetryRequest, WindowRequest};
use dialer_core::domain::validation::{
    FieldRule, MAX_DURATION_RANGE_MS, Media, PRIORITY_RANGE, RingTimeout, Variables, rules,
};
use dialer_core::domain::webhook::EventType;
use dialer_core::domain::{Attempt, Call, CallRequest, FailureReason};

/// A call request. On `POST /api/v2/calls` `phone_number` is required; on
/// `POST /api/v2/interaction/{number}` the number is in the path and the body (which
/// may be empty) carries only options. Every option falls back to the operator's
/// defaults.
// Each field's schema is built from its rule in `rules`, so that the document cannot
// drift from what the parsers accept.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallBody {
    #[schema(schema_with = phone_number_schema)]
    pub phone_number: Option<String>,
    #[schema(schema_with = context_schema)]
    pub context: Option<String>,
    #[schema(schema_with = extension_schema)]
    pub extension: Option<String>,
    #[schema(schema_with = priority_schema)]
    #[serde(default, deserialize_with = "whole_number")]
    pub priority: Option<i64>,
    #[schema(schema_with = timeout_schema)]
    #[serde(default, deserialize_with = "whole_number")]
    pub timeout: Option<i64>,
    #[schema(schema_with = caller_id_schema)]
    pub caller_id: Option<String>,
    #[schema(schema_with = variables_schema)]
    pub variables: Option<BTreeMap<String, String>>,
    #[schema(schema_with = mode_schema)]
    pub mode: Option<String>,
    #[schema(schema_with = media_schema)]
    pub media: Option<Vec<String>>,
    /// Record the DTMF digits the callee presses (playback mode hangs up on the first).
    pub gather_dtmf: Option<bool>,
    #[schema(schema_with = max_duration_schema)]
    #[serde(default, deserialize_with = "whole_number")]
    pub max_duration: Option<i64>,
    /// Where to `POST` the call's events (an absolute `https` URL whose host is not a
    /// private, loopback or metadata address); the user's default when left out.
    #[schema(example = "https://hooks.example.com/dialer")]
    pub status_callback: Option<String>,
    /// Which events to send: statuses and `dtmf`. Every one when left out.
    #[schema(example = json!(["answered", "completed", "busy", "no_answer", "failed", "canceled", "dtmf"]))]
    pub status_callback_events: Option<Vec<String>>,
    /// Try the call again when an attempt ends in a listed outcome.
    pub retry: Option<RetryBody>,
    /// Do not dial before this time (RFC 3339 with offset, at most 30 days ahead); the
    /// call is `queued` until then.
    #[schema(example = "2026-12-01T14:30:00Z")]
    pub send_at: Option<String>,
    /// Dial (and retry) only within these local hours; outside them the call waits
    /// `queued` until the window next opens.
    pub window: Option<WindowBody>,
}

/// A call's retry policy.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryBody {
    /// Attempts in all, the first included: 1 to 5.
    #[schema(minimum = 1, maximum = 5, example = 3)]
    #[serde(default, deserialize_with = "whole_number")]
    pub max_attempts: Option<i64>,
    /// Outcomes that bring another attempt: `busy`, `no_answer`, `failed` (all three
    /// when left out).
    #[schema(example = json!(["busy", "no_answer"]))]
    pub on: Option<Vec<String>>,
    /// From an attempt's end to the next attempt, in milliseconds: 1000 to 86400000
    /// (default 60000).
    #[schema(minimum = 1000, maximum = 86_400_000, example = 60_000)]
    #[serde(default, deserialize_with = "whole_number")]
    pub delay_ms: Option<i64>,
}

/// A daily calling window in the callee's time zone; `end` before `start` spans
/// midnight.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowBody {
    /// `HH:MM`, 24-hour.
    #[schema(example = "09:00")]
    pub start: Option<String>,
    /// `HH:MM`, 24-hour; the window closes at this minute.
    #[schema(example = "20:00")]
    pub end: Option<String>,
    /// An IANA time zone name.
    #[schema(example = "America/New_York")]
    pub time_zone: Option<String>,
}

/// An integer field as JSON Schema defines one: `30000` and `30000.0` alike (many JSON
/// encoders write every number as a float). A fraction, or a number past `i64`, is
/// refused as the wrong type.
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::{Error, Unexpected};
    let Some(number) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(n) = number.as_i64() {
        return Ok(Some(n));
    }
    let float = number.as_f64().unwrap_or(f64::NAN);
    // Exactly representable and in range: the cast below cannot round or saturate.
    if float.fract() == 0.0 && float.abs() < 9.0e15 {
        #[allow(clippy::cast_possible_truncation)]
        return Ok(Some(float as i64));
    }
    Err(D::Error::invalid_type(
        Unexpected::Other("a number that is not a whole i64"),
        &"a whole number",
    ))
}

/// An optional field may also be sent as `null`.
fn nullable(kind: Type) -> SchemaType {
    SchemaType::from_iter([kind, Type::Null])
}

fn described(about: &str, rule: &FieldRule) -> String {
    if about.is_empty() {
        format!("Must be {}.", rule.rule)
    } else {
        format!("{about} Must be {}.", rule.rule)
    }
}

fn ruled_text(about: &str, rule: &FieldRule) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(nullable(Type::String))
        .description(Some(described(about, rule)))
        .pattern(rule.pattern)
        .examples([rule.example])
}

fn ruled_integer(about: &str, rule: &FieldRule, range: RangeInclusive<i64>) -> Object {
    ObjectBuilder::new()
        .schema_type(nullable(Type::Integer))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .description(Some(described(about, rule)))
        .minimum(Some(*range.start()))
        .maximum(Some(*range.end()))
        .examples(rule.example.parse::<i64>().ok())
        .build()
}

fn phone_number_schema() -> Object {
    ruled_text("", &rules::PHONE_NUMBER).build()
}

fn context_schema() -> Object {
    ruled_text("Dialplan context for IVR mode.", &rules::CONTEXT).build()
}

fn extension_schema() -> Object {
    ruled_text("Dialplan extension for IVR mode.", &rules::EXTENSION).build()
}

fn priority_schema() -> Object {
    ruled_integer(
        "Dialplan priority for IVR mode.",
        &rules::PRIORITY,
        PRIORITY_RANGE,
    )
}

fn timeout_schema() -> Object {
    ruled_integer(
        "Ring timeout.",
        &rules::TIMEOUT,
        RingTimeout::MIN_MS..=RingTimeout::MAX_MS,
    )
}

fn caller_id_schema() -> Object {
    ruled_text("", &rules::CALLER_ID).build()
}

fn variables_schema() -> Object {
    let names = &rules::VARIABLE_NAMES;
    let values = &rules::VARIABLE_VALUES;
    ObjectBuilder::new()
        .schema_type(nullable(Type::Object))
        .description(Some(format!(
            "Channel variables. Names must be {}. Values must be {}.",
            names.rule, values.rule
        )))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(names.pattern),
        ))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(values.pattern),
        ))
        .max_properties(Some(Variables::MAX_COUNT))
        .examples([serde_json::json!({ names.example: values.example })])
        .build()
}

fn mode_schema() -> Object {
    ruled_text(
        "`ivr` (default): continue into the dialplan once answered. `playback`: play `media` in order, then hang up.",
        &rules::MODE,
    )
    .build()
}

fn media_schema() -> Array {
    let rule = &rules::MEDIA;
    ArrayBuilder::new()
        .schema_type(nullable(Type::Array))
        .description(Some(described("Media URIs for playback mode.", rule)))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(rule.pattern),
        )
        .max_items(Some(Media::MAX_ITEMS))
        .examples([serde_json::json!([rule.example])])
        .build()
}

fn max_duration_schema() -> Object {
    ruled_integer(
        "Hang up after this much talk time.",
        &rules::MAX_DURATION,
        MAX_DURATION_RANGE_MS,
    )
}

impl CallBody {
    pub fn into_request(self, phone_number: String) -> CallRequest {
        CallRequest {
            phone_number,
            context: self.context,
            extension: self.extension,
            priority: self.priority,
            timeout: self.timeout,
            caller_id: self.caller_id,
            variables: self.variables,
            mode: self.mode,
            media: self.media,
            gather_dtmf: self.gather_dtmf,
            max_duration: self.max_duration,
            status_callback: self.status_callback,
            status_callback_events: self.status_callback_events,
            retry: self.retry.map(|r| RetryRequest {
                max_attempts: r.max_attempts,
                on: r.on,
                delay_ms: r.delay_ms,
            }),
            send_at: self.send_at,
            window: self.window.map(|w| WindowRequest {
                start: w.start,
                end: w.end,
                time_zone: w.time_zone,
            }),
        }
    }
}

/// The token endpoint's form (OAuth2 password grant).
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenForm {
    pub username: String,
    pub password: String,
    /// `password` when given. (A form has no null, so the optional fields are
    /// documented as strings that may be left out.)
    #[schema(value_type = String, required = false, pattern = "^password$")]
    pub grant_type: Option<String>,
    #[schema(value_type = String, required = false)]
    pub scope: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    #[schema(example = "bearer")]
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: i64,
}

/// The answer to an originate.
#[derive(Debug, Serialize, ToSchema)]
pub struct OriginateResponse {
    pub success: bool,
    pub call_id: Uuid,
    pub phone_number: String,
    pub message: &'static str,
    pub channel: String,
    /// Usually `dialing`; a fast callee may already be further along.
    pub status: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
    pub mode: String,
    /// True once the PBX accepted the call's originate. False for a call still waiting
    /// in the queue (nothing was originated yet), and when the PBX did not answer the
    /// originate in time: the call may still be ringing (the answer is then 202).
    /// Follow it by `call_id`; retry only with the same `Idempotency-Key`, which
    /// returns this same call.
    pub originate_confirmed: bool,
}

impl From<&Call> for OriginateResponse {
    fn from(call: &Call) -> Self {
        Self {
            success: true,
            call_id: call.id,
            phone_number: call.phone_number.to_string(),
            message: if call.originate_unconfirmed_at.is_some() {
                "The PBX did not confirm the originate in time; the call may still be placed. Follow it by call_id."
            } else if call.status == dialer_core::domain::CallStatus::Queued {
                "Call queued; it is dialed when its time comes and the trunk's limits allow"
            } else {
                "Call originated successfully"
            },
            channel: call.channel.clone(),
            status: call.status.as_str().to_owned(),
            created_at: rfc3339(call.created_at),
            mode: call.mode.as_str().to_owned(),
            originate_confirmed: call.dialed_at.is_some()
                && call.originate_unconfirmed_at.is_none(),
        }
    }
}

impl OriginateResponse {
    /// An originate the PBX never confirmed and that nothing has settled yet.
    pub fn unsettled(call: &Call) -> bool {
        call.originate_unconfirmed_at.is_some()
            && call.status == dialer_core::domain::CallStatus::Dialing
    }
}

/// The status document of one call.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallView {
    pub call_id: Uuid,
    pub phone_number: String,
    /// queued, pending, dialing, ringing, answered, completed, busy, no_answer, failed,
    /// canceled (the latest attempt's)
    pub status: String,
    pub channel: String,
    pub context: String,
    pub extension: String,
    pub priority: u32,
    pub caller_id: Option<String>,
    pub mode: String,
    pub media: Vec<String>,
    /// Ring timeout in milliseconds.
    pub timeout: u64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub dialed_at: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ringing_at: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub answered_at: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<String>,
    /// Seconds from answer to end.
    pub duration: Option<f64>,
    pub failure_reason: Option<String>,
    /// The Q.850 cause of the channel's end, as the PBX reported it.
    pub cause: Option<i64>,
    pub cause_txt: Option<String>,
    /// The last `Dial` status the PBX reported.
    pub dialstatus: Option<String>,
    /// DTMF digits the callee pressed.
    pub dtmf: String,
    /// Media items the PBX could not play (e.g. a missing sound file); the call still
    /// ends `completed`.
    pub media_failed: Vec<String>,
    /// When the client asked to cancel the call.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub cancel_requested_at: Option<String>,
    /// Set when the PBX did not answer the originate in time; the bridge settles such
    /// a call from the channel's events, or finds that it never existed
    /// (`failure_reason` `originate_unconfirmed`).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub originate_unconfirmed_at: Option<String>,
    pub attempt_number: u32,
    pub is_active: bool,
    /// True once the call has reached a final status, whatever it is.
    pub is_completed: bool,
    /// Where the call's events are sent (`GET /api/v2/calls/{call_id}/events` shows
    /// how each delivery went).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_callback: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_callback_events: Option<Vec<String>>,
    /// Every attempt, the latest (the one the top-level fields describe) last.
    pub attempts: Vec<AttemptView>,
    /// While `queued`: the earliest time the call is dialed.
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued_until: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryView>,
}

/// One attempt of a call.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    pub attempt_number: u32,
    pub status: String,
    pub failure_reason: Option<String>,
    pub cause: Option<i64>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub dialed_at: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub answered_at: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<String>,
}

/// The retry policy a call was placed with.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetryView {
    pub max_attempts: u32,
    pub on: Vec<String>,
    pub delay_ms: u64,
}

impl From<&Attempt> for AttemptView {
    fn from(a: &Attempt) -> Self {
        Self {
            attempt_number: a.attempt_number,
            status: a.status.as_str().to_owned(),
            failure_reason: a.failure_reason.as_ref().map(FailureReason::to_text),
            cause: a.cause,
            dialed_at: a.dialed_at.map(rfc3339),
            answered_at: a.answered_at.map(rfc3339),
            ended_at: a.ended_at.map(rfc3339),
        }
    }
}

impl From<&Call> for CallView {
    fn from(call: &Call) -> Self {
        Self {
            call_id: call.id,
            phone_number: call.phone_number.to_string(),
            status: call.status.as_str().to_owned(),
            channel: call.channel.clone(),
            context: call.context.to_string(),
            extension: call.extension.to_string(),
            priority: call.priority,
            caller_id: call.caller_id.as_ref().map(ToString::to_string),
            mode: call.mode.as_str().to_owned(),
            media: call.media.iter().map(ToString::to_string).collect(),
            timeout: call.timeout_ms,
            created_at: rfc3339(call.created_at),
            dialed_at: call.dialed_at.map(rfc3339),
            ringing_at: call.ringing_at.map(rfc3339),
            answered_at: call.answered_at.map(rfc3339),
            ended_at: call.ended_at.map(rfc3339),
            duration: call.duration_seconds(),
            failure_reason: call.failure_reason.as_ref().map(FailureReason::to_text),
            cause: call.cause,
            cause_txt: call.cause_txt.clone(),
            dialstatus: call.dialstatus.clone(),
            dtmf: call.dtmf.clone(),
            media_failed: call.media_failed.clone(),
            cancel_requested_at: call.cancel_requested_at.map(rfc3339),
            originate_unconfirmed_at: call.originate_unconfirmed_at.map(rfc3339),
            attempt_number: call.attempt_number,
            status_callback: call.webhook.as_ref().map(|w| w.url.as_str().to_owned()),
            status_callback_events: call.webhook.as_ref().map(|w| w.events.names()),
            is_active: call.is_active(),
            is_completed: call.is_completed(),
            attempts: call.all_attempts().iter().map(AttemptView::from).collect(),
            queued_until: call.queued_until.map(rfc3339),
            send_at: call.send_at.map(rfc3339),
            window: call.window.as_ref().map(|w| WindowBody {
                start: Some(w.start_text()),
                end: Some(w.end_text()),
                time_zone: Some(w.time_zone.name().to_owned()),
            }),
            retry: call.retry.as_ref().map(|r| RetryView {
                max_attempts: r.max_attempts,
                on: r.on.iter().map(|o| o.as_str().to_owned()).collect(),
                delay_ms: r.delay_ms,
            }),
        }
    }
}

/// A page of the caller's calls, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallList {
    pub calls: Vec<CallView>,
    /// Pass as `before` for the next page; absent on the last page. Opaque: a place
    /// in the list (creation time and call id), so that no call is skipped or repeated.
    pub next_before: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// At most this many calls (1–100, default 20).
    #[param(value_type = u32, required = false, minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
    /// A `next_before` from the previous page, or an RFC 3339 time (only calls created
    /// before it).
    #[param(value_type = String, required = false)]
    pub before: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    #[schema(example = "call not found")]
    pub detail: String,
}

/// RFC 3339, UTC, millisecond precision, `Z` suffix: `2026-12-01T18:29:03.120Z`, as
/// chrono's `to_rfc3339_opts(Millis, true)` writes it. Written digit by digit, since a
/// status document holds several and chrono's general formatter cost more than all the
/// rest of building the document; chrono writes what this does not (years outside
/// 0000-9999, a leap second).
pub fn rfc3339(at: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    let millis = at.timestamp_subsec_millis();
    let year = at.year();
    if !(0..=9_999).contains(&year) || millis > 999 {
        return at.to_rfc3339_opts(SecondsFormat::Millis, true);
    }
    let mut text = *b"0000-00-00T00:00:00.000Z";
    for (range, value) in [
        (0..4, year.unsigned_abs()),
        (5..7, at.month()),
        (8..10, at.day()),
        (11..13, at.hour()),
        (14..16, at.minute()),
        (17..19, at.second()),
        (20..23, millis),
    ] {
        let mut value = value;
        for digit in text[range].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    text.iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_written_as_chrono_writes_them() {
        let chrono = |at: DateTime<Utc>| at.to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut millis: i64 = 0;
        // Every month, day and hour over ten thousand years, and each edge.
        for _ in 0..200_000 {
            millis = millis
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let at = DateTime::from_timestamp_millis(millis.rem_euclid(253_402_300_800_000))
                .expect("in range");
            assert_eq!(rfc3339(at), chrono(at));
        }
        for text in [
            "0000-01-01T00:00:00.000Z",
            "1970-01-01T00:00:00.000Z",
            "2026-12-01T18:29:03.120Z",
            "2024-02-29T23:59:59.999Z",
            "9999-12-31T23:59:59.999Z",
        ] {
            let at = DateTime::parse_from_rfc3339(text).expect("valid").to_utc();
            assert_eq!(rfc3339(at), text);
        }
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_milli_opt(23, 59, 59, 1_500))
            .expect("a leap second")
            .and_utc();
        assert_eq!(rfc3339(leap), chrono(leap));
        let far = DateTime::from_timestamp(300_000_000_000, 0).expect("year 11476");
        assert_eq!(rfc3339(far), chrono(far));
        let sub_milli = DateTime::from_timestamp(1_800_000_000, 123_456_789).expect("valid");
        assert_eq!(rfc3339(sub_milli), chrono(sub_milli));
    }

    #[test]
    fn whole_numbers_may_be_written_as_floats_but_fractions_are_refused() {
        let body = |json: &str| serde_json::from_str::<CallBody>(json);
        let parsed = body(r#"{"timeout": 30000.0, "priority": 2, "max_duration": null}"#)
            .expect("whole numbers");
        assert_eq!(parsed.timeout, Some(30_000));
        assert_eq!(parsed.priority, Some(2));
        assert_eq!(parsed.max_duration, None);
        assert!(body(r#"{"timeout": 30000.5}"#).is_err());
        assert!(body(r#"{"timeout": 1e300}"#).is_err());
        assert!(body(r#"{"timeout": "30000"}"#).is_err());
    }
}

/// A call's timeline: every event its webhook asked for, in order, with how its
/// delivery went.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallEvents {
    pub call_id: Uuid,
    #[schema(value_type = Option<String>)]
    pub status_callback: Option<String>,
    pub events: Vec<EventView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub event_id: Uuid,
    /// 1, 2, 3 … per call, no gaps.
    pub sequence: u32,
    /// `status` or `dtmf`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub status: String,
    pub previous_status: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub at: String,
    pub attempt_number: u32,
    /// The digit pressed, for a `dtmf` event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digit: Option<String>,
    pub delivery: DeliveryView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// `pending` (not yet delivered; retried while `next_attempt_at` is set),
    /// `delivered` or `dead` (given up: too old, or refused by the receiver).
    pub state: &'static str,
    pub attempts: u32,
    pub last_response_code: Option<u16>,
    pub last_error: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub delivered_at: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub dead_at: Option<String>,
}

impl From<&Call> for CallEvents {
    fn from(call: &Call) -> Self {
        let time =
            |at: Option<DateTime<Utc>>| at.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true));
        Self {
            call_id: call.id,
            status_callback: call.webhook.as_ref().map(|w| w.url.as_str().to_owned()),
            events: call
                .events
                .iter()
                .map(|e| EventView {
                    event_id: e.event_id,
                    sequence: e.sequence,
                    kind: match e.kind {
                        EventType::Status => "status",
                        EventType::Dtmf => "dtmf",
                    },
                    status: e.status.as_str().to_owned(),
                    previous_status: e.previous_status.map(|s| s.as_str().to_owned()),
                    at: e.at.to_rfc3339_opts(SecondsFormat::Millis, true),
                    attempt_number: e.attempt_number,
                    digit: e.digit.map(String::from),
                    delivery: DeliveryView {
                        state: if e.delivery.delivered_at.is_some() {
                            "delivered"
                        } else if e.delivery.dead_at.is_some() {
                            "dead"
                        } else {
                            "pending"
                        },
                        attempts: e.delivery.attempts,
                        last_response_code: e.delivery.last_response_code,
                        last_error: e.delivery.last_error.clone(),
                        next_attempt_at: time(e.delivery.next_attempt_at),
                        delivered_at: time(e.delivery.delivered_at),
                        dead_at: time(e.delivery.dead_at),
                    },
                })
                .collect(),
        }
    }
}
