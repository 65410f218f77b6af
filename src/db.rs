//! Opening the database: SQLite (the embedded default) or PostgreSQL.
use std::time::Duration;

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
    }
    Database::connect(opts).await
}

/// Milliseconds since the Unix epoch, the unit of every stored time.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
