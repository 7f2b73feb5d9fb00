//! The commands: every change a person, an agent or the engine asks of the tracker, with the
//! rules that decide whether it may be made.

use domain::{NewTask, Task, TaskId, TaskState};
use store::{Change, TaskEdit};

use crate::{Actor, App, Command, Error};

/// Create a task (open) with its dependencies.
#[derive(Debug, Clone, PartialEq)]
pub struct AddTask(pub NewTask);

impl AddTask {
    pub fn titled(title: impl Into<String>) -> AddTask {
        AddTask(NewTask::titled(title))
    }
}

#[async_trait::async_trait]
impl Command for AddTask {
    /// The task as stored, with its id.
    type Output = Task;

    async fn run(self, app: &App, actor: &Actor) -> Result<Task, Error> {
        self.0.check().map_err(Error::invalid)?;
        let applied = app.apply(actor, vec![Change::CreateTask(self.0)]).await?;
        applied
            .tasks
            .last()
            .cloned()
            .ok_or_else(|| Error::invalid("the store created no task"))
    }
}

/// Create a task and start the workflow its labels name (`workflow`: its name and its
/// definition as the manifest says it now), in one batch: a crash cannot leave the labelled
/// task without its run. `None` is [`AddTask`].
#[derive(Debug, Clone, PartialEq)]
pub struct AddTaskWithWorkflow {
    pub new: NewTask,
    pub workflow: Option<(String, workflow::Definition)>,
}

#[async_trait::async_trait]
impl Command for AddTaskWithWorkflow {
    /// The task as stored, and the run started on it.
    type Output = (Task, Option<domain::WorkflowId>);

    async fn run(self, app: &App, actor: &Actor) -> Result<Self::Output, Error> {
        self.new.check().map_err(Error::invalid)?;
        let mut changes = vec![Change::CreateTask(self.new)];
        if let Some((name, definition)) = self.workflow {
            changes.push(Change::StartWorkflowOnNewest { name, definition });
        }
        let applied = app.apply(actor, changes).await?;
        let run = applied.events.iter().find_map(|e| match &e.kind {
            domain::EventKind::TaskWorkflowStarted { workflow, .. } => Some(*workflow),
            _ => None,
        });
        // Both changes are the new task's: it is the one task the batch touched.
        let task = applied
            .tasks
            .last()
            .cloned()
            .ok_or_else(|| Error::invalid("the store created no task"))?;
        Ok((task, run))
    }
}

/// Change the fields a person may edit. Labels are added and removed rather than replaced, so
/// two edits of different labels do not undo each other.
#[derive(Debug, Clone, PartialEq)]
pub struct EditTask {
    pub id: TaskId,
    pub title: Option<String>,
    pub body: Option<String>,
    pub add_labels: Vec<String>,
    pub remove_labels: Vec<String>,
    pub priority: Option<i32>,
    /// `Some("")` routes the task by its labels again.
    pub agent: Option<String>,
}

#[async_trait::async_trait]
impl Command for EditTask {
    type Output = Task;

    async fn run(self, app: &App, actor: &Actor) -> Result<Task, Error> {
        let task = app.find(self.id).await?;
        let labels = if self.add_labels.is_empty() && self.remove_labels.is_empty() {
            None
        } else {
            let mut labels: Vec<String> = task
                .labels
                .iter()
                .filter(|l| !self.remove_labels.contains(l))
                .cloned()
                .collect();
            for l in self.add_labels {
                if !labels.contains(&l) {
                    labels.push(l);
                }
            }
            Some(labels)
        };
        let edit = TaskEdit {
            title: self.title,
            body: self.body,
            labels,
            priority: self.priority,
            agent: self
                .agent
                .map(|a| if a.is_empty() { None } else { Some(a) }),
        };
        if edit.is_empty() {
            return Err(Error::invalid(
                "nothing to change: pass --title, --body, --add-label, --remove-label, --priority or --agent",
            ));
        }
        let applied = app
            .apply(actor, vec![Change::EditTask { id: self.id, edit }])
            .await?;
        Ok(applied.tasks.last().cloned().unwrap_or(task))
    }
}

/// Cancel tasks; with `cascade`, every task below them that is not over yet too. A running
/// execution of a cancelled task is stopped by the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancel {
    pub ids: Vec<TaskId>,
    pub cascade: bool,
    /// Becomes each cancelled task's summary.
    pub reason: Option<String>,
}

/// What a [`Cancel`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancelled {
    /// Every task cancelled, the requested ones included, deepest first.
    pub tasks: Vec<TaskId>,
}

impl Cancelled {
    /// How many of the cancelled tasks were not asked for by id: their sub-tasks.
    pub fn sub_tasks(&self, requested: usize) -> usize {
        self.tasks.len().saturating_sub(requested)
    }
}

#[async_trait::async_trait]
impl Command for Cancel {
    type Output = Cancelled;

    async fn run(self, app: &App, actor: &Actor) -> Result<Cancelled, Error> {
        let reason = self
            .reason
            .unwrap_or_else(|| "cancelled from the command line".into());
        // The tasks and, with cascade, every task below them, in one transaction; deepest first
        // so that no parent is over while a child of it still runs.
        let mut order: Vec<Task> = Vec::new();
        for &id in &self.ids {
            let task = app.find(id).await?;
            if task.state.is_terminal() {
                return Err(Error::invalid(format!(
                    "task #{id} is already {}",
                    task.state
                )));
            }
            let mut stack = vec![task];
            while let Some(t) = stack.pop() {
                if self.cascade {
                    stack.extend(app.store.children(t.id).await?);
                }
                order.push(t);
            }
        }
        let mut seen = std::collections::HashSet::new();
        let cancelled: Vec<TaskId> = order
            .into_iter()
            .rev()
            .filter(|t| !t.state.is_terminal() && t.state.can_transition_to(TaskState::Cancelled))
            .map(|t| t.id)
            .filter(|id| seen.insert(*id))
            .collect();
        let changes = cancelled
            .iter()
            .map(|&id| Change::SetTaskState {
                id,
                to: TaskState::Cancelled,
                reason: Some(reason.clone()),
            })
            .collect();
        app.apply(actor, changes).await?;
        Ok(Cancelled { tasks: cancelled })
    }
}

/// Put a failed, cancelled or blocked task back to open, optionally with a person's feedback
/// on its work. The feedback is recorded (with the actor) in the same transaction as the
/// reopen, and reaches the task's next execution in its prompt's `feedback`, labelled as the
/// actor's. The one way back to open with feedback: a face that rejects work with feedback
/// reopens through this command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reopen {
    pub id: TaskId,
    pub feedback: Option<String>,
}

impl Reopen {
    /// A reopen without feedback.
    pub fn task(id: TaskId) -> Reopen {
        Reopen { id, feedback: None }
    }
}

#[async_trait::async_trait]
impl Command for Reopen {
    type Output = ();

    async fn run(self, app: &App, actor: &Actor) -> Result<(), Error> {
        let id = self.id;
        let task = app.find(id).await?;
        if !task.state.can_transition_to(TaskState::Open) || task.state == TaskState::Running {
            return Err(Error::invalid(format!(
                "task #{id} is {}; only failed, cancelled or blocked tasks can be reopened",
                task.state
            )));
        }
        let mut changes = Vec::with_capacity(2);
        let reason = match self.feedback {
            Some(text) => {
                changes.push(Change::Feedback { id, text });
                "reopened with feedback"
            }
            None => "reopened",
        };
        changes.push(Change::SetTaskState {
            id,
            to: TaskState::Open,
            reason: Some(reason.into()),
        });
        app.apply(actor, changes).await?;
        Ok(())
    }
}

/// Answer the question a blocked task's agent asked (`ctl block`) and reopen the task, in one
/// transaction. The answer reaches the next execution's prompt as `answer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub id: TaskId,
    pub text: String,
}

#[async_trait::async_trait]
impl Command for Answer {
    type Output = ();

    async fn run(self, app: &App, actor: &Actor) -> Result<(), Error> {
        let id = self.id;
        let task = app.find(id).await?;
        if task.state != TaskState::Blocked {
            return Err(Error::invalid(format!(
                "task #{id} is {}, not blocked: it asked no question to answer; use `agentgrid \
                 task comment` to tell its agent something, or `agentgrid task reopen --feedback`",
                task.state
            )));
        }
        let changes = vec![
            Change::Answer {
                id,
                text: self.text,
            },
            Change::SetTaskState {
                id,
                to: TaskState::Open,
                reason: Some("answered".into()),
            },
        ];
        app.apply(actor, changes).await?;
        Ok(())
    }
}

/// Ask that a task run sooner: a hint, caps and guards still apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nudge {
    pub id: TaskId,
}

#[async_trait::async_trait]
impl Command for Nudge {
    type Output = ();

    async fn run(self, app: &App, actor: &Actor) -> Result<(), Error> {
        app.apply(actor, vec![Change::Nudge { id: self.id }])
            .await?;
        Ok(())
    }
}

/// A note on a task by the actor. Under an idempotency key it is made once: a second comment
/// under the same key records nothing. Without one, the same words said twice are two
/// comments, since they may be news twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub id: TaskId,
    pub text: String,
    pub key: Option<String>,
}

impl Comment {
    /// A comment without a key.
    pub fn new(id: TaskId, text: impl Into<String>) -> Comment {
        Comment {
            id,
            text: text.into(),
            key: None,
        }
    }
}

#[async_trait::async_trait]
impl Command for Comment {
    /// Whether the comment was recorded: false when its key was used before.
    type Output = bool;

    async fn run(self, app: &App, actor: &Actor) -> Result<bool, Error> {
        app.authorize_task(actor, self.id).await?;
        let change = match self.key {
            None => Change::Comment {
                id: self.id,
                text: self.text,
            },
            Some(key) => {
                if crate::agent_calls::comment_key_used(app, self.id, &key).await? {
                    return Ok(false);
                }
                Change::KeyedComment {
                    id: self.id,
                    text: self.text,
                    key,
                }
            }
        };
        app.apply(actor, vec![change]).await?;
        Ok(true)
    }
}

/// `task` cannot start before `blocker` is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddDependency {
    pub task: TaskId,
    pub blocker: TaskId,
}

#[async_trait::async_trait]
impl Command for AddDependency {
    type Output = ();

    async fn run(self, app: &App, actor: &Actor) -> Result<(), Error> {
        let change = Change::AddDependency {
            id: self.task,
            blocked_by: self.blocker,
        };
        app.apply(actor, vec![change]).await?;
        Ok(())
    }
}

/// `task` no longer waits for `blocker`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoveDependency {
    pub task: TaskId,
    pub blocker: TaskId,
}

#[async_trait::async_trait]
impl Command for RemoveDependency {
    type Output = ();

    async fn run(self, app: &App, actor: &Actor) -> Result<(), Error> {
        let change = Change::RemoveDependency {
            id: self.task,
            blocked_by: self.blocker,
        };
        app.apply(actor, vec![change]).await?;
        Ok(())
    }
}

/// Many tasks from JSON lines, all or nothing: every line is checked first (see
/// [`parse_import`](crate::parse_import)), then all are created in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Import {
    /// A name for the text in messages: a file name, or "standard input".
    pub source: String,
    pub text: String,
    /// The workflows that labels start, in file order, each with its labels: a task whose
    /// labels name one starts the first such, in the import's batch.
    pub by_label: Vec<(Vec<String>, String, workflow::Definition)>,
}

#[async_trait::async_trait]
impl Command for Import {
    /// The created tasks, in line order; empty when the text has no task lines.
    type Output = Vec<Task>;

    async fn run(self, app: &App, actor: &Actor) -> Result<Vec<Task>, Error> {
        let source = self.source;
        let lines = crate::parse_import(&source, &self.text).map_err(Error::invalid)?;
        if lines.is_empty() {
            return Ok(Vec::new());
        }
        let mut numbers = Vec::new();
        let mut changes = Vec::new();
        for (n, task) in lines {
            let start = self
                .by_label
                .iter()
                .find(|(labels, _, _)| labels.iter().any(|l| task.labels.contains(l)))
                .map(|(_, name, definition)| Change::StartWorkflowOnNewest {
                    name: name.clone(),
                    definition: definition.clone(),
                });
            numbers.push(n);
            changes.push(Change::CreateTask(task));
            if let Some(start) = start {
                numbers.push(n);
                changes.push(start);
            }
        }
        match app.apply_batch(actor, changes).await {
            Ok(applied) => {
                let mut seen = std::collections::HashSet::new();
                Ok(applied
                    .tasks
                    .into_iter()
                    .filter(|t| seen.insert(t.id))
                    .collect())
            }
            // A batch the store refused names the change by its index; the user knows it by
            // its line.
            Err(error) => {
                let line = error.change_index().and_then(|i| numbers.get(i));
                Err(match (line, &error) {
                    (Some(line), store::Error::Refused { reason, .. }) => {
                        Error::invalid(format!("{source}:{line}: {reason}; nothing was imported"))
                    }
                    (Some(line), _) => Error::invalid_because(
                        format!("{source}:{line}: nothing was imported"),
                        error,
                    ),
                    (None, _) => Error::NothingImported(error),
                })
            }
        }
    }
}
