//! The worker pool's housekeeping: lease heartbeats for the runs in flight, the rescue
//! of runs whose worker died, the matching of sent events with open waits, and the
//! pruning of old finished runs.
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::function::Registry;
use super::notifier::{publish, Relay};
use super::runtime::Runtime;
use super::store;

/// Renews the leases of the runs in flight, a few times per lease.
pub(crate) async fn heartbeat(rt: Arc<Runtime>, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(rt.config.heartbeat) => {}
            _ = stopped.changed() => return,
        }
        if let Err(err) = store::claim::heartbeat(&rt, rt.in_flight.ids()).await {
            tracing::warn!(error = %err, "lease heartbeat failed");
        }
    }
}

/// Re-queues runs whose lease lapsed, so that a dead worker's runs are finished by
/// whoever is alive.
pub(crate) async fn rescuer(rt: Arc<Runtime>, mut stopped: watch::Receiver<bool>) {
    let every = (rt.config.lease / 2).max(Duration::from_millis(100));
    loop {
        match store::control::rescue(&rt).await {
            Ok(updates) if !updates.is_empty() => {
                tracing::info!(runs = updates.len(), "rescued runs whose lease lapsed");
                super::metrics::rescued(updates.len());
                publish(&rt, updates, Relay::Now(&rt.db)).await;
                rt.wake.notify_one();
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "rescuing runs failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// Ends the waits that newly sent events match (`store::wait`), as soon as a send says
/// so (and at each poll, for a signal that was lost); forgets compared events older
/// than the longest lookback.
pub(crate) async fn matcher(rt: Arc<Runtime>, mut stopped: watch::Receiver<bool>) {
    let mut forgotten_at = rt.clock.now_ms();
    loop {
        loop {
            match store::wait::match_pending(&rt).await {
                Ok((taken, ended)) => {
                    if !ended.woken.is_empty() {
                        rt.wake.notify_one();
                    }
                    if !ended.cancelled.is_empty() {
                        // Runs cancelled by an event stop at once, here or elsewhere;
                        // their invokers hear of their end.
                        for update in &ended.cancelled {
                            rt.in_flight.cancel(&update.run_id);
                        }
                        publish(&rt, ended.cancelled, Relay::Now(&rt.db)).await;
                        rt.match_wake.notify_one();
                    }
                    if taken < store::wait::MATCH_BATCH as usize {
                        break;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "matching events with waits failed");
                    break;
                }
            }
        }
        let now = rt.clock.now_ms();
        if now - forgotten_at >= rt.config.prune_every.as_millis() as i64 {
            forgotten_at = now;
            let before = now - rt.config.max_lookback.as_millis() as i64;
            if let Err(err) = store::wait::forget_awaited(&rt.db, before).await {
                tracing::warn!(error = %err, "forgetting old awaited events failed");
            }
        }
        tokio::select! {
            _ = rt.match_wake.notified() => {}
            _ = tokio::time::sleep(rt.config.poll) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// Sends each cron schedule's ticks as they come (`store::send::send_tick`: one event
/// and one run per tick, whichever processes send it). A tick at most
/// `EngineConfig::cron_catch_up` old when this starts, or when the database comes back,
/// is sent late; older ones are skipped.
pub(crate) async fn scheduler(
    rt: Arc<Runtime>,
    registry: Arc<Registry>,
    mut stopped: watch::Receiver<bool>,
) {
    let schedules = registry.schedules();
    let catch_up = millis(rt.config.cron_catch_up);
    let poll = millis(rt.config.poll);
    // The latest tick of each schedule that is sent (by this process or another).
    let start = rt.clock.now_ms();
    let mut sent = vec![start.saturating_sub(catch_up).saturating_sub(1); schedules.len()];
    loop {
        let now = rt.clock.now_ms();
        let mut next_at = now.saturating_add(poll);
        for ((function_id, schedule), sent) in schedules.iter().zip(sent.iter_mut()) {
            if let Some(tick) = schedule.latest(now).filter(|t| *t > *sent) {
                if now - tick > catch_up {
                    *sent = tick; // missed for too long: skipped
                } else {
                    match store::send::send_tick(&rt, function_id, schedule, tick).await {
                        Ok(started) => {
                            *sent = tick;
                            if started {
                                rt.wake.notify_one();
                            }
                        }
                        Err(err) => {
                            tracing::warn!(function = %function_id, error = %err, "could not send a cron tick; trying again")
                        }
                    }
                }
            }
            if let Some(next) = schedule.next(now) {
                next_at = next_at.min(next);
            }
        }
        // Never longer than the poll: an injected clock may jump.
        let pause = (next_at - rt.clock.now_ms()).clamp(1, poll.max(1));
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(pause as u64)) => {}
            _ = stopped.changed() => return,
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Deletes finished runs past the retention age, now and then.
pub(crate) async fn pruner(
    rt: Arc<Runtime>,
    retention: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let cutoff = rt.clock.now_ms() - retention.as_millis() as i64;
        match store::prune::prune(&rt.db, cutoff).await {
            Ok((0, 0)) => {}
            Ok((runs, events)) => tracing::info!(runs, events, "pruned finished runs and events"),
            Err(err) => tracing::warn!(error = %err, "pruning failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(rt.config.prune_every) => {}
            _ = stopped.changed() => return,
        }
    }
}
