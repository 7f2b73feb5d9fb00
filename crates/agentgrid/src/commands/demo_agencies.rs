//! `agentgrid demo --agencies`: the textkit project worked by a Code and a QA agency of
//! scripted agents — routing by label, a Code → QA handoff, QA's bugs handed back, an
//! escalation sent up by Code's coordinator and answered by the demo's scripted person, that
//! person's approval landing the work, and the agency metrics — offline, end to end.

use std::path::{Path, PathBuf};
use std::time::Instant;

use app::{Actor, AnswerEscalation, EscalationList, LandAfter};
use domain::{ApprovalState, Decision, EventKind, NewTask, Receiver, TaskState};
use engine::RunMode;
use store::Change;

use super::demo::{RUN_TESTS, SCRIPTS_DIR, TEST_SLUGIFY, TEXTKIT_INIT, demo_dir, git};
use crate::project::{DATABASE, Project, STATE_DIR};

/// The label that routes a task to the Code agency.
const CODE_LABEL: &str = "code";
/// The label that routes a task to the QA agency.
const QA_LABEL: &str = "qa";
/// The label whose done work waits for a person's approval (`approvals.require_labels`).
const REVIEW_LABEL: &str = "review";
/// What the demo's scripted person answers to an escalation.
const ANSWER: &str = "Yes: tabs and newlines separate words too, as str.split() does";
/// Engine passes at most: each ends when nothing is left to run, and the person acts between
/// them. Two are enough (before and after the answer); the bound keeps a broken run finite.
const MAX_PASSES: usize = 4;

/// Code's developer: writes a first version with a bug and hands it to QA; with QA's bugs
/// back (BUGS.md in its branch) it asks whether tabs count as separators and waits; with the
/// answer in its inbox it fixes the bug and completes, its validator (the suite) deciding.
const DEVELOPER_SH: &str = r#"#!/bin/sh
set -eu
echo "developer: task $AGENTGRID_TASK_ID execution $AGENTGRID_EXECUTION_ID"
if [ ! -f BUGS.md ]; then
  echo "developer: first version of word_count, splitting on single spaces"
  cat > textkit/wordcount.py <<'EOF'
def word_count(text):
    """Counts the words of a text."""
    return len(text.split(" ")) if text else 0
EOF
  cat > tests/test_wordcount.py <<'EOF'
import unittest

from textkit.wordcount import word_count


class WordCountTest(unittest.TestCase):
    def test_counts_words(self):
        self.assertEqual(word_count("one two three"), 3)

    def test_empty_text_has_no_words(self):
        self.assertEqual(word_count(""), 0)
EOF
  agentgrid ctl handoff --to qa/tester --summary "word_count is written: test it" \
    --artifact textkit/wordcount.py >/dev/null
  echo "developer: handed off to qa/tester"
  exit 0
fi
echo "developer: QA handed the work back with its bugs:"
sed 's/^/developer:   /' BUGS.md
if ! grep -q "ANSWER from" "$AGENTGRID_PROMPT_FILE"; then
  echo "developer: escalating a question before fixing"
  agentgrid ctl escalate --severity normal \
    "Should tabs and newlines separate words too, or only spaces?" >/dev/null
  agentgrid ctl block --reason "waiting for an answer on tabs and newlines" >/dev/null
  exit 0
fi
echo "developer: the answer is in the inbox:"
grep "ANSWER from" "$AGENTGRID_PROMPT_FILE" | sed 's/^/developer:   /'
cat > textkit/wordcount.py <<'EOF'
def word_count(text):
    """Counts whitespace-separated words: spaces, tabs and newlines."""
    return len(text.split())
EOF
cat > tests/test_wordcount_spacing.py <<'EOF'
import unittest

from textkit.wordcount import word_count


class WordCountSpacingTest(unittest.TestCase):
    def test_tabs_and_newlines_separate_words(self):
        self.assertEqual(word_count("one\ttwo\nthree"), 3)
EOF
rm -f BUGS.md
agentgrid ctl complete --summary "word_count splits on runs of whitespace: QA's bugs are fixed" >/dev/null
echo "developer: fixed and completed"
"#;

/// QA's tester: on its own task (label `qa`) it adds tests and completes; on work handed to
/// it by Code it tests the edge cases, and hands the bugs it finds back in BUGS.md.
const TESTER_SH: &str = r#"#!/bin/sh
set -eu
labels="$1"
echo "tester: task $AGENTGRID_TASK_ID execution $AGENTGRID_EXECUTION_ID labels [$labels]"
case ",$labels," in
*,qa,*)
  cat > tests/test_slugify_empty.py <<'EOF'
import unittest

from textkit import slugify


class SlugifyEmptyTest(unittest.TestCase):
    def test_empty_and_blank_titles_give_empty_slugs(self):
        self.assertEqual(slugify(""), "")
        self.assertEqual(slugify("   "), "")
EOF
  echo "tester: slugify's empty titles are covered"
  agentgrid ctl complete --summary "tests for empty and blank titles" >/dev/null
  exit 0
  ;;
esac
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
  echo "tester: every test passes; nothing to send back" >&2
  exit 1
fi
bugs=$(echo "$out" | grep -c '^FAIL: ' || true)
{
  echo "$bugs bugs in word_count:"
  echo "- word_count('one two  three') must be 3: runs of spaces are one separator"
  echo "- word_count('  one ') must be 1: spaces at the ends are no words"
} > BUGS.md
echo "tester: $(echo "$out" | tail -n 1): handing $bugs bugs back to code"
agentgrid ctl handoff --to code --summary "$bugs bugs found: see BUGS.md" --artifact BUGS.md >/dev/null
"#;

/// Code's coordinator: woken for a specialist's escalation, it finds it a product question
/// and sends it up to people.
const CODE_LEAD_SH: &str = r#"#!/bin/sh
set -eu
echo "code-lead: task $AGENTGRID_TASK_ID execution $AGENTGRID_EXECUTION_ID"
for id in $(sed -n 's/^\(M[0-9][0-9]*\) ESCALATION from .*/\1/p' "$AGENTGRID_PROMPT_FILE"); do
  echo "code-lead: $id is a product question; sending it up to people"
  agentgrid ctl escalate --up "$id" "a product decision" >/dev/null
done
agentgrid ctl complete --summary "escalations sent up to people" >/dev/null
"#;

/// QA's coordinator: takes what no tester fits; nothing in the demo does.
const QA_LEAD_SH: &str = r#"#!/bin/sh
set -eu
echo "qa-lead: task $AGENTGRID_TASK_ID has nothing scripted" >&2
exit 1
"#;

fn agent_yaml(name: &str, agency: &str, role: &str, about: &str, validate: bool) -> String {
    let validation = if validate {
        "  validation:\n    threshold: 1.0\n    validators:\n      - name: tests\n        run: \"python3 run_tests.py 2>&1\"\n        score: passed-failed\n        timeout: 1m\n"
    } else {
        ""
    };
    format!(
        r#"apiVersion: agentgrid.dev/v1
kind: Agent
metadata:
  name: {name}
spec:
  description: "{about}"
  agency: {agency}
  role: {role}
  runtime:
    type: command
    command: ["sh", "{SCRIPTS_DIR}/{name}.sh", "{{{{ task.labels | join(',') }}}}"]
  prompt: |
    Task #{{{{ task.id }}}}: {{{{ task.title }}}}
    {{% if handoff %}}{{{{ handoff }}}}
    {{% endif %}}{{% if inbox %}}{{{{ inbox }}}}
    {{% endif %}}
  limits:
    timeout: 2m
    stall_timeout: 1m
    max_iterations: 3
    max_attempts: 2
{validation}"#
    )
}

fn agency_yaml(name: &str, lead: &str, specialist: &str, role: &str, to: &str) -> String {
    format!(
        r#"apiVersion: agentgrid.dev/v1
kind: Agency
metadata: {{name: {name}}}
spec:
  coordinator: {lead}
  specialists: [{{agent: {specialist}, role: {role}, capabilities: [python]}}]
  labels: [{name}]
  policies:
    handoffs: [{{from: {role}, to: [{to}]}}]
"#
    )
}

/// One execution at a time, so that the story reads in order; quick retries; done work with
/// the review label waits for a person, whose approval lands it.
const CONFIG: &str = r#"apiVersion: agentgrid.dev/v1
kind: Config
spec:
  concurrency: {global: 1}
  retry: {base_delay: 1s, max_delay: 5s}
  continuation: {delay: 200ms, max: 3}
  shutdown_grace: 5s
  approvals: {require_labels: [review], land_after: true}
"#;

async fn build_project(root: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(root.join("textkit"))?;
    std::fs::create_dir_all(root.join("tests"))?;
    std::fs::create_dir_all(root.join(SCRIPTS_DIR))?;
    std::fs::write(root.join("run_tests.py"), RUN_TESTS)?;
    std::fs::write(root.join("textkit/__init__.py"), TEXTKIT_INIT)?;
    std::fs::write(root.join("tests/__init__.py"), "")?;
    std::fs::write(root.join("tests/test_slugify.py"), TEST_SLUGIFY)?;
    std::fs::write(root.join(".gitignore"), "__pycache__/\n")?;
    std::fs::write(
        root.join("README.md"),
        "# textkit\n\nA tiny library agentgrid's agencies demo works on. Tests: `python3 run_tests.py`.\n",
    )?;
    for (name, script) in [
        ("developer", DEVELOPER_SH),
        ("tester", TESTER_SH),
        ("code-lead", CODE_LEAD_SH),
        ("qa-lead", QA_LEAD_SH),
    ] {
        std::fs::write(root.join(SCRIPTS_DIR).join(format!("{name}.sh")), script)?;
    }
    git(root, &["init", "-q", "-b", "main"]).await?;
    git(root, &["add", "-A"]).await?;
    git(root, &["commit", "-q", "-m", "textkit: first version"]).await?;

    let state = root.join(STATE_DIR);
    std::fs::create_dir_all(state.join("agents"))?;
    std::fs::create_dir_all(state.join("agencies"))?;
    std::fs::write(state.join(".gitignore"), "*\n")?;
    let agents = [
        (
            "developer",
            "code",
            "developer",
            "Code's developer: writes code, hands it to QA, fixes what QA sends back.",
            true,
        ),
        (
            "code-lead",
            "code",
            "coordinator",
            "Code's coordinator: takes its developer's escalations.",
            false,
        ),
        (
            "tester",
            "qa",
            "tester",
            "QA's tester: tests edge cases and hands the bugs back.",
            true,
        ),
        (
            "qa-lead",
            "qa",
            "coordinator",
            "QA's coordinator: takes what no tester fits.",
            false,
        ),
    ];
    for (name, agency, role, about, validate) in agents {
        std::fs::write(
            state.join(format!("agents/{name}.yaml")),
            agent_yaml(name, agency, role, about, validate),
        )?;
    }
    std::fs::write(
        state.join("agencies/code.yaml"),
        agency_yaml(CODE_LABEL, "code-lead", "developer", "developer", QA_LABEL),
    )?;
    std::fs::write(
        state.join("agencies/qa.yaml"),
        agency_yaml(QA_LABEL, "qa-lead", "tester", "tester", CODE_LABEL),
    )?;
    std::fs::write(state.join("config.yaml"), CONFIG)?;
    store::SqliteStore::open(&state.join(DATABASE))?;
    manifest::load_project(&state)
        .map_err(|d| anyhow::anyhow!("the agencies demo's own manifests are invalid:\n{d}"))?;
    Ok(())
}

/// What happened, checked from the store at the end: the demo succeeds only when all of it did.
#[derive(Default)]
struct Story {
    handoffs: Vec<String>,
    answered: usize,
    approved: usize,
    landed: bool,
}

pub async fn demo(dir: Option<PathBuf>) -> anyhow::Result<u8> {
    let started = Instant::now();
    let (root, _temp) = demo_dir(dir)?;
    outln!("agencies demo project: {}", root.display());
    build_project(&root).await?;
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
    store
        .apply(
            "demo",
            now,
            vec![
                task(
                    "Add word count",
                    "textkit.wordcount.word_count(text) with tests",
                    &[CODE_LABEL, REVIEW_LABEL],
                ),
                task(
                    "Slugs of empty titles",
                    "slugify of an empty or blank title is empty: test it",
                    &[QA_LABEL],
                ),
            ],
        )
        .await?;
    outln!("2 issues filed: #1 [code, review] goes to the Code agency, #2 [qa] to QA\n");

    let app = project.app().await?;
    let person = Actor::command_line();
    let mut story = Story::default();
    let mut code = crate::exit::OK;
    for pass in 1..=MAX_PASSES {
        let (summary, run_store) = super::run::run_engine_with(
            &project,
            RunMode::UntilIdle,
            true,
            super::run_status::Mode::Off,
            |_| {},
        )
        .await?;
        code = super::run::print_summary(&*run_store, &summary, false).await?;
        // The scripted person: answers what waits for people, then lets the engine go on.
        let open = app.ask(&person, EscalationList { limit: 200 }).await?;
        let for_people: Vec<_> = open
            .into_iter()
            .filter(|m| m.receiver == Receiver::People)
            .collect();
        if for_people.is_empty() {
            break;
        }
        for m in for_people {
            let answered = app
                .execute(
                    &person,
                    AnswerEscalation {
                        id: m.id,
                        text: ANSWER.into(),
                    },
                )
                .await?;
            story.answered += 1;
            outln!(
                "\nthe person answers escalation M{} (pass {pass}): {ANSWER:?} (M{} to {})\n",
                answered.escalation.id,
                answered.answer.id,
                answered.answer.receiver
            );
        }
    }

    // The scripted person approves what waits, and the approval lands it on main.
    let pending = store::ApprovalFilter {
        state: Some(ApprovalState::Pending),
        task: None,
        limit: None,
    };
    let queue = super::approvals::Queue::open(&project).await?;
    for approval in store.approvals(&pending).await? {
        let decided = queue.decide(approval.id, Decision::Approve).await?;
        outln!(
            "the person approves: {}",
            super::approvals::decided_line(&decided)
        );
        if decided.approval.state == ApprovalState::Approved {
            story.approved += 1;
        }
        story.landed |= matches!(decided.land, Some(LandAfter::Landed(_)))
            && !super::approvals::land_failed(&decided);
    }

    for event in store.events_after(0, 100_000).await? {
        if let EventKind::TaskHandedOff {
            from_agency,
            from_role,
            to_agency,
            to_role,
            ..
        } = &event.kind
        {
            let to = to_role
                .as_deref()
                .map_or(to_agency.clone(), |r| format!("{to_agency}/{r}"));
            story
                .handoffs
                .push(format!("{from_agency}/{from_role} → {to}"));
        }
    }

    outln!("\nagency metrics (as `agentgrid metrics` prints them):");
    super::metrics::metrics(&project, None, false).await?;

    let tasks = store.tasks(&store::TaskFilter::default()).await?;
    let all_done = tasks.iter().all(|t| t.state == TaskState::Done);
    let handed_both_ways = story.handoffs.iter().any(|h| h.starts_with("code/"))
        && story.handoffs.iter().any(|h| h.starts_with("qa/"));
    let checks = [
        ("every issue is done", all_done),
        (
            "Code handed to QA and QA handed the bugs back",
            handed_both_ways,
        ),
        (
            "an escalation was answered by the person",
            story.answered > 0,
        ),
        ("the person approved the work", story.approved > 0),
        ("the approved work landed on main", story.landed),
    ];
    outln!("\nhandoffs: {}", story.handoffs.join("; "));
    for (what, ok) in checks {
        outln!("  [{}] {what}", if ok { "x" } else { " " });
    }
    let ok = checks.iter().all(|(_, ok)| *ok) && code == crate::exit::OK;
    outln!(
        "\nagencies demo finished in {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        if ok {
            "routed, handed off both ways, escalated and answered, approved and landed"
        } else {
            "some steps did not happen (see above)"
        }
    );
    if _temp.is_none() {
        outln!(
            "inspect it: cd {} && agentgrid task show 1 && agentgrid events --task 1 && agentgrid metrics",
            root.display()
        );
    }
    Ok(if ok {
        crate::exit::OK
    } else {
        crate::exit::FAILED
    })
}
