//! The signed-in user's workflows.
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// A workflow as the home page lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowView {
    pub id: String,
    pub name: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// The signed-in user's workflows, newest first.
#[server(endpoint = "get_workflows")]
pub async fn get_workflows() -> Result<Vec<WorkflowView>, AppError> {
    let user = crate::auth::require_user().await?;
    let state = super::app_state()?;
    ssr::list_for_user(&state.db, &user.id).await
}

/// Creates a workflow named `test-workflow` for the signed-in user and, in the same
/// transaction, sends `test/hello.world` so that the slow part happens in the background.
#[server(endpoint = "create_workflow")]
pub async fn create_workflow() -> Result<WorkflowView, AppError> {
    use sea_orm::TransactionTrait;

    let user = crate::auth::require_user().await?;
    let state = super::app_state()?;
    let txn = state.db.begin().await?;
    let workflow = ssr::create(&txn, &user.id, "test-workflow").await?;
    let event = crate::engine::NewEvent::new(
        crate::functions::hello_world::EVENT,
        serde_json::json!({ "email": user.email, "userId": user.id }),
    )
    .for_user(&user.id);
    state
        .engine
        .send(&txn, event)
        .await
        .map_err(|e| AppError::Server(e.to_string()))?;
    txn.commit().await?;
    Ok(workflow)
}

/// Workflow queries; pages reach them only through the server functions above.
#[cfg(feature = "ssr")]
pub mod ssr {
    use sea_orm::{
        ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
    };

    use super::WorkflowView;
    use crate::db::now_ms;
    use crate::entities::workflow;
    use crate::error::AppError;

    impl From<workflow::Model> for WorkflowView {
        fn from(w: workflow::Model) -> Self {
            WorkflowView {
                id: w.id,
                name: w.name,
                created_at: w.created_at,
            }
        }
    }

    /// `user_id`'s workflows, newest first.
    pub async fn list_for_user(
        db: &impl ConnectionTrait,
        user_id: &str,
    ) -> Result<Vec<WorkflowView>, AppError> {
        let rows = workflow::Entity::find()
            .filter(workflow::Column::UserId.eq(user_id))
            .order_by_desc(workflow::Column::CreatedAt)
            .order_by_desc(workflow::Column::Id)
            .all(db)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Inserts a workflow named `name` for `user_id`.
    pub async fn create(
        db: &impl ConnectionTrait,
        user_id: &str,
        name: &str,
    ) -> Result<WorkflowView, AppError> {
        let row = workflow::ActiveModel {
            id: Set(cuid2::create_id()),
            name: Set(name.to_string()),
            user_id: Set(user_id.to_string()),
            created_at: Set(now_ms()),
        }
        .insert(db)
        .await?;
        Ok(row.into())
    }
}
