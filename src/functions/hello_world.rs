//! `hello-world`: the reference chapter's background job. It stands in for slow work —
//! fetch a video, turn it into text, summarise it with an AI model — with three durable
//! one-second sleeps, then creates a workflow for the user who asked.
use std::time::Duration;

use sea_orm::{DatabaseConnection, EntityTrait};
use serde_json::json;

use crate::engine::{FnError, Function};
use crate::entities::user;
use crate::workflows::{self, HelloWorldRequested};

/// The name of the workflow it creates.
pub const WORKFLOW_NAME: &str = "workflow-from-inngest";

/// The function, writing through the engine's `DatabaseConnection` state.
pub fn function() -> Function {
    Function::new("hello-world", move |ctx| {
        async move {
            let db = ctx.state::<DatabaseConnection>()?;
            ctx.step
                .sleep("비디오 가져오기", Duration::from_secs(1))
                .await?;
            ctx.step
                .sleep("비디오 → 텍스트 변환", Duration::from_secs(1))
                .await?;
            ctx.step
                .sleep("OpenAI로 전송해서 요약/분석", Duration::from_secs(1))
                .await?;
            let user_id = HelloWorldRequested::owner(&ctx.event)
                .ok_or_else(|| FnError::non_retriable("the event belongs to no user"))?
                .to_string();
            let workflow = ctx
                .step
                .run_keyed("create-workflow", None, |key| async move {
                    // No retry can create a workflow for a user who no longer exists.
                    if user::Entity::find_by_id(user_id.clone())
                        .one(db)
                        .await?
                        .is_none()
                    {
                        return Err(FnError::non_retriable("the event's user no longer exists"));
                    }
                    // The id comes from the step's key: a repeat of this step (after a
                    // crash before its record) finds the workflow it made the first time.
                    let id = workflows::id_from_key(&key);
                    let workflow =
                        workflows::create_once(db, &id, &user_id, WORKFLOW_NAME).await?;
                    Ok(json!({ "id": workflow.id, "name": workflow.name }))
                })
                .await?;
            Ok(json!({ "workflow": workflow }))
        }
    })
    .describe("The chapter's job: three one-second durable sleeps, then a workflow for the user who asked.")
    .trigger(HelloWorldRequested::NAME)
    .retries(5)
}
