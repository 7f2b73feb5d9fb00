//! The engine: the one service loop that turns scheduler decisions into effects.
//!
//! [`Engine::run`] loads the tasks, reconciles what a previous engine left behind, then loops:
//! it asks [`scheduler::decide`] what to do, performs the actions (start executions, kill them,
//! fail or close tasks), and waits for the next thing to happen — an [`executor::Update`] from a
//! running execution, a call on an execution's control socket, a change another process wrote
//! to the store (a `task add` from the CLI), the scheduler's next wake-up, or shutdown. Every
//! change it makes goes through [`store::Store::apply`], so it is an event first.
//!
//! Architecture invariant: the engine holds no policy. Which task runs, when, with which agent,
//! and what an ended execution means for its task are answered by the `scheduler` crate; the
//! engine only keeps the in-memory [`scheduler::Snapshot`] true and carries out the answers.
//!
//! Crash rule (see ARCHITECTURE.md): one engine per project, held by a lock file. Every claim
//! records this engine's node id and a lease it renews while the execution runs
//! (`engine_core::lease`), and what an execution writes goes under its fencing token, which the
//! rules refuse once the claim is lost. Another node's execution is recorded lost only once its lease ran out. On
//! start, every execution of this node the store still calls active belongs to a dead engine.
//! Its process group, if still
//! alive and verifiably that execution's (by `AGENTGRID_EXECUTION_ID` in its environment), is
//! terminated first; then, in one transaction, the execution is finished as `lost` and its task
//! re-queued without losing an attempt. Whatever the agent left in the worktree is committed to
//! the task branch, after a merge into it that the crash cut short is undone; merges recorded as
//! due are then made. So nothing is lost, and no claim ever runs twice at the same time.
//!
//! Architecture invariant: the loop does no slow work. Merges, hooks and worktree removals run
//! as background jobs whose reports come back as inputs (`engine/jobs.rs`); what must wait for
//! them waits by state (the snapshot's `busy_workspaces`), never by blocking the loop.

mod agencies;
mod bus;
mod engine;
mod force;
mod land;
mod lock;
mod node;
mod runtime_dir;
mod runtimes;
mod setup;
mod usage_check;
mod watch;

pub use agencies::{Agencies, directory};
pub use engine::{Engine, EngineOptions, RunMode, RunSummary};
pub use force::kill_executions;
pub use land::{Judges, LocalLander};
pub use lock::{EngineLock, LockHolder};
pub use node::{NODE_FILE, node_id, read_node_id};
pub use runtime_dir::runtime_dir;
pub use setup::{Setup, dollars_to_micros, resolve_git_drivers, setup_from_project};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(
        "another agentgrid engine is running in this project (pid {pid}); stop it first or wait \
         for it to finish"
    )]
    Locked { pid: String },
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Setup(String),
}
