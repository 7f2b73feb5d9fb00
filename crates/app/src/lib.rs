//! The application layer of agentgrid: typed commands and queries, each carried out on behalf of
//! an [`Actor`], shared by every face (the CLI today; the control channel, the HTTP API and
//! tracker sync later).
//!
//! A face parses its input into a command or a query, hands it to [`App::execute`] or
//! [`App::ask`] with the actor it speaks for, and renders the typed answer. The rules of the
//! tracker that sit above the store live here, once: which ids, agents and labels a request may
//! name, what cancelling a task does to its sub-tasks, which tasks may be reopened, how a file
//! of task lines is checked before anything is written, and what `status` counts and shows.
//!
//! The principal types:
//! - [`App`]: the store and the clock, cheap to share.
//! - [`Actor`]: who asks — a person, an execution (an agent's call) or the engine. Every command
//!   goes through [`App::execute`] with one, so authorization has one place to live.
//! - [`Command`] and [`Query`]: the commands ([`AddTask`], [`EditTask`], [`Cancel`], [`Reopen`]
//!   (with a person's feedback or without), [`Answer`], [`Nudge`], [`Comment`], [`Import`],
//!   [`AddDependency`], [`RemoveDependency`]) and the queries ([`Status`], [`TaskList`],
//!   [`TaskListPage`], [`TaskShow`], [`Events`], [`Usage`]), each with its own result type.
//! - An agent's control calls: [`ClaimCompletion`], [`Block`], [`CreateSubtask`],
//!   [`RequestApproval`], with [`Comment`] and [`Nudge`]; an execution changes only its own
//!   task (a nudge may name any).
//! - The approval queue: [`DecideApproval`] and [`AskApproval`], [`ApprovalList`] and
//!   [`ApprovalShow`], and [`App::latest_rejection_feedback`] for the next prompt.
//! - [`Error`]: a wrong request ([`Error::Invalid`], which changed nothing) or the store's error.
//!
//! The key design decision: views cost what they show. A query reads counts by SQL aggregate,
//! the newest rows under a limit and the active executions only, never every task and
//! execution ever made, so `status` on a store of 100,000 tasks reads a few dozen rows.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use app::{Actor, AddTask, App, Status};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = store::SqliteStore::open(&dir.path().join("agentgrid.db")).unwrap();
//! let app = App::new(Arc::new(store), Arc::new(domain::SystemClock));
//! let person = Actor::person("ada");
//! let task = app
//!     .execute(&person, AddTask::titled("Add CSV export"))
//!     .await
//!     .unwrap();
//! assert_eq!(task.id, domain::TaskId(1));
//! let status = app.ask(&person, Status::default()).await.unwrap();
//! assert_eq!(status.tasks["open"], 1);
//! # });
//! ```

mod agent_calls;
mod agent_events;
mod approvals;
mod area_leases;
mod blackboard;
mod command;
mod directory;
mod error;
mod escalations;
mod handoffs;
mod import;
mod land;
mod messages;
mod metrics;
mod query;
mod tail;
mod usage;
mod validation;
mod workflow_land;

use std::sync::Arc;

use domain::{Clock, ExecutionId, Timestamp};
use store::Store;

pub use agent_calls::{
    Block, ClaimCompletion, CreateSubtask, RequestApproval, SUBTASK_CREATE as SUBTASK_CREATE_OP,
    Subtask,
};
pub use agent_events::{AgentRecord, AgentSummary, agent_events};
pub use approvals::{
    ApprovalDetail, ApprovalLine, ApprovalList, ApprovalShow, AskApproval, DecideApproval, Decided,
    LandAfter, Question, ValidatorSummary,
};
pub use area_leases::{
    AreaLeaseList, AreaLeaseView, AreaWait, ReleaseAreaLeases, Reserve, SweepAreaLeases,
    TakeAreaLeases, area_waits, parse_area_paths,
};
pub use blackboard::{Blackboard, ReadBlackboard, WriteBlackboard};
pub use command::{
    AddDependency, AddTask, AddTaskWithWorkflow, Answer, Cancel, Cancelled, Comment, EditTask,
    Import, Nudge, RemoveDependency, Reopen,
};
pub use directory::{
    AgencyEntry, COORDINATOR_ROLE, DEFAULT_ESCALATION_DEADLINE, Directory, TOPICS_PER_AGENT,
};
pub use error::Error;
pub use escalations::{
    AnswerEscalation, Answered, Escalate, EscalateOverdue, EscalateUp, Escalated, EscalationList,
};
pub use handoffs::{HandOff, HandedOff, HandoffRecord, OpenHandoff, handoff_text, handoffs_of};
pub use import::parse_import;
pub use land::{CONFLICT_LABEL, Land, LandRequest, Landed, Lander, Prepared, Ready};
pub use messages::{
    AckMessage, INBOX_LIMIT, MessageList, MessageShow, ReadInbox, SendMessage, Sent, SweepMessages,
    inbox_text,
};
pub use metrics::{Metrics, MetricsReport, MetricsRow};
pub use query::{
    ActiveExecution, EngineState, EventPage, Events, ExecutionUsage, ProviderLine, Status,
    StatusView, TaskDetail, TaskList, TaskListPage, TaskPage, TaskShow, Timer, TimerKind,
};
pub use tail::{EventTail, TailEvents};
pub use usage::{Usage, UsageReport, UsageRow, UsageSums};
pub use validation::{Validation, last_failure, of_execution};
pub use workflow_land::{LandWorkflowState, awaited_land};

/// Who a command or query is carried out for. Recorded with every event it causes, and the
/// subject of authorization once there is some.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A person: today the local user of the command line, later the holder of an API token.
    Person { name: String },
    /// An execution's agent, calling through its control socket with the execution's token.
    Execution { id: ExecutionId, agent: String },
    /// agentgrid's own engine.
    Engine,
}

impl Actor {
    pub fn person(name: impl Into<String>) -> Actor {
        Actor::Person { name: name.into() }
    }

    /// The local command line, which has no identity of its own yet: its events say `cli`.
    pub fn command_line() -> Actor {
        Actor::person("cli")
    }

    /// How the store records this actor on the events it causes.
    pub fn recorded_as(&self) -> String {
        match self {
            Actor::Person { name } => name.clone(),
            Actor::Execution { id, agent } => format!("agent:{agent}#{id}"),
            Actor::Engine => "engine".to_owned(),
        }
    }
}

/// A request that changes the tracker, carried out by [`App::execute`].
#[async_trait::async_trait]
pub trait Command: Send {
    type Output: Send;

    /// Checks the request and applies it as one batch of the store's changes, or refuses it
    /// having changed nothing.
    async fn run(self, app: &App, actor: &Actor) -> Result<Self::Output, Error>;
}

/// A request that reads, answered by [`App::ask`].
#[async_trait::async_trait]
pub trait Query: Send {
    type Output: Send;

    async fn run(self, app: &App, actor: &Actor) -> Result<Self::Output, Error>;
}

/// The store and the clock every command and query runs against. Cloning shares both.
#[derive(Clone)]
pub struct App {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// How commands' batches reach the store, when not simply applied once.
    writer: Option<Arc<dyn Writer>>,
    /// Who is who in the agencies, for delivery by role, agency and topic.
    directory: Arc<Directory>,
}

/// How the batches of commands are written, for a face that must do more than apply them
/// once: the engine waits out a database another process holds (it cannot refuse an agent's
/// call for that) and takes what was written into its own view of the tasks.
#[async_trait::async_trait]
pub trait Writer: Send + Sync {
    async fn apply(
        &self,
        store: &dyn Store,
        actor: &str,
        now: Timestamp,
        changes: Vec<store::Change>,
    ) -> Result<store::Applied, store::Error>;
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

impl App {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> App {
        App {
            store,
            clock,
            writer: None,
            directory: Arc::default(),
        }
    }

    /// The same app, knowing the project's agencies, roles and topics.
    pub fn with_directory(self, directory: Arc<Directory>) -> App {
        App { directory, ..self }
    }

    /// The agencies, roles and topics this app knows.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// The same app, writing every command's batch through `writer`.
    pub fn with_writer(self, writer: Arc<dyn Writer>) -> App {
        App {
            writer: Some(writer),
            ..self
        }
    }

    /// The store, for what the application layer does not cover yet.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Carries out `command` for `actor`. The one door every change comes through: this is
    /// where authorization will check the actor against the command.
    pub async fn execute<C: Command>(&self, actor: &Actor, command: C) -> Result<C::Output, Error> {
        command.run(self, actor).await
    }

    /// Answers `query` for `actor`.
    pub async fn ask<Q: Query>(&self, actor: &Actor, query: Q) -> Result<Q::Output, Error> {
        query.run(self, actor).await
    }

    /// The app's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Applies one batch for `actor` at the clock's time. A change the tracker's rules refuse
    /// is named in the words of the request ("creating the task was refused: …"), not by the
    /// store's internal name and position.
    async fn apply(
        &self,
        actor: &Actor,
        changes: Vec<store::Change>,
    ) -> Result<store::Applied, Error> {
        let doing: Vec<&'static str> = changes.iter().map(store::Change::doing).collect();
        match self.apply_batch(actor, changes).await {
            Err(store::Error::Refused { index, reason, .. }) => Err(Error::Refused {
                doing: doing.get(index).copied().unwrap_or("the change"),
                reason,
            }),
            other => Ok(other?),
        }
    }

    /// Applies one batch for `actor` at the clock's time, with the store's own error.
    async fn apply_batch(
        &self,
        actor: &Actor,
        changes: Vec<store::Change>,
    ) -> Result<store::Applied, store::Error> {
        let now = self.now();
        match &self.writer {
            Some(writer) => {
                writer
                    .apply(&*self.store, &actor.recorded_as(), now, changes)
                    .await
            }
            None => self.store.apply(&actor.recorded_as(), now, changes).await,
        }
    }

    /// The task, or a request error naming it.
    async fn find(&self, id: domain::TaskId) -> Result<domain::Task, Error> {
        self.store.task(id).await?.ok_or_else(|| {
            Error::invalid(format!(
                "task #{id} does not exist: see `agentgrid task list`"
            ))
        })
    }
}
