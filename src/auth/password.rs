//! Password hashing with argon2id (the crate's defaults follow OWASP's advice).
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

use crate::error::AppError;

/// Hashes `password` into a PHC string; runs off the async threads (it is slow on purpose).
pub async fn hash(password: String) -> Result<String, AppError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AppError::Server(format!("password hashing failed: {e}")))
    })
    .await
    .map_err(|e| AppError::Server(format!("password hashing task failed: {e}")))?
}

/// Whether `password` matches the stored PHC string.
pub async fn verify(password: String, phc: String) -> Result<bool, AppError> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&phc)
            .map_err(|e| AppError::Server(format!("stored password hash is invalid: {e}")))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|e| AppError::Server(format!("password check task failed: {e}")))?
}
