//! Status webhooks: where a call's events go, which of them, how each is signed, when a
//! failed delivery is tried again, and which addresses a webhook may never reach.
//!
//! Every event of a call that its webhook asks for is numbered (1, 2, 3 … with no
//! gaps), kept with the call in the same write as the change it reports, and delivered
//! in that order: event n+1 is not sent before n is delivered or given up.

use std::collections::BTreeSet;
use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ValidationError;
use super::call::Call;
use super::status::CallStatus;

/// An absolute `https` (or, where allowed, `http`) URL with a host, at most 2,048
/// characters, with no user name or password in it. The host is kept as the URL parser
/// normalised it, so `http://2130706433/` and `http://0177.0.0.1/` are seen as the
/// address they mean (127.0.0.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CallbackUrl {
    url: String,
    host: CallbackHost,
    port: u16,
    https: bool,
}

/// A callback's host: a name to resolve, or an address given literally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallbackHost {
    Name(String),
    Address(IpAddr),
}

impl CallbackUrl {
    pub const MAX_LEN: usize = 2048;

    /// Parses a URL a client gave; `http` only when `allow_insecure`.
    pub fn parse(raw: &str, allow_insecure: bool) -> Result<Self, ValidationError> {
        let url = Self::from_record(raw)?;
        if !url.https && !allow_insecure {
            return Err(refused("must be an https URL"));
        }
        Ok(url)
    }

    /// A URL read back from a record: its shape is checked again, its scheme was
    /// allowed when it was stored.
    pub fn from_record(raw: &str) -> Result<Self, ValidationError> {
        if raw.len() > Self::MAX_LEN {
            return Err(refused("may be at most 2048 characters"));
        }
        let parsed = super::callback_url::parse(raw).map_err(|why| refused(&why))?;
        Ok(Self {
            url: parsed.url,
            host: parsed.host,
            port: parsed.port,
            https: parsed.https,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.url
    }

    pub fn host(&self) -> &CallbackHost {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_https(&self) -> bool {
        self.https
    }
}

impl TryFrom<String> for CallbackUrl {
    type Error = ValidationError;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::from_record(&raw)
    }
}

impl From<CallbackUrl> for String {
    fn from(url: CallbackUrl) -> Self {
        url.url
    }
}

fn refused(message: &str) -> ValidationError {
    ValidationError::new("status_callback", message)
}

/// The address rules live with the URL parser; see its table.
pub use super::callback_url::forbidden_address;

/// Which events a webhook gets: statuses, and `dtmf` for each digit pressed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFilter {
    statuses: BTreeSet<String>,
    dtmf: bool,
}

impl Default for EventFilter {
    /// Everything.
    fn default() -> Self {
        Self {
            statuses: CallStatus::ALL
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect(),
            dtmf: true,
        }
    }
}

impl EventFilter {
    pub fn parse(names: &[String]) -> Result<Self, ValidationError> {
        let mut filter = Self {
            statuses: BTreeSet::new(),
            dtmf: false,
        };
        for name in names {
            if name == "dtmf" {
                filter.dtmf = true;
            } else if let Ok(status) = name.parse::<CallStatus>() {
                filter.statuses.insert(status.as_str().to_owned());
            } else {
                return Err(ValidationError::new(
                    "status_callback_events",
                    format!("{name:?} is not a status or dtmf"),
                ));
            }
        }
        if names.is_empty() {
            return Err(ValidationError::new(
                "status_callback_events",
                "name at least one status (or dtmf); leave the field out for every event",
            ));
        }
        Ok(filter)
    }

    pub fn wants(&self, kind: EventType, status: CallStatus) -> bool {
        match kind {
            EventType::Dtmf => self.dtmf,
            EventType::Status => self.statuses.contains(status.as_str()),
        }
    }

    /// The names, statuses in life order then `dtmf`.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = CallStatus::ALL
            .iter()
            .filter(|s| self.statuses.contains(s.as_str()))
            .map(|s| s.as_str().to_owned())
            .collect();
        if self.dtmf {
            names.push("dtmf".into());
        }
        names
    }
}

/// A call's webhook: where, and which events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub url: CallbackUrl,
    pub events: EventFilter,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Status,
    Dtmf,
}

/// One event of a call, with the call as it was at that moment and how its delivery
/// is going.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallEvent {
    pub event_id: Uuid,
    pub sequence: u32,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub status: CallStatus,
    pub previous_status: Option<CallStatus>,
    pub at: DateTime<Utc>,
    pub attempt_number: u32,
    /// The digit pressed, for a `dtmf` event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digit: Option<char>,
    /// The call when the event happened (its own events left out).
    pub call: Box<Call>,
    #[serde(default)]
    pub delivery: Delivery,
}

/// How an event's delivery is going.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_response_code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the next attempt is due; `None` once the event is settled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
    /// Given up: retried past the maximum age, or refused by the receiver with a 4xx
    /// that retrying cannot change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_at: Option<DateTime<Utc>>,
}

impl Delivery {
    pub fn is_settled(&self) -> bool {
        self.delivered_at.is_some() || self.dead_at.is_some()
    }
}

/// What one delivery attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// A 2xx.
    Delivered { status: u16 },
    /// A connect error, a timeout, 408, 429 or a 5xx: try again later.
    Retry { status: Option<u16>, error: String },
    /// Any other answer (other 4xx, a redirect, which is not followed): recorded, not
    /// retried.
    Rejected { status: u16 },
}

impl SendOutcome {
    /// How a receiver's status code is taken.
    pub fn from_status(status: u16) -> Self {
        match status {
            200..=299 => SendOutcome::Delivered { status },
            408 | 429 | 500..=599 => SendOutcome::Retry {
                status: Some(status),
                error: format!("the receiver answered {status}"),
            },
            _ => SendOutcome::Rejected { status },
        }
    }
}

/// The wait before attempt `attempts + 1`: 1 s, 2 s, 4 s … doubling up to an hour,
/// each scaled by `jitter` (0.5 to 1.0, from the caller's randomness) so that many
/// failing events do not come back in step.
pub fn retry_delay(attempts: u32, jitter: f64) -> Duration {
    let base = 1_i64 << attempts.saturating_sub(1).min(12);
    let capped = base.min(3600) as f64 * jitter.clamp(0.5, 1.0);
    Duration::milliseconds((capped * 1000.0) as i64)
}

impl CallEvent {
    /// Records one delivery attempt made at `now`. `max_age`: how long after the event
    /// retries go on; `jitter` as for [`retry_delay`].
    pub fn record(
        &mut self,
        outcome: &SendOutcome,
        now: DateTime<Utc>,
        max_age: Duration,
        jitter: f64,
    ) {
        let delivery = &mut self.delivery;
        delivery.attempts += 1;
        match outcome {
            SendOutcome::Delivered { status } => {
                delivery.last_response_code = Some(*status);
                delivery.last_error = None;
                delivery.delivered_at = Some(now);
                delivery.next_attempt_at = None;
            }
            SendOutcome::Rejected { status } => {
                delivery.last_response_code = Some(*status);
                delivery.last_error = Some(format!("the receiver answered {status}; not retried"));
                delivery.dead_at = Some(now);
                delivery.next_attempt_at = None;
            }
            SendOutcome::Retry { status, error } => {
                delivery.last_response_code = *status;
                delivery.last_error = Some(error.clone());
                let next = now + retry_delay(delivery.attempts, jitter);
                if next - self.at > max_age {
                    delivery.dead_at = Some(now);
                    delivery.next_attempt_at = None;
                } else {
                    delivery.next_attempt_at = Some(next);
                }
            }
        }
    }
}

impl Call {
    /// The event due for delivery next: the first one not yet settled, if its time has
    /// come. Later events wait behind it, so that a receiver sees them in order.
    pub fn next_event_due(&self, now: DateTime<Utc>) -> Option<&CallEvent> {
        let head = self.events.iter().find(|e| !e.delivery.is_settled())?;
        head.delivery
            .next_attempt_at
            .is_none_or(|at| at <= now)
            .then_some(head)
    }

    /// Writes the state of event `sequence`'s delivery, unless that event is settled
    /// already: an outcome once recorded cannot be undone by a deliverer that raced.
    /// Returns whether it wrote.
    pub fn record_delivery(&mut self, sequence: u32, delivery: &Delivery) -> bool {
        match self.events.iter_mut().find(|e| e.sequence == sequence) {
            Some(event) if !event.delivery.is_settled() => {
                event.delivery = delivery.clone();
                true
            }
            _ => false,
        }
    }

    /// Whether any event still waits for delivery.
    pub fn has_pending_events(&self) -> bool {
        self.events.iter().any(|e| !e.delivery.is_settled())
    }

    /// Adds the call's first event, `pending`, when its webhook asks for it: written
    /// with the insert, so that a receiver hears of the call from its creation on.
    pub fn record_created_event(&mut self) {
        self.note_event(EventType::Status, None, None, self.created_at);
    }

    /// Adds the event a change just made, if the call's webhook asks for it.
    pub(crate) fn note_event(
        &mut self,
        kind: EventType,
        previous_status: Option<CallStatus>,
        digit: Option<char>,
        at: DateTime<Utc>,
    ) {
        let Some(webhook) = &self.webhook else {
            return;
        };
        if !webhook.events.wants(kind, self.status) {
            return;
        }
        let mut snapshot = self.clone();
        snapshot.events.clear();
        let sequence = u32::try_from(self.events.len() + 1).unwrap_or(u32::MAX);
        self.events.push(CallEvent {
            event_id: Uuid::new_v4(),
            sequence,
            kind,
            status: self.status,
            previous_status,
            at,
            attempt_number: self.attempt_number,
            digit,
            call: Box::new(snapshot),
            delivery: Delivery {
                next_attempt_at: Some(at),
                ..Delivery::default()
            },
        });
    }
}

/// The `Dialer-Signature` header: `t=UNIX_SECONDS,v1=HEX[,v1=HEX]`, one `v1` per secret
/// (the current one first; the one before it too for a day after a rotation), each the
/// hex HMAC-SHA256 of `"{t}.{body}"`.
pub fn signature_header(secrets: &[&str], t: i64, body: &[u8]) -> String {
    let mut header = format!("t={t}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&signature(secret, t, body));
    }
    header
}

/// The hex HMAC-SHA256 of `"{t}.{body}"` under `secret`.
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn private_loopback_link_local_cgnat_multicast_and_metadata_addresses_are_forbidden() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "100.64.0.1",
            "224.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::10.0.0.1",
        ] {
            assert!(forbidden_address(ip(bad)).is_some(), "{bad}");
        }
        for good in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            assert_eq!(forbidden_address(ip(good)), None, "{good}");
        }
    }

    #[test]
    fn decimal_octal_and_hex_ip_forms_are_seen_as_the_address_they_mean() {
        for raw in [
            "https://2130706433/hook",
            "https://0177.0.0.1/hook",
            "https://0x7f.0.0.1/hook",
            "https://127.1/hook",
            "https://[::ffff:7f00:1]/hook",
        ] {
            let url = CallbackUrl::parse(raw, false).expect(raw);
            let CallbackHost::Address(address) = url.host() else {
                panic!("{raw}: a literal address");
            };
            assert!(forbidden_address(*address).is_some(), "{raw} is {address}");
        }
    }

    #[test]
    fn callback_urls_are_absolute_https_without_credentials() {
        assert!(CallbackUrl::parse("https://hooks.example.com/dialer?x=1", false).is_ok());
        for bad in [
            "http://hooks.example.com/",
            "ftp://hooks.example.com/",
            "/relative",
            "https://user:pw@hooks.example.com/",
            "https://hooks.example.com/#frag",
            "not a url",
        ] {
            assert!(CallbackUrl::parse(bad, false).is_err(), "{bad}");
        }
        assert!(CallbackUrl::parse("http://hooks.example.com/", true).is_ok());
        let long = format!("https://example.com/{}", "a".repeat(2100));
        assert!(CallbackUrl::parse(&long, false).is_err());
    }

    #[test]
    fn the_signature_is_hex_hmac_sha256_of_t_dot_body() {
        // The RFC 4231 shape, computed independently: HMAC-SHA256("key", "1.{}").
        let header = signature_header(&["key"], 1, b"{}");
        assert_eq!(header, format!("t=1,v1={}", signature("key", 1, b"{}")));
        assert_eq!(signature("key", 1, b"{}").len(), 64);
        let two = signature_header(&["new", "old"], 5, b"x");
        assert_eq!(two.matches("v1=").count(), 2);
        assert_ne!(signature("new", 5, b"x"), signature("old", 5, b"x"));
    }

    #[test]
    fn retries_double_with_jitter_up_to_an_hour() {
        assert_eq!(retry_delay(1, 1.0), Duration::seconds(1));
        assert_eq!(retry_delay(3, 1.0), Duration::seconds(4));
        assert_eq!(retry_delay(3, 0.5), Duration::seconds(2));
        assert_eq!(retry_delay(30, 1.0), Duration::hours(1));
    }

    #[test]
    fn receiver_answers_are_delivered_retried_or_rejected() {
        assert_eq!(
            SendOutcome::from_status(204),
            SendOutcome::Delivered { status: 204 }
        );
        for retry in [408, 429, 500, 503] {
            assert!(matches!(
                SendOutcome::from_status(retry),
                SendOutcome::Retry { .. }
            ));
        }
        for rejected in [301, 302, 400, 404, 410] {
            assert_eq!(
                SendOutcome::from_status(rejected),
                SendOutcome::Rejected { status: rejected }
            );
        }
    }

    #[test]
    fn filters_name_statuses_and_dtmf() {
        let filter = EventFilter::parse(&["completed".into(), "dtmf".into()]).expect("filter");
        assert!(filter.wants(EventType::Dtmf, CallStatus::Answered));
        assert!(filter.wants(EventType::Status, CallStatus::Completed));
        assert!(!filter.wants(EventType::Status, CallStatus::Ringing));
        assert_eq!(filter.names(), ["completed", "dtmf"]);
        assert!(EventFilter::parse(&["rang".into()]).is_err());
        assert!(EventFilter::parse(&[]).is_err());
    }
}
