//! Landing a done task's work on the base branch: the rules and the record here, the git (or,
//! later, the forge) behind the [`Lander`] trait.
//!
//! A land is a recorded step. The [`Lander`] makes the land commit without moving anything
//! ([`Lander::prepare`]); the land is then recorded as started with the ref, its old value and
//! the new commit ([`store::Change::StartLand`]); the lander moves the ref atomically
//! ([`Lander::publish`]); and the land is recorded as done. A crash between the two records
//! leaves a started land, which the next `land` of the task settles by asking the lander
//! whether the ref holds the new commit: finished when it does, forgotten when it does not.
//! Nothing is ever half applied, because the ref moves in one step or not at all.

use std::sync::Arc;

use domain::{ApprovalId, ApprovalState, LandStrategy, NewTask, Task, TaskId, TaskState};
use store::{ApprovalFilter, Change, ExecutionFilter, TaskEdit, TaskFilter};

use crate::{Actor, App, Command, Error};

/// The label a conflict task carries, beside the landed task's own labels (so that routing
/// finds the agent that works on such tasks).
pub const CONFLICT_LABEL: &str = "land-conflict";

/// What a lander is asked to land.
#[derive(Debug, Clone, PartialEq)]
pub struct LandRequest {
    pub task: Task,
    pub strategy: LandStrategy,
    /// The agents that worked on the task's tree, oldest first, each once.
    pub agents: Vec<String>,
    /// The agent of the task's own last execution: its validators judge the landed tree.
    pub judge: Option<String>,
}

/// A land commit, made and ready to be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    /// The ref that moves (`refs/heads/main`).
    pub base: String,
    pub old: String,
    pub new: String,
}

/// What [`Lander::prepare`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    Ready(Ready),
    /// The base already holds the task's work: nothing to move.
    UpToDate {
        base: String,
        old: String,
    },
    /// The task's branch conflicts with the base in these files; nothing was made.
    Conflict {
        base: String,
        files: Vec<String>,
    },
    /// The land cannot go ahead for this reason (the main checkout has changes, say).
    Refused {
        reason: String,
    },
}

/// The one step of a land that touches the outside world: local git now, a pull request on a
/// forge later. Implementations never move anything in [`Lander::prepare`].
#[async_trait::async_trait]
pub trait Lander: Send + Sync {
    /// The strategy used when the request names none (the project's `land.strategy`).
    fn default_strategy(&self) -> LandStrategy;

    /// Makes the land commit of `request` on the base, checking whatever must hold before the
    /// base moves.
    async fn prepare(&self, request: &LandRequest) -> Result<Prepared, String>;

    /// Moves `ready.base` from `ready.old` to `ready.new`, atomically, and brings the main
    /// checkout along when it has the base checked out.
    async fn publish(&self, ready: &Ready) -> Result<(), String>;

    /// Whether `base` holds `commit` (is it, or descends from it): how a land cut short is
    /// settled.
    async fn holds(&self, base: &str, commit: &str) -> Result<bool, String>;

    /// Brings the main checkout along after a land cut short between moving `base` from `old`
    /// to `new` and updating the checkout (a crash in between): what `publish` would have
    /// done next. Refuses, touching nothing, where the checkout holds changes of its own. A
    /// lander with no checkout (a pull request) has nothing to do.
    async fn catch_up(&self, base: &str, old: &str, new: &str) -> Result<(), String> {
        let _ = (base, old, new);
        Ok(())
    }
}

/// Land a done task's branch on the base branch.
#[derive(Clone)]
pub struct Land {
    pub task: TaskId,
    /// `None`: the lander's default (the project's configuration).
    pub strategy: Option<LandStrategy>,
    /// Make and check the land commit, but move nothing and record nothing.
    pub dry_run: bool,
    pub lander: Arc<dyn Lander>,
}

impl std::fmt::Debug for Land {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Land")
            .field("task", &self.task)
            .field("strategy", &self.strategy)
            .field("dry_run", &self.dry_run)
            .finish_non_exhaustive()
    }
}

/// What a land did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landed {
    /// The base moved from `old` to `new` (or, on a dry run, would).
    Moved {
        strategy: LandStrategy,
        base: String,
        old: String,
        new: String,
        dry_run: bool,
        /// The sub-tasks marked landed with the task.
        tree: Vec<TaskId>,
    },
    /// The base already held the work; the task is recorded as landed there.
    UpToDate { base: String, commit: String },
    /// The branch conflicts with the base: `task` was made for an agent to resolve it.
    Conflict {
        base: String,
        files: Vec<String>,
        task: Option<TaskId>,
    },
}

#[async_trait::async_trait]
impl Command for Land {
    type Output = Landed;

    async fn run(self, app: &App, actor: &Actor) -> Result<Landed, Error> {
        let task = app.find(self.task).await?;
        if task.state != TaskState::Done {
            return Err(Error::invalid(format!(
                "task #{} is {}: only a done task lands (see `agentgrid task show {}`)",
                task.id, task.state, task.id
            )));
        }
        if let Some(pending) = pending_approval(app, task.id).await? {
            return Err(Error::invalid(format!(
                "task #{} waits for approval #{pending}, so it does not land yet: decide it \
                 first (`agentgrid approvals show {pending}`)",
                task.id
            )));
        }
        settle_interrupted(app, actor, &task, self.lander.as_ref()).await?;
        if let Some(land) = app.store.land(task.id).await? {
            let via = land.root.map(|r| format!(" with #{r}")).unwrap_or_default();
            return Err(Error::invalid(format!(
                "task #{} is already landed at {} on {}{via}",
                task.id,
                domain::event::short(&land.new),
                land.base
            )));
        }
        let strategy = self
            .strategy
            .unwrap_or_else(|| self.lander.default_strategy());
        let tree = app
            .store
            .tasks(&TaskFilter {
                root: Some(task.id),
                ..TaskFilter::default()
            })
            .await?;
        let agents = agents_of(app, &tree).await?;
        let judge = app
            .store
            .executions(&ExecutionFilter {
                task: Some(task.id),
                ..ExecutionFilter::default()
            })
            .await?
            .into_iter()
            .max_by_key(|e| e.id)
            .map(|e| e.agent);
        let request = LandRequest {
            task: task.clone(),
            strategy,
            agents,
            judge,
        };
        let ready = match self
            .lander
            .prepare(&request)
            .await
            .map_err(Error::invalid)?
        {
            Prepared::Ready(ready) => ready,
            Prepared::Refused { reason } => {
                return Err(Error::invalid(format!(
                    "task #{} was not landed: {reason}",
                    task.id
                )));
            }
            Prepared::Conflict { base, files } => {
                let made = if self.dry_run {
                    None
                } else {
                    Some(conflict_task(app, actor, &task, &base, &files).await?)
                };
                return Ok(Landed::Conflict {
                    base,
                    files,
                    task: made,
                });
            }
            Prepared::UpToDate { base, old } => {
                if !self.dry_run {
                    let mut changes = vec![
                        Change::StartLand {
                            id: task.id,
                            strategy,
                            base: base.clone(),
                            old: old.clone(),
                            new: old.clone(),
                        },
                        Change::FinishLand {
                            id: task.id,
                            landed: true,
                            reason: None,
                        },
                    ];
                    changes.extend(mark_tree(&task, &tree));
                    app.apply(actor, changes).await?;
                }
                return Ok(Landed::UpToDate { base, commit: old });
            }
        };
        let landed_tree: Vec<TaskId> = mark_tree(&task, &tree)
            .into_iter()
            .filter_map(|c| match c {
                Change::MarkLanded { id, .. } => Some(id),
                _ => None,
            })
            .collect();
        if self.dry_run {
            return Ok(Landed::Moved {
                strategy,
                base: ready.base,
                old: ready.old,
                new: ready.new,
                dry_run: true,
                tree: landed_tree,
            });
        }
        // The intent first: a crash after the ref moved finds it and finishes it.
        app.apply(
            actor,
            vec![Change::StartLand {
                id: task.id,
                strategy,
                base: ready.base.clone(),
                old: ready.old.clone(),
                new: ready.new.clone(),
            }],
        )
        .await?;
        if let Err(why) = self.lander.publish(&ready).await {
            app.apply(
                actor,
                vec![Change::FinishLand {
                    id: task.id,
                    landed: false,
                    reason: Some(why.clone()),
                }],
            )
            .await?;
            return Err(Error::invalid(format!(
                "task #{} was not landed: {why}",
                task.id
            )));
        }
        let mut changes = vec![Change::FinishLand {
            id: task.id,
            landed: true,
            reason: None,
        }];
        changes.extend(mark_tree(&task, &tree));
        app.apply(actor, changes).await?;
        Ok(Landed::Moved {
            strategy,
            base: ready.base,
            old: ready.old,
            new: ready.new,
            dry_run: false,
            tree: landed_tree,
        })
    }
}

/// Settles a land of `task` that a crash cut short: landed when the base holds its commit,
/// forgotten otherwise.
async fn settle_interrupted(
    app: &App,
    actor: &Actor,
    task: &Task,
    lander: &dyn Lander,
) -> Result<(), Error> {
    let Some(land) = app.store.land(task.id).await? else {
        return Ok(());
    };
    if land.landed {
        return Ok(());
    }
    let moved = lander
        .holds(&land.base, &land.new)
        .await
        .map_err(Error::invalid)?;
    let mut changes = vec![Change::FinishLand {
        id: task.id,
        landed: moved,
        reason: (!moved).then(|| {
            format!(
                "an interrupted land: {} never moved to {}",
                land.base,
                domain::event::short(&land.new)
            )
        }),
    }];
    if moved {
        // The base moved but the checkout may not have followed: left so, it would look like
        // uncommitted work and refuse every later land. A checkout that cannot follow (its
        // own changes are in the way) keeps them, and the next land's refusal names them.
        if let Err(why) = lander.catch_up(&land.base, &land.old, &land.new).await {
            changes.push(Change::Comment {
                id: task.id,
                text: format!(
                    "the interrupted land of task #{} moved {}, but the main checkout could \
                     not be brought along: {why}",
                    task.id, land.base
                ),
            });
        }
        let tree = app
            .store
            .tasks(&TaskFilter {
                root: Some(task.id),
                ..TaskFilter::default()
            })
            .await?;
        changes.extend(mark_tree(task, &tree));
    }
    app.apply(actor, changes).await?;
    Ok(())
}

/// The done sub-tasks of `root`'s tree, marked landed with it.
fn mark_tree(root: &Task, tree: &[Task]) -> Vec<Change> {
    tree.iter()
        .filter(|t| t.id != root.id && t.state == TaskState::Done)
        .map(|t| Change::MarkLanded {
            id: t.id,
            root: root.id,
        })
        .collect()
}

/// Every agent that ran an execution on a task of the tree, in the order they first ran.
async fn agents_of(app: &App, tree: &[Task]) -> Result<Vec<String>, Error> {
    let mut runs = Vec::new();
    for task in tree {
        let executions = app
            .store
            .executions(&ExecutionFilter {
                task: Some(task.id),
                ..ExecutionFilter::default()
            })
            .await?;
        runs.extend(executions.into_iter().map(|e| (e.id, e.agent)));
    }
    runs.sort();
    let mut agents: Vec<String> = Vec::new();
    for (_, agent) in runs {
        if !agents.contains(&agent) {
            agents.push(agent);
        }
    }
    Ok(agents)
}

/// The approval `task` waits for, if any: a person has yet to say whether its work lands.
async fn pending_approval(app: &App, task: TaskId) -> Result<Option<ApprovalId>, Error> {
    let filter = ApprovalFilter {
        state: Some(ApprovalState::Pending),
        task: Some(task),
        limit: Some(1),
    };
    Ok(app.store.approvals(&filter).await?.first().map(|a| a.id))
}

/// The title of the task that resolves the conflicts of landing `task`: also how a later land
/// of the same task finds it.
fn conflict_title(task: TaskId) -> String {
    format!("Resolve conflicts landing #{task}")
}

/// The task that asks an agent to resolve the conflicts of landing `task`. A land that
/// conflicts again while such a task is still open updates that one (its body names the files
/// of the latest try) instead of making a second task for the same work.
async fn conflict_task(
    app: &App,
    actor: &Actor,
    task: &Task,
    base: &str,
    files: &[String],
) -> Result<TaskId, Error> {
    let mut body = format!(
        "Landing task #{} (\"{}\", branch agentgrid/task-{}) on {base} conflicts in these files:\n\n",
        task.id, task.title, task.id
    );
    for file in files {
        body.push_str(&format!("- {file}\n"));
    }
    body.push_str(&format!(
        "\nThis task's branch starts from {base}. Bring in the work of agentgrid/task-{} and \
         resolve the conflicts so that both changes hold and the tests pass; landing this task \
         then lands that work.\n",
        task.id
    ));
    let title = conflict_title(task.id);
    let open = app
        .store
        .tasks(&TaskFilter {
            labels: vec![CONFLICT_LABEL.to_string()],
            ..TaskFilter::default()
        })
        .await?
        .into_iter()
        .filter(|t| !t.state.is_terminal() && t.title == title)
        .min_by_key(|t| t.id);
    if let Some(found) = open {
        let mut changes = Vec::new();
        if found.body != body {
            changes.push(Change::EditTask {
                id: found.id,
                edit: TaskEdit {
                    body: Some(body),
                    ..TaskEdit::default()
                },
            });
        }
        changes.push(Change::Comment {
            id: found.id,
            text: format!(
                "landing #{} conflicted again, in {}",
                task.id,
                files.join(", ")
            ),
        });
        app.apply(actor, changes).await?;
        return Ok(found.id);
    }
    let mut new = NewTask::titled(title);
    new.body = body;
    let mut labels = task.labels.clone();
    if !labels.iter().any(|l| l == CONFLICT_LABEL) {
        labels.push(CONFLICT_LABEL.to_string());
    }
    new.labels = labels;
    new.agent = task.agent.clone();
    new.check().map_err(Error::invalid)?;
    let applied = app.apply(actor, vec![Change::CreateTask(new)]).await?;
    applied
        .tasks
        .last()
        .map(|t| t.id)
        .ok_or_else(|| Error::invalid("the store created no task"))
}
