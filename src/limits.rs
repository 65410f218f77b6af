//! Per-user limits kept in this process's memory: how fast a user may start work
//! (send events, invoke functions, re-run runs, create workflows) and how many live
//! streams a user may hold open. Sign-in and sign-up budgets live in the database
//! instead (`auth::throttle`), because guessing must be bounded across processes.
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::AppError;

/// The limits' settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitSettings {
    /// Actions a user may start at once…
    pub action_burst: u32,
    /// …and how many more per minute after that.
    pub actions_per_minute: u32,
    /// Live streams (browser tabs) a user may hold open in one process.
    pub streams_per_user: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            action_burst: 60,
            actions_per_minute: 120,
            streams_per_user: 8,
        }
    }
}

/// The limits of one process.
pub struct Limits {
    actions: DefaultKeyedRateLimiter<String>,
    streams: Mutex<HashMap<String, usize>>,
    streams_per_user: usize,
}

impl Limits {
    pub fn new(settings: LimitSettings) -> Arc<Limits> {
        let per_minute =
            NonZeroU32::new(settings.actions_per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(settings.action_burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Arc::new(Limits {
            actions: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
            streams: Mutex::new(HashMap::new()),
            streams_per_user: settings.streams_per_user.max(1),
        })
    }

    /// Counts one action of `user_id`, or refuses it with `TooManyAttempts(seconds)`.
    pub fn action(&self, user_id: &str) -> Result<(), AppError> {
        self.actions
            .check_key(&user_id.to_string())
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                AppError::TooManyAttempts(wait.as_secs().max(1))
            })
    }

    /// A slot for one more live stream of `user_id`, held until dropped; `None` when
    /// the user already holds `streams_per_user`.
    pub fn open_stream(self: &Arc<Self>, user_id: &str) -> Option<StreamSlot> {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let open = streams.entry(user_id.to_string()).or_default();
        if *open >= self.streams_per_user {
            return None;
        }
        *open += 1;
        Some(StreamSlot {
            limits: Arc::clone(self),
            user_id: user_id.to_string(),
        })
    }

    /// Forgets the action counts of users who have been quiet (bounds the memory).
    pub fn forget_quiet_users(&self) {
        self.actions.retain_recent();
        self.actions.shrink_to_fit();
    }
}

/// One open live stream; dropping it frees the slot.
pub struct StreamSlot {
    limits: Arc<Limits>,
    user_id: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut streams = self
            .limits
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(open) = streams.get_mut(&self.user_id) {
            *open -= 1;
            if *open == 0 {
                streams.remove(&self.user_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_refused_per_user() {
        let limits = Limits::new(LimitSettings {
            action_burst: 3,
            actions_per_minute: 1,
            streams_per_user: 2,
        });
        for _ in 0..3 {
            limits.action("ada").unwrap();
        }
        assert!(matches!(
            limits.action("ada"),
            Err(AppError::TooManyAttempts(secs)) if (1..=60).contains(&secs)
        ));
        limits
            .action("bob")
            .expect("another user has a budget of their own");
    }

    #[test]
    fn stream_slots_are_given_back_when_dropped() {
        let limits = Limits::new(LimitSettings {
            action_burst: 1,
            actions_per_minute: 1,
            streams_per_user: 2,
        });
        let a = limits.open_stream("ada").unwrap();
        let _b = limits.open_stream("ada").unwrap();
        assert!(limits.open_stream("ada").is_none());
        assert!(limits.open_stream("bob").is_some());
        drop(a);
        assert!(limits.open_stream("ada").is_some());
    }
}
