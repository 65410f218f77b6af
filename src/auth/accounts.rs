//! Creating accounts and checking passwords, with a lockout after repeated failures.
use std::sync::LazyLock;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, SqlErr,
};

use super::password;
use crate::db::now_ms;
use crate::domain::SignedInUser;
use crate::entities::user;
use crate::error::AppError;

/// Failed sign-ins allowed before the account is locked for a while.
const FREE_ATTEMPTS: i32 = 5;
/// The first lockout; each further failure doubles it, up to `MAX_LOCK_MS`.
const BASE_LOCK_MS: i64 = 30_000;
const MAX_LOCK_MS: i64 = 15 * 60_000;

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

/// Creates an account. A taken email or a weak password is an `InvalidInput`.
pub async fn sign_up(
    db: &impl ConnectionTrait,
    email: &str,
    password: &str,
) -> Result<SignedInUser, AppError> {
    let email = normalize_email(email)?;
    check_password_rules(password)?;
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
        failed_sign_ins: Set(0),
        locked_until: Set(None),
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

/// Checks an email and password. Wrong credentials give one message whichever was
/// wrong; after `FREE_ATTEMPTS` failures the account is locked for a growing time.
pub async fn sign_in(
    db: &impl ConnectionTrait,
    email: &str,
    password: &str,
) -> Result<SignedInUser, AppError> {
    let wrong = || AppError::InvalidInput("wrong email or password".into());
    let Ok(email) = normalize_email(email) else {
        return Err(wrong());
    };
    let Some(user) = user::Entity::find()
        .filter(user::Column::Email.eq(&email))
        .one(db)
        .await?
    else {
        password::verify(password.to_string(), DUMMY_HASH.clone()).await?;
        return Err(wrong());
    };

    let now = now_ms();
    if let Some(until) = user.locked_until.filter(|&until| until > now) {
        return Err(AppError::TooManyAttempts(
            ((until - now) as u64).div_ceil(1000),
        ));
    }

    if password::verify(password.to_string(), user.password_hash.clone()).await? {
        if user.failed_sign_ins != 0 || user.locked_until.is_some() {
            let mut active: user::ActiveModel = user.clone().into();
            active.failed_sign_ins = Set(0);
            active.locked_until = Set(None);
            active.update(db).await?;
        }
        return Ok(user.into());
    }

    // Count the failure in the database (not in memory), so the limit holds across
    // processes and restarts.
    let failures = user.failed_sign_ins + 1;
    let locked_until = (failures >= FREE_ATTEMPTS).then(|| {
        let doublings = (failures - FREE_ATTEMPTS).min(10) as u32;
        now + (BASE_LOCK_MS << doublings).min(MAX_LOCK_MS)
    });
    user::Entity::update_many()
        .col_expr(
            user::Column::FailedSignIns,
            sea_orm::ExprTrait::add(Expr::col(user::Column::FailedSignIns), 1),
        )
        .col_expr(user::Column::LockedUntil, Expr::value(locked_until))
        .filter(user::Column::Id.eq(&user.id))
        .exec(db)
        .await?;
    match locked_until {
        Some(until) => Err(AppError::TooManyAttempts(
            ((until - now) as u64).div_ceil(1000),
        )),
        None => Err(wrong()),
    }
}
