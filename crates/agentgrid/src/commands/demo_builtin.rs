//! `agentgrid demo --agents builtin`: the same project and issues, worked by the built-in
//! agent against a scripted model served in-process by `modelfixture`, through the engine's
//! gateway and inside the default sandbox. The script is the model's side of every
//! conversation, in the order the engine runs them: one execution at a time (`global: 1`),
//! tasks in the order they were filed, sub-tasks before the resume of their parent.

use modelfixture::{Script, Step};
use serde_json::{Value, json};

/// The "real" key of the demo's model: it exists only between the gateway and the scripted
/// model in this process, and the fixture refuses any other, so the demo shows that the
/// agents' own key (their execution token) is not it.
pub const KEY: &str = "demo-provider-key";

/// The provider of the demo's alias.
const PROVIDER: &str = "demo";

/// The alias the demo's agents ask for.
const ALIAS: &str = "demo-model";

const WORDCOUNT_PY: &str = "def word_count(text):\n    \"\"\"Counts whitespace-separated words.\"\"\"\n    return len(text.split())\n";
const TEST_WORDCOUNT_PY: &str = "import unittest\n\nfrom textkit.wordcount import word_count\n\n\nclass WordCountTest(unittest.TestCase):\n    def test_counts_words(self):\n        self.assertEqual(word_count(\"one two  three\"), 3)\n\n    def test_empty_text_has_no_words(self):\n        self.assertEqual(word_count(\"\"), 0)\n";
const TEST_SLUGIFY_CASE_PY: &str = "import unittest\n\nfrom textkit import slugify\n\n\nclass SlugifyCaseTest(unittest.TestCase):\n    def test_slugs_are_lowercase(self):\n        self.assertEqual(slugify(\"Hello Big World\"), \"hello-big-world\")\n";
const SLUG_BEFORE: &str = "return \"-\".join(text.split())";
/// The first try lowercases only the first letter, so validation fails and feeds back.
const SLUG_WRONG: &str =
    "return \"-\".join(text.split())[:1].lower() + \"-\".join(text.split())[1:]";
const SLUG_RIGHT: &str = "return \"-\".join(text.lower().split())";
const LINECOUNT_PY: &str = "def line_count(text):\n    \"\"\"Counts lines; a trailing newline does not start a new one.\"\"\"\n    return len(text.splitlines())\n";
const TEST_LINECOUNT_PY: &str = "import unittest\n\nfrom textkit.linecount import line_count\n\n\nclass LineCountTest(unittest.TestCase):\n    def test_counts_lines(self):\n        self.assertEqual(line_count(\"a\\nb\\nc\\n\"), 3)\n";
const REPORT_PY: &str = "from textkit.linecount import line_count\n\n\ndef report(text):\n    \"\"\"A one-line summary of a text.\"\"\"\n    return f\"{line_count(text)} lines, {len(text)} characters\"\n";
const TEST_REPORT_PY: &str = "import unittest\n\nfrom textkit.report import report\n\n\nclass ReportTest(unittest.TestCase):\n    def test_reports_lines_and_characters(self):\n        self.assertEqual(report(\"ab\\ncd\\n\"), \"2 lines, 6 characters\")\n";

fn call(text: &str, tool: &str, args: Value) -> Step {
    Step::call(text, tool, args, 900, 60)
}

fn write(path: &str, content: &str) -> Step {
    call(
        &format!("Writing {path}."),
        "write_file",
        json!({"path": path, "content": content}),
    )
}

fn done(text: &str) -> Step {
    Step::reply(text, 1200, 40, 0)
}

/// The model's answers, one per request, in the order the executions run.
pub fn script() -> Script {
    let run_tests = json!({"command": "python3 run_tests.py"});
    Script::new(vec![
        // #1 Add word count.
        write("textkit/wordcount.py", WORDCOUNT_PY),
        write("tests/test_wordcount.py", TEST_WORDCOUNT_PY),
        call("Running the tests.", "run_command", run_tests.clone()),
        done("Added textkit.wordcount.word_count with tests."),
        // #2 Slugs must be lowercase: the first iteration gets it wrong.
        write("tests/test_slugify_case.py", TEST_SLUGIFY_CASE_PY),
        call(
            "Lowercasing the slug.",
            "edit",
            json!({"path": "textkit/__init__.py", "old": SLUG_BEFORE, "new": SLUG_WRONG}),
        ),
        done("Slugs start lowercase now."),
        // The second iteration, with the failing test in its prompt.
        call(
            "The feedback shows the rest of the slug kept its case; lowercasing all of it.",
            "edit",
            json!({"path": "textkit/__init__.py", "old": SLUG_WRONG, "new": SLUG_RIGHT}),
        ),
        done("Fixed: the whole slug is lowercase."),
        // #3 Text report: the planner splits it.
        call(
            "Too big for one go; splitting.",
            "subtask",
            json!({"title": "Add line count", "labels": ["demo:linecount"], "body": "textkit.linecount.line_count(text)"}),
        ),
        call(
            "",
            "subtask",
            json!({"title": "Add report()", "labels": ["demo:report"], "blocked_by": [4], "body": "textkit.report.report(text) using line_count"}),
        ),
        done("Split into #4 (line count) and #5 (report, after #4)."),
        // #4 and #5.
        write("textkit/linecount.py", LINECOUNT_PY),
        write("tests/test_linecount.py", TEST_LINECOUNT_PY),
        done("Added line_count with tests."),
        write("textkit/report.py", REPORT_PY),
        write("tests/test_report.py", TEST_REPORT_PY),
        done("Added report() with tests."),
        // #3 again, resumed once both sub-tasks are done and merged.
        call("Checking the merged tree.", "run_command", run_tests),
        call(
            "",
            "complete",
            json!({"summary": "both sub-tasks are done and the merged branch passes its tests"}),
        ),
        done("Both sub-tasks are done; the merged branch passes its tests."),
    ])
}

/// The node configuration: one execution at a time, so the conversations reach the script in
/// order, and the fixture as the only provider.
pub fn config(base: &str, origin: &str) -> String {
    let base = base.replace("global: 2 ", "global: 1 ");
    format!(
        "{base}  models:\n    providers:\n      {PROVIDER}: {{kind: anthropic, base_url: \"{origin}\"}}\n    aliases:\n      {ALIAS}: {{provider: {PROVIDER}, model: scripted, prices: {{input: 3, output: 15}}}}\n"
    )
}

/// The runtime section of a demo agent.
pub fn runtime_yaml() -> String {
    format!("  runtime:\n    type: builtin\n    model: {ALIAS}\n  sandbox:\n    network: gateway\n")
}

/// Hands the demo provider its key, which a real node reads from its environment
/// (`api_key_env`) and the demo has no reason to put there.
pub fn give_key(setup: &mut engine::Setup) {
    if let Some(gateway) = &mut setup.gateway {
        for provider in &mut gateway.providers {
            if provider.name == PROVIDER {
                provider.api_key = Some(gateway::ApiKey::new(KEY));
            }
        }
    }
}
