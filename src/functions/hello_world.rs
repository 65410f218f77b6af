//! `hello-world`: the reference chapter's background job. It stands in for slow work —
//! fetch a video, turn it into text, summarise it with an AI model — with three durable
//! one-second sleeps, then creates a workflow for the user who asked.
use std::time::Duration;

use sea_orm::{DatabaseConnection, EntityTrait};
use serde_json::{json, Value};

use crate::api::workflows::ssr::create;
use crate::engine::{FnError, Function};
use crate::entities::user;

/// The event that starts it.
pub const EVENT: &str = "test/hello.world";
/// The name of the workflow it creates.
pub const WORKFLOW_NAME: &str = "workflow-from-inngest";

/// The function, writing through `db`.
pub fn function(db: DatabaseConnection) -> Function {
    Function::new("hello-world", move |ctx| {
        let db = db.clone();
        async move {
            ctx.step
                .sleep("비디오 가져오기", Duration::from_secs(1))
                .await?;
            ctx.step
                .sleep("비디오 → 텍스트 변환", Duration::from_secs(1))
                .await?;
            ctx.step
                .sleep("OpenAI로 전송해서 요약/분석", Duration::from_secs(1))
                .await?;
            let user_id = user_id(&ctx.event.data)?;
            let workflow = ctx
                .step
                .run("create-workflow", || async move {
                    // No retry can create a workflow for a user who does not exist.
                    if user::Entity::find_by_id(user_id.clone())
                        .one(&db)
                        .await?
                        .is_none()
                    {
                        return Err(FnError::non_retriable(format!(
                            "there is no user {user_id:?}"
                        )));
                    }
                    let workflow = create(&db, &user_id, WORKFLOW_NAME)
                        .await
                        .map_err(FnError::failed)?;
                    Ok(json!({ "id": workflow.id, "name": workflow.name }))
                })
                .await?;
            Ok(json!({ "workflow": workflow }))
        }
    })
    .trigger(EVENT)
    .retries(5)
}

fn user_id(data: &Value) -> Result<String, FnError> {
    data.get("userId")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| FnError::non_retriable("the event has no userId"))
}
