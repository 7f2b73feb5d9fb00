//! Whole projects on disk: `.agentgrid/config.yaml` and `.agentgrid/agents/*.yaml`.

use std::fs;
use std::path::{Path, PathBuf};

use domain::Duration;
use manifest::{ConfigSpec, load_project};

use crate::{FULL_AGENT, FULL_CONFIG, MINIMAL_AGENT};

/// A temporary repository with an `.agentgrid` directory holding `files` (relative paths).
fn project(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let repo = tempfile::tempdir().unwrap();
    let root = repo.path().join(".agentgrid");
    fs::create_dir_all(&root).unwrap();
    for (path, text) in files {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    (repo, root)
}

#[test]
fn a_project_loads_its_config_and_every_agent() {
    let reviewer = MINIMAL_AGENT.replace("name: minimal", "name: reviewer");
    let pair = format!(
        "{}---\n{}",
        MINIMAL_AGENT.replace("name: minimal", "name: b-one"),
        MINIMAL_AGENT.replace("name: minimal", "name: b-two")
    );
    let config = FULL_CONFIG.replace("global: 2", "global: 4");
    let (_repo, root) = project(&[
        ("config.yaml", &config),
        ("agents/worker.yaml", FULL_AGENT),
        ("agents/reviewer.yml", &reviewer),
        ("agents/b.yaml", &pair),
        ("agents/README.md", "not an agent: ignored"),
    ]);
    let p = load_project(&root).unwrap();
    assert_eq!(p.config.concurrency.global, 4);
    let names: Vec<_> = p.agents.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        ["b-one", "b-two", "reviewer", "worker"],
        "sorted by file, then by document"
    );
    assert_eq!(p.agents[3].source, root.join("agents/worker.yaml"));
    assert_eq!(
        p.agent("worker").unwrap().spec().limits.concurrency,
        Some(2)
    );
    assert!(p.agent("nobody").is_none());
    assert_eq!(p.root, root);
    assert_eq!(
        p.workspace_root(),
        root.parent().unwrap().join(".agentgrid/workspaces")
    );
}

#[test]
fn without_config_or_agents_the_defaults_apply() {
    let (_repo, root) = project(&[]);
    let p = load_project(&root).unwrap();
    assert_eq!(p.config, ConfigSpec::default());
    assert_eq!(p.config.shutdown_grace, Duration::from_secs(10));
    assert!(p.agents.is_empty());

    let (_repo, root) = project(&[("agents/.keep", "")]);
    assert!(load_project(&root).unwrap().agents.is_empty());
}

#[test]
fn duplicate_names_across_files_point_at_the_second() {
    let (_repo, root) = project(&[("agents/a.yaml", FULL_AGENT), ("agents/b.yaml", FULL_AGENT)]);
    let err = load_project(&root).unwrap_err();
    assert_eq!(err.len(), 1, "{err}");
    let d = &err.0[0];
    assert_eq!(d.file, root.join("agents/b.yaml"));
    assert_eq!((d.line, d.column), (4, 9));
    let first = root.join("agents/a.yaml");
    assert!(
        d.message.contains(&format!(
            "`worker` is already used at {}:4:9",
            first.display()
        )),
        "{}",
        d.message
    );
}

#[test]
fn problems_in_every_file_are_reported_together() {
    let bad_agent = MINIMAL_AGENT.replace("[my-agent]", "[]");
    let bad_config =
        "apiVersion: agentgrid.dev/v1\nkind: Config\nspec: {retry: {base_delay: soon}}\n";
    let (_repo, root) = project(&[
        ("config.yaml", bad_config),
        ("agents/bad.yaml", &bad_agent),
        ("agents/broken.yaml", "kind: Agent\nspec: [\n"),
        ("agents/good.yaml", FULL_AGENT),
    ]);
    let err = load_project(&root).unwrap_err();
    let text = err.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let at = |file: &str, rest: &str| format!("{}:{rest}", root.join(file).display());
    assert!(
        lines[0].starts_with(&at(
            "agents/bad.yaml",
            "7:14: spec.runtime.command: the command is empty"
        )),
        "{text}"
    );
    assert!(
        lines[1].starts_with(&at("agents/broken.yaml", ""))
            && lines[1].contains("YAML syntax error"),
        "{text}"
    );
    assert!(
        lines[2].starts_with(&at(
            "config.yaml",
            "3:28: spec.retry.base_delay: `soon` is not a duration"
        )),
        "{text}"
    );
}

#[test]
fn a_missing_agentgrid_directory_is_reported() {
    let repo = tempfile::tempdir().unwrap();
    let err = load_project(&repo.path().join(".agentgrid")).unwrap_err();
    assert!(
        err.to_string()
            .contains("no such directory; run `agentgrid init`"),
        "{err}"
    );
}

#[test]
fn an_unreadable_file_is_reported_as_a_whole() {
    let (_repo, root) = project(&[]);
    fs::create_dir_all(root.join("agents")).unwrap();
    fs::write(root.join("agents/bin.yaml"), [0xff, 0xfe, 0x00]).unwrap();
    let err = load_project(&root).unwrap_err();
    let d = &err.0[0];
    assert_eq!(d.file, root.join("agents/bin.yaml"));
    assert_eq!(d.line, 0);
    assert!(
        d.to_string().starts_with(&format!(
            "{}: cannot read the file",
            Path::new(&d.file).display()
        )),
        "{d}"
    );
}

#[test]
fn a_setting_is_located_in_its_agents_document_or_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agents.yaml");
    std::fs::write(
        &file,
        "apiVersion: agentgrid.dev/v1\nkind: Agent\nmetadata: {name: one}\nspec:\n  runtime: {command: [a]}\n---\napiVersion: agentgrid.dev/v1\nkind: Agent\nmetadata:\n  name: two\nspec:\n  runtime:\n    command:\n      - claud\n      - -p\n",
    )
    .unwrap();
    let place = manifest::locate(&file, Some("two"), &["spec", "runtime", "command", "0"]).unwrap();
    assert_eq!((place.line, place.column), (14, 9));
    let place = manifest::locate(&file, Some("one"), &["spec", "runtime", "command"]).unwrap();
    assert_eq!(place.line, 5);
    assert_eq!(manifest::locate(&file, Some("three"), &["spec"]), None);
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "kind: Config\nspec:\n  workspace:\n    base: trunk\n",
    )
    .unwrap();
    let place = manifest::locate(&config, None, &["spec", "workspace", "base"]).unwrap();
    assert_eq!((place.line, place.column), (4, 11));
    assert_eq!(manifest::locate(&config, None, &["spec", "models"]), None);
}

/// A project with one built-in agent (`runtime` is its runtime section's body) and `models` as
/// the config's models section.
fn builtin_project(
    runtime: &str,
    models: &str,
) -> Result<manifest::Project, manifest::Diagnostics> {
    let agent = format!(
        "apiVersion: agentgrid.dev/v1\nkind: Agent\nmetadata:\n  name: b\nspec:\n  runtime:\n    type: builtin\n{runtime}  sandbox: {{network: gateway}}\n"
    );
    let config = format!("apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n{models}");
    let (repo, root) = project(&[("agents/b.yaml", &agent), ("config.yaml", &config)]);
    let result = load_project(&root);
    drop(repo);
    result
}

#[test]
fn a_builtin_agent_needs_an_alias_the_config_has_on_a_provider_it_can_reach() {
    let models = "  models:\n    providers:\n      a: {kind: anthropic, base_url: \"http://x\", api_key_env: K}\n      o: {kind: openai, base_url: \"http://y\", api_key_env: K}\n    aliases:\n      claude: {provider: a, model: c}\n      gpt: {provider: o, model: g}\n";
    let ok = |runtime: &str, models: &str| {
        if let Err(e) = builtin_project(runtime, models) {
            panic!("{runtime} should load: {e}");
        }
    };
    let problem = |runtime: &str, models: &str| -> (usize, usize, String) {
        let err = builtin_project(runtime, models).expect_err(runtime);
        assert_eq!(err.len(), 1, "{err}");
        let d = &err.0[0];
        (d.line, d.column, d.message.clone())
    };
    ok("    model: claude\n", models);
    // Alone, an alias is the gateway's choice; so is one called `default`.
    ok(
        "",
        "  models:\n    providers:\n      a: {kind: anthropic, base_url: \"http://x\", api_key_env: K}\n    aliases:\n      only: {provider: a, model: c}\n",
    );

    let (line, column, message) = problem("    model: claud\n", models);
    assert_eq!((line, column), (8, 12));
    assert!(
        message.contains(
            "`claud` is not an alias of `models.aliases` in config.yaml (aliases: claude, gpt)"
        ),
        "{message}"
    );
    // Messages reach an OpenAI provider through Chat Completions, and a Gemini one through
    // Chat Completions and on into the Gemini API.
    ok("    model: gpt\n", models);
    let gemini = "  models:\n    providers:\n      g: {kind: gemini, base_url: \"http://z\", api_key_env: K}\n    aliases:\n      gem: {provider: g, model: m}\n";
    ok("    model: gem\n", gemini);
    let (line, column, message) = problem("", models);
    assert_eq!((line, column), (7, 5));
    assert!(
        message.contains("needs `model:` to name one of the aliases (claude, gpt)"),
        "{message}"
    );
    let (_, _, message) = problem("", "");
    assert!(message.contains("add a `models:` section"), "{message}");
}
