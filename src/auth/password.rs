//! Password hashing with argon2id (the crate's defaults follow OWASP's advice), in a
//! bounded pool: each hash or check takes 19 MiB and a core for a moment, so only a few
//! run at once and the rest wait their turn — or, past `POOL_WAIT`, are told the server
//! is busy (503) instead of piling up.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use tokio::sync::Semaphore;

use crate::error::AppError;

/// How long a request waits for a free slot before it is refused as busy.
const POOL_WAIT: Duration = Duration::from_secs(10);

/// Password checks performed by this process (for tests and metrics).
static CHECKS: AtomicU64 = AtomicU64::new(0);

/// How many password checks (`verify` calls that ran argon2) this process has performed.
pub fn checks_performed() -> u64 {
    CHECKS.load(Ordering::Relaxed)
}

/// At most `slots` pieces of blocking work at once; a caller that waits longer than
/// `wait` for a slot is refused with `Busy`.
struct Pool {
    slots: Semaphore,
    wait: Duration,
}

impl Pool {
    fn new(slots: usize, wait: Duration) -> Pool {
        Pool {
            slots: Semaphore::new(slots.max(1)),
            wait,
        }
    }

    /// Runs `work` on a blocking thread once a slot is free.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, AppError> + Send + 'static,
    ) -> Result<T, AppError> {
        let _slot = tokio::time::timeout(self.wait, self.slots.acquire())
            .await
            .map_err(|_| AppError::Busy)?
            .map_err(|_| AppError::Busy)?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| AppError::internal(format!("password task failed: {e}")))?
    }
}

/// The process's pool for hashing and checking: one slot per core (at least two).
static POOL: LazyLock<Pool> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    Pool::new(cores.max(2), POOL_WAIT)
});

async fn in_pool<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, AppError> + Send + 'static,
) -> Result<T, AppError> {
    POOL.run(work).await
}

/// Hashes `password` into a PHC string.
pub async fn hash(password: String) -> Result<String, AppError> {
    in_pool(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AppError::internal(format!("password hashing failed: {e}")))
    })
    .await
}

/// Whether `password` matches the stored PHC string.
pub async fn verify(password: String, phc: String) -> Result<bool, AppError> {
    in_pool(move || {
        let parsed = PasswordHash::new(&phc)
            .map_err(|e| AppError::internal(format!("stored password hash is invalid: {e}")))?;
        CHECKS.fetch_add(1, Ordering::Relaxed);
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    #[tokio::test]
    async fn the_pool_runs_at_most_its_slots_at_once_and_refuses_long_waits() {
        let pool = Arc::new(Pool::new(2, Duration::from_millis(100)));
        let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let work = |running: Arc<AtomicUsize>, peak: Arc<AtomicUsize>| {
            move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(400));
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
        };
        let jobs: Vec<_> = (0..4)
            .map(|_| {
                let (pool, running, peak) = (pool.clone(), running.clone(), peak.clone());
                tokio::spawn(async move { pool.run(work(running, peak)).await })
            })
            .collect();
        let mut answers = Vec::new();
        for job in jobs {
            answers.push(job.await.unwrap());
        }
        assert_eq!(
            peak.load(Ordering::SeqCst),
            2,
            "never more than two at once"
        );
        assert_eq!(answers.iter().filter(|a| a.is_ok()).count(), 2);
        assert_eq!(
            answers
                .iter()
                .filter(|a| **a == Err(AppError::Busy))
                .count(),
            2
        );
    }
}
