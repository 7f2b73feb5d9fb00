//! The engine as a deterministic state machine: `handle(input, now) -> effects`.
//!
//! The engine's decisions about executions — what to claim, when to stop one, what an ended
//! execution makes of its task, when its end is written, which workspace work must follow and
//! what waits for it — are taken here, by [`Core::handle`], from an [`Input`] and the time it is
//! given. The answer is a list of [`Effect`]s (write these changes, start this execution, stop
//! that one, start a merge job, reply to a call, wake me at) that a runner performs; what comes
//! of them comes back as inputs ([`Input::Persisted`], [`Input::JobReported`], executor
//! updates). The async engine in the `engine` crate is such a runner, and so is the simulator in
//! `tests/sim.rs`, which drives the same core through a fake executor, an in-memory store built
//! on the tracker's rules, crashes at every write and reordered inputs.
//!
//! Architecture invariant: no IO, no clock, no randomness, no threads. The same inputs at the
//! same times always give the same effects, which is what lets a failing simulation seed replay
//! exactly. (Checked by `cargo xtask layers`, which allows this crate only pure dependencies,
//! and by a test that greps its sources for clocks and IO.)
//!
//! The principal types: [`Core`] (the in-memory view: tasks, running executions, held writes,
//! parked ends, workspace jobs), [`Input`] and [`Effect`].
//!
//! The key design decision: a write is an effect like any other, and the core does not decide
//! again while one it asked for is outstanding. A runner may deliver other inputs meanwhile
//! (an executor's update, a job's report), but never two claims on one view of the world, so the
//! scheduler's caps and "one active execution per task" hold without the core guessing what a
//! write will say.

pub mod claims;
mod core;
pub mod decision;
mod effect;
pub mod ending;
pub mod finalize;
mod held;
mod input;
mod jobs;
pub mod lease;
pub mod spending;
pub mod stops;
pub mod worktrees;

pub use crate::core::{Core, Options, Running};
pub use effect::{Effect, PersistId, PersistMode, StopReason};
pub use held::{Held, Taken, WRITE_BEHIND};
pub use input::{
    CallOp, CallResult, Finished, Input, JobReport, Outcome, Removal, Update, Written,
};
pub use jobs::{JobBook, Work};
pub use spending::{BUDGET_GRACE, Notice};
