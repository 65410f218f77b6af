//! Abuse resistance on a real database: sign-in budgets that hold under a parallel
//! burst, look the same for every address, and come back with time; sign-up budgets
//! per client address.
//!
//! Only `guessing_is_bounded…` checks passwords here: it counts the checks this process
//! performs, so no other test of this binary may perform one.
#![cfg(feature = "ssr")]

mod common;

use common::{sign_up, test_db};
use nodebase::auth::{password_checks_performed, sign_in, sign_up as sign_up_from, AuthLimits};
use nodebase::entities::{auth_throttle, session};
use nodebase::error::AppError;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter};

const PASSWORD: &str = "correct horse battery";

/// Moves the budgets of `key` back in time by `secs`, as if that much time had passed.
async fn let_time_pass(db: &DatabaseConnection, key: &str, secs: i64) {
    auth_throttle::Entity::update_many()
        .col_expr(
            auth_throttle::Column::RefilledAt,
            sea_orm::ExprTrait::sub(Expr::col(auth_throttle::Column::RefilledAt), secs * 1000),
        )
        .filter(auth_throttle::Column::Key.eq(key))
        .exec(db)
        .await
        .unwrap();
}

#[tokio::test]
async fn guessing_is_bounded_under_a_parallel_burst_and_looks_the_same_for_every_address() {
    let t = test_db().await;
    let limits = AuthLimits::default();
    sign_up(&t.db, "owner@example.com", PASSWORD).await.unwrap();
    let wrong = AppError::InvalidInput("wrong email or password".into());

    // 100 wrong guesses at once, each from a different address (so that only the
    // email's budget stands in the way), then the right password.
    let before = password_checks_performed();
    let guesses = (0..100).map(|i| {
        let db = t.db.clone();
        tokio::spawn(async move {
            let client = format!("198.51.100.{i}");
            sign_in(
                &db,
                &limits,
                &client,
                "owner@example.com",
                &format!("guess {i}"),
            )
            .await
        })
    });
    let answers = futures::future::join_all(guesses).await;
    let checks = password_checks_performed() - before;
    assert!(checks <= 5, "{checks} password checks for one address");
    let wrongs = answers
        .iter()
        .filter(|a| a.as_ref().unwrap() == &Err(wrong.clone()))
        .count();
    let refused = answers
        .iter()
        .filter(|a| matches!(a.as_ref().unwrap(), Err(AppError::TooManyAttempts(_))))
        .count();
    assert_eq!((wrongs, refused), (5, 95));
    let right = sign_in(&t.db, &limits, "203.0.113.7", "owner@example.com", PASSWORD).await;
    assert!(
        matches!(right, Err(AppError::TooManyAttempts(secs)) if (1..=180).contains(&secs)),
        "{right:?}"
    );
    assert_eq!(
        password_checks_performed() - before,
        checks,
        "refusals check nothing"
    );
    assert!(session::Entity::find().all(&t.db).await.unwrap().is_empty());

    // An address without an account answers the same way, step for step.
    for i in 0..5 {
        let answer = sign_in(
            &t.db,
            &limits,
            "203.0.113.8",
            "nobody@example.com",
            &format!("x{i}"),
        )
        .await;
        assert_eq!(answer, Err(wrong.clone()));
    }
    assert!(matches!(
        sign_in(
            &t.db,
            &limits,
            "203.0.113.8",
            "nobody@example.com",
            PASSWORD
        )
        .await,
        Err(AppError::TooManyAttempts(_))
    ));

    // Attempts come back one per three minutes: a trickle never locks the owner out,
    // and the owner's success forgets what the guessers spent.
    let_time_pass(&t.db, "sign-in:email:owner@example.com", 181).await;
    let user = sign_in(&t.db, &limits, "203.0.113.7", "owner@example.com", PASSWORD)
        .await
        .expect("one attempt is back after three minutes");
    assert_eq!(user.email, "owner@example.com");
    for i in 0..5 {
        assert_eq!(
            sign_in(
                &t.db,
                &limits,
                "203.0.113.9",
                "owner@example.com",
                &format!("again {i}")
            )
            .await,
            Err(wrong.clone()),
            "a full budget again after the owner signed in"
        );
    }
}

#[tokio::test]
async fn one_client_address_is_bounded_across_email_addresses() {
    let t = test_db().await;
    let limits = AuthLimits::default();
    // Malformed addresses cost no password check but still spend the client's budget.
    for i in 0..limits.sign_ins_per_client.burst {
        let answer = sign_in(&t.db, &limits, "198.51.100.1", &format!("bad{i}"), "x").await;
        assert!(
            matches!(answer, Err(AppError::InvalidInput(_))),
            "{answer:?}"
        );
    }
    assert!(matches!(
        sign_in(&t.db, &limits, "198.51.100.1", "bad", "x").await,
        Err(AppError::TooManyAttempts(_))
    ));
    assert!(matches!(
        sign_in(&t.db, &limits, "198.51.100.2", "bad", "x").await,
        Err(AppError::InvalidInput(_))
    ));
}

#[tokio::test]
async fn sign_ups_are_bounded_per_client_address() {
    let t = test_db().await;
    let limits = AuthLimits::default();
    let burst = limits.sign_ups_per_client.burst;
    let sign_ups = (0..burst + 3).map(|i| {
        let db = t.db.clone();
        tokio::spawn(async move {
            sign_up_from(
                &db,
                &limits,
                "198.51.100.3",
                &format!("new{i}@example.com"),
                PASSWORD,
            )
            .await
        })
    });
    let answers = futures::future::join_all(sign_ups).await;
    let made = answers
        .iter()
        .filter(|a| a.as_ref().unwrap().is_ok())
        .count();
    let refused = answers
        .iter()
        .filter(|a| matches!(a.as_ref().unwrap(), Err(AppError::TooManyAttempts(_))))
        .count();
    assert_eq!((made, refused), (burst as usize, 3));
    sign_up_from(
        &t.db,
        &limits,
        "198.51.100.4",
        "other@example.com",
        PASSWORD,
    )
    .await
    .expect("another address has its own budget");
    // Bad input is refused before it spends anything.
    assert!(matches!(
        sign_up_from(&t.db, &limits, "198.51.100.4", "not-an-email", PASSWORD).await,
        Err(AppError::InvalidInput(_))
    ));
}

/// The server deletes full budgets now and then (`purge_refilled_budgets`), while
/// requests spend them. A purge that runs just after an attempt's budget row is written
/// — played here by a trigger that purges after every write — must not turn that
/// attempt away: before the fix, the first sign-up after a server start was often refused
/// with "too many attempts".
#[tokio::test]
async fn a_purge_of_full_budgets_at_any_moment_refuses_no_attempt() {
    let t = test_db().await;
    let now = nodebase::db::now_ms();
    let purge = format!("DELETE FROM auth_throttle WHERE refilled_at <= {now}");
    let statements = match t.db.get_database_backend() {
        sea_orm::DbBackend::Postgres => vec![
            format!(
                "CREATE FUNCTION purge_now() RETURNS trigger AS $$ BEGIN {purge}; \
                 RETURN NULL; END $$ LANGUAGE plpgsql"
            ),
            "CREATE TRIGGER purge_now AFTER INSERT OR UPDATE ON auth_throttle \
             FOR EACH STATEMENT EXECUTE FUNCTION purge_now()"
                .to_string(),
        ],
        _ => vec![format!(
            "CREATE TRIGGER purge_now AFTER INSERT ON auth_throttle BEGIN {purge}; END"
        )],
    };
    for sql in statements {
        t.db.execute_unprepared(&sql).await.unwrap();
    }
    let limits = AuthLimits::default();
    for i in 0..3 {
        sign_up_from(
            &t.db,
            &limits,
            "198.51.100.9",
            &format!("purged{i}@example.com"),
            PASSWORD,
        )
        .await
        .unwrap_or_else(|e| panic!("sign-up {i} was refused: {e:?}"));
    }
}

/// A PostgreSQL server on this machine is reached in the clear unless the URL names a
/// TLS mode, and a named mode is obeyed (checked from the server's side).
#[tokio::test]
async fn a_server_on_this_machine_is_reached_without_tls_unless_the_url_names_a_mode() {
    let t = test_db().await;
    if t.db.get_database_backend() != sea_orm::DbBackend::Postgres {
        println!("PostgreSQL only: SQLite has no connection to encrypt");
        return;
    }
    assert!(nodebase::db::tls_is_pointless(&t.url), "{}", t.url);
    assert!(
        !nodebase::db::encrypted(&t.db).await.unwrap(),
        "a loopback connection used TLS"
    );

    let server =
        t.db.query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SHOW ssl",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<String>(0)
        .unwrap();
    let sep = if t.url.contains('?') { '&' } else { '?' };
    let asked = nodebase::db::connect(&format!("{}{sep}sslmode=prefer", t.url))
        .await
        .unwrap();
    assert_eq!(
        nodebase::db::encrypted(&asked).await.unwrap(),
        server == "on",
        "sslmode=prefer against a server with ssl = {server}"
    );
}
