//! The worker pool's housekeeping: lease heartbeats for the runs in flight, the rescue
//! of runs whose worker died, the matching of sent events with open waits, and the
//! pruning of old finished runs.
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

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
