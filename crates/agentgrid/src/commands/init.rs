//! `agentgrid init`: set up `.agentgrid/` in a git repository, keeping what is already there.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::project::{DATABASE, STATE_DIR};
use crate::user_error;

pub const CONFIG_YAML: &str = r#"# agentgrid node configuration. Every field is optional; the values shown are the defaults.
apiVersion: agentgrid.dev/v1
kind: Config
spec:
  concurrency:
    global: 2            # executions at once on this machine
    per_label: {}        # e.g. {db-migration: 1}
  retry:
    base_delay: 10s      # first retry after a failure; doubles each time
    max_delay: 5m
  continuation:
    delay: 1s
    max: 3
  resume:
    interval: 10m        # while sub-tasks run, their parent is looked at this often
  guards:                # runaway protection
    max_depth: 3
    max_children: 20
    max_executions_per_task: 20
    max_executions_per_tree: 200
    max_new_executions_per_minute: 120
  workspace:
    enabled: true        # each task works in its own git worktree on branch agentgrid/task-<id>
    root: .agentgrid/workspaces
    base: HEAD
    hooks:               # shell lines run inside the worktree, in the agent's sandbox
                         # ({run: "make fmt", host: true} runs one on the host)
      after_create: ""
      before_run: ""
      after_run: ""
      before_remove: ""
      timeout: 2m
    git:
      drivers: []        # filter/diff/merge drivers host git may run, as your ~/.gitconfig
                         # defines them: [lfs] for a repository that uses git-lfs
  shutdown_grace: 10s
  lease: 30s             # an execution's claim; renewed every third of it while it runs
"#;

const GITIGNORE: &str = "# Runtime state of agentgrid; the YAML files are meant to be committed.\nagentgrid.db*\nengine.lock\nlogs/\nrun/\nworkspaces/\n";

const PROMPT: &str = r#"You are working on task #{{ task.id }} in a git worktree of this repository.

# {{ task.title }}
{{ task.body }}
{% if parent %}
This is a sub-task of #{{ parent.id }}: {{ parent.title }}
{% endif %}{% if children %}
Sub-tasks so far:
{% for c in children %}- #{{ c.id }} [{{ c.state }}] {{ c.title }}
{% endfor %}{% endif %}{% if feedback %}
Your previous attempt did not pass validation. Fix this:
{{ feedback }}
{% endif %}
When the task is too big for one sitting, split it: run
`agentgrid ctl subtask create "<title>" --body "<details>"` once per piece, then stop.
When you are done, run `agentgrid ctl complete --summary "<what you did>"`.
If you cannot go on without a person, run `agentgrid ctl block --reason "<question>"`.
Your changes are committed for you when you exit.
"#;

/// An agent CLI we know how to drive non-interactively.
struct KnownCli {
    binary: &'static str,
    name: &'static str,
    /// The runtime's lines under `runtime:`: a CLI's type, or a `command` with its `stdin`.
    runtime: &'static str,
    /// The runtime type, whose adapter finds the program and what the sandbox shows with it.
    kind: manifest::RuntimeKind,
}

const KNOWN_CLIS: &[KnownCli] = &[
    KnownCli {
        binary: "claude",
        name: "claude",
        // The adapter adds `-p`, stream-json output, the model alias and the permission mode.
        runtime: "    type: claude\n",
        kind: manifest::RuntimeKind::Claude,
    },
    KnownCli {
        binary: "codex",
        name: "codex",
        // The adapter adds `exec --json`, the model alias, Codex's sandbox and approvals off
        // (agentgrid's sandbox is the one), and a provider for the gateway in its own HOME.
        runtime: "    type: codex\n",
        kind: manifest::RuntimeKind::Codex,
    },
    KnownCli {
        binary: "aider",
        name: "aider",
        // The adapter adds `--message-file` with the prompt file, `--yes-always`, `--no-git`, its update
        // checks and analytics off, and the alias as `openai/ALIAS` at the gateway.
        runtime: "    type: aider\n",
        kind: manifest::RuntimeKind::Aider,
    },
    KnownCli {
        binary: "gemini",
        name: "gemini",
        // The adapter adds stream-json output, the model alias, approvals off, and settings
        // in its own HOME that select the gateway's key and turn off telemetry and updates.
        runtime: "    type: gemini\n",
        kind: manifest::RuntimeKind::Gemini,
    },
    KnownCli {
        binary: "opencode",
        name: "opencode",
        // The adapter adds `run --format json`, the model alias, and a provider for the
        // gateway in its own HOME.
        runtime: "    type: opencode\n",
        kind: manifest::RuntimeKind::Opencode,
    },
];

/// The template agent written when no CLI is found: it cannot succeed and says what to edit.
const TEMPLATE_RUNTIME: &str = r#"    type: command
    # Each element is a template; `{{ prompt }}` is the rendered prompt. The prompt is also in
    # the file named by $AGENTGRID_PROMPT_FILE.
    command: ["sh", "-c", "echo 'edit .agentgrid/agents/worker.yaml: set runtime.command to your agent CLI' >&2; exit 1"]
    stdin: none
"#;

/// A provider whose key is in the environment, and the model alias `init` writes for it.
struct KeyedProvider {
    env: &'static str,
    /// The variable the provider's own tools read another base URL from (a proxy, a gateway
    /// of the user's company): when it is set, the provider is written with it.
    base_url_env: &'static str,
    name: &'static str,
    kind: &'static str,
    base_url: &'static str,
    model: &'static str,
}

/// In the order `init` prefers them when several keys are set.
const KEYED_PROVIDERS: &[KeyedProvider] = &[
    KeyedProvider {
        env: "ANTHROPIC_API_KEY",
        base_url_env: "ANTHROPIC_BASE_URL",
        name: "anthropic",
        kind: "anthropic",
        base_url: "https://api.anthropic.com",
        model: "claude-sonnet-4-5",
    },
    KeyedProvider {
        env: "OPENAI_API_KEY",
        base_url_env: "OPENAI_BASE_URL",
        name: "openai",
        kind: "openai",
        // OpenAI's paths hang off the version prefix.
        base_url: "https://api.openai.com/v1",
        model: "gpt-5",
    },
    KeyedProvider {
        env: "GEMINI_API_KEY",
        base_url_env: "GOOGLE_GEMINI_BASE_URL",
        name: "gemini",
        kind: "gemini",
        base_url: "https://generativelanguage.googleapis.com",
        model: "gemini-2.5-pro",
    },
];

/// The config's `models:` section for the first provider whose key the environment has; the
/// key stays in the engine's environment, the manifest names only the variable.
fn models_yaml(
    has_key: impl Fn(&str) -> bool,
    base_url_of: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    let p = KEYED_PROVIDERS.iter().find(|p| has_key(p.env))?;
    let base_url = base_url_of(p.base_url_env)
        .map(|url| url.trim_end_matches('/').to_owned())
        .filter(|url| usable_base_url(url))
        .unwrap_or_else(|| p.base_url.to_owned());
    Some(format!(
        r#"  models:               # agents reach models only through agentgrid's gateway
    providers:
      {name}: {{kind: {kind}, base_url: "{base_url}", api_key_env: {env}}}
    aliases:
      default:           # the alias agents ask for when their manifest names none
        provider: {name}
        model: {model}
        prices: {{input: 0, output: 0}}   # US dollars per million tokens: set them for costs
"#,
        name = p.name,
        kind = p.kind,
        base_url = base_url,
        env = p.env,
        model = p.model,
    ))
}

/// Whether `url` may be written into the config as a provider's base URL: an http(s) URL on
/// one line that needs no quoting in YAML. Anything else is left out (the provider's own
/// default is written), since `validate` would refuse it later with less context.
fn usable_base_url(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= 2048
        && url
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '#' | '{' | '}' | ','))
}

fn agent_yaml(
    name: &str,
    description: &str,
    runtime: &str,
    routing: &str,
    network: &str,
    max_attempts: u32,
) -> String {
    let prompt: String = PROMPT
        .lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_string()
            } else {
                format!("    {l}\n")
            }
        })
        .collect();
    format!(
        r#"apiVersion: agentgrid.dev/v1
kind: Agent
metadata:
  name: {name}
spec:
  description: "{description}"
  runtime:
{runtime}  prompt: |
{prompt}  routing:
{routing}  sandbox:
{network}  limits:
    timeout: 30m
    stall_timeout: 5m
    max_attempts: {max_attempts}
  # Success comes from evidence: add validators that prove the work, for example
  # validation:
  #   threshold: 1.0
  #   validators:
  #     - name: tests
  #       run: "cargo test 2>&1"
  #       score: passed-failed
"#
    )
}

pub async fn init(
    dir: Option<&Path>,
    agencies: &[String],
    runtime: Option<&str>,
) -> anyhow::Result<u8> {
    let start = match dir {
        Some(d) => d.to_path_buf(),
        None => std::env::current_dir()?,
    };
    let root = git_toplevel(&start).await?;
    let state = root.join(STATE_DIR);
    let agents = state.join("agents");
    std::fs::create_dir_all(&agents)?;
    let mut made = Vec::new();
    let mut kept = Vec::new();
    let mut write = |path: PathBuf, text: &str| -> anyhow::Result<()> {
        if path.exists() {
            kept.push(path);
        } else {
            std::fs::write(&path, text)?;
            made.push(path);
        }
        Ok(())
    };
    let has_key = |var: &str| std::env::var_os(var).is_some_and(|v| !v.is_empty());
    let base_url_of = |var: &str| std::env::var(var).ok().filter(|v| !v.is_empty());
    let models = models_yaml(has_key, base_url_of);
    let config = match &models {
        Some(models) => format!("{CONFIG_YAML}{models}"),
        None => CONFIG_YAML.to_string(),
    };
    write(state.join("config.yaml"), &config)?;
    write(state.join(".gitignore"), GITIGNORE)?;
    let has_agents = std::fs::read_dir(&agents)?.flatten().any(|e| {
        e.path()
            .extension()
            .is_some_and(|x| x == "yaml" || x == "yml")
    });
    let found: Vec<&KnownCli> = KNOWN_CLIS.iter().filter(|c| on_path(c.binary)).collect();
    let mut notes: Vec<String> = Vec::new();
    if !has_agents {
        for (i, cli) in found.iter().enumerate() {
            // The first CLI found takes every task; the others take the tasks labelled with
            // their name.
            let routing = if i == 0 {
                "    default: true        # takes every task no other agent matches\n".to_string()
            } else {
                format!(
                    "    labels: [{}]       # takes the tasks labelled so\n",
                    cli.name
                )
            };
            // What the sandbox would hide that the CLI needs (its interpreter) or may need
            // (the toolchains of the PATH), written as `sandbox.expose` entries.
            let offer = executor::runtime::adapter(cli.kind)
                .map(|adapter| crate::toolchains::Offer::for_cli(&root, &state, adapter.as_ref()))
                .unwrap_or_default();
            let file = agents.join(format!("{}.yaml", cli.name));
            notes.extend(
                offer
                    .notes(cli.binary, file.strip_prefix(&root).unwrap_or(&file))
                    .into_iter()
                    .map(|n| format!("{}: {n}", cli.name)),
            );
            write(
                file,
                &agent_yaml(
                    cli.name,
                    &format!("Runs the {} CLI found on PATH.", cli.binary),
                    cli.runtime,
                    &routing,
                    &format!(
                        "    network: gateway     # the model gateway is the only place it can reach\n{}",
                        offer.yaml(cli.binary)
                    ),
                    3,
                ),
            )?;
        }
        // Seeded agencies bring agents of their own; the example that only fails is left out.
        if found.is_empty() && agencies.is_empty() {
            write(
                agents.join("worker.yaml"),
                &agent_yaml(
                    "worker",
                    "A template: replace the command with your agent CLI (claude, codex, aider, …).",
                    TEMPLATE_RUNTIME,
                    "    default: true        # takes every task no other agent matches\n",
                    "    network: none        # `gateway` once models are set up in config.yaml\n",
                    // The template cannot succeed; one attempt shows its message without waiting
                    // through retries.
                    1,
                ),
            )?;
        }
    }
    let chosen: Vec<(&str, &str)> = agencies.iter().map(|a| (a.as_str(), a.as_str())).collect();
    let seeded = if chosen.is_empty() {
        None
    } else {
        let names: Vec<&str> = chosen.iter().map(|(n, _)| *n).collect();
        Some(super::agency::write_agencies(
            &state, &chosen, runtime, &names,
        )?)
    };
    // Opening the store creates the database and runs its migrations.
    let db = state.join(DATABASE);
    store::SqliteStore::open(&db)?;
    for p in &made {
        outln!("created {}", p.strip_prefix(&root).unwrap_or(p).display());
    }
    for p in &kept {
        outln!("kept    {}", p.strip_prefix(&root).unwrap_or(p).display());
    }
    for note in &notes {
        outln!("{}", domain::text::one_line(note));
    }
    if let Some(seeded) = &seeded {
        super::agency::report(&root, seeded);
    }
    outln!(
        "database {}",
        db.strip_prefix(&root).unwrap_or(&db).display()
    );
    if !has_agents && found.is_empty() && agencies.is_empty() {
        outln!(
            "\nNo agent CLI (claude, codex, aider, gemini, opencode) is on PATH: edit .agentgrid/agents/worker.yaml."
        );
    }
    if models.is_none() {
        outln!(
            "\nNo model key (ANTHROPIC_API_KEY, OPENAI_API_KEY, GEMINI_API_KEY) is set: add a provider under `models:` in .agentgrid/config.yaml, or set a key and run init again in a fresh project."
        );
    }
    outln!("\nNext: agentgrid task add \"…\" && agentgrid run");
    Ok(crate::exit::OK)
}

/// The top of the git work tree containing `dir`, or a clear refusal.
pub async fn git_toplevel(dir: &Path) -> anyhow::Result<PathBuf> {
    if !dir.is_dir() {
        return Err(user_error(format!("{} is not a directory", dir.display())));
    }
    let spec = launch::LaunchSpec::new("git", dir).args(["rev-parse", "--show-toplevel"]);
    let out = launch::run(spec, Duration::from_secs(30), 64 * 1024)
        .await
        .map_err(|e| user_error(format!("cannot run git: {e}; agentgrid needs git on PATH")))?;
    if !out.success() {
        return Err(user_error(format!(
            "{} is not inside a git repository: run `git init` (and make a first commit) first",
            dir.display()
        )));
    }
    Ok(PathBuf::from(out.stdout.trim()))
}

fn on_path(binary: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(binary).is_file()))
        .unwrap_or(false)
}
