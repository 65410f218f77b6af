//! The workflow domain: a user's workflows, and the event that asks for the slow work
//! done for them in the background. Used by the server functions and by the background
//! functions alike, so that neither reaches into the other.
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde::{Deserialize, Serialize};

use crate::db::now_ms;
use crate::domain::SignedInUser;
use crate::engine::{Event, NewEvent};
use crate::entities::workflow;

/// The name of the workflow a click on "워크플로우 생성" creates at once.
pub const FIRST_WORKFLOW_NAME: &str = "test-workflow";

/// `user_id`'s newest `limit` workflows, newest first.
pub async fn list_for_user(
    db: &impl ConnectionTrait,
    user_id: &str,
    limit: u64,
) -> Result<Vec<workflow::Model>, DbErr> {
    workflow::Entity::find()
        .filter(workflow::Column::UserId.eq(user_id))
        .order_by_desc(workflow::Column::CreatedAt)
        .order_by_desc(workflow::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// Inserts a workflow named `name` for `user_id`.
pub async fn create(
    db: &impl ConnectionTrait,
    user_id: &str,
    name: &str,
) -> Result<workflow::Model, DbErr> {
    workflow::ActiveModel {
        id: Set(cuid2::create_id()),
        name: Set(name.to_string()),
        user_id: Set(user_id.to_string()),
        created_at: Set(now_ms()),
    }
    .insert(db)
    .await
}

/// Creates the workflow with id `id` for `user_id` unless it exists, and returns it:
/// a background step that runs again (after a crash between its insert and its record)
/// creates nothing new.
pub async fn create_once(
    db: &impl ConnectionTrait,
    id: &str,
    user_id: &str,
    name: &str,
) -> Result<workflow::Model, DbErr> {
    let row = workflow::ActiveModel {
        id: Set(id.to_string()),
        name: Set(name.to_string()),
        user_id: Set(user_id.to_string()),
        created_at: Set(now_ms()),
    };
    workflow::Entity::insert(row)
        .on_conflict(
            OnConflict::column(workflow::Column::Id)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    workflow::Entity::find_by_id(id.to_string())
        .filter(workflow::Column::UserId.eq(user_id))
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("workflow {id} of user {user_id}")))
}

/// A workflow id made from an idempotency key (like a step's key): the same key always
/// gives the same id, shaped like the ids `create` gives (lowercase, letter first).
pub fn id_from_key(key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("w{}", &hex[..24])
}

/// `test/hello.world`: a user asked for the slow work on a new workflow. The event
/// belongs to that user (the server records who sent it); the payload only describes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloWorldRequested {
    pub email: String,
    pub user_id: String,
}

impl HelloWorldRequested {
    /// The event's name.
    pub const NAME: &'static str = "test/hello.world";

    /// The event for `user`, owned by them.
    pub fn event(user: &SignedInUser) -> NewEvent {
        let data = HelloWorldRequested {
            email: user.email.clone(),
            user_id: user.id.clone(),
        };
        let data = serde_json::to_value(data).unwrap_or_default();
        NewEvent::new(Self::NAME, data).for_user(&user.id)
    }

    /// The user a run of this event acts for: the event's recorded owner, never an id
    /// the payload names (anyone may send any payload from the Events page).
    pub fn owner(event: &Event) -> Option<&str> {
        event.user_id.as_deref()
    }
}
