//! The built-in agent: a tool-using model loop for people without an agent CLI, and for the
//! demo.
//!
//! It runs where any agent runs — inside the execution's sandbox, as the hidden subcommand
//! `agentgrid __agent-builtin` — and is the agent: everything the model answers is treated as
//! hostile input. It speaks one wire format to the engine's model gateway, Anthropic Messages
//! with tool use, with the execution token as its key; budgets, prices and provider choice are
//! the gateway's. Each step is one JSON line on stdout ([`Event`]).
//!
//! The principal types:
//! - [`Model`] with [`ModelOptions`]: one request and its checked [`model::Reply`].
//! - [`Tools`]: `read_file`, `write_file`, `edit` (one exact match), `list_files`,
//!   `search_files`, `run_command` and the control operations (`subtask`, `complete`, `block`,
//!   `comment`, through the same client as `agentgrid ctl`), bounded by [`Limits`].
//! - [`Workspace`]: the one place paths are checked (no `..`, no absolute path outside, no
//!   link leading out).
//! - [`run`]: the loop itself, bounded by [`LoopOptions::max_turns`].
//!
//! The key decision: a refused tool call is an answer to the model, not a failure, so that it
//! can correct itself; a refused model request (an API error, a budget the gateway enforces)
//! ends the run with the reason, which the process reports on stderr with a non-zero exit, so
//! the execution fails with it.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let workspace = builtin::Workspace::open(dir.path()).unwrap();
//! assert!(workspace.resolve("src/lib.rs").is_ok());
//! assert!(workspace.resolve("../../etc/passwd").is_err());
//! assert!(workspace.resolve("/etc/passwd").is_err());
//! ```

mod agent;
mod confine;
mod error;
mod event;
pub mod model;
mod tools;

pub use agent::{Finished, LoopOptions, MAX_CALLS_PER_TURN, answer_calls, run};
pub use confine::{PathError, Workspace};
pub use error::Error;
pub use event::Event;
pub use model::{Model, ModelOptions};
pub use tools::{Control, Limits, Outcome, Tools, cut, cut_chars, definitions};
