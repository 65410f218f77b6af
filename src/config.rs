//! Settings read from the environment at start-up.
use std::time::Duration;

use crate::auth::{AuthLimits, Budget};
use crate::limits::LimitSettings;

/// The server's settings; every field has a default that works on one machine.
#[derive(Clone, Debug)]
pub struct Config {
    /// `DATABASE_URL`: `sqlite://…` (default `sqlite://nodebase.db`) or `postgres://…`.
    pub database_url: String,
    /// `NODEBASE_SECURE_COOKIES=1`: the app is reached over HTTPS (directly or through a
    /// TLS-terminating proxy), so the session cookie is `__Host-` prefixed and `Secure`.
    pub secure_cookies: bool,
    /// `NODEBASE_CLIENT_IP_HEADER`: behind a reverse proxy, the header in which it
    /// passes the client's address (e.g. `X-Forwarded-For`; its last entry is used).
    /// Unset: the connection's peer address. Never set it without such a proxy — a
    /// client could then pick its own address.
    pub client_ip_header: Option<http::HeaderName>,
    /// Sign-in and sign-up budgets; `NODEBASE_SIGN_UPS_PER_HOUR` (default 20) sets the
    /// sign-ups allowed per client address.
    pub auth_limits: AuthLimits,
    /// Per-user limits on actions and live streams: `NODEBASE_ACTIONS_PER_MINUTE`
    /// (default 120, after a burst of 60) and `NODEBASE_STREAMS_PER_USER` (default 8).
    pub limits: LimitSettings,
    /// `NODEBASE_SESSION_DAYS`: how long a session lives (default 30 days).
    pub session_ttl: Duration,
    /// `NODEBASE_WORKERS`: background runs executing at once in this process (default 32).
    pub workers: usize,
    /// `NODEBASE_RETENTION_DAYS`: finished runs and their events are deleted after this
    /// many days (default 30; 0 keeps them forever).
    pub retention: Option<Duration>,
    /// `NODEBASE_METRICS_ADDR` (e.g. `127.0.0.1:9464`): serve Prometheus metrics at
    /// `/metrics` on this address, apart from the app's port. Unset: no metrics.
    pub metrics_addr: Option<std::net::SocketAddr>,
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
        let client_ip_header = match std::env::var("NODEBASE_CLIENT_IP_HEADER") {
            Ok(name) if !name.trim().is_empty() => {
                Some(http::HeaderName::try_from(name.trim()).map_err(|_| {
                    format!("NODEBASE_CLIENT_IP_HEADER is not a header name: {name:?}")
                })?)
            }
            _ => None,
        };
        let metrics_addr = match std::env::var("NODEBASE_METRICS_ADDR") {
            Ok(addr) if !addr.trim().is_empty() => Some(addr.trim().parse().map_err(|_| {
                format!(
                    "NODEBASE_METRICS_ADDR must be an address like 127.0.0.1:9464, got {addr:?}"
                )
            })?),
            _ => None,
        };
        let mut auth_limits = AuthLimits::default();
        if let Some(per_hour) = positive("NODEBASE_SIGN_UPS_PER_HOUR")? {
            auth_limits.sign_ups_per_client = Budget {
                burst: per_hour,
                every: Duration::from_secs(3600) / per_hour,
            };
        }
        let mut limits = LimitSettings::default();
        if let Some(per_minute) = positive("NODEBASE_ACTIONS_PER_MINUTE")? {
            limits.actions_per_minute = per_minute;
            limits.action_burst = per_minute.div_ceil(2);
        }
        if let Some(streams) = positive("NODEBASE_STREAMS_PER_USER")? {
            limits.streams_per_user = streams as usize;
        }
        Ok(Config {
            metrics_addr,
            client_ip_header,
            auth_limits,
            limits,
            workers,
            retention: (retention_days > 0)
                .then(|| Duration::from_secs(retention_days * 24 * 3600)),
            database_url,
            secure_cookies,
            session_ttl: Duration::from_secs(session_days * 24 * 3600),
        })
    }
}

/// A positive whole number from the environment variable `name`, if it is set.
fn positive(name: &str) -> Result<Option<u32>, String> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|&n: &u32| n > 0)
            .map(Some)
            .ok_or_else(|| format!("{name} must be a positive number, got {v:?}")),
        Err(_) => Ok(None),
    }
}
