//! Cron schedules in an IANA time zone: parsing, validation and next occurrences.
//!
//! Patterns have 5 fields, or 6 with seconds first, or a macro (`@hourly`, `@daily`,
//! `@weekly`, ...). Occurrences are computed by croner in the objective's time zone,
//! so daylight saving time is handled as croner does: in the repeated autumn hour a
//! fixed-time schedule fires once (at the first of the two instants); a fixed time
//! that falls in the missing spring hour fires at the first valid instant after the
//! gap (02:30 in Europe/Prague on the spring change fires at 03:00).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, LazyLock, Mutex};

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;

use crate::ActorError;

/// A parsed schedule. Cloning is shallow.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Arc<Cron>,
    tz: Tz,
}

/// Schedules parsed before, by pattern then time zone. Every firing computes its
/// objective's next occurrence, and parsing the pattern took two thirds of a firing's
/// time in the objectives actor (scheduler-10k's profile, session 7); a pattern is
/// parsed once here and shared. Bounded: past `PARSED_MAX` patterns it starts over.
static PARSED: LazyLock<Mutex<HashMap<String, HashMap<String, Schedule>>>> =
    LazyLock::new(Mutex::default);
const PARSED_MAX: usize = 4096;

impl Schedule {
    /// Parses `pattern` in time zone `timezone`; errors name the field. A pattern
    /// parsed before is answered from [`PARSED`].
    pub fn parse(pattern: &str, timezone: &str) -> Result<Self, ActorError> {
        let mut parsed = PARSED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = parsed.get(pattern).and_then(|by_tz| by_tz.get(timezone)) {
            return Ok(known.clone());
        }
        let schedule = Self::parse_uncached(pattern, timezone)?;
        if parsed.len() >= PARSED_MAX && !parsed.contains_key(pattern) {
            parsed.clear();
        }
        parsed
            .entry(pattern.to_owned())
            .or_default()
            .insert(timezone.to_owned(), schedule.clone());
        Ok(schedule)
    }

    fn parse_uncached(pattern: &str, timezone: &str) -> Result<Self, ActorError> {
        let tz = Tz::from_str(timezone).map_err(|_| {
            ActorError::invalid(
                "automation.timezone",
                format!("{timezone:?} is not an IANA time zone (for example Europe/Prague)"),
            )
        })?;
        if pattern.len() > 256 {
            return Err(ActorError::invalid(
                "automation.schedule",
                "at most 256 characters",
            ));
        }
        let cron = Cron::from_str(pattern.trim()).map_err(|e| {
            ActorError::invalid(
                "automation.schedule",
                format!("{pattern:?} is not a cron pattern: {e}"),
            )
        })?;
        Ok(Self {
            cron: Arc::new(cron),
            tz,
        })
    }

    /// The first occurrence strictly after `after`. croner searches on the local
    /// clock, and inside the repeated autumn hour it can answer an instant that is
    /// earlier in real time; its iterator handles the fold, and occurrences not after
    /// `after` are skipped here, so the answer always moves forward.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // croner keeps the sub-second part of its starting point; occurrences are on
        // whole seconds, so start from the whole second at or before `after`.
        let floor = after.with_nanosecond(0)?;
        if matches!(self.tz, Tz::UTC | Tz::Etc__UTC) {
            // UTC has no fold, so the plain search is exact; the iterator would clone
            // the whole pattern first (most of a firing's allocations, scheduler-10k's
            // profile). Occurrences are whole seconds, so the first after the floor is
            // after `after` too.
            return self
                .cron
                .find_next_occurrence(&floor, false)
                .ok()
                .filter(|t| *t > after);
        }
        let local = floor.with_timezone(&self.tz);
        self.cron
            .iter_after(local)
            .take(10_000)
            .filter_map(|t| t.with_timezone(&Utc).with_nanosecond(0))
            .find(|t| *t > after)
    }

    /// The newest occurrence at or before `at`.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&self.tz);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
            .filter(|t| *t <= at)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn the_repeated_autumn_hour_fires_once() {
        // Europe/Prague leaves summer time on 2026-10-25 at 03:00 CEST -> 02:00 CET,
        // so 02:30 local happens twice (00:30 and 01:30 UTC).
        let s = Schedule::parse("30 2 * * *", "Europe/Prague").unwrap();
        let first = s.next_after(utc(2026, 10, 24, 23, 0)).unwrap();
        assert_eq!(first, utc(2026, 10, 25, 0, 30));
        let next = s.next_after(first).unwrap();
        assert_eq!(
            next,
            utc(2026, 10, 26, 1, 30),
            "not again at 01:30 UTC the same night"
        );
    }

    #[test]
    fn inside_the_repeated_hour_the_next_occurrence_still_moves_forward() {
        // 01:10 UTC is the second 02:10 in Prague (CET).
        let inside = utc(2026, 10, 25, 1, 10);
        let fixed = Schedule::parse("30 2 * * *", "Europe/Prague").unwrap();
        let next = fixed.next_after(inside).unwrap();
        assert!(next > inside, "{next}");
        assert_eq!(
            next,
            utc(2026, 10, 26, 1, 30),
            "02:30 already fired in the first copy"
        );
        let every_5 = Schedule::parse("*/5 * * * *", "Europe/Prague").unwrap();
        let next = every_5.next_after(inside).unwrap();
        assert_eq!(
            next,
            utc(2026, 10, 25, 1, 15),
            "interval jobs run through the second copy"
        );
        let mut t = utc(2026, 10, 24, 23, 50);
        let mut seen = Vec::new();
        for _ in 0..40 {
            t = every_5.next_after(t).unwrap();
            seen.push(t);
        }
        assert!(
            seen.windows(2).all(|w| w[1] > w[0]),
            "strictly increasing through the fold"
        );
    }

    #[test]
    fn the_missing_spring_hour_fires_just_after_the_gap() {
        // On 2026-03-29 Prague jumps from 02:00 CET to 03:00 CEST: 02:30 does not exist.
        let s = Schedule::parse("30 2 * * *", "Europe/Prague").unwrap();
        let fired = s.next_after(utc(2026, 3, 28, 23, 0)).unwrap();
        assert_eq!(
            fired,
            utc(2026, 3, 29, 1, 0),
            "03:00 CEST, the first valid instant"
        );
        let next = s.next_after(fired).unwrap();
        assert_eq!(next, utc(2026, 3, 30, 0, 30));
    }

    #[test]
    fn occurrences_are_on_whole_seconds_whatever_the_starting_instant() {
        let s = Schedule::parse("*/5 * * * * *", "UTC").unwrap();
        let after = utc(2026, 1, 1, 12, 0) + chrono::Duration::milliseconds(3_430);
        assert_eq!(
            s.next_after(after).unwrap(),
            utc(2026, 1, 1, 12, 0) + chrono::Duration::seconds(5)
        );
        let on = utc(2026, 1, 1, 12, 0) + chrono::Duration::seconds(5);
        assert_eq!(
            s.next_after(on).unwrap(),
            utc(2026, 1, 1, 12, 0) + chrono::Duration::seconds(10)
        );
    }

    #[test]
    fn seconds_macros_and_errors() {
        let every_second = Schedule::parse("* * * * * *", "UTC").unwrap();
        let t = utc(2026, 1, 1, 0, 0);
        assert_eq!(
            every_second.next_after(t).unwrap(),
            t + chrono::Duration::seconds(1)
        );
        let hourly = Schedule::parse("@hourly", "UTC").unwrap();
        assert_eq!(hourly.next_after(t).unwrap(), utc(2026, 1, 1, 1, 0));
        assert!(Schedule::parse("@weekly", "UTC").is_ok());
        let err = Schedule::parse("61 * * * *", "UTC").unwrap_err();
        assert!(err.to_string().contains("automation.schedule"), "{err}");
        let err = Schedule::parse("* * * * *", "Mars/Olympus").unwrap_err();
        assert!(err.to_string().contains("automation.timezone"), "{err}");
    }

    #[test]
    fn a_pattern_is_parsed_once_per_time_zone_and_errors_are_not_kept() {
        let a = Schedule::parse("17 */3 * * * *", "Asia/Tokyo").unwrap();
        let b = Schedule::parse("17 */3 * * * *", "Asia/Tokyo").unwrap();
        assert!(
            Arc::ptr_eq(&a.cron, &b.cron),
            "the second parse is the first's"
        );
        let other_zone = Schedule::parse("17 */3 * * * *", "UTC").unwrap();
        assert!(!Arc::ptr_eq(&a.cron, &other_zone.cron));
        let t = utc(2026, 1, 1, 0, 0);
        assert_eq!(a.next_after(t), b.next_after(t));
        assert_eq!(
            other_zone.next_after(t).unwrap(),
            t + chrono::Duration::seconds(17)
        );
        for _ in 0..2 {
            assert!(Schedule::parse("17 */3 * * * *", "Mars/Olympus").is_err());
        }
    }

    #[test]
    fn utc_answers_as_the_searching_iterator_does() {
        // Etc/GMT is UTC by another name that takes the iterator's way.
        for pattern in [
            "*/5 * * * * *",
            "30 2 * * *",
            "0 0 29 2 *",
            "@hourly",
            "15 10 * * 1-5",
        ] {
            let fast = Schedule::parse(pattern, "UTC").unwrap();
            let iterated = Schedule::parse(pattern, "Etc/GMT").unwrap();
            let mut t = utc(2026, 2, 27, 23, 59) + chrono::Duration::milliseconds(4_321);
            for _ in 0..20 {
                let next = fast.next_after(t);
                assert_eq!(next, iterated.next_after(t), "{pattern} after {t}");
                assert!(next.unwrap() > t);
                t = next.unwrap() + chrono::Duration::milliseconds(250);
            }
        }
    }
}
