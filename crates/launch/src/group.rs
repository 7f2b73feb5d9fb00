//! Process groups and pids: signalling a whole group, telling whether it still lives, and
//! recognising a process after a restart by its start time.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::Error;

/// How often [`terminate_group`] looks whether the group is gone.
const POLL: Duration = Duration::from_millis(20);
/// How long [`terminate_group`] waits after SIGKILL for the kernel to finish the group off.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Sends `signal` to every process of group `pgid`. A group that no longer exists is not an
/// error: the caller wanted it gone or signalled, and there is nothing left to signal.
pub fn kill_group(pgid: i32, signal: Signal) -> Result<(), Error> {
    if pgid <= 1 {
        return Err(Error::InvalidGroup { pgid });
    }
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(source) => Err(Error::Signal {
            pgid,
            signal,
            source,
        }),
    }
}

/// Whether any process of group `pgid` still runs. Zombies do not count: they run nothing and
/// vanish when their parent (possibly an init that never reaps) gets to them.
///
/// When the kernel says the group exists but /proc cannot tell which of its members live (out
/// of descriptors, say, or /proc unreadable), the group counts as alive: every kill path acts
/// on this answer, and taking a group for gone when it is not would let it outlive its kill.
pub fn group_alive(pgid: i32) -> bool {
    if pgid <= 1 {
        return false;
    }
    if killpg(Pid::from_raw(pgid), None) == Err(Errno::ESRCH) {
        return false;
    }
    live_members(pgid).is_none_or(|members| !members.is_empty())
}

/// The live (not zombie) processes of group `pgid`, from /proc; empty when /proc cannot be
/// read.
pub fn group_members(pgid: i32) -> Vec<i32> {
    live_members(pgid).unwrap_or_default()
}

/// The live members of group `pgid`, or `None` when /proc could not say: the directory or a
/// process's stat could not be read for another reason than the process being gone.
fn live_members(pgid: i32) -> Option<Vec<i32>> {
    let entries = std::fs::read_dir("/proc").ok()?;
    let mut members = Vec::new();
    for entry in entries {
        let entry = entry.ok()?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(text) => {
                if parse_stat(&text)
                    .is_some_and(|f| f.pgrp == pgid && !matches!(f.state, 'Z' | 'X'))
                {
                    members.push(pid);
                }
            }
            // It ended between the listing and the read.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => {}
            Err(_) => return None,
        }
    }
    Some(members)
}

/// Whether `pid` names a live process (not a zombie).
pub fn process_alive(pid: i32) -> bool {
    pid > 0 && stat_fields(pid).is_some_and(|f| !matches!(f.state, 'Z' | 'X'))
}

/// Asks group `pgid` to stop with SIGTERM (and SIGCONT, so that a stopped process can act on
/// it), waits up to `grace` for it to vanish, then sends SIGKILL. Returns whether the group is
/// gone at the end.
pub async fn terminate_group(pgid: i32, grace: Duration) -> bool {
    if !group_alive(pgid) {
        return true;
    }
    if kill_group(pgid, Signal::SIGTERM).is_err() {
        // Asking failed for a reason other than the group being gone: do not ask, end it.
        let _ = kill_group(pgid, Signal::SIGKILL);
        return wait_gone(pgid, KILL_GRACE).await;
    }
    let _ = kill_group(pgid, Signal::SIGCONT);
    if wait_gone(pgid, grace).await {
        return true;
    }
    tracing::debug!(pgid, "process group ignored SIGTERM; sending SIGKILL");
    let _ = kill_group(pgid, Signal::SIGKILL);
    wait_gone(pgid, KILL_GRACE).await
}

/// Waits up to `within` for every live member of group `pgid` to vanish; true if they did.
pub(crate) async fn wait_gone(pgid: i32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    // A killed group is usually gone within a millisecond (a sandbox's init finishing its
    // exit): look again soon at first, then back off to the usual poll.
    let mut pause = Duration::from_micros(250);
    loop {
        if !group_alive(pgid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 2).min(POLL);
    }
}

/// The start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat). A pid
/// recorded together with this value names the same process later only if both still match.
pub fn process_start_time(pid: i32) -> Option<u64> {
    stat_fields(pid).map(|f| f.start_time)
}

struct Stat {
    state: char,
    pgrp: i32,
    start_time: u64,
}

fn stat_fields(pid: i32) -> Option<Stat> {
    if pid <= 0 {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses /proc/<pid>/stat. The command name (field 2) is in parentheses and may itself hold
/// spaces and parentheses, so the fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3 of the file.
    let field = |n: usize| fields.get(n - 3).copied();
    Some(Stat {
        state: field(3)?.chars().next()?,
        pgrp: field(5)?.parse().ok()?,
        start_time: field(22)?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_tricky_command_name() {
        let line = "42 (a) b (c) S 1 40 40 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 987654 1000 10";
        let stat = parse_stat(line).unwrap();
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.pgrp, 40);
        assert_eq!(stat.start_time, 987654);
    }

    #[test]
    fn own_process_has_a_start_time_and_bad_pids_have_none() {
        let me = std::process::id() as i32;
        assert!(process_start_time(me).is_some());
        assert!(process_alive(me));
        assert_eq!(process_start_time(0), None);
        assert_eq!(process_start_time(-5), None);
    }

    #[test]
    fn refuses_to_signal_groups_that_are_not_single_groups() {
        for pgid in [-1, 0, 1] {
            let err = kill_group(pgid, Signal::SIGTERM).unwrap_err();
            assert!(err.to_string().contains("refusing"), "{err}");
        }
        assert!(!group_alive(0));
    }
}
