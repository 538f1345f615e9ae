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

use crate::extract::Fields;

use dialer_core::domain::schedule::{RetryOutcome, RetryRequest, WindowRequest};
use dialer_core::domain::validation::{
    FieldRule, MAX_DURATION_RANGE_MS, Media, PRIORITY_RANGE, RingTimeout, Variables, rules,
};
use dialer_core::domain::webhook::{CallbackUrl, EventType};
use dialer_core::domain::{
    Attempt, Call, CallMode, CallRequest, CallStatus, FailureReason, TimeZone,
};

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
    #[schema(schema_with = status_callback_schema)]
    pub status_callback: Option<String>,
    #[schema(schema_with = status_callback_events_schema)]
    pub status_callback_events: Option<Vec<String>>,
    /// Try the call again when an attempt ends in a listed outcome.
    pub retry: Option<RetryBody>,
    #[schema(schema_with = send_at_schema)]
    pub send_at: Option<String>,
    /// Dial (and retry) only within these local hours; outside them the call waits
    /// `queued` until the window next opens.
    pub window: Option<WindowBody>,
}

/// A call's retry policy.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryBody {
    /// Attempts in all, the first included: 1 to 5. Required.
    #[schema(value_type = i64, required = true, minimum = 1, maximum = 5, example = 3)]
    #[serde(default, deserialize_with = "whole_number")]
    pub max_attempts: Option<i64>,
    #[schema(schema_with = retry_on_schema)]
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
    /// `HH:MM`, 24-hour (00:00 to 23:59).
    #[schema(schema_with = window_start_schema, required = true)]
    pub start: Option<String>,
    /// `HH:MM`, 24-hour (00:00 to 23:59), not the same as `start`; the window closes
    /// at this minute.
    #[schema(schema_with = window_end_schema, required = true)]
    pub end: Option<String>,
    #[schema(schema_with = time_zone_schema, required = true)]
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

/// Every call mode; the match makes a new one fail to compile until it is listed.
const MODES: [CallMode; 2] = [CallMode::Ivr, CallMode::Playback];
const _: fn(CallMode) = |mode| match mode {
    CallMode::Ivr | CallMode::Playback => {}
};

/// Every outcome a retry may follow, listed as [`MODES`] is.
const RETRY_OUTCOMES: [RetryOutcome; 3] = [
    RetryOutcome::Busy,
    RetryOutcome::NoAnswer,
    RetryOutcome::Failed,
];
const _: fn(RetryOutcome) = |outcome| match outcome {
    RetryOutcome::Busy | RetryOutcome::NoAnswer | RetryOutcome::Failed => {}
};

/// A closed set: an `enum` (with `null`, which leaves the field to its default).
fn mode_schema() -> Object {
    let rule = &rules::MODE;
    ObjectBuilder::new()
        .schema_type(nullable(Type::String))
        .description(Some(described(
            "`ivr` (default): continue into the dialplan once answered. `playback`: play `media` in order, then hang up (so `media` needs at least one item).",
            rule,
        )))
        .enum_values(Some(
            MODES
                .iter()
                .map(|mode| serde_json::Value::from(mode.as_str()))
                .chain([serde_json::Value::Null]),
        ))
        .examples([rule.example])
        .build()
}

/// The shape of a callback URL the parser takes, in its usual spelling: `https`, a
/// host name or IPv4 address, a port from 1 to 65535, then a path or query without a
/// `#fragment`. (The parser also reads what a browser would, such as `HTTPS:\\host` or
/// an IPv6 address in brackets; the document does not invite them.)
pub const STATUS_CALLBACK_PATTERN: &str = concat!(
    r"^https://[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.?",
    r"(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?",
    r#"([/?][!"$-~]*)?$"#,
);

fn status_callback_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(nullable(Type::String))
        .description(Some(format!(
            "Where to `POST` the call's events: an absolute `https` URL of at most {} \
             characters, with no user name, password or `#fragment`, e.g. \
             `https://hooks.example.com/dialer`; the user's default when left out. (`http` too where the operator has set `WEBHOOK_ALLOW_INSECURE=true`, \
             for tests.) When the call is requested its host must resolve, and only to \
             public addresses: a name that does not resolve, or a loopback, private, \
             link-local or cloud metadata address, is refused with a 422.",
            CallbackUrl::MAX_LEN
        )))
        .pattern(Some(STATUS_CALLBACK_PATTERN))
        .max_length(Some(CallbackUrl::MAX_LEN))
        // The example is `null` (the user's default): a body made of the examples must be
        // one the server takes, and whether a host resolves is not the document's to know.
        .examples([serde_json::Value::Null])
        .build()
}

fn status_callback_events_schema() -> Array {
    let names = CallStatus::ALL
        .iter()
        .map(|status| status.as_str())
        .chain(["dtmf"]);
    ArrayBuilder::new()
        .schema_type(nullable(Type::Array))
        .description(Some(
            "Which events to send: call statuses and `dtmf`, at least one, e.g. \
             `[\"answered\", \"completed\", \"dtmf\"]`; every event when left out. Needs a \
             `status_callback`, in the request or as the user's default.",
        ))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(names)),
        )
        .min_items(Some(1))
        // `null`, as the `status_callback` it needs.
        .examples([serde_json::Value::Null])
        .build()
}

fn send_at_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(nullable(Type::String))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .description(Some(
            "Do not dial before this time: RFC 3339 with its offset, at most 30 days after \
             the request (a time already past means now). The call is `queued` until then.",
        ))
        .examples(["2026-12-01T14:30:00Z"])
        .build()
}

fn retry_on_schema() -> Array {
    ArrayBuilder::new()
        .schema_type(nullable(Type::Array))
        .description(Some(
            "Outcomes that bring another attempt, at least one; all three when left out.",
        ))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(RETRY_OUTCOMES.iter().map(|o| o.as_str()))),
        )
        .min_items(Some(1))
        .examples([serde_json::json!(["busy", "no_answer"])])
        .build()
}

/// `HH:MM` from 00:00 to 23:59, as the window parser reads it.
pub const TIME_OF_DAY_PATTERN: &str = "^([01][0-9]|2[0-3]):[0-5][0-9]$";

fn time_of_day(about: &str, example: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(about))
        .pattern(Some(TIME_OF_DAY_PATTERN))
        .examples([example])
        .build()
}

fn window_start_schema() -> Object {
    time_of_day("`HH:MM`, 24-hour (00:00 to 23:59).", "09:00")
}

fn window_end_schema() -> Object {
    time_of_day(
        "`HH:MM`, 24-hour (00:00 to 23:59), not the same as `start`; the window closes at \
         this minute.",
        "20:00",
    )
}

/// Every zone the dialer knows: a closed set, so an `enum`.
fn time_zone_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "An IANA time zone name (links included), as tzdata spells it.",
        ))
        .enum_values(Some(TimeZone::names()))
        .examples(["America/New_York"])
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
    fn every_value_a_closed_set_lists_is_one_the_server_takes() {
        for name in TimeZone::names() {
            assert!(TimeZone::parse(name).is_some(), "{name}");
        }
        assert!(TimeZone::names().count() > 400);
        for mode in MODES {
            assert_eq!(CallMode::parse(mode.as_str()), Ok(mode));
        }
        let retry = |on: &str| {
            dialer_core::domain::RetryPolicy::parse(&RetryRequest {
                max_attempts: Some(2),
                on: Some(vec![on.to_owned()]),
                delay_ms: None,
            })
        };
        for outcome in RETRY_OUTCOMES {
            assert!(retry(outcome.as_str()).is_ok(), "{outcome:?}");
        }
        assert!(retry("completed").is_err());
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

impl Fields for CallBody {
    const NAME: &'static str = "a call request";
    const SHAPE: &'static str = "a JSON object of call options";
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        (
            "phone_number",
            "a string: an E.164 number such as \"+15550010001\"",
        ),
        ("context", "a string naming a dialplan context"),
        ("extension", "a string naming a dialplan extension"),
        ("priority", "a whole number"),
        ("timeout", "a whole number of milliseconds"),
        ("caller_id", "a string such as \"MyCompany <+15550000000>\""),
        ("variables", "an object of variable names to string values"),
        ("mode", "\"ivr\" or \"playback\""),
        ("media", "a list of strings such as \"sound:hello-world\""),
        ("gather_dtmf", "true or false"),
        ("max_duration", "a whole number of milliseconds"),
        ("status_callback", "a string holding an https URL"),
        ("status_callback_events", "a list of event names (strings)"),
        ("retry", "an object such as {\"max_attempts\": 3}"),
        ("retry.max_attempts", "a whole number"),
        (
            "retry.on",
            "a list of outcomes (strings): busy, no_answer, failed",
        ),
        ("retry.delay_ms", "a whole number of milliseconds"),
        (
            "send_at",
            "a string holding an RFC 3339 time such as \"2026-12-01T09:30:00Z\"",
        ),
        ("window", "an object of start, end and time_zone"),
        ("window.start", "a string holding a time of day as HH:MM"),
        ("window.end", "a string holding a time of day as HH:MM"),
        ("window.time_zone", "a string naming an IANA time zone"),
    ];
}

impl Fields for ListQuery {
    const NAME: &'static str = "the list's query";
    const SHAPE: &'static str = "a query string of limit and before";
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        ("limit", "a whole number from 1 to 100"),
        ("before", "a next_before value or an RFC 3339 time"),
    ];
}

impl Fields for TokenForm {
    const NAME: &'static str = "the token form";
    const SHAPE: &'static str =
        "a form (application/x-www-form-urlencoded) of username and password";
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        ("username", "text"),
        ("password", "text"),
        ("grant_type", "password"),
        ("scope", "text"),
    ];
}
