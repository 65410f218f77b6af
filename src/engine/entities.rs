//! The engine's tables as SeaORM entities. Times are Unix milliseconds.

/// A recorded event.
pub mod event {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "event")]
    pub struct Model {
        /// A UUIDv7, so ids sort by time.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        /// The payload, as JSON text.
        pub data: String,
        pub user_id: Option<String>,
        /// `<length of user id>:<user id>:<key>`: keys are per user.
        pub idempotency_key: Option<String>,
        pub ts: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(has_many = "super::run::Entity")]
        Run,
    }

    impl Related<super::run::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Run.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// One execution of a function for one event.
pub mod run {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "run")]
    pub struct Model {
        /// A UUIDv7, so ids sort by time.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub function_id: String,
        pub event_id: String,
        /// Copied from the event, for scoping without a join.
        pub user_id: Option<String>,
        pub status: crate::domain::RunStatus,
        /// When a queued run may start, or a sleeping run wakes.
        pub due_at: i64,
        pub locked_by: Option<String>,
        pub lease_until: Option<i64>,
        /// How many times a worker has claimed the run; a claim's number fences its
        /// writes (see `progress::RunRef::claim`).
        pub claims: i32,
        /// Claims since the run last recorded progress (reset by every recorded step
        /// or move); too many fail the run (`EngineConfig::max_stalled_claims`).
        pub stalled_claims: i32,
        /// Failed attempts of the handler outside any step.
        pub attempts: i32,
        /// The handler's return value, as JSON text.
        pub output: Option<String>,
        pub error: Option<String>,
        /// The run this one re-ran, if any.
        pub rerun_of: Option<String>,
        /// The run whose `step.invoke` started this one, if any: it hears of this
        /// run's end.
        pub invoked_by: Option<String>,
        /// Who cancelled it, if it was cancelled and the canceller said.
        pub cancelled_by: Option<String>,
        /// Its key for its function's first concurrency limit (`""` for a limit on the
        /// whole function); `None` for a function without limits.
        pub concurrency_key: Option<String>,
        /// Its key for the second limit, if there is one.
        pub concurrency_key_2: Option<String>,
        /// For a run of a debounced function: its debounce key, scoped to its user
        /// (`<length of user id>:<user id>:<key>`). While the run has not started, a new
        /// event for the key replaces its event and pushes its start back.
        pub debounce_key: Option<String>,
        /// For a run of a throttled function: its throttle key (`""` for a throttle on
        /// the whole function). Its first start counts in the key's window.
        pub throttle_key: Option<String>,
        /// For a run of a rate-limited function: its rate-limit key (`""` for a limit on
        /// the whole function). Counted, unless skipped, in its key's window.
        pub rate_key: Option<String>,
        /// Its place in the plain claim's order, on the fair clock of `fairness`.
        pub fair_at: i64,
        /// For a run of a batched function whose batch is still open: its batch key,
        /// scoped to its user; cleared when the batch is full.
        pub batch_key: Option<String>,
        /// Events in its batch (0 for a run of a function that does not batch).
        pub batch_size: i32,
        /// The span that created the run, as a W3C `traceparent`, when traces are
        /// exported: its invocations' spans are that span's children.
        pub trace_parent: Option<String>,
        pub created_at: i64,
        pub started_at: Option<i64>,
        pub ended_at: Option<i64>,
        pub updated_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::event::Entity",
            from = "Column::EventId",
            to = "super::event::Column::Id",
            on_delete = "Cascade"
        )]
        Event,
        #[sea_orm(has_many = "super::step::Entity")]
        Step,
    }

    impl Related<super::event::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Event.def()
        }
    }

    impl Related<super::step::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Step.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// A step of a run: its memoized output, or its attempts so far.
pub mod step {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "step")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub run_id: String,
        /// The id given in the handler, with `:n` added when repeated in a run.
        #[sea_orm(primary_key, auto_increment = false)]
        pub step_id: String,
        /// The id as written in the handler.
        pub name: String,
        pub kind: crate::domain::StepKind,
        pub status: crate::domain::StepStatus,
        /// Order of first appearance in the handler.
        pub position: i32,
        pub attempts: i32,
        pub output: Option<String>,
        /// The last attempt's error.
        pub error: Option<String>,
        /// Every failed attempt's error, as a JSON array of strings.
        pub errors: String,
        pub started_at: i64,
        pub ended_at: Option<i64>,
        /// When a sleep ends.
        pub wake_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::run::Entity",
            from = "Column::RunId",
            to = "super::run::Column::Id",
            on_delete = "Cascade"
        )]
        Run,
    }

    impl Related<super::run::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Run.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// A run's wait for an event (`step.wait_for_event`): open until an event matches it or
/// it expires.
pub mod wait {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "wait")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub run_id: String,
        /// The wait step's key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub step_id: String,
        /// The run's user id, or `""`: only that user's events match.
        pub user_key: String,
        pub event_name: String,
        /// `<field>=<JSON value>`: the new event's field must have the value the
        /// waiting run's event has.
        pub match_key: Option<String>,
        /// A CEL expression over `event` (the waiting run's) and `async` (the new one).
        pub condition: Option<String>,
        /// Events sent at or after this time match (the wait's start minus its lookback).
        pub window_start: i64,
        pub expires_at: i64,
        /// `open`, `matched`, `timed_out` or `cancelled`.
        pub status: String,
        /// The event that matched.
        pub event_id: Option<String>,
        pub created_at: i64,
        pub ended_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// An event some function may wait for, kept for the longest lookback; `pending` until
/// the matcher has compared it with the open waits.
pub mod awaited_event {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "awaited_event")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        pub name: String,
        pub user_key: String,
        pub ts: i64,
        pub pending: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// An event a rate-limited function did not run for: what the run would have been, and
/// why it was skipped. Deleted with its event.
pub mod skipped_run {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "skipped_run")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub event_id: String,
        pub function_id: String,
        pub user_id: Option<String>,
        /// "over the rate limit of 1 run per 60s per event.user_id".
        pub reason: String,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// One event of a batch run (`Function::batch`), at its position in the batch.
pub mod batch_event {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "batch_event")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub run_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub position: i32,
        pub event_id: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
