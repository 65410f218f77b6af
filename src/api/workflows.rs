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

/// The most workflows the home page lists.
pub const WORKFLOW_LIST_LIMIT: u64 = 100;

/// The signed-in user's newest workflows (at most `WORKFLOW_LIST_LIMIT`), newest first.
#[server(endpoint = "get_workflows")]
pub async fn get_workflows() -> Result<Vec<WorkflowView>, AppError> {
    let user = crate::auth::require_user().await?;
    let state = super::app_state()?;
    let rows = crate::workflows::list_for_user(&state.db, &user.id, WORKFLOW_LIST_LIMIT).await?;
    Ok(rows.into_iter().map(view).collect())
}

/// Creates a workflow named `test-workflow` for the signed-in user and, in the same
/// transaction, sends `test/hello.world` so that the slow part happens in the background.
#[server(endpoint = "create_workflow")]
pub async fn create_workflow() -> Result<WorkflowView, AppError> {
    use sea_orm::TransactionTrait;

    use crate::workflows::{self, HelloWorldRequested, FIRST_WORKFLOW_NAME};

    let user = crate::auth::require_user().await?;
    let state = super::app_state()?;
    super::count_action(&state, &user.id)?;
    let txn = state.db.begin().await?;
    let workflow = workflows::create(&txn, &user.id, FIRST_WORKFLOW_NAME).await?;
    let receipt = state
        .engine
        .send(&txn, HelloWorldRequested::event(&user))
        .await
        .map_err(super::engine_error)?;
    txn.commit().await?;
    state.engine.announce(&[receipt]).await;
    Ok(view(workflow))
}

#[cfg(feature = "ssr")]
fn view(w: crate::entities::workflow::Model) -> WorkflowView {
    WorkflowView {
        id: w.id,
        name: w.name,
        created_at: w.created_at,
    }
}
