//! The README's "The agent's side" against the code: every `AGENTGRID_*` variable an execution
//! is given, every prompt variable (and the JSON Schema's description of them), and every path
//! the sandbox's view shows or hides is named there, so that a variable or a path added later
//! cannot go undocumented.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The README's section for agents, from its heading to the next one.
fn section() -> String {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let start = readme
        .find("### The agent's side")
        .expect("the README has a section for agents");
    let rest = &readme[start + 4..];
    let end = rest.find("\n### ").unwrap_or(rest.len());
    rest[..end].to_string()
}

/// The Rust sources under `dir`, recursively.
fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// Every `"AGENTGRID_…"` string literal in `text`.
fn agentgrid_literals(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for piece in text.split("\"AGENTGRID_").skip(1) {
        let name: String = piece
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || *c == '_')
            .collect();
        if piece[name.len()..].starts_with('"') && !name.is_empty() {
            names.push(format!("AGENTGRID_{name}"));
        }
    }
    names
}

#[test]
fn every_variable_an_execution_gets_is_listed_for_agents() {
    let doc = section();
    let mut files = Vec::new();
    for dir in ["crates/executor/src", "crates/engine/src"] {
        sources(&workspace().join(dir), &mut files);
    }
    let mut names: Vec<String> = files
        .iter()
        .flat_map(|f| agentgrid_literals(&std::fs::read_to_string(f).unwrap()))
        .collect();
    names.sort();
    names.dedup();
    // The ones the executor sets on every execution, at least: the scan finds them.
    for must in [
        "AGENTGRID_TASK_ID",
        "AGENTGRID_TOKEN",
        "AGENTGRID_CONTROL_SOCKET",
        "AGENTGRID_ITERATION",
    ] {
        assert!(
            names.iter().any(|n| n == must),
            "{must} not found in {names:?}"
        );
    }
    for name in &names {
        assert!(
            doc.contains(&format!("`{name}`")),
            "{name} is set on executions but not listed in the README's \"The agent's side\""
        );
    }
    for model in ["OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"] {
        assert!(doc.contains(model), "{model}");
    }
}

#[test]
fn every_prompt_variable_is_listed_and_the_schema_describes_the_same() {
    let doc = section();
    for name in manifest::CONTEXT_NAMES.iter().chain(["prompt"].iter()) {
        assert!(
            doc.contains(&format!("`{{{{ {name} }}}}`")),
            "the prompt variable {name} is not in the README"
        );
    }
    for field in manifest::TASK_FIELDS {
        assert!(doc.contains(&format!("`task.{field}`")), "task.{field}");
    }
    for field in manifest::EXECUTION_FIELDS {
        assert!(
            doc.contains(&format!("`execution.{field}`")),
            "execution.{field}"
        );
    }
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("schema/agentgrid.schema.json")).unwrap(),
    )
    .unwrap();
    let properties = schema["$defs"]["PromptContext"]["properties"]
        .as_object()
        .expect("the schema describes the prompt context");
    let mut described: Vec<&str> = properties.keys().map(String::as_str).collect();
    let mut names = manifest::CONTEXT_NAMES.to_vec();
    described.sort();
    names.sort();
    assert_eq!(described, names, "the schema's prompt context");
    for needed in [
        "still waiting",
        "all done",
        "AGENTGRID_EXECUTION_KIND=resume",
    ] {
        assert!(
            doc.to_lowercase().contains(&needed.to_lowercase()),
            "the resume guide says {needed:?}"
        );
    }
}

/// The strings of the `&[&str]` constant `name` in `source`.
fn constant(source: &str, name: &str) -> Vec<String> {
    let start = source
        .find(&format!("const {name}: &[&str] = &["))
        .unwrap_or_else(|| panic!("{name} is in view.rs"));
    let list = &source[start..];
    let list = &list[list.find("&[").unwrap() + 2..list.find("];").unwrap()];
    list.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn what_the_sandbox_shows_and_hides_is_listed_for_agents() {
    let doc = section();
    let view = std::fs::read_to_string(workspace().join("crates/sandbox/src/view.rs")).unwrap();
    let shown = constant(&view, "SYSTEM");
    let hidden = constant(&view, "ALWAYS_HIDDEN");
    assert!(
        shown.len() >= 8 && hidden.len() >= 6,
        "{shown:?} {hidden:?}"
    );
    let named = |path: &str| {
        // `/lib*` stands for every `/lib…` tree; `/etc/shadow` for its backup `/etc/shadow-`.
        let plain = path.trim_end_matches('-');
        doc.contains(&format!("`{plain}`")) || (path.starts_with("/lib") && doc.contains("`/lib*`"))
    };
    for path in shown.iter().chain(&hidden) {
        assert!(named(path), "{path} is not in the README's sandbox view");
    }
    for device in constant(&view, "DEVICES") {
        assert!(doc.contains(&format!("`{device}`")), "/dev/{device}");
    }
}
