//! The service loop: decide, act, record, wait.

mod acts;
mod agency_budgets;
mod approvals;
mod area_leases;
mod blackboard;
mod calls;
mod deliver;
mod handoff;
mod jobs;
mod known;
mod leases;
mod mail;
mod merges;
mod notices;
mod prune;
mod refusals;
mod said;
mod workflows;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use control::{ControlCall, ControlHub, Op};
use domain::{
    Clock, EntityKind, Event, Execution, ExecutionId, ExecutionKind, ExecutionState, Task, TaskId,
    TaskState, Timestamp,
};
use executor::{ExecutionJob, ExecutionShared, Update};
use manifest::{ExecutionView, PromptContext, TaskView};
use scheduler::{ActiveExecution, ExecutionEnd, Snapshot};
use store::{Change, ExecutionFilter, Store, TaskFilter};
use tokio::sync::mpsc;
use workspace::Workspaces;

use crate::bus::{self, Bus};
use crate::{Error, Setup};
use engine_core::{Held, Taken, WRITE_BEHIND};
use jobs::{JobContext, Jobs};

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
    /// `.agentgrid`: logs go under it.
    pub state_dir: PathBuf,
    /// Control sockets, prompt files and the gateway socket (see [`crate::runtime_dir`]).
    pub run_dir: PathBuf,
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
    /// Every task this run's engine wrote a change to (claims, ends, state changes, notes), so
    /// the closing summary shows what this run did without reading every task ever made.
    pub touched: BTreeSet<TaskId>,
}

struct Active {
    execution: Execution,
    shared: Arc<ExecutionShared>,
    /// How to ask it to stop (see `bus.rs`).
    stop: bus::Started,
    kill_requested: bool,
    /// The execution's token, registered with the model gateway while it runs.
    token: String,
    /// The last validation of the execution passed.
    validated: bool,
    /// What the agent's CLI said it used, checked against the metering when it ends.
    reported_usage: crate::usage_check::Reported,
}

/// The model gateway the engine owns while it runs, and how agents reach it.
struct ModelGateway {
    registry: gateway::Registry,
    handle: gateway::Gateway,
    /// Kept so the listeners live as long as the engine.
    _servers: Vec<gateway::Server>,
    /// The Unix socket relayed into sandboxes with network `gateway`.
    socket: PathBuf,
    /// The loopback port agents reach the gateway on (inside a sandbox, through the relay).
    port: u16,
}

pub struct Engine {
    gateway: Option<ModelGateway>,
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
    /// Something the scheduler looks at changed since it last decided. Deciding walks every
    /// task, so the loop decides only when this is set or the scheduler's wake-up is due.
    dirty: bool,
    /// Executor updates and ended executions not yet written: see `engine_core::Held`. Held
    /// ends are written before anything else the engine writes.
    held: Held,
    /// When the scheduler must look again at the latest, for a process that started since it
    /// last decided: see `record_updates`.
    recheck_at: Option<Timestamp>,
    /// What the model gateway said of running executions, and the provider pauses: see
    /// `notices.rs`.
    spending: engine_core::spending::Spending,
    /// Merges and worktree removals running off the loop, and the ends parked behind merges:
    /// see `jobs.rs`.
    jobs: Jobs,
    /// Where jobs report; taken by the loop when it starts.
    job_reports: Option<mpsc::UnboundedReceiver<jobs::Report>>,
    /// Shutdown was asked for: no new execution starts, and no new worktree removal.
    stopping: bool,
    /// This node's leases and fencing tokens; set when the engine starts serving, once the
    /// node id is read from the state directory.
    leases: Option<engine_core::lease::Leases>,
    /// The round of lease renewals written beside the loop: see `leases.rs`.
    renewing: leases::Renewing,
    /// What the engine carries out for workflow runs: see `workflows.rs`.
    workflows: workflows::Driver,
    /// What the store is known not to hold, so that the loop need not read it again.
    known: known::Known,
    /// When the mailboxes are next swept and escalations checked: see `deliver.rs`.
    mail: deliver::MailTick,
}

/// How often the worktrees that were busy are tried again.
const REMOVAL_RETRY: domain::Duration = engine_core::worktrees::REMOVAL_RETRY;

/// The longest the engine waits, when it stops, for the gateway to settle answers it is still
/// reading after their agents left.
const GATEWAY_SETTLE: StdDuration = StdDuration::from_secs(10);

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
        let (report_tx, report_rx) = mpsc::unbounded_channel();
        let context = workspaces.clone().map(|workspaces| JobContext {
            store: store.clone(),
            workspaces,
            agents: setup.agents.clone(),
            state_dir: options.state_dir.clone(),
            run_dir: options.run_dir.clone(),
            agentgrid_bin: options.agentgrid_bin.clone(),
        });
        Engine {
            gateway: None,
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
            dirty: true,
            held: Held::default(),
            recheck_at: None,
            spending: Default::default(),
            jobs: Jobs::new(context, report_tx),
            job_reports: Some(report_rx),
            stopping: false,
            leases: None,
            renewing: leases::Renewing::new(),
            workflows: workflows::Driver::new(),
            known: Default::default(),
            mail: Default::default(),
        }
    }

    /// Runs until idle (or forever) or until `shutdown` resolves; then stops dispatching, asks
    /// running executions to stop, and waits for them to wind down.
    ///
    /// The loop itself runs as a task of the runtime rather than in the caller's future. The
    /// caller is typically `block_on`, which is not one of the runtime's worker threads, and
    /// every message between the loop and the executions it starts would then cross threads
    /// and wake one up. As a task, the loop and the executions it spawns share workers.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<RunSummary, Error> {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        // The engine's own cancellation: every child the loop starts itself (hooks, merges,
        // removals, recovery's commits) belongs to it, so a shutdown ends them at once even while
        // the loop is inside one of them. Executions run in tasks of their own, each with its
        // own scope, which the loop's stop reaches.
        let cancel = launch::CancellationToken::new();
        let mut serving = tokio::spawn(launch::cancellable(
            cancel.clone(),
            self.serve(async move {
                // A dropped sender means the caller is gone: stop as for a shutdown.
                let _ = stop_rx.await;
            }),
        ));
        tokio::pin!(shutdown);
        let joined = tokio::select! {
            joined = &mut serving => joined,
            _ = &mut shutdown => {
                cancel.cancel();
                let _ = stop_tx.send(());
                serving.await
            }
        };
        match joined {
            Ok(result) => result,
            // A panic in the loop is the caller's panic, as it was before the loop became a task.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(Error::Io(format!("the engine loop was stopped: {e}"))),
        }
    }

    async fn serve(
        mut self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<RunSummary, Error> {
        std::fs::create_dir_all(self.options.state_dir.join("logs"))
            .and_then(|_| std::fs::create_dir_all(&self.options.run_dir))
            .map_err(|e| {
                Error::Io(format!(
                    "cannot create {}: {e}",
                    self.options.state_dir.display()
                ))
            })?;
        let node = crate::node::node_id(&self.options.state_dir)?;
        tracing::info!(%node, "this engine's node id");
        self.leases = Some(engine_core::lease::Leases::new(
            node,
            self.setup.lease,
            self.clock.now(),
        ));
        self.followed_seq = self.store.last_seq().await?;
        for task in self.store.tasks(&TaskFilter::default()).await? {
            self.snapshot.insert(task);
        }
        // After the log's position is taken: what is said later is followed from there.
        match self.store.remarked_tasks().await {
            Ok(remarked) => self.known.remarks_read(remarked),
            Err(e) => {
                tracing::warn!("cannot list the tasks with remarks ({e}); every prompt reads")
            }
        }
        self.recover().await?;
        let (notice_tx, mut notice_rx) = mpsc::unbounded_channel::<gateway::Notice>();
        self.start_gateway(notice_tx).await?;
        self.restore_pauses().await?;
        // The agencies' spend is known before the first decision.
        self.tend_mail().await;

        let (bus, mut update_rx) = bus::InProcess::new();
        let (call_tx, mut call_rx) = mpsc::channel::<ControlCall>(64);
        let control = Arc::new(
            ControlHub::bind(&self.options.run_dir, call_tx).map_err(|e| {
                Error::Io(format!(
                    "cannot open the control socket in {}: {e}",
                    self.options.run_dir.display()
                ))
            })?,
        );
        let mut job_rx = self.job_reports.take().expect("an engine serves once");
        let mut workflow_rx = self.workflows.take_reports();
        let mut renewal_rx = self.renewing.take_reports();
        tokio::pin!(shutdown);
        let mut stopping = false;
        let mut follower = crate::watch::Follower::new(&self.store.watched_files(), Instant::now());
        // The scheduler's last requested wake-up.
        let mut wakeup: Option<Timestamp> = None;
        // One timer for the whole loop, moved as needed, rather than a new one on every turn.
        let nap = tokio::time::sleep(crate::watch::POLL);
        tokio::pin!(nap);
        let served = async {
            loop {
                self.sync_open_children();
                if !stopping {
                    self.drive_workflows(false).await?;
                }
                let now = self.clock.now();
                let recheck_due = self.recheck_at.is_some_and(|at| now >= at);
                if !stopping && (self.dirty || recheck_due || wakeup.is_some_and(|w| w <= now)) {
                    wakeup = self.decide_and_act(now, &bus, &control).await?;
                }
                // Jobs in flight are waited for: a merge is a recorded step that should end
                // before the engine does, and a job cannot be cut short without leaving its
                // hook's processes behind. (Removals not yet started are left to the next start.)
                if stopping && self.active.is_empty() && self.jobs.is_empty() {
                    break;
                }
                if !stopping
                    && self.options.mode == RunMode::UntilIdle
                    && self.active.is_empty()
                    && self.jobs.is_empty()
                    && !self.workflows.busy()
                    && wakeup.is_none()
                {
                    self.flush().await?;
                    self.follow().await?;
                    self.drive_workflows(true).await?;
                    if !self.workflows.busy() && self.decide_is_idle(self.clock.now()) {
                        self.summary.stuck = self.stuck_tasks();
                        break;
                    }
                    self.dirty = true;
                    continue;
                }
                // While stopping nothing is decided, so neither the scheduler's wake-up nor a
                // recheck may cut the nap short.
                let scheduled = wakeup
                    .filter(|_| !stopping)
                    .map(|w| Instant::now() + w.since(now).as_std());
                let mut deadline = follower.deadline();
                // The engine's clock's times, as deadlines for the nap.
                let clock_now = self.clock.now();
                let instant = |at: Timestamp| Instant::now() + at.since(clock_now).as_std();
                let recheck = self.recheck_at.filter(|_| !stopping).map(instant);
                let removal = self
                    .jobs
                    .finalizer
                    .removal_due(REMOVAL_RETRY, clock_now)
                    .map(instant);
                let budget_stop = self.spending.stop_due().map(instant);
                let lease_due = self.leases.as_ref().map(|l| instant(l.due()));
                let workflows_due = self.workflows.due(now).filter(|_| !stopping);
                for at in [
                    workflows_due,
                    self.held.due().map(instant),
                    recheck,
                    budget_stop,
                    lease_due,
                    self.mail.due().map(instant),
                    scheduled,
                    removal,
                ]
                .into_iter()
                .flatten()
                {
                    deadline = deadline.min(at);
                }
                nap.as_mut().reset(deadline.into());
                let mut woke = false;
                tokio::select! {
                    _ = follower.changed(), if !follower.check_pending() => woke = true,
                    Some(update) = update_rx.recv() => {
                        let mut batch = vec![update];
                        while let Ok(more) = update_rx.try_recv() {
                            batch.push(more);
                        }
                        self.record_updates(batch).await?;
                    }
                    Some(call) = call_rx.recv() => self.answer_call(call).await?,
                    Some(report) = job_rx.recv() => self.job_done(report).await?,
                    Some(report) = workflow_rx.recv() => self.workflow_report(report).await?,
                    Some(renewed) = renewal_rx.recv() => self.renewed(renewed),
                    Some(notice) = notice_rx.recv() => {
                        let mut batch = vec![notice];
                        while let Ok(more) = notice_rx.try_recv() {
                            batch.push(more);
                        }
                        self.record_notices(batch).await?;
                    }
                    _ = &mut nap => {}
                    _ = &mut shutdown, if !stopping => {
                        stopping = true;
                        self.stopping = true;
                        self.jobs.finalizer.stop();
                        self.workflows.stop_all();
                        self.summary.interrupted = true;
                        let running = self.active.keys().copied();
                        for (id, reason) in engine_core::stops::at_shutdown(&self.spending, running) {
                            self.stop_execution(id, reason);
                        }
                    }
                }
                self.stop_over_budget();
                // A decision is due at the top of the loop when something changed: it writes what
                // is held back together with the claims it makes, so flushing now would cost a
                // transaction of its own.
                let deciding_next = self.dirty && !stopping;
                if !deciding_next && self.held.is_due(self.clock.now()) {
                    self.flush().await?;
                }
                if woke {
                    follower.woke(Instant::now());
                }
                self.tend_leases().await?;
                self.tend_mail().await;
                match follower.due(Instant::now()) {
                    crate::watch::Due::Poll => self.follow().await?,
                    crate::watch::Due::Check if self.store.written_elsewhere().await? => {
                        self.follow().await?
                    }
                    _ => {}
                }
                self.retry_removals();
            }
            Ok::<(), Error>(())
        }
        .await;
        // What is held back is written even when the loop failed: an execution that ended must
        // not be taken for lost at the next start. (If the store is what failed, this fails too,
        // and recovery winds those executions down as lost.)
        let flushed = self.flush().await;
        // Answers still being read after their agents left are settled before the gateway
        // stops, within their drain timeout, so that what they cost is recorded.
        if let Some(gateway) = &self.gateway {
            let wait = self
                .setup
                .gateway
                .as_ref()
                .map(|o| o.limits.drain_timeout.as_std())
                .unwrap_or_default()
                .min(GATEWAY_SETTLE);
            gateway.registry.settle_all(wait).await;
            let mut late = Vec::new();
            while let Ok(notice) = notice_rx.try_recv() {
                late.push(notice);
            }
            if let Err(e) = self.record_notices(late).await {
                tracing::warn!("could not record the last model usage: {e}");
            }
        }
        // Stop the gateway and the control socket before their files go, then leave no empty
        // run directory behind.
        control.close();
        self.gateway = None;
        let _ = std::fs::remove_file(self.options.run_dir.join("gateway.sock"));
        let _ = std::fs::remove_dir(&self.options.run_dir);
        served?;
        flushed?;
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
        bus: &dyn Bus,
        control: &Arc<ControlHub>,
    ) -> Result<Option<Timestamp>, Error> {
        engine_core::decision::forget_old_dispatches(&mut self.snapshot, now);
        self.end_pauses(now).await?;
        self.refresh_area_leases(now).await;
        self.refresh_active_view();
        self.recheck_at = None;
        let decision = scheduler::decide(&self.snapshot, &self.setup.config, now);
        let acts = self.acts(decision, now);
        // A claim that comes to nothing (refused, or no execution made) can make other tasks
        // ready too, so the scheduler looks again on the next turn.
        let mut again = acts.again;
        for act in acts.acts {
            again |= !self.perform(act, now, bus, control).await?;
        }
        self.dirty = again;
        // Ends the decision did not take along with a claim are written now: an ended
        // execution waits for no more than the decision that follows it.
        if self.held.is_due(self.clock.now()) {
            self.flush().await?;
        }
        Ok(acts.next_wakeup)
    }

    /// Starts the model gateway when the node configures models: on a Unix socket in the run
    /// directory (relayed into sandboxes) and on a loopback port (for agents that opted out of
    /// network isolation).
    async fn start_gateway(
        &mut self,
        notices: mpsc::UnboundedSender<gateway::Notice>,
    ) -> Result<(), Error> {
        let Some(options) = self.setup.gateway.clone() else {
            return Ok(());
        };
        let registry = gateway::Registry::new(self.clock.clone());
        let gw = gateway::Gateway::new(options, registry.clone(), notices)
            .map_err(|e| Error::Setup(format!("the model gateway: {e}")))?;
        let socket = self.options.run_dir.join("gateway.sock");
        let unix = gw
            .serve(gateway::Listen::Unix(socket.clone()))
            .await
            .map_err(|e| {
                Error::Setup(format!(
                    "the model gateway cannot listen on {}: {e}",
                    socket.display()
                ))
            })?;
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let tcp = gw
            .serve(gateway::Listen::Tcp(loopback))
            .await
            .map_err(|e| {
                Error::Setup(format!("the model gateway cannot listen on loopback: {e}"))
            })?;
        let port = match tcp.local() {
            gateway::Local::Tcp(addr) => addr.port(),
            gateway::Local::Unix(_) => 0,
        };
        self.gateway = Some(ModelGateway {
            registry,
            handle: gw,
            _servers: vec![unix, tcp],
            socket,
            port,
        });
        Ok(())
    }

    /// What the gateway must know of an execution: who it is and what it has already spent
    /// (its tree's and its agent's usage today, from the store).
    async fn gateway_identity(
        &self,
        execution: &Execution,
        task: &Task,
    ) -> Result<gateway::Identity, Error> {
        let (from, until) = gateway::day_bounds(self.clock.now());
        let tree = self
            .store
            .model_usage(&store::UsageScope::Tree(task.root))
            .await?;
        let agent_day = self
            .store
            .model_usage(&store::UsageScope::Agent {
                agent: execution.agent.clone(),
                from,
                until,
            })
            .await?;
        Ok(gateway::Identity {
            execution: execution.id,
            task: task.id,
            root: task.root,
            agent: execution.agent.clone(),
            budgets: self.setup.budgets,
            models: None,
            baseline: gateway::Baseline { tree, agent_day },
            agency: self.agency_budget(&execution.agent).await?,
        })
    }

    /// The variables that point an agent's model clients at the gateway, with the execution
    /// token as the API key. Empty when no models are configured.
    fn model_env(&self, token: &str) -> Vec<(String, String)> {
        let Some(gateway) = &self.gateway else {
            return Vec::new();
        };
        let origin = format!("http://127.0.0.1:{}", gateway.port);
        vec![
            ("OPENAI_BASE_URL".into(), format!("{origin}/v1")),
            ("OPENAI_API_KEY".into(), token.to_string()),
            ("ANTHROPIC_BASE_URL".into(), origin.clone()),
            ("ANTHROPIC_API_KEY".into(), token.to_string()),
            // Gemini clients add the API version to the origin themselves.
            ("GOOGLE_GEMINI_BASE_URL".into(), origin),
            ("GEMINI_API_KEY".into(), token.to_string()),
        ]
    }

    /// Keeps the snapshot's active list (which the scheduler reads) in step with live state.
    fn refresh_active_view(&mut self) {
        self.snapshot.busy_workspaces = self.jobs.busy();
        let commands = self.workflows.working_in();
        self.snapshot.busy_workspaces.extend(commands);
        self.snapshot.workflow_held = self.workflows.held();
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

    async fn dispatch(
        &mut self,
        claim: engine_core::claims::Claim,
        now: Timestamp,
        bus: &dyn Bus,
        control: &Arc<ControlHub>,
    ) -> Result<bool, Error> {
        let (task_id, kind, attempt) = (claim.task, claim.kind, claim.attempt);
        let agent_name = claim.agent.clone();
        let agent_name = agent_name.as_str();
        let Some(agent) = self.setup.agents.get(agent_name).cloned() else {
            // The decision leaves such a dispatch out; what it held is written all the same.
            self.write_held(claim.held).await?;
            return Ok(false);
        };
        // What is held back (progress, and the ends of executions that made room for this one)
        // goes into the claim's transaction, before the claim: one commit instead of two.
        let mut claim = claim;
        let applied = loop {
            let batch = self.fenced("engine", claim.batch());
            match apply_waiting(&*self.store, "engine", || now, batch).await {
                Ok(applied) => break applied,
                Err(e) => match claim.refused() {
                    engine_core::claims::Refused::Apart { held, claim: alone } => {
                        tracing::debug!(task = %task_id, "a claim with held changes failed: {e}");
                        self.write_held(held).await?;
                        claim = alone;
                    }
                    engine_core::claims::Refused::Reload(_) => {
                        // Someone else changed the task first (a cancel from the CLI): take
                        // the store's word.
                        tracing::warn!(task = %task_id, "not dispatched: {e}");
                        if let Some(task) = self.store.task(task_id).await? {
                            self.snapshot.insert(task);
                        }
                        return Ok(false);
                    }
                },
            }
        };
        self.absorb(&applied);
        let Some(execution) = claim.claimed(&mut self.snapshot, &applied.executions, now) else {
            return Ok(false);
        };
        if let Some(leases) = &mut self.leases {
            leases.claimed(&execution);
        }
        self.summary.executions_started += 1;
        let inbox = self.prompt_inbox(&execution).await;

        let task = self
            .snapshot
            .task(task_id)
            .expect("a claimed task is in the snapshot")
            .clone();
        let parent = task.parent.and_then(|p| self.snapshot.task(p)).cloned();
        let children: Vec<&Task> = self.snapshot.children_of(task_id).collect();
        let said = if self.known.may_have_remarks(task_id) {
            said::said_to(&*self.store, task_id).await?
        } else {
            said::Said::default()
        };
        let context = PromptContext {
            task: TaskView::from(&task),
            parent: parent.as_ref().map(TaskView::from),
            children: children.into_iter().map(TaskView::from).collect(),
            attempt,
            iteration: 1,
            feedback: said.feedback_text(),
            comments: said.comments_text(),
            answer: said.answer_text(),
            inbox,
            handoff: self.prompt_handoff(&task).await,
            execution: ExecutionView {
                id: execution.id,
                kind,
            },
            agent: agent_name.to_string(),
            agency: self.setup.agencies.view_for(agent_name),
            workflow: self.workflow_view(&task, agent_name).await,
        };
        let workspace = self
            .workspaces
            .as_ref()
            .map(|w| (w.clone(), parent.as_ref().and_then(|p| p.branch.clone())));
        let token = executor::new_token();
        if let Some(gateway) = &self.gateway {
            let identity = self.gateway_identity(&execution, &task).await?;
            gateway.registry.register(token.clone(), identity);
        }
        let shared = Arc::new(ExecutionShared::default());
        shared.touch(now);
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
            run_dir: self.options.run_dir.clone(),
            state_dir: self.options.state_dir.clone(),
            agentgrid_bin: self.options.agentgrid_bin.clone(),
            grace: self.setup.grace,
            clock: self.clock.clone(),
            gateway: self.gateway.as_ref().map(|g| (g.socket.clone(), g.port)),
            model_env: self.model_env(&token),
            token: token.clone(),
            control: control.clone(),
            resume: self.parked_session(task_id, execution.id).await,
        };
        let stop = bus.start(job, shared.clone());
        self.active.insert(
            execution.id,
            Active {
                execution,
                shared,
                stop,
                kill_requested: false,
                token,
                validated: false,
                reported_usage: Default::default(),
            },
        );
        self.sync_open_children();
        Ok(true)
    }

    /// Takes in a batch of executor updates. Progress is held back for at most [`WRITE_BEHIND`];
    /// an execution's end is written at once, together with everything held back.
    async fn record_updates(&mut self, batch: Vec<Update>) -> Result<(), Error> {
        let now = self.clock.now();
        for update in batch {
            match update {
                Update::Preparing { id } => self
                    .held
                    .progress(set_state(id, ExecutionState::Preparing), now),
                Update::Workspace {
                    id: _,
                    task,
                    branch,
                    path: _,
                } => {
                    if self
                        .snapshot
                        .task(task)
                        .is_some_and(|t| t.branch.as_deref() != Some(&branch))
                    {
                        self.held
                            .progress(Change::SetBranch { id: task, branch }, now);
                    }
                }
                Update::ProcessStarted {
                    id,
                    pid,
                    iteration,
                    log_path,
                } => {
                    if iteration == 1 {
                        self.held
                            .progress(set_state(id, ExecutionState::Running), now);
                    }
                    self.held.progress(
                        Change::ProcessStarted {
                            id,
                            pid,
                            iteration,
                            log_path: Some(log_path),
                        },
                        now,
                    );
                    // A process now runs against its timeout and stall limits, so the scheduler
                    // must plan when to look at it; but not at once. Most short processes end
                    // within WRITE_BEHIND, and their end makes the scheduler look anyway, so
                    // deciding now would be wasted. At worst a kill comes WRITE_BEHIND late.
                    self.recheck_at.get_or_insert(now.plus(WRITE_BEHIND));
                }
                Update::ProcessExited {
                    id,
                    iteration,
                    exit_code,
                    signal,
                } => {
                    self.held.progress(
                        Change::ProcessExited {
                            id,
                            iteration,
                            exit_code,
                            signal,
                        },
                        now,
                    );
                }
                Update::Validating { id, .. } => self
                    .held
                    .progress(set_state(id, ExecutionState::Validating), now),
                Update::Validated {
                    id,
                    iteration,
                    score,
                    passed,
                    results,
                } => {
                    if let Some(active) = self.active.get_mut(&id) {
                        active.validated = passed;
                    }
                    self.held.progress(
                        Change::Validated {
                            id,
                            iteration,
                            score,
                            passed,
                            results,
                        },
                        now,
                    );
                }
                Update::NextIteration { id } => self
                    .held
                    .progress(set_state(id, ExecutionState::Running), now),
                Update::Committed { id, branch, commit } => self
                    .held
                    .progress(Change::Committed { id, branch, commit }, now),
                Update::Agent {
                    id,
                    iteration,
                    event,
                } => {
                    if let Some(active) = self.active.get_mut(&id) {
                        active.reported_usage.add(iteration, &event);
                    }
                    self.held.progress(
                        Change::RecordAgentEvent {
                            id,
                            iteration,
                            event,
                        },
                        now,
                    )
                }
                Update::Finished {
                    id,
                    state,
                    exit_code,
                    usage,
                    summary,
                    class,
                } => {
                    self.finish(id, state, exit_code, usage, summary, class)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Writes everything held back so far: progress, then ends.
    async fn flush(&mut self) -> Result<(), Error> {
        let taken = self.held.take_apart();
        self.write_held(taken).await
    }

    /// Writes held progress and ends, in one transaction when it can. Otherwise progress goes
    /// change by change (a stale update must not hide the others), and each end on its own; an
    /// end whose task changed meanwhile (a cancel from the CLI) is recorded without what it
    /// would have made of the task, which is reloaded from the store. An end that cannot be
    /// recorded at all is an error: the engine must not go on as if the execution ran.
    async fn write_held(&mut self, taken: Taken) -> Result<(), Error> {
        if taken.is_empty() {
            return Ok(());
        }
        match self.apply("engine", taken.joined()).await {
            Ok(_) => return Ok(()),
            Err(e) => tracing::debug!("writing held changes together failed: {e}"),
        }
        self.apply_tolerant(taken.progress).await?;
        for end in taken.ends {
            if self.apply("engine", end.clone()).await.is_ok() {
                continue;
            }
            let (finish, settle): (Vec<Change>, Vec<Change>) = end
                .into_iter()
                .partition(|c| matches!(c, Change::FinishExecution { .. }));
            let finished = finish.iter().find_map(|c| match c {
                Change::FinishExecution { id, .. } => Some(*id),
                _ => None,
            });
            match self.apply("engine", finish).await {
                // Another engine recorded the execution lost and its task goes on there: what
                // this one saw of it is not the record any more.
                Err(Error::Store(e)) if e.is_stale() => {
                    tracing::warn!("an execution's end is not recorded: {e}");
                    if let (Some(leases), Some(id)) = (&mut self.leases, finished) {
                        leases.ended(id);
                    }
                    continue;
                }
                other => other?,
            };
            for change in settle {
                if let Change::SettleTask { id, .. } = change
                    && let Some(task) = self.store.task(id).await?
                {
                    tracing::debug!(task = %id, "the task changed as its execution ended; left as it is");
                    self.snapshot.insert(task);
                }
            }
        }
        Ok(())
    }

    /// Finishes an execution and settles its task. The end is held for the decision that
    /// follows (see [`Engine::hold`]) unless workspace work must follow it, in which case it is
    /// written at once with whatever else is held back.
    async fn finish(
        &mut self,
        id: ExecutionId,
        state: ExecutionState,
        exit_code: Option<i32>,
        usage: domain::Usage,
        summary: Option<String>,
        class: domain::FailureClass,
    ) -> Result<(), Error> {
        let Some(active) = self.active.remove(&id) else {
            return Ok(());
        };
        // An execution whose requests used more than a budget ended over budget even if it
        // made no request after that (the gateway refuses only the next one). Its requests'
        // reservations were settled before their answers reached the agent, so the totals
        // already count every answer it saw.
        let mut metered_over = None;
        if let Some(gateway) = &self.gateway {
            metered_over = gateway
                .registry
                .over_budget(&active.token)
                .map(|b| b.reason);
            let metered = gateway.registry.execution_totals(id);
            if let Some((iteration, event)) =
                crate::usage_check::mismatch(&active.reported_usage, &metered)
            {
                let change = Change::RecordAgentEvent {
                    id,
                    iteration,
                    event,
                };
                self.held.progress(change, self.clock.now());
            }
            // From here on the token opens nothing: not the control socket, not the models.
            gateway.registry.revoke(&active.token);
        }
        let verdict = self.spending.ended(id, state, summary, metered_over);
        let flags = active.shared.flags();
        let task_id = active.execution.task_id;
        let (finish, end) = engine_core::ending::Ended {
            verdict,
            exit_code,
            usage,
            validated: active.validated,
            claimed_complete: flags.claimed.clone(),
            blocked: flags.blocked.clone(),
            handed_off: flags.handed_off.clone(),
            class,
        }
        .record(&active.execution);
        // Merges due into the task park the end until they are made (see
        // `engine_core::finalize`); whether any are is the store's to say.
        let merges_due = self.merges_due(task_id).await;
        let policy = &self.setup.approvals;
        let next = self.jobs.finalizer.ended(
            &self.snapshot,
            &self.setup.config,
            task_id,
            (finish, end),
            merges_due,
            self.clock.now(),
            &|labels| policy.wants(labels),
        );
        self.conclude(next).await
    }

    /// Whether merges into `task` are due (failed ones included), when there are worktrees.
    async fn merges_due(&self, task: TaskId) -> bool {
        if self.workspaces.is_none() {
            return false;
        }
        match self.store.unfinished_merges(Some(task)).await {
            Ok(due) => !due.is_empty(),
            Err(e) => {
                tracing::warn!(task = %task, "cannot read the merges due: {e}");
                false
            }
        }
    }

    /// Starts the jobs the finalizer asks for and records the end it concluded. The end is
    /// held for the decision that follows (see `dispatch`) unless workspace work must follow it,
    /// in which case it is written at once with whatever else is held back: the job reads the
    /// store. Until the job reports, the task is busy, so a parent's resume finds the merge done.
    async fn conclude(&mut self, next: engine_core::finalize::Next) -> Result<(), Error> {
        let Some(concluded) = self.jobs.follow(next) else {
            return Ok(());
        };
        self.dirty = true;
        let now = self.clock.now();
        if let Some(task) = concluded.hold(&mut self.snapshot, &mut self.held, now) {
            self.flush().await?;
            self.after_task_ended(task);
        }
        Ok(())
    }

    /// A job reported: records its merges and what became of the worktree, starts the work
    /// queued behind it, and settles an end that waited for it.
    async fn job_done(&mut self, report: jobs::Report) -> Result<(), Error> {
        self.dirty = true;
        self.record_merges(&report).await;
        let policy = &self.setup.approvals;
        let next = self.jobs.finalizer.job_settled(
            &self.snapshot,
            &self.setup.config,
            report.task,
            report.removal.as_ref(),
            report.tree_changes(),
            self.clock.now(),
            &|labels| policy.wants(labels),
        );
        self.conclude(next).await
    }

    /// What becomes of a running task when its execution ends, as changes to record with the
    /// execution's end (the scheduler decides; see `after_execution`), and whether the task ended.
    /// A task that is no longer running (cancelled meanwhile) is left as it is.
    fn settle(&self, task_id: TaskId, end: &ExecutionEnd, now: Timestamp) -> (Vec<Change>, bool) {
        engine_core::ending::settle(&self.snapshot, &self.setup.config, task_id, end, now)
    }

    /// A task reached a terminal state: bring a done sub-task's branch into its parent, and
    /// remove the worktree (its branch and commits stay). Both run as jobs.
    fn after_task_ended(&mut self, task_id: TaskId) {
        let active = &self.active;
        let jobs = self
            .jobs
            .finalizer
            .task_ended(&self.snapshot, task_id, &|t| {
                active.values().any(|a| a.execution.task_id == t)
            });
        self.jobs.start(jobs);
    }

    /// Tries again to remove the worktrees that were busy, at most once per
    /// [`REMOVAL_RETRY`]: each try reads every process's links in /proc.
    fn retry_removals(&mut self) {
        let now = self.clock.now();
        let jobs = self
            .jobs
            .finalizer
            .retry_removals(&self.snapshot, REMOVAL_RETRY, now);
        self.jobs.start(jobs);
    }

    /// Tells each running execution how many sub-tasks of its task are open, which is what
    /// makes its clean exit a split or not (see the executor).
    fn sync_open_children(&self) {
        for active in self.active.values() {
            let open = self
                .snapshot
                .children_of(active.execution.task_id)
                .filter(|c| !c.state.is_terminal())
                .count();
            active.shared.set_open_children(open as u32);
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
        let changes = self.fenced(actor, changes);
        let clock = &self.clock;
        let applied = apply_waiting(&*self.store, actor, || clock.now(), changes).await?;
        self.absorb(&applied);
        Ok(applied)
    }

    /// `changes` with what executions make of them under their fencing tokens.
    fn fenced(&self, actor: &str, changes: Vec<Change>) -> Vec<Change> {
        match &self.leases {
            Some(leases) => leases.fence(actor, changes),
            None => changes,
        }
    }

    /// Takes what the store now says about the touched tasks into the snapshot.
    fn absorb(&mut self, applied: &store::Applied) {
        if !applied.tasks.is_empty() {
            self.dirty = true;
        }
        for task in &applied.tasks {
            self.summary.touched.insert(task.id);
            self.snapshot.insert(task.clone());
        }
        for execution in &applied.executions {
            if let Some(active) = self.active.get_mut(&execution.id) {
                active.execution = execution.clone();
            }
            if execution.state.is_terminal()
                && let Some(leases) = &mut self.leases
            {
                leases.ended(execution.id);
            }
        }
        for event in &applied.events {
            self.known.observe(event);
            if event.seq == self.followed_seq + 1 && self.own_seqs.is_empty() {
                // Nobody else wrote in between, so there is nothing to follow up to here: the
                // log need not be read back just to skip the engine's own events.
                self.followed_seq = event.seq;
            } else if event.seq > self.followed_seq {
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
                // The engine's own events were taken in when their batch was absorbed.
                if self.own_seqs.remove(&event.seq) {
                    continue;
                }
                self.known.observe(event);
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
                    self.dirty = true;
                    let running = self
                        .active
                        .values()
                        .map(|a| (a.execution.id, a.execution.task_id));
                    let stops = engine_core::stops::on_change(&task, running);
                    self.snapshot.insert(task);
                    for (execution, reason) in stops {
                        self.stop_execution(execution, reason);
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
        // Only this node's executions (and those claimed before leases) are known dead here;
        // another node's are left to their lease, and taken once it has run out.
        let orphans: Vec<Execution> = match &self.leases {
            Some(leases) => orphans.into_iter().filter(|e| leases.is_own(e)).collect(),
            None => orphans,
        };
        // The dead engine may not have recorded every pid it started, so find the orphans by
        // what every agent process carries: this project and its execution id.
        // Every group is asked to stop at once and watched with one /proc scan per round, so
        // 500 lost executions wind down in the time of the slowest, not of all in a row. The
        // scans are blocking IO and run on the blocking pool.
        let ids: BTreeSet<ExecutionId> = orphans.iter().map(|e| e.id).collect();
        let project = self.options.project_dir.clone();
        let groups: Vec<i32> = if ids.is_empty() {
            Vec::new()
        } else {
            tokio::task::spawn_blocking(move || orphan_groups(&project, &ids))
                .await
                .map_err(|e| Error::Io(format!("finding the processes of lost executions: {e}")))?
                .into_iter()
                .collect()
        };
        let left =
            launch::terminate_groups(&groups, self.setup.grace.min(StdDuration::from_secs(5)))
                .await;
        if !left.is_empty() {
            tracing::warn!(groups = ?left, "process groups of lost executions outlived SIGKILL");
        }
        // A merge cut short leaves conflict markers and a half-merged index in the parent's
        // worktree, which the commits below would take for work: it is undone first.
        let merges_due = self.undo_interrupted_merges().await?;
        for execution in orphans {
            if let (Some(manager), Some(task)) =
                (&self.workspaces, self.snapshot.task(execution.task_id))
            {
                let path = manager.path_of(task.id);
                if let Some(branch) = task.branch.clone().filter(|_| path.exists()) {
                    let ws = workspace::Workspace {
                        task: task.id,
                        path,
                        branch,
                        created: false,
                    };
                    let message = workspace::message::recovered(&task.title, task.id, execution.id);
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
                summary: Some(engine_core::ending::LOST_ON_RESTART.into()),
            }];
            let end = engine_core::ending::lost(&execution);
            changes.extend(self.settle(execution.task_id, &end, self.clock.now()).0);
            self.apply("engine", changes).await?;
            self.summary.recovered += 1;
        }
        self.lose_expired_elsewhere(self.clock.now()).await?;
        // Merges recorded as due (into parents whose execution was lost, or cut short by the
        // crash) are made now that no execution runs.
        for parent in merges_due {
            self.request_merges(parent, false);
        }
        prune::judge_bases(self.store.as_ref(), &self.options.state_dir).await;
        // Sockets of executions that no longer exist.
        if let Ok(entries) = std::fs::read_dir(&self.options.run_dir) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        // A task can end just before a crash, leaving its worktree (and perhaps the merge into
        // its parent) undone. Finish that now: merging is idempotent, and removal keeps the branch.
        if let Some(manager) = self.workspaces.clone() {
            let worktrees = manager.list().await.unwrap_or_default();
            for ws in worktrees {
                let Some(task) = self
                    .snapshot
                    .task(ws.task)
                    .filter(|t| t.state.is_terminal())
                else {
                    continue;
                };
                let message = workspace::message::left_over(&task.title, ws.task);
                if let Err(e) = manager.commit_all(&ws, &message).await {
                    tracing::warn!(task = %ws.task, "could not commit what was left in a finished task's workspace: {e}");
                    continue;
                }
                self.after_task_ended(ws.task);
            }
        }
        Ok(())
    }

    /// Answers one call from an agent on its control socket.
    /// Held-back progress is written first, so that the agent and the store agree on where
    /// the execution stands.
    async fn answer_call(&mut self, call: ControlCall) -> Result<(), Error> {
        self.flush().await?;
        self.dirty = true;
        self.sync_open_children();
        let result = self.handle_call(call.execution, call.op).await;
        // A sub-task just created must count as open before the agent hears of it.
        self.sync_open_children();
        let _ = call.reply.send(result);
        Ok(())
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
        let actor = app::Actor::Execution {
            id: execution,
            agent: active.execution.agent.clone(),
        };
        shared.touch(self.clock.now());
        let task = self
            .snapshot
            .task(task_id)
            .cloned()
            .ok_or("the execution's task is gone")?;
        if let Some(why) = handoff::refused_after_handoff(&shared, &op) {
            return Err(why);
        }
        match op {
            Op::SubtaskCreate {
                title,
                body,
                labels,
                blocked_by,
                priority,
                key,
                areas,
                lease_ttl_ms,
            } => {
                let call = calls::SubtaskCall {
                    title,
                    body,
                    labels,
                    blocked_by,
                    priority,
                    key,
                    areas,
                    lease_ttl_ms,
                };
                self.create_subtask(&task, &actor, &shared, call).await
            }
            Op::Complete { summary } => {
                self.claim_completion(task_id, &actor, &shared, summary)
                    .await
            }
            Op::Block { reason } => self.block(task_id, &actor, &shared, reason).await,
            Op::Comment { text, key } => self.comment(task_id, &actor, text, key).await,
            Op::ApprovalRequest { summary } => {
                self.request_approval(&task, &actor, &shared, summary).await
            }
            Op::Handoff {
                to,
                summary,
                artifacts,
            } => {
                let call = handoff::HandoffCall {
                    to,
                    summary,
                    artifacts,
                };
                self.hand_off(&task, &actor, &shared, call).await
            }
            Op::Nudge { task } => self.nudge(&actor, task).await,
            Op::WorkflowStart { name } => self.start_workflow_call(task_id, &actor, &name).await,
            op @ (Op::BlackboardSet { .. } | Op::BlackboardGet { .. } | Op::BlackboardList) => {
                self.blackboard_call(task_id, &actor, op).await
            }
            op @ (Op::MsgSend { .. }
            | Op::MsgInbox
            | Op::MsgAck { .. }
            | Op::Escalate { .. }
            | Op::EscalateUp { .. }
            | Op::EscalationAnswer { .. }) => self.msg_call(execution, &actor, op).await,
            op @ (Op::LeaseTake { .. } | Op::LeaseRelease { .. } | Op::LeaseList) => {
                self.area_lease_call(execution, task_id, &actor, op).await
            }
            Op::Status => {
                let parent = task.parent.and_then(|p| self.snapshot.task(p));
                let children: Vec<&Task> = self.snapshot.children_of(task_id).collect();
                let said = said::said_to(&*self.store, task_id)
                    .await
                    .map_err(refusals::reason)?;
                let mut status = serde_json::json!({
                    "task": task,
                    "parent": parent,
                    "children": children,
                    "execution": self.active.get(&execution).map(|a| &a.execution),
                });
                if let (Some(status), serde_json::Value::Object(said)) =
                    (status.as_object_mut(), said.json())
                {
                    status.extend(said);
                }
                Ok(status)
            }
        }
    }

    /// Open tasks that nothing will run, with the reason, for the end-of-run report.
    fn stuck_tasks(&self) -> Vec<(TaskId, String)> {
        let mut stuck = Vec::new();
        let mut tasks: Vec<&Task> = self.snapshot.tasks().collect();
        tasks.sort_by_key(|t| t.id);
        for task in tasks {
            match task.state {
                TaskState::Open if !self.snapshot.dependencies_done(task) => {
                    let blockers: Vec<String> = task
                        .blocked_by
                        .iter()
                        .filter_map(|d| self.snapshot.task(*d))
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
                TaskState::Waiting => {
                    if let Some(why) = &task.merge_failed {
                        stuck.push((
                            task.id,
                            format!("its sub-tasks' work is not all merged: {why}"),
                        ));
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

/// Applies `changes`, waiting out another process's hold on the write lock for as long as it
/// lasts. A busy store wrote nothing, so the same batch is simply sent again, stamped with the
/// time it is finally written. Giving up instead would lose what the engine knows (an
/// execution's end cannot wait for a restart) or stop the engine. Everything else it waits for
/// in the meantime (agents' calls, executors' updates) queues up and is answered late, by at
/// most as long as the lock was held. One warning per stall says why.
async fn apply_waiting(
    store: &dyn Store,
    actor: &str,
    now: impl Fn() -> Timestamp,
    changes: Vec<Change>,
) -> Result<store::Applied, store::Error> {
    /// The pause between attempts after SQLite's own busy wait gave up: short, since that wait
    /// already lasted the busy timeout.
    const PAUSE: StdDuration = StdDuration::from_millis(100);
    let mut stalled: Option<Instant> = None;
    loop {
        // The store takes the batch, and a retry needs it again: a copy of a few changes costs
        // far less than the transaction.
        match store.apply(actor, now(), changes.clone()).await {
            Err(e) if e.is_busy() => {
                if stalled.is_none() {
                    tracing::warn!(
                        "the database is locked by another process; waiting for it to be \
                         released ({e})"
                    );
                    stalled = Some(Instant::now());
                }
                tokio::time::sleep(PAUSE).await;
            }
            result => {
                if let Some(since) = stalled {
                    tracing::warn!(
                        "the database is writable again after {:.1} s; carrying on",
                        since.elapsed().as_secs_f64()
                    );
                }
                return result;
            }
        }
    }
}

fn set_state(id: ExecutionId, to: ExecutionState) -> Change {
    Change::SetExecutionState {
        id,
        to,
        reason: None,
    }
}

/// Process groups of live processes that belong to one of `ids` in this project, found by the
/// `AGENTGRID_PROJECT` and `AGENTGRID_EXECUTION_ID` every execution's processes carry. Matching
/// both means a reused pid or another project's agent is never touched. One scan of /proc
/// serves every id; blocking, so the caller runs it off the async threads.
pub(crate) fn orphan_groups(
    project: &std::path::Path,
    ids: &BTreeSet<ExecutionId>,
) -> BTreeSet<i32> {
    let mut groups = BTreeSet::new();
    if ids.is_empty() {
        return groups;
    }
    let project_var = format!("AGENTGRID_PROJECT={}", project.display());
    let id_prefix: &[u8] = b"AGENTGRID_EXECUTION_ID=";
    let table = launch::procfs::scan();
    // A process's group is known before its environment is read: a group already taken needs
    // no second look, and a zombie runs nothing.
    for entry in table.entries().iter().filter(|e| e.live() && e.pgid > 1) {
        if groups.contains(&entry.pgid) {
            continue;
        }
        let Some(environ) = launch::procfs::environ(entry.pid) else {
            continue;
        };
        let mut in_project = false;
        let mut lost = false;
        for var in environ.split(|b| *b == 0) {
            if var == project_var.as_bytes() {
                in_project = true;
            } else if let Some(id) = var.strip_prefix(id_prefix) {
                // Only the exact form the executor writes counts (no `007` for 7).
                lost = std::str::from_utf8(id)
                    .ok()
                    .and_then(|text| text.parse::<i64>().ok().filter(|n| n.to_string() == text))
                    .is_some_and(|n| ids.contains(&ExecutionId(n)));
            }
        }
        if in_project && lost {
            groups.insert(entry.pgid);
        }
    }
    groups
}
