//! Opening the database: SQLite (the embedded default) or PostgreSQL.
use std::time::Duration;

use sea_orm::sqlx::postgres::PgSslMode;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

/// Connects to `url` and tunes every pooled connection for this workload.
///
/// SQLite pragmas are per connection, so they are set through sqlx's connect options
/// (which apply them to each new connection) rather than once with a query.
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut opts = ConnectOptions::new(url.to_string());
    // Every statement with its duration, for profiling: NODEBASE_LOG_SQL=1.
    opts.sqlx_logging(std::env::var_os("NODEBASE_LOG_SQL").is_some_and(|v| v != "0"))
        .sqlx_logging_level(tracing::log::LevelFilter::Info);
    if url.starts_with("sqlite:") {
        opts.max_connections(4)
            .min_connections(1)
            .map_sqlx_sqlite_opts(|o| {
                o.create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
            });
    } else {
        // Fail fast (and say so) when the server is unreachable, rather than hang.
        opts.max_connections(16)
            .min_connections(1)
            // A ping costs a round trip; only connections idle for a while (and so
            // possibly dropped by a restarted server) need one.
            .test_before_acquire_if_idle_for(Duration::from_secs(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(5));
        if tls_is_pointless(url) {
            opts.map_sqlx_postgres_opts(|o| o.ssl_mode(PgSslMode::Disable));
        }
    }
    Database::connect(opts).await
}

/// Whether `url` names a PostgreSQL server on this machine and no TLS mode (neither an
/// `sslmode` in the URL nor `PGSSLMODE`). Such a connection is made in the clear: TLS
/// over loopback hides nothing from anyone who could read it (only the machine's
/// administrator can), and it cost the engine a third of its throughput here. Anywhere
/// else sqlx's default stands (`prefer`: TLS when the server offers it), and a mode
/// that is named is always obeyed.
pub fn tls_is_pointless(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    let named = url
        .query_pairs()
        .any(|(key, _)| key == "sslmode" || key == "ssl-mode")
        || std::env::var_os("PGSSLMODE").is_some();
    // The `url` crate reads a postgres:// host as a name, not an address.
    let local = match url.host() {
        Some(url::Host::Domain(name)) => {
            name == "localhost"
                || name
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    local && !named
}

/// Whether the server says this pool's connection is encrypted (`pg_stat_ssl`); false on
/// SQLite, which has no connection to encrypt.
pub async fn encrypted(db: &DatabaseConnection) -> Result<bool, DbErr> {
    use sea_orm::ConnectionTrait;
    if db.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Ok(false);
    }
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ))
        .await?;
    match row {
        Some(row) => row.try_get_by_index(0),
        None => Ok(false),
    }
}

/// Milliseconds since the Unix epoch, the unit of every stored time.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::tls_is_pointless;

    #[test]
    fn only_a_server_on_this_machine_without_a_named_mode_goes_without_tls() {
        if std::env::var_os("PGSSLMODE").is_some() {
            return; // a named mode is obeyed everywhere; the cases below assume none
        }
        for url in [
            "postgres://u:p@127.0.0.1:5432/db",
            "postgres://u:p@127.8.0.1/db",
            "postgres://u:p@localhost/db",
            "postgres://u:p@[::1]:5432/db",
        ] {
            assert!(tls_is_pointless(url), "{url}");
        }
        for url in [
            "postgres://u:p@db.example.com/db",
            "postgres://u:p@10.0.0.5/db",
            "postgres://u:p@127.0.0.1/db?sslmode=require",
            "postgres://u:p@localhost/db?application_name=x&sslmode=prefer",
            "postgres://u:p@localhost/db?ssl-mode=verify-full",
            "postgres://u@/db?host=/var/run/postgresql",
            "sqlite://nodebase.db",
            "not a url",
        ] {
            assert!(!tls_is_pointless(url), "{url}");
        }
    }
}
