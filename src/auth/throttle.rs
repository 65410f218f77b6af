//! Attempt budgets in the database, spent atomically *before* the work they guard.
//!
//! Each budget allows `burst` attempts at once and gives one back every `every`
//! (the generic cell rate algorithm): one row keeps the time by which every spent
//! attempt has been regained, and spending is a single conditional `UPDATE`, so a
//! burst of parallel requests — from any number of processes — cannot spend more
//! than the budget holds. Attempts come back by themselves: a trickle slower than
//! one per `every` is never refused.
use std::time::Duration;

use sea_orm::sea_query::{Expr, OnConflict};

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use crate::entities::auth_throttle::{self, Column, Entity};
use crate::error::AppError;

/// How many attempts a budget holds and how fast they come back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub burst: u32,
    pub every: Duration,
}

impl Budget {
    fn every_ms(self) -> i64 {
        self.every.as_millis().max(1) as i64
    }

    /// How far ahead of now the refill time may run with an attempt still allowed.
    fn slack_ms(self) -> i64 {
        i64::from(self.burst.max(1) - 1) * self.every_ms()
    }
}

/// Spends one attempt of the budget `key` at `now` (Unix ms), or refuses with
/// `TooManyAttempts(seconds until one is back)`.
///
/// One statement: a new budget's row is written already spent, so that a purge of full
/// budgets ([`purge_refilled`]) can never come between writing the row and spending it.
pub async fn spend(
    db: &impl ConnectionTrait,
    key: &str,
    budget: Budget,
    now: i64,
) -> Result<(), AppError> {
    // refilled_at = max(refilled_at, now) + every, only while within the burst.
    let refilled_at = Expr::col((Entity, Column::RefilledAt));
    let later_of = Expr::case(
        sea_orm::ExprTrait::gt(refilled_at.clone(), now),
        refilled_at.clone(),
    )
    .finally(now);
    let spent = Entity::insert(auth_throttle::ActiveModel {
        key: sea_orm::Set(key.to_string()),
        refilled_at: sea_orm::Set(now + budget.every_ms()),
    })
    .on_conflict(
        OnConflict::column(Column::Key)
            .value(
                Column::RefilledAt,
                sea_orm::ExprTrait::add(Expr::expr(later_of), budget.every_ms()),
            )
            .action_and_where(sea_orm::ExprTrait::lte(
                refilled_at,
                now + budget.slack_ms(),
            ))
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    if spent == 1 {
        return Ok(());
    }
    let refilled_at = Entity::find_by_id(key.to_string())
        .one(db)
        .await?
        .map_or(now, |row| row.refilled_at);
    let wait_ms = (refilled_at - budget.slack_ms() - now).max(1) as u64;
    Err(AppError::TooManyAttempts(wait_ms.div_ceil(1000)))
}

/// Gives back one attempt of `key` (a sign-in that succeeded, say).
pub async fn refund(db: &impl ConnectionTrait, key: &str, budget: Budget) -> Result<(), AppError> {
    Entity::update_many()
        .col_expr(
            Column::RefilledAt,
            sea_orm::ExprTrait::sub(Expr::col(Column::RefilledAt), budget.every_ms()),
        )
        .filter(Column::Key.eq(key))
        .exec(db)
        .await?;
    Ok(())
}

/// Forgets everything spent from `key`.
pub async fn reset(db: &impl ConnectionTrait, key: &str) -> Result<(), AppError> {
    Entity::delete_many()
        .filter(Column::Key.eq(key))
        .exec(db)
        .await?;
    Ok(())
}

/// Deletes the budgets that are full again at `now` (they are the same as no row).
pub async fn purge_refilled(db: &impl ConnectionTrait, now: i64) -> Result<u64, AppError> {
    let deleted = Entity::delete_many()
        .filter(Column::RefilledAt.lte(now))
        .exec(db)
        .await?;
    Ok(deleted.rows_affected)
}
