//! `cargo xtask bench --only views`: the time `agentgrid status` and `agentgrid task list
//! --limit 50` take on a store of 100,000 tasks, through the real binary.
//!
//! The store is built once with the store crate itself (far faster than running 150,000
//! executions): 100,000 tasks, half of them run twice (a failed execution, then a succeeded
//! one) and the rest once, each execution with the events the engine writes for a short run and
//! one model request; about 1 % of the tasks end failed, 0.5 % blocked, a few hundred stay
//! open, and two executions are still running. Each command then runs `--runs` times (30 by
//! default here), the sides alternating, with its output going to `/dev/null`; p50 and p95
//! count. The baseline is the binary's own start (`agentgrid --version`), measured in the same
//! run, so that the ratio says what the view costs above starting a process.
//!
//! `--before BIN` measures an older build side by side on a copy of the same store. A build
//! from before schema version 7 would refuse the newer file, so its copy has migration 7 taken
//! out again (two indexes and their row in `schema_migrations`); a build without `task list
//! --limit` lists every task instead, which is what it had to offer.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use domain::{ExecutionId, ExecutionKind, ExecutionState, NewTask, TaskId, TaskState, Timestamp};
use store::{Change, SqliteStore, Store};

/// The target of issue 9: p95 under this for `status` and `task list --limit 50`.
const TARGET_P95: Duration = Duration::from_millis(100);

/// What the store holds.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    pub tasks: usize,
}

impl Size {
    pub fn new(quick: bool) -> Size {
        Size {
            tasks: if quick { 5_000 } else { 100_000 },
        }
    }
}

/// One command measured on one binary.
struct Timing {
    label: String,
    samples: Vec<Duration>,
}

impl Timing {
    fn p(&self, q: f64) -> Duration {
        percentile(&self.samples, q)
    }
}

/// Builds the store, times the views; returns whether every target was met.
pub fn run(
    bin: &Path,
    before: Option<&Path>,
    base: &Path,
    size: Size,
    runs: usize,
) -> anyhow::Result<bool> {
    let dir = tempfile::Builder::new()
        .prefix("agentgrid-views-")
        .tempdir_in(base)
        .with_context(|| format!("cannot make a temporary directory in {}", base.display()))?;
    let ours = project(bin, &dir.path().join("ours"))?;
    let started = Instant::now();
    let counts = populate(&ours.join(".agentgrid/agentgrid.db"), size)?;
    println!(
        "views: a store of {} tasks, {} executions and {} events, built in {:.1} s",
        counts.0,
        counts.1,
        counts.2,
        started.elapsed().as_secs_f64()
    );
    let theirs = match before {
        Some(old) => {
            let repo = project(old, &dir.path().join("before"))?;
            let db = repo.join(".agentgrid/agentgrid.db");
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
            }
            std::fs::copy(ours.join(".agentgrid/agentgrid.db"), &db)?;
            let raw = rusqlite::Connection::open(&db)?;
            raw.execute_batch(
                "DROP INDEX IF EXISTS tasks_by_state;
                 DROP INDEX IF EXISTS tasks_merge_failed;
                 DELETE FROM schema_migrations WHERE version >= 7;",
            )?;
            drop(raw);
            Some((old.to_path_buf(), repo))
        }
        None => None,
    };

    let limit_args: &[&str] = &["task", "list", "--limit", "50"];
    let mut commands: Vec<(String, Vec<String>, Option<Vec<String>>)> = Vec::new();
    let owned = |args: &[&str]| args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let old_lists_all = match &theirs {
        Some((old, repo)) => !succeeds(old, repo, &["task", "list", "--limit", "1"]),
        None => false,
    };
    for (label, args) in [
        ("--version (baseline)", owned(&["--version"])),
        ("status", owned(&["status"])),
        ("status --json", owned(&["status", "--json"])),
        ("task list --limit 50", owned(limit_args)),
        (
            "task list --limit 50 --json",
            owned(&["task", "list", "--limit", "50", "--json"]),
        ),
    ] {
        let old_args = if old_lists_all && args.iter().any(|a| a == "--limit") {
            Some(
                args.iter()
                    .filter(|a| *a != "--limit" && *a != "50")
                    .cloned()
                    .collect(),
            )
        } else {
            Some(args.clone())
        };
        commands.push((label.to_string(), args, old_args));
    }

    let mut rows: Vec<(Timing, Option<Timing>)> = Vec::new();
    for (label, args, old_args) in &commands {
        let mut mine = Timing {
            label: label.clone(),
            samples: Vec::with_capacity(runs),
        };
        let mut old = theirs.as_ref().map(|_| Timing {
            label: label.clone(),
            samples: Vec::with_capacity(runs),
        });
        // One untimed run each warms the page cache, as a person's second look would find it.
        time(bin, &ours, args)?;
        if let (Some((old_bin, repo)), Some(old_args)) = (&theirs, old_args) {
            time(old_bin, repo, old_args)?;
        }
        for _ in 0..runs {
            mine.samples.push(time(bin, &ours, args)?);
            if let (Some((old_bin, repo)), Some(old_args), Some(old)) =
                (&theirs, old_args, old.as_mut())
            {
                old.samples.push(time(old_bin, repo, old_args)?);
            }
        }
        rows.push((mine, old));
    }
    print(&rows, runs, old_lists_all);
    let mut met = true;
    for (timing, _) in &rows {
        if timing.label.starts_with("--version") {
            continue;
        }
        let p95 = timing.p(0.95);
        if p95 >= TARGET_P95 {
            met = false;
            println!(
                "target MISSED: `{}` p95 {} (target: under {})",
                timing.label,
                ms(p95),
                ms(TARGET_P95)
            );
        }
    }
    if met {
        println!(
            "target met: every view's p95 is under {} on {} tasks",
            ms(TARGET_P95),
            counts.0
        );
    }
    Ok(met)
}

fn print(rows: &[(Timing, Option<Timing>)], runs: usize, old_lists_all: bool) {
    let baseline = rows
        .first()
        .map(|(t, _)| t.p(0.95))
        .unwrap_or(Duration::ZERO);
    let old_baseline = rows
        .first()
        .and_then(|(_, o)| o.as_ref())
        .map(|t| t.p(0.95));
    println!("{runs} runs of each command on each side");
    let mut header = vec!["command", "p50", "p95", "p95 / baseline"];
    if old_baseline.is_some() {
        header.extend(["before p50", "before p95", "before p95 / baseline"]);
    }
    let mut body: Vec<Vec<String>> = Vec::new();
    for (t, old) in rows {
        let mut row = vec![
            t.label.clone(),
            ms(t.p(0.5)),
            ms(t.p(0.95)),
            format!("{:.2}x", ratio(t.p(0.95), baseline)),
        ];
        if let (Some(o), Some(ob)) = (old, old_baseline) {
            row.extend([
                ms(o.p(0.5)),
                ms(o.p(0.95)),
                format!("{:.2}x", ratio(o.p(0.95), ob)),
            ]);
        }
        body.push(row);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            body.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            let pad = " ".repeat(w - cell.chars().count());
            if i == 0 {
                out.push_str(cell);
                out.push_str(&pad);
            } else {
                out.push_str("  ");
                out.push_str(&pad);
                out.push_str(cell);
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.iter().map(|s| s.to_string()).collect());
    for row in body {
        line(row);
    }
    if old_lists_all {
        println!("(the older build has no `task list --limit`: its rows list every task)");
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    if b.is_zero() {
        0.0
    } else {
        a.as_secs_f64() / b.as_secs_f64()
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// The value below which a share `q` of the samples lie (nearest rank).
pub(crate) fn percentile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A git repository with an agentgrid project made by `bin`.
fn project(bin: &Path, repo: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(repo)?;
    crate::bench::git(repo, &["init", "-q", "-b", "main"])?;
    let out = crate::bench::command(bin)
        .arg("init")
        .current_dir(repo)
        .stdin(Stdio::null())
        .output()
        .context("cannot run agentgrid init")?;
    ensure!(
        out.status.success(),
        "agentgrid init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(repo.to_path_buf())
}

fn succeeds(bin: &Path, repo: &Path, args: &[&str]) -> bool {
    crate::bench::command(bin)
        .args(args)
        .current_dir(repo)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One run of `bin args` in `repo`, timed from spawn to exit; it must succeed.
fn time(bin: &Path, repo: &Path, args: &[String]) -> anyhow::Result<Duration> {
    let mut cmd: Command = crate::bench::command(bin);
    cmd.args(args)
        .current_dir(repo)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("cannot run agentgrid {}", args.join(" ")))?;
    let elapsed = started.elapsed();
    ensure!(
        out.status.success(),
        "agentgrid {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(elapsed)
}

/// Fills the store at `path`; returns how many tasks, executions and events it holds.
fn populate(path: &Path, size: Size) -> anyhow::Result<(usize, u64, u64)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = Arc::new(SqliteStore::open(path)?);
        let now = Timestamp(1_767_000_000_000);
        let body = "What to do, as a person would write it: a paragraph about the change, \
                    the file it touches and how to tell it works. "
            .repeat(2);
        const CHUNK: usize = 1_000;
        let mut next_execution = 1i64;
        let mut executions = 0u64;
        for start in (0..size.tasks).step_by(CHUNK) {
            let end = (start + CHUNK).min(size.tasks);
            let new: Vec<Change> = (start..end)
                .map(|i| {
                    Change::CreateTask(NewTask {
                        body: body.clone(),
                        labels: if i % 3 == 0 {
                            vec!["backend".into()]
                        } else {
                            vec![]
                        },
                        ..NewTask::titled(format!("Task {i}: make one small thing better"))
                    })
                })
                .collect();
            let created = store.apply("cli", now, new).await?;
            let mut changes = Vec::new();
            for (k, task) in created.tasks.iter().enumerate() {
                let i = start + k;
                let id = task.id;
                // A few hundred stay open; two run at the end; the others run once or twice.
                if i % 250 == 7 {
                    continue;
                }
                let last = if i % 100 == 3 {
                    ExecutionState::Failed
                } else {
                    ExecutionState::Succeeded
                };
                let settle = match (last, i % 200 == 5) {
                    (ExecutionState::Failed, _) => TaskState::Failed,
                    (_, true) => TaskState::Blocked,
                    _ => TaskState::Done,
                };
                if i % 2 == 0 {
                    run_one(
                        &mut changes,
                        &mut next_execution,
                        id,
                        1,
                        ExecutionState::Failed,
                        TaskState::Open,
                    );
                    executions += 1;
                }
                let still_running = end == size.tasks && k + 2 >= created.tasks.len();
                if still_running {
                    let eid = ExecutionId(next_execution);
                    next_execution += 1;
                    changes.push(claim(id, 2));
                    changes.push(Change::SetExecutionState {
                        id: eid,
                        to: ExecutionState::Preparing,
                        reason: None,
                    });
                } else {
                    run_one(&mut changes, &mut next_execution, id, 2, last, settle);
                }
                executions += 1;
            }
            let applied = store.apply("engine", now, changes).await?;
            ensure!(
                applied
                    .executions
                    .last()
                    .is_none_or(|e| e.id.0 == next_execution - 1),
                "the store numbered executions differently than expected"
            );
        }
        let events = store.last_seq().await?;
        Ok((size.tasks, executions, events))
    })
}

fn claim(task: TaskId, attempt: u32) -> Change {
    Change::CreateExecution {
        task_id: task,
        kind: ExecutionKind::Work,
        agent: "coder".into(),
        attempt,
        lease: None,
    }
}

/// The changes of one short execution of `task`, as the engine writes them, with one model
/// request.
fn run_one(
    changes: &mut Vec<Change>,
    next_execution: &mut i64,
    task: TaskId,
    attempt: u32,
    end: ExecutionState,
    settle: TaskState,
) {
    let id = ExecutionId(*next_execution);
    *next_execution += 1;
    let exit_code = Some(if end == ExecutionState::Succeeded {
        0
    } else {
        1
    });
    changes.extend([
        claim(task, attempt),
        Change::SetExecutionState {
            id,
            to: ExecutionState::Preparing,
            reason: None,
        },
        Change::SetExecutionState {
            id,
            to: ExecutionState::Running,
            reason: None,
        },
        Change::ProcessStarted {
            id,
            pid: 4242,
            iteration: 1,
            log_path: None,
        },
        Change::RecordModelUsage {
            id,
            model: "default".into(),
            tokens: domain::Tokens {
                input: 1_200,
                output: 300,
                cached: 800,
            },
            cost_micros: 4_500,
        },
        Change::ProcessExited {
            id,
            iteration: 1,
            exit_code,
            signal: None,
        },
        Change::FinishExecution {
            id,
            state: end,
            exit_code,
            usage: domain::Usage::default(),
            summary: Some("one small thing made better".into()),
        },
        Change::SettleTask {
            id: task,
            to: settle,
            reason: (settle != TaskState::Done).then(|| format!("the execution ended {end}")),
        },
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let ms = Duration::from_millis;
        let samples: Vec<Duration> = (1..=20).map(ms).collect();
        assert_eq!(percentile(&samples, 0.5), ms(10));
        assert_eq!(percentile(&samples, 0.95), ms(19));
        assert_eq!(percentile(&[ms(3)], 0.95), ms(3));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }
}
