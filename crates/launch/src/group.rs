//! Process groups and pids: signalling a whole group, telling whether it still lives, and
//! recognising a process after a restart by its start time.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::Error;
use crate::procfs::{self, ProcTable};

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
    if pgid <= 1 || killpg(Pid::from_raw(pgid), None) == Err(Errno::ESRCH) {
        return false;
    }
    alive_in(&procfs::scan(), pgid)
}

/// The live (not zombie) processes of group `pgid`, from /proc; empty when /proc cannot be
/// read.
pub fn group_members(pgid: i32) -> Vec<i32> {
    let table = procfs::scan();
    table.live_members(pgid).map(|e| e.pid).collect()
}

/// Whether group `pgid` may still be alive by `table`: not when the kernel has no such group,
/// and yes whenever the table cannot rule it out (see [`group_alive`]).
fn alive_in(table: &ProcTable, pgid: i32) -> bool {
    pgid > 1 && killpg(Pid::from_raw(pgid), None) != Err(Errno::ESRCH) && table.group_may_live(pgid)
}

/// Whether `pid` names a live process (not a zombie).
pub fn process_alive(pid: i32) -> bool {
    procfs::entry(pid).is_some_and(|e| e.live())
}

/// Asks group `pgid` to stop with SIGTERM (and SIGCONT, so that a stopped process can act on
/// it), waits up to `grace` for it to vanish, then sends SIGKILL. Returns whether the group is
/// gone at the end.
pub async fn terminate_group(pgid: i32, grace: Duration) -> bool {
    if pgid <= 1 || killpg(Pid::from_raw(pgid), None) == Err(Errno::ESRCH) {
        return true;
    }
    terminate_groups(&[pgid], grace).await.is_empty()
}

/// Waits up to `within` for every live member of group `pgid` to vanish; true if they did.
pub(crate) async fn wait_gone(pgid: i32, within: Duration) -> bool {
    wait_all_gone(&[pgid], within).await.is_empty()
}

/// Ends every group of `pgids` at once: SIGTERM (and SIGCONT) to all, then one /proc scan per
/// round for all of them, SIGKILL to each that outlives `grace`, and a last wait for the
/// kernel to finish those off. Returns the groups that could not be shown gone (empty when
/// every one ended); a group /proc cannot speak for counts as alive.
///
/// However many groups there are, nothing waits for one group at a time: 500 groups cost the
/// same rounds of scanning as one.
pub async fn terminate_groups(pgids: &[i32], grace: Duration) -> Vec<i32> {
    let pgids: Vec<i32> = pgids.iter().copied().filter(|g| *g > 1).collect();
    let mut asked = Vec::with_capacity(pgids.len());
    let mut forced = Vec::new();
    for &pgid in &pgids {
        if kill_group(pgid, Signal::SIGTERM).is_ok() {
            let _ = kill_group(pgid, Signal::SIGCONT);
            asked.push(pgid);
        } else {
            // Asking failed for a reason other than the group being gone: do not ask, end it.
            let _ = kill_group(pgid, Signal::SIGKILL);
            forced.push(pgid);
        }
    }
    let stubborn = wait_all_gone(&asked, grace).await;
    if !stubborn.is_empty() {
        tracing::debug!(groups = ?stubborn, "process groups ignored SIGTERM; sending SIGKILL");
    }
    for &pgid in &stubborn {
        let _ = kill_group(pgid, Signal::SIGKILL);
    }
    forced.extend(stubborn);
    wait_all_gone(&forced, KILL_GRACE).await
}

/// Waits up to `within` for every group of `pgids` to vanish, scanning /proc once per round
/// off the async threads; returns those still (possibly) alive at the end.
async fn wait_all_gone(pgids: &[i32], within: Duration) -> Vec<i32> {
    let mut left: Vec<i32> = pgids.to_vec();
    if left.is_empty() {
        return left;
    }
    let deadline = Instant::now() + within;
    // A killed group is usually gone within a millisecond (a sandbox's init finishing its
    // exit): look again soon at first, then back off to the usual poll.
    let mut pause = Duration::from_micros(250);
    loop {
        // The kernel's answer is cheap and exact for groups with no process at all (not even
        // a zombie); only the rest need the scan.
        left.retain(|&pgid| killpg(Pid::from_raw(pgid), None) != Err(Errno::ESRCH));
        if !left.is_empty() {
            let table = procfs::scan_blocking().await;
            left.retain(|&pgid| alive_in(&table, pgid));
        }
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 2).min(POLL);
    }
}

/// The start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat). A pid
/// recorded together with this value names the same process later only if both still match.
pub fn process_start_time(pid: i32) -> Option<u64> {
    procfs::entry(pid).map(|e| e.start_time)
}

#[cfg(test)]
mod tests {
    use super::*;

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
