//! Accounts, sessions and workflow queries on a real database.
#![cfg(feature = "ssr")]

mod common;

use std::time::Duration;

use common::{sign_in, sign_up, test_db};
use nodebase::auth::{create_session, delete_session, purge_expired_sessions, user_for_token};
use nodebase::entities::{session, user};
use nodebase::error::AppError;
use nodebase::workflows::{create, list_for_user};
use sea_orm::EntityTrait;

const PASSWORD: &str = "correct horse battery";

#[tokio::test]
async fn sign_up_normalizes_the_email_and_stores_only_a_hash() {
    let t = test_db().await;
    let user = sign_up(&t.db, "  Ada@Example.COM ", PASSWORD)
        .await
        .unwrap();
    assert_eq!(user.email, "ada@example.com");
    let row = user::Entity::find_by_id(user.id.clone())
        .one(&t.db)
        .await
        .unwrap()
        .unwrap();
    assert!(
        row.password_hash.starts_with("$argon2id$"),
        "{}",
        row.password_hash
    );
    assert!(!row.password_hash.contains(PASSWORD));
    assert_eq!(
        sign_in(&t.db, "ADA@example.com", PASSWORD)
            .await
            .unwrap()
            .id,
        user.id
    );
}

#[tokio::test]
async fn sign_up_refuses_bad_input_with_a_clear_message() {
    let t = test_db().await;
    sign_up(&t.db, "taken@example.com", PASSWORD).await.unwrap();
    let cases = [
        ("taken@example.com", PASSWORD, "already exists"),
        ("not-an-email", PASSWORD, "not a valid email address"),
        ("short@example.com", "short", "at least 8 characters"),
    ];
    for (email, password, expected) in cases {
        match sign_up(&t.db, email, password).await {
            Err(AppError::InvalidInput(message)) => {
                assert!(message.contains(expected), "{email}: {message}")
            }
            other => panic!("{email}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn sessions_are_found_by_token_until_they_expire_or_end() {
    let t = test_db().await;
    let user = sign_up(&t.db, "session@example.com", PASSWORD)
        .await
        .unwrap();
    let token = create_session(&t.db, &user.id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        user_for_token(&t.db, &token).await.unwrap().unwrap().id,
        user.id
    );
    assert!(user_for_token(&t.db, "forged").await.unwrap().is_none());
    // Only the hash is stored.
    let stored = session::Entity::find().one(&t.db).await.unwrap().unwrap();
    assert_ne!(stored.token_hash, token);

    delete_session(&t.db, &token).await.unwrap();
    assert!(user_for_token(&t.db, &token).await.unwrap().is_none());

    let expired = create_session(&t.db, &user.id, Duration::ZERO)
        .await
        .unwrap();
    assert!(user_for_token(&t.db, &expired).await.unwrap().is_none());

    // Expired sessions are purged; live ones stay.
    let live = create_session(&t.db, &user.id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(purge_expired_sessions(&t.db).await.unwrap(), 1);
    assert_eq!(session::Entity::find().all(&t.db).await.unwrap().len(), 1);
    assert!(user_for_token(&t.db, &live).await.unwrap().is_some());
}

#[tokio::test]
async fn workflows_are_listed_per_user_newest_first() {
    let t = test_db().await;
    let ada = sign_up(&t.db, "ada@example.com", PASSWORD).await.unwrap();
    let bob = sign_up(&t.db, "bob@example.com", PASSWORD).await.unwrap();
    let first = create(&t.db, &ada.id, "first").await.unwrap();
    tokio::time::sleep(Duration::from_millis(2)).await;
    let second = create(&t.db, &ada.id, "second").await.unwrap();
    create(&t.db, &bob.id, "bob's").await.unwrap();

    let listed = list_for_user(&t.db, &ada.id, 1000).await.unwrap();
    let names: Vec<&str> = listed.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, vec!["second", "first"]);
    assert_eq!(listed[1].id, first.id);
    assert_eq!(listed[0].id, second.id);
    // cuid-style ids: lowercase letters and digits, starting with a letter.
    assert!(
        first.id.len() >= 20
            && first
                .id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    );
    assert!(first.id.chars().next().unwrap().is_ascii_lowercase());
    assert_eq!(list_for_user(&t.db, &bob.id, 1000).await.unwrap().len(), 1);
}
