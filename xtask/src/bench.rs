//! `cargo xtask bench`: the time agentgrid takes to run no-op executions, against the time
//! `xargs -P2` takes to run the same commands, measured in the same run on the same machine.
//!
//! Two scenarios, each with fresh temporary projects for every run:
//! - A: 1,000 tasks for an agent whose command is `true`, workspaces off. The baseline is
//!   `xargs -P2` running `true` 1,000 times. What is left is agentgrid's own cost per execution:
//!   the scheduler, the durable store, the control socket, process setup and reaping.
//! - B: 200 such tasks with a git worktree each. The baseline runs, per task, what agentgrid's
//!   worktree path amounts to in git terms: `git worktree add -b`, `true` inside, `git add -A`
//!   and a commit if anything changed, `git worktree remove`.
//!
//! Each side runs `--runs` times, alternating, and the median counts. Timing covers the whole
//! `agentgrid run --quiet` process (start-up, recovery, the closing summary) and the whole
//! `xargs` process; setting up the project and checking the result afterwards are not timed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

/// Executions at once, on both sides.
const CONCURRENCY: u32 = 2;
/// Scenario A passes when agentgrid takes at most this many times the xargs time.
const TARGET_RATIO: f64 = 1.5;

/// The bench's command-line options.
#[derive(Debug)]
pub struct Options {
    quick: bool,
    runs: usize,
    dir: Option<PathBuf>,
    check: bool,
    /// A binary to measure instead of building the workspace's, e.g. an older build.
    agentgrid: Option<PathBuf>,
}

impl Options {
    pub fn parse(args: &[String]) -> anyhow::Result<Options> {
        let mut options = Options {
            quick: false,
            runs: 0,
            dir: None,
            check: false,
            agentgrid: None,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => options.quick = true,
                "--check" => options.check = true,
                "--runs" => {
                    let value = args
                        .next()
                        .context("--runs needs a number, e.g. --runs 5")?;
                    options.runs =
                        value.parse().ok().filter(|n| *n > 0).with_context(|| {
                            format!("--runs {value}: give a whole number above 0")
                        })?;
                }
                "--dir" => {
                    let value = args.next().context("--dir needs a directory")?;
                    options.dir = Some(PathBuf::from(value));
                }
                "--agentgrid" => {
                    let value = args
                        .next()
                        .context("--agentgrid needs the path of a binary")?;
                    options.agentgrid = Some(PathBuf::from(value));
                }
                other => bail!("unknown bench option `{other}`: see `cargo xtask help`"),
            }
        }
        if options.runs == 0 {
            options.runs = if options.quick { 1 } else { 3 };
        }
        Ok(options)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// A: no workspace.
    Plain,
    /// B: a git worktree per task.
    Worktrees,
}

impl Scenario {
    const ALL: [Scenario; 2] = [Scenario::Plain, Scenario::Worktrees];

    fn name(self) -> &'static str {
        match self {
            Scenario::Plain => "A  no-op, no workspace",
            Scenario::Worktrees => "B  no-op, git worktree",
        }
    }

    fn tasks(self, quick: bool) -> usize {
        match (self, quick) {
            (Scenario::Plain, false) => 1000,
            (Scenario::Worktrees, false) => 200,
            (Scenario::Plain, true) => 100,
            (Scenario::Worktrees, true) => 20,
        }
    }

    fn workspaces(self) -> bool {
        self == Scenario::Worktrees
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

/// Runs the bench; returns false when `--check` was given and scenario A missed its target.
pub fn run(options: Options) -> anyhow::Result<bool> {
    for tool in ["git", "xargs", "sh", "true"] {
        which(tool).with_context(|| format!("the bench needs `{tool}` on PATH"))?;
    }
    let bin = match &options.agentgrid {
        Some(path) => path
            .canonicalize()
            .with_context(|| format!("--agentgrid {}: no such binary", path.display()))?,
        None => build_agentgrid()?,
    };
    let base = match &options.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir(),
    };
    std::fs::create_dir_all(&base)
        .with_context(|| format!("cannot create the bench directory {}", base.display()))?;

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
    for scenario in Scenario::ALL {
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
            let (theirs, dir) = time_xargs(&base, scenario, tasks)?;
            keep.push(dir);
            println!(
                "{}  run {run}/{}: agentgrid {}, xargs -P{CONCURRENCY} {}",
                scenario.name(),
                options.runs,
                seconds(ours),
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
    let a = &rows[0];
    let met = a.ratio() <= TARGET_RATIO;
    println!();
    if met {
        println!(
            "target met: scenario A takes {:.2}x the xargs time (target: at most {TARGET_RATIO:.1}x)",
            a.ratio()
        );
    } else {
        println!(
            "target MISSED: scenario A takes {:.2}x the xargs time (target: at most {TARGET_RATIO:.1}x), {:.0}% over",
            a.ratio(),
            (a.ratio() / TARGET_RATIO - 1.0) * 100.0
        );
    }
    if options.quick {
        println!("(--quick: too few tasks for numbers worth recording)");
    }
    Ok(met || !options.check)
}

fn print_table(rows: &[Row]) {
    let header = [
        "scenario",
        "tasks",
        "agentgrid",
        "xargs -P2",
        "ratio",
        "per task (agentgrid - xargs)",
    ];
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
                seconds(theirs),
                format!("{:.2}x", r.ratio()),
                format!("{:+.2} ms", extra * 1000.0 / r.tasks as f64),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &body {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i == 0 {
                out.push_str(&format!("{cell:<w$}"));
            } else {
                out.push_str(&format!("  {cell:>w$}"));
            }
        }
        println!("{out}");
    };
    line(header);
    for row in &body {
        line(row.each_ref().map(String::as_str));
    }
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

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A fresh directory holding `repo/`, a git repository with one commit.
fn fresh_repo(base: &Path) -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
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
    ok(
        command(bin).arg("init").current_dir(&repo),
        "agentgrid init",
    )?;
    let state = repo.join(".agentgrid");
    for entry in std::fs::read_dir(state.join("agents"))? {
        std::fs::remove_file(entry?.path())?;
    }
    std::fs::write(state.join("config.yaml"), config_yaml(scenario))?;
    std::fs::write(state.join("agents/noop.yaml"), AGENT_YAML)?;
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

/// Times `xargs -P2` running, per task, what agentgrid runs for it.
fn time_xargs(
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
    match scenario {
        Scenario::Plain => {
            xargs.arg("true");
        }
        Scenario::Worktrees => {
            // agentgrid keeps its worktrees inside the repository and excludes them from it.
            std::fs::write(repo.join(".git/info/exclude"), "/.worktrees/\n")?;
            let script = dir.path().join("task.sh");
            std::fs::write(&script, WORKTREE_SCRIPT)?;
            xargs.arg("sh").arg(&script).arg("{}");
        }
    }
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

const AGENT_YAML: &str = r#"apiVersion: agentgrid.dev/v1
kind: Agent
metadata:
  name: noop
spec:
  description: "Does nothing and succeeds: measures dispatch overhead."
  runtime:
    type: command
    command: ["true"]
  prompt: "Task {{ task.id }}: {{ task.title }}"
  routing:
    default: true
"#;

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
fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
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

fn git(repo: &Path, args: &[&str]) -> anyhow::Result<String> {
    ok(
        command("git").args(args).current_dir(repo),
        &format!("git {}", args.join(" ")),
    )
}

/// Runs to the end and returns stdout; a failure carries stderr.
fn ok(cmd: &mut Command, what: &str) -> anyhow::Result<String> {
    cmd.stdin(Stdio::null());
    check(
        cmd.output().with_context(|| format!("cannot run {what}"))?,
        what,
    )
}

fn ok_with_input(cmd: &mut Command, what: &str, input: &[u8]) -> anyhow::Result<String> {
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
}
