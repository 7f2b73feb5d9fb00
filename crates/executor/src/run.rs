//! One execution from start to verdict: workspace, control socket, iterations, validation.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use control::ControlHub;
use domain::event::ValidatorResult;
use domain::{
    Clock, ExecutionId, ExecutionKind, ExecutionState, FailureClass, TaskId, Timestamp, Usage,
};
use tokio::sync::{mpsc, watch};
use workspace::{HookKind, Workspace, Workspaces};

use crate::judge;
use crate::validate::{Validator, run_validators};

/// How the agent receives its prompt besides the `AGENTGRID_PROMPT_FILE` file: the manifest's
/// own setting, so the file and the run cannot mean different things by it.
pub use manifest::StdinMode;

/// How the agent is started: an argv and extra environment, each element a template, and for
/// a known CLI (`kind` other than `command`) the adapter's arguments and reading of its output.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub kind: manifest::RuntimeKind,
    /// For a known CLI, may be empty: the adapter's program then.
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdin: StdinMode,
    /// The model alias a known CLI asks for.
    pub model: Option<String>,
}

/// Everything about the agent that running it needs.
#[derive(Debug, Clone)]
pub struct AgentRun {
    pub name: String,
    pub runtime: Runtime,
    pub prompt: String,
    pub validators: Vec<Validator>,
    pub threshold: f64,
    pub max_iterations: u32,
    /// How long one iteration of the agent may run; the engine kills it then, and its sandbox
    /// carries a wall-time limit a little longer, in case the engine cannot.
    pub timeout: domain::Duration,
    /// How the agent's and its validators' processes are confined.
    pub sandbox: manifest::SandboxProfile,
    /// Paths of the main checkout the validators see read-only (`validation.share`).
    pub share: Vec<String>,
    /// `validation.protect`: `None` for the default protection.
    pub protect: Option<Vec<String>>,
}

/// One execution to run.
pub struct ExecutionJob {
    pub id: ExecutionId,
    pub task: TaskId,
    pub kind: ExecutionKind,
    pub attempt: u32,
    pub agent: Arc<AgentRun>,
    /// What the prompt template sees; the executor fills in the iteration and feedback.
    pub context: manifest::PromptContext,
    /// The task's worktree manager and the branch a new worktree starts from; `None` runs the
    /// agent in `project_dir` with no worktree.
    pub workspace: Option<(Arc<Workspaces>, Option<String>)>,
    pub project_dir: PathBuf,
    pub log_path: PathBuf,
    /// Where the prompt files go (the control socket's links sit beside the engine's socket).
    pub run_dir: PathBuf,
    /// The project's `.agentgrid` directory, whose database, logs and run files the sandbox hides.
    pub state_dir: PathBuf,
    /// The `agentgrid` binary, put first on the agent's PATH for `agentgrid ctl`.
    pub agentgrid_bin: PathBuf,
    /// How long a stopped agent gets between SIGTERM and SIGKILL.
    pub grace: Duration,
    pub clock: Arc<dyn Clock>,
    /// The model gateway's Unix socket, relayed into sandboxes whose network mode is `gateway`,
    /// and the loopback port agents reach it on.
    pub gateway: Option<(PathBuf, u16)>,
    /// Extra environment for the agent: the model gateway's base URLs and the execution token as
    /// the API key.
    pub model_env: Vec<(String, String)>,
    /// The execution's token: authenticates its control calls and its model requests.
    pub token: String,
    /// The engine's control socket, on which the execution gets a path of its own.
    pub control: Arc<ControlHub>,
    /// The CLI session an earlier execution of the task parked at a gate, to resume.
    pub resume: Option<String>,
}

/// Why the engine stops an execution: the one reason the core decides and the run carries out.
pub use domain::StopReason;

/// What the agent said through the control channel during this execution.
#[derive(Debug, Clone, Default)]
pub struct ControlFlags {
    pub claimed: Option<String>,
    pub blocked: Option<String>,
    /// The agent asked for an approval (`ctl approval request`): its CLI session is parked
    /// for the execution after the decision.
    pub gate: bool,
    /// The agent handed its part of the task off (`ctl handoff`): a clean exit opens the
    /// receiver's part, and no validator runs, since a handoff is never completion.
    pub handed_off: Option<domain::handoff::HandedOff>,
    pub children_created: u32,
}

/// State the executor and the engine both see while an execution runs.
#[derive(Debug, Default)]
pub struct ExecutionShared {
    /// Milliseconds timestamp of the last output line or control call.
    last_activity: AtomicI64,
    /// When the current iteration's process started; 0 while none runs.
    iteration_started: AtomicI64,
    flags: Mutex<ControlFlags>,
    /// How many sub-tasks of the execution's task are still open, kept current by the engine.
    open_children: AtomicU32,
    /// Why the engine stopped the execution, when it has more to say than the stop reason.
    stop_summary: Mutex<Option<String>>,
}

impl ExecutionShared {
    pub fn touch(&self, now: Timestamp) {
        self.last_activity.fetch_max(now.0, Ordering::Relaxed);
    }

    pub fn last_activity(&self) -> Timestamp {
        Timestamp(self.last_activity.load(Ordering::Relaxed))
    }

    pub fn iteration_started(&self) -> Option<Timestamp> {
        match self.iteration_started.load(Ordering::Relaxed) {
            0 => None,
            t => Some(Timestamp(t)),
        }
    }

    pub fn flags(&self) -> ControlFlags {
        self.flags
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Says why the engine is ending this execution (it ran over its budget). From then on no
    /// validator and no further iteration starts; the agent may still end by itself.
    pub fn set_stop_summary(&self, summary: String) {
        *self
            .stop_summary
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(summary);
    }

    fn stop_summary(&self) -> Option<String> {
        self.stop_summary
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Says how many sub-tasks of the task are open now. The engine calls it whenever that may
    /// have changed, before it answers the agent's next control call.
    pub fn set_open_children(&self, open: u32) {
        self.open_children.store(open, Ordering::Relaxed);
    }

    pub fn open_children(&self) -> u32 {
        self.open_children.load(Ordering::Relaxed)
    }

    pub fn update_flags(&self, f: impl FnOnce(&mut ControlFlags)) {
        f(&mut self.flags.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// A fact the executor reports to the engine, in the order it happened.
#[derive(Debug, Clone)]
pub enum Update {
    Preparing {
        id: ExecutionId,
    },
    Workspace {
        id: ExecutionId,
        task: TaskId,
        branch: String,
        path: PathBuf,
    },
    ProcessStarted {
        id: ExecutionId,
        pid: i32,
        iteration: u32,
        log_path: String,
    },
    ProcessExited {
        id: ExecutionId,
        iteration: u32,
        exit_code: Option<i32>,
        signal: Option<i32>,
    },
    Validating {
        id: ExecutionId,
        iteration: u32,
    },
    Validated {
        id: ExecutionId,
        iteration: u32,
        score: f64,
        passed: bool,
        results: Vec<ValidatorResult>,
    },
    /// A failed validation sends the agent round again.
    NextIteration {
        id: ExecutionId,
    },
    Committed {
        id: ExecutionId,
        branch: String,
        commit: String,
    },
    /// What the agent's CLI said it did, read from its output (bounded, capped in number).
    Agent {
        id: ExecutionId,
        iteration: u32,
        event: domain::AgentEvent,
    },
    Finished {
        id: ExecutionId,
        state: ExecutionState,
        exit_code: Option<i32>,
        usage: Usage,
        summary: Option<String>,
        /// Whether another attempt could go differently; see [`FailureClass`].
        class: FailureClass,
    },
}

/// Runs `job` to its end, reporting to `updates`. Control calls reach the engine through
/// `job.control`.
pub async fn run_execution(
    job: ExecutionJob,
    shared: Arc<ExecutionShared>,
    stop: watch::Receiver<Option<StopReason>>,
    updates: mpsc::UnboundedSender<Update>,
) {
    let id = job.id;
    // The stop reaches every step through one token: a stop on the watch cancels it, and every
    // child the execution starts belongs to it (see `launch::cancellable`).
    let cancel = launch::CancellationToken::new();
    let relay = relay_stop(stop.clone(), cancel.clone());
    let preparing = Preparing::new(id, &updates);
    // Boxed: the steps' future is several kilobytes, and each move of it on the way into the
    // scope and the select was a copy of all of it, per execution.
    let work = launch::cancellable(
        cancel.clone(),
        Box::pin(execute(&job, &shared, stop.clone(), &updates, &preparing)),
    );
    let ended = tokio::select! {
        ended = work => ended,
        never = relay => match never {},
    };
    let mut class = FailureClass::Transient;
    let (state, exit_code, usage, summary) = match ended {
        Ok(end) => end,
        // A step that failed because the execution was stopped ends as the stop says: a
        // shutdown during a validator, a hook or a commit leaves the task to run again.
        Err(Failure { message, .. }) if cancel.is_cancelled() => {
            let reason = stop_reason(&stop);
            let why = shared
                .stop_summary()
                .unwrap_or_else(|| format!("stopped ({})", reason.state()));
            (
                reason.state(),
                None,
                Usage::default(),
                Some(format!("{why} while {message}")),
            )
        }
        Err(failure) => {
            class = failure.class;
            (failure.state, None, Usage::default(), Some(failure.message))
        }
    };
    preparing.announce();
    let _ = updates.send(Update::Finished {
        id,
        state,
        exit_code,
        usage,
        summary,
        class,
    });
}

type End = (ExecutionState, Option<i32>, Usage, Option<String>);

/// The execution's `Preparing` update, sent once. With a workspace to prepare it goes at once,
/// since preparing takes a while; without one it goes just before the process's start (or the
/// end, if the execution ends before a process starts), where the engine takes both in one
/// turn of its loop instead of waking for each.
struct Preparing<'a> {
    id: ExecutionId,
    updates: &'a mpsc::UnboundedSender<Update>,
    sent: std::sync::atomic::AtomicBool,
}

impl<'a> Preparing<'a> {
    fn new(id: ExecutionId, updates: &'a mpsc::UnboundedSender<Update>) -> Preparing<'a> {
        Preparing {
            id,
            updates,
            sent: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Sends the update unless it went already.
    fn announce(&self) {
        if !self.sent.swap(true, Ordering::Relaxed) {
            let _ = self.updates.send(Update::Preparing { id: self.id });
        }
    }
}

/// Why an execution ended before its agent could finish: the state it ends in, the reason,
/// and whether trying again could go differently.
struct Failure {
    state: ExecutionState,
    message: String,
    class: FailureClass,
}

impl From<(ExecutionState, String)> for Failure {
    fn from((state, message): (ExecutionState, String)) -> Failure {
        Failure {
            state,
            message,
            class: FailureClass::Transient,
        }
    }
}

impl Failure {
    /// A failure that only a change to the configuration can mend.
    fn configuration(message: String) -> Failure {
        Failure {
            state: ExecutionState::Failed,
            message,
            class: FailureClass::Configuration,
        }
    }
}

/// Whether a workspace that could not be prepared failed for a reason of the project's
/// configuration: a repository without commits, or a base ref that is not there (the start
/// point of a task with no parent branch to start from).
fn workspace_failure(e: &workspace::Error, start_from: Option<&str>) -> Failure {
    let message = format!("preparing the workspace: {e}");
    match e {
        workspace::Error::NoCommits { .. } => Failure::configuration(message),
        workspace::Error::UnknownStartPoint { .. } if start_from.is_none() => {
            Failure::configuration(message)
        }
        _ => (ExecutionState::Failed, message).into(),
    }
}

/// Cancels `cancel` once the engine asks the execution to stop (or is gone); never ends.
async fn relay_stop(
    mut stop: watch::Receiver<Option<StopReason>>,
    cancel: launch::CancellationToken,
) -> std::convert::Infallible {
    loop {
        if stop.borrow_and_update().is_some() {
            break;
        }
        if stop.changed().await.is_err() {
            break;
        }
    }
    cancel.cancel();
    std::future::pending().await
}

/// Why the execution was stopped: what the engine said, or a shutdown when it is gone.
fn stop_reason(stop: &watch::Receiver<Option<StopReason>>) -> StopReason {
    stop.borrow().unwrap_or(StopReason::Shutdown)
}

async fn execute(
    job: &ExecutionJob,
    shared: &ExecutionShared,
    stop: watch::Receiver<Option<StopReason>>,
    updates: &mpsc::UnboundedSender<Update>,
    preparing: &Preparing<'_>,
) -> Result<End, Failure> {
    let id = job.id;
    let send = |u: Update| {
        let _ = updates.send(u);
    };
    let fail =
        |what: &str, e: &dyn std::fmt::Display| (ExecutionState::Failed, format!("{what}: {e}"));
    if job.workspace.is_some() {
        preparing.announce();
    }

    // The manifest's own relaxations, before anything (a hook included) runs with them.
    let places = sandbox_places(&job.site(), &job.project_dir, &[]);
    crate::relax::check_profile(&job.agent.sandbox, &crate::relax::Guarded::of(&places))
        .map_err(Failure::configuration)?;

    // Hooks run the workspace's code (the agent's Makefile, say), so they are confined like the
    // agent, but they are not the agent: no token, no control socket, no model gateway.
    let hook_sandbox = job.workspace.as_ref().and_then(|(manager, _)| {
        let places = sandbox_places(&job.site(), &manager.path_of(job.task), &[]);
        hook_sandbox_for(&job.agent.sandbox, &places)
    });
    let ws: Option<(&Workspaces, Workspace)> = match &job.workspace {
        Some((manager, start_from)) => {
            let ws = manager
                .ensure(job.task, start_from.as_deref(), hook_sandbox.as_ref())
                .await
                .map_err(|e| workspace_failure(&e, start_from.as_deref()))?;
            send(Update::Workspace {
                id,
                task: job.task,
                branch: ws.branch.clone(),
                path: ws.path.clone(),
            });
            if !job.agent.validators.is_empty() {
                // Recorded before the agent first runs, so nothing it does can move it.
                judge::base_commit(job, manager, start_from.as_deref())
                    .await
                    .map_err(|e| (ExecutionState::Failed, e))?;
            }
            Some((manager.as_ref(), ws))
        }
        None => None,
    };
    let cwd = ws
        .as_ref()
        .map_or(job.project_dir.clone(), |(_, w)| w.path.clone());

    let token = job.token.clone();
    let channel = job
        .control
        .open(id, token.clone())
        .map_err(|e| fail("opening the control socket", &e))?;
    let socket = channel.path().to_path_buf();
    let prompt_file = job.run_dir.join(format!("{id}-prompt.md"));
    let base = base_environment(job, &cwd, &socket, &token, &prompt_file);
    let hook_env = hook_environment(job, &base);
    let adapter = crate::runtime::adapter(job.agent.runtime.kind);
    // A known CLI keeps its state and configuration in its HOME: a directory of this execution
    // alone, so that a feedback iteration can resume the session the one before left there.
    // After a gate, the home the session was parked in, when it is still there.
    let adopted = match (&adapter, &job.resume) {
        (Some(_), Some(_)) => crate::runtime::AgentHome::adopt(&job.run_dir, job.task, id)
            .map_err(|e| fail("taking back the agent's parked home", &e))?,
        _ => None,
    };
    let resume = adopted.is_some().then(|| job.resume.clone()).flatten();
    let agent_home = match (&adapter, adopted) {
        (Some(_), Some(home)) => Some(home),
        (Some(_), None) => Some(
            crate::runtime::AgentHome::create(&job.run_dir, id)
                .map_err(|e| fail("making the agent's home directory", &e))?,
        ),
        (None, _) => None,
    };
    // An agent whose manifest says `sandbox: {enabled: false}` runs with nothing at all.
    let sandbox = job.agent.sandbox.enabled.then(|| {
        let expose = [
            socket.clone(),
            prompt_file.clone(),
            job.agentgrid_bin.clone(),
        ];
        let mut spec = sandbox_spec(job, &cwd, &expose);
        spec.writable
            .extend(agent_home.as_ref().map(|h| h.path().to_path_buf()));
        spec
    });

    if let Some((manager, w)) = &ws {
        manager
            .run_hook(w, HookKind::BeforeRun, &hook_env, hook_sandbox.as_ref())
            .await
            .map_err(|e| fail("the before_run hook failed", &e))?;
    }

    let agent = &job.agent;
    let max_iterations = agent.max_iterations.max(1);
    let mut context = job.context.clone();
    let mut usage = Usage::default();
    let mut exit_code = None;
    let mut end = (ExecutionState::Failed, Some("no iteration ran".to_string()));
    // The last failed validation: its reason and what identifies the failure, so that an
    // execution that makes no progress stops instead of burning its remaining iterations.
    let mut last_failure: Option<(String, String)> = None;
    let mut agent_events = match &adapter {
        Some(a) if a.usage_is_running_total() => crate::runtime::EventSink::with_running_totals(),
        _ => crate::runtime::EventSink::default(),
    };
    // The first iteration resumes the parked session; later ones resume the latest.
    agent_events.session = resume;
    for iteration in 1..=max_iterations {
        // No iteration starts after a stop: the one before ended with the stop's state, or
        // the stop came while its validators ran and ended them.
        if launch::is_cancelled() {
            return Err((
                ExecutionState::Cancelled,
                format!("starting iteration {iteration}"),
            )
                .into());
        }
        context.iteration = iteration;
        let prompt = manifest::render_prompt(&agent.prompt, &context)
            .map_err(|e| fail("rendering the prompt", &e))?;
        std::fs::write(&prompt_file, &prompt).map_err(|e| fail("writing the prompt file", &e))?;
        if let Some((manager, w)) = &ws {
            manager
                .check_git(w)
                .await
                .map_err(|e| fail("checking the workspace's git metadata", &e))?;
        }
        // A feedback iteration resumes the CLI's session, so it keeps what it learned and the
        // context is not paid for twice.
        agent_events.next_iteration();
        let session = agent_events.session.clone();
        let invocation = crate::runtime::Invocation {
            model: agent.runtime.model.as_deref(),
            resume: session.as_deref(),
            home: agent_home.as_ref().map(|h| h.path()),
            prompt_file: Some(&prompt_file),
        };
        let mut parser = adapter.as_ref().map(|a| a.parser());
        let spec = launch_spec(
            agent,
            adapter.as_deref().map(|a| (a, &invocation)),
            &context,
            &prompt,
            &cwd,
            &base,
            iteration,
        )
        .map_err(|e| (ExecutionState::Failed, e))?;
        preflight(&spec, sandbox.as_ref()).map_err(Failure::configuration)?;
        let spec = match &sandbox {
            Some(sandbox) => {
                let mut sandbox = sandbox.clone();
                if let Some(adapter) = &adapter {
                    sandbox
                        .expose
                        .extend(adapter.shown_with(Path::new(&spec.program)));
                    sandbox.hide.extend(adapter.hidden_with());
                }
                spec.with_sandbox(sandbox)
            }
            None => spec,
        };

        let (line_tx, mut line_rx) = mpsc::channel(256);
        let process = launch::spawn(
            spec,
            launch::OutputSpec {
                log_file: Some(job.log_path.clone()),
                line_tx: Some(line_tx),
                // A CLI's JSON line holds whole tool results; cut short it is not JSON.
                max_line_bytes: if adapter.is_some() {
                    1 << 20
                } else {
                    launch::OutputSpec::default().max_line_bytes
                },
                ..Default::default()
            },
        )
        .map_err(|e| fail("starting the agent", &e))?;
        let pid = process.pid;
        let started = job.clock.now();
        shared.touch(started);
        shared.iteration_started.store(started.0, Ordering::Relaxed);
        preparing.announce();
        send(Update::ProcessStarted {
            id,
            pid,
            iteration,
            log_path: job.log_path.display().to_string(),
        });
        let wait = process.wait();
        tokio::pin!(wait);
        let mut stopped: Option<StopReason> = None;
        let mut lines_open = true;
        let exit = loop {
            tokio::select! {
                exit = &mut wait => break exit,
                line = line_rx.recv(), if lines_open => match line {
                    Some(line) => {
                        let now = job.clock.now();
                        shared.touch(now);
                        if let Some(parser) = parser.as_mut()
                            && line.stream == launch::Stream::Stdout
                        {
                            for event in parser.line(&line.text, now) {
                                if let Some(event) = agent_events.take(event) {
                                    send(Update::Agent { id, iteration, event });
                                }
                            }
                        }
                    }
                    None => lines_open = false,
                },
                () = launch::cancelled(), if stopped.is_none() => {
                    // The agent, unlike a hook or a validator, gets its grace period.
                    stopped = Some(stop_reason(&stop));
                    launch::terminate_group(pid, job.grace).await;
                }
            }
        };
        shared.iteration_started.store(0, Ordering::Relaxed);
        let exit = exit.map_err(|e| fail("waiting for the agent", &e))?;
        // Lines still buffered when the process ended are the CLI's last word (its result).
        while let Ok(line) = line_rx.try_recv() {
            if let Some(parser) = parser.as_mut()
                && line.stream == launch::Stream::Stdout
            {
                for event in parser.line(&line.text, job.clock.now()) {
                    if let Some(event) = agent_events.take(event) {
                        send(Update::Agent {
                            id,
                            iteration,
                            event,
                        });
                    }
                }
            }
        }
        if let Some(parser) = parser.as_mut() {
            for event in parser.finish() {
                if let Some(event) = agent_events.take(event) {
                    send(Update::Agent {
                        id,
                        iteration,
                        event,
                    });
                }
            }
        }
        if let Some(event) = agent_events.dropped() {
            send(Update::Agent {
                id,
                iteration,
                event,
            });
        }
        usage.wall_ms += exit.wall_ms;
        usage.cpu_ms += exit.cpu_ms;
        exit_code = exit.code;
        send(Update::ProcessExited {
            id,
            iteration,
            exit_code: exit.code,
            signal: exit.signal,
        });

        let mut changed = false;
        if let Some((manager, w)) = &ws {
            let message = workspace::message::iteration(
                &job.context.task.title,
                job.task,
                id,
                iteration,
                &agent.name,
            );
            let commit = manager.commit_all(w, &message);
            let committed = match stopped {
                // A timeout, a stall, a budget or a cancel ends this execution, not the engine:
                // what the agent left is kept on its branch. After a shutdown's stop the commit
                // takes the cancellation like every step; the task runs again and its next
                // execution's first commit (or recovery) takes what is left.
                Some(reason) if reason != StopReason::Shutdown => launch::shielded(commit).await,
                _ => commit.await,
            };
            match committed {
                Ok(Some(commit)) => {
                    changed = true;
                    send(Update::Committed {
                        id,
                        branch: w.branch.clone(),
                        commit,
                    })
                }
                Ok(None) => {}
                Err(e) => return Err(fail("committing the agent's work", &e).into()),
            }
        }
        if let Some(reason) = stopped {
            let why = shared
                .stop_summary()
                .unwrap_or_else(|| format!("stopped ({})", reason.state()));
            end = (
                reason.state(),
                Some(format!(
                    "{why}; the agent {}",
                    described(&exit, adapter.as_deref())
                )),
            );
            break;
        }
        if let Some(why) = shared.stop_summary() {
            // The engine has ended this execution (over budget) and only gave the agent time
            // to end by itself: no validator and no further iteration runs.
            end = (
                ExecutionState::Failed,
                Some(format!(
                    "{why}; the agent {}",
                    described(&exit, adapter.as_deref())
                )),
            );
            break;
        }
        if let Some(why) = &agent_events.failure {
            // The CLI's own report outweighs its exit status: an API or authentication error
            // with exit 0 is not work done.
            end = (
                ExecutionState::Failed,
                Some(format!(
                    "the agent's CLI reported an error: {why} (the agent {})",
                    described(&exit, adapter.as_deref())
                )),
            );
            break;
        }
        if !exit.success() {
            let last = exit
                .tail
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim();
            let last = if last.len() > 200 {
                &last[..last.floor_char_boundary(200)]
            } else {
                last
            };
            // An agent that printed nothing gets no empty "last output:" to puzzle over.
            let what = if last.is_empty() {
                format!(
                    "agent {} and printed nothing",
                    described(&exit, adapter.as_deref())
                )
            } else {
                format!(
                    "agent {}; last output: {last}",
                    described(&exit, adapter.as_deref())
                )
            };
            end = (ExecutionState::Failed, Some(what));
            break;
        }
        let flags = shared.flags();
        if flags.blocked.is_some()
            || flags.handed_off.is_some()
            || shared.open_children() > 0
            || agent.validators.is_empty()
        {
            // A block is its own result, and so is a handoff (the receiver's part is judged, not
            // this one) and a split: sub-tasks still open when the agent exits, which the tree
            // is not finished without. Sub-tasks the agent waited for
            // until they ended split nothing: the work goes on to its validators. With no
            // validators the clean exit is the only evidence there is.
            let handed = flags
                .handed_off
                .as_ref()
                .map(|h| format!("handed off to {}", h.to));
            let summary = handed
                .or(flags.claimed)
                .or(flags.blocked)
                .unwrap_or_else(|| "agent exited cleanly".into());
            end = (ExecutionState::Succeeded, Some(summary));
            break;
        }
        if ws.is_some()
            && !changed
            && iteration < max_iterations
            && let Some((reason, _)) = &last_failure
        {
            // The validators would judge the very tree they failed.
            end = (
                ExecutionState::NoProgress,
                Some(format!(
                    "no progress: iteration {iteration} changed nothing after validation failed ({reason})"
                )),
            );
            break;
        }
        if launch::is_cancelled() {
            return Err((ExecutionState::Cancelled, "about to validate".to_string()).into());
        }
        send(Update::Validating { id, iteration });
        // Validators judge the agent's work, so they get none of its powers (no token, control
        // socket, prompt file or model gateway) and never its worktree: the commit is checked
        // out for them into a tree of the engine's (see `judge`), so that what they write is
        // never committed. Without a worktree the agent works in the project itself, and so do
        // they.
        let validation = match &ws {
            Some((manager, w)) => {
                let start_from = job.workspace.as_ref().and_then(|(_, s)| s.as_deref());
                judge::judge_branch(job, manager, w, start_from)
                    .await
                    .map_err(|e| (ExecutionState::Failed, e))?
            }
            None => {
                let validator_sandbox = job.agent.sandbox.enabled.then(|| {
                    let mut spec =
                        sandbox_spec(job, &cwd, std::slice::from_ref(&job.agentgrid_bin));
                    if spec.network == launch::sandbox::NetworkMode::Gateway {
                        spec.network = launch::sandbox::NetworkMode::None;
                    }
                    spec.gateway = None;
                    spec
                });
                run_validators(
                    &agent.validators,
                    agent.threshold,
                    &cwd,
                    &validator_environment(&job.site(), &cwd),
                    validator_sandbox.as_ref(),
                )
                .await
                .map_err(|e| fail("validation", &e))?
            }
        };
        send(Update::Validated {
            id,
            iteration,
            score: validation.score,
            passed: validation.passed,
            results: validation
                .verdicts
                .iter()
                .map(|v| v.result.clone())
                .collect(),
        });
        if validation.passed {
            end = (
                ExecutionState::Succeeded,
                Some(format!(
                    "validation passed ({})",
                    domain::text::score_against(validation.score, agent.threshold)
                )),
            );
            break;
        }
        if iteration == max_iterations {
            end = (
                ExecutionState::Failed,
                Some(format!(
                    "validation failed after {max_iterations} iterations ({}): {}",
                    domain::text::score_against(validation.score, agent.threshold),
                    validation.reason.as_deref().unwrap_or("no reason given")
                )),
            );
            break;
        }
        let reason = validation
            .reason
            .clone()
            .unwrap_or_else(|| "no reason given".into());
        let signature = validation.failure_signature();
        if last_failure.as_ref().is_some_and(|(_, s)| *s == signature) {
            end = (
                ExecutionState::NoProgress,
                Some(format!(
                    "no progress: iterations {} and {iteration} failed validation the same way ({reason})",
                    iteration - 1
                )),
            );
            break;
        }
        last_failure = Some((reason, signature));
        // A person's feedback stays in front of the validators' word on later iterations.
        context.feedback = Some(match &job.context.feedback {
            Some(person) => format!(
                "{person}\n\nThe validators on iteration {iteration}:\n{}",
                validation.feedback()
            ),
            None => validation.feedback(),
        });
        send(Update::NextIteration { id });
    }

    // after_run is best effort: the work is already committed and judged, so a stop skips it
    // or ends it, and the execution's outcome stands.
    if let Some((manager, w)) = &ws
        && !launch::is_cancelled()
        && let Err(e) = manager
            .run_hook(w, HookKind::AfterRun, &hook_env, hook_sandbox.as_ref())
            .await
    {
        tracing::warn!(execution = %id, "after_run hook failed: {e}");
    }
    drop(channel);
    let _ = std::fs::remove_file(&prompt_file);
    // An agent that stopped at a gate keeps its session for the execution after the decision.
    if shared.flags().gate
        && end.0 == ExecutionState::Succeeded
        && agent_events.session.is_some()
        && let Some(home) = agent_home
        && let Err(e) = home.park(&job.run_dir, job.task)
    {
        tracing::warn!(execution = %id, "the agent's session could not be parked: {e}");
    }
    Ok((end.0, exit_code, usage, end.1))
}

/// The environment every process of the execution sees (agent, hooks, validators).
fn base_environment(
    job: &ExecutionJob,
    cwd: &Path,
    socket: &Path,
    token: &str,
    prompt_file: &Path,
) -> Vec<(String, String)> {
    let mut env = launch::base_env();
    let bin_dir = job
        .agentgrid_bin
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let path = if path.is_empty() {
        bin_dir
    } else {
        format!("{bin_dir}:{path}")
    };
    launch::set_var(&mut env, "PATH".into(), path);
    let vars = [
        // Lets `agentgrid` find the project from anywhere, and lets a restarted engine find
        // this execution's processes if the engine running it dies.
        ("AGENTGRID_PROJECT", job.project_dir.display().to_string()),
        ("AGENTGRID_TASK_ID", job.task.to_string()),
        ("AGENTGRID_EXECUTION_ID", job.id.to_string()),
        ("AGENTGRID_EXECUTION_KIND", job.kind.to_string()),
        ("AGENTGRID_ATTEMPT", job.attempt.to_string()),
        ("AGENTGRID_AGENT", job.agent.name.clone()),
        ("AGENTGRID_WORKSPACE", cwd.display().to_string()),
        ("AGENTGRID_CONTROL_SOCKET", socket.display().to_string()),
        ("AGENTGRID_TOKEN", token.to_string()),
        ("AGENTGRID_PROMPT_FILE", prompt_file.display().to_string()),
    ];
    for (k, v) in vars {
        launch::set_var(&mut env, k.into(), v);
    }
    for (k, v) in &job.model_env {
        launch::set_var(&mut env, k.clone(), v.clone());
    }
    env
}

/// The environment validators see: the clean base, a PATH without the agentgrid binary's
/// directory, relative entries or entries inside the workspace, and of agentgrid's variables
/// only those that say whose processes these are (so that a restarted engine finds and stops
/// them as it does the agent's). No token, no control socket, no prompt file, no model
/// variables; nothing from the agent's runtime environment (`PYTHONPATH`, `NODE_PATH`, …).
pub(crate) fn validator_environment(site: &Site<'_>, cwd: &Path) -> Vec<(String, String)> {
    let mut env = launch::base_env();
    let bin_dir = site.agentgrid_bin.parent().map(Path::to_path_buf);
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let roots: Vec<PathBuf> = [
        Some(cwd.to_path_buf()),
        Some(site.project_dir.to_path_buf()),
    ]
    .into_iter()
    .flatten()
    .flat_map(|p| {
        let real = p.canonicalize().ok();
        [Some(p), real]
    })
    .flatten()
    .collect();
    let kept: Vec<&str> = path
        .split(':')
        .filter(|entry| {
            let p = Path::new(entry);
            // A relative entry (`.`, `node_modules/.bin`) resolves inside the workspace.
            p.is_absolute()
                && bin_dir.as_deref() != Some(p)
                && !roots.iter().any(|root| p.starts_with(root))
        })
        .collect();
    let path = if kept.is_empty() {
        "/usr/local/bin:/usr/bin:/bin".to_string()
    } else {
        kept.join(":")
    };
    launch::set_var(&mut env, "PATH".into(), path);
    let mut vars = vec![
        ("AGENTGRID_PROJECT", site.project_dir.display().to_string()),
        ("AGENTGRID_TASK_ID", site.task.to_string()),
    ];
    if let Some(id) = site.execution {
        vars.push(("AGENTGRID_EXECUTION_ID", id.to_string()));
    }
    for (k, v) in vars {
        launch::set_var(&mut env, k.into(), v);
    }
    env
}

/// The environment of the execution's hooks: the agent's, without the token and the model
/// gateway's variables, which would let the workspace's code act as the agent.
fn hook_environment(job: &ExecutionJob, base: &[(String, String)]) -> Vec<(String, String)> {
    base.iter()
        .filter(|(key, _)| {
            key != "AGENTGRID_TOKEN"
                && key != "AGENTGRID_CONTROL_SOCKET"
                && !job.model_env.iter().any(|(model_key, _)| model_key == key)
        })
        .cloned()
        .collect()
}

/// Checks that the agent's program and the interpreter of its `#!` line will be found and
/// that its sandbox shows them, before anything starts: a command with a typo or an
/// interpreter under a hidden home fails the same way on every attempt, and inside the sandbox
/// the kernel would only say that the script is missing.
fn preflight(
    spec: &launch::LaunchSpec,
    sandbox: Option<&launch::sandbox::SandboxSpec>,
) -> Result<(), String> {
    let path = spec.env_value("PATH").unwrap_or("");
    let home = spec.env_value("HOME").map(Path::new);
    launch::preflight::check_program(
        &spec.program,
        launch::preflight::Surroundings {
            cwd: &spec.cwd,
            path,
            sandbox,
            home,
        },
    )
    .map(drop)
    .map_err(|e| format!("cannot start the agent: {e}"))
}

/// How the agent's process ended, with what its CLI says the exit status means.
fn described(exit: &launch::Exit, adapter: Option<&dyn crate::runtime::Adapter>) -> String {
    match exit.code.zip(adapter).and_then(|(c, a)| a.exit_meaning(c)) {
        Some(meaning) => format!("{} ({meaning})", exit.describe()),
        None => exit.describe(),
    }
}

fn launch_spec(
    agent: &AgentRun,
    adapter: Option<(
        &dyn crate::runtime::Adapter,
        &crate::runtime::Invocation<'_>,
    )>,
    context: &manifest::PromptContext,
    prompt: &str,
    cwd: &Path,
    base: &[(String, String)],
    iteration: u32,
) -> Result<launch::LaunchSpec, String> {
    let render = |t: &str| {
        manifest::render_arg(t, context, prompt).map_err(|e| format!("rendering the command: {e}"))
    };
    let mut argv: Vec<String> = agent
        .runtime
        .argv
        .iter()
        .map(|a| render(a))
        .collect::<Result<_, _>>()?;
    let mut env = base.to_vec();
    if let Some((adapter, invocation)) = adapter {
        if argv.is_empty() {
            argv.push(adapter.program().to_string());
        }
        argv.extend(adapter.args(invocation));
        if let Some(home) = invocation.home {
            launch::set_var(&mut env, "HOME".into(), home.display().to_string());
        }
        for (k, v) in adapter.env() {
            launch::set_var(&mut env, k, v);
        }
        if let Some(home) = invocation.home {
            let more = adapter
                .prepare_home(home, &env, invocation)
                .map_err(|e| format!("writing the agent CLI's configuration: {e}"))?;
            for (k, v) in more {
                launch::set_var(&mut env, k, v);
            }
        }
    }
    for (k, v) in &agent.runtime.env {
        launch::set_var(&mut env, k.clone(), render(v)?);
    }
    if let Some((adapter, _)) = adapter
        && let Some(program) = argv.first_mut()
    {
        // npm installs a CLI as a link in `node_modules/.bin`, and Codex's as a node wrapper:
        // the sandbox runs the real file (looked up on the PATH the agent will have), or the
        // binary behind the wrapper. A program not found is left to launch, which says so.
        let path = env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map_or("", |(_, v)| v.as_str());
        match crate::runtime::resolve_program(adapter, program, cwd, path) {
            Ok(real) => *program = real.display().to_string(),
            Err(crate::runtime::ProgramProblem::NotFound { .. }) => {}
            Err(problem) => return Err(format!("agent `{}`: {problem}", agent.name)),
        }
    }
    let Some((program, args)) = argv.split_first() else {
        return Err(format!("agent `{}` has an empty command", agent.name));
    };
    launch::set_var(
        &mut env,
        "AGENTGRID_ITERATION".into(),
        iteration.to_string(),
    );
    let mut spec = launch::LaunchSpec::new(program.clone(), cwd)
        .args(args.iter().cloned())
        .with_env_exactly(env);
    let prompt_on_stdin = match adapter {
        Some((adapter, _)) => adapter.prompt_on_stdin(),
        None => agent.runtime.stdin == StdinMode::Prompt,
    };
    if prompt_on_stdin {
        spec = spec.with_stdin(prompt.as_bytes().to_vec());
    }
    Ok(spec)
}

/// A fresh execution token: 32 random bytes, hex.
pub fn new_token() -> String {
    use rand::Rng;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes: [u8; 32] = rand::rng().random();
    let mut token = String::with_capacity(64);
    for b in bytes {
        token.push(char::from(HEX[usize::from(b >> 4)]));
        token.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    token
}

/// Where an execution's sandbox sits: the paths [`sandbox_for`] needs besides the profile.
#[derive(Debug, Clone)]
pub struct SandboxPlaces {
    /// The directory the agent works in.
    pub workspace: PathBuf,
    /// The project's `.agentgrid` directory, hidden as a whole: whatever is added to it later
    /// is hidden without anyone listing it.
    pub state_dir: PathBuf,
    /// The engine's run directory (sockets, prompt files).
    pub run_dir: PathBuf,
    /// The main checkout, when the agent works in a worktree of its own: hidden, so that its
    /// working tree (untracked files such as `.env` included) never reaches an agent.
    pub main_checkout: Option<PathBuf>,
    /// Where the other tasks' worktrees live, when workspaces are on.
    pub worktrees: Option<PathBuf>,
    /// The workspace's git metadata, as the engine that made the worktree knows it (never
    /// read from the worktree's `.git` file, which is the agent's).
    pub git: Option<launch::sandbox::GitMetadata>,
    /// What must stay reachable inside hidden places: the control socket, the prompt file, the
    /// agentgrid binary.
    pub expose: Vec<PathBuf>,
    /// The agentgrid binary, which becomes the sandbox helper.
    pub helper: PathBuf,
    /// The model gateway's socket and the loopback port to relay it to.
    pub gateway: Option<(PathBuf, u16)>,
    /// The sandbox's own wall-time limit, which holds even when the engine cannot kill.
    pub wall_time: Option<domain::Duration>,
}

/// The sandbox for an execution's processes, from the agent's profile. Hidden besides what
/// every sandbox leaves out (everything outside the system trees and the named paths): the
/// main checkout, the project's whole state directory, the run directory and the other tasks'
/// worktrees, in case any of them lies inside a visible tree; `expose` is shown again inside
/// them.
pub fn sandbox_for(
    profile: &manifest::SandboxProfile,
    places: &SandboxPlaces,
) -> launch::sandbox::SandboxSpec {
    use launch::sandbox as sb;
    let mut spec = sb::SandboxSpec::new(&places.workspace);
    spec.filesystem = profile.filesystem;
    spec.network = profile.network;
    if spec.network == sb::NetworkMode::Gateway
        && let Some((socket, port)) = &places.gateway
    {
        spec.gateway = Some(sb::GatewayRelay {
            socket: socket.clone(),
            port: *port,
        });
    }
    spec.hide.extend(places.main_checkout.clone());
    spec.hide.push(places.state_dir.clone());
    spec.hide.push(places.run_dir.clone());
    spec.hide.extend(places.worktrees.clone());
    spec.git = places.git.clone();
    spec.expose = places.expose.clone();
    // The manifest's own relaxations (`sandbox.expose`, `sandbox.writable`), checked by
    // `validate`; the view binds each at its real place and refuses one that leads, through a
    // link, into a hidden place.
    spec.expose.extend(profile.expose.iter().cloned());
    spec.writable.extend(profile.writable.iter().cloned());
    spec.limits = sb::Limits {
        memory: Some(profile.limits.memory),
        processes: Some(u64::from(profile.limits.processes)),
        open_files: Some(u64::from(profile.limits.open_files)),
        file_size: Some(profile.limits.file_size),
        cpu_time: Some(profile.limits.cpu_time),
        wall_time: places.wall_time,
    };
    spec.helper = Some(places.helper.clone());
    spec
}

/// The sandbox a workspace hook runs in: the agent's profile (`None` when the agent's manifest
/// turns the sandbox off), showing nothing back inside the hidden places but the agentgrid
/// binary and the profile's own `expose` and `writable` paths, and with no model gateway relay, since a hook has no token to use it with.
pub fn hook_sandbox_for(
    profile: &manifest::SandboxProfile,
    places: &SandboxPlaces,
) -> Option<launch::sandbox::SandboxSpec> {
    use launch::sandbox as sb;
    if !profile.enabled {
        return None;
    }
    let places = SandboxPlaces {
        expose: vec![places.helper.clone()],
        gateway: None,
        ..places.clone()
    };
    let mut spec = sandbox_for(profile, &places);
    if spec.network == sb::NetworkMode::Gateway {
        spec.network = sb::NetworkMode::None;
    }
    Some(spec)
}

/// How much longer than the engine's own deadline a sandbox may live: the engine stops an
/// agent at its timeout with a grace period, and the sandbox's limit is only for when the
/// engine cannot.
const WALL_TIME_MARGIN: Duration = Duration::from_secs(60);

fn sandbox_spec(
    job: &ExecutionJob,
    cwd: &Path,
    expose: &[PathBuf],
) -> launch::sandbox::SandboxSpec {
    sandbox_for(
        &job.agent.sandbox,
        &sandbox_places(&job.site(), cwd, expose),
    )
}

/// Where an execution's processes, or a land's validators, run: what their sandbox's places
/// and their environment are made from.
#[derive(Clone)]
pub struct Site<'a> {
    pub task: TaskId,
    /// `None` for the validators of a land, which belong to no execution.
    pub execution: Option<ExecutionId>,
    pub agent: &'a AgentRun,
    pub workspaces: Option<&'a Workspaces>,
    pub project_dir: &'a Path,
    pub state_dir: &'a Path,
    pub run_dir: &'a Path,
    pub agentgrid_bin: &'a Path,
    pub grace: Duration,
    pub gateway: Option<&'a (PathBuf, u16)>,
    /// Where the judge tree and its guard live (`judges/task-<id>` for an execution).
    pub judge_dir: PathBuf,
}

impl ExecutionJob {
    pub(crate) fn site(&self) -> Site<'_> {
        Site {
            task: self.task,
            execution: Some(self.id),
            agent: &self.agent,
            workspaces: self.workspace.as_ref().map(|(manager, _)| manager.as_ref()),
            project_dir: &self.project_dir,
            state_dir: &self.state_dir,
            run_dir: &self.run_dir,
            agentgrid_bin: &self.agentgrid_bin,
            grace: self.grace,
            gateway: self.gateway.as_ref(),
            judge_dir: crate::judge::judge_dir(&self.state_dir, self.task),
        }
    }
}

pub(crate) fn sandbox_places(site: &Site<'_>, cwd: &Path, expose: &[PathBuf]) -> SandboxPlaces {
    let manager = site.workspaces;
    let repo_root = manager.map(|m| m.config().repo_root.clone());
    // The spec travels with one sandbox for the agent and its validators alike, so its limit
    // is the longest either may run.
    let longest = site
        .agent
        .validators
        .iter()
        .map(|v| v.timeout)
        .chain([site.agent.timeout.as_std()])
        .max()
        .unwrap_or_default();
    SandboxPlaces {
        workspace: cwd.to_path_buf(),
        state_dir: site.state_dir.to_path_buf(),
        run_dir: site.run_dir.to_path_buf(),
        main_checkout: repo_root.clone(),
        worktrees: manager.map(|m| m.config().root.clone()),
        git: repo_root
            .as_deref()
            .and_then(|root| worktree_git(root, cwd)),
        expose: expose.to_vec(),
        helper: site.agentgrid_bin.to_path_buf(),
        gateway: site.gateway.cloned(),
        wall_time: Some(domain::Duration::from_millis(
            (longest + site.grace + WALL_TIME_MARGIN).as_millis() as u64,
        )),
    }
}

/// The git metadata of the worktree at `workspace`, from what the engine knows: the main
/// checkout's git directory and the name `git worktree add` gives a worktree (its directory's
/// name). Nothing in the worktree is read. `None` when the main checkout's `.git` is not a
/// directory (then git inside the sandbox has no metadata and says so).
pub fn worktree_git(repo_root: &Path, workspace: &Path) -> Option<launch::sandbox::GitMetadata> {
    let common = repo_root.join(".git").canonicalize().ok()?;
    if !std::fs::symlink_metadata(&common).ok()?.is_dir() {
        return None;
    }
    let name = workspace.file_name()?.to_str()?;
    let meta = launch::sandbox::GitMetadata::linked(&common, name);
    std::fs::symlink_metadata(&meta.git_dir)
        .ok()?
        .is_dir()
        .then_some(meta)
}
