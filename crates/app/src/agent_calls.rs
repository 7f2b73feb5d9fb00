//! The commands an agent's control calls make (`agentgrid ctl …`), and the one rule about who
//! may make them: an execution speaks only for its own task.
//!
//! The control channel parses a call, names the execution as the [`Actor`] and runs one of
//! these, exactly as the command line runs a person's command, so a change refused to an agent
//! is refused in the same words as to a person, and its events record the execution.

use domain::{ApprovalId, ApprovalSource, NewTask, Task, TaskId};
use store::Change;

use crate::{Actor, App, Command, Error};

/// The op names under which idempotency keys are recorded, as the store keeps them.
pub const SUBTASK_CREATE: &str = "subtask_create";
const COMMENT: &str = "comment";

impl App {
    /// Refuses an execution's change of a task other than its own, or made after it ended.
    /// People and the engine may change any task.
    pub(crate) async fn authorize_task(&self, actor: &Actor, task: TaskId) -> Result<(), Error> {
        let Actor::Execution { id, .. } = actor else {
            return Ok(());
        };
        let execution = self.store.execution(*id).await?;
        match execution {
            Some(e) if e.task_id == task && e.state.is_active() => Ok(()),
            Some(e) if e.task_id == task => Err(Error::invalid(format!(
                "execution #{id} has ended; its token is no longer valid"
            ))),
            Some(e) => Err(Error::invalid(format!(
                "execution #{id} works on task #{} and may not change task #{task}",
                e.task_id
            ))),
            None => Err(Error::invalid(format!("execution #{id} does not exist"))),
        }
    }
}

/// The agent says its task is complete. Recorded as the task's summary; the validators still
/// decide whether it is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimCompletion {
    pub task: TaskId,
    pub summary: String,
}

#[async_trait::async_trait]
impl Command for ClaimCompletion {
    type Output = ();

    async fn run(self, app: &App, actor: &Actor) -> Result<(), Error> {
        if self.summary.trim().is_empty() {
            return Err(Error::invalid(
                "say what was done: --summary must not be empty",
            ));
        }
        app.authorize_task(actor, self.task).await?;
        let change = Change::ClaimCompletion {
            id: self.task,
            summary: self.summary,
        };
        app.apply(actor, vec![change]).await?;
        Ok(())
    }
}

/// The agent needs a person's decision: the reason is recorded on the task now, and the task
/// is blocked when the execution ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub task: TaskId,
    pub reason: String,
}

#[async_trait::async_trait]
impl Command for Block {
    type Output = ();

    async fn run(self, app: &App, actor: &Actor) -> Result<(), Error> {
        if self.reason.trim().is_empty() {
            return Err(Error::invalid(
                "say what a person must decide: --reason must not be empty",
            ));
        }
        app.authorize_task(actor, self.task).await?;
        let change = Change::Comment {
            id: self.task,
            text: format!("blocked: {}", self.reason),
        };
        app.apply(actor, vec![change]).await?;
        Ok(())
    }
}

/// A sub-task of `new.parent`, made once per idempotency key: a call under a key the parent
/// already used finds the sub-task it made instead of making another. With `reserve`, the
/// calling execution's reservation of areas for it is made in the same batch: both or neither.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateSubtask {
    pub new: NewTask,
    pub key: String,
    pub reserve: Option<crate::area_leases::Reserve>,
}

/// What a [`CreateSubtask`] found or made.
#[derive(Debug, Clone, PartialEq)]
pub struct Subtask {
    pub id: TaskId,
    /// `None` only when the sub-task made under the key is gone from the store.
    pub task: Option<Task>,
    /// The key was used before: nothing was made.
    pub existed: bool,
}

#[async_trait::async_trait]
impl Command for CreateSubtask {
    type Output = Subtask;

    async fn run(self, app: &App, actor: &Actor) -> Result<Subtask, Error> {
        let parent = self
            .new
            .parent
            .ok_or_else(|| Error::invalid("a sub-task needs a parent"))?;
        app.authorize_task(actor, parent).await?;
        // A key already used answers before anything is checked: it creates nothing.
        if let Some(found) = app
            .store
            .call_key(parent, SUBTASK_CREATE, &self.key)
            .await?
        {
            let id = found.result.ok_or_else(|| {
                Error::invalid("the key was used by a call that made no sub-task")
            })?;
            let task = app.store.task(id).await?;
            return Ok(Subtask {
                id,
                task,
                existed: true,
            });
        }
        self.new.check().map_err(Error::invalid)?;
        let mut changes = vec![Change::CreateKeyedTask {
            new: self.new,
            key: self.key,
        }];
        if let Some(reserve) = self.reserve {
            changes.push(reserve.change(actor)?);
        }
        let applied = app.apply(actor, changes).await?;
        let created = applied
            .tasks
            .into_iter()
            .find(|t| t.parent == Some(parent))
            .ok_or_else(|| Error::invalid("the store created no sub-task"))?;
        Ok(Subtask {
            id: created.id,
            task: Some(created),
            existed: false,
        })
    }
}

/// The agent asks a person to approve its task's work. One decision at a time: asking again
/// while the agent's own request is pending finds it; a pending request of another source
/// refuses the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestApproval {
    pub task: TaskId,
    pub summary: String,
}

#[async_trait::async_trait]
impl Command for RequestApproval {
    /// The approval, and whether it was pending already.
    type Output = (ApprovalId, bool);

    async fn run(self, app: &App, actor: &Actor) -> Result<(ApprovalId, bool), Error> {
        if self.summary.trim().is_empty() {
            return Err(Error::invalid(
                "say what a person is to approve: --summary must not be empty",
            ));
        }
        app.authorize_task(actor, self.task).await?;
        let pending = store::ApprovalFilter {
            state: Some(domain::ApprovalState::Pending),
            task: Some(self.task),
            limit: Some(1),
        };
        match app.store.approvals(&pending).await?.into_iter().next() {
            Some(a) if a.source == ApprovalSource::Agent => return Ok((a.id, true)),
            Some(a) => {
                return Err(Error::invalid(format!(
                    "task #{} already waits for approval #{}; a task waits for one decision at \
                     a time",
                    self.task, a.id
                )));
            }
            None => {}
        }
        let execution = match actor {
            Actor::Execution { id, .. } => Some(*id),
            _ => None,
        };
        let change = Change::RequestApproval {
            task: self.task,
            source: ApprovalSource::Agent,
            execution,
            summary: self.summary,
        };
        let applied = app.apply(actor, vec![change]).await?;
        let id = applied
            .approvals
            .first()
            .map(|a| a.id)
            .ok_or_else(|| Error::invalid("no approval was recorded"))?;
        Ok((id, false))
    }
}

/// Whether `task` already has a comment under `key`.
pub(crate) async fn comment_key_used(app: &App, task: TaskId, key: &str) -> Result<bool, Error> {
    Ok(app.store.call_key(task, COMMENT, key).await?.is_some())
}
