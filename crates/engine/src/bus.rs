//! The seam between the engine and whatever runs its executions.
//!
//! The engine starts an execution, may ask it to stop, and hears its updates; it never needs to
//! know where it runs. Today every execution runs in this process, as a task of the runtime
//! ([`InProcess`], around `executor::run_execution`). Worker nodes later implement [`Bus`] over
//! a message broker: a start becomes a message to a worker, a stop another, and the updates
//! come back on the same stream the engine reads now.

use std::sync::Arc;

use executor::{ExecutionJob, ExecutionShared, StopReason, Update};
use tokio::sync::{mpsc, watch};

/// Where executions run.
pub(crate) trait Bus: Send + Sync {
    /// Starts `job`; its updates come back on the stream the bus was made with. `shared` is
    /// what the engine and the execution both see while it runs (signs of life, the agent's
    /// calls, the count of open sub-tasks).
    fn start(&self, job: ExecutionJob, shared: Arc<ExecutionShared>) -> Started;
}

/// A started execution, as the engine holds it: the way to ask it to stop.
pub(crate) struct Started {
    stop: watch::Sender<Option<StopReason>>,
}

impl Started {
    /// Asks the execution to stop; it ends within its grace period. Asking again changes the
    /// reason it ends with; asking an execution that has ended does nothing.
    pub fn stop(&self, reason: StopReason) {
        let _ = self.stop.send(Some(reason));
    }
}

/// Executions run as tasks of this process's runtime.
pub(crate) struct InProcess {
    updates: mpsc::UnboundedSender<Update>,
}

impl InProcess {
    /// A bus and the stream of its executions' updates.
    pub fn new() -> (InProcess, mpsc::UnboundedReceiver<Update>) {
        let (updates, stream) = mpsc::unbounded_channel();
        (InProcess { updates }, stream)
    }
}

impl Bus for InProcess {
    fn start(&self, job: ExecutionJob, shared: Arc<ExecutionShared>) -> Started {
        let (stop, stopped) = watch::channel(None);
        tokio::spawn(executor::run_execution(
            job,
            shared,
            stopped,
            self.updates.clone(),
        ));
        Started { stop }
    }
}
