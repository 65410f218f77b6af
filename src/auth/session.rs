//! Session tokens: 32 random bytes in an HttpOnly cookie; the database keeps only their
//! SHA-256, so a leaked database cannot be replayed as cookies.
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use cookie::{Cookie, SameSite};
use http::HeaderMap;
use rand::RngCore;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use sha2::{Digest, Sha256};

use crate::db::now_ms;
use crate::entities::{session, user};
use crate::error::AppError;

/// The session cookie's name. Served over HTTPS (`secure`) it has the `__Host-` prefix:
/// browsers then accept it only with `Secure`, `Path=/` and no `Domain`, so no other
/// host — a sibling subdomain, a plain-HTTP page on the same name — can set or replace it.
pub fn cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-nodebase_session"
    } else {
        "nodebase_session"
    }
}

fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts a session for `user_id` and returns the token to put in the cookie.
pub async fn create_session(
    db: &impl ConnectionTrait,
    user_id: &str,
    ttl: Duration,
) -> Result<String, AppError> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let now = now_ms();
    session::ActiveModel {
        token_hash: Set(token_hash(&token)),
        user_id: Set(user_id.to_string()),
        expires_at: Set(now + ttl.as_millis() as i64),
        created_at: Set(now),
    }
    .insert(db)
    .await?;
    Ok(token)
}

/// The user a live session token belongs to, if any.
pub async fn user_for_token(
    db: &impl ConnectionTrait,
    token: &str,
) -> Result<Option<user::Model>, AppError> {
    let found = session::Entity::find_by_id(token_hash(token))
        .filter(session::Column::ExpiresAt.gt(now_ms()))
        .find_also_related(user::Entity)
        .one(db)
        .await?;
    Ok(found.and_then(|(_, user)| user))
}

/// Ends the session behind `token` (nothing happens if there is none).
pub async fn delete_session(db: &impl ConnectionTrait, token: &str) -> Result<(), AppError> {
    session::Entity::delete_many()
        .filter(session::Column::TokenHash.eq(token_hash(token)))
        .exec(db)
        .await?;
    Ok(())
}

/// Deletes every session that has expired; returns how many.
pub async fn purge_expired_sessions(db: &impl ConnectionTrait) -> Result<u64, AppError> {
    let deleted = session::Entity::delete_many()
        .filter(session::Column::ExpiresAt.lte(now_ms()))
        .exec(db)
        .await?;
    Ok(deleted.rows_affected)
}

/// The session token carried by a request's `Cookie` headers (`secure` as for
/// `cookie_name`).
pub fn token_from_headers(headers: &HeaderMap, secure: bool) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == cookie_name(secure))
        .map(|c| c.value().to_string())
}

/// The `Set-Cookie` value that stores a session token in the browser.
pub fn session_cookie(token: &str, ttl: Duration, secure: bool) -> String {
    Cookie::build((cookie_name(secure), token.to_string()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(cookie::time::Duration::seconds(ttl.as_secs() as i64))
        .build()
        .to_string()
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    Cookie::build((cookie_name(secure), ""))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(cookie::time::Duration::ZERO)
        .build()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_https_the_cookie_is_host_prefixed_and_secure() {
        let ttl = Duration::from_secs(60);
        let secure = session_cookie("t0ken", ttl, true);
        assert!(
            secure.starts_with("__Host-nodebase_session=t0ken"),
            "{secure}"
        );
        for part in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
            assert!(secure.contains(part), "{part} in {secure}");
        }
        assert!(!secure.contains("Domain"), "{secure}");
        let plain = session_cookie("t0ken", ttl, false);
        assert!(plain.starts_with("nodebase_session=t0ken") && !plain.contains("Secure"));

        // Each setting reads only its own cookie name.
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            "nodebase_session=plain; __Host-nodebase_session=host"
                .parse()
                .unwrap(),
        );
        assert_eq!(token_from_headers(&headers, true).as_deref(), Some("host"));
        assert_eq!(
            token_from_headers(&headers, false).as_deref(),
            Some("plain")
        );
        assert!(clear_cookie(true).starts_with("__Host-nodebase_session=;"));
    }
}
