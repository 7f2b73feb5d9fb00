//! `agentgrid run`: the engine in the foreground, with progress lines.

use std::sync::Arc;

use domain::{Event, EventKind, SystemClock, TaskState};
use engine::{Engine, EngineLock, EngineOptions, RunMode, RunSummary};
use tokio::sync::mpsc;

use super::run_status::{Mode, StatusLine};
use crate::output::{clip, one_line, table};
use crate::project::Project;

pub async fn run(
    project: &Project,
    forever: bool,
    quiet: bool,
    status_every: u64,
) -> anyhow::Result<u8> {
    let status = if quiet {
        Mode::Off
    } else {
        Mode::detect(status_every)
    };
    let (summary, store) = run_engine_with(
        project,
        if forever {
            RunMode::Forever
        } else {
            RunMode::UntilIdle
        },
        !quiet,
        status,
        |_| {},
    )
    .await?;
    print_summary(&*store, &summary, quiet).await
}

/// At most this many tasks are listed when a run ends, and at most this many that cannot run.
const SUMMARY_LINES: usize = 20;

/// What a run did, printed when it ends: the tasks this run touched (failures and tasks that
/// need a person first), bounded, and one line of counts, which is all `quiet` prints. Exits 1
/// when a task this run touched ended failed; failures left by earlier runs are not its own.
///
/// Built from what the run recorded, so it costs the same on a store of a hundred thousand
/// tasks as on an empty one. `store` is the engine's own, still open: opening the file again
/// (and closing it, a checkpoint) would cost a run of no-op tasks several milliseconds.
pub async fn print_summary(
    store: &dyn store::Store,
    summary: &RunSummary,
    quiet: bool,
) -> anyhow::Result<u8> {
    let mut tasks = Vec::with_capacity(summary.touched.len());
    for id in &summary.touched {
        if let Some(task) = store.task(*id).await? {
            tasks.push(task);
        }
    }
    let needs_a_person =
        |t: &domain::Task| matches!(t.state, TaskState::Failed | TaskState::Blocked);
    tasks.sort_by_key(|t| (!needs_a_person(t), t.id));
    let failed = tasks
        .iter()
        .filter(|t| t.state == TaskState::Failed)
        .count();
    let done = tasks.iter().filter(|t| t.state == TaskState::Done).count();
    if !quiet && !tasks.is_empty() {
        let mut rows = Vec::with_capacity(tasks.len().min(SUMMARY_LINES));
        for t in tasks.iter().take(SUMMARY_LINES) {
            let runs = store
                .executions(&store::ExecutionFilter {
                    task: Some(t.id),
                    ..Default::default()
                })
                .await?;
            let iterations: u32 = runs.iter().map(|e| e.iteration).sum();
            rows.push(vec![
                format!("#{}", t.id),
                t.parent.map_or_else(|| "-".into(), |p| format!("#{p}")),
                t.state.to_string(),
                runs.len().to_string(),
                iterations.to_string(),
                t.branch.clone().unwrap_or_else(|| "-".into()),
                clip(&t.title, 44),
            ]);
        }
        outln!();
        table(
            &[
                "TASK", "PARENT", "STATE", "EXECS", "ITERS", "BRANCH", "TITLE",
            ],
            &rows,
        );
        if tasks.len() > SUMMARY_LINES {
            let hidden_failed = tasks[SUMMARY_LINES..]
                .iter()
                .any(|t| t.state == TaskState::Failed);
            outln!(
                "… and {} more (agentgrid task list{})",
                tasks.len() - SUMMARY_LINES,
                if hidden_failed { " --state failed" } else { "" }
            );
        }
    }
    if !quiet {
        outln!();
    }
    outln!(
        "{} execution(s) started{}{}; {} task(s) touched: {done} done, {failed} failed{}",
        summary.executions_started,
        if summary.recovered > 0 {
            format!(", {} recovered after a crash", summary.recovered)
        } else {
            String::new()
        },
        if summary.interrupted {
            ", interrupted"
        } else {
            ""
        },
        tasks.len(),
        if summary.stuck.is_empty() {
            String::new()
        } else {
            format!(", {} cannot run", summary.stuck.len())
        }
    );
    if !quiet {
        // The rest of the project is counted, not listed: a run reports its own work.
        let total: u64 = store.task_counts().await?.iter().map(|(_, n)| n).sum();
        let others = total.saturating_sub(tasks.len() as u64);
        if others > 0 {
            outln!(
                "{others} other task(s) in the project were not touched by this run (agentgrid task list)"
            );
        }
        for (task, why) in summary.stuck.iter().take(SUMMARY_LINES) {
            outln!("#{task} cannot run: {}", one_line(why));
        }
        if summary.stuck.len() > SUMMARY_LINES {
            outln!(
                "… and {} more that cannot run (agentgrid status)",
                summary.stuck.len() - SUMMARY_LINES
            );
        }
    }
    Ok(if failed > 0 {
        crate::exit::FAILED
    } else {
        crate::exit::OK
    })
}

/// Runs the engine on `project` until idle or a signal, printing progress when asked, with a
/// status line kept up to date meanwhile (see `run_status.rs`), and with
/// `prepare` given the setup the manifests made before the engine starts (the demo hands its
/// in-process model's key to the gateway this way). Returns what the run did and the store
/// it ran on, for the closing summary.
pub async fn run_engine_with(
    project: &Project,
    mode: RunMode,
    progress: bool,
    status: Mode,
    prepare: impl FnOnce(&mut engine::Setup),
) -> anyhow::Result<(RunSummary, Arc<dyn store::Store>)> {
    let manifests = project.manifests()?;
    if manifests.agents.is_empty() {
        return Err(crate::user_error(format!(
            "no agents are defined: add one under {}/agents/ (see `agentgrid init`)",
            project.state_dir.display()
        )));
    }
    // What `validate` finds is said before anything runs: mistakes in the configuration
    // (the tasks they concern fail at once when their turn comes, without retrying) and
    // differences between the checkout and what agents will see. Said, not refused, so that
    // the agents the mistakes do not concern still work.
    if progress {
        super::run_checks::say_findings(project, &manifests).await;
    }
    let mut setup = engine::setup_from_project(&manifests, &project.root)?;
    prepare(&mut setup);
    engine::resolve_git_drivers(&manifests, &project.root, &mut setup).await?;
    let _lock = EngineLock::acquire(&project.state_dir.join("engine.lock"))?;
    check_boundary(project, &setup, progress).await?;
    let store = project.engine_store().await?;
    // The signal handler reads the store on a connection of its own, so that it can answer
    // while the engine's is busy.
    let signals = shutdown_signal(project.store().await?, project.root.clone());
    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<Event>();
    let mut judging = Judging {
        agents: setup
            .agents
            .values()
            .map(|a| (a.name.clone(), (a.threshold, a.max_iterations)))
            .collect(),
        executions: std::collections::HashMap::new(),
    };
    let status_line = StatusLine::default();
    let ticker = tokio::spawn(status_line.clone().run(store.clone(), status));
    let above = status_line.clone();
    let printer = tokio::spawn(async move {
        while let Some(event) = events_rx.recv().await {
            if progress && let Some(line) = judging.progress_line(&event) {
                // Titles and reasons in it come from agents: escaped first, coloured after.
                above.above(|| outln!("{}", marked(&domain::text::one_line(&line))));
            }
        }
    });
    let options = EngineOptions {
        project_dir: project.root.clone(),
        state_dir: project.state_dir.clone(),
        run_dir: engine::runtime_dir(&project.state_dir),
        agentgrid_bin: std::env::current_exe()?,
        mode,
        // Without progress lines nobody reads the events, and each one would be copied.
        events: progress.then_some(events_tx),
    };
    let engine = Engine::new(store.clone(), Arc::new(SystemClock), setup, options);
    let summary = engine.run(signals).await;
    ticker.abort();
    let _ = ticker.await;
    let _ = printer.await;
    status_line.clear();
    Ok((summary?, store))
}

/// Before any agent runs in a sandbox: the boundary's self-test, once. A boundary that leaks,
/// or that cannot be tested, refuses the run; a host that cannot build the default sandbox at
/// all is left to each execution, which is refused with the setting that opts out knowingly.
async fn check_boundary(
    project: &Project,
    setup: &engine::Setup,
    progress: bool,
) -> anyhow::Result<()> {
    use launch::sandbox;
    let sandboxed = setup
        .agents
        .values()
        .any(|a| a.sandbox.enabled && a.sandbox.filesystem != manifest::FilesystemMode::None);
    if !sandboxed
        || sandbox::check(
            &sandbox::SandboxSpec::new(&project.state_dir),
            sandbox::host_support(),
        )
        .is_err()
    {
        return Ok(());
    }
    let boundary = super::boundary::self_test(&project.state_dir)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "the sandbox's self-test could not run, so no sandboxed agent runs: {e}\n\
                 `agentgrid doctor` shows what this host supports"
            )
        })?;
    if !boundary.holds() {
        return Err(anyhow::anyhow!(
            "the sandbox boundary leaks on this host, so no sandboxed agent runs:\n{}\n\
             `agentgrid doctor` shows the details",
            boundary.leaks()
        ));
    }
    if progress {
        eprintln!(
            "sandbox: self-test held ({} checks, agent uid {}); unix sockets: {}",
            boundary.checks.len(),
            boundary
                .uid
                .map_or_else(|| "unknown".to_string(), |u| u.to_string()),
            boundary.unix_sockets
        );
    }
    Ok(())
}

/// Resolves on the first SIGINT or SIGTERM, saying what the stop waits for; a second signal
/// forces the stop (see [`force_stop`]).
async fn shutdown_signal(store: Arc<dyn store::Store>, project_dir: std::path::PathBuf) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    let running = active_executions(&*store).await.len();
    eprintln!(
        "stopping: no new executions; waiting for {running} execution(s) to wind down within their grace period; Ctrl-C again to force"
    );
    // The handlers stay installed for the rest of the process, so the second signal reaches
    // this task rather than the default action.
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        force_stop(&*store, &project_dir).await;
    });
}

/// What the store calls active right now, oldest first. A store that cannot be read counts as
/// none: the stop goes on either way.
async fn active_executions(store: &dyn store::Store) -> Vec<domain::Execution> {
    store
        .executions(&store::ExecutionFilter {
            active_only: true,
            ..Default::default()
        })
        .await
        .unwrap_or_default()
}

/// The second signal: says what is left behind, kills every running execution's process
/// group and exits at once, writing nothing. The store is then as a crash leaves it, which the
/// next `agentgrid run` recovers (the crash rule): the work left in each worktree is committed
/// to its branch, the executions end as `lost`, and their tasks go back without an attempt
/// counted.
async fn force_stop(store: &dyn store::Store, project_dir: &std::path::Path) {
    let active = active_executions(store).await;
    if active.is_empty() {
        eprintln!("forcing the stop: no execution is running; exiting now");
    } else {
        let killed: Vec<String> = active
            .iter()
            .map(|e| format!("{} (task #{}, {})", e.id, e.task_id, one_line(&e.agent)))
            .collect();
        let tasks: std::collections::BTreeSet<String> =
            active.iter().map(|e| format!("#{}", e.task_id)).collect();
        eprintln!(
            "forcing the stop: killing execution(s) {}; task(s) {} go back to open (or waiting, for a resume) when the next `agentgrid run` recovers them, with the work in their worktrees committed and no attempt counted",
            killed.join(", "),
            tasks.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    let ids = active.iter().map(|e| e.id).collect();
    engine::kill_executions(project_dir, &ids).await;
    let _ = crate::output::finish();
    std::process::exit(i32::from(crate::exit::FORCED));
}

/// A progress line with its leading ✓ or ✗ coloured.
fn marked(line: &str) -> String {
    use crate::output::Style;
    for (mark, style) in [("✓", Style::Good), ("✗", Style::Bad)] {
        if let Some(rest) = line.strip_prefix(mark) {
            return format!("{}{rest}", style.paint(mark));
        }
    }
    line.to_string()
}

/// What the progress lines need to know to say what a validation means: each agent's threshold
/// and iteration limit, and which agent runs each execution (from its creation event).
struct Judging {
    agents: std::collections::HashMap<String, (f64, u32)>,
    executions: std::collections::HashMap<i64, String>,
}

impl Judging {
    /// The events worth a line while the engine runs.
    fn progress_line(&mut self, event: &Event) -> Option<String> {
        if let EventKind::ExecutionCreated { execution } = &event.kind {
            self.executions
                .insert(execution.id.0, execution.agent.clone());
        }
        if let EventKind::ExecutionValidated {
            iteration,
            score,
            passed,
            results,
        } = &event.kind
        {
            let limits = self
                .executions
                .get(&event.entity_id)
                .and_then(|agent| self.agents.get(agent))
                .copied();
            return Some(validation_line(
                event.entity_id,
                *iteration,
                *score,
                *passed,
                results,
                limits,
            ));
        }
        progress_line(event)
    }
}

/// One validation's line: the score shown so that it never looks like it met a threshold it
/// missed, and "feeding back" only when another iteration will hear it.
fn validation_line(
    execution: i64,
    iteration: u32,
    score: f64,
    passed: bool,
    results: &[domain::event::ValidatorResult],
    limits: Option<(f64, u32)>,
) -> String {
    let score = match limits {
        Some((threshold, _)) => domain::text::score_against(score, threshold),
        None => format!("score {}", domain::text::score(score)),
    };
    let verdict = match (passed, limits) {
        (true, _) => "passed",
        (false, Some((_, max))) if iteration >= max => "failed on the last iteration",
        (false, Some(_)) => "failed, feeding back",
        (false, None) => "failed",
    };
    let mut line =
        format!("  execution {execution} iteration {iteration}: validation {verdict} ({score})");
    for r in results.iter().filter(|r| !r.passed) {
        match r.reason.as_deref() {
            Some(reason) if reason.starts_with("timed out") => {
                line.push_str(&format!("; validator {} {reason}", r.name))
            }
            reason => line.push_str(&format!("; {}: {}", r.name, reason.unwrap_or("failed"))),
        }
    }
    line
}

/// The events worth a line while the engine runs, that need nothing but the event.
fn progress_line(event: &Event) -> Option<String> {
    let id = event.entity_id;
    match &event.kind {
        EventKind::TaskCreated { task } => Some(match task.parent {
            Some(p) => format!("  + #{id} {} (sub-task of #{p})", task.title),
            None => format!("  + #{id} {}", task.title),
        }),
        EventKind::TaskStateChanged { to, reason, .. } if *to != TaskState::Running => {
            let mark = match to {
                TaskState::Done => "✓",
                TaskState::Failed => "✗",
                _ => "·",
            };
            Some(format!(
                "{mark} #{id} {to}{}",
                reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ))
        }
        // The engine's own notes: why a parent runs now, a merge that did not go in.
        EventKind::TaskCommented { author, text } if author == "engine" => {
            Some(format!("· #{id} {text}"))
        }
        EventKind::ExecutionCreated { execution } => Some(format!(
            "▶ #{} {} execution {} by {} (attempt {})",
            execution.task_id, execution.kind, execution.id, execution.agent, execution.attempt
        )),
        EventKind::ExecutionFinished { state, .. } => Some(format!("  execution {id} {state}")),
        _ => None,
    }
}
