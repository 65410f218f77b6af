//! Creating accounts and checking passwords, each behind attempt budgets that are spent
//! before any password work is done (see `throttle`).
//!
//! Sign-in spends from two budgets: the client address's and the email address's. The
//! email budget exists for every address typed, with or without an account, so being
//! refused says nothing about who has an account; an unknown address costs one
//! password check, like a wrong password. Sign-up spends from the client address's
//! budget and then says plainly when an address is taken: whether an address has an
//! account can be learnt only at that budget's pace.
use std::sync::LazyLock;
use std::time::Duration;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, SqlErr,
};

use super::password;
use super::throttle::{self, Budget};
use crate::db::now_ms;
use crate::domain::SignedInUser;
use crate::entities::user;
use crate::error::AppError;

/// The budgets that bound guessing and sign-ups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthLimits {
    /// Sign-in attempts for one email address, from anywhere.
    pub sign_ins_per_email: Budget,
    /// Sign-in attempts from one client address, for any email (a success gives its
    /// attempt back, so many people behind one address can sign in).
    pub sign_ins_per_client: Budget,
    /// New accounts from one client address.
    pub sign_ups_per_client: Budget,
}

impl Default for AuthLimits {
    fn default() -> Self {
        AuthLimits {
            sign_ins_per_email: Budget {
                burst: 5,
                every: Duration::from_secs(180),
            },
            sign_ins_per_client: Budget {
                burst: 20,
                every: Duration::from_secs(30),
            },
            sign_ups_per_client: Budget {
                burst: 20,
                every: Duration::from_secs(180),
            },
        }
    }
}

/// A PHC string that matches no password: checked when the email is unknown, so that a
/// wrong email costs as long as a wrong password and does not reveal who has an account.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    argon2::Argon2::default()
        .hash_password(b"nodebase-no-such-user", &SaltString::generate(&mut OsRng))
        .map(|h| h.to_string())
        .unwrap_or_default()
});

impl From<user::Model> for SignedInUser {
    fn from(u: user::Model) -> Self {
        SignedInUser {
            id: u.id,
            email: u.email,
        }
    }
}

fn normalize_email(email: &str) -> Result<String, AppError> {
    let email = email.trim().to_lowercase();
    if email.len() > 254 || !email_address::EmailAddress::is_valid(&email) {
        return Err(AppError::InvalidInput(format!(
            "{email:?} is not a valid email address"
        )));
    }
    Ok(email)
}

fn check_password_rules(password: &str) -> Result<(), AppError> {
    let chars = password.chars().count();
    if chars < 8 {
        return Err(AppError::InvalidInput(
            "the password must be at least 8 characters long".into(),
        ));
    }
    if chars > 128 {
        return Err(AppError::InvalidInput(
            "the password must be at most 128 characters long".into(),
        ));
    }
    Ok(())
}

/// Creates an account for a request from `client` (its address). A taken email or a
/// weak password is an `InvalidInput`; past the client's sign-up budget,
/// `TooManyAttempts`.
pub async fn sign_up(
    db: &impl ConnectionTrait,
    limits: &AuthLimits,
    client: &str,
    email: &str,
    password: &str,
) -> Result<SignedInUser, AppError> {
    let email = normalize_email(email)?;
    check_password_rules(password)?;
    throttle::spend(
        db,
        &format!("sign-up:client:{client}"),
        limits.sign_ups_per_client,
        now_ms(),
    )
    .await?;
    let taken = user::Entity::find()
        .filter(user::Column::Email.eq(&email))
        .one(db)
        .await?
        .is_some();
    if taken {
        return Err(AppError::InvalidInput(format!(
            "an account for {email} already exists"
        )));
    }
    let password_hash = password::hash(password.to_string()).await?;
    let inserted = user::ActiveModel {
        id: Set(cuid2::create_id()),
        email: Set(email.clone()),
        password_hash: Set(password_hash),
        created_at: Set(now_ms()),
    }
    .insert(db)
    .await;
    match inserted {
        Ok(user) => Ok(user.into()),
        // Two sign-ups for one email racing: the unique index decides.
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => Err(
            AppError::InvalidInput(format!("an account for {email} already exists")),
        ),
        Err(e) => Err(e.into()),
    }
}

/// Checks an email and password sent from `client`. Wrong credentials give one message
/// whichever was wrong; once a budget is spent, `TooManyAttempts` — before, and
/// instead of, any password check.
pub async fn sign_in(
    db: &impl ConnectionTrait,
    limits: &AuthLimits,
    client: &str,
    email: &str,
    password: &str,
) -> Result<SignedInUser, AppError> {
    let wrong = || AppError::InvalidInput("wrong email or password".into());
    let now = now_ms();
    let client_key = format!("sign-in:client:{client}");
    throttle::spend(db, &client_key, limits.sign_ins_per_client, now).await?;
    let Ok(email) = normalize_email(email) else {
        return Err(wrong());
    };
    let email_key = format!("sign-in:email:{email}");
    throttle::spend(db, &email_key, limits.sign_ins_per_email, now).await?;

    let Some(user) = user::Entity::find()
        .filter(user::Column::Email.eq(&email))
        .one(db)
        .await?
    else {
        password::verify(password.to_string(), DUMMY_HASH.clone()).await?;
        return Err(wrong());
    };
    if !password::verify(password.to_string(), user.password_hash.clone()).await? {
        return Err(wrong());
    }
    // The owner is in: what guessers spent of this address is forgotten, and the
    // client's attempt comes back.
    throttle::reset(db, &email_key).await?;
    throttle::refund(db, &client_key, limits.sign_ins_per_client).await?;
    Ok(user.into())
}
