//! The command-line grammar, with the help text users read.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use domain::{ApprovalId, ExecutionId, TaskId, TaskState};

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
    /// Colour: `auto` on a terminal unless NO_COLOR is set (CLICOLOR_FORCE=1 forces it).
    #[arg(long, global = true, value_enum, default_value_t, value_name = "WHEN")]
    pub color: crate::output::ColorChoice,
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
        /// Also write these seed agencies with their agents: code, qa, devops, security, docs.
        #[arg(long, value_delimiter = ',', value_name = "NAMES")]
        agencies: Vec<String>,
        /// The runtime the agencies' agents use: builtin, claude, codex or command (default:
        /// claude or codex when on PATH, else a command to fill in).
        #[arg(long, value_name = "RUNTIME", requires = "agencies")]
        runtime: Option<String>,
    },
    /// Agencies (`kind: Agency` in .agentgrid/agencies/): add a seed one, list them, show one.
    #[command(subcommand)]
    Agency(AgencyCommand),
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
        /// When standard error is not a terminal, print a status line (elapsed time, running,
        /// queued and waiting tasks, spend) every SECS seconds; 0 prints none. On a terminal
        /// the line is redrawn in place every second instead.
        #[arg(long, default_value_t = 60, value_name = "SECS")]
        status_every: u64,
    },
    /// Bring a done task's branch into the base branch (merge, squash or rebase), with a
    /// commit message made from the task. Refuses when the main checkout has uncommitted
    /// changes on the base branch; a conflict becomes a task for an agent.
    Land {
        /// The done task whose work lands (a parent lands its whole tree).
        task: TaskId,
        /// How the branch lands (default: `land.strategy` in config.yaml, else merge).
        #[arg(long, value_parser = ["merge", "squash", "rebase"])]
        strategy: Option<String>,
        /// Make and check the land commit, but move nothing and record nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show tasks by state, running executions and anything stuck.
    Status {
        #[arg(long)]
        json: bool,
        /// Show it again every --interval seconds: redrawn in place on a terminal, one block
        /// after another otherwise, until Ctrl-C or the reader goes away.
        #[arg(long, short)]
        watch: bool,
        /// Seconds between two views with --watch.
        #[arg(long, value_name = "SECONDS", default_value_t = 2.0, requires = "watch", value_parser = interval)]
        interval: f64,
    },
    /// Print the event log, optionally from a position and following new events.
    Events {
        /// Start after this sequence number (0 = from the beginning).
        #[arg(long, default_value_t = 0, value_name = "SEQ", conflicts_with = "tail")]
        from: u64,
        /// Only the last N events (of the task, with --task); with --follow, then the new ones.
        #[arg(long, value_name = "N")]
        tail: Option<u32>,
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
    /// Tokens and cost of the model requests agents made through the gateway, with totals.
    Usage {
        /// Sum per task, per tree (a task with all its sub-tasks), per agent or per UTC day.
        #[arg(long, value_enum, default_value_t = UsageBy::Task)]
        by: UsageBy,
        #[arg(long)]
        json: bool,
    },
    /// Show what a task's work changed: its branch against the commit it started from.
    Diff {
        task: TaskId,
        /// Only the files changed and how much.
        #[arg(long)]
        stat: bool,
    },
    /// Print what an execution's agent did: its CLI's events readably when it is a known CLI,
    /// else its output log.
    Logs {
        execution: ExecutionId,
        /// Keep printing the output log as the execution writes, until it ends.
        #[arg(long, short)]
        follow: bool,
        /// One JSON object per line of the log: {"execution", "line", "offset", "text"}.
        #[arg(long)]
        json: bool,
        /// The output log as the agent printed it, even for a known CLI.
        #[arg(long)]
        raw: bool,
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
        /// Which agents work the issues: `scripted` (shell scripts playing the agents) or
        /// `builtin` (the built-in agent, against a scripted model served by the demo).
        #[arg(long, value_enum, default_value = "scripted", value_name = "KIND")]
        agents: crate::commands::DemoAgents,
        /// Run the agencies demo instead: Code and QA agencies hand one task back and forth,
        /// a question is escalated and answered, a person approves, and the metrics print.
        #[arg(long, conflicts_with = "agents")]
        agencies: bool,
    },
    /// The approval queue: work waiting for a person's decision.
    ///
    /// Without a subcommand on a terminal it opens the interactive queue (arrows to move,
    /// Enter for the detail and diff, `a` approve, `r` reject with feedback, `?` help, `q`
    /// quit); elsewhere it prints the pending list.
    Approvals {
        #[command(subcommand)]
        command: Option<ApprovalsCommand>,
    },
    /// Durable workflows (`kind: Workflow` in .agentgrid/workflows/): start one on a task,
    /// list the runs, show where one is and what it did.
    #[command(subcommand)]
    Workflow(WorkflowCommand),
    /// Durable typed messages between agents and people: send one, list them, show one with
    /// its history, acknowledge one sent to people.
    #[command(subcommand)]
    Msg(MsgCommand),
    /// Questions agents escalated to people: list the unanswered ones, answer one.
    Escalations {
        #[command(subcommand)]
        command: Option<EscalationsCommand>,
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
    /// The built-in agent (`runtime: {type: builtin}`), which the engine starts inside the
    /// execution's sandbox: reads the prompt on stdin, works through the model gateway named
    /// by ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY, prints one JSON line per step.
    #[command(name = "__agent-builtin", hide = true)]
    AgentBuiltin {
        /// The model alias to ask the gateway for (default: `default`, which the gateway maps
        /// to the execution's alias when no alias has that name).
        #[arg(long, value_name = "ALIAS")]
        model: Option<String>,
        /// Model turns before the agent gives up.
        #[arg(long, default_value_t = 50, value_name = "N")]
        max_turns: u32,
    },
    /// Print a shell completion script.
    ///
    /// bash: `agentgrid completions bash > ~/.local/share/bash-completion/completions/agentgrid`;
    /// zsh: `agentgrid completions zsh > ~/.zfunc/_agentgrid` (with `~/.zfunc` in `fpath`);
    /// fish: `agentgrid completions fish > ~/.config/fish/completions/agentgrid.fish`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page, or write one page per command into a directory.
    Man {
        /// Write `agentgrid.1`, `agentgrid-task.1`, `agentgrid-task-add.1`, … here instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Area leases: the paths of the repository agents hold (`ctl lease take`) so that two
    /// agents do not work on the same files at once, and the tasks waiting for an area.
    Leases {
        /// Every lease, ended ones included, newest first (at most 200).
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Agency metrics: per agency and per agent, done tasks without human help, first-pass
    /// approvals, mean handoff time, cost and wall time per done task, executions per task.
    Metrics {
        /// Only tasks done and executions started at or after this time: an RFC 3339 time
        /// (2026-12-01T00:00:00Z) or a duration back from now (7d, 12h).
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

/// How `agentgrid usage` groups the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UsageBy {
    Task,
    Tree,
    Agent,
    Day,
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
        /// Only tasks carrying this label (repeatable: every one given).
        #[arg(long = "label", short = 'l', value_name = "LABEL")]
        labels: Vec<String>,
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
    /// Cancel tasks and their open sub-tasks; a running execution is stopped.
    ///
    /// Each id is reported on its own: one that cannot be cancelled does not stop the others,
    /// but makes the exit status non-zero.
    Cancel {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<TaskId>,
        #[arg(long)]
        reason: Option<String>,
        /// One result per id as a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Put failed, cancelled or blocked tasks back to open (each id on its own, as `cancel`).
    Reopen {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<TaskId>,
        /// What the next execution should do differently: it reaches the agent's prompt in
        /// `{{ feedback }}`, labelled as yours.
        #[arg(long, value_name = "TEXT")]
        feedback: Option<String>,
        /// One result per id as a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Ask that tasks run sooner (a hint: caps and guards still apply; each id on its own).
    Nudge {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<TaskId>,
        /// One result per id as a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Answer the question a blocked task's agent asked (`ctl block`) and reopen the task: the
    /// next execution's prompt has the answer in `{{ answer }}`.
    Answer {
        id: TaskId,
        /// The answer, as the agent should read it.
        text: String,
    },
    /// Add a comment to a task.
    Comment { id: TaskId, text: String },
    /// Manage blocked-by dependencies.
    #[command(subcommand)]
    Dep(DepCommand),
}

#[derive(Debug, Subcommand)]
pub enum AgencyCommand {
    /// Write a seed agency (its manifest, its agents and a context file); existing files are
    /// kept.
    Add {
        /// The agency's name; its agents are NAME-lead and NAME-ROLE.
        name: String,
        /// The seed to start from: code, qa, devops, security or docs (default: NAME).
        #[arg(long, value_name = "T")]
        template: Option<String>,
        /// The runtime its agents use: builtin, claude, codex or command (default: claude or
        /// codex when on PATH, else a command to fill in).
        #[arg(long, value_name = "RUNTIME")]
        runtime: Option<String>,
    },
    /// The project's agencies.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One agency: its members and roles, what it accepts, its cap, routing and policies.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
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
    /// Add a label (repeatable), as `task add --label`.
    #[arg(long = "label", short = 'l', alias = "add-label", value_name = "LABEL")]
    pub add_labels: Vec<String>,
    /// Remove a label (repeatable).
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
pub enum ApprovalsCommand {
    /// List approvals, newest first: the pending ones, or with --all every one.
    List {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show one approval: the task and its sub-tasks, the validators, the cost, the diff stats.
    Show {
        id: ApprovalId,
        /// Print the diff of the task's branch too.
        #[arg(long)]
        diff: bool,
        #[arg(long)]
        json: bool,
    },
    /// Approve the work.
    Approve {
        id: ApprovalId,
        #[arg(long)]
        json: bool,
    },
    /// Send the work back with feedback for the next execution; the task is reopened. Without
    /// --feedback, on a terminal, $VISUAL or $EDITOR opens for it.
    Reject {
        id: ApprovalId,
        #[arg(long)]
        feedback: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Ask a question about the work instead of deciding; the approval stays pending.
    Ask {
        id: ApprovalId,
        question: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Start the workflow NAME on TASK; a task runs one workflow at a time.
    Start {
        task: TaskId,
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// List the workflow runs that have not finished, or with --all every one.
    List {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show one run: where it is, its blackboard and its history.
    Show {
        id: domain::WorkflowId,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum EscalationsCommand {
    /// The escalations not answered yet, oldest first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Answer an escalation: the answer reaches the asking task's next execution, and a task
    /// blocked to wait for it runs again.
    Answer {
        id: domain::MessageId,
        text: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum MsgCommand {
    /// Send a typed message; prints its id.
    Send {
        /// Who it is for: agent:NAME, role:NAME (a role of your own agency), agency:NAME,
        /// topic:NAME, broadcast, execution:ID (that execution only) or people.
        #[arg(long)]
        to: String,
        /// TASK, STATUS, QUESTION, ANSWER, COMPLETE, BLOCKED, HANDOFF, RESULTS, ALERT or
        /// HEARTBEAT.
        #[arg(long = "type")]
        kind: String,
        /// The payload, a JSON object of the type's shape (STATUS: {"text": "…"}).
        #[arg(long)]
        payload: String,
        #[arg(long)]
        correlation: Option<String>,
        /// low, normal, high or urgent.
        #[arg(long)]
        priority: Option<String>,
        /// How long it may wait to be acknowledged (30s, 10m, 2h).
        #[arg(long)]
        ttl: Option<domain::Duration>,
        /// The task it is about.
        #[arg(long)]
        task: Option<TaskId>,
        #[arg(long)]
        json: bool,
    },
    /// List messages, newest first (what expired or can no longer be delivered is recorded as
    /// a dead letter first).
    List {
        /// pending, delivered, acked or dead.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        task: Option<TaskId>,
        /// Only those for this receiver (agent:NAME, people, …).
        #[arg(long)]
        to: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Show one message and its history.
    Show {
        id: domain::MessageId,
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge a message, once.
    Ack {
        id: domain::MessageId,
        #[arg(long)]
        json: bool,
    },
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
    /// Ask a person to approve the work before it goes on.
    #[command(subcommand)]
    Approval(CtlApproval),
    /// Ask that a task run sooner.
    Nudge {
        /// The task to run sooner (a hint: caps and guards still apply).
        task: TaskId,
    },
    /// Start a workflow on the current task.
    #[command(subcommand)]
    Workflow(CtlWorkflow),
    /// Print the current task, its parent and sub-tasks, and what people said to it (comments,
    /// feedback, the answer to its last question) as JSON.
    Status,
    /// Send, read and acknowledge typed messages.
    #[command(subcommand)]
    Msg(CtlMsg),
    /// Ask up the line a question you cannot answer yourself; prints the escalation's id. A
    /// specialist of an agency asks its coordinator (who is woken to answer it), anyone else
    /// asks people. It is shown by `agentgrid status` until answered, and the answer reaches
    /// this task's next execution in its inbox. Block (`ctl block`) to wait for it. A
    /// coordinator sends an escalation it cannot answer on to people with `--up M`.
    Escalate {
        /// low, normal, high or critical.
        #[arg(long, default_value = "normal")]
        severity: String,
        /// The question, in full: it is all the person sees. With `--up`, a note for the
        /// people it goes to.
        #[arg(required_unless_present = "up")]
        text: Option<String>,
        /// A coordinator: send this escalation (addressed to you) on up to people.
        #[arg(long, value_name = "M")]
        up: Option<domain::MessageId>,
    },
    /// A coordinator's answers to the escalations of its agency's specialists.
    #[command(subcommand)]
    Escalation(CtlEscalation),
    /// Read and write the blackboard of the workflow run of the current task: typed values
    /// (`spec.blackboard` of the workflow) that the states after yours read.
    #[command(subcommand)]
    Blackboard(CtlBlackboard),
    /// Lease areas of the repository (files or directories) so that no other agent works on
    /// them meanwhile.
    #[command(subcommand)]
    Lease(CtlLease),
    /// Hand your part of the task to another agency or role, then exit: the task's next
    /// execution is the receiver's, and its prompt's `{{ handoff }}` carries your summary and
    /// artifacts. A handoff is never completion; your agency's `policies.handoffs` must allow
    /// it, and a task has at most `handoffs_per_task` of them.
    Handoff {
        /// The receiver: AGENCY, AGENCY/ROLE, or role:ROLE in your own agency.
        #[arg(long)]
        to: String,
        /// What the receiver is to do, and what you found (the bugs, the open questions).
        #[arg(long)]
        summary: String,
        /// A file or directory of your worktree the receiver should read (committed to the
        /// task's branch when you exit); repeat for more.
        #[arg(long = "artifact")]
        artifacts: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CtlEscalation {
    /// Answer an escalation addressed to you: it is acknowledged, the answer reaches the
    /// asking task's next execution, and a task that blocked to wait for it is reopened.
    Answer {
        /// The escalation's id (M3 or 3).
        id: domain::MessageId,
        /// The answer, in full.
        #[arg(long)]
        text: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CtlLease {
    /// Take leases on PATHS (relative to the repository's root) for --ttl; prints them as
    /// JSON. Refused, naming the holder and when its lease expires, when a path overlaps
    /// another execution's lease. Leases end with this execution.
    Take {
        /// Files or directories, such as `src/db` (at most 16).
        #[arg(required = true)]
        paths: Vec<String>,
        /// How long the leases hold unless released or renewed (30s, 10m; at most 1h).
        #[arg(long)]
        ttl: domain::Duration,
        /// Reserve the areas for this sub-task of the current task instead (a coordinator's
        /// lease): the scheduler holds the sub-task back while another task's agent holds an
        /// overlapping lease.
        #[arg(long, value_name = "ID")]
        task: Option<TaskId>,
    },
    /// Release this execution's leases on PATHS, or every one of them.
    Release { paths: Vec<String> },
    /// Print the leases held now, by every execution, as JSON.
    List,
}

#[derive(Debug, Subcommand)]
pub enum CtlBlackboard {
    /// Print one value (nothing when it was never written): `bugs=$(agentgrid ctl blackboard
    /// get bugs)`.
    Get {
        /// A key the workflow declares.
        key: String,
    },
    /// Write one value; only the agent of the run's current visit may. Refused, changing
    /// nothing, for a key the workflow does not declare or a value of another type.
    Set {
        /// A key the workflow declares.
        key: String,
        /// The value, read as the key's type: an int in decimal, true or false, or text.
        value: String,
    },
    /// Print the run's blackboard as JSON: its keys with their types, and the values.
    List,
}

#[derive(Debug, Subcommand)]
pub enum CtlMsg {
    /// Send a typed message; prints its id.
    Send {
        /// Who it is for: agent:NAME, role:NAME, agency:NAME, topic:NAME, broadcast,
        /// execution:ID (that execution only) or people.
        #[arg(long)]
        to: String,
        /// TASK, STATUS, QUESTION, ANSWER, COMPLETE, BLOCKED, HANDOFF, RESULTS, ALERT or
        /// HEARTBEAT.
        #[arg(long = "type")]
        kind: String,
        /// The payload, a JSON object of the type's shape (STATUS: {"text": "…"}).
        #[arg(long)]
        payload: String,
        /// The id of the conversation it belongs to.
        #[arg(long)]
        correlation: Option<String>,
        /// low, normal, high or urgent.
        #[arg(long)]
        priority: Option<String>,
        /// How long it may wait to be acknowledged (30s, 10m, 2h).
        #[arg(long)]
        ttl: Option<domain::Duration>,
    },
    /// Print the open messages for this execution as JSON; each is recorded as delivered.
    Inbox,
    /// Acknowledge a message delivered to this execution, once.
    Ack {
        /// The message's id (M3 or 3).
        id: domain::MessageId,
    },
}

#[derive(Debug, Subcommand)]
pub enum CtlWorkflow {
    /// Start the workflow NAME (one of the project's `kind: Workflow` manifests) on the current
    /// task; the engine carries it out. Refused while the task runs another workflow. Prints
    /// the run's id and first state as JSON.
    Start {
        /// The workflow's name (`metadata.name`).
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CtlApproval {
    /// Ask for a person's decision, then exit: the task waits blocked (no process, no tokens)
    /// until it is approved (the task runs again) or rejected with feedback (it runs again
    /// with the feedback). Prints the approval's id.
    Request {
        /// What the person is to approve: what was done, what comes next.
        #[arg(long)]
        summary: String,
    },
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
        /// Reserve this area (a file or directory, such as `src/db`; repeatable) for the
        /// sub-task, in the same step as its creation: the scheduler never starts it while an
        /// overlapping area is leased to another running task, nor together with another
        /// sub-task reserved an overlapping area. Refused, creating nothing, when another
        /// reservation overlaps. The reservation outlives this execution and ends when the
        /// sub-task's work succeeds or --lease-ttl runs out.
        #[arg(long = "area", value_name = "PATH")]
        areas: Vec<String>,
        /// How long the reservation holds (30s, 10m; at most and by default 1h).
        #[arg(long, value_name = "DURATION", requires = "areas")]
        lease_ttl: Option<domain::Duration>,
    },
}

/// An interval a person means: at least a tenth of a second, at most a day.
fn interval(text: &str) -> Result<f64, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds (say 2 or 0.5)"))?;
    if (0.1..=86_400.0).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(format!(
            "{seconds} s is out of range: give 0.1 to 86400 seconds"
        ))
    }
}
