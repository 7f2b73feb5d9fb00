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
    command: &'static str,
    stdin: &'static str,
}

const KNOWN_CLIS: &[KnownCli] = &[
    KnownCli {
        binary: "claude",
        name: "claude",
        command: r#"["claude", "-p", "--permission-mode", "acceptEdits"]"#,
        stdin: "prompt",
    },
    KnownCli {
        binary: "codex",
        name: "codex",
        command: r#"["codex", "exec", "--full-auto", "-"]"#,
        stdin: "prompt",
    },
    KnownCli {
        binary: "aider",
        name: "aider",
        command: r#"["sh", "-c", "aider --yes-always --no-auto-commits --message-file \"$AGENTGRID_PROMPT_FILE\""]"#,
        stdin: "none",
    },
    KnownCli {
        binary: "gemini",
        name: "gemini",
        command: r#"["gemini", "--yolo"]"#,
        stdin: "prompt",
    },
    KnownCli {
        binary: "opencode",
        name: "opencode",
        command: r#"["sh", "-c", "opencode run \"$(cat \"$AGENTGRID_PROMPT_FILE\")\""]"#,
        stdin: "none",
    },
];

fn agent_yaml(
    name: &str,
    description: &str,
    command: &str,
    stdin: &str,
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
    type: command
    # Each element is a template; `{{{{ prompt }}}}` is the rendered prompt. The prompt is also in
    # the file named by $AGENTGRID_PROMPT_FILE.
    command: {command}
    stdin: {stdin}
  prompt: |
{prompt}  routing:
    default: true        # takes every task no other agent matches
  limits:
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

pub async fn init(dir: Option<&Path>) -> anyhow::Result<u8> {
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
    write(state.join("config.yaml"), CONFIG_YAML)?;
    write(state.join(".gitignore"), GITIGNORE)?;
    let has_agents = std::fs::read_dir(&agents)?.flatten().any(|e| {
        e.path()
            .extension()
            .is_some_and(|x| x == "yaml" || x == "yml")
    });
    let found = KNOWN_CLIS.iter().find(|c| on_path(c.binary));
    if !has_agents {
        match found {
            Some(cli) => write(
                agents.join(format!("{}.yaml", cli.name)),
                &agent_yaml(
                    cli.name,
                    &format!("Runs the {} CLI found on PATH.", cli.binary),
                    cli.command,
                    cli.stdin,
                    3,
                ),
            )?,
            None => write(
                agents.join("worker.yaml"),
                &agent_yaml(
                    "worker",
                    "A template: replace the command with your agent CLI (claude, codex, aider, …).",
                    r#"["sh", "-c", "echo 'edit .agentgrid/agents/worker.yaml: set runtime.command to your agent CLI' >&2; exit 1"]"#,
                    "none",
                    // The template cannot succeed; one attempt shows its message without waiting
                    // through retries.
                    1,
                ),
            )?,
        }
    }
    // Opening the store creates the database and runs its migrations.
    let db = state.join(DATABASE);
    store::SqliteStore::open(&db)?;
    for p in &made {
        outln!("created {}", p.strip_prefix(&root).unwrap_or(p).display());
    }
    for p in &kept {
        outln!("kept    {}", p.strip_prefix(&root).unwrap_or(p).display());
    }
    outln!(
        "database {}",
        db.strip_prefix(&root).unwrap_or(&db).display()
    );
    if !has_agents && found.is_none() {
        outln!(
            "\nNo agent CLI (claude, codex, aider, gemini, opencode) is on PATH: edit .agentgrid/agents/worker.yaml."
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
