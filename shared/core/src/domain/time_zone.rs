//! IANA time zones for calling windows, from each zone's current POSIX TZ rule (the
//! footer of its TZif file, RFC 8536 section 3.3) in the generated table
//! `time_zone_rules.rs` (`scripts/generate-time-zones`).
//!
//! Calls are scheduled at most 30 days ahead, so a zone's history is never needed: its
//! current rule, plus the few periods the generator found where tzdata already knows
//! that rule will not hold (Morocco's and Palestine's Ramadan changes), answers every
//! question the dialer asks. This replaces chrono-tz, whose full history made each
//! binary ~2 MB bigger. Times before the table's tzdata release are not what it is for.

use std::fmt;

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, Utc};

use super::time_zone_rules::{OVERRIDES, ZONES};

/// A period `[start, end)` in UTC seconds, and the offset east of UTC in it.
pub(super) type Period = (i64, i64, i32);

/// A zone from the table: its IANA name and its rule. Cheap to copy.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TimeZone {
    name: &'static str,
    rule: Rule,
    /// The periods, by start, in which the rule is not yet what the zone does.
    overrides: &'static [Period],
}

impl TimeZone {
    /// The zone with exactly this IANA name (links included), as in tzdata: case
    /// matters, and nothing outside the table (no paths, no raw TZ strings) is taken.
    pub fn parse(name: &str) -> Option<TimeZone> {
        let (name, rule) = zones().find(|(n, _)| *n == name)?;
        let overrides = OVERRIDES
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(&[][..], |(_, periods)| periods);
        Some(TimeZone {
            name,
            rule: Rule::parse(rule)?,
            overrides,
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Every name the table holds (links included), sorted: the closed set that
    /// [`TimeZone::parse`] takes, for the OpenAPI document to list.
    pub fn names() -> impl Iterator<Item = &'static str> {
        zones().map(|(name, _)| name)
    }

    /// Seconds east of UTC at the instant `utc`.
    pub fn offset_at(&self, utc: DateTime<Utc>) -> i32 {
        let at = utc.timestamp();
        let after = self.overrides.partition_point(|&(start, _, _)| start <= at);
        match after.checked_sub(1).map(|i| self.overrides[i]) {
            Some((_, end, offset)) if at < end => offset,
            _ => self.rule.offset_at(at),
        }
    }

    /// The local time at the instant `utc`.
    pub fn local(&self, utc: DateTime<Utc>) -> NaiveDateTime {
        utc.naive_utc() + Duration::seconds(self.offset_at(utc).into())
    }

    /// The instants a local time names: one, two in a fall-back overlap (earliest
    /// first), none in a spring-forward gap; as chrono's `from_local_datetime`.
    pub fn from_local(&self, local: NaiveDateTime) -> LocalResult<DateTime<Utc>> {
        // The instant lies within 14 hours of `local` read as UTC (offsets run from
        // -12:00 to +14:00), and no zone changes twice within a day, so the offsets a
        // day either side are the only ones it can have.
        let candidates = [local - Duration::days(1), local + Duration::days(1)]
            .map(|near| self.offset_at(near.and_utc()));
        let valid = |offset: i32| {
            let utc = (local - Duration::seconds(offset.into())).and_utc();
            (self.offset_at(utc) == offset).then_some(utc)
        };
        let (before, after) = (valid(candidates[0]), valid(candidates[1]));
        match (before, after) {
            (Some(a), Some(b)) if a != b => LocalResult::Ambiguous(a.min(b), a.max(b)),
            (Some(t), _) | (None, Some(t)) => LocalResult::Single(t),
            (None, None) => LocalResult::None,
        }
    }
}

/// The table's (name, rule) pairs. A scan of ~600 short lines, once per window read,
/// costs microseconds; an index for binary search would cost more bytes than it saves.
fn zones() -> impl Iterator<Item = (&'static str, &'static str)> {
    ZONES.lines().filter_map(|line| line.split_once(' '))
}

impl fmt::Debug for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// A POSIX TZ rule: `std offset [dst [offset] ,start[/time],end[/time]]`. Offsets are
/// kept east of UTC (POSIX writes them west); abbreviations are checked, not kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rule {
    std: i32,
    dst: Option<Dst>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Dst {
    offset: i32,
    start: Change,
    end: Change,
}

/// A change's date and its time of day in seconds, local time as it was before the
/// change; RFC 8536 lets it run from -167 to 167 hours, to reach neighbouring days.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Change {
    day: Day,
    time: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Day {
    /// `Jn`: day 1 to 365, 29 February never counted.
    Julian(u16),
    /// `n`: day 0 to 365, 29 February counted.
    Ordinal(u16),
    /// `Mm.w.d`: weekday `d` (0 is Sunday) of week `w` (5 is the last) of month `m`.
    Month { month: u8, week: u8, weekday: u8 },
}

impl Rule {
    fn parse(text: &str) -> Option<Rule> {
        let mut c = Cursor(text.as_bytes());
        c.abbreviation()?;
        let std = -c.offset()?;
        if c.0.is_empty() {
            return Some(Rule { std, dst: None });
        }
        c.abbreviation()?;
        let offset = if c.0.first() == Some(&b',') {
            std + 3600
        } else {
            -c.offset()?
        };
        // A rule with DST but no dates leaves them to the implementation; no TZif
        // footer is written so, and guessing would be worse than refusing.
        c.expect(b',')?;
        let start = c.change()?;
        c.expect(b',')?;
        let end = c.change()?;
        c.0.is_empty().then_some(Rule {
            std,
            dst: Some(Dst { offset, start, end }),
        })
    }

    fn offset_at(&self, at: i64) -> i32 {
        let Some(dst) = self.dst else {
            return self.std;
        };
        let Some(year) = DateTime::from_timestamp(at + i64::from(self.std), 0).map(|t| t.year())
        else {
            return self.std;
        };
        // The latest change at or before `at` among the neighbouring years' says which
        // side of the rule applies; this holds for southern zones (DST across the new
        // year) and for permanent DST (`0/0,J365/25`), where the end of one year and the
        // start of the next coincide and the start, sorting last, wins.
        (year - 1..=year + 1)
            .flat_map(|y| {
                [
                    dst.end.instant(y, dst.offset).map(|t| (t, false)),
                    dst.start.instant(y, self.std).map(|t| (t, true)),
                ]
            })
            .flatten()
            .filter(|&(t, _)| t <= at)
            .max()
            .map_or(
                self.std,
                |(_, in_dst)| if in_dst { dst.offset } else { self.std },
            )
    }
}

impl Change {
    /// The UTC instant of this change in `year`, given the offset in effect before it.
    fn instant(&self, year: i32, offset_before: i32) -> Option<i64> {
        let jan1 = NaiveDate::from_ymd_opt(year, 1, 1)?;
        let date = match self.day {
            Day::Julian(n) => {
                let leap_day = jan1.leap_year() && n >= 60;
                jan1 + Duration::days(i64::from(n) - 1 + i64::from(leap_day))
            }
            Day::Ordinal(n) => jan1 + Duration::days(n.into()),
            Day::Month {
                month,
                week,
                weekday,
            } => {
                let first = NaiveDate::from_ymd_opt(year, month.into(), 1)?;
                let to_weekday =
                    (7 + u32::from(weekday) - first.weekday().num_days_from_sunday()) % 7;
                let mut day =
                    first + Duration::days(i64::from(to_weekday + 7 * (u32::from(week) - 1)));
                // Week 5 is the last such weekday, which may be the fourth.
                while day.month() != u32::from(month) {
                    day -= Duration::days(7);
                }
                day
            }
        };
        let midnight = date.and_hms_opt(0, 0, 0)?.and_utc().timestamp();
        Some(midnight + i64::from(self.time) - i64::from(offset_before))
    }
}

/// What is left of a rule being read.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn expect(&mut self, byte: u8) -> Option<()> {
        let (&first, rest) = self.0.split_first()?;
        (first == byte).then(|| self.0 = rest)
    }

    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> &[u8] {
        let n = self.0.iter().take_while(|&&b| keep(b)).count();
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        taken
    }

    /// `EST`, or quoted `<+0530>`: three or more characters, as POSIX requires.
    fn abbreviation(&mut self) -> Option<()> {
        let quoted = self.expect(b'<').is_some();
        let name = if quoted {
            self.take_while(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-')
        } else {
            self.take_while(|b| b.is_ascii_alphabetic())
        };
        let long_enough = name.len() >= 3;
        if quoted {
            self.expect(b'>')?;
        }
        long_enough.then_some(())
    }

    fn number(&mut self, max: u32) -> Option<u32> {
        let digits = self.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() || digits.len() > 3 {
            return None;
        }
        let n = digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0'));
        (n <= max).then_some(n)
    }

    /// `[+-]hh[:mm[:ss]]` in seconds, hours at most `max_hours`.
    fn hms(&mut self, max_hours: u32) -> Option<i32> {
        let negative = self.expect(b'-').is_some();
        if !negative {
            self.expect(b'+');
        }
        let mut seconds = self.number(max_hours)? * 3600;
        for unit in [60, 1] {
            if self.expect(b':').is_none() {
                break;
            }
            seconds += self.number(59)? * unit;
        }
        let seconds = i32::try_from(seconds).ok()?;
        Some(if negative { -seconds } else { seconds })
    }

    /// An offset as POSIX writes it: hours west of UTC, 0 to 24.
    fn offset(&mut self) -> Option<i32> {
        self.hms(24)
    }

    /// `Jn`, `n` or `Mm.w.d`, then an optional `/time` (02:00 when absent).
    fn change(&mut self) -> Option<Change> {
        let day = if self.expect(b'J').is_some() {
            Day::Julian(u16::try_from(self.number(365)?).ok().filter(|&n| n >= 1)?)
        } else if self.expect(b'M').is_some() {
            let month = self.number(12).filter(|&m| m >= 1)?;
            self.expect(b'.')?;
            let week = self.number(5).filter(|&w| w >= 1)?;
            self.expect(b'.')?;
            let weekday = self.number(6)?;
            Day::Month {
                month: month as u8,
                week: week as u8,
                weekday: weekday as u8,
            }
        } else {
            Day::Ordinal(u16::try_from(self.number(365)?).ok()?)
        };
        let time = if self.expect(b'/').is_some() {
            self.hms(167)?
        } else {
            7200
        };
        Some(Change { day, time })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveTime, Offset, TimeZone as _};

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("an RFC 3339 time")
            .with_timezone(&Utc)
    }

    fn local(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").expect("a local time")
    }

    fn zone(name: &str) -> TimeZone {
        TimeZone::parse(name).expect("a zone in the table")
    }

    fn chrono_tz(name: &str) -> chrono_tz::Tz {
        name.parse().expect("a zone chrono-tz knows")
    }

    /// The period the checks against chrono-tz cover: 400 days from 1 December 2026,
    /// beyond the 30 days ahead a call may be scheduled, from any day this year.
    fn hours_checked() -> impl Iterator<Item = DateTime<Utc>> {
        let from = utc("2026-12-01T00:00:00Z");
        (0..400 * 24).map(move |h| from + Duration::hours(h))
    }

    #[test]
    fn the_table_is_sorted_unique_and_every_rule_in_it_parses() {
        let table: Vec<_> = zones().collect();
        assert_eq!(table.len(), ZONES.lines().count(), "one space a line");
        assert!(table.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(OVERRIDES.windows(2).all(|w| w[0].0 < w[1].0));
        for (name, rule) in zones() {
            assert!(Rule::parse(rule).is_some(), "{name}: {rule}");
            assert_eq!(zone(name).name(), name);
        }
        for (name, periods) in OVERRIDES {
            assert!(zones().any(|(n, _)| n == *name), "{name}");
            assert!(periods.windows(2).all(|w| w[0].1 <= w[1].0), "{name}");
        }
    }

    #[test]
    fn every_zone_has_chrono_tz_offsets_at_every_hour_of_the_next_400_days() {
        let mut wrong = Vec::new();
        for (name, _) in zones() {
            let (ours, theirs) = (zone(name), chrono_tz(name));
            let first_wrong = hours_checked().find(|at| {
                let expected = theirs.offset_from_utc_datetime(&at.naive_utc()).fix();
                ours.offset_at(*at) != expected.local_minus_utc()
            });
            if let Some(at) = first_wrong {
                wrong.push(format!("{name} at {at}"));
            }
        }
        println!(
            "{} zones x {} hours checked; {} overridden by explicit periods",
            zones().count(),
            hours_checked().count(),
            OVERRIDES.len()
        );
        assert!(wrong.is_empty(), "offsets differ: {wrong:#?}");
    }

    #[test]
    fn every_zone_reads_local_times_around_its_changes_as_chrono_tz_does() {
        let (mut changes, mut times, mut gaps, mut overlaps) = (0, 0, 0, 0);
        for (name, _) in zones() {
            let (ours, theirs) = (zone(name), chrono_tz(name));
            let hours: Vec<_> = hours_checked().collect();
            for pair in hours.windows(2) {
                if ours.offset_at(pair[0]) == ours.offset_at(pair[1]) {
                    continue;
                }
                changes += 1;
                // The day before the change to the day after it, in local time, every
                // quarter hour: the half hours, and the :45 of zones such as Chatham.
                let day = ours.local(pair[0]).date() - Duration::days(1);
                let from = day.and_time(NaiveTime::MIN);
                for quarter in 0..3 * 24 * 4 {
                    let at = from + Duration::minutes(15 * quarter);
                    let expected = theirs
                        .from_local_datetime(&at)
                        .map(|t| t.with_timezone(&Utc));
                    assert_eq!(ours.from_local(at), expected, "{name} at local {at}");
                    times += 1;
                    match expected {
                        LocalResult::None => gaps += 1,
                        LocalResult::Ambiguous(..) => overlaps += 1,
                        LocalResult::Single(_) => {}
                    }
                }
            }
        }
        println!(
            "{changes} changes, {times} local times checked: {gaps} in gaps, {overlaps} repeated"
        );
        assert!(gaps > 100 && overlaps > 100, "the period holds DST changes");
    }

    #[test]
    fn every_name_chrono_tz_knows_that_the_system_has_is_in_the_table() {
        let system = std::path::Path::new("/usr/share/zoneinfo");
        let known: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
        let on_system: Vec<&str> = known
            .iter()
            .copied()
            .filter(|name| system.join(name).is_file())
            .collect();
        let missing: Vec<&str> = on_system
            .iter()
            .copied()
            .filter(|name| TimeZone::parse(name).is_none())
            .collect();
        let not_on_system: Vec<&str> = known
            .iter()
            .copied()
            .filter(|name| !on_system.contains(name))
            .collect();
        let only_ours: Vec<&str> = zones()
            .map(|(name, _)| name)
            .filter(|name| !known.contains(name))
            .collect();
        println!(
            "chrono-tz: {} names, {} on this system; table: {} names; \
             chrono-tz names not on this system: {not_on_system:?}; \
             table names chrono-tz lacks: {only_ours:?}",
            known.len(),
            on_system.len(),
            zones().count()
        );
        assert!(missing.is_empty(), "missing from the table: {missing:?}");
    }

    #[test]
    fn morocco_leaves_its_plus_one_rule_for_ramadan_as_tzdata_predicts() {
        // The footer says +01 all year; tzdata lists the Ramadan months at +00.
        let casablanca = zone("Africa/Casablanca");
        assert_eq!(
            casablanca
                .rule
                .offset_at(utc("2027-02-20T12:00:00Z").timestamp()),
            3600
        );
        assert_eq!(casablanca.offset_at(utc("2027-02-20T12:00:00Z")), 0);
        assert_eq!(casablanca.offset_at(utc("2027-04-01T12:00:00Z")), 3600);
        // 7 February 2027 at 03:00 local goes back to 02:00: 02:30 happens twice.
        assert_eq!(
            casablanca.from_local(local("2027-02-07 02:30")),
            LocalResult::Ambiguous(utc("2027-02-07T01:30:00Z"), utc("2027-02-07T02:30:00Z"))
        );
    }

    #[test]
    fn links_share_the_rule_of_their_zone_and_names_are_exact() {
        assert_eq!(zone("US/Eastern").rule, zone("America/New_York").rule);
        assert_eq!(zone("Asia/Calcutta").rule, zone("Asia/Kolkata").rule);
        assert_eq!(zone("UTC").offset_at(utc("2026-12-01T00:00:00Z")), 0);
        for bad in [
            "Mars/Olympus",
            "../etc/passwd",
            "/usr/share/zoneinfo/UTC",
            "EST5EDT;rm",
            "EST5EDT,M3.2.0,M11.1.0",
            "",
            "america/new_york",
            "America/New_York ",
            "posixrules",
            "localtime",
            "Factory",
            "posix/Europe/Paris",
            "right/UTC",
        ] {
            assert_eq!(TimeZone::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rules_of_every_form_parse() {
        let month = |month, week, weekday, time| Change {
            day: Day::Month {
                month,
                week,
                weekday,
            },
            time,
        };
        let fixed = |std| Some(Rule { std, dst: None });
        let dst = |std, offset, start, end| {
            Some(Rule {
                std,
                dst: Some(Dst { offset, start, end }),
            })
        };
        assert_eq!(
            Rule::parse("EST5EDT,M3.2.0,M11.1.0"),
            dst(
                -5 * 3600,
                -4 * 3600,
                month(3, 2, 0, 7200),
                month(11, 1, 0, 7200)
            )
        );
        assert_eq!(Rule::parse("<+0530>-5:30"), fixed(5 * 3600 + 1800));
        assert_eq!(Rule::parse("<-03>3"), fixed(-3 * 3600));
        assert_eq!(Rule::parse("<-0044>+0:44:30"), fixed(-2670));
        assert_eq!(
            Rule::parse("CET-1CEST,M3.5.0,M10.5.0/3"),
            dst(3600, 7200, month(3, 5, 0, 7200), month(10, 5, 0, 3 * 3600))
        );
        // Negative and past-midnight times (Nuuk, Gaza), and DST behind standard time
        // (Dublin's summer is its standard time).
        assert_eq!(
            Rule::parse("<-02>2<-01>,M3.5.0/-1,M10.5.0/0"),
            dst(-7200, -3600, month(3, 5, 0, -3600), month(10, 5, 0, 0))
        );
        assert_eq!(
            Rule::parse("EET-2EEST,M3.4.4/50,M10.4.4/50"),
            dst(
                7200,
                3 * 3600,
                month(3, 4, 4, 50 * 3600),
                month(10, 4, 4, 50 * 3600)
            )
        );
        assert_eq!(
            Rule::parse("IST-1GMT0,M10.5.0,M3.5.0/1"),
            dst(3600, 0, month(10, 5, 0, 7200), month(3, 5, 0, 3600))
        );
        // Julian and zero-based days, with the hour bounds RFC 8536 allows.
        assert_eq!(
            Rule::parse("<+00>0<+01>,J60/-167,300/167:59:59"),
            dst(
                0,
                3600,
                Change {
                    day: Day::Julian(60),
                    time: -167 * 3600
                },
                Change {
                    day: Day::Ordinal(300),
                    time: 167 * 3600 + 59 * 60 + 59
                }
            )
        );
        for bad in [
            "",
            "EST",
            "ES5",
            "EST5EDT",
            "EST25",
            "EST5;rm",
            "<+0530-5:30",
            "<+05 30>-5:30",
            "EST5EDT,M3.2.0",
            "EST5EDT,M13.2.0,M11.1.0",
            "EST5EDT,M3.6.0,M11.1.0",
            "EST5EDT,M3.2.7,M11.1.0",
            "EST5EDT,M3.2.0/168,M11.1.0",
            "EST5EDT,J0,J365",
            "EST5EDT,366,J365",
            "EST5:60",
            "EST5EDT,M3.2.0,M11.1.0,",
        ] {
            assert_eq!(Rule::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn julian_days_skip_the_leap_day_and_zero_based_days_count_it() {
        let midnight = |date: &str| utc(&format!("{date}T00:00:00Z")).timestamp();
        let on = |day, year| Change { day, time: 0 }.instant(year, 0);
        assert_eq!(on(Day::Julian(60), 2028), Some(midnight("2028-03-01")));
        assert_eq!(on(Day::Julian(60), 2027), Some(midnight("2027-03-01")));
        assert_eq!(on(Day::Julian(365), 2028), Some(midnight("2028-12-31")));
        assert_eq!(on(Day::Ordinal(59), 2028), Some(midnight("2028-02-29")));
        assert_eq!(on(Day::Ordinal(59), 2027), Some(midnight("2027-03-01")));
        assert_eq!(on(Day::Ordinal(0), 2027), Some(midnight("2027-01-01")));
    }

    #[test]
    fn a_rule_read_through_the_year_end_stays_in_dst_all_year() {
        // RFC 8536's permanent DST: from 1 January 00:00 to 31 December 25:00.
        let rule = Rule::parse("EST5EDT,0/0,J365/25").expect("RFC 8536's example");
        for at in [
            "2026-12-31T23:00:00Z",
            "2027-01-01T04:00:00Z",
            "2027-01-01T05:00:00Z",
            "2027-07-01T00:00:00Z",
        ] {
            assert_eq!(rule.offset_at(utc(at).timestamp()), -4 * 3600, "{at}");
        }
    }

    #[test]
    fn southern_zones_are_in_dst_across_the_new_year() {
        let sydney = zone("Australia/Sydney");
        assert_eq!(sydney.offset_at(utc("2027-01-01T00:00:00Z")), 11 * 3600);
        assert_eq!(sydney.offset_at(utc("2027-07-01T00:00:00Z")), 10 * 3600);
        // 3 October 2027 at 02:00 goes to 03:00; 4 April 2027 at 03:00 back to 02:00.
        assert_eq!(
            sydney.from_local(local("2027-10-03 02:30")),
            LocalResult::None
        );
        assert_eq!(
            sydney.from_local(local("2027-04-04 02:30")),
            LocalResult::Ambiguous(utc("2027-04-03T15:30:00Z"), utc("2027-04-03T16:30:00Z"))
        );
    }
}
