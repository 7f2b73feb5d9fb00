//! Area leases (see `domain::area`): an agent's `ctl lease take|release|list`, the engine's
//! sweep of leases whose time ran out, and the views (`agentgrid leases`, the waits shown by
//! `status` and `task show`).
//!
//! The rule about who may lease lives here: only an execution holds leases, as itself; what it
//! may lease (its own task or a sub-task's, no overlap, bounded counts and times) is the
//! tracker's. Paths are parsed here, so a bad one is refused naming it before anything is
//! written; that no path runs through a symbolic link is checked by the engine, which knows the
//! execution's worktree.

use domain::area::limits;
use domain::{AreaLease, AreaPath, Duration, ExecutionId, TaskId, Timestamp};
use serde::Serialize;
use store::{AreaLeaseFilter, Change};

use crate::{Actor, App, Command, Error, Query};

/// Parses what an agent or a person wrote as paths, bounded before anything else.
pub fn parse_area_paths(raw: &[String]) -> Result<Vec<AreaPath>, Error> {
    if raw.len() > limits::PATHS_PER_TAKE {
        return Err(Error::invalid(format!(
            "a lease names at most {} paths, not {}",
            limits::PATHS_PER_TAKE,
            raw.len()
        )));
    }
    raw.iter()
        .map(|p| AreaPath::parse(p).map_err(Error::invalid))
        .collect()
}

fn holder(actor: &Actor, what: &str) -> Result<ExecutionId, Error> {
    match actor {
        Actor::Execution { id, .. } => Ok(*id),
        _ => Err(Error::invalid(format!(
            "only an agent's execution {what} area leases (`agentgrid ctl lease`); a person \
             sees them with `agentgrid leases`"
        ))),
    }
}

/// Take area leases on `paths` for `ttl`, for the execution's own task or (`for_task`) one of
/// its sub-tasks. All or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakeAreaLeases {
    pub paths: Vec<String>,
    pub ttl: Duration,
    pub for_task: Option<TaskId>,
}

#[async_trait::async_trait]
impl Command for TakeAreaLeases {
    type Output = Vec<AreaLease>;

    async fn run(self, app: &App, actor: &Actor) -> Result<Vec<AreaLease>, Error> {
        let execution = holder(actor, "takes")?;
        let paths = parse_area_paths(&self.paths)?;
        if paths.is_empty() {
            return Err(Error::invalid(
                "name at least one path to lease, such as `src/db`",
            ));
        }
        let change = Change::TakeAreaLeases {
            execution,
            for_task: self.for_task,
            paths,
            ttl: self.ttl,
        };
        let applied = app.apply(actor, vec![change]).await?;
        Ok(applied
            .area_leases
            .into_iter()
            .filter(|l| l.state == domain::AreaLeaseState::Held)
            .collect())
    }
}

/// Areas reserved for a sub-task as it is made (`ctl subtask create --area`): see
/// [`crate::CreateSubtask`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserve {
    pub paths: Vec<String>,
    pub ttl: Duration,
}

impl Reserve {
    /// The change that reserves the areas for the task the batch's change before it creates.
    pub(crate) fn change(self, actor: &Actor) -> Result<Change, Error> {
        let execution = holder(actor, "takes")?;
        let paths = parse_area_paths(&self.paths)?;
        if paths.is_empty() {
            return Err(Error::invalid(
                "name at least one path to reserve, such as `src/db`",
            ));
        }
        Ok(Change::ReserveAreasOnNewest {
            execution,
            paths,
            ttl: self.ttl,
        })
    }
}

/// Release the execution's area leases on `paths`, or every one it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseAreaLeases {
    pub paths: Vec<String>,
}

#[async_trait::async_trait]
impl Command for ReleaseAreaLeases {
    type Output = Vec<AreaLease>;

    async fn run(self, app: &App, actor: &Actor) -> Result<Vec<AreaLease>, Error> {
        let execution = holder(actor, "releases")?;
        let paths = parse_area_paths(&self.paths)?;
        let change = Change::ReleaseAreaLeases { execution, paths };
        let applied = app.apply(actor, vec![change]).await?;
        Ok(applied.area_leases)
    }
}

/// Record as expired the held leases whose time ran out, at most `limit`; how many were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepAreaLeases {
    pub limit: u32,
}

#[async_trait::async_trait]
impl Command for SweepAreaLeases {
    type Output = usize;

    async fn run(self, app: &App, actor: &Actor) -> Result<usize, Error> {
        let due = app.store.area_leases_due(app.now(), self.limit).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let changes = due
            .iter()
            .map(|l| Change::ExpireAreaLease { id: l.id })
            .collect();
        // Another process may have recorded one meanwhile: the next sweep finds the rest.
        match app.apply_batch(actor, changes).await {
            Ok(applied) => Ok(applied.events.len()),
            Err(store::Error::Refused { .. }) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }
}

/// The area leases held now (or, with `ended`, the newest of every state), with the tasks
/// that wait for an area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AreaLeaseList {
    pub ended: bool,
    pub task: Option<TaskId>,
    pub limit: Option<u32>,
}

/// What `agentgrid leases` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AreaLeaseView {
    pub leases: Vec<AreaLease>,
    /// Tasks the scheduler holds back for an area, with why.
    pub waiting: Vec<AreaWait>,
    pub now: Timestamp,
}

/// A task held back because an area reserved for it is leased to another task's execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AreaWait {
    pub task: TaskId,
    pub reason: String,
    pub until: Timestamp,
}

#[async_trait::async_trait]
impl Query for AreaLeaseList {
    type Output = AreaLeaseView;

    async fn run(self, app: &App, _actor: &Actor) -> Result<AreaLeaseView, Error> {
        let filter = AreaLeaseFilter {
            execution: None,
            task: self.task,
            ended: self.ended,
            limit: self.limit,
        };
        let leases = app.store.area_leases(&filter).await?;
        let waiting = area_waits(app).await?;
        Ok(AreaLeaseView {
            leases,
            waiting,
            now: app.now(),
        })
    }
}

/// The open tasks an area reserved for them keeps from starting, by the scheduler's rule
/// (`domain::area::waits_for`). Reads the held leases, the executions holding them and the
/// tasks they are held for: few.
pub async fn area_waits(app: &App) -> Result<Vec<AreaWait>, Error> {
    let now = app.now();
    let held = app.store.area_leases(&AreaLeaseFilter::default()).await?;
    let mut running = std::collections::BTreeSet::new();
    for l in &held {
        if let Some(e) = app.store.execution(l.execution).await?
            && e.state.is_active()
        {
            running.insert(e.id);
        }
    }
    let mut tasks: Vec<TaskId> = held
        .iter()
        .filter(|l| l.is_reservation() && l.live(now))
        .map(|l| l.task)
        .collect();
    tasks.sort();
    tasks.dedup();
    let mut states = std::collections::BTreeMap::new();
    for &task in &tasks {
        if let Some(t) = app.store.task(task).await? {
            states.insert(task, t.state);
        }
    }
    let task_running = |t| states.get(&t) == Some(&domain::TaskState::Running);
    let mut waits = Vec::new();
    for task in tasks {
        if states.get(&task) != Some(&domain::TaskState::Open) {
            continue;
        }
        if let Some((reason, until)) =
            domain::area::waits_for(task, &held, |e| running.contains(&e), task_running, now)
        {
            waits.push(AreaWait {
                task,
                reason,
                until,
            });
        }
    }
    Ok(waits)
}
