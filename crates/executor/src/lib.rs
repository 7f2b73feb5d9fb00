//! The local executor: runs one execution from workspace to verdict.
//!
//! [`run_execution`] takes an [`ExecutionJob`] (the task, the agent's runtime and validators, the
//! paths to use) and does, in order: make or reuse the task's git worktree and run its hooks;
//! open the execution's control socket; then for each iteration render the prompt, start the
//! agent through the launch API with a clean environment plus `AGENTGRID_*` variables, stream
//! its output to the log, commit what it left, and run the validators — with an environment of
//! their own that holds no token, no control socket and no gateway, in a sandbox without the
//! gateway, on a checkout of the commit the engine made for them (never the agent's worktree),
//! after refusing changes to protected files and planted files that would run inside a test
//! runner, and with agentgrid's guard in every Python interpreter they start, whose own count
//! of the tests outweighs what the code under test can make the runner print or exit with
//! (`guard`). A failed validation feeds the tail of the validators' output into the next
//! iteration's prompt. It reports each step to
//! the engine as an [`Update`] and ends with [`Update::Finished`].
//!
//! The executor never writes the store and never decides a task's fate: it reports facts, the
//! engine records them and the scheduler judges. The engine stops an execution through the
//! [`StopReason`] watch channel. That one signal reaches every step: the execution runs inside a
//! `launch::cancellable` scope that the stop cancels, so a hook, a git command of a checkout or
//! a commit, a judge-tree checkout or a validator running then has its process group ended at
//! once and nothing new starts; the agent gets its grace period. No iteration starts after a
//! stop, and an execution stopped in any step ends in the stop's state (`cancelled` for a
//! shutdown), never as failed.

mod guard;
mod judge;
mod parsers;
mod protect;
pub mod relax;
mod run;
pub mod runtime;
mod validate;

pub use judge::{
    CHECK_NAME, base_file_of, forget_base, judge_commit, judge_dir, land_judge_dir, recorded_bases,
};
pub use parsers::{Runner, Summary, junit};
pub use run::{
    AgentRun, ExecutionJob, ExecutionShared, Runtime, SandboxPlaces, Site, StdinMode, StopReason,
    Update, hook_sandbox_for, new_token, run_execution, sandbox_for, worktree_git,
};
pub use validate::{
    Judgement, OUTPUT_TAIL_BYTES, RunFacts, ScoreRule, Validation, Validator, Verdict, judge,
    output_tail, run_validators, weigh,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("agent configuration: {0}")]
    Config(String),
    #[error("validator `{name}` could not run: {message}")]
    Validator { name: String, message: String },
    /// The execution was stopped while a validator ran: no verdict, passed or failed.
    #[error("validator `{name}` was stopped before it ended: the execution was stopped")]
    Cancelled { name: String },
}
