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

/// Hashes and checks at once: one per core (at least two).
static POOL: LazyLock<Semaphore> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    Semaphore::new(cores.max(2))
});

/// Password checks performed by this process (for tests and metrics).
static CHECKS: AtomicU64 = AtomicU64::new(0);

/// How many password checks (`verify` calls that ran argon2) this process has performed.
pub fn checks_performed() -> u64 {
    CHECKS.load(Ordering::Relaxed)
}

/// Runs `work` on a blocking thread once the pool has a free slot.
async fn in_pool<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, AppError> + Send + 'static,
) -> Result<T, AppError> {
    let _slot = tokio::time::timeout(POOL_WAIT, POOL.acquire())
        .await
        .map_err(|_| AppError::Busy)?
        .map_err(|_| AppError::Busy)?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AppError::internal(format!("password task failed: {e}")))?
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
