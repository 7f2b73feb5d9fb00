//! `cargo xtask bench`: the time agentgrid takes to run no-op executions, against the time
//! `xargs -P2` takes to run the same commands, measured in the same run on the same machine;
//! and the latency the model gateway adds to a request.
//!
//! Three scenarios, each with fresh temporary projects for every run:
//! - A: 1,000 tasks for an agent whose command is `true`, workspaces off, no sandbox at all
//!   (`sandbox: {enabled: false}`). The baseline is `xargs -P2` running `true` 1,000
//!   times. What is left is agentgrid's own cost per execution: the scheduler, the durable
//!   store, the control socket, process setup and reaping (and the sandbox helper, which runs
//!   even for an opted-out agent, to apply its limits).
//! - B: 200 such tasks with a git worktree each. The baseline runs, per task, what agentgrid's
//!   worktree path amounts to in git terms: `git worktree add -b`, `true` inside, `git add -A`
//!   and a commit if anything changed, `git worktree remove`.
//! - C: 300 tasks for the same agent in the default sandbox (`workspace-write`, network
//!   `none`, default limits), workspaces off. The baseline is `xargs -P2` making, per task, the
//!   sandbox helper invocation agentgrid makes (`agentgrid __sandbox` with the same request; see
//!   `sandboxed.rs`), so the difference is agentgrid's orchestration alone.
//!
//! Each side runs `--runs` times, alternating, and the median counts. Timing covers the whole
//! `agentgrid run --quiet` process (start-up, recovery, the closing summary) and the whole
//! `xargs` process; setting up the project and checking the result afterwards are not timed.
//!
//! The gateway's added latency comes from the gateway crate's `gateway_latency` example (see
//! `gateway.rs`); restart after `kill -9` and the engine's memory are measured by `restart.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use crate::gateway::{self, Latency};
use crate::restart;
use crate::sandboxed::{self, Baseline};

/// Executions at once, on both sides.
const CONCURRENCY: u32 = 2;

/// The bench's command-line options.
#[derive(Debug)]
pub struct Options {
    quick: bool,
    runs: usize,
    dir: Option<PathBuf>,
    check: bool,
    /// A binary to measure instead of building the workspace's, e.g. an older build.
    agentgrid: Option<PathBuf>,
    /// The parts to run: `a`, `b`, `c`, `gateway`, `restart`, `memory`. Empty means all.
    only: Vec<String>,
    /// Measured requests per kind and side in the gateway measurement.
    requests: usize,
    /// An older build to time side by side in the views part.
    before: Option<PathBuf>,
}

const PARTS: [&str; 8] = [
    "a", "b", "c", "gateway", "restart", "memory", "views", "leases",
];

impl Options {
    pub fn parse(args: &[String]) -> anyhow::Result<Options> {
        let mut options = Options {
            quick: false,
            runs: 0,
            dir: None,
            check: false,
            agentgrid: None,
            only: Vec::new(),
            requests: 0,
            before: None,
        };
        let number = |flag: &str, value: Option<&String>| -> anyhow::Result<usize> {
            let value = value.with_context(|| format!("{flag} needs a number, e.g. {flag} 5"))?;
            value
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .with_context(|| format!("{flag} {value}: give a whole number above 0"))
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => options.quick = true,
                "--check" => options.check = true,
                "--runs" => options.runs = number("--runs", args.next())?,
                "--requests" => options.requests = number("--requests", args.next())?,
                "--dir" => {
                    let value = args.next().context("--dir needs a directory")?;
                    options.dir = Some(PathBuf::from(value));
                }
                "--before" => {
                    let value = args.next().context("--before needs the path of a binary")?;
                    options.before = Some(PathBuf::from(value));
                }
                "--agentgrid" => {
                    let value = args
                        .next()
                        .context("--agentgrid needs the path of a binary")?;
                    options.agentgrid = Some(PathBuf::from(value));
                }
                "--only" => {
                    let value = args
                        .next()
                        .context("--only needs a list of parts, e.g. --only a,c")?;
                    for part in value.split(',').map(str::trim) {
                        ensure!(
                            PARTS.contains(&part),
                            "--only {value}: `{part}` is not a part; give some of {}",
                            PARTS.join(", ")
                        );
                        options.only.push(part.to_string());
                    }
                }
                other => bail!("unknown bench option `{other}`: see `cargo xtask help`"),
            }
        }
        if options.runs == 0 {
            options.runs = if options.quick { 1 } else { 3 };
        }
        if options.requests == 0 {
            options.requests = if options.quick { 200 } else { 2000 };
        }
        Ok(options)
    }

    fn wants(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == part)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// A: no workspace, sandbox opted out.
    Plain,
    /// B: a git worktree per task, sandbox opted out.
    Worktrees,
    /// C: no workspace, the default sandbox.
    Sandboxed,
}

impl Scenario {
    const ALL: [Scenario; 3] = [Scenario::Plain, Scenario::Worktrees, Scenario::Sandboxed];

    fn part(self) -> &'static str {
        match self {
            Scenario::Plain => "a",
            Scenario::Worktrees => "b",
            Scenario::Sandboxed => "c",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Scenario::Plain => "A  no-op, no workspace",
            Scenario::Worktrees => "B  no-op, git worktree",
            Scenario::Sandboxed => "C  no-op, default sandbox",
        }
    }

    fn baseline(self) -> &'static str {
        match self {
            Scenario::Plain | Scenario::Worktrees => "xargs -P2",
            Scenario::Sandboxed => "xargs -P2 + helper",
        }
    }

    fn tasks(self, quick: bool) -> usize {
        match (self, quick) {
            (Scenario::Plain, false) => 1000,
            (Scenario::Worktrees, false) => 200,
            (Scenario::Sandboxed, false) => 300,
            (Scenario::Plain, true) => 100,
            (Scenario::Worktrees, true) => 20,
            (Scenario::Sandboxed, true) => 50,
        }
    }

    /// The ratio agentgrid's time may reach against the baseline's, where there is a target.
    fn target(self) -> Option<f64> {
        match self {
            Scenario::Plain => Some(1.5),
            Scenario::Worktrees => None,
            Scenario::Sandboxed => Some(1.2),
        }
    }

    fn workspaces(self) -> bool {
        self == Scenario::Worktrees
    }

    fn sandboxed(self) -> bool {
        self == Scenario::Sandboxed
    }
}

/// One scenario's measurements.
struct Row {
    scenario: Scenario,
    tasks: usize,
    ours: Vec<Duration>,
    theirs: Vec<Duration>,
}

impl Row {
    fn ratio(&self) -> f64 {
        median(&self.ours).as_secs_f64() / median(&self.theirs).as_secs_f64()
    }
}

/// Runs the bench; returns false when `--check` was given and a target was missed.
pub fn run(options: Options) -> anyhow::Result<bool> {
    let scenarios: Vec<Scenario> = Scenario::ALL
        .into_iter()
        .filter(|s| options.wants(s.part()))
        .collect();
    let mut all_met = true;
    if !scenarios.is_empty() {
        all_met &= run_scenarios(&options, &scenarios)?;
    }
    if options.wants("gateway") {
        if !scenarios.is_empty() {
            println!();
        }
        let latency = gateway::measure(options.requests)?;
        println!();
        print_latency(&latency);
        all_met &= latency.met();
    }
    if options.wants("restart") || options.wants("memory") {
        let bin = agentgrid_bin(&options)?;
        let base = bench_dir(&options)?;
        if options.wants("restart") {
            println!();
            let executions = if options.quick { 50 } else { 500 };
            let measured = restart::restart(&bin, &base, executions)?;
            measured.print();
            all_met &= measured.met();
        }
        if options.wants("memory") {
            println!();
            let tasks = if options.quick { 10_000 } else { 100_000 };
            let measured = restart::memory(&bin, &base, tasks)?;
            measured.print();
            all_met &= measured.met();
        }
    }
    if options.wants("views") {
        if !scenarios.is_empty() || options.wants("gateway") {
            println!();
        }
        let bin = agentgrid_bin(&options)?;
        let before = match &options.before {
            Some(path) => Some(
                path.canonicalize()
                    .with_context(|| format!("--before {}: no such binary", path.display()))?,
            ),
            None => None,
        };
        let runs = if options.quick { 5 } else { options.runs * 10 };
        all_met &= crate::views::run(
            &bin,
            before.as_deref(),
            &bench_dir(&options)?,
            crate::views::Size::new(options.quick),
            runs,
        )?;
    }
    if options.wants("leases") {
        println!();
        let executions = if options.quick { 50 } else { 500 };
        let rounds = if options.quick { 5 } else { options.runs * 10 };
        crate::leases::measure(&bench_dir(&options)?, executions, rounds)?.print();
    }
    if options.quick {
        println!("(--quick: too few tasks and requests for numbers worth recording)");
    }
    Ok(all_met || !options.check)
}

/// Times agentgrid against its baseline in each scenario; returns whether every target was met.
fn run_scenarios(options: &Options, scenarios: &[Scenario]) -> anyhow::Result<bool> {
    for tool in ["git", "xargs", "sh", "true"] {
        which(tool).with_context(|| format!("the bench needs `{tool}` on PATH"))?;
    }
    let bin = agentgrid_bin(options)?;
    let base = bench_dir(options)?;

    println!(
        "agentgrid bench: concurrency {CONCURRENCY}, durable store on, median of {} run(s)",
        options.runs
    );
    for line in machine(&base) {
        println!("  {line}");
    }
    println!();

    let mut rows = Vec::new();
    // The projects are deleted only at the end: on some file systems (ext4 without a journal)
    // creating a file gets slower for a while after many were deleted, and one run's clean-up
    // must not slow down the next run.
    let mut keep = Vec::new();
    for &scenario in scenarios {
        let tasks = scenario.tasks(options.quick);
        let mut row = Row {
            scenario,
            tasks,
            ours: Vec::new(),
            theirs: Vec::new(),
        };
        for run in 1..=options.runs {
            // Alternating the sides spreads whatever else the machine does over both.
            let (ours, dir) = time_agentgrid(&bin, &base, scenario, tasks)?;
            keep.push(dir);
            let (theirs, dir) = time_xargs(&bin, &base, scenario, tasks)?;
            keep.push(dir);
            println!(
                "{}  run {run}/{}: agentgrid {}, {} {}",
                scenario.name(),
                options.runs,
                seconds(ours),
                scenario.baseline(),
                seconds(theirs)
            );
            row.ours.push(ours);
            row.theirs.push(theirs);
        }
        rows.push(row);
    }

    drop(keep);
    println!();
    print_table(&rows);
    println!();
    let mut all_met = true;
    for row in &rows {
        let Some(target) = row.scenario.target() else {
            continue;
        };
        let ratio = row.ratio();
        let letter = &row.scenario.name()[..1];
        if ratio <= target {
            println!(
                "target met: scenario {letter} takes {ratio:.2}x the baseline time (target: at \
                 most {target:.1}x)"
            );
        } else {
            all_met = false;
            println!(
                "target MISSED: scenario {letter} takes {ratio:.2}x the baseline time (target: \
                 at most {target:.1}x), {:.0}% over",
                (ratio / target - 1.0) * 100.0
            );
        }
    }
    Ok(all_met)
}

fn print_table(rows: &[Row]) {
    let header = [
        "scenario",
        "tasks",
        "agentgrid",
        "baseline",
        "ratio",
        "per task (agentgrid - baseline)",
    ]
    .map(String::from);
    let body: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let ours = median(&r.ours);
            let theirs = median(&r.theirs);
            let extra = ours.as_secs_f64() - theirs.as_secs_f64();
            [
                r.scenario.name().to_string(),
                r.tasks.to_string(),
                seconds(ours),
                format!("{} ({})", seconds(theirs), r.scenario.baseline()),
                format!("{:.2}x", r.ratio()),
                format!("{:+.2} ms", extra * 1000.0 / r.tasks as f64),
            ]
        })
        .collect();
    print_columns(&header, &body);
}

fn print_latency(latency: &Latency) {
    let header = [
        "request (gateway)",
        "direct p50",
        "gateway p50",
        "added p50",
        "direct p99",
        "gateway p99",
        "added p99",
        "p99 ratio",
    ]
    .map(String::from);
    let us = |v: u64| format!("{v} µs");
    let body: Vec<[String; 8]> = latency
        .kinds
        .iter()
        .chain(&latency.unbudgeted)
        .map(|(name, p)| {
            [
                name.to_string(),
                us(p.direct_p50),
                us(p.gateway_p50),
                us(p.added_p50),
                us(p.direct_p99),
                us(p.gateway_p99),
                us(p.added_p99),
                format!("{:.2}x", p.ratio_p99),
            ]
        })
        .collect();
    println!("{} requests of each kind on each side", latency.requests);
    print_columns(&header, &body);
    println!();
    let worst = latency.worst_added_p99();
    let target = gateway::TARGET_P99_US;
    if latency.met() {
        println!(
            "target met: with budgets, the gateway adds at most {worst} µs at p99 (target: under \
             {target} µs)"
        );
    } else {
        println!(
            "target MISSED: the gateway adds up to {worst} µs at p99 (target: under {target} \
             µs), {:.0}% over",
            (worst as f64 / target as f64 - 1.0) * 100.0
        );
    }
}

/// Prints a table: the first column left-aligned, the others right-aligned.
fn print_columns<const N: usize>(header: &[String; N], body: &[[String; N]]) {
    let mut widths = header.each_ref().map(|h| h.chars().count());
    for row in body {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; N]| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            // Padding by characters, not bytes: `µ` is two bytes.
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
    line(header);
    for row in body {
        line(row);
    }
}

/// The binary to measure: `--agentgrid`, or the workspace's, built in release mode.
fn agentgrid_bin(options: &Options) -> anyhow::Result<PathBuf> {
    match &options.agentgrid {
        Some(path) => path
            .canonicalize()
            .with_context(|| format!("--agentgrid {}: no such binary", path.display())),
        None => build_agentgrid(),
    }
}

/// Where the temporary projects go: `--dir`, or the system's temporary directory.
fn bench_dir(options: &Options) -> anyhow::Result<PathBuf> {
    let base = match &options.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir(),
    };
    std::fs::create_dir_all(&base)
        .with_context(|| format!("cannot create the bench directory {}", base.display()))?;
    Ok(base)
}

/// Builds agentgrid in release mode and returns the path of the binary cargo reports.
fn build_agentgrid() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    println!("building agentgrid (release)…");
    let out = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "--package",
            "agentgrid",
            "--bin",
            "agentgrid",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    ensure!(
        out.status.success(),
        "building agentgrid failed (see above)"
    );
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact"
            && message["target"]["name"] == "agentgrid"
            && let Some(path) = message["executable"].as_str()
        {
            return Ok(PathBuf::from(path));
        }
    }
    bail!("cargo built agentgrid but did not say where the binary is")
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A fresh directory holding `repo/`, a git repository with one commit.
pub(crate) fn fresh_repo(base: &Path) -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::Builder::new()
        .prefix("agentgrid-bench-")
        .tempdir_in(base)
        .with_context(|| format!("cannot make a temporary directory in {}", base.display()))?;
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo)?;
    git(&repo, &["init", "-q", "-b", "main"])?;
    // Both sides commit; a local identity keeps the user's configuration out of it.
    git(&repo, &["config", "user.name", "agentgrid bench"])?;
    git(&repo, &["config", "user.email", "bench@example.invalid"])?;
    git(&repo, &["config", "commit.gpgsign", "false"])?;
    std::fs::write(repo.join("README.md"), "# bench project\n")?;
    git(&repo, &["add", "-A"])?;
    git(&repo, &["commit", "-q", "-m", "first"])?;
    Ok((dir, repo))
}

/// Sets up a project with `tasks` tasks for the no-op agent, then times `agentgrid run`.
fn time_agentgrid(
    bin: &Path,
    base: &Path,
    scenario: Scenario,
    tasks: usize,
) -> anyhow::Result<(Duration, tempfile::TempDir)> {
    let (dir, repo) = fresh_repo(base)?;
    init_project(bin, &repo, scenario)?;
    let lines: String = (1..=tasks)
        .map(|i| format!("{{\"title\": \"no-op {i}\"}}\n"))
        .collect();
    ok_with_input(
        command(bin)
            .args(["task", "import", "-"])
            .current_dir(&repo),
        "agentgrid task import",
        lines.as_bytes(),
    )?;

    let started = Instant::now();
    let out = command(bin)
        .args(["run", "--quiet"])
        .current_dir(&repo)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("cannot start agentgrid run")?;
    let elapsed = started.elapsed();
    ensure!(
        out.status.success(),
        "agentgrid run failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    let listed = ok(
        command(bin)
            .args(["task", "list", "--state", "done", "--json"])
            .current_dir(&repo),
        "agentgrid task list",
    )?;
    let done = serde_json::from_str::<serde_json::Value>(&listed)?
        .as_array()
        .map_or(0, Vec::len);
    ensure!(
        done == tasks,
        "agentgrid finished only {done} of {tasks} tasks; the project is {}",
        repo.display()
    );
    if scenario.workspaces() {
        check_worktrees_gone(&repo)?;
    }
    Ok((elapsed, dir))
}

/// `agentgrid init` in `repo`, then the bench's configuration and its one agent.
fn init_project(bin: &Path, repo: &Path, scenario: Scenario) -> anyhow::Result<()> {
    ok(command(bin).arg("init").current_dir(repo), "agentgrid init")?;
    let state = repo.join(".agentgrid");
    for entry in std::fs::read_dir(state.join("agents"))? {
        std::fs::remove_file(entry?.path())?;
    }
    std::fs::write(state.join("config.yaml"), config_yaml(scenario))?;
    std::fs::write(
        state.join(format!("agents/{}.yaml", sandboxed::AGENT)),
        agent_yaml(scenario),
    )?;
    Ok(())
}

/// Times `xargs -P2` running, per task, what agentgrid runs for it.
fn time_xargs(
    bin: &Path,
    base: &Path,
    scenario: Scenario,
    tasks: usize,
) -> anyhow::Result<(Duration, tempfile::TempDir)> {
    let (dir, repo) = fresh_repo(base)?;
    let input = dir.path().join("tasks.txt");
    let lines: String = (1..=tasks).map(|i| format!("{i}\n")).collect();
    std::fs::write(&input, lines)?;
    let mut xargs = command("xargs");
    xargs.arg(format!("-P{CONCURRENCY}")).args(["-I{}"]);
    // Held until the timing ends: it owns the control socket the sandbox exposes.
    let _baseline = match scenario {
        Scenario::Plain => {
            xargs.arg("true");
            None
        }
        Scenario::Sandboxed => {
            // The same project as agentgrid's side, so that the sandbox sees the same files.
            init_project(bin, &repo, scenario)?;
            let baseline = Baseline::prepare(bin, &repo)?;
            baseline.check_confined()?;
            xargs
                .arg(&baseline.helper)
                .args(&baseline.args)
                .env_clear()
                .envs(baseline.env.iter().map(|(k, v)| (k, v)));
            Some(baseline)
        }
        Scenario::Worktrees => {
            // agentgrid keeps its worktrees inside the repository and excludes them from it.
            std::fs::write(repo.join(".git/info/exclude"), "/.worktrees/\n")?;
            let script = dir.path().join("task.sh");
            std::fs::write(&script, WORKTREE_SCRIPT)?;
            xargs.arg("sh").arg(&script).arg("{}");
            None
        }
    };
    let started = Instant::now();
    let out = xargs
        .current_dir(&repo)
        .stdin(std::fs::File::open(&input)?)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("cannot start xargs")?;
    let elapsed = started.elapsed();
    ensure!(
        out.status.success(),
        "the xargs baseline failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    if scenario.workspaces() {
        let branches = git(
            &repo,
            &[
                "for-each-ref",
                "--format=%(refname)",
                "refs/heads/agentgrid/",
            ],
        )?;
        ensure!(
            branches.lines().count() == tasks,
            "the xargs baseline made {} branches, not {tasks}",
            branches.lines().count()
        );
        check_worktrees_gone(&repo)?;
    }
    Ok((elapsed, dir))
}

/// Both sides remove every worktree they made; only the main one may be left.
fn check_worktrees_gone(repo: &Path) -> anyhow::Result<()> {
    let list = git(repo, &["worktree", "list", "--porcelain"])?;
    let count = list.lines().filter(|l| l.starts_with("worktree ")).count();
    ensure!(
        count == 1,
        "{} worktrees were left behind in {}",
        count.saturating_sub(1),
        repo.display()
    );
    Ok(())
}

fn config_yaml(scenario: Scenario) -> String {
    format!(
        "apiVersion: agentgrid.dev/v1
kind: Config
spec:
  concurrency:
    global: {CONCURRENCY}
  guards:
    # The default runaway guards stop a burst of executions long before a thousand.
    max_new_executions_per_minute: 1000000
    max_executions_per_tree: 1000000
  workspace:
    enabled: {}
",
        scenario.workspaces()
    )
}

/// The no-op agent. Scenarios A and B measure dispatch and workspaces, as they did before
/// executions were sandboxed, so their agent opts out of filesystem and network isolation
/// explicitly; scenario C's agent has the default sandbox.
fn agent_yaml(scenario: Scenario) -> String {
    let (description, sandbox) = if scenario.sandboxed() {
        ("Does nothing and succeeds, in the default sandbox.", "")
    } else {
        (
            "Does nothing and succeeds: measures dispatch overhead.",
            "  sandbox:\n    enabled: false\n",
        )
    };
    format!(
        r#"apiVersion: agentgrid.dev/v1
kind: Agent
metadata:
  name: {agent}
spec:
  description: "{description}"
  runtime:
    type: command
    command: ["true"]
  prompt: "Task {{{{ task.id }}}}: {{{{ task.title }}}}"
  routing:
    default: true
{sandbox}"#,
        agent = sandboxed::AGENT
    )
}

/// The agent manifest of the sandboxed scenario (`true`) or of the others, for tests elsewhere.
#[cfg(test)]
pub fn agent_yaml_for_tests(sandboxed: bool) -> String {
    agent_yaml(if sandboxed {
        Scenario::Sandboxed
    } else {
        Scenario::Plain
    })
}

/// One task of scenario B's baseline, given its number: agentgrid's worktree path in git
/// terms. Two `git worktree add` runs at once can, rarely, trip over each other's records;
/// agentgrid retries once in that case, and so does this script.
const WORKTREE_SCRIPT: &str = r#"set -e
id=$1
path=".worktrees/task-$id"
git worktree add -q -b "agentgrid/task-$id" "$path" HEAD ||
    git worktree add -q "$path" "agentgrid/task-$id"
(cd "$path" && true)
git -C "$path" add -A
git -C "$path" diff --cached --quiet || git -C "$path" commit -q --no-verify -m "task $id"
git worktree remove "$path" || git worktree remove "$path"
"#;

/// A command with none of the caller's agentgrid or git overrides in its environment.
pub(crate) fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for var in [
        "AGENTGRID_PROJECT",
        "AGENTGRID_LOG",
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

pub(crate) fn git(repo: &Path, args: &[&str]) -> anyhow::Result<String> {
    ok(
        command("git").args(args).current_dir(repo),
        &format!("git {}", args.join(" ")),
    )
}

/// Runs to the end and returns stdout; a failure carries stderr.
pub(crate) fn ok(cmd: &mut Command, what: &str) -> anyhow::Result<String> {
    cmd.stdin(Stdio::null());
    check(
        cmd.output().with_context(|| format!("cannot run {what}"))?,
        what,
    )
}

pub(crate) fn ok_with_input(cmd: &mut Command, what: &str, input: &[u8]) -> anyhow::Result<String> {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {what}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input)?;
    }
    check(child.wait_with_output()?, what)
}

fn check(out: Output, what: &str) -> anyhow::Result<String> {
    ensure!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// What the numbers depend on: cores, CPU, kernel, git, and the file system of the projects.
fn machine(base: &Path) -> Vec<String> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let capture = |program: &str, args: &[&str]| {
        command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into())
    };
    vec![
        format!("machine: {cores} cores, {cpu}"),
        format!("kernel: {}", capture("uname", &["-sr"])),
        format!("git: {}", capture("git", &["--version"])),
        format!(
            "projects in: {} ({})",
            base.display(),
            capture("stat", &["-f", "-c", "%T", &base.display().to_string()])
        ),
    ]
}

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    let n = sorted.len();
    if n == 0 {
        Duration::ZERO
    } else if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_takes_the_middle_or_the_mean_of_the_two_middles() {
        let ms = Duration::from_millis;
        assert_eq!(median(&[ms(5), ms(1), ms(3)]), ms(3));
        assert_eq!(median(&[ms(4), ms(1), ms(2), ms(3)]), ms(2) + ms(1) / 2);
        assert_eq!(median(&[]), Duration::ZERO);
    }

    #[test]
    fn options_default_to_three_runs_and_one_when_quick() {
        let parse =
            |args: &[&str]| Options::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(parse(&[]).unwrap().runs, 3);
        assert_eq!(parse(&["--quick"]).unwrap().runs, 1);
        assert_eq!(parse(&["--quick", "--runs", "4"]).unwrap().runs, 4);
        assert!(parse(&["--runs", "0"]).is_err());
        assert!(parse(&["--fast"]).is_err());
    }

    #[test]
    fn only_selects_parts_and_refuses_unknown_ones() {
        let parse =
            |args: &[&str]| Options::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let all = parse(&[]).unwrap();
        assert!(PARTS.iter().all(|p| all.wants(p)));
        let some = parse(&["--only", "c,gateway"]).unwrap();
        assert!(some.wants("c") && some.wants("gateway"));
        assert!(!some.wants("a") && !some.wants("b"));
        assert!(parse(&["--only", "a,d"]).is_err());
        let ours = parse(&["--only", "restart,memory"]).unwrap();
        assert!(ours.wants("restart") && ours.wants("memory") && !ours.wants("a"));
        assert_eq!(all.requests, 2000);
        assert_eq!(parse(&["--quick"]).unwrap().requests, 200);
        assert_eq!(parse(&["--requests", "50"]).unwrap().requests, 50);
    }

    #[test]
    fn only_scenario_c_keeps_the_default_sandbox() {
        for scenario in Scenario::ALL {
            let yaml = agent_yaml(scenario);
            assert!(yaml.contains("{{ task.id }}"), "{yaml}");
            assert_eq!(
                yaml.contains("enabled: false"),
                !scenario.sandboxed(),
                "{yaml}"
            );
        }
    }
}
