//! Broken manifests: each yields a diagnostic at the right line and column that says what is
//! expected, and independent mistakes are all reported.

use std::path::Path;

use manifest::{Diagnostics, parse_agents, parse_config};

const AGENT_FILE: &str = "agents/worker.yaml";
const CONFIG_FILE: &str = "config.yaml";

/// A valid agent; each case below breaks one line of it.
const AGENT: &str = r#"apiVersion: agentgrid.dev/v1
kind: Agent
metadata:
  name: worker
spec:
  runtime:
    command: [my-agent, "{{ task.id }}"]
  limits:
    timeout: 30m
  validation:
    validators:
      - name: tests
        run: make test
"#;

/// A valid config; the config cases break it.
const CONFIG: &str = "apiVersion: agentgrid.dev/v1
kind: Config
spec:
  concurrency: {global: 2}
  retry: {base_delay: 10s, max_delay: 5m}
";

/// `AGENT` with one line replaced (an empty `new` removes it; `new` may span several lines).
fn agent(old: &str, new: &str) -> String {
    replace(AGENT, old, new)
}

fn config(old: &str, new: &str) -> String {
    replace(CONFIG, old, new)
}

fn replace(base: &str, old: &str, new: &str) -> String {
    assert!(base.contains(old), "the base manifest has no `{old}`");
    base.replacen(old, new, 1)
}

fn diagnostics(file: &str, input: &str) -> Diagnostics {
    let path = Path::new(file);
    let result = if file == CONFIG_FILE {
        parse_config(input, path).map(|_| ())
    } else {
        parse_agents(input, path).map(|_| ())
    };
    match result {
        Ok(()) => panic!("expected problems in {file}, but it loaded:\n{input}"),
        Err(d) => d,
    }
}

/// Checks that `input`, read as `file`, yields a diagnostic `file:<expected…>`, where `expected`
/// starts with `line:col: `.
fn check(file: &str, input: &str, expected: &str) {
    let all = diagnostics(file, input);
    let wanted = format!("{file}:{expected}");
    assert!(
        all.iter().any(|d| d.to_string().contains(&wanted)),
        "no diagnostic containing\n  {wanted}\namong\n{all}\nfor\n{input}"
    );
}

/// A misspelt runtime type is the one problem reported, with the type it was likely meant to
/// be: what a `command` runtime needs is not asked of a runtime whose type is unknown.
#[test]
fn a_misspelt_runtime_type_is_one_problem_with_a_guess() {
    let input = agent(
        "    command: [my-agent, \"{{ task.id }}\"]",
        "    type: claud\n    model: sonnet",
    );
    let all = diagnostics(AGENT_FILE, &input);
    let texts: Vec<String> = all.iter().map(|d| d.to_string()).collect();
    assert_eq!(texts.len(), 1, "{texts:#?}");
    assert!(
        texts[0].contains("7:11: spec.runtime.type: expected one of")
            && texts[0].ends_with("found `claud` (did you mean `claude`?)"),
        "{texts:#?}"
    );
}

#[test]
fn the_bases_are_valid() {
    parse_agents(AGENT, Path::new(AGENT_FILE)).unwrap();
    parse_config(CONFIG, Path::new(CONFIG_FILE)).unwrap();
}

#[test]
fn broken_agents_point_at_the_problem() {
    let cases: Vec<(String, &str)> = vec![
        // YAML syntax.
        (
            agent(
                "[my-agent, \"{{ task.id }}\"]",
                "[my-agent, \"{{ task.id }}\"",
            ),
            "8:9: YAML syntax error: illegal placement of ':' indicator",
        ),
        (
            agent("  name: worker", "  name: worker\n   bad: indent"),
            "5:7: YAML syntax error: ",
        ),
        // The header.
        (
            agent("agentgrid.dev/v1", "agentgrid.dev/v2"),
            "1:13: apiVersion: expected `agentgrid.dev/v1`, found `agentgrid.dev/v2`",
        ),
        (
            agent("kind: Agent", "kind: Config"),
            "2:7: kind: expected `Agent`, found `Config`; agent files hold `kind: Agent`",
        ),
        (
            agent("kind: Agent\n", ""),
            "1:1: missing field `kind`; add it, for example `kind: Agent`",
        ),
        (
            "- just\n- a list\n".into(),
            "1:1: expected a mapping with the fields apiVersion, kind, metadata, spec, found a list",
        ),
        // Unknown fields, with the allowed ones.
        (
            agent("    command:", "    comand:"),
            "7:5: spec.runtime: unknown field `comand` (did you mean `command`?); allowed fields here: type, command, env, stdin, model",
        ),
        (
            agent("  limits:", "  limit:"),
            "8:3: spec: unknown field `limit` (did you mean `limits`?); allowed fields here: description, runtime, prompt, routing, limits, validation",
        ),
        (
            agent(
                "        run: make test",
                "        run: make test\n        retries: 2",
            ),
            "14:9: spec.validation.validators[0]: unknown field `retries`; allowed fields here: name, command, run, timeout, weight, score",
        ),
        // Bad types and values.
        (
            agent("    timeout: 30m", "    max_attempts: three"),
            "9:19: spec.limits.max_attempts: expected a whole number, 0 or more, found the text `three`",
        ),
        (
            agent("    timeout: 30m", "    max_attempts: 0"),
            "9:19: spec.limits.max_attempts: must be 1 or more",
        ),
        (
            agent("    timeout: 30m", "    timeout: 10 minutes"),
            "9:14: spec.limits.timeout: `10 minutes` is not a duration: write a number with a unit, such as 500ms, 30s, 10m, 2h or 1d",
        ),
        (
            agent("    timeout: 30m", "    timeout: 0s"),
            "9:14: spec.limits.timeout: must be longer than 0s",
        ),
        (
            agent("    timeout: 30m", "    timeout: [30m]"),
            "9:14: spec.limits.timeout: expected a duration such as 30s, 10m or 2h, found a list",
        ),
        (
            agent("  name: worker", "  name: Worker"),
            "4:9: metadata.name: `Worker` is not a valid agent name: use lowercase letters, digits and dashes",
        ),
        (
            agent("  name: worker", "  labels: {team: core}"),
            "4:3: metadata: missing field `name`; add it, for example `name: worker`",
        ),
        (
            agent(
                "    command: [my-agent, \"{{ task.id }}\"]",
                "    command: []",
            ),
            "7:14: spec.runtime.command: the command is empty; give the program and its arguments",
        ),
        (
            agent(
                "    command: [my-agent, \"{{ task.id }}\"]",
                "    stdin: prompt",
            ),
            "7:5: spec.runtime: missing field `command`; add it, for example `command: [\"my-agent\"",
        ),
        (
            agent(
                "    command: [my-agent, \"{{ task.id }}\"]",
                "    command: my-agent",
            ),
            "7:14: spec.runtime.command: expected a list such as [a, b], found the text `my-agent`",
        ),
        (
            agent("[my-agent,", "[\" \","),
            "7:15: spec.runtime.command[0]: the program name is empty; name the program to run",
        ),
        (
            agent("    command:", "    stdin: file\n    command:"),
            "7:12: spec.runtime.stdin: expected `none` or `prompt`, found `file`",
        ),
        (
            agent("    command:", "    type: docker\n    command:"),
            "7:11: spec.runtime.type: expected one of `command`, `builtin`, `claude`, `codex`, `gemini`, `opencode`, `aider`, found `docker`",
        ),
        (
            agent("    command:", "    model: fast\n    command:"),
            "7:12: spec.runtime.model: `model` is for `type: builtin` or a CLI's runtime type (such as `claude`)",
        ),
        // Validation.
        (
            agent("  validation:", "  validation:\n    threshold: 1.5"),
            "11:16: spec.validation.threshold: 1.5 is outside 0..1; give the score needed to pass, from 0 to 1",
        ),
        (
            agent(
                "        run: make test",
                "        run: make test\n        weight: -1",
            ),
            "14:17: spec.validation.validators[0].weight: -1 is negative; give a weight of 0 or more",
        ),
        (
            agent(
                "        run: make test",
                "        run: make test\n        score: {regex: \"score=(?P<score>[0-9.]+\"}",
            ),
            "14:24: spec.validation.validators[0].score.regex: `score=(?P<score>[0-9.]+` is not a valid regular expression: unclosed group",
        ),
        (
            agent(
                "        run: make test",
                "        run: make test\n        score: {regex: \"([0-9]+)\"}",
            ),
            "14:24: spec.validation.validators[0].score.regex: `([0-9]+)` has no group named `score`; capture the number with (?P<score>[0-9.]+)",
        ),
        (
            agent(
                "        run: make test",
                "        run: make test\n        score: percent",
            ),
            "14:16: spec.validation.validators[0].score: expected `exit`, `passed-failed`, `pytest`, `unittest`, `cargo-test`, `nextest`, `go-test`, `jest`, `vitest`, `mocha`, `junit` or `{regex: ",
        ),
        (
            agent(
                "        run: make test",
                "        run: make test\n        score: junit",
            ),
            "14:16: spec.validation.validators[0].score: `score: junit` reads a report; add `report: path/to/junit.xml`",
        ),
        (
            agent(
                "        run: make test",
                "        run: make test\n        score: junit\n        report: ../elsewhere.xml",
            ),
            "15:17: spec.validation.validators[0].report: `../elsewhere.xml` leaves the workspace",
        ),
        (
            agent(
                "        run: make test",
                "        run: make test\n        score: junit\n        report: /tmp/junit.xml",
            ),
            "15:17: spec.validation.validators[0].report: `/tmp/junit.xml` is absolute",
        ),
        (
            agent(
                "        run: make test",
                "        run: make test\n        report: junit.xml",
            ),
            "14:17: spec.validation.validators[0].report: only `score: junit` reads a report",
        ),
        (
            agent(
                "        run: make test",
                "        run: make test\n        score_only: maybe",
            ),
            "14:21: spec.validation.validators[0].score_only: expected",
        ),
        (
            agent(
                "        run: make test",
                "        run: make test\n        command: [make, test]",
            ),
            "13:14: spec.validation.validators[0]: give either `command` or `run`, not both",
        ),
        (
            agent("        run: make test", "        timeout: 1m"),
            "12:9: spec.validation.validators[0]: missing the check to run; add `command: [\"pytest\", \"-q\"]` or `run: \"pytest -q\"`",
        ),
        (
            agent(
                "        run: make test",
                "        run: make test\n      - name: tests\n        run: make check",
            ),
            "14:9: spec.validation.validators[1]: a validator named `tests` is already listed",
        ),
        (
            agent(
                "        run: make test",
                "        run: make test\n        weight: 0",
            ),
            "11:5: spec.validation.validators: every validator has weight 0",
        ),
        (
            agent(
                "        run: make test",
                "        run: make test\n    share: [../elsewhere]",
            ),
            "14:12: spec.validation.share: `../elsewhere` must not contain `.`, `..` or a root",
        ),
        (
            agent(
                "        run: make test",
                "        run: make test\n    share: [/opt/deps]",
            ),
            "14:12: spec.validation.share: `/opt/deps` is not a relative path",
        ),
        (
            agent(
                "        run: make test",
                "        run: make test\n    protect: [/etc/passwd]",
            ),
            "14:14: spec.validation.protect: `/etc/passwd` is not a relative glob",
        ),
        // Environment.
        (
            agent("    command:", "    env: {my-var: x}\n    command:"),
            "7:11: spec.runtime.env: `my-var` is not a valid variable name: use capital letters, digits and _",
        ),
        (
            agent("    command:", "    env: {AGENTGRID_TASK: x}\n    command:"),
            "7:11: spec.runtime.env: `AGENTGRID_TASK` is reserved: agentgrid sets the AGENTGRID_* variables itself",
        ),
        // Routing.
        (
            agent("  limits:", "  routing: {kinds: [work, sleep]}\n  limits:"),
            "8:27: spec.routing.kinds[1]: `sleep` is not an execution kind: expected work or resume",
        ),
        (
            agent("  limits:", "  routing: {kinds: []}\n  limits:"),
            "8:20: spec.routing.kinds: no execution kinds listed, so the agent would never run",
        ),
        (
            agent(
                "  limits:",
                "  routing: {labels: [\"has space\"]}\n  limits:",
            ),
            "8:22: spec.routing.labels[0]: label `has space` is not allowed",
        ),
        (
            agent("  limits:", "  routing: {default: maybe}\n  limits:"),
            "8:22: spec.routing.default: expected true or false, found the text `maybe`",
        ),
        // Templates: syntax, unknown names, and names that are empty for some tasks.
        (
            agent("\"{{ task.id }}\"", "\"{{ task.id }\""),
            "7:25: spec.runtime.command[1]: template syntax error: unexpected `}`",
        ),
        (
            agent("\"{{ task.id }}\"", "\"{{ task.titel }}\""),
            "7:25: spec.runtime.command[1]: the template uses `task.titel`, which is not defined; `task` has id, title, body, labels, priority, state, branch, summary, merge_failed",
        ),
        (
            agent(
                "  limits:",
                "  prompt: |\n    Task {{ task.id }}\n    Fix {{ bug }}\n  limits:",
            ),
            "10:5: spec.prompt: the template uses `bug`, which is not defined; the template can use task, parent, children, attempt, iteration, feedback, comments, answer, inbox, handoff, execution, agent",
        ),
        (
            agent("  limits:", "  prompt: \"Here: {{ prompt }}\"\n  limits:"),
            "8:11: spec.prompt: the template uses `prompt`, which is not defined",
        ),
        (
            agent(
                "  limits:",
                "  prompt: \"Part of {{ parent.title }}\"\n  limits:",
            ),
            "8:11: spec.prompt: the template uses `parent.title`, which is empty when the task has no parent, sub-tasks, feedback or branch; guard it with {% if … %}",
        ),
        (
            agent(
                "  limits:",
                "  prompt: |\n    {% for c in children %}{{ c.name }}{% endfor %}\n  limits:",
            ),
            "9:5: spec.prompt: the template uses `c.name`, which is not defined",
        ),
        (
            agent(
                "    command:",
                "    env: {X: \"{{ execution.pid }}\"}\n    command:",
            ),
            "7:14: spec.runtime.env.X: the template uses `execution.pid`, which is not defined; `execution` has id, kind",
        ),
    ];
    for (input, expected) in &cases {
        check(AGENT_FILE, input, expected);
    }
}

#[test]
fn an_unknown_attribute_is_reported_once() {
    // The render fails too, without naming the attribute; only the named problem is shown.
    let input = agent("  limits:", "  prompt: \"{{ task.nope }}\"\n  limits:");
    let all = diagnostics(AGENT_FILE, &input);
    let messages: Vec<String> = all.iter().map(|d| d.to_string()).collect();
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert!(
        messages[0].contains("uses `task.nope`, which is not defined"),
        "{messages:#?}"
    );
}

#[test]
fn broken_configs_point_at_the_problem() {
    let cases: Vec<(String, &str)> = vec![
        (
            config("{global: 2}", "{global: 0}"),
            "4:25: spec.concurrency.global: must be 1 or more: nothing would ever run",
        ),
        (
            config("  concurrency:", "  concurency:"),
            "4:3: spec: unknown field `concurency` (did you mean `concurrency`?); allowed fields here: concurrency, retry, continuation, resume, guards, workspace, shutdown_grace",
        ),
        (
            config("base_delay: 10s", "base_delay: 10m"),
            "5:23: spec.retry.base_delay: 10m is longer than max_delay 5m",
        ),
        (
            config("kind: Config", "kind: Agent"),
            "2:7: kind: expected `Config`, found `Agent`; config.yaml holds the project settings",
        ),
        (
            config("{global: 2}", "{global: 2, per_label: {\"a b\": 1}}"),
            "4:40: spec.concurrency.per_label: label `a b` is not allowed",
        ),
        (
            config("{global: 2}", "{global: 2, per_label: {db: 0}}"),
            "4:44: spec.concurrency.per_label.db: must be 1 or more",
        ),
        (
            format!("{CONFIG}  shutdown_grace: soon\n"),
            "6:19: spec.shutdown_grace: `soon` is not a duration",
        ),
        (
            format!("{CONFIG}  lease: 1s\n"),
            "6:10: spec.lease: 1s is shorter than 3s; the engine renews a lease every third of it",
        ),
        (
            format!("{CONFIG}  workspace: {{root: \"\"}}\n"),
            "6:21: spec.workspace.root: is empty; remove the field to use the default",
        ),
        (
            format!("{CONFIG}  workspace: {{hooks: {{after_create: [make]}}}}\n"),
            "6:37: spec.workspace.hooks.after_create: expected text, found a list",
        ),
        (
            format!(
                "{CONFIG}  workspace: {{hooks: {{after_run: {{run: make fmt, host: maybe}}}}}}\n"
            ),
            "6:56: spec.workspace.hooks.after_run.host: expected true or false",
        ),
        (
            format!("{CONFIG}  workspace: {{hooks: {{after_run: {{host: true}}}}}}\n"),
            "6:34: spec.workspace.hooks.after_run: missing field `run`",
        ),
        (
            format!("{CONFIG}  workspace: {{hooks: {{after_run: {{run: x, hots: true}}}}}}\n"),
            "6:43: spec.workspace.hooks.after_run: unknown field `hots` (did you mean `host`?)",
        ),
        (
            format!("{CONFIG}  workspace: {{git: {{drivers: lfs}}}}\n"),
            "6:30: spec.workspace.git.drivers: expected a list of driver names such as [lfs]",
        ),
        (
            format!("{CONFIG}  workspace: {{git: {{drivers: [lfs, \"a.b\"]}}}}\n"),
            "6:36: spec.workspace.git.drivers[1]: `a.b` is not a driver name",
        ),
        (
            format!("{CONFIG}  workspace: {{git: {{drivers: [lfs, lfs]}}}}\n"),
            "6:36: spec.workspace.git.drivers[1]: `lfs` is listed twice",
        ),
        (
            format!("{CONFIG}  workspace: {{git: {{filters: [lfs]}}}}\n"),
            "6:21: spec.workspace.git: unknown field `filters`",
        ),
        (
            format!("{CONFIG}---\nkind: Config\n"),
            "7:1: config.yaml holds a single document (`kind: Config`); remove this extra one",
        ),
    ];
    for (input, expected) in &cases {
        check(CONFIG_FILE, input, expected);
    }
}

#[test]
fn three_independent_mistakes_give_three_diagnostics() {
    let input = agent("  name: worker", "  name: Worker");
    let input = replace(&input, "    timeout: 30m", "    timeout: 10 minutes");
    let input = replace(&input, "  validation:", "  validation:\n    threshold: 2");
    let all = diagnostics(AGENT_FILE, &input);
    let positions: Vec<_> = all.iter().map(|d| (d.line, d.column)).collect();
    assert_eq!(positions, [(4, 9), (9, 14), (11, 16)], "{all}");
    assert_eq!(all.to_string().lines().count(), 3);
}

#[test]
fn every_document_of_a_file_is_checked() {
    let second = replace(AGENT, "  name: worker", "  name: other");
    let second = replace(&second, "    timeout: 30m", "    timeout: soon");
    let input = format!("{}---\n{second}", agent("agentgrid.dev/v1", "v9"));
    let all = diagnostics(AGENT_FILE, &input);
    let positions: Vec<_> = all.iter().map(|d| (d.line, d.column)).collect();
    assert_eq!(positions, [(1, 13), (23, 14)], "{all}");
}

#[test]
fn duplicate_names_in_one_file_point_at_the_second() {
    let input = format!("{AGENT}---\n{AGENT}");
    check(
        AGENT_FILE,
        &input,
        "18:9: metadata.name: the agent name `worker` is already used at agents/worker.yaml:4:9",
    );
}

#[test]
fn broken_sandbox_profiles_point_at_the_problem() {
    let with = |sandbox: &str| {
        agent(
            "  limits:\n    timeout: 30m\n",
            &format!("  limits:\n    timeout: 30m\n  sandbox:\n{sandbox}"),
        )
    };
    check(
        AGENT_FILE,
        &with("    filesystem: everything\n"),
        "11:17: spec.sandbox.filesystem: expected one of `workspace-write`, `read-only`, `none`, found `everything`",
    );
    check(
        AGENT_FILE,
        &with("    network: internet\n"),
        "11:14: spec.sandbox.network: expected one of `none`, `gateway`, `host`",
    );
    check(
        AGENT_FILE,
        &with("    limits: {memory: lots}\n"),
        "11:22: spec.sandbox.limits.memory: `lots` is not a size",
    );
    check(
        AGENT_FILE,
        &with("    limits: {processes: 0}\n"),
        "11:25: spec.sandbox.limits.processes: must be 1 or more",
    );
    check(
        AGENT_FILE,
        &with("    limits: {cpu: 1m}\n"),
        "11:14: spec.sandbox.limits: unknown field `cpu`",
    );
    check(
        AGENT_FILE,
        &with(
            "    expose: [/opt/tools, opt/other]
",
        ),
        "11:26: spec.sandbox.expose[1]: `opt/other` is not an absolute path",
    );
    check(
        AGENT_FILE,
        &with(
            "    writable: [/var/cache/../../etc]
",
        ),
        "11:16: spec.sandbox.writable[0]: `/var/cache/../../etc` contains `..`",
    );
    check(
        AGENT_FILE,
        &with("    writable: /var/cache\n"),
        "11:15: spec.sandbox.writable: expected a list of absolute paths",
    );
}

#[test]
fn sandbox_profiles_parse_with_defaults_and_name_their_relaxations() {
    let input = agent(
        "  limits:\n    timeout: 30m\n",
        "  limits:\n    timeout: 30m\n  sandbox:\n    network: host\n    limits: {memory: 512MiB, cpu_time: 2m}\n",
    );
    let agents = parse_agents(&input, Path::new(AGENT_FILE)).unwrap();
    let sandbox = &agents[0].manifest.spec.sandbox;
    assert_eq!(sandbox.filesystem, manifest::FilesystemMode::WorkspaceWrite);
    assert_eq!(sandbox.network, manifest::NetworkMode::Host);
    assert_eq!(sandbox.limits.memory, domain::ByteSize(512 << 20));
    assert_eq!(sandbox.limits.cpu_time, domain::Duration::from_mins(2));
    assert_eq!(
        sandbox.limits.processes, 1024,
        "unset limits keep their defaults"
    );
    assert_eq!(
        sandbox.relaxations(),
        vec!["network: host (full network access)"]
    );
    let input = agent(
        "  limits:\n    timeout: 30m\n",
        "  limits:\n    timeout: 30m\n  sandbox:\n    expose: [/opt/tools]\n    writable:\n      - /var/cache/pip\n",
    );
    let agents = parse_agents(&input, Path::new(AGENT_FILE)).unwrap();
    let sandbox = &agents[0].manifest.spec.sandbox;
    assert_eq!(sandbox.expose, vec![Path::new("/opt/tools")]);
    assert_eq!(sandbox.writable, vec![Path::new("/var/cache/pip")]);
    assert_eq!(
        sandbox.relaxations(),
        vec![
            "expose: /opt/tools (read-only)",
            "writable: /var/cache/pip (read-write)"
        ]
    );
}

const MODELS: &str = "  models:
    providers:
      anthropic: {kind: anthropic, base_url: https://api.anthropic.com, api_key_env: ANTHROPIC_API_KEY}
    aliases:
      default: {provider: anthropic, model: claude-sonnet-4-5, prices: {input: 3, output: 15, cached_input: 0.3}}
  budgets:
    per_execution: {tokens: 2000000, cost: 5}
    per_tree: {cost: 20.5}
";

#[test]
fn models_and_budgets_parse() {
    let input = format!("{CONFIG}{MODELS}");
    let spec = parse_config(&input, Path::new(CONFIG_FILE)).unwrap();
    let provider = &spec.models.providers["anthropic"];
    assert_eq!(provider.kind, manifest::ProviderKind::Anthropic);
    assert_eq!(provider.api_key_env.as_deref(), Some("ANTHROPIC_API_KEY"));
    let alias = &spec.models.aliases["default"];
    assert_eq!(
        (alias.provider.as_str(), alias.model.as_str()),
        ("anthropic", "claude-sonnet-4-5")
    );
    assert_eq!(alias.prices.output, 15.0);
    assert_eq!(spec.budgets.per_execution.tokens, Some(2_000_000));
    assert_eq!(spec.budgets.per_tree.cost, Some(20.5));
    assert_eq!(spec.budgets.per_agent_per_day, manifest::Budget::default());
}

#[test]
fn broken_models_point_at_the_problem() {
    let with = |old: &str, new: &str| format!("{CONFIG}{}", MODELS.replacen(old, new, 1));
    check(
        CONFIG_FILE,
        &with("kind: anthropic,", "kind: claude,"),
        "8:25: spec.models.providers.anthropic.kind: expected one of `openai`, `anthropic`, `openai-compatible`, `gemini`, found `claude`",
    );
    check(
        CONFIG_FILE,
        &with("https://api.anthropic.com", "api.anthropic.com"),
        "8:46: spec.models.providers.anthropic.base_url: `api.anthropic.com` is not an http(s) URL",
    );
    check(
        CONFIG_FILE,
        &with("api_key_env: ANTHROPIC_API_KEY", "api_key_env: sk-ant-123"),
        "8:86: spec.models.providers.anthropic.api_key_env: is not an environment variable name",
    );
    let leaked = diagnostics(
        CONFIG_FILE,
        &with("api_key_env: ANTHROPIC_API_KEY", "api_key_env: sk-ant-123"),
    );
    assert!(
        !leaked.to_string().contains("sk-ant-123"),
        "a pasted key is never echoed"
    );
    check(
        CONFIG_FILE,
        &with("{provider: anthropic,", "{provider: openai,"),
        "10:27: spec.models.aliases.default.provider: no provider `openai` under spec.models.providers (known: anthropic)",
    );
    check(
        CONFIG_FILE,
        &with("output: 15", "output: -1"),
        "10:91: spec.models.aliases.default.prices.output: must be 0 or more",
    );
    check(
        CONFIG_FILE,
        &with("per_tree: {cost: 20.5}", "per_tree: {dollars: 20.5}"),
        "13:16: spec.budgets.per_tree: unknown field `dollars`; allowed fields here: tokens, cost",
    );
}

#[test]
fn model_limits_parse_and_bad_ones_are_named() {
    let limits =
        "    limits: {concurrent_requests: 2, idle_timeout: 30s, max_output_tokens: 4096}\n";
    let input = format!(
        "{CONFIG}{}",
        MODELS.replacen("  budgets:", &format!("{limits}  budgets:"), 1)
    );
    let spec = parse_config(&input, Path::new(CONFIG_FILE)).unwrap();
    let got = &spec.models.limits;
    assert_eq!(got.concurrent_requests, 2);
    assert_eq!(got.idle_timeout, domain::Duration::from_secs(30));
    assert_eq!(got.max_output_tokens, 4096);
    assert_eq!(
        got.total_timeout,
        manifest::ModelLimits::default().total_timeout
    );
    let broken = input.replacen("concurrent_requests: 2", "concurrent_requests: 0", 1);
    let text = diagnostics(CONFIG_FILE, &broken).to_string();
    assert!(
        text.contains("spec.models.limits.concurrent_requests: must be 1 or more"),
        "{text}"
    );
    let broken = input.replacen("idle_timeout: 30s", "idle_time: 30s", 1);
    let text = diagnostics(CONFIG_FILE, &broken).to_string();
    assert!(text.contains("unknown field `idle_time`"), "{text}");
}

#[test]
fn a_sandbox_can_be_turned_off_only_explicitly_and_says_so() {
    let input = agent(
        "  limits:\n    timeout: 30m\n",
        "  limits:\n    timeout: 30m\n  sandbox: {enabled: false}\n",
    );
    let agents = parse_agents(&input, Path::new(AGENT_FILE)).unwrap();
    let sandbox = &agents[0].manifest.spec.sandbox;
    assert!(!sandbox.enabled);
    assert_eq!(
        sandbox.relaxations(),
        vec!["no sandbox at all (no isolation and no limits)"]
    );
    let default = parse_agents(AGENT, Path::new(AGENT_FILE)).unwrap();
    assert!(
        default[0].manifest.spec.sandbox.enabled,
        "sandboxed unless the manifest says otherwise"
    );
    check(
        AGENT_FILE,
        &agent(
            "  limits:\n    timeout: 30m\n",
            "  limits:\n    timeout: 30m\n  sandbox: {enabled: nope}\n",
        ),
        "10:22: spec.sandbox.enabled: expected true or false",
    );
}

#[test]
fn trusted_git_drivers_parse_and_remember_where_they_were_named() {
    let input = format!("{CONFIG}  workspace:\n    git: {{drivers: [lfs, my_diff]}}\n");
    let spec = parse_config(&input, Path::new(CONFIG_FILE)).unwrap();
    let drivers = &spec.workspace.git.drivers;
    let names: Vec<&str> = drivers.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["lfs", "my_diff"]);
    let place = drivers[1].place.as_ref().unwrap();
    assert_eq!(
        place.diagnostic("not defined").to_string(),
        "config.yaml:7:26: not defined"
    );
}

#[test]
fn model_fallbacks_and_quota_pauses_parse_and_bad_ones_are_named() {
    let with_aliases = |extra: &str| {
        let models = MODELS
            .replacen(
                "api_key_env: ANTHROPIC_API_KEY}",
                "api_key_env: ANTHROPIC_API_KEY, quota_pause: 15m}",
                1,
            )
            .replacen("  budgets:", &format!("{extra}  budgets:"), 1);
        format!("{CONFIG}{models}")
    };
    let good = with_aliases(
        "      backup: {provider: anthropic, model: claude-haiku-4-5, fallback: last}\n      \
         last: {provider: anthropic, model: claude-3-haiku}\n",
    );
    let good = good.replacen(
        "model: claude-sonnet-4-5,",
        "model: claude-sonnet-4-5, fallback: backup,",
        1,
    );
    let spec = parse_config(&good, Path::new(CONFIG_FILE)).unwrap();
    assert_eq!(
        spec.models.aliases["default"].fallback.as_deref(),
        Some("backup")
    );
    assert_eq!(spec.models.aliases["last"].fallback, None);
    assert_eq!(
        spec.models.providers["anthropic"].quota_pause,
        domain::Duration::from_mins(15)
    );

    check(
        CONFIG_FILE,
        &with_aliases("      backup: {provider: anthropic, model: m, fallback: nowhere}\n"),
        "11:57: spec.models.aliases.backup.fallback: no alias `nowhere` under spec.models.aliases (known: default, backup)",
    );
    check(
        CONFIG_FILE,
        &with_aliases("      backup: {provider: anthropic, model: m, fallback: backup}\n"),
        "11:57: spec.models.aliases.backup.fallback: an alias cannot fall back to itself",
    );
    let circle = with_aliases("      backup: {provider: anthropic, model: m, fallback: default}\n")
        .replacen(
            "model: claude-sonnet-4-5,",
            "model: claude-sonnet-4-5, fallback: backup,",
            1,
        );
    check(
        CONFIG_FILE,
        &circle,
        "11:57: spec.models.aliases.backup.fallback: the fallbacks go round in a circle (backup → default → backup)",
    );
    check(
        CONFIG_FILE,
        &with_aliases("").replacen("quota_pause: 15m", "quota_pause: soon", 1),
        "8:118: spec.models.providers.anthropic.quota_pause: `soon` is not a duration",
    );
}

#[test]
fn only_an_openai_compatible_provider_may_say_it_serves_the_responses_api() {
    let local = "      local: {kind: openai-compatible, base_url: http://127.0.0.1:8000/v1, responses: true}\n";
    let models = MODELS.replacen("    aliases:", &format!("{local}    aliases:"), 1);
    let spec = parse_config(&format!("{CONFIG}{models}"), Path::new(CONFIG_FILE)).unwrap();
    assert!(spec.models.providers["local"].responses);
    assert!(!spec.models.providers["anthropic"].responses);
    let on_anthropic = MODELS.replacen(
        "api_key_env: ANTHROPIC_API_KEY}",
        "api_key_env: ANTHROPIC_API_KEY, responses: true}",
        1,
    );
    check(
        CONFIG_FILE,
        &format!("{CONFIG}{on_anthropic}"),
        "8:116: spec.models.providers.anthropic.responses: only `openai-compatible` providers take `responses`; this one is `anthropic`",
    );
    check(
        CONFIG_FILE,
        &format!(
            "{CONFIG}{}",
            models.replacen("responses: true", "responses: maybe", 1)
        ),
        "9:87: spec.models.providers.local.responses: expected true or false",
    );
}

/// `AGENT` with the built-in runtime in place of the command; `runtime` replaces its fields.
fn builtin_agent(runtime: &str, sandbox: &str) -> String {
    agent(
        "  runtime:\n    command: [my-agent, \"{{ task.id }}\"]",
        &format!("  runtime:\n{runtime}{sandbox}"),
    )
}

#[test]
fn builtin_runtimes_parse_and_misuse_is_named() {
    let gateway = "  sandbox: {network: gateway}\n";
    let agents = parse_agents(
        &builtin_agent("    type: builtin\n    model: claude\n", gateway),
        Path::new(AGENT_FILE),
    )
    .unwrap();
    let runtime = &agents[0].manifest.spec.runtime;
    assert_eq!(runtime.kind, manifest::RuntimeKind::Builtin);
    assert_eq!(runtime.model.as_deref(), Some("claude"));
    assert!(runtime.command.is_empty());
    // Without a model the gateway picks the execution's alias.
    let agents = parse_agents(
        &builtin_agent("    type: builtin\n", gateway),
        Path::new(AGENT_FILE),
    )
    .unwrap();
    assert_eq!(agents[0].manifest.spec.runtime.model, None);

    let cases: Vec<(String, &str)> = vec![
        (
            builtin_agent("    type: builtin\n    command: [my-agent]\n", gateway),
            "8:14: spec.runtime.command: `command` is not used with `type: builtin`",
        ),
        (
            builtin_agent("    type: builtin\n    stdin: prompt\n", gateway),
            "8:12: spec.runtime.stdin: `stdin` is not used with `type: builtin`",
        ),
        (
            builtin_agent("    type: builtin\n    model: \"\"\n", gateway),
            "8:12: spec.runtime.model: the model alias is empty",
        ),
        (
            builtin_agent("    command: [my-agent]\n    model: claude\n", ""),
            "8:12: spec.runtime.model: `model` is for `type: builtin`",
        ),
        (
            builtin_agent("    type: builtin\n", ""),
            "7:5: spec.runtime: the built-in agent talks to the model gateway, which `sandbox.network: none` cuts off",
        ),
    ];
    for (input, expected) in cases {
        check(AGENT_FILE, &input, expected);
    }
}

#[test]
fn a_broken_approval_policy_points_at_the_problem() {
    let with = |policy: &str| format!("{CONFIG}  approvals: {policy}\n");
    let cases = [
        (
            with("{before_land: yes please}"),
            "6:28: spec.approvals.before_land: expected",
        ),
        (
            with("{require_labels: [review, \"two words\"]}"),
            "6:40: spec.approvals.require_labels[1]: label `two words` is not allowed",
        ),
        (
            with("{require_labels: [review, review]}"),
            "6:40: spec.approvals.require_labels[1]: `review` is listed twice",
        ),
        (
            with("{before_land: true, require_labels: [review]}"),
            "6:50: spec.approvals.require_labels: has no effect while before_land is true",
        ),
        (
            with("{befor_land: true}"),
            "6:15: spec.approvals: unknown field `befor_land` (did you mean `before_land`?)",
        ),
    ];
    for (input, expected) in &cases {
        check(CONFIG_FILE, input, expected);
    }
}

#[test]
fn an_approval_policy_names_the_tasks_that_wait() {
    let input = format!("{CONFIG}  approvals: {{require_labels: [review]}}\n");
    let config = parse_config(&input, Path::new(CONFIG_FILE)).unwrap();
    let policy = &config.approvals;
    assert!(policy.wants(&["review".to_string()]));
    assert!(!policy.wants(&["docs".to_string()]));
    let every = manifest::Approvals {
        before_land: true,
        require_labels: Vec::new(),
        land_after: false,
    };
    assert!(every.wants(&[]));
    assert!(!manifest::Approvals::default().wants(&["review".to_string()]));
    assert!(
        !policy.land_after,
        "landing after an approval is asked for, not assumed"
    );
    let input = format!("{CONFIG}  approvals: {{before_land: true, land_after: true}}\n");
    assert!(
        parse_config(&input, Path::new(CONFIG_FILE))
            .unwrap()
            .approvals
            .land_after
    );
    check(
        CONFIG_FILE,
        &format!("{CONFIG}  approvals: {{land_after: maybe}}\n"),
        "6:27: spec.approvals.land_after: expected true or false",
    );
}
