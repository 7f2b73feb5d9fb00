//! The service loop: decide, act, record, wait.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use control::{ControlCall, Op};
use domain::{
    Clock, EntityKind, Event, Execution, ExecutionId, ExecutionKind, ExecutionState, NewTask, Task,
    TaskId, TaskState, Timestamp,
};
use executor::{ExecutionJob, ExecutionShared, StopReason, Update};
use manifest::{ExecutionView, PromptContext, TaskView};
use scheduler::{Action, ActiveExecution, ExecutionEnd, KillReason, Snapshot};
use store::{Change, ExecutionFilter, Store, TaskFilter};
use tokio::sync::{mpsc, watch};
use workspace::Workspaces;

use crate::{Error, Setup};

/// Whether `run` returns once there is nothing left to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Return when no execution runs and nothing is due (tasks left open are reported).
    UntilIdle,
    /// Keep serving until shutdown.
    Forever,
}

pub struct EngineOptions {
    pub project_dir: PathBuf,
    /// `.agentgrid`: logs and run files go under it.
    pub state_dir: PathBuf,
    pub agentgrid_bin: PathBuf,
    pub mode: RunMode,
    /// Receives every event the engine records, for progress output.
    pub events: Option<mpsc::UnboundedSender<Event>>,
}

/// What a run did, for the closing summary.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub executions_started: u32,
    pub recovered: u32,
    /// Tasks left open that nothing could run, with the reason.
    pub stuck: Vec<(TaskId, String)>,
    pub interrupted: bool,
}

struct Active {
    execution: Execution,
    shared: Arc<ExecutionShared>,
    stop: watch::Sender<Option<StopReason>>,
    kill_requested: bool,
}

pub struct Engine {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    setup: Setup,
    options: EngineOptions,
    workspaces: Option<Arc<Workspaces>>,
    snapshot: Snapshot,
    active: HashMap<ExecutionId, Active>,
    /// Everything up to here has been seen by the engine.
    followed_seq: u64,
    /// Events the engine wrote itself after `followed_seq`, so following skips them.
    own_seqs: BTreeSet<u64>,
    summary: RunSummary,
}

/// How often changes written by other processes (the CLI) are picked up.
const FOLLOW_INTERVAL: StdDuration = StdDuration::from_millis(250);

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        setup: Setup,
        options: EngineOptions,
    ) -> Engine {
        let workspaces = setup
            .workspace
            .clone()
            .map(|cfg| Arc::new(Workspaces::new(cfg)));
        Engine {
            store,
            clock,
            setup,
            options,
            workspaces,
            snapshot: Snapshot::default(),
            active: HashMap::new(),
            followed_seq: 0,
            own_seqs: BTreeSet::new(),
            summary: RunSummary::default(),
        }
    }

    /// Runs until idle (or forever) or until `shutdown` resolves; then stops dispatching, asks
    /// running executions to stop, and waits for them to wind down.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<RunSummary, Error> {
        std::fs::create_dir_all(self.options.state_dir.join("logs"))
            .and_then(|_| std::fs::create_dir_all(self.options.state_dir.join("run")))
            .map_err(|e| {
                Error::Io(format!(
                    "cannot create {}: {e}",
                    self.options.state_dir.display()
                ))
            })?;
        self.followed_seq = self.store.last_seq().await?;
        for task in self.store.tasks(&TaskFilter::default()).await? {
            self.snapshot.insert(task);
        }
        self.recover().await?;

        let (update_tx, mut update_rx) = mpsc::unbounded_channel::<Update>();
        let (call_tx, mut call_rx) = mpsc::channel::<ControlCall>(64);
        tokio::pin!(shutdown);
        let mut stopping = false;
        let mut last_follow = std::time::Instant::now();
        loop {
            let now = self.clock.now();
            let wakeup = if stopping {
                None
            } else {
                self.decide_and_act(now, &update_tx, &call_tx).await?
            };
            if stopping && self.active.is_empty() {
                break;
            }
            if !stopping
                && self.options.mode == RunMode::UntilIdle
                && self.active.is_empty()
                && wakeup.is_none()
            {
                self.follow().await?;
                if self.decide_is_idle(self.clock.now()) {
                    self.summary.stuck = self.stuck_tasks();
                    break;
                }
                continue;
            }
            let until_wakeup = wakeup
                .map(|w| w.since(now).as_std())
                .unwrap_or(FOLLOW_INTERVAL);
            let nap = until_wakeup.min(FOLLOW_INTERVAL.saturating_sub(last_follow.elapsed()));
            tokio::select! {
                Some(update) = update_rx.recv() => {
                    let mut batch = vec![update];
                    while let Ok(more) = update_rx.try_recv() {
                        batch.push(more);
                    }
                    self.record_updates(batch).await?;
                }
                Some(call) = call_rx.recv() => self.answer_call(call).await,
                _ = tokio::time::sleep(nap) => {}
                _ = &mut shutdown, if !stopping => {
                    stopping = true;
                    self.summary.interrupted = true;
                    for active in self.active.values() {
                        let _ = active.stop.send(Some(StopReason::Cancelled));
                    }
                }
            }
            if last_follow.elapsed() >= FOLLOW_INTERVAL {
                self.follow().await?;
                last_follow = std::time::Instant::now();
            }
        }
        Ok(self.summary)
    }

    fn decide_is_idle(&mut self, now: Timestamp) -> bool {
        self.refresh_active_view();
        let decision = scheduler::decide(&self.snapshot, &self.setup.config, now);
        decision.actions.is_empty() && decision.next_wakeup.is_none()
    }

    async fn decide_and_act(
        &mut self,
        now: Timestamp,
        update_tx: &mpsc::UnboundedSender<Update>,
        call_tx: &mpsc::Sender<ControlCall>,
    ) -> Result<Option<Timestamp>, Error> {
        self.snapshot
            .recent_dispatches
            .retain(|t| now.since(*t) < domain::Duration::from_secs(60));
        self.refresh_active_view();
        let decision = scheduler::decide(&self.snapshot, &self.setup.config, now);
        for action in decision.actions {
            match action {
                Action::Dispatch {
                    task,
                    agent,
                    kind,
                    attempt,
                } => {
                    self.dispatch(task, &agent, kind, attempt, now, update_tx, call_tx)
                        .await?;
                }
                Action::Kill { execution, reason } => {
                    if let Some(active) = self.active.get_mut(&execution) {
                        active.kill_requested = true;
                        let reason = match reason {
                            KillReason::TimedOut => StopReason::TimedOut,
                            KillReason::Stalled => StopReason::Stalled,
                        };
                        let _ = active.stop.send(Some(reason));
                    }
                }
                Action::FailTask { task, reason } => {
                    self.apply(
                        "engine",
                        vec![Change::SetTaskState {
                            id: task,
                            to: TaskState::Failed,
                            reason: Some(reason),
                        }],
                    )
                    .await?;
                }
                Action::CloseParent { task, to, reason } => {
                    self.apply(
                        "engine",
                        vec![Change::SetTaskState {
                            id: task,
                            to,
                            reason: Some(reason),
                        }],
                    )
                    .await?;
                    self.after_task_ended(task).await;
                }
            }
        }
        Ok(decision.next_wakeup)
    }

    /// Keeps the snapshot's active list (which the scheduler reads) in step with live state.
    fn refresh_active_view(&mut self) {
        self.snapshot.active.clear();
        for (id, a) in &self.active {
            self.snapshot.active.push(ActiveExecution {
                id: *id,
                task: a.execution.task_id,
                agent: a.execution.agent.clone(),
                kind: a.execution.kind,
                iteration_started_at: a.shared.iteration_started(),
                last_activity_at: a.shared.last_activity(),
                kill_requested: a.kill_requested,
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn dispatch(
        &mut self,
        task_id: TaskId,
        agent_name: &str,
        kind: ExecutionKind,
        attempt: u32,
        now: Timestamp,
        update_tx: &mpsc::UnboundedSender<Update>,
        call_tx: &mpsc::Sender<ControlCall>,
    ) -> Result<(), Error> {
        let Some(agent) = self.setup.agents.get(agent_name).cloned() else {
            return Ok(());
        };
        let change = Change::CreateExecution {
            task_id,
            kind,
            agent: agent_name.to_string(),
            attempt,
        };
        let applied = match self.store.apply("engine", now, vec![change]).await {
            Ok(applied) => applied,
            Err(e) => {
                // Someone else changed the task first (a cancel from the CLI): take the store's word.
                tracing::warn!(task = %task_id, "not dispatched: {e}");
                if let Some(task) = self.store.task(task_id).await? {
                    self.snapshot.insert(task);
                }
                return Ok(());
            }
        };
        self.absorb(&applied);
        let Some(execution) = applied.executions.first().cloned() else {
            return Ok(());
        };
        self.snapshot.recent_dispatches.push(now);
        self.summary.executions_started += 1;

        let task = self.snapshot.tasks[&task_id].clone();
        let parent = task
            .parent
            .and_then(|p| self.snapshot.tasks.get(&p))
            .cloned();
        let mut children: Vec<&Task> = self.snapshot.children_of(task_id).collect();
        children.sort_by_key(|c| c.id);
        let context = PromptContext {
            task: view(&task),
            parent: parent.as_ref().map(view),
            children: children.into_iter().map(view).collect(),
            attempt,
            iteration: 1,
            feedback: None,
            execution: ExecutionView {
                id: execution.id,
                kind,
            },
            agent: agent_name.to_string(),
        };
        let workspace = self
            .workspaces
            .as_ref()
            .map(|w| (w.clone(), parent.as_ref().and_then(|p| p.branch.clone())));
        let shared = Arc::new(ExecutionShared::default());
        shared.touch(now);
        let (stop_tx, stop_rx) = watch::channel(None);
        let job = ExecutionJob {
            id: execution.id,
            task: task_id,
            kind,
            attempt,
            agent,
            context,
            workspace,
            project_dir: self.options.project_dir.clone(),
            log_path: self
                .options
                .state_dir
                .join("logs")
                .join(format!("{}.log", execution.id)),
            run_dir: self.options.state_dir.join("run"),
            agentgrid_bin: self.options.agentgrid_bin.clone(),
            grace: self.setup.grace,
            clock: self.clock.clone(),
        };
        tokio::spawn(executor::run_execution(
            job,
            shared.clone(),
            stop_rx,
            update_tx.clone(),
            call_tx.clone(),
        ));
        self.active.insert(
            execution.id,
            Active {
                execution,
                shared,
                stop: stop_tx,
                kill_requested: false,
            },
        );
        Ok(())
    }

    /// Records a batch of executor updates, in one transaction when possible.
    async fn record_updates(&mut self, batch: Vec<Update>) -> Result<(), Error> {
        let mut changes = Vec::new();
        for update in batch {
            match update {
                Update::Preparing { id } => changes.push(set_state(id, ExecutionState::Preparing)),
                Update::Workspace {
                    id: _,
                    task,
                    branch,
                    path: _,
                } => {
                    if self
                        .snapshot
                        .tasks
                        .get(&task)
                        .is_some_and(|t| t.branch.as_deref() != Some(&branch))
                    {
                        changes.push(Change::SetBranch { id: task, branch });
                    }
                }
                Update::ProcessStarted {
                    id,
                    pid,
                    iteration,
                    log_path,
                } => {
                    if iteration == 1 {
                        changes.push(set_state(id, ExecutionState::Running));
                    }
                    changes.push(Change::ProcessStarted {
                        id,
                        pid,
                        iteration,
                        log_path: Some(log_path),
                    });
                }
                Update::ProcessExited {
                    id,
                    iteration,
                    exit_code,
                    signal,
                } => {
                    changes.push(Change::ProcessExited {
                        id,
                        iteration,
                        exit_code,
                        signal,
                    });
                }
                Update::Validating { id, .. } => {
                    changes.push(set_state(id, ExecutionState::Validating))
                }
                Update::Validated {
                    id,
                    iteration,
                    score,
                    passed,
                    results,
                } => {
                    changes.push(Change::Validated {
                        id,
                        iteration,
                        score,
                        passed,
                        results,
                    });
                }
                Update::NextIteration { id } => {
                    changes.push(set_state(id, ExecutionState::Running))
                }
                Update::Committed { id, branch, commit } => {
                    changes.push(Change::Committed { id, branch, commit })
                }
                Update::Finished {
                    id,
                    state,
                    exit_code,
                    usage,
                    summary,
                } => {
                    // Everything reported before the end goes in first, in order.
                    self.apply_tolerant(std::mem::take(&mut changes)).await?;
                    self.finish(id, state, exit_code, usage, summary).await?;
                }
            }
        }
        self.apply_tolerant(changes).await
    }

    /// Finishes an execution and settles its task, in one transaction.
    async fn finish(
        &mut self,
        id: ExecutionId,
        state: ExecutionState,
        exit_code: Option<i32>,
        usage: domain::Usage,
        summary: Option<String>,
    ) -> Result<(), Error> {
        let Some(active) = self.active.remove(&id) else {
            return Ok(());
        };
        let now = self.clock.now();
        let flags = active.shared.flags();
        let task_id = active.execution.task_id;
        let mut changes = vec![Change::FinishExecution {
            id,
            state,
            exit_code,
            usage,
            summary: summary.clone(),
        }];
        let task = self.snapshot.tasks.get(&task_id).cloned();
        let mut ended = false;
        if let Some(task) = task.filter(|t| t.state == TaskState::Running) {
            let children: Vec<&Task> = self.snapshot.children_of(task_id).collect();
            let end = ExecutionEnd {
                kind: active.execution.kind,
                agent: active.execution.agent.clone(),
                state,
                claimed_complete: flags.claimed.clone(),
                blocked: flags.blocked.clone(),
                failure: summary,
            };
            let plan = scheduler::after_execution(&task, &children, &end, &self.setup.config, now);
            ended = plan.to.is_terminal();
            changes.push(Change::SetTaskState {
                id: task_id,
                to: plan.to,
                reason: Some(plan.reason.clone()),
            });
            let bookkeeping = (plan.not_before, plan.attempts, plan.continuations);
            if bookkeeping != (task.not_before, task.attempts, task.continuations) {
                changes.push(Change::ScheduleTask {
                    id: task_id,
                    not_before: plan.not_before,
                    attempts: plan.attempts,
                    continuations: plan.continuations,
                    reason: None,
                });
            }
        }
        self.apply("engine", changes).await?;
        if ended
            || self
                .snapshot
                .tasks
                .get(&task_id)
                .is_some_and(|t| t.state.is_terminal())
        {
            self.after_task_ended(task_id).await;
        }
        Ok(())
    }

    /// A task reached a terminal state: bring a done sub-task's branch into its parent, and
    /// remove the worktree (its branch and commits stay).
    async fn after_task_ended(&mut self, task_id: TaskId) {
        let Some(manager) = self.workspaces.clone() else {
            return;
        };
        let Some(task) = self.snapshot.tasks.get(&task_id).cloned() else {
            return;
        };
        let Some(branch) = task.branch.clone() else {
            return;
        };
        if task.state == TaskState::Done
            && let Some(parent) = task
                .parent
                .and_then(|p| self.snapshot.tasks.get(&p))
                .cloned()
            && parent.branch.is_some()
            && !self
                .active
                .values()
                .any(|a| a.execution.task_id == parent.id)
        {
            let message = format!(
                "agentgrid: merge #{} {} into #{}",
                task.id, task.title, parent.id
            );
            let outcome = match manager.ensure(parent.id, None).await {
                Ok(parent_ws) => manager
                    .merge_branch(&parent_ws, &branch, &message)
                    .await
                    .map(|o| format!("{o:?}")),
                Err(e) => Err(e),
            };
            let note = match outcome {
                Ok(o) if o.starts_with("Conflict") => Some(format!(
                    "merging {branch} into this task's branch conflicted ({o}); it was left unmerged"
                )),
                Ok(_) => None,
                Err(e) => Some(format!("merging {branch} failed: {e}")),
            };
            if let Some(text) = note {
                let _ = self
                    .apply(
                        "engine",
                        vec![Change::Comment {
                            id: parent.id,
                            text,
                        }],
                    )
                    .await;
            }
        }
        let ws_path = manager.path_of(task_id);
        if ws_path.exists() {
            let ws = workspace::Workspace {
                task: task_id,
                path: ws_path,
                branch,
                created: false,
            };
            if let Err(e) = manager.remove(&ws).await {
                tracing::warn!(task = %task_id, "workspace kept: {e}");
            }
        }
    }

    /// Applies changes the engine itself produced; if the batch fails as a whole, applies them
    /// one by one so one stale change cannot hide the others.
    async fn apply_tolerant(&mut self, changes: Vec<Change>) -> Result<(), Error> {
        if changes.is_empty() {
            return Ok(());
        }
        if self.apply("engine", changes.clone()).await.is_ok() {
            return Ok(());
        }
        for change in changes {
            if let Err(e) = self.apply("engine", vec![change]).await {
                tracing::warn!("could not record an execution update: {e}");
            }
        }
        Ok(())
    }

    async fn apply(&mut self, actor: &str, changes: Vec<Change>) -> Result<store::Applied, Error> {
        let applied = self.store.apply(actor, self.clock.now(), changes).await?;
        self.absorb(&applied);
        Ok(applied)
    }

    /// Takes what the store now says about the touched tasks into the snapshot.
    fn absorb(&mut self, applied: &store::Applied) {
        for task in &applied.tasks {
            self.snapshot.insert(task.clone());
        }
        for execution in &applied.executions {
            if let Some(active) = self.active.get_mut(&execution.id) {
                active.execution = execution.clone();
            }
        }
        for event in &applied.events {
            if event.seq > self.followed_seq {
                self.own_seqs.insert(event.seq);
            }
            if let Some(tx) = &self.options.events {
                let _ = tx.send(event.clone());
            }
        }
    }

    /// Picks up what other processes wrote: new tasks, edits, cancels, nudges.
    async fn follow(&mut self) -> Result<(), Error> {
        loop {
            let events = self.store.events_after(self.followed_seq, 1000).await?;
            if events.is_empty() {
                break;
            }
            let mut touched = BTreeSet::new();
            for event in &events {
                self.followed_seq = event.seq;
                if self.own_seqs.remove(&event.seq) {
                    continue;
                }
                if event.entity == EntityKind::Task {
                    touched.insert(TaskId(event.entity_id));
                }
                if let Some(tx) = &self.options.events {
                    let _ = tx.send(event.clone());
                }
            }
            self.own_seqs = self.own_seqs.split_off(&(self.followed_seq + 1));
            for id in touched {
                if let Some(task) = self.store.task(id).await? {
                    let cancelled = task.state == TaskState::Cancelled;
                    self.snapshot.insert(task);
                    if cancelled {
                        for active in self.active.values().filter(|a| a.execution.task_id == id) {
                            let _ = active.stop.send(Some(StopReason::Cancelled));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Winds down executions a dead engine left active. See the crash rule in lib.rs.
    async fn recover(&mut self) -> Result<(), Error> {
        let orphans = self
            .store
            .executions(&ExecutionFilter {
                active_only: true,
                ..ExecutionFilter::default()
            })
            .await?;
        // The dead engine may not have recorded every pid it started, so find the orphans by
        // what every agent process carries: this project and its execution id.
        let ids: Vec<ExecutionId> = orphans.iter().map(|e| e.id).collect();
        let groups = orphan_groups(&self.options.project_dir, &ids);
        for pgid in &groups {
            launch::terminate_group(*pgid, self.setup.grace.min(StdDuration::from_secs(5))).await;
        }
        for execution in orphans {
            if let (Some(manager), Some(task)) = (
                &self.workspaces,
                self.snapshot.tasks.get(&execution.task_id),
            ) {
                let path = manager.path_of(task.id);
                if let Some(branch) = task.branch.clone().filter(|_| path.exists()) {
                    let ws = workspace::Workspace {
                        task: task.id,
                        path,
                        branch,
                        created: false,
                    };
                    let message =
                        format!("agentgrid: work left by lost execution #{}", execution.id);
                    if let Err(e) = manager.commit_all(&ws, &message).await {
                        tracing::warn!(task = %task.id, "could not commit what a lost execution left: {e}");
                    }
                }
            }
            let mut changes = vec![Change::FinishExecution {
                id: execution.id,
                state: ExecutionState::Lost,
                exit_code: None,
                usage: execution.usage,
                summary: Some("the engine running it stopped; it was wound down on restart".into()),
            }];
            if let Some(task) = self
                .snapshot
                .tasks
                .get(&execution.task_id)
                .filter(|t| t.state == TaskState::Running)
            {
                let children: Vec<&Task> = self.snapshot.children_of(task.id).collect();
                let end = ExecutionEnd {
                    kind: execution.kind,
                    agent: execution.agent.clone(),
                    state: ExecutionState::Lost,
                    claimed_complete: None,
                    blocked: None,
                    failure: None,
                };
                let plan = scheduler::after_execution(
                    task,
                    &children,
                    &end,
                    &self.setup.config,
                    self.clock.now(),
                );
                changes.push(Change::SetTaskState {
                    id: task.id,
                    to: plan.to,
                    reason: Some(plan.reason),
                });
            }
            self.apply("engine", changes).await?;
            self.summary.recovered += 1;
        }
        // Sockets of executions that no longer exist.
        if let Ok(entries) = std::fs::read_dir(self.options.state_dir.join("run")) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Answers one call from an agent on its control socket.
    async fn answer_call(&mut self, call: ControlCall) {
        let result = self.handle_call(call.execution, call.op).await;
        let _ = call.reply.send(result);
    }

    async fn handle_call(
        &mut self,
        execution: ExecutionId,
        op: Op,
    ) -> Result<serde_json::Value, String> {
        let Some(active) = self.active.get(&execution) else {
            return Err(format!(
                "execution #{execution} has ended; its token is no longer valid"
            ));
        };
        let shared = active.shared.clone();
        let task_id = active.execution.task_id;
        let actor = format!("agent:{}#{}", active.execution.agent, execution);
        shared.touch(self.clock.now());
        let task = self
            .snapshot
            .tasks
            .get(&task_id)
            .cloned()
            .ok_or("the execution's task is gone")?;
        match op {
            Op::SubtaskCreate {
                title,
                body,
                labels,
                blocked_by,
                priority,
            } => {
                let existing = self.snapshot.children_of(task_id).count() as u32;
                scheduler::guards::check_new_child(&task, existing, &self.setup.config)?;
                let new = NewTask {
                    title,
                    body,
                    labels,
                    priority: priority.unwrap_or(task.priority),
                    parent: Some(task_id),
                    blocked_by,
                    agent: None,
                };
                new.check()?;
                let applied = self
                    .apply(&actor, vec![Change::CreateTask(new)])
                    .await
                    .map_err(|e| e.to_string())?;
                shared.update_flags(|f| f.children_created += 1);
                let created = applied
                    .tasks
                    .iter()
                    .find(|t| t.parent == Some(task_id))
                    .ok_or("no task created")?;
                Ok(serde_json::json!({ "id": created.id, "title": created.title }))
            }
            Op::Complete { summary } => {
                if summary.trim().is_empty() {
                    return Err("say what was done: --summary must not be empty".into());
                }
                self.apply(
                    &actor,
                    vec![Change::ClaimCompletion {
                        id: task_id,
                        summary: summary.clone(),
                    }],
                )
                .await
                .map_err(|e| e.to_string())?;
                shared.update_flags(|f| f.claimed = Some(summary));
                Ok(
                    serde_json::json!({ "claimed": true, "note": "validators decide whether the task is done" }),
                )
            }
            Op::Block { reason } => {
                if reason.trim().is_empty() {
                    return Err("say what a person must decide: --reason must not be empty".into());
                }
                self.apply(
                    &actor,
                    vec![Change::Comment {
                        id: task_id,
                        text: format!("blocked: {reason}"),
                    }],
                )
                .await
                .map_err(|e| e.to_string())?;
                shared.update_flags(|f| f.blocked = Some(reason));
                Ok(serde_json::json!({ "blocked": true }))
            }
            Op::Comment { text } => {
                self.apply(&actor, vec![Change::Comment { id: task_id, text }])
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(serde_json::json!({ "commented": true }))
            }
            Op::Nudge { task } => {
                self.apply(&actor, vec![Change::Nudge { id: task }])
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(serde_json::json!({ "nudged": task }))
            }
            Op::Status => {
                let parent = task.parent.and_then(|p| self.snapshot.tasks.get(&p));
                let mut children: Vec<&Task> = self.snapshot.children_of(task_id).collect();
                children.sort_by_key(|c| c.id);
                Ok(serde_json::json!({
                    "task": task,
                    "parent": parent,
                    "children": children,
                    "execution": self.active.get(&execution).map(|a| &a.execution),
                }))
            }
        }
    }

    /// Open tasks that nothing will run, with the reason, for the end-of-run report.
    fn stuck_tasks(&self) -> Vec<(TaskId, String)> {
        let mut stuck = Vec::new();
        let mut tasks: Vec<&Task> = self.snapshot.tasks.values().collect();
        tasks.sort_by_key(|t| t.id);
        for task in tasks {
            match task.state {
                TaskState::Open if !self.snapshot.dependencies_done(task) => {
                    let blockers: Vec<String> = task
                        .blocked_by
                        .iter()
                        .filter_map(|d| self.snapshot.tasks.get(d))
                        .filter(|d| d.state != TaskState::Done)
                        .map(|d| format!("#{} ({})", d.id, d.state))
                        .collect();
                    stuck.push((task.id, format!("blocked by {}", blockers.join(", "))));
                }
                TaskState::Open => {
                    if let Err(why) =
                        scheduler::route(task, ExecutionKind::Work, &self.setup.config)
                    {
                        stuck.push((task.id, why));
                    }
                }
                TaskState::Blocked => {
                    stuck.push((
                        task.id,
                        task.summary.clone().unwrap_or_else(|| "blocked".into()),
                    ));
                }
                _ => {}
            }
        }
        stuck
    }
}

fn set_state(id: ExecutionId, to: ExecutionState) -> Change {
    Change::SetExecutionState {
        id,
        to,
        reason: None,
    }
}

fn view(task: &Task) -> TaskView {
    TaskView {
        id: task.id,
        title: task.title.clone(),
        body: task.body.clone(),
        labels: task.labels.clone(),
        priority: task.priority,
        state: task.state,
        branch: task.branch.clone(),
        summary: task.summary.clone(),
    }
}

/// Process groups of live processes that belong to one of `ids` in this project, found by the
/// `AGENTGRID_PROJECT` and `AGENTGRID_EXECUTION_ID` every execution's processes carry. Matching
/// both means a reused pid or another project's agent is never touched.
fn orphan_groups(project: &std::path::Path, ids: &[ExecutionId]) -> BTreeSet<i32> {
    let mut groups = BTreeSet::new();
    if ids.is_empty() {
        return groups;
    }
    let project_var = format!("AGENTGRID_PROJECT={}", project.display());
    let id_vars: Vec<String> = ids
        .iter()
        .map(|id| format!("AGENTGRID_EXECUTION_ID={id}"))
        .collect();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return groups;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        let ours = vars.contains(&project_var.as_bytes())
            && id_vars.iter().any(|v| vars.contains(&v.as_bytes()));
        if !ours {
            continue;
        }
        // Field 5 of /proc/<pid>/stat is the process group; the name before it may hold spaces.
        let pgid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(2)?.parse::<i32>().ok())
            });
        if let Some(pgid) = pgid.filter(|g| *g > 1) {
            groups.insert(pgid);
        }
    }
    groups
}
