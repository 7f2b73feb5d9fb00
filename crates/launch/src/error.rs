//! The one error type of the launch crate.

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::sys::signal::Signal;

/// Everything that can go wrong while starting, watching or signalling a child process.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot start `{program}`: no executable of that name in any directory of the launch PATH \
         (`{path}`); install it, add its directory to PATH in the launch environment, or give a full path"
    )]
    ProgramNotFound { program: String, path: String },

    #[error(
        "cannot start `{path}`: it does not exist or is not an executable file; check the path and \
         its permissions"
    )]
    NotExecutable { path: PathBuf },

    #[error(
        "cannot start `{program}` in `{cwd}`: that working directory does not exist or is not a \
         directory; create it first or fix the path"
    )]
    CwdMissing { program: String, cwd: PathBuf },

    #[error("starting `{program}` in `{cwd}` failed: {source}")]
    Spawn {
        program: String,
        cwd: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "cannot open the log file `{path}` for appending: {source}; check that its directory \
         exists and is writable"
    )]
    LogFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot start the {what} thread for process {pid}: {source}")]
    Thread {
        what: &'static str,
        pid: i32,
        #[source]
        source: io::Error,
    },

    #[error(
        "refusing to signal process group {pgid}: only group ids above 1 name a single group \
         (0 is this process's own group, -1 and 1 reach every process)"
    )]
    InvalidGroup { pgid: i32 },

    #[error("cannot send {signal} to process group {pgid}: {source}")]
    Signal {
        pgid: i32,
        signal: Signal,
        #[source]
        source: Errno,
    },

    #[error("waiting for process {pid} failed: {reason}")]
    Wait { pid: i32, reason: String },

    /// The work this child belonged to was asked to stop (see [`crate::cancellable`]): it was
    /// not started, or its group was ended.
    #[error("`{program}` was stopped: the work it belonged to was cancelled")]
    Cancelled { program: String },

    #[error("cannot start `{program}` in its sandbox: {source}")]
    Sandbox {
        program: String,
        #[source]
        source: sandbox::Error,
    },
}
