//! The call record, the request that creates one, and the two kinds of change a record
//! may undergo: a status transition (forward-only) and an annotation (facts that do not
//! move the status).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::outcome::FailureReason;
use super::schedule::{CallingWindow, RetryPolicy, RetryRequest, WindowRequest};
use super::status::{CallStatus, Progress};
use super::validation::{
    CallerId, Context, Extension, Media, PhoneNumber, RingTimeout, ValidationError, Variables,
    dial_endpoint, max_duration, priority, rules,
};
use super::webhook::{CallEvent, CallbackUrl, EventFilter, EventType, Webhook};

/// What the bridge does once the callee answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallMode {
    /// `continue` the channel into the IVR dialplan (context/extension/priority).
    #[default]
    Ivr,
    /// Play the call's media list in order, then hang up.
    Playback,
}

impl CallMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CallMode::Ivr => "ivr",
            CallMode::Playback => "playback",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        match raw {
            "ivr" => Ok(CallMode::Ivr),
            "playback" => Ok(CallMode::Playback),
            _ => Err(rules::MODE.refusal()),
        }
    }
}

/// A call as stored. Every timestamp is UTC. What a client sent is held in the types
/// validation built, so nothing unchecked can reach the PBX from a record either.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Call {
    pub id: Uuid,
    pub owner: String,
    pub phone_number: PhoneNumber,
    pub status: CallStatus,
    pub mode: CallMode,
    /// The PBX endpoint dialed, e.g. `PJSIP/+15550010001@trunk`.
    pub channel: String,
    pub context: Context,
    pub extension: Extension,
    pub priority: u32,
    pub caller_id: Option<CallerId>,
    pub timeout_ms: u64,
    pub max_duration_ms: Option<u64>,
    pub variables: Variables,
    pub media: Vec<Media>,
    pub gather_dtmf: bool,
    pub dtmf: String,
    pub created_at: DateTime<Utc>,
    pub dialed_at: Option<DateTime<Utc>>,
    pub ringing_at: Option<DateTime<Utc>>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub failure_reason: Option<FailureReason>,
    pub cause: Option<i64>,
    pub cause_txt: Option<String>,
    pub dialstatus: Option<String>,
    pub attempt_number: u32,
    pub cancel_requested_at: Option<DateTime<Utc>>,
    /// The originate request got no answer (a timeout or a broken connection): the PBX
    /// may or may not have placed the call. The bridge settles it.
    pub originate_unconfirmed_at: Option<DateTime<Utc>>,
    /// Media items the PBX could not play (a missing sound file, say): each once, sorted.
    pub media_failed: Vec<String>,
    /// Where the call's events are sent, if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
    /// The events the webhook asked for, in order, each with its delivery state: the
    /// outbox, written in the same write as the change each one reports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<CallEvent>,
    /// How the call is tried again after an attempt that did not reach the callee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// The client's `send_at`: the first attempt is not dialed before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_at: Option<DateTime<Utc>>,
    /// The hours in which any attempt may be dialed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<CallingWindow>,
    /// While `queued`: the earliest time the dispatcher may dial the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_until: Option<DateTime<Utc>>,
    /// When the dispatcher claimed the current attempt from the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_at: Option<DateTime<Utc>>,
    /// The current attempt holds a line in the pacing state, to be freed at its end.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paced: bool,
    /// The attempts before the current one, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
}

/// One attempt's story, as the status document lists it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Attempt {
    pub attempt_number: u32,
    pub status: CallStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<FailureReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dialed_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
}

impl Call {
    pub fn is_active(&self) -> bool {
        self.status.is_active()
    }

    /// The call has reached a final status, whatever it is.
    pub fn is_completed(&self) -> bool {
        self.status.is_final()
    }

    /// Where the call stands: its attempt and that attempt's status.
    pub fn progress(&self) -> Progress {
        Progress {
            attempt: self.attempt_number,
            status: self.status,
        }
    }

    /// Every attempt, the current one last: what the status document lists.
    pub fn all_attempts(&self) -> Vec<Attempt> {
        let mut all = self.attempts.clone();
        all.push(self.current_attempt());
        all
    }

    /// The current attempt's line in the pacing state.
    pub fn slot(&self) -> super::pacing::Slot {
        super::pacing::Slot {
            call: self.id,
            attempt: self.attempt_number,
        }
    }

    /// The line of the attempt that just ended, if it held one: the current attempt's
    /// when the call is final, the one before when the call went back to the queue.
    pub fn ended_attempt_slot(&self) -> Option<super::pacing::Slot> {
        if !self.paced {
            return None;
        }
        let attempt = if self.status.is_final() {
            self.attempt_number
        } else if self.status == CallStatus::Queued && self.attempt_number > 1 {
            self.attempt_number - 1
        } else {
            return None;
        };
        Some(super::pacing::Slot {
            call: self.id,
            attempt,
        })
    }

    /// When a new call may first be dialed, if not at once: its `send_at`, moved on to
    /// the next opening of its calling window.
    pub fn held_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let earliest = self.send_at.map_or(now, |at| at.max(now));
        let due = self
            .window
            .as_ref()
            .map_or(earliest, |w| w.next_open(earliest));
        (due > now).then_some(due)
    }

    /// Makes a new (not yet stored) call wait in the queue until `due`.
    pub fn enqueue(&mut self, due: DateTime<Utc>) {
        self.status = CallStatus::Queued;
        self.queued_until = Some(due);
    }

    /// When an attempt began: its claim from the queue, or the call's creation.
    pub fn attempt_started_at(&self) -> DateTime<Utc> {
        self.claimed_at.unwrap_or(self.created_at)
    }

    fn current_attempt(&self) -> Attempt {
        Attempt {
            attempt_number: self.attempt_number,
            status: self.status,
            failure_reason: self.failure_reason.clone(),
            cause: self.cause,
            dialed_at: self.dialed_at,
            answered_at: self.answered_at,
            ended_at: self.ended_at,
        }
    }

    /// The attempt that just ended is kept in `attempts`, and the call waits queued for
    /// the next one: after the retry delay, in its calling window.
    fn requeue(&mut self, retry: &RetryPolicy, ended: DateTime<Utc>) {
        self.attempts.push(self.current_attempt());
        self.attempt_number += 1;
        self.status = CallStatus::Queued;
        let earliest = ended + retry.delay();
        self.queued_until = Some(
            self.window
                .as_ref()
                .map_or(earliest, |w| w.next_open(earliest)),
        );
        self.dialed_at = None;
        self.ringing_at = None;
        self.answered_at = None;
        self.ended_at = None;
        self.failure_reason = None;
        self.cause = None;
        self.cause_txt = None;
        self.dialstatus = None;
        self.originate_unconfirmed_at = None;
        self.claimed_at = None;
        // `paced` stays: it says the attempt that just ended held a line, to be freed.
    }

    /// Seconds from answer to end, when the call was answered and has ended.
    pub fn duration_seconds(&self) -> Option<f64> {
        let talk = self.ended_at? - self.answered_at?;
        Some(talk.num_milliseconds().max(0) as f64 / 1000.0)
    }
}

/// A client's request for a call, before validation. Every field but the number is
/// optional and falls back to the operator's defaults.
#[derive(Clone, Debug, Default)]
pub struct CallRequest {
    pub phone_number: String,
    pub context: Option<String>,
    pub extension: Option<String>,
    pub priority: Option<i64>,
    pub timeout: Option<i64>,
    pub caller_id: Option<String>,
    pub variables: Option<BTreeMap<String, String>>,
    pub mode: Option<String>,
    pub media: Option<Vec<String>>,
    pub gather_dtmf: Option<bool>,
    pub max_duration: Option<i64>,
    /// Where to send the call's events; the user's default when absent.
    pub status_callback: Option<String>,
    pub status_callback_events: Option<Vec<String>>,
    pub retry: Option<RetryRequest>,
    /// RFC 3339.
    pub send_at: Option<String>,
    pub window: Option<WindowRequest>,
}

/// The operator's rules and defaults for new calls.
#[derive(Clone, Debug)]
pub struct CallPolicy {
    pub default_context: String,
    pub default_extension: String,
    pub default_priority: u32,
    pub default_timeout_ms: i64,
    pub default_caller_id: Option<String>,
    pub allowed_contexts: Vec<String>,
    /// e.g. `PJSIP/{number}@trunk`.
    pub dial_endpoint: String,
    pub max_duration_ms: Option<u64>,
    /// `WEBHOOK_ALLOW_INSECURE`: accept `http` callbacks (local development).
    pub webhook_allow_insecure: bool,
}

impl Default for CallPolicy {
    /// The original spec's defaults: the `outbound-ivr` context alone, extension `s`,
    /// priority 1, a 30 s ring timeout.
    fn default() -> Self {
        Self {
            default_context: "outbound-ivr".into(),
            default_extension: "s".into(),
            default_priority: 1,
            default_timeout_ms: 30_000,
            default_caller_id: None,
            allowed_contexts: vec!["outbound-ivr".into()],
            dial_endpoint: "PJSIP/{number}@trunk".into(),
            max_duration_ms: None,
            webhook_allow_insecure: false,
        }
    }
}

impl CallRequest {
    /// A digest of everything the request asks for, as the client sent it: an
    /// idempotency key reused for a request with another digest is not a repeat. Each
    /// field present goes in under its name, in a fixed order, so that a field added
    /// later leaves the digest of a request without it unchanged.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let numbers = |value: Option<i64>| value.map(|v| v.to_string());
        let mut fields: Vec<(&str, Option<String>)> = vec![
            ("phone_number", Some(self.phone_number.clone())),
            ("context", self.context.clone()),
            ("extension", self.extension.clone()),
            ("caller_id", self.caller_id.clone()),
            ("mode", self.mode.clone()),
            ("status_callback", self.status_callback.clone()),
            ("send_at", self.send_at.clone()),
            ("priority", numbers(self.priority)),
            ("timeout", numbers(self.timeout)),
            ("max_duration", numbers(self.max_duration)),
            ("gather_dtmf", self.gather_dtmf.map(|g| g.to_string())),
        ];
        if let Some(variables) = &self.variables {
            fields.push(("variables", Some(variables.len().to_string())));
            fields.extend(variables.iter().map(|(n, v)| (n.as_str(), Some(v.clone()))));
        }
        for (name, list) in [
            ("media", &self.media),
            ("status_callback_events", &self.status_callback_events),
            ("retry.on", &self.retry.as_ref().and_then(|r| r.on.clone())),
        ] {
            if let Some(list) = list {
                fields.push((name, Some(list.len().to_string())));
                fields.extend(list.iter().map(|item| (name, Some(item.clone()))));
            }
        }
        if let Some(retry) = &self.retry {
            fields.push(("retry.max_attempts", numbers(retry.max_attempts)));
            fields.push(("retry.delay_ms", numbers(retry.delay_ms)));
        }
        if let Some(window) = &self.window {
            fields.push(("window.start", window.start.clone()));
            fields.push(("window.end", window.end.clone()));
            fields.push(("window.time_zone", window.time_zone.clone()));
        }
        let mut digest = sha2::Sha256::new();
        for (name, value) in fields {
            let Some(value) = value else { continue };
            // Each part with its length first, so no two lists of fields run together.
            for part in [name, "=", value.as_str()] {
                digest.update((part.len() as u64).to_be_bytes());
                digest.update(part.as_bytes());
            }
        }
        hex::encode(digest.finalize())
    }

    /// Checks every field and builds the `pending` record. Nothing unchecked survives.
    pub fn validate(
        &self,
        policy: &CallPolicy,
        owner: &str,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Call, ValidationError> {
        let number = PhoneNumber::parse(&self.phone_number)?;
        let context = Context::parse(
            self.context.as_deref().unwrap_or(&policy.default_context),
            &policy.allowed_contexts,
        )?;
        let extension = Extension::parse(
            self.extension
                .as_deref()
                .unwrap_or(&policy.default_extension),
        )?;
        let priority = match self.priority {
            Some(raw) => priority(raw)?,
            None => policy.default_priority,
        };
        let timeout = RingTimeout::from_millis(self.timeout.unwrap_or(policy.default_timeout_ms))?;
        let caller_id = self
            .caller_id
            .as_deref()
            .or(policy.default_caller_id.as_deref())
            .map(CallerId::parse)
            .transpose()?;
        let variables = Variables::parse(&self.variables.clone().unwrap_or_default())?;
        let mode = self
            .mode
            .as_deref()
            .map(CallMode::parse)
            .transpose()?
            .unwrap_or_default();
        let media = Media::parse_list(self.media.as_deref().unwrap_or_default())?;
        if mode == CallMode::Playback && media.is_empty() {
            return Err(ValidationError::new(
                "media",
                "playback mode needs at least one media item",
            ));
        }
        let webhook = match (&self.status_callback, &self.status_callback_events) {
            (Some(url), events) => Some(Webhook {
                url: CallbackUrl::parse(url, policy.webhook_allow_insecure)?,
                events: events
                    .as_deref()
                    .map(EventFilter::parse)
                    .transpose()?
                    .unwrap_or_default(),
            }),
            (None, Some(_)) => {
                return Err(ValidationError::new(
                    "status_callback_events",
                    "needs a status_callback (in the request or the user's default)",
                ));
            }
            (None, None) => None,
        };
        let max_duration_ms = match self.max_duration {
            Some(ms) => Some(max_duration(ms)?),
            None => policy.max_duration_ms,
        };
        let retry = self.retry.as_ref().map(RetryPolicy::parse).transpose()?;
        let send_at = self
            .send_at
            .as_deref()
            .map(|raw| super::schedule::send_at(raw, now))
            .transpose()?;
        let window = self.window.as_ref().map(CallingWindow::parse).transpose()?;
        Ok(Call {
            id,
            owner: owner.to_owned(),
            channel: dial_endpoint(&policy.dial_endpoint, &number),
            phone_number: number,
            status: CallStatus::Pending,
            mode,
            context,
            extension,
            priority,
            caller_id,
            timeout_ms: timeout.millis(),
            max_duration_ms,
            variables,
            media,
            gather_dtmf: self.gather_dtmf.unwrap_or(false),
            dtmf: String::new(),
            created_at: now,
            dialed_at: None,
            ringing_at: None,
            answered_at: None,
            ended_at: None,
            failure_reason: None,
            cause: None,
            cause_txt: None,
            dialstatus: None,
            attempt_number: 1,
            cancel_requested_at: None,
            originate_unconfirmed_at: None,
            media_failed: Vec::new(),
            webhook,
            events: Vec::new(),
            retry,
            send_at,
            window,
            queued_until: None,
            claimed_at: None,
            paced: false,
            attempts: Vec::new(),
        })
    }
}

/// A forward-only status change, with the facts that come with it. Stores apply it only
/// when `call.status.can_move_to(transition.status)`, atomically.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub status: CallStatus,
    pub at: DateTime<Utc>,
    /// The attempt this change is about; `None` for the current one. A change for an
    /// attempt that is over is refused, so a late word about one cannot touch the next.
    pub attempt: Option<u32>,
    /// A claim from the queue that holds a line in the pacing state.
    pub paced: bool,
    /// False only for a call that never reached the PBX (originate refused).
    pub dialed: bool,
    pub failure_reason: Option<FailureReason>,
    pub cause: Option<i64>,
    pub cause_txt: Option<String>,
    pub dialstatus: Option<String>,
}

impl Transition {
    /// Progress seen on the PBX side: dialing, ringing, answered, or a final outcome.
    pub fn to(status: CallStatus, at: DateTime<Utc>) -> Self {
        Self {
            status,
            at,
            attempt: None,
            paced: false,
            dialed: true,
            failure_reason: None,
            cause: None,
            cause_txt: None,
            dialstatus: None,
        }
    }

    /// The originate itself failed: the call never reached the callee.
    pub fn not_dialed(reason: FailureReason, at: DateTime<Utc>) -> Self {
        Self {
            dialed: false,
            failure_reason: Some(reason),
            ..Self::to(CallStatus::Failed, at)
        }
    }

    /// The dispatcher takes attempt `attempt` out of the queue to dial it.
    pub fn claim(attempt: u32, paced: bool, at: DateTime<Utc>) -> Self {
        Self {
            dialed: false,
            attempt: Some(attempt),
            paced,
            ..Self::to(CallStatus::Pending, at)
        }
    }

    /// A call canceled while it waited in the queue: it ends without a dial.
    pub fn canceled_in_queue(attempt: u32, at: DateTime<Utc>) -> Self {
        Self {
            dialed: false,
            attempt: Some(attempt),
            ..Self::to(CallStatus::Canceled, at)
        }
    }

    pub fn of_attempt(mut self, attempt: u32) -> Self {
        self.attempt = Some(attempt);
        self
    }

    pub fn with_reason(mut self, reason: Option<FailureReason>) -> Self {
        self.failure_reason = reason;
        self
    }

    /// The hang-up cause the PBX gave, as it gave it, except cause 0: Q.850 numbers its
    /// causes from 1, and Asterisk sends 0 ("Unknown") when it has none, as for a callee
    /// that was busy (whose outcome the `Dial` status gives). A record shows no cause
    /// then, rather than one that reads as a reason.
    pub fn with_cause(mut self, cause: Option<i64>, cause_txt: Option<String>) -> Self {
        let given = cause.filter(|&c| c != 0);
        self.cause_txt = given.and(cause_txt);
        self.cause = given;
        self
    }

    pub fn with_dialstatus(mut self, dialstatus: Option<String>) -> Self {
        self.dialstatus = dialstatus;
        self
    }

    /// Applies the change if the status rule allows it; returns whether it did. The one
    /// definition of what a transition writes: the in-process store calls it, and the
    /// database stores mirror it in their conditional updates.
    ///
    /// An attempt that ends in an outcome the call's retry policy lists (and that was not
    /// canceled) is kept in `attempts`, and the call goes back to `queued` for the next
    /// attempt: both changes in this one write.
    pub fn apply(&self, call: &mut Call) -> bool {
        let next = Progress {
            attempt: self.attempt.unwrap_or(call.attempt_number),
            status: self.status,
        };
        if next.attempt != call.attempt_number || !call.progress().can_move_to(next) {
            return false;
        }
        let previous = call.status;
        call.status = self.status;
        if self.dialed {
            call.dialed_at.get_or_insert(self.at);
        }
        match self.status {
            CallStatus::Pending if previous == CallStatus::Queued => {
                call.queued_until = None;
                call.claimed_at = Some(self.at);
                call.paced = self.paced;
            }
            CallStatus::Ringing => call.ringing_at = Some(self.at),
            CallStatus::Answered => call.answered_at = Some(self.at),
            s if s.is_final() => {
                call.ended_at = Some(self.at);
                call.failure_reason.clone_from(&self.failure_reason);
                call.cause = self.cause;
                call.cause_txt.clone_from(&self.cause_txt);
            }
            _ => {}
        }
        if self.dialstatus.is_some() {
            call.dialstatus.clone_from(&self.dialstatus);
        }
        if self.status.is_final() {
            call.queued_until = None;
        }
        call.note_event(EventType::Status, Some(previous), None, self.at);
        if let Some(retry) = call.retry.clone()
            && call.cancel_requested_at.is_none()
            && retry.retries(call.attempt_number, self.status)
        {
            let ended = call.status;
            call.requeue(&retry, self.at);
            call.note_event(EventType::Status, Some(ended), None, self.at);
        }
        true
    }
}

/// Facts about a call that do not move its status.
#[derive(Clone, Debug, PartialEq)]
pub enum Annotation {
    /// The last non-empty `Dial` dialstatus; kept while the call is active.
    DialStatus(String),
    /// A DTMF digit the callee pressed; appended while the call is active.
    Dtmf(char),
    /// The client asked to cancel; recorded once, while the call is active.
    CancelRequested(DateTime<Utc>),
    /// The originate got no answer; recorded once, while the call is active.
    OriginateUnconfirmed(DateTime<Utc>),
    /// A queued call whose calling window is closed when its turn comes waits until the
    /// window opens again; recorded only while the call is queued, and only later.
    DeferUntil(DateTime<Utc>),
    /// A media item failed to play; recorded once per item, even after the call ended
    /// (the failure may be reported just before the end), at most
    /// [`Annotation::MAX_MEDIA_FAILED`] items.
    MediaFailed(String),
}

impl Annotation {
    pub const MAX_DTMF: usize = 64;
    pub const MAX_MEDIA_FAILED: usize = 20;

    /// Applies the annotation if it still means something; returns whether it did.
    pub fn apply(&self, call: &mut Call) -> bool {
        let active = call.is_active();
        match self {
            Annotation::DialStatus(status) if active => call.dialstatus = Some(status.clone()),
            Annotation::Dtmf(digit) if active && call.dtmf.len() < Self::MAX_DTMF => {
                call.dtmf.push(*digit);
                call.note_event(EventType::Dtmf, None, Some(*digit), super::now());
            }
            Annotation::CancelRequested(at) if active && call.cancel_requested_at.is_none() => {
                call.cancel_requested_at = Some(*at);
            }
            Annotation::DeferUntil(at)
                if call.status == CallStatus::Queued
                    && call.queued_until.is_none_or(|due| due < *at) =>
            {
                call.queued_until = Some(*at);
            }
            Annotation::OriginateUnconfirmed(at)
                if active && call.originate_unconfirmed_at.is_none() =>
            {
                call.originate_unconfirmed_at = Some(*at);
            }
            Annotation::MediaFailed(media)
                if call.media_failed.len() < Self::MAX_MEDIA_FAILED
                    && !call.media_failed.contains(media) =>
            {
                call.media_failed.push(media.clone());
                call.media_failed.sort();
            }
            _ => return false,
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requests_fingerprint_changes_with_any_field_and_only_then() {
        let base = CallRequest {
            phone_number: "+15550020001".into(),
            variables: Some(BTreeMap::from([("a".into(), "1".into())])),
            ..CallRequest::default()
        };
        assert_eq!(base.fingerprint(), base.clone().fingerprint());
        let changed = [
            CallRequest {
                phone_number: "+15550020002".into(),
                ..base.clone()
            },
            CallRequest {
                variables: Some(BTreeMap::from([("a".into(), "2".into())])),
                ..base.clone()
            },
            CallRequest {
                variables: None,
                ..base.clone()
            },
            CallRequest {
                timeout: Some(20),
                ..base.clone()
            },
            CallRequest {
                media: Some(vec!["sound:a".into(), "sound:b".into()]),
                ..base.clone()
            },
            CallRequest {
                media: Some(vec!["sound:b".into(), "sound:a".into()]),
                ..base.clone()
            },
        ];
        let mut seen = std::collections::HashSet::from([base.fingerprint()]);
        for request in &changed {
            assert!(seen.insert(request.fingerprint()), "{request:?}");
        }
    }

    fn policy() -> CallPolicy {
        CallPolicy::default()
    }

    fn pending() -> Call {
        CallRequest {
            phone_number: "+15550010001".into(),
            ..CallRequest::default()
        }
        .validate(&policy(), "alice", Uuid::nil(), Utc::now())
        .expect("valid request")
    }

    #[test]
    fn a_valid_request_becomes_a_pending_call_with_defaults() {
        let call = pending();
        assert_eq!(call.status, CallStatus::Pending);
        assert_eq!(call.channel, "PJSIP/+15550010001@trunk");
        assert_eq!(call.context.as_str(), "outbound-ivr");
        assert_eq!((call.extension.as_str(), call.priority), ("s", 1));
        assert_eq!(call.timeout_ms, 30_000);
        assert!(call.is_active() && !call.is_completed());
    }

    #[test]
    fn playback_without_media_is_rejected() {
        let request = CallRequest {
            phone_number: "+15550010001".into(),
            mode: Some("playback".into()),
            ..CallRequest::default()
        };
        let err = request
            .validate(&policy(), "alice", Uuid::nil(), Utc::now())
            .expect_err("no media");
        assert_eq!(err.field, "media");
    }

    #[test]
    fn transitions_fill_the_matching_timestamps_and_duration() {
        let mut call = pending();
        let t0 = Utc::now();
        let later = |ms| t0 + chrono::Duration::milliseconds(ms);
        assert!(Transition::to(CallStatus::Ringing, later(10)).apply(&mut call));
        assert_eq!(
            call.dialed_at,
            Some(later(10)),
            "dialing skipped: dialed_at still set"
        );
        assert!(Transition::to(CallStatus::Answered, later(1000)).apply(&mut call));
        assert!(!Transition::to(CallStatus::Dialing, later(1001)).apply(&mut call));
        assert!(Transition::to(CallStatus::Completed, later(3500)).apply(&mut call));
        assert_eq!(call.duration_seconds(), Some(2.5));
        assert!(!Transition::to(CallStatus::Failed, later(4000)).apply(&mut call));
        assert_eq!(call.status, CallStatus::Completed);
    }

    #[test]
    fn a_refused_originate_leaves_dialed_at_empty() {
        let mut call = pending();
        assert!(Transition::not_dialed(FailureReason::PbxUnreachable, Utc::now()).apply(&mut call));
        assert_eq!(call.status, CallStatus::Failed);
        assert_eq!(call.dialed_at, None);
        assert_eq!(call.failure_reason, Some(FailureReason::PbxUnreachable));
    }

    #[test]
    fn annotations_do_not_touch_finished_calls() {
        let mut call = pending();
        assert!(Annotation::Dtmf('1').apply(&mut call));
        assert!(Annotation::CancelRequested(Utc::now()).apply(&mut call));
        assert!(!Annotation::CancelRequested(Utc::now()).apply(&mut call));
        assert!(Transition::to(CallStatus::Canceled, Utc::now()).apply(&mut call));
        assert!(!Annotation::Dtmf('2').apply(&mut call));
        assert_eq!(call.dtmf, "1");
    }
}
