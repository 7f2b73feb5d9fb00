//! The command-line grammar, with the help text users read.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use domain::{ExecutionId, TaskId, TaskState};

#[derive(Debug, Parser)]
#[command(
    name = "agentgrid",
    version,
    about = "Run coding agents on your issues: they plan, work in isolated git worktrees, prove their work with validators, and hand off — under one durable scheduler.",
    after_help = "Start here:\n  agentgrid init                      # in a git repository\n  agentgrid task add \"Add CSV export\"\n  agentgrid run                       # until there is nothing left to do\n\nOr see it all work offline:  agentgrid demo"
)]
pub struct Cli {
    /// The project directory (default: the nearest directory upwards that has .agentgrid/).
    #[arg(long, global = true, env = "AGENTGRID_PROJECT", value_name = "DIR")]
    pub project: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set up agentgrid in the current git repository: config, an example agent, the database.
    /// Safe to run again: existing files are kept.
    Init {
        /// Where to set up (default: the current directory's git repository).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Create, list, inspect and change tasks.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Run the engine in the foreground until nothing is left to do (or forever).
    Run {
        /// Keep running and wait for new tasks instead of stopping when idle.
        #[arg(long)]
        forever: bool,
        /// Print only the closing summary.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Show tasks by state, running executions and anything stuck.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Print the event log, optionally from a position and following new events.
    Events {
        /// Start after this sequence number (0 = from the beginning).
        #[arg(long, default_value_t = 0, value_name = "SEQ")]
        from: u64,
        /// Keep printing new events as they are recorded (Ctrl-C to stop).
        #[arg(long, short)]
        follow: bool,
        /// Only events of this task.
        #[arg(long, value_name = "ID")]
        task: Option<TaskId>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Print an execution's output log.
    Logs {
        execution: ExecutionId,
        /// Keep printing as the execution writes, until it ends.
        #[arg(long, short)]
        follow: bool,
    },
    /// Check the config and agent manifests; every problem is reported as file:line:col.
    Validate {
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of the manifests (for editors and CI).
    Schema,
    /// Build a small project with real tests and issues, and run it end to end offline.
    Demo {
        /// Build the demo here and keep it for inspection (default: a temporary directory).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Commands for agents inside an execution (they use AGENTGRID_CONTROL_SOCKET and AGENTGRID_TOKEN).
    #[command(subcommand)]
    Ctl(CtlCommand),
    /// Show what this host supports for sandboxed executions, and try one.
    ///
    /// Lists each isolation mechanism (namespaces, Landlock, seccomp, cgroups) as available or
    /// missing and why, which sandbox profiles can run here and which mechanism keeps host
    /// Unix sockets out of reach, and runs the sandbox's self-test in the default sandbox
    /// (home and state hidden, no host socket, no IP socket, private /proc, the agent's uid).
    /// Exits 1 when the default profile cannot run or the boundary leaks.
    Doctor {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Add a task.
    Add(TaskAdd),
    /// Add many tasks at once from JSON lines, all or nothing.
    ///
    /// Each non-empty line is one task: {"title": "…", "body": "…", "labels": ["…"],
    /// "priority": 2, "parent": 1, "blocked_by": [1], "agent": "…"}; only the title is required.
    /// Every line is checked first; if any is wrong, nothing is created.
    Import {
        /// The file to read; `-` (the default) reads standard input.
        #[arg(default_value = "-", value_name = "FILE|-")]
        file: PathBuf,
        /// Print the created tasks as a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// List tasks.
    List {
        /// Only tasks in this state (repeatable).
        #[arg(long, value_name = "STATE")]
        state: Vec<TaskState>,
        #[arg(long, value_name = "LABEL")]
        label: Option<String>,
        /// Only sub-tasks of this task.
        #[arg(long, value_name = "ID")]
        parent: Option<TaskId>,
        /// Only the newest N matching tasks (still listed oldest first).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
        #[arg(long)]
        json: bool,
    },
    /// Show one task with its sub-tasks, executions and history.
    Show {
        id: TaskId,
        #[arg(long)]
        json: bool,
    },
    /// Change a task's title, body, labels, priority or agent.
    Edit(TaskEditArgs),
    /// Cancel a task and its open sub-tasks; a running execution is stopped.
    Cancel {
        id: TaskId,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Put a failed, cancelled or blocked task back to open.
    Reopen {
        id: TaskId,
        /// What the next execution should do differently: it reaches the agent's prompt in
        /// `{{ feedback }}`, labelled as yours.
        #[arg(long, value_name = "TEXT")]
        feedback: Option<String>,
    },
    /// Answer the question a blocked task's agent asked (`ctl block`) and reopen the task: the
    /// next execution's prompt has the answer in `{{ answer }}`.
    Answer {
        id: TaskId,
        /// The answer, as the agent should read it.
        text: String,
    },
    /// Ask that a task run sooner (a hint: caps and guards still apply).
    Nudge { id: TaskId },
    /// Add a comment to a task.
    Comment { id: TaskId, text: String },
    /// Manage blocked-by dependencies.
    #[command(subcommand)]
    Dep(DepCommand),
}

#[derive(Debug, Args)]
pub struct TaskAdd {
    /// A short sentence saying what should be done.
    pub title: String,
    #[arg(long, default_value = "")]
    pub body: String,
    /// A label (repeatable). `needs:X` asks for an agent with capability X.
    #[arg(long = "label", short = 'l', value_name = "LABEL")]
    pub labels: Vec<String>,
    /// 0 (urgent) to 4 (someday).
    #[arg(long, short, default_value_t = 2)]
    pub priority: i32,
    /// Make it a sub-task of this task.
    #[arg(long, value_name = "ID")]
    pub parent: Option<TaskId>,
    /// It waits until this task is done (repeatable).
    #[arg(long = "blocked-by", value_name = "ID")]
    pub blocked_by: Vec<TaskId>,
    /// Run it with this agent instead of routing by labels.
    #[arg(long, value_name = "NAME")]
    pub agent: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TaskEditArgs {
    pub id: TaskId,
    #[arg(long)]
    pub title: Option<String>,
    #[arg(long)]
    pub body: Option<String>,
    #[arg(long = "add-label", value_name = "LABEL")]
    pub add_labels: Vec<String>,
    #[arg(long = "remove-label", value_name = "LABEL")]
    pub remove_labels: Vec<String>,
    #[arg(long)]
    pub priority: Option<i32>,
    /// Assign an agent; `--agent ''` routes by labels again.
    #[arg(long, value_name = "NAME")]
    pub agent: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DepCommand {
    /// TASK waits until BLOCKER is done.
    Add { task: TaskId, blocker: TaskId },
    /// Remove a dependency.
    Rm { task: TaskId, blocker: TaskId },
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Create a sub-task of the current task; prints its id.
    #[command(subcommand)]
    Subtask(CtlSubtask),
    /// Claim the task is complete (the validators still decide).
    Complete {
        /// What was done, in a sentence or two; it becomes the task's summary once the
        /// validators pass.
        #[arg(long)]
        summary: String,
    },
    /// Say the task cannot go on without a person, and why. The task is blocked when the agent
    /// exits; a person's `agentgrid task answer` reaches the next execution as `{{ answer }}`.
    Block {
        /// The question or decision a person must answer, in full: it is all they see.
        #[arg(long)]
        reason: String,
    },
    /// Comment on the current task.
    Comment {
        /// The comment, recorded with this execution as its author.
        text: String,
        /// Record the comment once: a second comment under the same key on this task is
        /// dropped (an agent run again repeats its steps without repeating its comments).
        #[arg(long)]
        key: Option<String>,
    },
    /// Ask that a task run sooner.
    Nudge {
        /// The task to run sooner (a hint: caps and guards still apply).
        task: TaskId,
    },
    /// Print the current task, its parent and sub-tasks, and what people said to it (comments,
    /// feedback, the answer to its last question) as JSON.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum CtlSubtask {
    /// Create a sub-task of the current task and print its id. The current task then waits
    /// for its sub-tasks when the agent exits, and is resumed when they end.
    Create {
        /// A short sentence saying what the sub-task should do.
        title: String,
        /// The details: what to do, where, and how to tell it is done.
        #[arg(long, default_value = "")]
        body: String,
        /// A label (repeatable). `needs:X` asks for an agent with capability X.
        #[arg(long = "label", short = 'l', value_name = "LABEL")]
        labels: Vec<String>,
        /// It waits until this task is done (repeatable): a sibling, by the id its create
        /// printed.
        #[arg(long = "blocked-by", value_name = "ID")]
        blocked_by: Vec<TaskId>,
        /// 0 (urgent) to 4 (someday); the current task's priority when left out.
        #[arg(long, short, value_name = "N")]
        priority: Option<i32>,
        /// Create the sub-task once: a second create under the same key prints the id of the
        /// sub-task the first made and changes nothing. Without it the key is the title, body
        /// and labels, so an agent run again finds the sub-tasks it made before; give distinct
        /// keys to make two sub-tasks alike on purpose.
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
    },
}
