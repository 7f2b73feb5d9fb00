//! The signals whose disposition this process changes, in one list.
//!
//! A new child shares this process's memory until it executes its program (see
//! [`crate::exec`]), so a handler of ours must not run in it, and what the Rust runtime
//! ignores must not stay ignored in the program (`SIG_IGN` survives `execve`). Instead of
//! asking for every one of the 64 signals and putting back each that has a handler (what
//! glibc's `posix_spawn` does, about 120 system calls per child), the child resets just the
//! ones listed here. Debug builds check at every spawn that no other signal has a handler, so
//! a new handler anywhere in the process cannot be forgotten here.
//!
//! A signal ignored by whoever started us (`nohup` ignores `SIGHUP`) stays ignored in our
//! children, as it did with `posix_spawn` and as POSIX has it for `exec`. glibc's internal
//! signals (32 and 33) are not ours to touch: its `sigaction` refuses them, and it only ever
//! sends them to threads of its own list, never to a child.

/// Every signal this process catches, and the one the Rust runtime ignores. A child puts
/// each back to its default when it has a handler here, and `SIGPIPE` always.
///
/// - `SIGINT`, `SIGTERM`: `agentgrid run` shuts down on them (through tokio's handlers).
/// - `SIGPIPE`: ignored by the Rust runtime from the start, so writes to a closed pipe fail
///   with an error instead of killing us.
/// - `SIGSEGV`, `SIGBUS`: caught by the Rust runtime to report a stack overflow.
/// - `SIGWINCH`: the interactive screens (`agentgrid approvals`, `status --watch`) redraw on
///   it, and they land work (which runs git) while they are open.
pub const HANDLED: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGPIPE,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGWINCH,
];

/// The signals that have a handler in this process but are not in [`HANDLED`]. Costs one
/// `sigaction` per signal, so only debug builds ask it at every spawn.
pub fn unlisted_handlers() -> Vec<libc::c_int> {
    (1..libc::SIGRTMAX())
        .filter(|sig| !HANDLED.contains(sig))
        .filter(|&sig| {
            // SAFETY: an all-zero sigaction is a valid out-parameter, and a null new action
            // only reads the current disposition.
            let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
            let rc = unsafe { libc::sigaction(sig, std::ptr::null(), &mut current) };
            rc == 0
                && current.sa_sigaction != libc::SIG_DFL
                && current.sa_sigaction != libc::SIG_IGN
        })
        .collect()
}

/// Fails loudly in debug builds when the list above is out of date.
pub(crate) fn check_listed() {
    if cfg!(debug_assertions) {
        let unlisted = unlisted_handlers();
        assert!(
            unlisted.is_empty(),
            "signals {unlisted:?} have a handler but are not in launch::signals::HANDLED, so a \
             new child could run that handler before its exec: add them there"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rust_runtime_ignores_sigpipe_and_the_list_knows_it() {
        // SAFETY: reading a disposition only.
        let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut current) };
        assert_eq!(rc, 0);
        assert_eq!(current.sa_sigaction, libc::SIG_IGN);
        assert_eq!(unlisted_handlers(), Vec::<libc::c_int>::new());
    }
}
