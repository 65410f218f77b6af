//! What happens after a failure: the one retry decision, and how long to wait.
use std::time::Duration;

use rand::Rng;

use super::error::FnError;

/// What to do after a failed attempt of a step or of a handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Try again at this time (Unix ms).
    RetryAt(i64),
    /// Give up: the error said no retry can help.
    NonRetriable,
    /// Give up: this was the last attempt allowed.
    Spent,
}

/// The decision after `attempts` failed attempts (this one included) of something
/// allowed `retries` retries, failing with `err` at `now`.
pub(crate) fn decide(
    err: &FnError,
    attempts: u32,
    retries: u32,
    now: i64,
    backoff: &Backoff,
) -> Decision {
    match err {
        FnError::NonRetriable(_) => Decision::NonRetriable,
        _ if attempts > retries => Decision::Spent,
        FnError::RetryAfter { after, .. } => {
            let after = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
            Decision::RetryAt(now.saturating_add(after))
        }
        _ => Decision::RetryAt(now.saturating_add(backoff.delay(attempts).as_millis() as i64)),
    }
}

/// Exponential backoff with jitter: attempt n waits about `base * 2^(n-1)`, at most
/// `max`, spread by ±`jitter` (a fraction) so that failures do not retry in lockstep.
#[derive(Clone, Debug, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    pub jitter: f64,
}

impl Default for Backoff {
    /// Close to Inngest's schedule: 15 s, 30 s, 1 min, 2 min, … up to 1 h.
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(15),
            max: Duration::from_secs(3600),
            jitter: 0.25,
        }
    }
}

impl Backoff {
    /// Millisecond-scale backoff for tests and benchmarks.
    pub fn fast() -> Self {
        Backoff {
            base: Duration::from_millis(5),
            max: Duration::from_millis(50),
            jitter: 0.0,
        }
    }

    /// The wait before attempt `failed_attempts + 1`, after `failed_attempts` failures.
    pub fn delay(&self, failed_attempts: u32) -> Duration {
        let exponent = failed_attempts.saturating_sub(1).min(30);
        let raw = self.base.saturating_mul(1u32 << exponent).min(self.max);
        if self.jitter <= 0.0 {
            return raw;
        }
        let spread = rand::thread_rng().gen_range(-self.jitter..=self.jitter);
        raw.mul_f64((1.0 + spread).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decision_follows_the_error_and_the_attempts_left() {
        let backoff = Backoff::fast();
        let failed = FnError::failed("boom");
        assert_eq!(decide(&failed, 1, 2, 100, &backoff), Decision::RetryAt(105));
        assert_eq!(decide(&failed, 3, 2, 100, &backoff), Decision::Spent);
        let never = FnError::non_retriable("bad input");
        assert_eq!(decide(&never, 1, 5, 100, &backoff), Decision::NonRetriable);
        let later = FnError::retry_after(Duration::from_secs(2), "busy");
        assert_eq!(
            decide(&later, 1, 5, 100, &backoff),
            Decision::RetryAt(2_100)
        );
    }

    #[test]
    fn delays_double_and_stop_at_the_cap() {
        let backoff = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(5),
            jitter: 0.0,
        };
        let delays: Vec<u64> = (1..=5).map(|n| backoff.delay(n).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 5, 5]);
    }

    #[test]
    fn jitter_stays_within_its_band() {
        let backoff = Backoff::default();
        for _ in 0..100 {
            let d = backoff.delay(1).as_secs_f64();
            assert!((15.0 * 0.75..=15.0 * 1.25).contains(&d), "{d}");
        }
    }
}
