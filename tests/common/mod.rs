//! Shared set-up for the integration tests: a fresh, migrated database per test.
//!
//! `NODEBASE_TEST_DATABASE` picks the backend: unset or `sqlite` gives a new SQLite
//! file in a temporary directory; a `postgres://…` URL (of a role that may create
//! databases) gives a new PostgreSQL database per test.
#![allow(dead_code)]

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use nodebase::engine::entities::{run, step};
use nodebase::engine::{
    Backoff, Engine, EngineConfig, EngineError, Function, RunStatus, RunUpdate,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter,
    QueryOrder,
};
use tokio::sync::broadcast;

/// Settings for tests: few workers, millisecond backoff, a quick safety-net poll.
pub fn fast() -> EngineConfig {
    EngineConfig {
        workers: 8,
        backoff: Backoff::fast(),
        poll: Duration::from_millis(200),
        ..EngineConfig::default()
    }
}

/// The run `id` as stored.
pub async fn run_row(db: &DatabaseConnection, id: &str) -> run::Model {
    run::Entity::find_by_id(id.to_string())
        .one(db)
        .await
        .unwrap()
        .expect("run exists")
}

/// The steps of `run_id`, in order.
pub async fn steps_of(db: &DatabaseConnection, run_id: &str) -> Vec<step::Model> {
    step::Entity::find()
        .filter(step::Column::RunId.eq(run_id))
        .order_by_asc(step::Column::Position)
        .all(db)
        .await
        .unwrap()
}

/// Makes the database refuse to record steps named `name` (a failing disk, say).
pub async fn refuse_steps_named(db: &DatabaseConnection, name: &str) {
    let statements = match db.get_database_backend() {
        DbBackend::Sqlite => vec![format!(
            "CREATE TRIGGER refuse_step BEFORE INSERT ON step WHEN NEW.name = '{name}' \
             BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )],
        _ => vec![
            format!(
                "CREATE FUNCTION refuse_step() RETURNS trigger AS $$ BEGIN \
                 IF NEW.name = '{name}' THEN RAISE EXCEPTION 'refused'; END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql"
            ),
            "CREATE TRIGGER refuse_step BEFORE INSERT ON step FOR EACH ROW \
             EXECUTE FUNCTION refuse_step()"
                .to_string(),
        ],
    };
    for sql in statements {
        db.execute_unprepared(&sql).await.unwrap();
    }
}

/// A migrated database that lives as long as this value (a PostgreSQL one until a later
/// test process sweeps it: see `fresh_postgres`).
pub struct TestDb {
    pub db: DatabaseConnection,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// Whether the database is PostgreSQL.
    pub fn postgres(&self) -> bool {
        self.url.starts_with("postgres")
    }

    /// The database as another process would reach it: through a pool of its own on
    /// PostgreSQL; on SQLite, which one process serves, through this one.
    pub async fn elsewhere(&self) -> DatabaseConnection {
        if self.postgres() {
            nodebase::db::connect(&self.url).await.unwrap()
        } else {
            self.db.clone()
        }
    }
}

/// A fresh database on the backend the environment asks for.
pub async fn test_db() -> TestDb {
    let backend = std::env::var("NODEBASE_TEST_DATABASE").unwrap_or_default();
    let (url, dir) = if backend.starts_with("postgres") {
        (fresh_postgres(&backend).await, None)
    } else {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}/test.db", dir.path().display());
        (url, Some(dir))
    };
    let db = nodebase::db::connect(&url).await.expect("connect");
    Migrator::up(&db, None).await.expect("migrate");
    TestDb { db, url, _dir: dir }
}

async fn fresh_postgres(admin_url: &str) -> String {
    let admin = nodebase::db::connect(admin_url)
        .await
        .expect("connect to PostgreSQL");
    static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if on_this_machine(admin_url) && !SWEPT.swap(true, std::sync::atomic::Ordering::Relaxed) {
        sweep(&admin).await;
    }
    let name = format!(
        "{TEST_DB_PREFIX}{}_{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("URL with a database name");
    format!("{base}/{name}")
}

const TEST_DB_PREFIX: &str = "nodebase_test_";

fn on_this_machine(url: &str) -> bool {
    ["@127.0.0.1", "@localhost", "@[::1]"]
        .iter()
        .any(|host| url.contains(host))
}

/// Drops the test databases of test processes that have ended. A test's database cannot
/// be dropped when the test ends: its pool may be mid-handshake on a runtime that is
/// stopping, and the server waits a minute for that backend. So each test process names
/// its databases after itself and, on its first, drops those of processes gone.
async fn sweep(admin: &DatabaseConnection) {
    let Ok(rows) = admin
        .query_all_raw(sea_orm::Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT datname FROM pg_database WHERE starts_with(datname, '{TEST_DB_PREFIX}')"
            ),
        ))
        .await
    else {
        return;
    };
    for row in rows {
        let Ok(name) = row.try_get::<String>("", "datname") else {
            continue;
        };
        let creator = name[TEST_DB_PREFIX.len()..]
            .split_once('_')
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        let alive =
            creator.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}

/// Run updates as the engine announces them, remembered, so that a wait for one run
/// does not lose the news of another.
pub struct Updates {
    rx: broadcast::Receiver<RunUpdate>,
    seen: std::collections::HashSet<(String, RunStatus)>,
}

impl Updates {
    pub fn new(rx: broadcast::Receiver<RunUpdate>) -> Self {
        Updates {
            rx,
            seen: Default::default(),
        }
    }
}

/// Waits until `run_id` reaches `status`, as announced by the engine (not by polling).
pub async fn wait_for(updates: &mut Updates, run_id: &str, status: RunStatus) {
    wait_for_all(updates, &[run_id.to_string()], status).await
}

/// Waits until every run in `run_ids` has reached `status`.
pub async fn wait_for_all(updates: &mut Updates, run_ids: &[String], status: RunStatus) {
    let deadline = Duration::from_secs(20);
    let done = |seen: &std::collections::HashSet<(String, RunStatus)>| {
        run_ids
            .iter()
            .all(|id| seen.contains(&(id.clone(), status)))
    };
    tokio::time::timeout(deadline, async {
        while !done(&updates.seen) {
            match updates.rx.recv().await {
                // A run is announced queued when it is sent, and again whenever it is
                // handed back; only the latter counts (after a start), so that a wait
                // for `Queued` waits for a hand-back.
                Ok(update)
                    if update.status == RunStatus::Queued
                        && !updates
                            .seen
                            .contains(&(update.run_id.clone(), RunStatus::Running)) => {}
                Ok(update) => {
                    updates.seen.insert((update.run_id, update.status));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(err) => panic!("update stream ended: {err}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("runs {run_ids:?} did not all become {status} within {deadline:?}"));
}

/// The client address tests sign up and sign in from.
pub const TEST_CLIENT: &str = "192.0.2.1";

/// Creates an account with the default limits, as a request from `TEST_CLIENT` would.
pub async fn sign_up(
    db: &DatabaseConnection,
    email: &str,
    password: &str,
) -> Result<nodebase::domain::SignedInUser, nodebase::error::AppError> {
    let limits = nodebase::auth::AuthLimits::default();
    nodebase::auth::sign_up(db, &limits, TEST_CLIENT, email, password).await
}

/// Signs in with the default limits, as a request from `TEST_CLIENT` would.
pub async fn sign_in(
    db: &DatabaseConnection,
    email: &str,
    password: &str,
) -> Result<nodebase::domain::SignedInUser, nodebase::error::AppError> {
    let limits = nodebase::auth::AuthLimits::default();
    nodebase::auth::sign_in(db, &limits, TEST_CLIENT, email, password).await
}

/// Builds an engine of each function alone and checks that it is refused as an
/// invalid function whose message says `why`.
pub fn assert_refused(db: &DatabaseConnection, refused: Vec<(Function, &str)>) {
    for (function, why) in refused {
        match Engine::builder(db.clone()).function(function).build().err() {
            Some(EngineError::InvalidFunction(message)) => {
                assert!(message.contains(why), "{message:?} says {why:?}")
            }
            other => panic!("expected a refusal saying {why:?}, got {other:?}"),
        }
    }
}
