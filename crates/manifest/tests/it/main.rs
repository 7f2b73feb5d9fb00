//! Integration tests of the manifest crate: the documented examples, broken manifests, templates,
//! whole projects on disk, and the committed JSON schema.

mod agencies;
mod broken;
mod examples;
mod project;
mod schema;
mod templates;
mod workflows;

/// The agent example from the manifest documentation, verbatim.
pub const FULL_AGENT: &str = r#"apiVersion: agentgrid.dev/v1
kind: Agent
metadata:
  name: worker            # [a-z0-9][a-z0-9-]{0,62}, unique across the project
  labels: {team: core}    # optional map
spec:
  description: Writes code for small tasks.
  runtime:
    type: command
    command: ["sh", "-c", "my-agent --prompt-file \"$AGENTGRID_PROMPT_FILE\""]   # each element is a minijinja template
    env: {MY_VAR: "{{ task.id }}"}      # values are templates; keys [A-Z_][A-Z0-9_]*, AGENTGRID_* reserved
    stdin: none                         # none | prompt   (prompt = the rendered prompt is written to stdin)
  prompt: |
    You work on task #{{ task.id }}: {{ task.title }}
    {% if feedback %}Last iteration failed:\n{{ feedback }}{% endif %}
  routing:
    labels: [backend]        # the agent takes tasks having at least one of these labels (empty = no label requirement)
    capabilities: [python]   # a task label `needs:X` requires capability X
    default: false           # takes tasks no other agent matches
    kinds: [work, resume]    # which execution kinds it runs (default both)
  limits:
    timeout: 30m             # wall time per iteration of the agent process
    stall_timeout: 5m        # no output for this long = stalled
    concurrency: 2           # optional cap of simultaneous executions of this agent
    max_iterations: 3        # generate → validate passes in one execution
    max_attempts: 3          # executions after failures before the task fails
  validation:
    threshold: 1.0           # weighted score needed, 0..1
    validators:
      - name: tests
        command: ["sh", "-c", "python3 -m unittest -v 2>&1"]   # or `run: "shell line"` (runs `sh -c`)
        timeout: 5m
        weight: 1
        score: unittest      # exit | passed-failed | pytest | unittest | cargo-test | nextest | go-test | jest | vitest | mocha | junit (with report:) | {regex: "score=(?P<score>[0-9.]+)"}
        score_only: false    # true: only the score counts; a failure of this validator does not fail the iteration
"#;

/// The config example from the manifest documentation, verbatim.
pub const FULL_CONFIG: &str = r#"apiVersion: agentgrid.dev/v1
kind: Config
spec:
  concurrency: {global: 2, per_label: {db: 1}}
  retry: {base_delay: 10s, max_delay: 5m}
  continuation: {delay: 1s, max: 3}
  resume: {interval: 10m}
  guards: {max_depth: 3, max_children: 20, max_executions_per_task: 20, max_executions_per_tree: 200, max_new_executions_per_minute: 120}
  workspace:
    enabled: true
    root: .agentgrid/workspaces
    base: HEAD
    hooks: {after_create: "", before_run: "", after_run: "", before_remove: "", timeout: 2m}   # each optional shell line
  shutdown_grace: 10s
  land:
    strategy: merge
  approvals: {before_land: false, require_labels: [], land_after: false}   # true: every done task waits for a person
"#;

/// The smallest valid agent: everything else takes its default.
pub const MINIMAL_AGENT: &str = "\
apiVersion: agentgrid.dev/v1
kind: Agent
metadata:
  name: minimal
spec:
  runtime:
    command: [my-agent]
";
