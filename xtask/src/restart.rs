//! `cargo xtask bench --only restart,memory`: how fast agentgrid winds down and re-dispatches
//! hundreds of live sandboxed executions after `kill -9`, and how much memory the engine holds.
//!
//! - restart: a project with N (500) tasks for an agent that sleeps in the default sandbox,
//!   workspaces off. `agentgrid run` starts them all; the time until every one runs is the
//!   baseline (starting N sandboxes fresh). The engine is then killed with SIGKILL and `run`
//!   started again; the time until every old execution is recorded as ended and N new ones run
//!   is agentgrid's side. The ratio of the two says what recovery adds to a fresh start. The
//!   peak RSS of the second engine (`VmHWM`, with N live executions) is the memory figure.
//! - memory: the engine's peak RSS with 100,000 tasks in the store that no agent takes
//!   (`run --forever`, idle once loaded), against the peak of the same engine on an empty store.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use crate::bench::{command, fresh_repo, ok, ok_with_input};

/// Targets of issue 9.
const RESTART_TARGET: Duration = Duration::from_secs(5);
const MEMORY_LIVE_TARGET_MIB: f64 = 64.0;
const MEMORY_TASKS_TARGET_MIB: f64 = 150.0;

/// How long any one phase may take before the bench gives up.
const PHASE_LIMIT: Duration = Duration::from_secs(300);

pub struct Restart {
    pub executions: usize,
    pub fresh: Duration,
    pub restart: Duration,
    pub live_hwm_mib: f64,
}

impl Restart {
    pub fn print(&self) {
        println!(
            "restart after kill -9 with {n} live sandboxed executions: {restart:.3} s to wind \
             them down and run {n} new ones; starting {n} fresh took {fresh:.3} s (ratio \
             {ratio:.2}x)",
            n = self.executions,
            restart = self.restart.as_secs_f64(),
            fresh = self.fresh.as_secs_f64(),
            ratio = self.restart.as_secs_f64() / self.fresh.as_secs_f64(),
        );
        println!(
            "engine peak RSS with {} live executions: {:.1} MiB",
            self.executions, self.live_hwm_mib
        );
    }

    pub fn met(&self) -> bool {
        let restart = self.restart <= RESTART_TARGET;
        let memory = self.live_hwm_mib < MEMORY_LIVE_TARGET_MIB;
        println!(
            "target {}: restart {:.3} s (target: at most {} s)",
            if restart { "met" } else { "MISSED" },
            self.restart.as_secs_f64(),
            RESTART_TARGET.as_secs()
        );
        println!(
            "target {}: {:.1} MiB with {} live executions (target: under {MEMORY_LIVE_TARGET_MIB} MiB)",
            if memory { "met" } else { "MISSED" },
            self.live_hwm_mib,
            self.executions
        );
        restart && memory
    }
}

/// Runs the restart measurement once with `executions` sandboxed sleepers.
pub fn restart(bin: &Path, base: &Path, executions: usize) -> anyhow::Result<Restart> {
    let (dir, repo) = fresh_repo(base)?;
    init(bin, &repo, executions, "routing:\n    default: true\n")?;
    import(bin, &repo, executions)?;
    // The end of each phase is the time the engine recorded on the event that completed it, so
    // the follower's polling adds nothing to either side.
    let mut events = Follower::start(bin, &repo)?;

    let started = now_ms();
    let mut first = spawn_run(bin, &repo)?;
    let at = events.until(&mut first, "every execution to run", |f| {
        f.running().count() == executions
    })?;
    let fresh = Duration::from_millis((at - started).max(0) as u64);
    let old: Vec<i64> = events.running().collect();
    let newest_old = old.iter().copied().max().unwrap_or(0);

    first.kill().context("cannot kill the engine")?; // SIGKILL
    first.wait()?;
    let started = now_ms();
    let mut second = spawn_run(bin, &repo)?;
    let at = events.until(
        &mut second,
        "every old execution wound down and as many new ones running",
        |f| {
            old.iter()
                .all(|id| f.finished.get(id).is_some_and(|s| s == "lost"))
                && f.running().filter(|id| *id > newest_old).count() == executions
        },
    )?;
    let restart = Duration::from_millis((at - started).max(0) as u64);
    let live_hwm_mib = hwm_mib(second.id())?;
    stop(&mut second)?;
    events.stop();
    drop(dir);
    Ok(Restart {
        executions,
        fresh,
        restart,
        live_hwm_mib,
    })
}

/// `agentgrid events --follow --json`, read on a thread: which executions started a process
/// and which finished, and how.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
    started: BTreeSet<i64>,
    finished: BTreeMap<i64, String>,
}

impl Follower {
    fn start(bin: &Path, repo: &Path) -> anyhow::Result<Follower> {
        let mut child = command(bin)
            .args(["events", "--follow", "--json"])
            .current_dir(repo)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start agentgrid events --follow")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Follower {
            child,
            lines,
            started: BTreeSet::new(),
            finished: BTreeMap::new(),
        })
    }

    /// Executions with a process started and not finished.
    fn running(&self) -> impl Iterator<Item = i64> + '_ {
        self.started
            .iter()
            .copied()
            .filter(|id| !self.finished.contains_key(id))
    }

    /// Reads events until `done` holds; returns the time (ms since the epoch) of the event
    /// that made it hold.
    fn until(
        &mut self,
        engine: &mut Child,
        what: &str,
        mut done: impl FnMut(&Follower) -> bool,
    ) -> anyhow::Result<i64> {
        let deadline = Instant::now() + PHASE_LIMIT;
        loop {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    let event: serde_json::Value = serde_json::from_str(&line)
                        .with_context(|| format!("events --json printed `{line}`"))?;
                    let id = event["entity_id"].as_i64().unwrap_or_default();
                    match event["type"].as_str() {
                        Some("execution_process_started") => {
                            self.started.insert(id);
                        }
                        Some("execution_finished") => {
                            let state = event["state"].as_str().unwrap_or_default();
                            self.finished.insert(id, state.to_string());
                        }
                        _ => continue,
                    }
                    if done(self) {
                        return event["at"].as_i64().context("an event without `at`");
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("events --follow ended"),
            }
            if let Some(status) = engine.try_wait()? {
                bail!("agentgrid run ended early ({status}) while waiting for {what}");
            }
            ensure!(
                Instant::now() < deadline,
                "waited {} s for {what}: {} running, {} finished",
                PHASE_LIMIT.as_secs(),
                self.running().count(),
                self.finished.len()
            );
        }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub struct Memory {
    pub tasks: usize,
    pub empty_hwm_mib: f64,
    pub tasks_hwm_mib: f64,
}

impl Memory {
    pub fn print(&self) {
        println!(
            "engine peak RSS, idle: {:.1} MiB with {} tasks in the store, {:.1} MiB with none \
             (ratio {:.2}x)",
            self.tasks_hwm_mib,
            self.tasks,
            self.empty_hwm_mib,
            self.tasks_hwm_mib / self.empty_hwm_mib
        );
    }

    pub fn met(&self) -> bool {
        let met = self.tasks_hwm_mib < MEMORY_TASKS_TARGET_MIB;
        println!(
            "target {}: {:.1} MiB with {} tasks (target: under {MEMORY_TASKS_TARGET_MIB} MiB)",
            if met { "met" } else { "MISSED" },
            self.tasks_hwm_mib,
            self.tasks
        );
        met
    }
}

/// The idle engine's peak RSS with `tasks` tasks no agent takes, and with none.
pub fn memory(bin: &Path, base: &Path, tasks: usize) -> anyhow::Result<Memory> {
    let idle_hwm = |tasks: usize| -> anyhow::Result<f64> {
        let (_dir, repo) = fresh_repo(base)?;
        // An agent that takes only tasks labelled `never`: the bench's tasks have no label, so
        // the engine loads them all and has nothing to start.
        init(bin, &repo, 2, "routing:\n    labels: [never]\n")?;
        import(bin, &repo, tasks)?;
        let mut engine = spawn_run(bin, &repo)?;
        let hwm = settled_hwm(&mut engine);
        stop(&mut engine)?;
        hwm
    };
    let empty_hwm_mib = idle_hwm(0)?;
    let tasks_hwm_mib = idle_hwm(tasks)?;
    Ok(Memory {
        tasks,
        empty_hwm_mib,
        tasks_hwm_mib,
    })
}

/// `agentgrid init`, then a configuration for `concurrency` executions at once (guards raised,
/// workspaces off) and one sleeping agent in the default sandbox with the given routing.
fn init(bin: &Path, repo: &Path, concurrency: usize, routing: &str) -> anyhow::Result<()> {
    ok(command(bin).arg("init").current_dir(repo), "agentgrid init")?;
    let state = repo.join(".agentgrid");
    for entry in std::fs::read_dir(state.join("agents"))? {
        std::fs::remove_file(entry?.path())?;
    }
    std::fs::write(
        state.join("config.yaml"),
        format!(
            "apiVersion: agentgrid.dev/v1
kind: Config
spec:
  concurrency:
    global: {concurrency}
  guards:
    max_new_executions_per_minute: 1000000
    max_executions_per_tree: 1000000
  workspace:
    enabled: false
  shutdown_grace: 2s
"
        ),
    )?;
    std::fs::write(
        state.join("agents/sleeper.yaml"),
        format!(
            r#"apiVersion: agentgrid.dev/v1
kind: Agent
metadata:
  name: sleeper
spec:
  description: "Sleeps in the default sandbox until it is stopped."
  runtime:
    type: command
    command: ["sleep", "600"]
  prompt: "Task {{{{ task.id }}}}"
  {routing}"#
        ),
    )?;
    Ok(())
}

fn import(bin: &Path, repo: &Path, tasks: usize) -> anyhow::Result<()> {
    if tasks == 0 {
        return Ok(());
    }
    let lines: String = (1..=tasks)
        .map(|i| format!("{{\"title\": \"sleeper {i}\"}}\n"))
        .collect();
    ok_with_input(
        command(bin).args(["task", "import", "-"]).current_dir(repo),
        "agentgrid task import",
        lines.as_bytes(),
    )?;
    Ok(())
}

fn spawn_run(bin: &Path, repo: &Path) -> anyhow::Result<Child> {
    command(bin)
        .args(["run", "--forever", "--quiet"])
        .current_dir(repo)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start agentgrid run")
}

/// `VmHWM` of a process in MiB.
fn hwm_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in the engine's status")?;
    Ok(kib / 1024.0)
}

/// The engine's peak RSS once it has stopped growing for two seconds: loaded and idle.
fn settled_hwm(engine: &mut Child) -> anyhow::Result<f64> {
    let deadline = Instant::now() + PHASE_LIMIT;
    let mut last = (0.0, Instant::now());
    loop {
        if let Some(status) = engine.try_wait()? {
            bail!("agentgrid run ended early ({status})");
        }
        let now = hwm_mib(engine.id())?;
        if now > last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() >= Duration::from_secs(2) {
            return Ok(now);
        }
        ensure!(
            Instant::now() < deadline,
            "the engine's memory never settled"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stops an engine with SIGTERM and waits for it.
fn stop(engine: &mut Child) -> anyhow::Result<()> {
    ok(
        command("kill").args(["-TERM", &engine.id().to_string()]),
        "kill -TERM",
    )?;
    engine.wait()?;
    Ok(())
}
