//! Runtime adapters: how agentgrid drives a known agent CLI and reads what it says it did.
//!
//! An [`Adapter`] knows one CLI: the arguments that make it run once, non-interactively, on the
//! prompt, with the model alias the agent was given and with no permission prompts or sandbox
//! of its own (agentgrid's sandbox is the one that holds); the environment that points it at
//! the gateway and turns off its telemetry and update checks; and a [`Parser`] that turns its
//! machine output into [`AgentEvent`]s. The `command` runtime has no adapter: its output is
//! only logged.
//!
//! The output is the agent's and hostile: a parser reads a line at a time, ignores whatever is
//! not the JSON it expects, and every event is bounded before it is recorded
//! ([`AgentEvent::bounded`], [`EventSink`]).

mod claude;
mod parked;

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use domain::{AgentEvent, ExecutionId, Timestamp};
use manifest::RuntimeKind;

pub use claude::Claude;
pub use parked::{forget_parked, parked_home};

/// What one iteration's start needs to know beyond the adapter itself.
#[derive(Debug, Clone, Default)]
pub struct Invocation<'a> {
    /// The model alias to ask for.
    pub model: Option<&'a str>,
    /// The CLI session of an earlier iteration of this execution, to resume.
    pub resume: Option<&'a str>,
    /// The CLI's HOME: private to the execution, writable inside its sandbox.
    pub home: Option<&'a std::path::Path>,
}

/// One agent CLI, driven non-interactively.
pub trait Adapter: Send + Sync + std::fmt::Debug {
    /// The CLI's usual program name, run when the manifest's `command` names none.
    fn program(&self) -> &'static str;

    /// The arguments agentgrid adds after the manifest's own.
    fn args(&self, invocation: &Invocation<'_>) -> Vec<String>;

    /// The environment agentgrid adds for the CLI (after the gateway's variables, before the
    /// manifest's own `env`).
    fn env(&self) -> Vec<(String, String)>;

    /// Whether the prompt goes to the CLI's standard input.
    fn prompt_on_stdin(&self) -> bool;

    /// A fresh reader of one process's output.
    fn parser(&self) -> Box<dyn Parser>;
}

/// Reads one process's output, a line at a time, into events.
pub trait Parser: Send {
    /// The events one line of standard output says; `at` is when it arrived.
    fn line(&mut self, line: &str, at: Timestamp) -> Vec<AgentEvent>;
}

/// The adapter of a runtime type; `None` for `command` and for the built-in agent (whose JSON
/// lines are logged as they are).
pub fn adapter(kind: RuntimeKind) -> Option<Box<dyn Adapter>> {
    match kind {
        RuntimeKind::Command | RuntimeKind::Builtin => None,
        RuntimeKind::Claude => Some(Box::new(Claude)),
    }
}

/// The HOME of a known CLI for one execution, in the engine's run directory (hidden from every
/// other sandbox), removed with everything in it when the execution ends.
#[derive(Debug)]
pub struct AgentHome {
    path: PathBuf,
}

impl AgentHome {
    /// Makes the directory afresh, owner-only: anything an earlier engine left there under the
    /// same execution id is the agent's and is removed first.
    pub fn create(run_dir: &Path, execution: ExecutionId) -> std::io::Result<AgentHome> {
        let path = run_dir.join(format!("{execution}-home"));
        match std::fs::remove_dir_all(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(AgentHome { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for AgentHome {
    fn drop(&mut self) {
        // `remove_dir_all` does not follow the links the agent may have left inside.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The events of one execution as they are kept: bounded one by one and in number, with the
/// facts the executor acts on (the session to resume, the first failure the CLI reported).
#[derive(Debug, Default)]
pub struct EventSink {
    kept: u32,
    dropped: u32,
    /// The CLI session last reported.
    pub session: Option<String>,
    /// The first failure the CLI reported in the current iteration.
    pub failure: Option<String>,
}

impl EventSink {
    /// Starts a new iteration: its failures and usage are its own; the session carries over.
    pub fn next_iteration(&mut self) {
        self.failure = None;
    }

    /// Takes in one event; returns what to record, if anything (nothing past the cap).
    pub fn take(&mut self, event: AgentEvent) -> Option<AgentEvent> {
        let event = event.bounded();
        match &event {
            AgentEvent::Session { id } => self.session = Some(id.clone()),
            other => {
                if self.failure.is_none()
                    && let Some(why) = other.failure()
                {
                    self.failure = Some(domain::agent::cut_text(why.to_string(), 300));
                }
            }
        }
        if self.kept >= domain::agent::MAX_EVENTS {
            self.dropped += 1;
            return None;
        }
        self.kept += 1;
        Some(event)
    }

    /// How many events past the cap were dropped so far, once, when some were.
    pub fn dropped(&mut self) -> Option<AgentEvent> {
        let count = std::mem::take(&mut self.dropped);
        (count > 0).then_some(AgentEvent::Dropped { count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sink_keeps_the_session_and_the_first_failure_and_caps_the_count() {
        let mut sink = EventSink::default();
        assert!(
            sink.take(AgentEvent::Session { id: "s-1".into() })
                .is_some()
        );
        sink.take(AgentEvent::Error {
            message: "first".into(),
        });
        sink.take(AgentEvent::Error {
            message: "second".into(),
        });
        assert_eq!(sink.session.as_deref(), Some("s-1"));
        assert_eq!(sink.failure.as_deref(), Some("first"));
        for _ in 0..domain::agent::MAX_EVENTS {
            sink.take(AgentEvent::Message { text: "x".into() });
        }
        assert_eq!(sink.dropped(), Some(AgentEvent::Dropped { count: 3 }));
        assert_eq!(sink.dropped(), None);
        sink.next_iteration();
        assert_eq!(sink.failure, None);
        assert_eq!(sink.session.as_deref(), Some("s-1"));
    }
}
