//! `agentgrid demo`: a small real project with real tests and issues, run end to end offline by
//! scripted agents — a planner that splits a big issue, workers that write code (one fails its
//! tests first and is fed back), and a resume that closes the parent.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use domain::{NewTask, TaskState};
use engine::RunMode;
use store::Change;

use super::init::CONFIG_YAML;
use crate::project::{DATABASE, Project, STATE_DIR};
use crate::user_error;

pub(super) const RUN_TESTS: &str = r#""""Runs the test suite and prints the summary line validators read: `N passed, M failed`."""
import sys
import unittest

suite = unittest.defaultTestLoader.discover("tests")
result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
failed = len(result.failures) + len(result.errors)
print(f"{result.testsRun - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
"#;

pub(super) const TEXTKIT_INIT: &str = r#""""textkit: small text utilities."""


def slugify(text):
    """Turns a title into a URL slug."""
    return "-".join(text.split())
"#;

pub(super) const TEST_SLUGIFY: &str = r#"import unittest

from textkit import slugify


class SlugifyTest(unittest.TestCase):
    def test_spaces_become_dashes(self):
        self.assertEqual(slugify("a b  c"), "a-b-c")
"#;

/// The scripted worker: writes the code for the task's label. For `demo:slugify` its first
/// iteration gets the fix wrong on purpose, so validation fails and feeds back.
const WORKER_SH: &str = r#"#!/bin/sh
set -eu
labels="$1"
echo "worker: task $AGENTGRID_TASK_ID iteration $AGENTGRID_ITERATION labels [$labels]"
case "$labels" in
*demo:wordcount*)
  # The code state of the review workflow: a first version with a real bug (words split on
  # single spaces), the fix once QA's findings are in the prompt, and an answer to a person's
  # feedback with a test.
  if [ ! -f textkit/wordcount.py ]; then
    echo "worker: first version of word_count, splitting on spaces"
    cat > textkit/wordcount.py <<'EOF'
def word_count(text):
    """Counts the words of a text."""
    return len(text.split(" ")) if text else 0
EOF
  elif grep -q "^bugs = [1-9]" "$AGENTGRID_PROMPT_FILE"; then
    echo "worker: QA sent the work back; its findings are in the prompt:"
    grep -e "^bugs = " -e "^findings = " "$AGENTGRID_PROMPT_FILE" | sed 's/^/worker:   /'
    echo "worker: fixing word_count to split on runs of whitespace"
    cat > textkit/wordcount.py <<'EOF'
def word_count(text):
    """Counts whitespace-separated words."""
    return len(text.split())
EOF
  fi
  if grep -q "^Feedback from " "$AGENTGRID_PROMPT_FILE"; then
    # Sent back by a person: their words are in the prompt; answer them with a test.
    echo "worker: a person sent the work back:"
    sed -n '/^Feedback from /,/^$/p' "$AGENTGRID_PROMPT_FILE" | sed 's/^/worker:   /'
    cat > tests/test_wordcount_spacing.py <<'EOF'
import unittest

from textkit.wordcount import word_count


class WordCountSpacingTest(unittest.TestCase):
    def test_tabs_and_newlines_separate_words(self):
        self.assertEqual(word_count("one\ttwo\nthree"), 3)
EOF
  fi
  cat > tests/test_wordcount.py <<'EOF'
import unittest

from textkit.wordcount import word_count


class WordCountTest(unittest.TestCase):
    def test_counts_words(self):
        self.assertEqual(word_count("one two three"), 3)

    def test_empty_text_has_no_words(self):
        self.assertEqual(word_count(""), 0)
EOF
  ;;
*demo:linecount*)
  cat > textkit/linecount.py <<'EOF'
def line_count(text):
    """Counts lines; a trailing newline does not start a new one."""
    return len(text.splitlines())
EOF
  cat > tests/test_linecount.py <<'EOF'
import unittest

from textkit.linecount import line_count


class LineCountTest(unittest.TestCase):
    def test_counts_lines(self):
        self.assertEqual(line_count("a\nb\nc\n"), 3)
EOF
  ;;
*demo:report*)
  cat > textkit/report.py <<'EOF'
from textkit.linecount import line_count


def report(text):
    """A one-line summary of a text."""
    return f"{line_count(text)} lines, {len(text)} characters"
EOF
  cat > tests/test_report.py <<'EOF'
import unittest

from textkit.report import report


class ReportTest(unittest.TestCase):
    def test_reports_lines_and_characters(self):
        self.assertEqual(report("ab\ncd\n"), "2 lines, 6 characters")
EOF
  ;;
*demo:slugify*)
  cat > tests/test_slugify_case.py <<'EOF'
import unittest

from textkit import slugify


class SlugifyCaseTest(unittest.TestCase):
    def test_slugs_are_lowercase(self):
        self.assertEqual(slugify("Hello Big World"), "hello-big-world")
EOF
  if [ "$AGENTGRID_ITERATION" = 1 ]; then
    echo "worker: first try lowercases only the first letter"
    python3 - <<'EOF'
import re
path = "textkit/__init__.py"
src = open(path).read()
src = src.replace('return "-".join(text.split())', 'return "-".join(text.split())[:1].lower() + "-".join(text.split())[1:]')
open(path, "w").write(src)
EOF
  else
    echo "worker: feedback received, fixing properly"
    grep -q "slugs_are_lowercase" "$AGENTGRID_PROMPT_FILE" && echo "worker: the prompt carried the failing test"
    cat > textkit/__init__.py <<'EOF'
"""textkit: small text utilities."""


def slugify(text):
    """Turns a title into a lowercase URL slug."""
    return "-".join(text.lower().split())
EOF
  fi
  ;;
*)
  echo "worker: nothing scripted for [$labels]" >&2
  exit 1
  ;;
esac
agentgrid ctl complete --summary "implemented [$labels]" >/dev/null
"#;

/// The scripted planner: splits an epic into two sub-tasks (the second waits for the first);
/// on resume, checks the sub-tasks and closes the parent.
const PLANNER_SH: &str = r#"#!/bin/sh
set -eu
if [ "$AGENTGRID_EXECUTION_KIND" = "work" ]; then
  echo "planner: task $AGENTGRID_TASK_ID is too big for one execution; splitting it"
  first=$(agentgrid ctl subtask create "Add line count" --label demo:linecount --body "textkit.linecount.line_count(text)")
  second=$(agentgrid ctl subtask create "Add report()" --label demo:report --blocked-by "$first" --body "textkit.report.report(text) using line_count")
  echo "planner: created sub-tasks #$first and #$second"
else
  echo "planner: resuming task $AGENTGRID_TASK_ID"
  agentgrid ctl status | python3 -c '
import json, sys
status = json.load(sys.stdin)
states = [c["state"] for c in status["children"]]
print("planner: sub-task states:", ", ".join(states))
sys.exit(0 if all(s == "done" for s in states) else 1)
'
  python3 run_tests.py > /dev/null
  agentgrid ctl complete --summary "both sub-tasks are done and the merged branch passes its tests" >/dev/null
  echo "planner: closed the parent"
fi
"#;

/// The scripted QA agent of the review workflow: tests the edge cases the coder's tests leave
/// out, and records what it found on the workflow's blackboard, where the code state's next
/// prompt reads it. Its score (the share of the suite that passes) decides where the run goes.
const TESTER_SH: &str = r#"#!/bin/sh
set -eu
echo "tester: QA of task $AGENTGRID_TASK_ID: testing runs of spaces and spaces at the ends"
cat > tests/test_wordcount_qa.py <<'EOF'
import unittest

from textkit.wordcount import word_count


class WordCountQaTest(unittest.TestCase):
    def test_runs_of_spaces_separate_one_word_from_the_next(self):
        self.assertEqual(word_count("one two  three"), 3)

    def test_spaces_at_the_ends_are_no_words(self):
        self.assertEqual(word_count("  one "), 1)
EOF
if out=$(python3 run_tests.py 2>&1); then
  echo "tester: $(echo "$out" | tail -n 1): no bugs"
  agentgrid ctl blackboard set bugs 0 >/dev/null
  agentgrid ctl blackboard set findings "none: every test passes" >/dev/null
  agentgrid ctl complete --summary "QA found no bugs: $(echo "$out" | tail -n 1)" >/dev/null
else
  bugs=$(echo "$out" | grep -c '^FAIL: ' || true)
  findings=$(python3 -c '
from textkit.wordcount import word_count as w
a, b = "one two  three", "  one "
print(f"word_count({a!r}) gave {w(a)}, expected 3; word_count({b!r}) gave {w(b)}, expected 1: "
      "split on runs of whitespace")
')
  echo "tester: $(echo "$out" | tail -n 1): $bugs bugs, sending the work back"
  echo "tester:   $findings"
  agentgrid ctl blackboard set bugs "$bugs" >/dev/null
  agentgrid ctl blackboard set findings "$findings" >/dev/null
  agentgrid ctl complete --summary "QA found $bugs bugs: $findings" >/dev/null
fi
"#;

/// The label of the demo's task that waits for a person's approval before it lands: with the
/// scripted agents it starts the review workflow, with the built-in agent the approval policy
/// asks for it.
const REVIEW_LABEL: &str = "review";

/// The demo's review workflow: the example workflow with the demo's agents and test command.
fn review_workflow() -> String {
    manifest::EXAMPLE_WORKFLOW
        .replace("agent: coder", "agent: worker")
        .replace("run: [make, test]", "run: [python3, run_tests.py]")
        .replace("labels: [reviewed]", &format!("labels: [{REVIEW_LABEL}]"))
}

fn tester_yaml(runtime: &str) -> String {
    format!(
        r#"apiVersion: agentgrid.dev/v1
kind: Agent
metadata:
  name: tester
spec:
  description: QA that tests edge cases and records the bugs it finds on the workflow's blackboard.
{runtime}  prompt: "QA task #{{{{ task.id }}}}: {{{{ task.title }}}}"
  # Only the workflow's `qa` state runs it: no demo task has this label.
  routing:
    labels: [qa]
  limits:
    timeout: 2m
    stall_timeout: 1m
    max_iterations: 1
    max_attempts: 1
  validation:
    # QA's score is the share of the suite that passes; the workflow, not the threshold,
    # decides what a low one means.
    threshold: 0.0
    validators:
      - name: tests
        run: "python3 run_tests.py 2>&1"
        score: passed-failed
        score_only: true
        timeout: 1m
"#,
    )
}

/// The scripted agents live in the demo repository itself, as a project's own agent tooling
/// would, so every worktree has them and the sandbox needs no exception to reach them.
pub(super) const SCRIPTS_DIR: &str = "agent-scripts";

/// Which agents the demo runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoAgents {
    /// Shell scripts that play the agents.
    Scripted,
    /// The built-in agent, against a scripted model served by the demo itself.
    Builtin,
}

fn worker_runtime(script: &str) -> String {
    format!(
        "  runtime:\n    type: command\n    command: [\"sh\", \"{script}\", \"{{{{ task.labels | join(',') }}}}\"]\n"
    )
}

fn planner_runtime(script: &str) -> String {
    format!("  runtime:\n    type: command\n    command: [\"sh\", \"{script}\"]\n")
}

fn worker_yaml(runtime: &str) -> String {
    format!(
        r#"apiVersion: agentgrid.dev/v1
kind: Agent
metadata:
  name: worker
spec:
  description: Worker that writes code for demo tasks.
{runtime}  prompt: |
    Task #{{{{ task.id }}}}: {{{{ task.title }}}}
    {{% if feedback %}}Feedback on the work so far:
    {{{{ feedback }}}}

    {{% endif %}}{{% if workflow and workflow.blackboard %}}What the workflow's blackboard holds:
    {{{{ workflow.blackboard }}}}
    {{% endif %}}
  routing:
    default: true
  limits:
    timeout: 2m
    stall_timeout: 1m
    max_iterations: 3
    max_attempts: 2
  validation:
    threshold: 1.0
    validators:
      - name: tests
        run: "python3 run_tests.py 2>&1"
        score: passed-failed
        timeout: 1m
"#,
    )
}

fn planner_yaml(runtime: &str) -> String {
    format!(
        r#"apiVersion: agentgrid.dev/v1
kind: Agent
metadata:
  name: planner
spec:
  description: Planner that splits epics and closes them when their sub-tasks are done.
{runtime}  prompt: "Plan task #{{{{ task.id }}}}: {{{{ task.title }}}}"
  routing:
    labels: [epic]
  limits:
    timeout: 2m
    stall_timeout: 1m
"#,
    )
}

pub async fn demo(dir: Option<PathBuf>, agents: DemoAgents) -> anyhow::Result<u8> {
    let started = Instant::now();
    let (root, _temp) = demo_dir(dir)?;
    outln!("demo project: {}", root.display());
    // The built-in agent's model: served here, for as long as the demo runs.
    let fixture = match agents {
        DemoAgents::Scripted => None,
        DemoAgents::Builtin => Some(
            modelfixture::spawn_with(
                super::demo_builtin::script(),
                modelfixture::FixtureOptions {
                    api_key: Some(super::demo_builtin::KEY.into()),
                    port: 0,
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("cannot start the demo's scripted model: {e}"))?,
        ),
    };
    let origin = fixture
        .as_ref()
        .map(|f| f.base_url().trim_end_matches("/v1").to_string());
    build_project(&root, origin.as_deref()).await?;
    let project = Project {
        root: root.clone(),
        state_dir: root.join(STATE_DIR),
    };
    let store = project.store().await?;
    let now = domain::Clock::now(&domain::SystemClock);
    let task = |title: &str, body: &str, labels: &[&str]| {
        let mut t = NewTask::titled(title);
        t.body = body.into();
        t.labels = labels.iter().map(|l| l.to_string()).collect();
        Change::CreateTask(t)
    };
    let word_count = &["demo:wordcount", REVIEW_LABEL];
    let labels: Vec<String> = word_count.iter().map(|l| l.to_string()).collect();
    // The review workflow starts by its label, in the batch that files the task.
    let review = super::workflow::by_label(&project, &labels)
        .map(|(name, definition)| Change::StartWorkflowOnNewest { name, definition });
    store
        .apply(
            "demo",
            now,
            [task(
                "Add word count",
                "textkit.wordcount.word_count(text) with tests",
                word_count,
            )]
            .into_iter()
            .chain(review)
            .chain([
                task(
                    "Slugs must be lowercase",
                    "slugify(\"Hello World\") should give hello-world",
                    &["demo:slugify"],
                ),
                task(
                    "Text report",
                    "Line count plus a report() that uses it. Too big for one go.",
                    &["epic"],
                ),
            ])
            .collect(),
        )
        .await?;
    outln!("3 issues filed; running the agents\n");
    let (summary, run_store) = super::run::run_engine_with(
        &project,
        RunMode::UntilIdle,
        true,
        super::run_status::Mode::Off,
        |setup| {
            if fixture.is_some() {
                super::demo_builtin::give_key(setup);
            }
        },
    )
    .await?;
    let code = super::run::print_summary(&*run_store, &summary, false).await?;
    print_workflows(&*store).await?;
    let tasks = store.tasks(&store::TaskFilter::default()).await?;
    let all_done = tasks.iter().all(|t| t.state == TaskState::Done);
    outln!(
        "\ndemo finished in {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        if all_done {
            "every issue is done, each proven by its tests"
        } else {
            "some issues did not finish (see above)"
        }
    );
    let pending = store::ApprovalFilter {
        state: Some(domain::ApprovalState::Pending),
        task: None,
        limit: None,
    };
    let waiting = match store.approvals(&pending).await?.len() {
        0 => None,
        1 => Some("an approval waits".to_string()),
        n => Some(format!("{n} approvals wait")),
    };
    if _temp.is_none() {
        outln!(
            "inspect it: cd {} && agentgrid task list && git branch --list 'agentgrid/*'",
            root.display()
        );
        if let Some(waiting) = &waiting {
            outln!(
                "{waiting} for you; approving lands the work on main, rejecting \
                 sends it back with your feedback:\n  cd {} && agentgrid approvals",
                root.display()
            );
        }
    } else if let Some(waiting) = &waiting {
        outln!(
            "{waiting} for a person; to decide it, keep the project with \
             `agentgrid demo --dir DIR`, then: cd DIR && agentgrid approvals"
        );
    }
    Ok(if all_done && code == crate::exit::OK {
        crate::exit::OK
    } else {
        crate::exit::FAILED
    })
}

/// The demo's directory: `dir` when given (new or empty, kept), else a temporary one removed
/// when the returned guard drops.
pub(super) fn demo_dir(dir: Option<PathBuf>) -> anyhow::Result<(PathBuf, Option<TempDir>)> {
    Ok(match dir {
        Some(d) => {
            if d.exists() && std::fs::read_dir(&d)?.next().is_some() {
                return Err(user_error(format!(
                    "{} is not empty: give `agentgrid demo --dir` a new or empty directory",
                    d.display()
                )));
            }
            std::fs::create_dir_all(&d)?;
            (d.canonicalize()?, None)
        }
        None => {
            let t = std::env::temp_dir().join(format!("agentgrid-demo-{}", std::process::id()));
            std::fs::create_dir_all(&t)?;
            (t.clone(), Some(TempDir(t)))
        }
    })
}

/// The way each workflow run went: the states it entered in order, and what its agents wrote
/// on its blackboard on the way (QA's bugs), so the review loop reads at a glance.
async fn print_workflows(store: &dyn store::Store) -> anyhow::Result<()> {
    let all = store::WorkflowFilter {
        task: None,
        running: false,
    };
    for run in store.workflow_runs(&all).await? {
        let history = &run.instance.history;
        let path: Vec<&str> = history
            .iter()
            .filter(|e| e.note == "entered")
            .map(|e| e.state.as_str())
            .collect();
        outln!(
            "\nworkflow run W{} of `{}` on #{}: {} ({})",
            run.id,
            run.name,
            run.task_id,
            path.join(" → "),
            run.instance.status.as_str()
        );
        for entry in history.iter().filter(|e| e.note.starts_with("set ")) {
            outln!(
                "  {} (visit {}) wrote {}",
                entry.state,
                entry.visit,
                domain::text::one_line(entry.note.trim_start_matches("set "))
            );
        }
    }
    Ok(())
}

/// Removes the temporary demo directory when the demo ends.
pub(super) struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes the demo repository; with `model` (the scripted model's origin) its agents are the
/// built-in agent instead of the shell scripts.
async fn build_project(root: &Path, model: Option<&str>) -> anyhow::Result<()> {
    std::fs::create_dir_all(root.join("textkit"))?;
    std::fs::create_dir_all(root.join("tests"))?;
    std::fs::write(root.join("run_tests.py"), RUN_TESTS)?;
    std::fs::write(root.join("textkit/__init__.py"), TEXTKIT_INIT)?;
    std::fs::write(root.join("tests/__init__.py"), "")?;
    std::fs::write(root.join("tests/test_slugify.py"), TEST_SLUGIFY)?;
    std::fs::write(root.join(".gitignore"), "__pycache__/\n")?;
    std::fs::write(
        root.join("README.md"),
        "# textkit\n\nA tiny library the agentgrid demo works on. Tests: `python3 run_tests.py`.\n",
    )?;
    if model.is_none() {
        std::fs::create_dir_all(root.join(SCRIPTS_DIR))?;
        std::fs::write(root.join(SCRIPTS_DIR).join("worker.sh"), WORKER_SH)?;
        std::fs::write(root.join(SCRIPTS_DIR).join("planner.sh"), PLANNER_SH)?;
        std::fs::write(root.join(SCRIPTS_DIR).join("tester.sh"), TESTER_SH)?;
    }
    git(root, &["init", "-q", "-b", "main"]).await?;
    git(root, &["add", "-A"]).await?;
    git(root, &["commit", "-q", "-m", "textkit: first version"]).await?;

    let state = root.join(STATE_DIR);
    std::fs::create_dir_all(state.join("agents"))?;
    std::fs::write(state.join(".gitignore"), "*\n")?;
    let config = CONFIG_YAML
        .replace("base_delay: 10s", "base_delay: 1s")
        .replace("delay: 1s\n    max: 3", "delay: 200ms\n    max: 3");
    let (config, worker, planner) = match model {
        None => (
            config,
            worker_runtime(&format!("{SCRIPTS_DIR}/worker.sh")),
            planner_runtime(&format!("{SCRIPTS_DIR}/planner.sh")),
        ),
        Some(origin) => (
            super::demo_builtin::config(&config, origin),
            super::demo_builtin::runtime_yaml(),
            super::demo_builtin::runtime_yaml(),
        ),
    };
    std::fs::write(state.join("agents/worker.yaml"), worker_yaml(&worker))?;
    std::fs::write(state.join("agents/planner.yaml"), planner_yaml(&planner))?;
    let config = match model {
        // The word count runs the review workflow: code, QA until clean, the suite, a
        // person's approval, then the land.
        None => {
            std::fs::create_dir_all(state.join("workflows"))?;
            std::fs::write(state.join("workflows/review.yaml"), review_workflow())?;
            let tester = planner_runtime(&format!("{SCRIPTS_DIR}/tester.sh"));
            std::fs::write(state.join("agents/tester.yaml"), tester_yaml(&tester))?;
            config
        }
        // The built-in agent's model is scripted for one execution per task, so there the
        // word count only waits for a person, and their approval lands it.
        Some(_) => {
            format!("{config}  approvals: {{require_labels: [{REVIEW_LABEL}], land_after: true}}\n")
        }
    };
    std::fs::write(state.join("config.yaml"), config)?;
    store::SqliteStore::open(&state.join(DATABASE))?;
    manifest::load_project(&state)
        .map_err(|d| anyhow::anyhow!("the demo's own manifests are invalid:\n{d}"))?;
    Ok(())
}

pub(super) async fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let spec = launch::LaunchSpec::new("git", dir)
        .args(args.iter().copied())
        .with_env("GIT_AUTHOR_NAME", "agentgrid demo")
        .with_env("GIT_AUTHOR_EMAIL", "demo@agentgrid.invalid")
        .with_env("GIT_COMMITTER_NAME", "agentgrid demo")
        .with_env("GIT_COMMITTER_EMAIL", "demo@agentgrid.invalid");
    let out = launch::run(spec, Duration::from_secs(60), 64 * 1024).await?;
    if !out.success() {
        anyhow::bail!("git {} failed: {}", args.join(" "), out.combined());
    }
    Ok(())
}
