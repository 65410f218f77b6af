//! How long to wait before trying a failed step again.
use std::time::Duration;

use rand::Rng;

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
