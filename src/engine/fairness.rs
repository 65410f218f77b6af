//! Fair order among users: where a new run goes in the plain claim's order.
//!
//! Runs without concurrency or throttle keys are claimed in the order of their
//! `fair_at`, a clock in milliseconds (among those due: `due_at <= now`). A new run of a
//! user with no runs waiting goes at now. A new run of a user whose last run is still
//! waiting goes one [`SHARE`] after that run. So each user waiting holds one place per
//! share of the clock, and the claim takes the users' runs in turn: one user's 10,000
//! queued runs go one share (a second of the clock) apart, and another user's run sent
//! a few seconds later goes ahead of all but the first few of them. This is start-time
//! fair queueing with one share per run and the wall clock as virtual time: a backlog
//! that drains slower than a run per second keeps its places before now ahead of new
//! users' runs. (Reading the queue's head at each send instead would walk, on every
//! send, the index entries that claimed runs left dead.)
//!
//! Runs that were parked (a sleep, a retry, a wait that ended, a lease rescue) go back
//! in line at the time they are due, on the same clock: ahead of every run placed later
//! on it, and never further back than first-in-first-out would put them.
//!
//! A priority's head start moves a new run's place back by as much. Runs with
//! concurrency or throttle keys are claimed by their own claim, in due order.
use std::collections::HashMap;

/// How far apart on the clock one user's waiting runs go, in milliseconds.
pub(crate) const SHARE: i64 = 1_000;

/// Where a batch of new runs goes: `last` is the `fair_at` of each user's last run if
/// it is still waiting.
pub(crate) struct Places {
    start: i64,
    next: HashMap<Option<String>, i64>,
}

impl Places {
    pub(crate) fn new(now: i64, last: HashMap<Option<String>, i64>) -> Places {
        let next = last
            .into_iter()
            .map(|(user, at)| (user, (at + SHARE).max(now)))
            .collect();
        Places { start: now, next }
    }

    /// The place of `user`'s next new run; the one after goes a share later.
    pub(crate) fn take(&mut self, user: &Option<String>) -> i64 {
        let next = self.next.entry(user.clone()).or_insert(self.start);
        let place = *next;
        *next += SHARE;
        place
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Option<String> {
        Some(name.to_string())
    }

    #[test]
    fn an_idle_queue_places_runs_now_and_one_user_runs_a_share_apart() {
        let mut places = Places::new(10_000, HashMap::new());
        assert_eq!(places.take(&user("a")), 10_000);
        assert_eq!(places.take(&user("a")), 10_000 + SHARE);
        assert_eq!(places.take(&user("b")), 10_000);
        assert_eq!(places.take(&None), 10_000);
    }

    #[test]
    fn a_new_user_goes_ahead_of_a_backlog_placed_after_now() {
        // User a's last waiting run is at 50_000.
        let last = HashMap::from([(user("a"), 50_000)]);
        let mut places = Places::new(10_000, last);
        assert_eq!(places.take(&user("b")), 10_000);
        assert_eq!(places.take(&user("a")), 50_000 + SHARE);
    }

    #[test]
    fn a_user_whose_last_run_was_placed_long_ago_starts_now() {
        let last = HashMap::from([(user("a"), 500)]);
        let mut places = Places::new(10_000, last);
        assert_eq!(places.take(&user("a")), 10_000);
    }
}
