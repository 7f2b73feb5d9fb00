//! The documented examples parse to the values they describe, and defaults fill the gaps.

use std::collections::BTreeMap;
use std::path::Path;

use domain::{Duration, ExecutionKind};
use manifest::*;

use crate::{FULL_AGENT, FULL_CONFIG, MINIMAL_AGENT};

fn expected_full_agent() -> AgentManifest {
    AgentManifest {
        api_version: "agentgrid.dev/v1".into(),
        kind: "Agent".into(),
        metadata: AgentMetadata {
            name: "worker".into(),
            labels: BTreeMap::from([("team".into(), "core".into())]),
        },
        spec: AgentSpec {
            description: "Writes code for small tasks.".into(),
            runtime: Runtime {
                kind: RuntimeKind::Command,
                command: vec![
                    "sh".into(),
                    "-c".into(),
                    "my-agent --prompt-file \"$AGENTGRID_PROMPT_FILE\"".into(),
                ],
                model: None,
                env: BTreeMap::from([("MY_VAR".into(), "{{ task.id }}".into())]),
                stdin: StdinMode::None,
            },
            prompt: "You work on task #{{ task.id }}: {{ task.title }}\n\
                     {% if feedback %}Last iteration failed:\\n{{ feedback }}{% endif %}\n"
                .into(),
            routing: Routing {
                labels: vec!["backend".into()],
                capabilities: vec!["python".into()],
                default: false,
                kinds: vec![ExecutionKind::Work, ExecutionKind::Resume],
            },
            limits: Limits {
                timeout: Duration::from_mins(30),
                stall_timeout: Duration::from_mins(5),
                concurrency: Some(2),
                max_iterations: 3,
                max_attempts: 3,
            },
            validation: Validation {
                threshold: 1.0,
                validators: vec![Validator {
                    name: "tests".into(),
                    command: vec![
                        "sh".into(),
                        "-c".into(),
                        "python3 -m unittest -v 2>&1".into(),
                    ],
                    run: None,
                    timeout: Duration::from_mins(5),
                    weight: 1.0,
                    score: ScoreMethod::Unittest,
                    report: None,
                    score_only: false,
                }],
                share: Vec::new(),
                protect: None,
            },
            completion: manifest::Completion::Exit,
            sandbox: manifest::SandboxProfile::default(),
            agency: None,
            role: None,
            topics: Vec::new(),
        },
    }
}

#[test]
fn the_full_agent_example_parses_to_its_values() {
    let agents = parse_agents(FULL_AGENT, Path::new("agents/worker.yaml")).unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0].name, "worker");
    assert_eq!(agents[0].source, Path::new("agents/worker.yaml"));
    assert_eq!(agents[0].manifest, expected_full_agent());
}

/// The derived serde types and the hand-written decoders must agree on a fully written manifest.
#[test]
fn serde_reads_the_full_example_the_same_way() {
    let via_serde: AgentManifest = serde_saphyr::from_str(FULL_AGENT).unwrap();
    assert_eq!(via_serde, expected_full_agent());
    let json = serde_json::to_value(expected_full_agent()).unwrap();
    let back: AgentManifest = serde_json::from_value(json).unwrap();
    assert_eq!(back, expected_full_agent());
}

#[test]
fn the_full_config_example_parses_to_its_values() {
    let config = parse_config(FULL_CONFIG, Path::new("config.yaml")).unwrap();
    let expected = ConfigSpec {
        concurrency: Concurrency {
            global: 2,
            per_label: BTreeMap::from([("db".into(), 1)]),
        },
        retry: Retry {
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_mins(5),
        },
        continuation: Continuation {
            delay: Duration::from_secs(1),
            max: 3,
        },
        resume: Resume {
            interval: Duration::from_mins(10),
        },
        guards: Guards {
            max_depth: 3,
            max_children: 20,
            max_executions_per_task: 20,
            max_executions_per_tree: 200,
            max_new_executions_per_minute: 120,
        },
        workspace: WorkspaceConfig {
            enabled: true,
            root: ".agentgrid/workspaces".into(),
            base: "HEAD".into(),
            // Empty hook lines mean no hook.
            hooks: Hooks {
                after_create: None,
                before_run: None,
                after_run: None,
                before_remove: None,
                timeout: Duration::from_mins(2),
            },
            quota: manifest::WorkspaceQuota::default(),
            git: manifest::WorkspaceGit::default(),
        },
        shutdown_grace: Duration::from_secs(10),
        lease: Duration::from_secs(30),
        models: manifest::Models::default(),
        budgets: manifest::Budgets::default(),
        land: manifest::Land {
            strategy: domain::LandStrategy::Merge,
        },
        approvals: manifest::Approvals::default(),
        handoffs_per_task: 6,
    };
    assert_eq!(config, expected);
    // Apart from the per-label limit, the example spells out the defaults.
    let mut without_db = config.clone();
    without_db.concurrency.per_label.clear();
    assert_eq!(without_db, ConfigSpec::default());
}

#[test]
fn a_minimal_agent_gets_every_default() {
    let agent = parse_agents(MINIMAL_AGENT, Path::new("a.yaml"))
        .unwrap()
        .remove(0);
    let spec = agent.spec();
    assert_eq!(spec.description, "");
    assert_eq!(spec.runtime.kind, RuntimeKind::Command);
    assert!(spec.runtime.env.is_empty());
    assert_eq!(spec.runtime.stdin, StdinMode::None);
    assert_eq!(spec.prompt, DEFAULT_PROMPT);
    assert_eq!(spec.routing.labels, Vec::<String>::new());
    assert!(!spec.routing.default);
    assert_eq!(
        spec.routing.kinds,
        [ExecutionKind::Work, ExecutionKind::Resume]
    );
    assert_eq!(spec.limits.timeout, Duration::from_mins(30));
    assert_eq!(spec.limits.stall_timeout, Duration::from_mins(5));
    assert_eq!(spec.limits.concurrency, None);
    assert_eq!(spec.limits.max_iterations, 1, "one pass without validators");
    assert_eq!(spec.limits.max_attempts, 3);
    assert_eq!(spec.validation.threshold, 1.0);
    assert!(spec.validation.validators.is_empty());
    assert!(agent.manifest.metadata.labels.is_empty());
}

#[test]
fn validators_bring_three_iterations_and_their_own_defaults() {
    let yaml = format!(
        "{MINIMAL_AGENT}  validation:\n    validators:\n      - name: lint\n        run: make lint\n"
    );
    let agent = parse_agents(&yaml, Path::new("a.yaml")).unwrap().remove(0);
    let spec = agent.spec();
    assert_eq!(spec.limits.max_iterations, 3);
    let v = &spec.validation.validators[0];
    assert_eq!(v.run.as_deref(), Some("make lint"));
    assert_eq!(v.argv(), ["sh", "-c", "make lint"]);
    assert_eq!(v.timeout, Duration::from_mins(5));
    assert_eq!(v.weight, 1.0);
    assert_eq!(v.score, ScoreMethod::Exit);

    // An explicit max_iterations wins over the default either way.
    let yaml = yaml.replace(
        "  validation:",
        "  limits: {max_iterations: 5}\n  validation:",
    );
    let agent = parse_agents(&yaml, Path::new("a.yaml")).unwrap().remove(0);
    assert_eq!(agent.spec().limits.max_iterations, 5);
}

#[test]
fn validation_shares_and_protects_what_it_is_told() {
    let yaml = format!(
        "{MINIMAL_AGENT}  validation:\n    validators:\n      - name: lint\n        run: make lint\n    share: [node_modules, .venv]\n    protect: ['tests/**']\n"
    );
    let agent = parse_agents(&yaml, Path::new("a.yaml")).unwrap().remove(0);
    let v = &agent.spec().validation;
    assert_eq!(v.share, ["node_modules", ".venv"]);
    assert_eq!(v.protect.as_deref(), Some(&["tests/**".to_string()][..]));

    let yaml = format!(
        "{MINIMAL_AGENT}  validation:\n    validators:\n      - name: lint\n        run: make lint\n    protect: []\n"
    );
    let agent = parse_agents(&yaml, Path::new("a.yaml")).unwrap().remove(0);
    assert_eq!(
        agent.spec().validation.protect.as_deref(),
        Some(&[][..]),
        "an empty list turns protection off, unlike an absent one"
    );
}

#[test]
fn score_methods_parse() {
    for (text, expected) in [
        ("exit", ScoreMethod::Exit),
        ("passed-failed", ScoreMethod::PassedFailed),
        ("pytest", ScoreMethod::Pytest),
        ("unittest", ScoreMethod::Unittest),
        ("cargo-test", ScoreMethod::CargoTest),
        ("nextest", ScoreMethod::Nextest),
        ("go-test", ScoreMethod::GoTest),
        ("jest", ScoreMethod::Jest),
        ("vitest", ScoreMethod::Vitest),
        ("mocha", ScoreMethod::Mocha),
        (
            r#"{regex: "score=(?P<score>[0-9.]+)"}"#,
            ScoreMethod::Regex("score=(?P<score>[0-9.]+)".into()),
        ),
    ] {
        let yaml = format!(
            "{MINIMAL_AGENT}  validation:\n    validators:\n      - {{name: t, run: x, score: {text}}}\n"
        );
        let agent = parse_agents(&yaml, Path::new("a.yaml")).unwrap().remove(0);
        assert_eq!(
            agent.spec().validation.validators[0].score,
            expected,
            "{text}"
        );
    }
}

#[test]
fn junit_reports_and_score_only_validators_parse() {
    let yaml = format!(
        "{MINIMAL_AGENT}  validation:\n    validators:\n      - {{name: t, run: x, score: junit, report: reports/junit.xml}}\n      - {{name: cov, run: y, score_only: true}}\n"
    );
    let agent = parse_agents(&yaml, Path::new("a.yaml")).unwrap().remove(0);
    let v = &agent.spec().validation.validators;
    assert_eq!(v[0].score, ScoreMethod::Junit);
    assert_eq!(v[0].report.as_deref(), Some("reports/junit.xml"));
    assert!(!v[0].score_only);
    assert!(v[1].score_only);
}

#[test]
fn a_config_without_spec_or_an_empty_file_means_defaults() {
    let header = "apiVersion: agentgrid.dev/v1\nkind: Config\n";
    assert_eq!(
        parse_config(header, Path::new("c.yaml")).unwrap(),
        ConfigSpec::default()
    );
    assert_eq!(
        parse_config("", Path::new("c.yaml")).unwrap(),
        ConfigSpec::default()
    );
    let partial = format!(
        "{header}spec:\n  concurrency: {{global: 5}}\n  workspace: {{hooks: {{after_create: make deps}}}}\n"
    );
    let config = parse_config(&partial, Path::new("c.yaml")).unwrap();
    assert_eq!(config.concurrency.global, 5);
    assert!(config.concurrency.per_label.is_empty());
    let hook = config.workspace.hooks.after_create.as_ref().unwrap();
    assert_eq!(hook.command(), "make deps");
    assert!(
        !hook.host(),
        "a hook runs sandboxed unless it says otherwise"
    );
    assert!(config.workspace.hooks.on_host().is_empty());

    let on_host = format!(
        "{header}spec:\n  workspace:\n    hooks:\n      before_run: make deps\n      after_run: {{run: make fmt, host: true}}\n"
    );
    let config = parse_config(&on_host, Path::new("c.yaml")).unwrap();
    let hooks = &config.workspace.hooks;
    assert_eq!(hooks.after_run.as_ref().unwrap().command(), "make fmt");
    assert!(hooks.after_run.as_ref().unwrap().host());
    assert!(!hooks.before_run.as_ref().unwrap().host());
    assert_eq!(hooks.on_host(), ["after_run"]);
    assert_eq!(config.workspace.hooks.timeout, Duration::from_mins(2));
    assert_eq!(config.retry, Retry::default());
}

#[test]
fn a_file_can_hold_several_agents() {
    let second = MINIMAL_AGENT.replace("name: minimal", "name: second");
    let yaml = format!("{FULL_AGENT}---\n{second}");
    let agents = parse_agents(&yaml, Path::new("a.yaml")).unwrap();
    let names: Vec<_> = agents.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["worker", "second"]);
}

#[test]
fn a_cli_runtime_needs_no_command_and_names_its_model() {
    let yaml = "apiVersion: agentgrid.dev/v1\nkind: Agent\nmetadata:\n  name: coder\nspec:\n  runtime:\n    type: claude\n    model: fast\n";
    let agent = parse_agents(yaml, Path::new("coder.yaml"))
        .unwrap()
        .remove(0);
    let runtime = &agent.spec().runtime;
    assert_eq!(runtime.kind, RuntimeKind::Claude);
    assert!(runtime.command.is_empty());
    assert_eq!(runtime.model.as_deref(), Some("fast"));
    assert_eq!(RuntimeKind::Claude.default_program(), Some("claude"));
    assert_eq!(RuntimeKind::Command.default_program(), None);
}
