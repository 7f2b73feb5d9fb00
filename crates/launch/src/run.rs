//! Short commands (git, hooks, validators): run to the end under a timeout and capture what they
//! printed.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::group::wait_gone;
use crate::output::Tail;
use crate::process::{SETTLE_GRACE, describe_status};
use crate::start::{OutputSink, start, watch};
use crate::{Error, LaunchSpec, Stream};

/// How long a timed-out command gets between SIGTERM and SIGKILL: long enough for git to drop
/// its lock files, short enough not to matter.
const TERM_GRACE: Duration = Duration::from_secs(1);
/// How long to wait for the pipes to close once the group is dead.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// What a short command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// The last `capture_limit` bytes of standard output.
    pub stdout: String,
    /// The last `capture_limit` bytes of standard error.
    pub stderr: String,
    /// Whether earlier output was left out of `stdout` / `stderr` to respect the limit.
    pub stdout_cut: bool,
    pub stderr_cut: bool,
    /// The command ran out of time and its group was killed.
    pub timed_out: bool,
    pub wall_ms: u64,
    pub cpu_ms: u64,
}

impl Output {
    /// Exited with 0 in time.
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }

    /// "exited with 1", "killed by SIGKILL", "timed out and was killed".
    pub fn describe(&self) -> String {
        if self.timed_out {
            "timed out and was killed".into()
        } else {
            describe_status(self.code, self.signal)
        }
    }

    /// Standard output and standard error together, for error messages.
    pub fn combined(&self) -> String {
        match (self.stdout.trim_end(), self.stderr.trim_end()) {
            ("", err) => err.to_string(),
            (out, "") => out.to_string(),
            (out, err) => format!("{out}\n{err}"),
        }
    }
}

/// Runs `spec` to its end, keeping the last `capture_limit` bytes of each of its output streams.
/// After `timeout` the whole group is terminated (SIGTERM, then SIGKILL) and `timed_out` is set.
///
/// Inside a [`crate::cancellable`] scope, nothing starts once the scope is cancelled, and a
/// cancel while the command runs ends its group at once ([`crate::CANCEL_GRACE`]); both are
/// [`Error::Cancelled`].
pub async fn run(
    spec: LaunchSpec,
    timeout: Duration,
    capture_limit: usize,
) -> Result<Output, Error> {
    let cancel = crate::cancel::current();
    if cancel.as_ref().is_some_and(|t| t.is_cancelled()) {
        return Err(Error::Cancelled {
            program: spec.program,
        });
    }
    let program = spec.program.clone();
    let child = start(spec)?;
    let pid = child.pid;
    let finished = child.finished.clone();
    let stdout = Arc::new(Mutex::new(Tail::new(capture_limit)));
    let stderr = Arc::new(Mutex::new(Tail::new(capture_limit)));
    let mut watched = watch(
        child,
        Capture {
            stdout: stdout.clone(),
            stderr: stderr.clone(),
        },
    )?;

    let cancelled = async {
        match &cancel {
            Some(token) => token.cancelled().await,
            None => std::future::pending().await,
        }
    };
    let (raw, timed_out) = tokio::select! {
        ended = tokio::time::timeout(timeout, &mut watched.exit) => match ended {
            Ok(result) => (result, false),
            Err(_) => {
                if !finished.load(std::sync::atomic::Ordering::SeqCst) {
                    crate::terminate_group(pid, TERM_GRACE).await;
                }
                (watched.exit.await, true)
            }
        },
        () = cancelled => {
            // Fail closed: the group goes whatever the command was doing, and what it did is
            // no answer to anyone.
            if !finished.load(std::sync::atomic::Ordering::SeqCst)
                && !crate::terminate_group(pid, crate::CANCEL_GRACE).await
            {
                tracing::warn!(pid, program, "a cancelled command's group is still alive after SIGKILL");
            }
            let _ = watched.exit.await;
            if !wait_gone(pid, SETTLE_GRACE).await {
                tracing::warn!(pid, "processes of the group are still alive after SIGKILL");
            }
            return Err(Error::Cancelled { program });
        }
    };
    let raw = match raw {
        Ok(Ok(raw)) => raw,
        Ok(Err(reason)) => return Err(Error::Wait { pid, reason }),
        Err(_) => {
            return Err(Error::Wait {
                pid,
                reason: "the watcher of the child ended early".into(),
            });
        }
    };
    if !wait_gone(pid, SETTLE_GRACE).await {
        tracing::warn!(pid, "processes of the group are still alive after SIGKILL");
    }
    if tokio::time::timeout(DRAIN_GRACE, watched.drained)
        .await
        .is_err()
    {
        tracing::warn!(
            pid,
            "output pipes still open after the process group died; not waiting for them"
        );
    }
    let take = |tail: &Arc<Mutex<Tail>>| {
        let tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
        (tail.text(), tail.dropped())
    };
    let (out, stdout_cut) = take(&stdout);
    let (err, stderr_cut) = take(&stderr);
    Ok(Output {
        code: raw.code,
        signal: raw.signal,
        stdout: out,
        stderr: err,
        stdout_cut,
        stderr_cut,
        timed_out,
        wall_ms: raw.wall_ms,
        cpu_ms: raw.cpu_ms,
    })
}

/// Keeps the last `capture_limit` bytes of each stream.
struct Capture {
    stdout: Arc<Mutex<Tail>>,
    stderr: Arc<Mutex<Tail>>,
}

impl OutputSink for Capture {
    fn data(&mut self, stream: Stream, bytes: &[u8]) {
        let tail = match stream {
            Stream::Stdout => &self.stdout,
            Stream::Stderr => &self.stderr,
        };
        tail.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(bytes);
    }

    fn closed(&mut self, _stream: Stream) {}
}
