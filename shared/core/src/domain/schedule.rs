//! When a call may be dialed: its retry policy, its `send_at`, and its calling window.
//! Plain time arithmetic over IANA zones; nothing here reads a clock, so every rule is
//! tested with the times it is given (across DST changes too).

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Timelike, Utc};

use super::status::CallStatus;
use super::time_zone::TimeZone;
use super::validation::ValidationError;

/// How a call is tried again when an attempt ends in one of the listed outcomes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The outcomes that bring another attempt: `busy`, `no_answer`, `failed`.
    pub on: BTreeSet<RetryOutcome>,
    /// From an attempt's end to the next attempt's earliest dial.
    pub delay_ms: u64,
}

/// An attempt's end that a retry may follow. A call that was answered (`completed`) or
/// canceled is never tried again.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RetryOutcome {
    Busy,
    NoAnswer,
    Failed,
}

/// The request's `retry` object, before validation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryRequest {
    pub max_attempts: Option<i64>,
    pub on: Option<Vec<String>>,
    pub delay_ms: Option<i64>,
}

impl RetryPolicy {
    pub const MAX_ATTEMPTS: std::ops::RangeInclusive<i64> = 1..=5;
    pub const DELAY_MS: std::ops::RangeInclusive<i64> = 1_000..=86_400_000;

    /// `max_attempts` is required; `on` defaults to every retryable outcome and
    /// `delay_ms` to a minute.
    pub fn parse(raw: &RetryRequest) -> Result<Self, ValidationError> {
        let max_attempts = raw
            .max_attempts
            .filter(|n| Self::MAX_ATTEMPTS.contains(n))
            .ok_or_else(|| {
                ValidationError::new("retry.max_attempts", "must be an integer from 1 to 5")
            })?;
        let on = match &raw.on {
            None => [
                RetryOutcome::Busy,
                RetryOutcome::NoAnswer,
                RetryOutcome::Failed,
            ]
            .into_iter()
            .collect(),
            Some(names) if names.is_empty() => {
                return Err(ValidationError::new(
                    "retry.on",
                    "must list at least one of busy, no_answer, failed",
                ));
            }
            Some(names) => names
                .iter()
                .map(|name| RetryOutcome::parse(name))
                .collect::<Result<_, _>>()?,
        };
        let delay_ms = raw.delay_ms.unwrap_or(60_000);
        if !Self::DELAY_MS.contains(&delay_ms) {
            return Err(ValidationError::new(
                "retry.delay_ms",
                "must be an integer from 1000 to 86400000 (milliseconds)",
            ));
        }
        Ok(Self {
            max_attempts: max_attempts as u32,
            on,
            delay_ms: delay_ms as u64,
        })
    }

    /// Whether an attempt numbered `attempt` that ended `status` is tried again.
    pub fn retries(&self, attempt: u32, status: CallStatus) -> bool {
        attempt < self.max_attempts
            && RetryOutcome::of(status).is_some_and(|outcome| self.on.contains(&outcome))
    }

    pub fn delay(&self) -> Duration {
        Duration::milliseconds(i64::try_from(self.delay_ms).unwrap_or(i64::MAX))
    }
}

impl RetryOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RetryOutcome::Busy => "busy",
            RetryOutcome::NoAnswer => "no_answer",
            RetryOutcome::Failed => "failed",
        }
    }

    pub fn of(status: CallStatus) -> Option<Self> {
        match status {
            CallStatus::Busy => Some(RetryOutcome::Busy),
            CallStatus::NoAnswer => Some(RetryOutcome::NoAnswer),
            CallStatus::Failed => Some(RetryOutcome::Failed),
            _ => None,
        }
    }

    fn parse(name: &str) -> Result<Self, ValidationError> {
        [
            RetryOutcome::Busy,
            RetryOutcome::NoAnswer,
            RetryOutcome::Failed,
        ]
        .into_iter()
        .find(|o| o.as_str() == name)
        .ok_or_else(|| {
            ValidationError::new("retry.on", "must list only busy, no_answer and failed")
        })
    }
}

/// How far ahead `send_at` may lie.
pub const MAX_SEND_AHEAD: Duration = Duration::days(30);

/// `send_at`: an RFC 3339 time, at most [`MAX_SEND_AHEAD`] after `now`. A time already
/// past means "now". A leap second (`…:60`, which RFC 3339 allows) is read as the
/// instant it ends at, the next minute's `:00`, as POSIX clocks count it: the record and
/// every answer then hold a time every client can parse.
pub fn send_at(raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ValidationError> {
    let at = DateTime::parse_from_rfc3339(raw)
        .map_err(|_| {
            ValidationError::new(
                "send_at",
                "must be an RFC 3339 time with its offset, e.g. 2026-12-01T09:30:00Z",
            )
        })?
        .with_timezone(&Utc);
    let at = if at.nanosecond() >= 1_000_000_000 {
        at.with_nanosecond(0).unwrap_or(at) + Duration::seconds(1)
    } else {
        at
    };
    if at > now + MAX_SEND_AHEAD {
        return Err(ValidationError::new(
            "send_at",
            "must be at most 30 days ahead",
        ));
    }
    Ok(at)
}

/// The hours a call may be dialed in, in the callee's zone: from `start` (inclusive) to
/// `end` (exclusive), every day. An `end` before `start` spans midnight (`22:00`–`06:00`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallingWindow {
    pub start: NaiveTime,
    pub end: NaiveTime,
    pub time_zone: TimeZone,
}

/// The request's `window` object, before validation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WindowRequest {
    pub start: Option<String>,
    pub end: Option<String>,
    pub time_zone: Option<String>,
}

impl CallingWindow {
    pub fn parse(raw: &WindowRequest) -> Result<Self, ValidationError> {
        let start = time_of_day("window.start", raw.start.as_deref())?;
        let end = time_of_day("window.end", raw.end.as_deref())?;
        if start == end {
            return Err(ValidationError::new(
                "window.end",
                "must differ from window.start",
            ));
        }
        let zone = raw.time_zone.as_deref().unwrap_or_default();
        let time_zone = TimeZone::parse(zone).ok_or_else(|| {
            ValidationError::new(
                "window.time_zone",
                "must be an IANA time zone name, e.g. America/New_York",
            )
        })?;
        Ok(Self {
            start,
            end,
            time_zone,
        })
    }

    /// `at` itself when the window is open then, else the moment it next opens.
    pub fn next_open(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        let today = self.time_zone.local(at).date();
        // The window that opened yesterday may still be open (one spanning midnight);
        // a week ahead always holds an opening, whatever the zone's changes.
        (-1..=7)
            .filter_map(|days| today.checked_add_signed(Duration::days(days)))
            .filter_map(|day| self.opening_on(day))
            .find_map(|(opens, closes)| {
                if at < opens {
                    Some(opens)
                } else if at < closes {
                    Some(at)
                } else {
                    None
                }
            })
            .unwrap_or(at)
    }

    pub fn is_open(&self, at: DateTime<Utc>) -> bool {
        self.next_open(at) == at
    }

    /// The instants the window opens and closes on local `day`. A local time that a DST
    /// change skips opens at the first instant after the gap; one that it repeats, at
    /// its first occurrence.
    fn opening_on(&self, day: NaiveDate) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let opens = self.instant(day, self.start)?;
        let end_day = if self.end > self.start {
            day
        } else {
            day.succ_opt()?
        };
        let closes = self.instant(end_day, self.end)?;
        (closes > opens).then_some((opens, closes))
    }

    fn instant(&self, day: NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
        let local = day.and_time(time);
        match self.time_zone.from_local(local) {
            chrono::LocalResult::Single(t) => Some(t),
            chrono::LocalResult::Ambiguous(first, _) => Some(first),
            chrono::LocalResult::None => {
                // In a gap: step forward a minute at a time to its end (gaps are at most
                // a few hours, and start on a minute boundary everywhere).
                (1..=24 * 60).find_map(|minutes| {
                    self.time_zone
                        .from_local(local + Duration::minutes(minutes))
                        .earliest()
                })
            }
        }
    }
}

impl CallingWindow {
    /// `start` as a client wrote it: `HH:MM`.
    pub fn start_text(&self) -> String {
        self.start.format("%H:%M").to_string()
    }

    /// `end` as a client wrote it: `HH:MM`.
    pub fn end_text(&self) -> String {
        self.end.format("%H:%M").to_string()
    }
}

impl serde::Serialize for CallingWindow {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("CallingWindow", 3)?;
        s.serialize_field("start", &self.start_text())?;
        s.serialize_field("end", &self.end_text())?;
        s.serialize_field("time_zone", self.time_zone.name())?;
        s.end()
    }
}

impl<'de> serde::Deserialize<'de> for CallingWindow {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        struct Raw {
            start: String,
            end: String,
            time_zone: String,
        }
        let raw = Raw::deserialize(deserializer)?;
        CallingWindow::parse(&WindowRequest {
            start: Some(raw.start),
            end: Some(raw.end),
            time_zone: Some(raw.time_zone),
        })
        .map_err(serde::de::Error::custom)
    }
}

/// `HH:MM`, 24-hour, two digits each.
fn time_of_day(field: &'static str, raw: Option<&str>) -> Result<NaiveTime, ValidationError> {
    let refused = || ValidationError::new(field, "must be a time of day as HH:MM (00:00 to 23:59)");
    let raw = raw.ok_or_else(refused)?;
    let bytes = raw.as_bytes();
    if bytes.len() != 5 || bytes[2] != b':' {
        return Err(refused());
    }
    let number = |part: &[u8]| -> Option<u32> {
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let (hours, minutes) = (number(&bytes[..2]), number(&bytes[3..]));
    match (hours, minutes) {
        (Some(h), Some(m)) => NaiveTime::from_hms_opt(h, m, 0).ok_or_else(refused),
        _ => Err(refused()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("an RFC 3339 time")
            .with_timezone(&Utc)
    }

    fn window(start: &str, end: &str, zone: &str) -> CallingWindow {
        CallingWindow::parse(&WindowRequest {
            start: Some(start.into()),
            end: Some(end.into()),
            time_zone: Some(zone.into()),
        })
        .expect("a valid window")
    }

    #[test]
    fn a_call_inside_its_window_is_dialed_at_once() {
        let w = window("09:00", "20:00", "America/New_York");
        let at = utc("2026-12-01T15:00:00Z"); // 10:00 in New York
        assert_eq!(w.next_open(at), at);
        assert!(w.is_open(at));
    }

    #[test]
    fn a_call_after_hours_waits_for_the_next_morning() {
        let w = window("09:00", "20:00", "America/New_York");
        // 21:30 on 1 December in New York (EST, UTC-5).
        let at = utc("2026-12-02T02:30:00Z");
        assert_eq!(w.next_open(at), utc("2026-12-02T14:00:00Z"));
        // Before opening the same day.
        assert_eq!(
            w.next_open(utc("2026-12-01T12:00:00Z")),
            utc("2026-12-01T14:00:00Z")
        );
        // The end itself is outside.
        assert!(!w.is_open(utc("2026-12-02T01:00:00Z")));
    }

    #[test]
    fn the_window_follows_the_zone_across_the_spring_dst_change() {
        let w = window("09:00", "20:00", "America/New_York");
        // Saturday 7 March 2026, 21:00 EST; clocks go forward on Sunday 8 March at 02:00.
        let at = utc("2026-03-08T02:00:00Z");
        // Sunday 09:00 is EDT (UTC-4): 13:00 UTC, not 14:00.
        assert_eq!(w.next_open(at), utc("2026-03-08T13:00:00Z"));
    }

    #[test]
    fn the_window_follows_the_zone_across_the_autumn_dst_change() {
        let w = window("09:00", "20:00", "America/New_York");
        // Saturday 31 October 2026, 22:00 EDT; clocks go back on 1 November at 02:00.
        let at = utc("2026-11-01T02:00:00Z");
        // Sunday 09:00 is EST (UTC-5).
        assert_eq!(w.next_open(at), utc("2026-11-01T14:00:00Z"));
    }

    #[test]
    fn an_opening_time_skipped_by_dst_opens_right_after_the_gap() {
        // 02:30 does not exist on 8 March 2026 in New York: the window opens at 03:00 EDT.
        let w = window("02:30", "05:00", "America/New_York");
        let at = utc("2026-03-08T06:00:00Z"); // 01:00 EST
        assert_eq!(w.next_open(at), utc("2026-03-08T07:00:00Z"));
    }

    #[test]
    fn a_repeated_opening_time_opens_at_its_first_occurrence() {
        // 01:30 happens twice on 1 November 2026 in New York; the first is EDT (UTC-4).
        let w = window("01:30", "05:00", "America/New_York");
        let at = utc("2026-11-01T04:00:00Z"); // 00:00 EDT
        assert_eq!(w.next_open(at), utc("2026-11-01T05:30:00Z"));
    }

    #[test]
    fn a_window_spanning_midnight_is_open_on_both_sides_of_it() {
        let w = window("22:00", "06:00", "Europe/Paris");
        assert!(w.is_open(utc("2026-12-01T22:30:00Z"))); // 23:30 in Paris
        assert!(w.is_open(utc("2026-12-02T04:00:00Z"))); // 05:00
        assert_eq!(
            w.next_open(utc("2026-12-02T06:00:00Z")), // 07:00
            utc("2026-12-02T21:00:00Z")
        );
    }

    #[test]
    fn bad_windows_are_refused_with_their_field() {
        let bad = |start: &str, end: &str, zone: &str| {
            CallingWindow::parse(&WindowRequest {
                start: Some(start.into()),
                end: Some(end.into()),
                time_zone: Some(zone.into()),
            })
            .expect_err("refused")
            .field
        };
        assert_eq!(bad("9:00", "20:00", "UTC"), "window.start");
        assert_eq!(bad("24:00", "20:00", "UTC"), "window.start");
        assert_eq!(bad("09:00", "20:0x", "UTC"), "window.end");
        assert_eq!(bad("09:00", "09:00", "UTC"), "window.end");
        assert_eq!(bad("09:00", "20:00", "Mars/Olympus"), "window.time_zone");
        assert_eq!(bad("09:00", "20:00", "EST5EDT;rm -rf"), "window.time_zone");
    }

    #[test]
    fn windows_round_trip_through_serde() {
        let w = window("08:30", "21:15", "Asia/Kolkata");
        let text = serde_json::to_string(&w).expect("serialised");
        assert_eq!(
            text,
            r#"{"start":"08:30","end":"21:15","time_zone":"Asia/Kolkata"}"#
        );
        assert_eq!(
            serde_json::from_str::<CallingWindow>(&text).expect("read back"),
            w
        );
    }

    #[test]
    fn a_leap_second_is_read_as_the_next_minutes_first_instant() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        for (raw, read) in [
            ("2026-12-05T23:59:60Z", "2026-12-06T00:00:00.000Z"),
            ("2026-12-05T23:59:60.500Z", "2026-12-06T00:00:00.000Z"),
            ("2026-12-05T10:29:60+02:00", "2026-12-05T08:30:00.000Z"),
        ] {
            let at = send_at(raw, now).expect(raw);
            assert_eq!(
                at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                read,
                "{raw}"
            );
            assert!(
                at.nanosecond() < 1_000_000_000,
                "{raw}: no leap second kept"
            );
        }
    }

    #[test]
    fn send_at_is_at_most_thirty_days_ahead() {
        let now = utc("2026-12-01T00:00:00Z");
        assert_eq!(
            send_at("2026-12-31T00:00:00Z", now).expect("30 days ahead"),
            utc("2026-12-31T00:00:00Z")
        );
        assert_eq!(
            send_at("2026-12-01T09:00:00+09:00", now).expect("now"),
            utc("2026-12-01T00:00:00Z")
        );
        assert!(send_at("2026-12-31T00:00:01Z", now).is_err());
        assert!(send_at("2026-12-01 09:00", now).is_err());
        assert!(send_at("tomorrow", now).is_err());
    }

    #[test]
    fn retry_policies_check_their_ranges_and_outcomes() {
        let parse = |max: i64, on: Option<Vec<&str>>, delay: Option<i64>| {
            RetryPolicy::parse(&RetryRequest {
                max_attempts: Some(max),
                on: on.map(|o| o.into_iter().map(String::from).collect()),
                delay_ms: delay,
            })
        };
        let policy = parse(3, Some(vec!["busy"]), Some(1_000)).expect("valid");
        assert!(policy.retries(1, CallStatus::Busy));
        assert!(policy.retries(2, CallStatus::Busy));
        assert!(!policy.retries(3, CallStatus::Busy), "the last attempt");
        assert!(!policy.retries(1, CallStatus::NoAnswer), "not listed");
        assert!(!policy.retries(1, CallStatus::Completed));
        assert!(!policy.retries(1, CallStatus::Canceled));
        assert_eq!(
            parse(0, None, None).expect_err("refused").field,
            "retry.max_attempts"
        );
        assert_eq!(
            parse(6, None, None).expect_err("refused").field,
            "retry.max_attempts"
        );
        assert_eq!(
            parse(2, Some(vec![]), None).expect_err("refused").field,
            "retry.on"
        );
        assert_eq!(
            parse(2, Some(vec!["completed"]), None)
                .expect_err("refused")
                .field,
            "retry.on"
        );
        assert_eq!(
            parse(2, None, Some(999)).expect_err("refused").field,
            "retry.delay_ms"
        );
        assert_eq!(
            parse(2, None, Some(86_400_001)).expect_err("refused").field,
            "retry.delay_ms"
        );
        assert_eq!(parse(2, None, None).expect("valid").on.len(), 3);
    }
}
