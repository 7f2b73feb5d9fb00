//! Cancellation of children: a stop request reaches every child started on its behalf.
//!
//! A caller that may be asked to stop (an execution, the engine winding down) runs its work
//! inside [`cancellable`] with a [`CancellationToken`]. Every child that work starts through
//! [`crate::run`] or [`crate::spawn`] belongs to that token, however deep in the call chain the
//! start is made (a git command inside a commit, a hook inside a checkout, a validator):
//! - once the token is cancelled, no new child starts ([`crate::Error::Cancelled`]);
//! - a short command still running when it is cancelled has its whole group ended at once
//!   (SIGTERM, SIGKILL after [`CANCEL_GRACE`]) and its run ends in [`crate::Error::Cancelled`];
//! - a long-running [`crate::Process`] is the caller's to stop, with the grace period it owes
//!   the agent: [`cancelled`] tells when.
//!
//! Decision: the token travels with the task, not as a parameter. Every git command and hook
//! of a commit, a checkout or a removal is started many calls below the one that knows about
//! the stop, and a child started by code written later would escape a parameter nobody
//! passed. A task-local scope reaches all of them and fails closed for new code too. The cost:
//! a task spawned inside the scope does not inherit it; such a task must enter the scope
//! itself.

use std::future::Future;
use std::time::Duration;

pub use tokio_util::sync::CancellationToken;

/// How long a cancelled short command gets between SIGTERM and SIGKILL: git drops its lock
/// files on SIGTERM, and a stop must still end well within any grace period.
pub const CANCEL_GRACE: Duration = Duration::from_millis(500);

tokio::task_local! {
    static SCOPE: CancellationToken;
}

/// Runs `work` with every child it starts belonging to `token` (see the module doc). A scope
/// inside another replaces it for what runs inside.
pub async fn cancellable<F: Future>(token: CancellationToken, work: F) -> F::Output {
    SCOPE.scope(token, work).await
}

/// Runs `work` outside any cancellation: for the few steps that undo what a cancelled step
/// left half done (removing a half-made worktree), which must run even after a stop. Such a
/// step must itself be short and bounded by its own timeout.
pub async fn shielded<F: Future>(work: F) -> F::Output {
    SCOPE.scope(CancellationToken::new(), work).await
}

/// The token of the scope the caller runs in, if any.
pub fn current() -> Option<CancellationToken> {
    SCOPE.try_with(CancellationToken::clone).ok()
}

/// Whether the scope the caller runs in has been cancelled.
pub fn is_cancelled() -> bool {
    SCOPE
        .try_with(CancellationToken::is_cancelled)
        .unwrap_or(false)
}

/// Resolves when the scope the caller runs in is cancelled; never outside a scope.
pub async fn cancelled() {
    match current() {
        Some(token) => token.cancelled_owned().await,
        None => std::future::pending().await,
    }
}
