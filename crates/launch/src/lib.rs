//! The one way agentgrid starts a child process.
//!
//! Agents, git, hooks and validators all run through this crate, so the rules every child must
//! follow live in one place: it gets exactly the environment it was given (nothing of ours leaks
//! through), it leads a process group of its own, and nothing it starts outlives it. A
//! [`LaunchSpec`] with a sandbox ([`sandbox::SandboxSpec`], re-exported as [`sandbox`]) starts
//! the agentgrid binary as the sandbox helper, which isolates the program (namespaces, Landlock,
//! seccomp, limits) in its own process before it executes it; output, process group and exit
//! stay the program's.
//!
//! The principal types and functions:
//! - [`LaunchSpec`]: program, arguments, working directory, complete environment ([`base_env`]
//!   is the safe starting point) and standard input ([`StdinSpec`]).
//! - [`spawn`] with an [`OutputSpec`] starts a long-running child and returns a [`Process`]:
//!   its output goes line by line ([`OutputLine`]) to a log file and a live channel, with memory
//!   bounded however much it prints. [`Process::wait`] gives an [`Exit`] with the exit status,
//!   CPU and wall time and the tail of the output.
//! - [`run`] runs a short command to its end under a timeout and returns its captured
//!   [`Output`].
//! - [`run_interactive`] runs a person's own tool (their editor) on the terminal and waits.
//! - [`kill_group`], [`terminate_group`], [`group_alive`] and [`process_start_time`] act on
//!   process groups and pids, also ones recorded before a restart; [`terminate_groups`] ends
//!   many groups at once with one /proc scan per round for all of them.
//! - [`cancellable`] with a [`CancellationToken`]: every child started inside belongs to the
//!   token; once it is cancelled nothing new starts and a short command's group is ended at
//!   once (the kill fails closed: SIGKILL follows a short SIGTERM).
//! - [`procfs`] is the one reader of the host's process table: every question about other
//!   processes (group members, an execution's processes, who uses a directory) is answered
//!   from one scan of /proc, made off the async threads.
//!
//! The key decision: the child is reaped by us with `waitid(WNOWAIT)` followed by `wait4`, not by
//! tokio. Waiting without reaping first keeps the child's pid, and so its group id, reserved
//! while the rest of the group is killed, so the kill can never hit a stranger that reused the
//! number; `wait4` then reports the CPU time of the child and every descendant it waited for.
//! Because the whole group dies when the direct child exits, the output pipes always reach end
//! of file and the reading finishes. One watcher per child reads both pipes and notices the exit
//! through a pidfd: a task of the caller's tokio runtime, or one thread outside a runtime.
//! The child itself is started with `clone(CLONE_VM | CLONE_VFORK)` on a stack of its own,
//! which puts back only the signals in [`signals::HANDLED`] instead of all 64 as glibc's
//! `posix_spawn` does.
//!
//! ```no_run
//! # async fn demo() -> Result<(), launch::Error> {
//! use std::time::Duration;
//! let spec = launch::LaunchSpec::new("git", "/tmp").args(["--version"]);
//! let out = launch::run(spec, Duration::from_secs(10), 64 * 1024).await?;
//! assert!(out.success() && out.stdout.starts_with("git version"));
//! # Ok(()) }
//! ```

mod cancel;
mod error;
mod exec;
mod group;
mod interactive;
mod output;
pub mod preflight;
mod process;
pub mod procfs;
mod run;
mod sandboxed;
pub mod signals;
mod spec;
mod start;

pub use cancel::{
    CANCEL_GRACE, CancellationToken, cancellable, cancelled, current, is_cancelled, shielded,
};
pub use error::Error;
pub use group::{
    group_alive, group_members, kill_group, process_alive, process_start_time, terminate_group,
    terminate_groups,
};
pub use interactive::run_interactive;
pub use nix::sys::signal::Signal;
pub use output::{OutputLine, Stream};
pub use process::{Exit, LOG_TAIL_BYTES, MAX_LOG_BYTES, OutputSpec, Process, spawn};
pub use run::{Output, run};
pub use sandbox;
pub use spec::{LaunchSpec, StdinSpec, base_env, set_var};
