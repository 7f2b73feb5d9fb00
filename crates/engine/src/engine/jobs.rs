//! Slow workspace work (merges into a parent, hooks, worktree removal) as background jobs.
//!
//! The loop answers agents' calls, records executors' updates and dispatches; none of that may
//! wait for git or for a `before_remove` hook that sleeps. So everything the engine does to a
//! worktree outside an execution runs as a job on the runtime, and its result comes back to the
//! loop as a [`Report`] on a channel, like an executor's update. The loop records what the
//! report says (merges are recorded steps, see `merges.rs`); the job itself writes nothing.
//!
//! Ordering is held by state, not by waiting: a task with a job in flight (or queued) is in
//! the snapshot's `busy_workspaces`, which the scheduler never dispatches, resumes or closes.
//! So a parent's resume finds its children merged, a parent is not closed while a child's
//! merge runs, and a reopened task does not start in a worktree that is being removed.
//!
//! Decision: at most one job per task's worktree at a time; work asked for meanwhile is queued
//! and joined (a second merge request while one runs means "look again when it is done", since
//! the running one may have read the due merges before the new one was recorded). Jobs for
//! different tasks run side by side: the workspace manager serialises what git needs serialised.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use domain::{Task, TaskId};
use store::{ExecutionFilter, Store};
use tokio::sync::mpsc;
use workspace::Workspaces;

use executor::AgentRun;

/// What a job needs, shared by every job of one engine.
pub(super) struct JobContext {
    pub store: Arc<dyn Store>,
    pub workspaces: Arc<Workspaces>,
    pub agents: HashMap<String, Arc<AgentRun>>,
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub agentgrid_bin: PathBuf,
}

// What a job does, what it reports and what became of a removal are the core's types, and so
// is the book of jobs in flight, work queued and ends parked behind merges: one concept, one
// type, and the rules of which work follows an end live once, in `engine_core::finalize`.
pub(super) use engine_core::finalize::JobStart as Job;
use engine_core::finalize::{Concluded, Finalizer, Next};
pub(super) use engine_core::{JobReport as Report, Removal};

/// The jobs of one engine: the core's [`Finalizer`] says which work follows an end and keeps
/// the book; this spawns the jobs it asks for, as soon as it asks.
pub(super) struct Jobs {
    context: Option<Arc<JobContext>>,
    reports: mpsc::UnboundedSender<Report>,
    pub finalizer: Finalizer,
}

impl Jobs {
    /// Jobs that report on `reports`; with no workspace manager there is never any.
    pub fn new(context: Option<JobContext>, reports: mpsc::UnboundedSender<Report>) -> Jobs {
        Jobs {
            finalizer: Finalizer::new(context.is_some()),
            context: context.map(Arc::new),
            reports,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.finalizer.is_empty()
    }

    /// Every task with a job in flight or queued.
    pub fn busy(&self) -> BTreeSet<TaskId> {
        self.finalizer.busy()
    }

    /// Starts what the finalizer asked for, and hands back the end it concluded, if any.
    pub fn follow(&mut self, next: Next) -> Option<Concluded> {
        self.start(next.jobs);
        next.concluded
    }

    /// Starts jobs; their reports come back on the channel.
    pub fn start(&mut self, jobs: Vec<Job>) {
        for job in jobs {
            self.spawn(job);
        }
    }

    fn spawn(&mut self, job: Job) {
        let Some(context) = self.context.clone() else {
            return;
        };
        let reports = self.reports.clone();
        // A spawned task leaves the loop's cancellation scope behind: the job takes the
        // engine's token along, so that a shutdown ends its hooks and git commands too.
        let token = launch::current();
        tokio::spawn(async move {
            let work = run(&context, job);
            let report = match token {
                Some(token) => launch::cancellable(token, work).await,
                None => work.await,
            };
            // A closed channel means the engine is gone: nobody needs the report.
            let _ = reports.send(report);
        });
    }
}

/// Carries out one job: the merges first, then the removal.
async fn run(context: &JobContext, job: Job) -> Report {
    let mut report = Report {
        task: job.task.id,
        merges: Vec::new(),
        removal: None,
    };
    if let Some(retry_failed) = job.work.merges {
        report.merges = super::merges::make_merges(context, &job, retry_failed).await;
    }
    if job.work.remove {
        report.removal = remove(context, &job.task).await;
    }
    report
}

/// Removes an ended task's worktree (running `before_remove`), then the tree its validators
/// judged; `None` when the task never had a branch, so nothing was ever checked out.
async fn remove(context: &JobContext, task: &Task) -> Option<Removal> {
    let branch = task.branch.clone()?;
    let manager = &context.workspaces;
    let path = manager.path_of(task.id);
    if path.exists() {
        let ws = workspace::Workspace {
            task: task.id,
            path,
            branch,
            created: false,
        };
        let sandbox = hook_sandbox(context, task.id).await;
        match manager.remove(&ws, sandbox.as_ref()).await {
            Ok(workspace::RemoveOutcome::Busy { pids }) => {
                tracing::debug!(task = %task.id, ?pids, "workspace busy; removal retried later");
                return Some(Removal::Busy);
            }
            Ok(workspace::RemoveOutcome::Removed | workspace::RemoveOutcome::AlreadyGone) => {}
            Err(e) => {
                tracing::warn!(task = %task.id, "workspace kept: {e}");
                return Some(Removal::Kept(e.to_string()));
            }
        }
    }
    // The base commit recorded beside the judged tree stays for a task that may be reopened;
    // a done one runs again only if its pending approval is rejected.
    let judge = workspace::JudgeTree::new(executor::judge_dir(&context.state_dir, task.id));
    if let Err(e) = judge.remove() {
        tracing::warn!(task = %task.id, "judge tree kept: {e}");
    }
    super::prune::after_end(context.store.as_ref(), &context.state_dir, task).await;
    // A session parked at a gate is resumed only by the task's next execution; there is none.
    if let Err(e) = executor::runtime::forget_parked(&context.run_dir, task.id) {
        tracing::warn!(task = %task.id, "parked agent home kept: {e}");
    }
    Some(Removal::Removed)
}

/// The sandbox for a hook the engine runs outside any execution (`before_remove`, and
/// `after_create` when a merge checks a parent's worktree out again): the profile of the agent
/// that ran the task last, which is what its workspace's code ran under. When that agent is not
/// known (no execution, or its manifest is gone), the default profile.
pub(super) async fn hook_sandbox(
    context: &JobContext,
    task_id: TaskId,
) -> Option<launch::sandbox::SandboxSpec> {
    let manager = &context.workspaces;
    let last = context
        .store
        .executions(&ExecutionFilter {
            task: Some(task_id),
            active_only: false,
            limit: Some(1),
        })
        .await
        .ok()
        .and_then(|mut executions| executions.pop());
    let default = manifest::SandboxProfile::default();
    let profile = last
        .and_then(|e| context.agents.get(&e.agent))
        .map_or(&default, |agent| &agent.sandbox);
    let places = executor::SandboxPlaces {
        workspace: manager.path_of(task_id),
        state_dir: context.state_dir.clone(),
        run_dir: context.run_dir.clone(),
        main_checkout: Some(manager.config().repo_root.clone()),
        worktrees: Some(manager.config().root.clone()),
        git: executor::worktree_git(&manager.config().repo_root, &manager.path_of(task_id)),
        expose: Vec::new(),
        helper: context.agentgrid_bin.clone(),
        gateway: None,
        // The hook's own timeout stops it; this holds should the engine be gone.
        wall_time: Some(domain::Duration::from_millis(
            (manager.config().hook_timeout + std::time::Duration::from_secs(60)).as_millis() as u64,
        )),
    };
    executor::hook_sandbox_for(profile, &places)
}
