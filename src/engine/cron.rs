//! Cron schedules (`Function::cron`): when a function's ticks fall, in its time zone.
//!
//! Every process with workers runs the scheduler (`maintenance::scheduler`); each sends
//! a tick's event under an idempotency key made of the function and the tick's time, so
//! however many processes reach a tick, the database keeps one event and one run.
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;

use super::error::EngineError;

/// A parsed schedule: a cron pattern (5 fields, or 6 with seconds first) in a time zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
    pattern: String,
}

impl Schedule {
    /// Parses `pattern` for time zone `tz` (an IANA name such as `Asia/Seoul`).
    pub fn parse(pattern: &str, tz: &str) -> Result<Self, EngineError> {
        let invalid = |why: String| EngineError::InvalidFunction(why);
        // Seconds are optional: `*/10 * * * * *` ticks every ten seconds.
        let cron = Cron::from_str(pattern)
            .map_err(|e| invalid(format!("{pattern:?} is not a cron schedule: {e}")))?;
        let tz = Tz::from_str(tz).map_err(|_| invalid(format!("{tz:?} is not a time zone")))?;
        Ok(Schedule {
            cron,
            tz,
            pattern: pattern.to_string(),
        })
    }

    /// The pattern as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The time zone's name.
    pub fn time_zone(&self) -> &str {
        self.tz.name()
    }

    /// The latest tick at or before `now_ms` (Unix ms), if any: a whole second, the
    /// same whenever within its second a scheduler looks.
    pub fn latest(&self, now_ms: i64) -> Option<i64> {
        let now = self.at(whole_second(now_ms))?;
        self.cron
            .find_previous_occurrence(&now, true)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// The first tick after `now_ms`, if any (a whole second).
    pub fn next(&self, now_ms: i64) -> Option<i64> {
        let now = self.at(whole_second(now_ms))?;
        self.cron
            .find_next_occurrence(&now, false)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// `ms` in RFC 3339, in the schedule's zone.
    pub fn format(&self, ms: i64) -> String {
        self.at(ms).map(|t| t.to_rfc3339()).unwrap_or_default()
    }

    fn at(&self, ms: i64) -> Option<DateTime<Tz>> {
        Utc.timestamp_millis_opt(ms)
            .single()
            .map(|t| t.with_timezone(&self.tz))
    }
}

/// `ms` rounded down to its second: croner matches whole seconds, and given a time
/// within a matching second it returns that time itself, milliseconds and all.
fn whole_second(ms: i64) -> i64 {
    ms.div_euclid(1_000) * 1_000
}

/// The idempotency key of `function_id`'s tick at `tick_ms`.
pub(crate) fn tick_key(function_id: &str, tick_ms: i64) -> String {
    format!("cron:{function_id}:{tick_ms}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    #[test]
    fn ticks_fall_on_the_pattern_in_its_time_zone() {
        // 2026-12-01 00:00:30 UTC.
        let now = 1_796_083_230_000;
        let every_minute = Schedule::parse("* * * * *", "UTC").unwrap();
        assert_eq!(every_minute.latest(now), Some(now - 30_000));
        assert_eq!(every_minute.next(now), Some(now + 30_000));
        // A tick exactly now is the latest, and the next is a minute on.
        let tick = now - 30_000;
        assert_eq!(every_minute.latest(tick), Some(tick));
        assert_eq!(every_minute.next(tick), Some(tick + MINUTE));
        // 09:00 in Seoul is 00:00 UTC.
        let nine_in_seoul = Schedule::parse("0 9 * * *", "Asia/Seoul").unwrap();
        assert_eq!(nine_in_seoul.latest(now), Some(tick));
        // Seconds are optional.
        let every_ten_seconds = Schedule::parse("*/10 * * * * *", "UTC").unwrap();
        assert_eq!(every_ten_seconds.next(now), Some(now + 10_000));
    }

    #[test]
    fn a_tick_is_its_whole_second_whenever_a_scheduler_looks() {
        // Schedulers in several processes wake a few milliseconds after a tick, each at
        // its own moment: all must name the same tick (its idempotency key).
        let tick = 1_796_083_230_000;
        let every_minute = Schedule::parse("* * * * *", "UTC").unwrap();
        let every_second = Schedule::parse("* * * * * *", "UTC").unwrap();
        for late in [0, 1, 36, 999] {
            assert_eq!(
                every_minute.latest(tick - 30_000 + late),
                Some(tick - 30_000)
            );
            assert_eq!(every_second.latest(tick + late), Some(tick));
            assert_eq!(every_second.next(tick + late), Some(tick + 1_000));
        }
    }

    #[test]
    fn bad_patterns_and_zones_are_refused() {
        assert!(Schedule::parse("61 * * * *", "UTC").is_err());
        assert!(Schedule::parse("every minute", "UTC").is_err());
        assert!(Schedule::parse("* * * * *", "Mars/Olympus").is_err());
    }
}
