//! Settings read from the environment at start-up.
use std::time::Duration;

/// The server's settings; every field has a default that works on one machine.
#[derive(Clone, Debug)]
pub struct Config {
    /// `DATABASE_URL`: `sqlite://…` (default `sqlite://nodebase.db`) or `postgres://…`.
    pub database_url: String,
    /// `NODEBASE_SECURE_COOKIES=1` marks the session cookie `Secure` (serve over HTTPS).
    pub secure_cookies: bool,
    /// `NODEBASE_SESSION_DAYS`: how long a session lives (default 30 days).
    pub session_ttl: Duration,
    /// `NODEBASE_WORKERS`: background runs executing at once in this process (default 32).
    pub workers: usize,
    /// `NODEBASE_RETENTION_DAYS`: finished runs and their events are deleted after this
    /// many days (default 30; 0 keeps them forever).
    pub retention: Option<Duration>,
}

impl Config {
    /// Reads the settings, falling back to the defaults.
    pub fn from_env() -> Result<Config, String> {
        let database_url =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://nodebase.db".to_string());
        let secure_cookies = matches!(
            std::env::var("NODEBASE_SECURE_COOKIES").as_deref(),
            Ok("1") | Ok("true") | Ok("yes")
        );
        let session_days: u64 = match std::env::var("NODEBASE_SESSION_DAYS") {
            Ok(v) => v
                .parse()
                .map_err(|_| format!("NODEBASE_SESSION_DAYS must be a whole number, got {v:?}"))?,
            Err(_) => 30,
        };
        let workers =
            match std::env::var("NODEBASE_WORKERS") {
                Ok(v) => v.parse().ok().filter(|&n: &usize| n > 0).ok_or_else(|| {
                    format!("NODEBASE_WORKERS must be a positive number, got {v:?}")
                })?,
                Err(_) => 32,
            };
        let retention_days: u64 = match std::env::var("NODEBASE_RETENTION_DAYS") {
            Ok(v) => v.parse().map_err(|_| {
                format!("NODEBASE_RETENTION_DAYS must be a whole number, got {v:?}")
            })?,
            Err(_) => 30,
        };
        Ok(Config {
            workers,
            retention: (retention_days > 0)
                .then(|| Duration::from_secs(retention_days * 24 * 3600)),
            database_url,
            secure_cookies,
            session_ttl: Duration::from_secs(session_days * 24 * 3600),
        })
    }
}
