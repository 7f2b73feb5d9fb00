//! The workflow driver: the engine carries out what each running workflow run waits for.
//!
//! A run is recorded state (the tracker folds its inputs with the pure `workflow::step`); what
//! it waits for in its current visit is `Instance::awaiting`. On each turn of the loop the
//! driver walks the running runs and, for every command not yet begun, records its begin
//! (`Change::BeginWorkflowCommand`, keyed by run, visit, state and kind, refused the second
//! time) and only then acts. So a command is carried out at most once per visit, a restart
//! included: a command or land that was begun and whose result never came back was cut short
//! by a stop, and its visit ends as failed rather than running it again.
//!
//! What each command becomes:
//! - an agent: the tracker's begin assigns the agent to the task (or makes the sub-task), and
//!   the scheduler dispatches it through the normal path (claims, sandbox, validators,
//!   budgets); the task's end (done, or failed, blocked, cancelled) is the visit's input,
//!   with the last execution's score. Until then a run's task is held from the scheduler.
//! - a command: run in the task's worktree through the launch API, in the sandbox a hook gets
//!   (never with an execution's token, never unsandboxed), with bounded output, off the loop.
//!   It begins only once no execution of its task is active, and holds the worktree's turn
//!   (`workspace::WorktreeTurn`) from its checkout to its commit, while its task is busy for
//!   the scheduler: no agent writes there while it runs, and what a command that succeeded
//!   changed is committed to the task's branch (checked as an agent's commit) before its
//!   visit ends, so a land after it lands it.
//! - a gate: the approval is requested with the begin; the decision steps the run in the
//!   tracker, in the decision's batch.
//! - a sub-workflow: started with the begin; its end steps the parent in the tracker.
//! - a land: the land code (`app::Land` with the local lander), off the loop.
//! - a timer: its deadline is recorded with the begin; when due, `TimedOut` is the input, and
//!   what the visit started (a command, a land, an agent's execution) is stopped.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use domain::{TaskId, Timestamp, WorkflowId};
use executor::StopReason;
use store::{Change, ExecutionFilter, WorkflowFilter, WorkflowRun};
use tokio::sync::mpsc;
use workflow::{Command, Input, Outcome, Target};

use super::Engine;
use super::jobs::JobContext;
use crate::Error;

/// How long a workflow's command may run when its state sets no timeout.
const COMMAND_TIMEOUT: StdDuration = StdDuration::from_secs(600);
/// The most of a command's standard output and error kept, each.
const COMMAND_OUTPUT: usize = 16 * 1024;
/// How often the running runs are looked at when nothing else wakes the driver.
const LOOK_EVERY: StdDuration = StdDuration::from_millis(250);

/// One begun command, by the run and the visit it belongs to.
type Key = (WorkflowId, u32, String, &'static str);

/// What the driver keeps in memory. Nothing in it is needed after a restart: the runs, the
/// begun marks and the deadlines are in the store.
pub(super) struct Driver {
    /// Commands and lands running off the loop, with how to stop each.
    in_flight: HashMap<Key, InFlight>,
    reports: mpsc::UnboundedSender<Report>,
    receiver: Option<mpsc::UnboundedReceiver<Report>>,
    /// When the runs were last looked at.
    looked: Option<Instant>,
    /// Whether any run was running at the last look.
    running: bool,
    /// The earliest deadline of an armed timer of a current visit.
    next_deadline: Option<Timestamp>,
    /// Tasks a run holds from the scheduler.
    held: BTreeSet<TaskId>,
    /// Every task a workflow ever ran on (read once at the start, then added to): such a task
    /// is its workflow's, run by the scheduler only when a visit says so, before and after the
    /// run's end alike, so that the run leaves it where its last state left it.
    owned: Option<BTreeSet<TaskId>>,
}

/// Work of a run under way off the loop.
struct InFlight {
    cancel: launch::CancellationToken,
    /// The task whose worktree a command works in (a land works in none).
    works_in: Option<TaskId>,
}

/// The end of work the driver ran off the loop: the input for its visit.
pub(super) struct Report {
    key: Key,
    run: WorkflowId,
    input: Input,
    note: Option<String>,
    task: TaskId,
}

impl Driver {
    pub(super) fn new() -> Driver {
        let (reports, receiver) = mpsc::unbounded_channel();
        Driver {
            in_flight: HashMap::new(),
            reports,
            receiver: Some(receiver),
            looked: None,
            running: false,
            next_deadline: None,
            held: BTreeSet::new(),
            owned: None,
        }
    }

    /// Where reports arrive; taken by the loop when it starts.
    pub(super) fn take_reports(&mut self) -> mpsc::UnboundedReceiver<Report> {
        self.receiver.take().expect("an engine serves once")
    }

    /// Work of a run is under way off the loop: an engine that runs until idle waits for it.
    pub(super) fn busy(&self) -> bool {
        !self.in_flight.is_empty()
    }

    pub(super) fn held(&self) -> BTreeSet<TaskId> {
        self.held.clone()
    }

    /// Tasks whose worktree a command works in: busy for the scheduler, which starts no
    /// execution there until the command's commit is made.
    pub(super) fn working_in(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.in_flight.values().filter_map(|work| work.works_in)
    }

    /// The engine stops: what runs off the loop is stopped with it. Each was begun, so the next
    /// start ends its visit as cut short rather than running it twice.
    pub(super) fn stop_all(&mut self) {
        for (_, work) in self.in_flight.drain() {
            work.cancel.cancel();
        }
    }

    /// When the driver must look again at the latest, given the clock's `now`.
    pub(super) fn due(&self, now: Timestamp) -> Option<Instant> {
        let timer = self
            .next_deadline
            .map(|d| Instant::now() + d.since(now).as_std());
        let look = self
            .running
            .then(|| self.looked.map_or(Instant::now(), |at| at + LOOK_EVERY));
        [timer, look].into_iter().flatten().min()
    }

    /// Whether no run was running at the last look.
    pub(super) fn none_running(&self) -> bool {
        !self.running
    }

    fn look_is_due(&self, dirty: bool) -> bool {
        dirty || self.looked.is_none_or(|at| at.elapsed() >= LOOK_EVERY)
    }
}

impl Engine {
    /// Carries the running workflow runs on: begins what they wait for and gives them the ends
    /// that came. `force` looks even when the last look was a moment ago.
    pub(super) async fn drive_workflows(&mut self, force: bool) -> Result<(), Error> {
        // With no run running and none started since the last look, a change elsewhere cannot
        // move a run: only the slow look (and a forced one) reads the store then.
        let quiet = self.workflows.none_running() && self.known.no_new_workflow();
        if !self.workflows.look_is_due(force || (self.dirty && !quiet)) {
            return Ok(());
        }
        // A step can make new commands due at once (a command state after an agent state):
        // the runs are walked again while a walk moved any of them, a bounded number of times.
        for _ in 0..16 {
            if !self.drive_once().await? {
                break;
            }
        }
        self.workflows.looked = Some(Instant::now());
        Ok(())
    }

    /// One walk over the running runs; whether it moved any.
    async fn drive_once(&mut self) -> Result<bool, Error> {
        let filter = WorkflowFilter {
            task: None,
            running: true,
        };
        if self.workflows.owned.is_none() {
            let all = WorkflowFilter {
                task: None,
                running: false,
            };
            let owned = self.store.workflow_runs(&all).await?;
            self.workflows.owned = Some(owned.iter().map(|r| r.task_id).collect());
        }
        self.known.workflows_looked();
        let runs = match self.store.workflow_runs(&filter).await {
            Ok(runs) => runs,
            Err(e) => {
                self.known.forget();
                return Err(e.into());
            }
        };
        let now = self.clock.now();
        self.workflows.running = !runs.is_empty();
        self.workflows.next_deadline = None;
        let owned = self.workflows.owned.get_or_insert_default();
        owned.extend(runs.iter().map(|r| r.task_id));
        let mut held = owned.clone();
        let mut moved = false;
        let mut current: BTreeSet<(WorkflowId, u32)> = BTreeSet::new();
        let mut agent_tasks = BTreeSet::new();
        for run in &runs {
            current.insert((run.id, run.instance.visit));
            for command in run.instance.awaiting(&run.definition) {
                if let Command::RunAgent {
                    target: Target::Task,
                    ..
                } = &command
                {
                    agent_tasks.insert(run.task_id);
                }
                moved |= self.carry_out(run, &command, now).await?;
            }
        }
        // A run's task is the scheduler's only while an agent state of the run is on it.
        for task in agent_tasks {
            held.remove(&task);
        }
        self.workflows.held = held;
        // Work of a visit that is over is stopped: its run timed it out or went on without it.
        let over: Vec<Key> = self
            .workflows
            .in_flight
            .keys()
            .filter(|(run, visit, _, _)| !current.contains(&(*run, *visit)))
            .cloned()
            .collect();
        for key in over {
            if let Some(work) = self.workflows.in_flight.remove(&key) {
                work.cancel.cancel();
            }
        }
        self.stop_timed_out_agents(&runs);
        Ok(moved)
    }

    /// Makes sure `command` of `run` is under way, or takes its end; whether the run moved.
    async fn carry_out(
        &mut self,
        run: &WorkflowRun,
        command: &Command,
        now: Timestamp,
    ) -> Result<bool, Error> {
        let Some(begun) = run.begun_for(command).cloned() else {
            // A command waits until no execution of its task is active: it would run on files
            // an agent is still writing, and its commit would take them half done. Nothing is
            // recorded meanwhile; the end of the execution (and its commit) wakes the driver.
            if let Command::RunCommand { .. } = command
                && self
                    .active
                    .values()
                    .any(|a| a.execution.task_id == run.task_id)
            {
                return Ok(false);
            }
            return self.begin(run, command).await;
        };
        let key = key_of(run.id, command);
        match command {
            Command::RunCommand { visit, state, .. } | Command::Land { visit, state } => {
                if self.workflows.in_flight.contains_key(&key) {
                    return Ok(false);
                }
                // A land is recorded in the store when it moves the base: one cut short after
                // that took effect, and its visit succeeded.
                if let Command::Land { .. } = command
                    && let Some(landed) = landed_by_run(&*self.store, run).await?
                {
                    let input = Input::ended(*visit, state, Outcome::Succeeded);
                    let note = format!(
                        "workflow run W{}: `{state}` (visit {visit}) was cut short when the engine \
                         stopped, after {landed}",
                        run.id
                    );
                    return self.step_run(run.id, run.task_id, input, Some(note)).await;
                }
                // Begun, and nothing of this engine runs it: an engine that stopped began it.
                // It may have had its effect, so it is not carried out again.
                let input = Input::ended(*visit, state, Outcome::Failed);
                let note = format!(
                    "workflow run W{}: `{state}` (visit {visit}) was cut short when the engine \
                     stopped; it is not carried out twice, so the visit ends as failed",
                    run.id
                );
                self.step_run(run.id, run.task_id, input, Some(note)).await
            }
            Command::ArmTimer { visit, .. } => {
                let Some(deadline) = begun.deadline else {
                    return Ok(false);
                };
                if deadline <= now {
                    let input = Input::TimedOut { visit: *visit };
                    return self.step_run(run.id, run.task_id, input, None).await;
                }
                let next = &mut self.workflows.next_deadline;
                *next = Some(next.map_or(deadline, |d| d.min(deadline)));
                Ok(false)
            }
            Command::RunAgent {
                visit,
                state,
                target,
                ..
            } => {
                let task_id = match target {
                    Target::Task => run.task_id,
                    Target::Subtask { .. } => match begun.subtask {
                        Some(t) => t,
                        None => return Ok(false),
                    },
                };
                let Some(task) = self.store.task(task_id).await? else {
                    let input = Input::ended(*visit, state, Outcome::Failed);
                    return self.step_run(run.id, run.task_id, input, None).await;
                };
                let Some(outcome) = tracker::outcome_of(task.state) else {
                    return Ok(false);
                };
                if self.active.values().any(|a| a.execution.task_id == task_id) {
                    return Ok(false);
                }
                let score = self.last_score(task_id, begun.at).await?;
                let input = Input::Ended {
                    visit: *visit,
                    state: state.clone(),
                    outcome,
                    score,
                    values: Default::default(),
                };
                self.step_run(run.id, run.task_id, input, None).await
            }
            // The tracker steps these runs itself: a decision, or the child's end.
            Command::RequestApproval { .. } | Command::StartWorkflow { .. } => Ok(false),
            Command::Cancel { .. } | Command::Finish { .. } => Ok(false),
        }
    }

    /// Records the begin of `command`, then acts on it; whether the run moved.
    async fn begin(&mut self, run: &WorkflowRun, command: &Command) -> Result<bool, Error> {
        let child = match command {
            Command::StartWorkflow { workflow, .. } => match self.setup.workflows.get(workflow) {
                Some(definition) => Some((workflow.clone(), definition.clone())),
                None => {
                    let Some((visit, state)) = tracker::command_visit(command) else {
                        return Ok(false);
                    };
                    let input = Input::ended(visit, state, Outcome::Failed);
                    let note = format!(
                        "workflow run W{}: `{state}` starts the workflow `{workflow}`, \
                             which no manifest defines now",
                        run.id
                    );
                    return self.step_run(run.id, run.task_id, input, Some(note)).await;
                }
            },
            _ => None,
        };
        let change = Change::BeginWorkflowCommand {
            id: run.id,
            command: command.clone(),
            child,
        };
        match self.apply("engine", vec![change]).await {
            Ok(_) => {}
            Err(Error::Store(store::Error::Refused { reason, .. })) => {
                // The rules refuse the work itself (a sub-task under done work, a second
                // pending approval): the visit ends as failed, with why, rather than being
                // tried at every turn.
                tracing::warn!(workflow = %run.id, "a workflow command was not begun: {reason}");
                let Some((visit, state)) = tracker::command_visit(command) else {
                    return Ok(false);
                };
                let input = match command {
                    Command::ArmTimer { .. } => return Ok(false),
                    Command::RequestApproval { .. } => Input::Decided {
                        visit,
                        approved: false,
                        feedback: Some(reason.clone()),
                    },
                    _ => Input::ended(visit, state, Outcome::Failed),
                };
                let note = format!(
                    "workflow run W{}: `{state}` could not start: {reason}",
                    run.id
                );
                return self.step_run(run.id, run.task_id, input, Some(note)).await;
            }
            Err(e) => return Err(e),
        }
        match command {
            Command::RunCommand {
                visit,
                state,
                run: argv,
                ..
            } => {
                let timeout = run
                    .definition
                    .state(state)
                    .and_then(|s| s.timeout_secs)
                    .map_or(COMMAND_TIMEOUT, StdDuration::from_secs);
                let key = key_of(run.id, command);
                let cancel = launch::CancellationToken::new();
                let in_flight = InFlight {
                    cancel: cancel.clone(),
                    works_in: Some(run.task_id),
                };
                self.workflows.in_flight.insert(key.clone(), in_flight);
                let work = CommandWork {
                    key,
                    run: run.id,
                    visit: *visit,
                    state: state.clone(),
                    argv: argv.clone(),
                    timeout,
                    task: run.task_id,
                };
                let context = self.job_context();
                let tx = self.workflows.reports.clone();
                tokio::spawn(async move {
                    let report = launch::cancellable(cancel, run_command(context, work)).await;
                    let _ = tx.send(report);
                });
            }
            Command::Land { visit, state } => {
                let key = key_of(run.id, command);
                let cancel = launch::CancellationToken::new();
                let in_flight = InFlight {
                    cancel: cancel.clone(),
                    works_in: None,
                };
                self.workflows.in_flight.insert(key.clone(), in_flight);
                let lander = self.lander();
                let app = app::App::new(self.store.clone(), self.clock.clone());
                let tx = self.workflows.reports.clone();
                let (id, task, visit, state) = (run.id, run.task_id, *visit, state.clone());
                let (store, run) = (self.store.clone(), run.clone());
                tokio::spawn(async move {
                    let landed = launch::cancellable(cancel, land(app, lander, task)).await;
                    let (outcome, note) = match landed {
                        // A try that a stop cut short may have landed, or left a land that
                        // this try settled as landed; either way the work is on the base.
                        (Outcome::Failed, note) => match landed_by_run(&*store, &run).await {
                            Ok(Some(landed)) => (
                                Outcome::Succeeded,
                                Some(format!(
                                    "workflow run W{id}: `{state}` (visit {visit}): an earlier try \
                                 of the run landed it: {landed}"
                                )),
                            ),
                            _ => (Outcome::Failed, note),
                        },
                        succeeded => succeeded,
                    };
                    let _ = tx.send(Report {
                        key,
                        run: id,
                        input: Input::ended(visit, &state, outcome),
                        note,
                        task,
                    });
                });
            }
            // The scheduler dispatches the agent the begin assigned.
            Command::RunAgent { .. } => self.dirty = true,
            _ => {}
        }
        Ok(true)
    }

    /// `ctl workflow start NAME`: starts one of the project's workflows on the execution's own
    /// task (the call names no other), as the execution.
    pub(super) async fn start_workflow_call(
        &mut self,
        task: TaskId,
        actor: &app::Actor,
        name: &str,
    ) -> Result<serde_json::Value, String> {
        let Some(definition) = self.setup.workflows.get(name).cloned() else {
            let mut names: Vec<&str> = self.setup.workflows.keys().map(String::as_str).collect();
            names.sort_unstable();
            return Err(format!(
                "no workflow is called `{name}` (workflows: {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ));
        };
        let change = Change::StartWorkflow {
            task,
            name: name.to_string(),
            definition,
        };
        let applied = match self.apply(&actor.recorded_as(), vec![change]).await {
            Ok(applied) => applied,
            Err(Error::Store(store::Error::Refused { reason, .. })) => return Err(reason),
            Err(e) => return Err(e.to_string()),
        };
        let run = applied.events.iter().find_map(|e| match &e.kind {
            domain::EventKind::TaskWorkflowStarted { workflow, .. } => Some(*workflow),
            _ => None,
        });
        self.workflows.looked = None;
        Ok(serde_json::json!({
            "run": run,
            "task": task,
            "workflow": name,
            "note": "the engine carries the run out; exit when your own work is done",
        }))
    }

    /// Takes the end of work run off the loop.
    pub(super) async fn workflow_report(&mut self, report: Report) -> Result<(), Error> {
        if self.workflows.in_flight.remove(&report.key).is_none() {
            // Stopped meanwhile: its visit is over, and its end is no input.
            return Ok(());
        }
        self.step_run(report.run, report.task, report.input, report.note)
            .await?;
        self.workflows.looked = None;
        Ok(())
    }

    /// Gives the run one input, with a note on its task; a refusal (the visit is over) is
    /// no error. Whether the run moved.
    async fn step_run(
        &mut self,
        id: WorkflowId,
        task: TaskId,
        input: Input,
        note: Option<String>,
    ) -> Result<bool, Error> {
        let mut changes = vec![Change::StepWorkflow { id, input }];
        if let Some(text) = note {
            changes.push(Change::Comment { id: task, text });
        }
        match self.apply("engine", changes).await {
            Ok(_) => Ok(true),
            Err(Error::Store(store::Error::Refused { reason, .. })) => {
                tracing::debug!(workflow = %id, "a workflow input was not taken: {reason}");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The score of the last execution on `task` that ended since `since`.
    async fn last_score(&self, task: TaskId, since: Timestamp) -> Result<Option<f64>, Error> {
        let filter = ExecutionFilter {
            task: Some(task),
            active_only: false,
            limit: Some(1),
        };
        let last = self.store.executions(&filter).await?.pop();
        Ok(last.filter(|e| e.queued_at >= since).and_then(|e| e.score))
    }

    /// An agent state that timed out has its execution stopped: nothing the visit started
    /// outlives it.
    fn stop_timed_out_agents(&mut self, runs: &[WorkflowRun]) {
        let mut stop = BTreeSet::new();
        let mut wanted = BTreeSet::new();
        for run in runs {
            for b in run.begun.iter().filter(|b| b.command == "run_agent") {
                let task = b.subtask.unwrap_or(run.task_id);
                if b.visit == run.instance.visit {
                    wanted.insert(task);
                    continue;
                }
                let timed_out = run
                    .instance
                    .history
                    .iter()
                    .any(|e| e.visit == b.visit && e.note.starts_with("timed out"));
                if timed_out {
                    stop.insert(task);
                }
            }
        }
        for task in stop.difference(&wanted) {
            self.stop_agent_of(*task);
        }
    }

    /// Stops the execution on `task` that a visit which timed out started.
    fn stop_agent_of(&mut self, task: TaskId) {
        for active in self.active.values_mut() {
            if active.execution.task_id == task && !active.kill_requested {
                active.kill_requested = true;
                active.stop.stop(StopReason::TimedOut);
            }
        }
    }

    fn job_context(&self) -> Option<JobContext> {
        let workspaces = self.workspaces.clone()?;
        Some(JobContext {
            store: self.store.clone(),
            workspaces,
            agents: self.setup.agents.clone(),
            state_dir: self.options.state_dir.clone(),
            run_dir: self.options.run_dir.clone(),
            agentgrid_bin: self.options.agentgrid_bin.clone(),
        })
    }

    fn lander(&self) -> Option<Arc<dyn app::Lander>> {
        let workspaces = self.workspaces.clone()?;
        let judges = crate::Judges {
            agents: self.setup.agents.clone(),
            project_dir: self.options.project_dir.clone(),
            state_dir: self.options.state_dir.clone(),
            run_dir: self.options.run_dir.clone(),
            agentgrid_bin: self.options.agentgrid_bin.clone(),
            grace: self.setup.grace,
        };
        Some(Arc::new(crate::LocalLander::new(
            workspaces,
            self.setup.land_strategy,
            judges,
        )))
    }
}

fn key_of(run: WorkflowId, command: &Command) -> Key {
    let (visit, state) = tracker::command_visit(command).unwrap_or((0, ""));
    (
        run,
        visit,
        state.to_string(),
        tracker::command_kind(command),
    )
}

struct CommandWork {
    key: Key,
    run: WorkflowId,
    visit: u32,
    state: String,
    argv: Vec<String>,
    timeout: StdDuration,
    task: TaskId,
}

/// Runs a workflow's command in its task's worktree, in the sandbox a hook gets: the profile
/// of the agent that ran the task last (the default one otherwise), no model gateway, no
/// token, an environment of agentgrid's making only.
async fn run_command(context: Option<JobContext>, work: CommandWork) -> Report {
    let (outcome, note) = match command_outcome(context, &work).await {
        Ok(ok) => ok,
        Err(why) => (Outcome::Failed, Some(why)),
    };
    Report {
        key: work.key.clone(),
        run: work.run,
        input: Input::ended(work.visit, &work.state, outcome),
        note,
        task: work.task,
    }
}

async fn command_outcome(
    context: Option<JobContext>,
    work: &CommandWork,
) -> Result<(Outcome, Option<String>), String> {
    let place = format!("workflow run W{}, `{}`", work.run, work.state);
    let Some(context) = context else {
        return Err(format!(
            "{place}: workspaces are off (workspace.enabled: false), so there is no worktree to \
             run the command in"
        ));
    };
    let Some((program, args)) = work.argv.split_first() else {
        return Err(format!("{place}: the command is empty"));
    };
    let Some(sandbox) = super::jobs::hook_sandbox(&context, work.task).await else {
        return Err(format!(
            "{place}: the sandbox of the task's agent is off, and a workflow's command never \
             runs on the host unsandboxed"
        ));
    };
    let task = context
        .store
        .task(work.task)
        .await
        .map_err(|e| format!("{place}: {e}"))?
        .ok_or_else(|| format!("{place}: task #{} does not exist", work.task))?;
    let start_from = task.parent.map(workspace::Workspaces::branch_name);
    // The turn is held from the checkout to the commit: no merge into the task, removal of
    // its worktree or other command of a parallel state works there meanwhile, so the commit
    // takes what this command changed and nothing half done.
    let turn = context.workspaces.turn(work.task).await;
    let ws = context
        .workspaces
        .ensure_in(&turn, start_from.as_deref(), Some(&sandbox))
        .await
        .map_err(|e| format!("{place}: the task's worktree: {e}"))?;
    if task.branch.is_none() {
        let change = Change::SetBranch {
            id: work.task,
            branch: ws.branch.clone(),
        };
        if let Err(e) = context.store.apply("engine", now(), vec![change]).await {
            tracing::warn!(task = %work.task, "the branch was not recorded: {e}");
        }
    }
    let env = vec![
        (
            "PATH".to_string(),
            "/usr/local/bin:/usr/bin:/bin".to_string(),
        ),
        ("HOME".to_string(), ws.path.display().to_string()),
        ("AGENTGRID_TASK_ID".to_string(), work.task.to_string()),
    ];
    let spec = launch::LaunchSpec::new(program.clone(), &ws.path)
        .args(args.iter().cloned())
        .with_env_exactly(env)
        .with_sandbox(sandbox);
    match launch::run(spec, work.timeout, COMMAND_OUTPUT).await {
        Ok(out) if out.success() => {
            // What the command changed (a formatter's rewrite, a generated file) is the task's
            // work: committed to its branch now, through the same checked commit as an
            // agent's (quota, HEAD, index, the `.git` pointer put back), so that a land state
            // after it lands it. A refused commit fails the visit and commits nothing.
            let message =
                workspace::message::workflow_command(work.task, work.run, &work.state, &work.argv);
            match context.workspaces.commit_all_in(&turn, &ws, &message).await {
                Ok(_) => Ok((Outcome::Succeeded, None)),
                Err(e) => Ok((
                    Outcome::Failed,
                    Some(format!(
                        "{place}: `{}` succeeded, but what it changed was not committed: {e}",
                        work.argv.join(" ")
                    )),
                )),
            }
        }
        Ok(out) => {
            let tail = executor::output_tail(&out.stdout, &out.stderr, 2000);
            Ok((
                Outcome::Failed,
                Some(format!(
                    "{place}: `{}` {}{}",
                    work.argv.join(" "),
                    out.describe(),
                    if tail.trim().is_empty() {
                        String::new()
                    } else {
                        format!(":\n{tail}")
                    }
                )),
            ))
        }
        Err(e) => Err(format!(
            "{place}: `{}` could not run: {e}",
            work.argv.join(" ")
        )),
    }
}

fn now() -> Timestamp {
    use domain::Clock;
    domain::SystemClock.now()
}

/// Lands the task's branch with the land code; anything but a moved (or up to date) base is
/// a failure, with its reason.
async fn land(
    app: app::App,
    lander: Option<Arc<dyn app::Lander>>,
    task: TaskId,
) -> (Outcome, Option<String>) {
    let Some(lander) = lander else {
        return (
            Outcome::Failed,
            Some("workspaces are off, so the task has no branch to land".into()),
        );
    };
    let land = app::Land {
        task,
        strategy: None,
        dry_run: false,
        lander,
    };
    match app.execute(&app::Actor::Engine, land).await {
        Ok(app::Landed::Moved { .. } | app::Landed::UpToDate { .. }) => (Outcome::Succeeded, None),
        Ok(app::Landed::Conflict { files, .. }) => (
            Outcome::Failed,
            Some(format!(
                "the land of task #{task} conflicts in {}",
                files.join(", ")
            )),
        ),
        Err(e) => (
            Outcome::Failed,
            Some(format!("the land of task #{task} failed: {e}")),
        ),
    }
}

/// Whether the task of `run` landed since the run first began a land, and how it reads: a land
/// the run asked for took effect even when its report never came back (a stop cut it short
/// after the base moved). A land from before the run's first try is not its work: landing
/// again is refused then, and so is the visit.
async fn landed_by_run(
    store: &dyn store::Store,
    run: &WorkflowRun,
) -> Result<Option<String>, store::Error> {
    let Some(first) = run
        .begun
        .iter()
        .filter(|b| b.command == "land")
        .map(|b| b.at)
        .min()
    else {
        return Ok(None);
    };
    let events = store
        .entity_events(domain::EntityKind::Task, run.task_id.0)
        .await?;
    Ok(events.iter().rev().find_map(|e| match &e.kind {
        domain::EventKind::TaskLanded { base, new, .. } if e.at >= first => Some(format!(
            "task #{} landed at {} on {base}",
            run.task_id,
            domain::event::short(new)
        )),
        _ => None,
    }))
}
