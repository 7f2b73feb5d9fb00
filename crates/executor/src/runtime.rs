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

mod aider;
mod claude;
mod codex;
mod gemini;
mod npm;
mod opencode;
mod parked;

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use domain::{AgentEvent, ExecutionId, Timestamp, Tokens};
use manifest::RuntimeKind;

pub use aider::{Aider, virtualenv_of};
pub use claude::Claude;
pub use codex::Codex;
pub use gemini::Gemini;
pub use opencode::OpenCode;
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
    /// The file holding this iteration's rendered prompt, shown read-only inside the sandbox:
    /// for a CLI that reads its message from a file rather than from standard input.
    pub prompt_file: Option<&'a std::path::Path>,
}

/// One agent CLI, driven non-interactively.
pub trait Adapter: Send + Sync + std::fmt::Debug {
    /// The CLI's usual program name, run when the manifest's `command` names none.
    fn program(&self) -> &'static str;

    /// The package the CLI is installed from (npm's, or PyPI's for Aider).
    fn package(&self) -> &'static str;

    /// The command that installs the CLI, for the hint when it is not found.
    fn install_hint(&self) -> String {
        format!("npm install -g {}", self.package())
    }

    /// The arguments agentgrid adds after the manifest's own.
    fn args(&self, invocation: &Invocation<'_>) -> Vec<String>;

    /// The environment agentgrid adds for the CLI (after the gateway's variables, before the
    /// manifest's own `env`).
    fn env(&self) -> Vec<(String, String)>;

    /// Whether the prompt goes to the CLI's standard input.
    fn prompt_on_stdin(&self) -> bool;

    /// A fresh reader of one process's output.
    fn parser(&self) -> Box<dyn Parser>;

    /// The program to run in place of `program` (a real path, links followed) when that is
    /// only a wrapper that would start another: `Ok(None)` runs `program` itself; an error
    /// says why the program behind the wrapper cannot be found and what to do.
    fn native_program(&self, _program: &Path) -> Result<Option<PathBuf>, String> {
        Ok(None)
    }

    /// What the sandbox shows read-only beside `program` (the file [`resolve_program`] chose):
    /// by default the npm package it was installed in, whose other files a bundled CLI loads
    /// at run time.
    fn shown_with(&self, program: &Path) -> Vec<PathBuf> {
        npm::installed_package(program).into_iter().collect()
    }

    /// Host paths the sandbox hides from the CLI although they lie in a tree it shows: the
    /// CLI's system-wide configuration under `/etc`, which would otherwise override the
    /// settings agentgrid writes for each execution.
    fn hidden_with(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    /// What an exit status of the CLI's own means, said after it ("exited with 41 (…)").
    fn exit_meaning(&self, _code: i32) -> Option<&'static str> {
        None
    }

    /// Whether the CLI's usage events count everything since its session began rather than
    /// one run's use, so that a resumed session reports the earlier iterations again.
    fn usage_is_running_total(&self) -> bool {
        false
    }

    /// Writes the configuration the CLI reads from its HOME, before each iteration, given the
    /// environment it will run with and the invocation (the model alias it asks for); returns
    /// more environment to set (after [`Adapter::env`]).
    fn prepare_home(
        &self,
        _home: &Path,
        _env: &[(String, String)],
        _invocation: &Invocation<'_>,
    ) -> std::io::Result<Vec<(String, String)>> {
        Ok(Vec::new())
    }
}

/// Writes a CLI's configuration file at `rel` (a relative path of plain names) under an
/// execution's `home`. The agent owns that home while it runs and the engine writes there
/// again before each iteration, so nothing the agent left there is followed: a symlink or file
/// where a directory belongs, and whatever is at the file's place, are removed first, and the
/// file is created anew, refusing a final symlink.
pub(crate) fn write_home_file(home: &Path, rel: &str, contents: &[u8]) -> std::io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let rel = Path::new(rel);
    let mut at = home.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    let Some((file, dirs)) = parts.split_last() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a configuration file needs a name",
        ));
    };
    for part in dirs {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => std::fs::remove_file(&at)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir(&at)?;
    }
    at.push(file);
    match std::fs::symlink_metadata(&at) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&at)?,
        Ok(_) => std::fs::remove_file(&at)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(&at)?;
    out.write_all(contents)?;
    Ok(at)
}

/// Reads one process's output, a line at a time, into events.
pub trait Parser: Send {
    /// The events one line of standard output says; `at` is when it arrived.
    fn line(&mut self, line: &str, at: Timestamp) -> Vec<AgentEvent>;

    /// The events the end of the output says (for a CLI whose last word is only that it
    /// stopped printing).
    fn finish(&mut self) -> Vec<AgentEvent> {
        Vec::new()
    }
}

/// The adapter of a runtime type; `None` for `command` and for the built-in agent (whose JSON
/// lines are logged as they are).
pub fn adapter(kind: RuntimeKind) -> Option<Box<dyn Adapter>> {
    match kind {
        RuntimeKind::Command | RuntimeKind::Builtin => None,
        RuntimeKind::Aider => Some(Box::new(Aider)),
        RuntimeKind::Claude => Some(Box::new(Claude)),
        RuntimeKind::Codex => Some(Box::new(Codex)),
        RuntimeKind::Gemini => Some(Box::new(Gemini)),
        RuntimeKind::Opencode => Some(Box::new(OpenCode)),
    }
}

/// Why a known CLI's program cannot be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgramProblem {
    /// `program` is no executable file (it holds a `/`) or on no directory of `path`.
    NotFound { program: String, path: String },
    /// It is a wrapper whose real program is missing; the message says what to do.
    Wrapper(String),
}

impl std::fmt::Display for ProgramProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProgramProblem::NotFound { program, .. } if program.contains('/') => {
                write!(f, "`{program}` is not an executable file")
            }
            ProgramProblem::NotFound { program, path } => {
                write!(f, "`{program}` is on no directory of the PATH (`{path}`)")
            }
            ProgramProblem::Wrapper(why) => f.write_str(why),
        }
    }
}

/// The file a known CLI's agent runs for `program` (the manifest's first word of `command`,
/// or the CLI's usual name): found as launch finds it (on `path`, or against `cwd`), links
/// followed — the sandbox shows the program's real file, not the link's directory — and,
/// for a wrapper that only starts another program, that program
/// ([`Adapter::native_program`]).
pub fn resolve_program(
    adapter: &dyn Adapter,
    program: &str,
    cwd: &Path,
    path: &str,
) -> Result<PathBuf, ProgramProblem> {
    let found = npm::find(program, cwd, path).ok_or_else(|| ProgramProblem::NotFound {
        program: program.to_string(),
        path: path.to_string(),
    })?;
    let real = std::fs::canonicalize(&found).unwrap_or(found);
    match adapter.native_program(&real) {
        Ok(Some(native)) => Ok(native),
        Ok(None) => Ok(real),
        Err(why) => Err(ProgramProblem::Wrapper(why)),
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
    /// For a CLI whose usage is a running total, the last total it reported.
    running_total: Option<Tokens>,
}

impl EventSink {
    /// The sink of a CLI whose usage events are running totals of its session: each is
    /// recorded as what it adds to the one before, so the recorded usage adds up to the total.
    pub fn with_running_totals() -> EventSink {
        EventSink {
            running_total: Some(Tokens::default()),
            ..EventSink::default()
        }
    }

    /// Starts a new iteration: its failures and usage are its own; the session carries over.
    pub fn next_iteration(&mut self) {
        self.failure = None;
    }

    /// Takes in one event; returns what to record, if anything (nothing past the cap).
    pub fn take(&mut self, event: AgentEvent) -> Option<AgentEvent> {
        let mut event = event.bounded();
        if let (
            Some(last),
            AgentEvent::Usage {
                input_tokens,
                output_tokens,
                cached_tokens,
            },
        ) = (&mut self.running_total, &mut event)
        {
            let total = Tokens {
                input: *input_tokens,
                output: *output_tokens,
                cached: *cached_tokens,
            };
            let added = total.since(last);
            *input_tokens = added.input;
            *output_tokens = added.output;
            *cached_tokens = added.cached;
            *last = total;
        }
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
    fn every_cli_with_a_system_configuration_under_etc_has_it_hidden() {
        // The host's own settings for a CLI (managed settings, admin policies, system config)
        // may carry credentials or override the gateway: each adapter hides its directory.
        for (kind, dir) in [
            (RuntimeKind::Claude, "/etc/claude-code"),
            (RuntimeKind::Codex, "/etc/codex"),
            (RuntimeKind::Gemini, "/etc/gemini-cli"),
            (RuntimeKind::Opencode, "/etc/opencode"),
        ] {
            let adapter = adapter(kind).unwrap();
            assert_eq!(adapter.hidden_with(), vec![PathBuf::from(dir)], "{kind:?}");
        }
        assert!(
            adapter(RuntimeKind::Aider)
                .unwrap()
                .hidden_with()
                .is_empty()
        );
    }

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

    #[test]
    fn running_totals_are_recorded_as_increments() {
        let usage = |input_tokens, output_tokens, cached_tokens| AgentEvent::Usage {
            input_tokens,
            output_tokens,
            cached_tokens,
        };
        let mut sink = EventSink::with_running_totals();
        assert_eq!(sink.take(usage(200, 20, 10)), Some(usage(200, 20, 10)));
        sink.next_iteration();
        assert_eq!(sink.take(usage(450, 50, 10)), Some(usage(250, 30, 0)));
        // Usage that is per run is recorded as it is.
        let mut plain = EventSink::default();
        plain.take(usage(200, 20, 10));
        assert_eq!(plain.take(usage(450, 50, 10)), Some(usage(450, 50, 10)));
    }
}
