//! The one reader of the host's process table in /proc: a scan into a [`ProcTable`], and the
//! per-process details (environment, directory links, open files) read on demand.
//!
//! Every question agentgrid asks about other processes (is a group still alive, which
//! processes belong to a lost execution, which use a worktree) is answered from one scan, so
//! that a question about 500 groups costs one pass over /proc, not 500. A scan reads one small
//! file per process (`stat`) into a reused buffer and keeps five numbers per process, so its
//! memory is bounded by the number of processes, never by what a process put in its files.
//!
//! Processes come and go while /proc is read. A process that vanishes between the listing and
//! the read is simply not in the table; any other failure (out of descriptors, a /proc that
//! cannot be listed) marks the table [`ProcTable::complete`] `false`, and every kill path takes
//! an incomplete table as "still alive" so that it fails closed.
//!
//! Scanning is blocking file IO that grows with the machine's process count: async callers run
//! it with [`scan_blocking`] (on tokio's blocking pool), never on an async worker.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The most of a process's environment [`environ`] reads. Linux caps the arguments and
/// environment given to `execve` together by a quarter of the stack limit (2 MiB by default);
/// a process can grow its environment past that only by writing to its own memory, and then
/// what lies beyond is not looked at.
pub const MAX_ENVIRON_BYTES: usize = 4 << 20;

/// One process as a scan saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcEntry {
    pub pid: i32,
    /// The process group (field 5 of `stat`).
    pub pgid: i32,
    /// The owner of `/proc/<pid>`: the process's effective uid while it is dumpable.
    pub uid: u32,
    /// The state letter of `stat` (`R`, `S`, `D`, `Z`, …).
    pub state: char,
    /// Clock ticks since boot at which the process started (field 22 of `stat`).
    pub start_time: u64,
}

impl ProcEntry {
    /// Whether the process still runs anything: zombies and dead entries do not.
    pub fn live(&self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }
}

/// The processes of the host at one moment, sorted by pid.
#[derive(Debug, Clone, Default)]
pub struct ProcTable {
    entries: Vec<ProcEntry>,
    complete: bool,
}

impl ProcTable {
    /// Whether every process listed could be read. When it is `false`, a process missing from
    /// the table may still exist.
    pub fn complete(&self) -> bool {
        self.complete
    }

    /// Every process seen, by pid.
    pub fn entries(&self) -> &[ProcEntry] {
        &self.entries
    }

    /// The process `pid`, if it was seen.
    pub fn get(&self, pid: i32) -> Option<&ProcEntry> {
        self.entries
            .binary_search_by_key(&pid, |e| e.pid)
            .ok()
            .map(|i| &self.entries[i])
    }

    /// The live (not zombie) members of group `pgid`.
    pub fn live_members(&self, pgid: i32) -> impl Iterator<Item = &ProcEntry> {
        self.entries
            .iter()
            .filter(move |e| e.pgid == pgid && e.live())
    }

    /// Whether group `pgid` may still have a live member by this table: yes when one was seen,
    /// and yes when the table is incomplete (it fails closed).
    pub fn group_may_live(&self, pgid: i32) -> bool {
        !self.complete || self.live_members(pgid).next().is_some()
    }
}

/// Scans /proc once. Never fails: what could not be read makes the table incomplete.
pub fn scan() -> ProcTable {
    let mut table = ProcTable {
        entries: Vec::new(),
        complete: true,
    };
    let entries = match std::fs::read_dir("/proc") {
        Ok(entries) => entries,
        Err(_) => {
            table.complete = false;
            return table;
        }
    };
    let mut buf = String::with_capacity(512);
    for entry in entries {
        let Ok(entry) = entry else {
            table.complete = false;
            break;
        };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        match read_entry(pid, &mut buf) {
            Ok(Some(found)) => table.entries.push(found),
            Ok(None) => {}
            Err(_) => table.complete = false,
        }
    }
    table.entries.sort_unstable_by_key(|e| e.pid);
    table
}

/// [`scan`] on tokio's blocking pool, for async callers. If that pool cannot take the job
/// (the runtime is shutting down), the table is empty and incomplete, which kill paths read as
/// "alive".
pub async fn scan_blocking() -> ProcTable {
    tokio::task::spawn_blocking(scan).await.unwrap_or_default()
}

/// The entry of one process, read now; `None` when it does not exist (or is gone already).
pub fn entry(pid: i32) -> Option<ProcEntry> {
    if pid <= 0 {
        return None;
    }
    read_entry(pid, &mut String::with_capacity(512))
        .ok()
        .flatten()
}

/// Reads `/proc/<pid>/stat` into `buf`: `Ok(None)` when the process is gone, `Err` when it
/// could not be read for another reason.
fn read_entry(pid: i32, buf: &mut String) -> io::Result<Option<ProcEntry>> {
    let base = PathBuf::from(format!("/proc/{pid}"));
    let result = (|| {
        let uid = std::fs::metadata(&base)?.uid();
        buf.clear();
        // A stat line is a few hundred bytes (the command name is at most 16); the bound keeps
        // a strange kernel from making it more.
        File::open(base.join("stat"))?
            .take(4096)
            .read_to_string(buf)?;
        Ok(uid)
    })();
    match result {
        Ok(uid) => Ok(parse_stat(buf).map(|stat| ProcEntry {
            pid,
            pgid: stat.pgrp,
            uid,
            state: stat.state,
            start_time: stat.start_time,
        })),
        Err(e) if vanished(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether an error reading a process's files means that process has ended.
fn vanished(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH))
}

/// The environment of `pid` (`NAME=value` entries separated by NUL), at most
/// [`MAX_ENVIRON_BYTES`] of it; `None` when it cannot be read (gone, or another user's).
pub fn environ(pid: i32) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(format!("/proc/{pid}/environ"))
        .ok()?
        .take(MAX_ENVIRON_BYTES as u64)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

/// Whether the environment of `pid` holds every one of `wanted` (whole `NAME=value` entries)
/// and at least one of `any_of` (or `any_of` is empty).
pub fn environ_has(pid: i32, wanted: &[&[u8]], any_of: &[&[u8]]) -> bool {
    let Some(bytes) = environ(pid) else {
        return false;
    };
    let has = |var: &[u8]| bytes.split(|b| *b == 0).any(|v| v == var);
    wanted.iter().all(|v| has(v)) && (any_of.is_empty() || any_of.iter().any(|v| has(v)))
}

/// Whether `pid`'s working directory, root, executable or any open file lies inside `dir`
/// (which should be canonical). A process whose links cannot be read (another user's, without
/// privileges, or gone) does not count.
pub fn uses_path(pid: i32, dir: &Path) -> bool {
    let base = PathBuf::from(format!("/proc/{pid}"));
    let inside = |link: &Path| std::fs::read_link(link).is_ok_and(|target| target.starts_with(dir));
    if ["cwd", "root", "exe"]
        .iter()
        .any(|name| inside(&base.join(name)))
    {
        return true;
    }
    let Ok(fds) = std::fs::read_dir(base.join("fd")) else {
        return false;
    };
    fds.filter_map(Result::ok).any(|fd| inside(&fd.path()))
}

pub(crate) struct Stat {
    pub(crate) state: char,
    pub(crate) pgrp: i32,
    pub(crate) start_time: u64,
}

/// Parses /proc/<pid>/stat. The command name (field 2) is in parentheses and may itself hold
/// spaces and parentheses, so the fields are counted from the last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // The first field after the name is field 3 of the file.
    let state = fields.next()?.chars().next()?;
    let pgrp = fields.nth(1)?.parse().ok()?;
    let start_time = fields.nth(16)?.parse().ok()?;
    Some(Stat {
        state,
        pgrp,
        start_time,
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
        assert!(parse_stat("42 (x) S 1").is_none());
    }

    #[test]
    fn a_scan_sees_this_process_with_its_group_and_owner() {
        let table = scan();
        assert!(table.complete());
        let me = std::process::id() as i32;
        let found = table
            .get(me)
            .expect("a scan lists the process that made it");
        assert_eq!(found.pgid, nix::unistd::getpgrp().as_raw());
        assert_eq!(found.uid, nix::unistd::geteuid().as_raw());
        assert!(found.live());
        assert!(table.group_may_live(found.pgid));
        assert!(table.entries().windows(2).all(|w| w[0].pid < w[1].pid));
        assert_eq!(entry(me).map(|e| e.start_time), Some(found.start_time));
    }

    #[test]
    fn an_incomplete_table_takes_every_group_for_alive() {
        let empty = ProcTable::default();
        assert!(!empty.complete());
        assert!(empty.group_may_live(123_456));
        let complete = ProcTable {
            entries: vec![ProcEntry {
                pid: 7,
                pgid: 7,
                uid: 0,
                state: 'Z',
                start_time: 1,
            }],
            complete: true,
        };
        assert!(
            !complete.group_may_live(7),
            "a group of zombies runs nothing"
        );
        assert!(!complete.group_may_live(8));
    }

    #[test]
    fn environ_matches_whole_entries_only() {
        let me = std::process::id() as i32;
        let path = std::env::var("PATH").expect("tests run with a PATH");
        let whole = format!("PATH={path}");
        assert!(environ_has(me, &[whole.as_bytes()], &[]));
        assert!(environ_has(me, &[], &[b"NO_SUCH=1", whole.as_bytes()]));
        assert!(!environ_has(me, &[b"PATH="], &[]));
        assert!(!environ_has(me, &[whole.as_bytes()], &[b"NO_SUCH=1"]));
        assert!(!environ_has(-1, &[], &[]));
    }

    #[test]
    fn an_open_file_marks_this_process_as_using_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let canonical = dir.path().canonicalize().unwrap();
        let me = std::process::id() as i32;
        assert!(!uses_path(me, &canonical));
        let file = File::create(canonical.join("held")).unwrap();
        assert!(uses_path(me, &canonical));
        drop(file);
        assert!(!uses_path(me, &canonical));
    }
}
