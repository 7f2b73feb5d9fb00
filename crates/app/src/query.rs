//! The queries: the status and task views and the event log, each reading what it shows and
//! no more.

use std::collections::BTreeMap;

use domain::event::ValidatorResult;
use domain::{EntityKind, Event, EventKind, Execution, ExecutionKind, Task, TaskId, TaskState};
use serde::Serialize;
use store::{ExecutionFilter, ModelUsage, TaskFilter, UsageScope};

use crate::{Actor, App, Error, Query, Validation};

/// What is going on: tasks by state, what runs, what needs a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// How many of the newest executions to show (with their model use) and to look through
    /// for the last failed validator.
    pub recent: u32,
    /// How many of the newest blocked or failed tasks, and of tasks with a failed merge, to
    /// show.
    pub attention: u32,
    /// How many timers (the soonest) to show.
    pub timers: u32,
    /// Whether an engine runs, as the face found out (the engine's lock is not the store's).
    pub engine: EngineState,
    /// This machine's node id, the one its engine's leases carry; `None` before its first run.
    /// An execution whose lease another node holds, not expired, runs there.
    pub node: Option<domain::NodeId>,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            recent: 20,
            attention: 20,
            timers: 20,
            engine: EngineState::Unknown,
            node: None,
        }
    }
}

/// Whether an engine works on the project now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum EngineState {
    /// Not asked: the executions the store calls active are shown as they are recorded.
    #[default]
    Unknown,
    /// An engine holds the project's lock.
    Running {
        pid: Option<u32>,
        #[serde(serialize_with = "rfc3339_opt")]
        since: Option<domain::Timestamp>,
    },
    /// No engine holds the lock: every execution the store still calls active belongs to an
    /// engine that is gone, and the next run recovers it (the crash rule).
    Stopped,
}

fn rfc3339<S: serde::Serializer>(t: &domain::Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339())
}

fn rfc3339_opt<S: serde::Serializer>(
    t: &Option<domain::Timestamp>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_some(&t.to_rfc3339()),
        None => s.serialize_none(),
    }
}

/// Why a task does not run before a time the scheduler holds it to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    /// An open task after a failed attempt, waiting out its backoff.
    Retry,
    /// An open task after a clean exit that did not finish it, waiting before it goes on.
    Continuation,
    /// A waiting parent whose resume is due at this time.
    Resume,
}

/// A time a task waits for: the next try of an open task, the resume of a waiting one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timer {
    pub task: TaskId,
    pub kind: TimerKind,
    /// When; possibly past already (the engine takes it at its next turn, or none runs).
    /// Serialized as an RFC 3339 time.
    #[serde(serialize_with = "rfc3339")]
    pub at: domain::Timestamp,
}

impl Timer {
    /// The timer a task holds now, if any.
    pub fn of(task: &Task) -> Option<Timer> {
        let at = task.not_before?;
        let kind = match task.state {
            TaskState::Waiting => TimerKind::Resume,
            TaskState::Open if task.attempts > 0 => TimerKind::Retry,
            TaskState::Open => TimerKind::Continuation,
            _ => return None,
        };
        Some(Timer {
            task: task.id,
            kind,
            at,
        })
    }
}

/// The answer to [`Status`].
#[derive(Debug, Clone, PartialEq)]
pub struct StatusView {
    /// How many tasks are in each state, every state named (with 0), by name.
    pub tasks: BTreeMap<String, u64>,
    /// Every execution in an active state, oldest first.
    pub active: Vec<ActiveExecution>,
    /// The newest executions, oldest first, with their model use.
    pub recent: Vec<ExecutionUsage>,
    /// The newest blocked and failed tasks, oldest first.
    pub attention: Vec<Task>,
    /// How many tasks are blocked or failed in all.
    pub attention_total: u64,
    /// The newest tasks on which the merge of a sub-task failed, oldest first.
    pub merge_failed: Vec<Task>,
    /// Model providers paused or throttled now.
    pub providers: Vec<ProviderLine>,
    /// The last failed validator among the recent executions that still matters (see
    /// [`crate::last_failure`]).
    pub last_failure: Option<(Validation, ValidatorResult)>,
    /// The soonest timers of open and waiting tasks, soonest first.
    pub timers: Vec<Timer>,
    /// What the face found out about the engine, as asked.
    pub engine: EngineState,
    /// The app's clock when the view was read, to tell "in 8 m" from.
    pub now: domain::Timestamp,
    /// The newest pending approvals (at most `attention`), newest first.
    pub approvals: Vec<domain::Approval>,
    /// The escalations no person answered yet (at most `attention`), oldest first.
    pub escalations: Vec<domain::Message>,
    /// How many escalations are open in all.
    pub escalations_total: u64,
    /// The area leases held now, in id order (few: bounded per execution).
    pub area_leases: Vec<domain::AreaLease>,
    /// Open tasks the scheduler holds back for an area leased to another task.
    pub area_waits: Vec<crate::AreaWait>,
    /// The newest unfinished tasks a handoff sent to another part (at most `attention`), in
    /// id order, and how many there are in all.
    pub handoffs: Vec<crate::OpenHandoff>,
    pub handoffs_total: u64,
}

/// An execution under way, and why the scheduler started it when it said.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActiveExecution {
    pub execution: Execution,
    /// The engine's note recorded just before the claim of a resume (a resume woken by a
    /// failed sub-task, a run that validates a parent's merged tree).
    pub why: Option<String>,
    /// No engine runs it: its engine died (this machine's stopped, or another node's lease
    /// expired), and the next run recovers it.
    pub interrupted: bool,
    /// The lease of another node, not expired: the execution runs on that node.
    pub elsewhere: Option<domain::Lease>,
}

impl ActiveExecution {
    /// Where `execution` runs, as seen from the machine whose node id is `node` and whose own
    /// engine is in state `engine`: on another node while that node's lease holds, else here,
    /// or nowhere (interrupted) when this engine is stopped or the other node's lease expired.
    pub fn placed(
        execution: Execution,
        why: Option<String>,
        node: Option<&domain::NodeId>,
        engine: EngineState,
        now: domain::Timestamp,
    ) -> ActiveExecution {
        let foreign = execution
            .lease
            .as_ref()
            .filter(|lease| Some(&lease.node) != node);
        let (interrupted, elsewhere) = match foreign {
            Some(lease) if !lease.expired(now) => (false, Some(lease.clone())),
            Some(_) => (true, None),
            None => (engine == EngineState::Stopped, None),
        };
        ActiveExecution {
            execution,
            why,
            interrupted,
            elsewhere,
        }
    }
}

/// An execution with the sums of its model requests.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionUsage {
    pub execution: Execution,
    pub usage: ModelUsage,
}

/// A model provider that is paused or throttled now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderLine {
    pub name: String,
    /// Until when, and why; only a pause not yet over by the app's clock.
    pub paused: Option<(domain::Timestamp, String)>,
    /// The lowered limit on requests under way.
    pub concurrency: Option<u32>,
}

#[async_trait::async_trait]
impl Query for Status {
    type Output = StatusView;

    async fn run(self, app: &App, _actor: &Actor) -> Result<StatusView, Error> {
        let store = app.store.as_ref();
        let mut tasks: BTreeMap<String, u64> =
            TaskState::ALL.iter().map(|s| (s.to_string(), 0)).collect();
        let mut attention_total = 0;
        for (state, n) in store.task_counts().await? {
            tasks.insert(state.to_string(), n);
            if needs_a_person(state) {
                attention_total += n;
            }
        }
        let active_executions = store
            .executions(&ExecutionFilter {
                active_only: true,
                ..Default::default()
            })
            .await?;
        let mut active = Vec::with_capacity(active_executions.len());
        for execution in active_executions {
            let why = match execution.kind {
                ExecutionKind::Resume => wake_reason(store, execution.task_id).await?,
                ExecutionKind::Work => None,
            };
            active.push(ActiveExecution::placed(
                execution,
                why,
                self.node.as_ref(),
                self.engine,
                app.now(),
            ));
        }
        let newest = store
            .executions(&ExecutionFilter {
                limit: Some(self.recent),
                ..Default::default()
            })
            .await?;
        let last_failure = crate::last_failure(store, &newest).await?;
        let mut recent = Vec::with_capacity(newest.len());
        for execution in newest {
            let usage = store
                .model_usage(&UsageScope::Execution(execution.id))
                .await?;
            recent.push(ExecutionUsage { execution, usage });
        }
        // One state at a time: each walks its part of the state index backwards and stops at
        // the limit, where a query for both states at once would sort every match.
        let mut attention = Vec::new();
        for state in TaskState::ALL.into_iter().filter(|s| needs_a_person(*s)) {
            let filter = TaskFilter {
                states: vec![state],
                ..TaskFilter::default()
            };
            attention.extend(store.newest_tasks(&filter, self.attention).await?);
        }
        attention.sort_by_key(|t| t.id);
        let keep = usize::try_from(self.attention).unwrap_or(usize::MAX);
        let attention = attention.split_off(attention.len().saturating_sub(keep));
        let merge_failed = store.tasks_with_failed_merge(self.attention).await?;
        let now = app.now();
        let providers = store
            .providers()
            .await?
            .into_iter()
            .map(|p| ProviderLine {
                paused: p
                    .paused_until
                    .filter(|until| *until > now)
                    .map(|until| (until, p.pause_reason.unwrap_or_default())),
                concurrency: p.concurrency,
                name: p.name,
            })
            .filter(|p| p.paused.is_some() || p.concurrency.is_some())
            .collect();
        let pending = store::ApprovalFilter {
            state: Some(domain::ApprovalState::Pending),
            task: None,
            limit: Some(self.attention),
        };
        let approvals = store.approvals(&pending).await?;
        let escalations = crate::escalations::open_escalations(app, self.attention).await?;
        let escalations_total = store.open_escalation_count().await?;
        let timers = store
            .tasks_with_timers(self.timers)
            .await?
            .iter()
            .filter_map(Timer::of)
            .collect();
        let area_leases = store
            .area_leases(&store::AreaLeaseFilter::default())
            .await?
            .into_iter()
            .filter(|l| l.live(now))
            .collect();
        let area_waits = crate::area_waits(app).await?;
        let (handoffs, handoffs_total) =
            crate::handoffs::open_handoffs(app, self.attention).await?;
        Ok(StatusView {
            handoffs,
            handoffs_total,
            area_leases,
            area_waits,
            approvals,
            escalations,
            escalations_total,
            timers,
            engine: self.engine,
            now,
            tasks,
            active,
            recent,
            attention,
            attention_total,
            merge_failed,
            providers,
            last_failure,
        })
    }
}

/// The states in which a task waits for a person: blocked (it asked) or failed.
fn needs_a_person(state: TaskState) -> bool {
    matches!(state, TaskState::Blocked | TaskState::Failed)
}

/// Why the scheduler started a task's current execution, when it said: the engine's comment
/// recorded just before the claim.
async fn wake_reason(store: &dyn store::Store, task: TaskId) -> Result<Option<String>, Error> {
    let events = store.entity_events(EntityKind::Task, task.0).await?;
    let Some(claimed) = events.iter().rposition(|e| {
        matches!(
            e.kind,
            EventKind::TaskStateChanged {
                to: TaskState::Running,
                ..
            }
        )
    }) else {
        return Ok(None);
    };
    Ok(claimed.checked_sub(1).and_then(|i| match &events[i].kind {
        EventKind::TaskCommented { author, text } if author == "engine" => Some(text.clone()),
        _ => None,
    }))
}

/// The tasks matching a filter: all of them, or the newest `limit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskList {
    pub filter: TaskFilter,
    /// At most this many, the newest (highest ids); `None` lists every match, all held at
    /// once (a face that prints every match as it goes walks [`TaskListPage`] instead).
    pub limit: Option<u32>,
}

/// The answer to [`TaskList`].
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPage {
    /// Oldest first.
    pub tasks: Vec<Task>,
    /// Whether older tasks match that the limit left out.
    pub more: bool,
}

#[async_trait::async_trait]
impl Query for TaskList {
    type Output = TaskPage;

    async fn run(self, app: &App, _actor: &Actor) -> Result<TaskPage, Error> {
        let Some(limit) = self.limit else {
            let tasks = app.store.tasks(&self.filter).await?;
            return Ok(TaskPage { tasks, more: false });
        };
        // One more than asked tells whether there are more, without counting them all.
        let mut tasks = app
            .store
            .newest_tasks(&self.filter, limit.saturating_add(1))
            .await?;
        let keep = usize::try_from(limit).unwrap_or(usize::MAX);
        let more = tasks.len() > keep;
        if more {
            tasks.remove(0);
        }
        Ok(TaskPage { tasks, more })
    }
}

/// One page of every task matching a filter, in id order: at most `size` tasks with ids above
/// `after`. A face that lists every match walks these pages, asking again after the last id it
/// got until a page comes back short, and prints as it goes, so it never holds more than one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskListPage {
    pub filter: TaskFilter,
    pub after: Option<TaskId>,
    pub size: u32,
}

#[async_trait::async_trait]
impl Query for TaskListPage {
    /// Oldest first; shorter than `size` only at the end of the list.
    type Output = Vec<Task>;

    async fn run(self, app: &App, _actor: &Actor) -> Result<Vec<Task>, Error> {
        Ok(app
            .store
            .tasks_after(&self.filter, self.after, self.size)
            .await?)
    }
}

/// One task with its sub-tasks, executions, validations and history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskShow {
    pub id: TaskId,
}

/// The answer to [`TaskShow`]; serialized as `task show --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskDetail {
    pub task: Task,
    pub children: Vec<Task>,
    pub executions: Vec<Execution>,
    pub validations: Vec<Validation>,
    /// The newest of `validations`: what the validators said last.
    pub last_validation: Option<Validation>,
    /// The model requests of all the task's executions (not its sub-tasks'), summed.
    pub usage: crate::UsageSums,
    /// What each execution's agent CLI said it did, for the executions that said anything.
    pub agents: Vec<crate::AgentSummary>,
    pub events: Vec<Event>,
    /// The live area leases held for the task, and why it waits for an area, if it does.
    pub area_leases: Vec<domain::AreaLease>,
    pub area_wait: Option<crate::AreaWait>,
    /// Its handoffs between agencies and roles, oldest first (from its events).
    pub handoffs: Vec<crate::HandoffRecord>,
}

#[async_trait::async_trait]
impl Query for TaskShow {
    type Output = TaskDetail;

    async fn run(self, app: &App, _actor: &Actor) -> Result<TaskDetail, Error> {
        let store = app.store.as_ref();
        let task = app.find(self.id).await?;
        let children = store.children(self.id).await?;
        let executions = store
            .executions(&ExecutionFilter {
                task: Some(self.id),
                ..Default::default()
            })
            .await?;
        let events = store.entity_events(EntityKind::Task, self.id.0).await?;
        let mut validations = Vec::new();
        let mut usage = crate::UsageSums::default();
        let mut agents = Vec::new();
        for e in &executions {
            validations.extend(crate::of_execution(store, e).await?);
            usage.add(&store.model_usage(&UsageScope::Execution(e.id)).await?);
            let records = crate::agent_events(store, e.id).await?;
            agents.extend(crate::AgentSummary::of(e.id, &records));
        }
        let now = app.now();
        let for_task = store::AreaLeaseFilter {
            task: Some(self.id),
            ..store::AreaLeaseFilter::default()
        };
        let area_leases = store
            .area_leases(&for_task)
            .await?
            .into_iter()
            .filter(|l| l.live(now))
            .collect();
        let area_wait = if task.state == TaskState::Open {
            crate::area_waits(app)
                .await?
                .into_iter()
                .find(|w| w.task == self.id)
        } else {
            None
        };
        let handoffs = crate::handoffs_of(&events);
        Ok(TaskDetail {
            area_leases,
            area_wait,
            task,
            children,
            executions,
            last_validation: validations.last().cloned(),
            validations,
            usage,
            agents,
            events,
            handoffs,
        })
    }
}

/// Events of the log after a position: of every entity, or of one task only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Events {
    /// Only this task's own events, read by the task rather than by scanning the log.
    pub task: Option<TaskId>,
    /// The global `seq` to read after; 0 reads from the start.
    pub after: u64,
    /// At most this many.
    pub limit: u32,
}

/// The answer to [`Events`].
#[derive(Debug, Clone, PartialEq)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// The position to ask from next.
    pub next: u64,
    /// Whether the page reached the end of what there is now.
    pub at_end: bool,
}

#[async_trait::async_trait]
impl Query for Events {
    type Output = EventPage;

    async fn run(self, app: &App, _actor: &Actor) -> Result<EventPage, Error> {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let events: Vec<Event> = match self.task {
            None => app.store.events_after(self.after, self.limit).await?,
            Some(task) => {
                // A task's history is its own events and those of its executions, in log order.
                if app.store.task(task).await?.is_none() {
                    return Err(Error::invalid(format!(
                        "no task {task}: see `agentgrid task list`"
                    )));
                }
                let mut events = app.store.entity_events(EntityKind::Task, task.0).await?;
                let executions = app
                    .store
                    .executions(&store::ExecutionFilter {
                        task: Some(task),
                        ..Default::default()
                    })
                    .await?;
                for execution in executions {
                    events.extend(
                        app.store
                            .entity_events(EntityKind::Execution, execution.id.0)
                            .await?,
                    );
                }
                events.sort_by_key(|e| e.seq);
                events
                    .into_iter()
                    .filter(|e| e.seq > self.after)
                    .take(limit)
                    .collect()
            }
        };
        let next = events.last().map_or(self.after, |e| e.seq);
        Ok(EventPage {
            at_end: events.len() < limit,
            events,
            next,
        })
    }
}
