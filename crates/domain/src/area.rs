//! Area leases: an execution's time-limited hold on files or directories of the repository, so
//! that two agents do not work on the same part of the code at once.
//!
//! Not to be confused with the *claim* leases of [`crate::lease`] (which engine runs an
//! execution): an [`AreaLease`] is about paths. It is held by one execution, for its own task
//! or (taken by a coordinator) for one of that task's sub-tasks, on one [`AreaPath`], until it
//! is released, its time runs out, or its execution ends, whatever the end.
//!
//! Two leases overlap when one path is a prefix of the other by whole components: `src` and
//! `src/db.rs` overlap, `src` and `srcs` do not. A lease for the holder's own task is
//! exclusive; one a coordinator takes for a sub-task reserves the area, and the scheduler holds
//! the sub-task back while an overlapping lease of another task's running execution stands
//! ([`waits_for`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::id_type;
use crate::{ExecutionId, TaskId, Timestamp};

id_type!(AreaLeaseId, "L", "an area lease");

/// The bounds of what an agent may ask for.
pub mod limits {
    /// Paths in one `ctl lease take`.
    pub const PATHS_PER_TAKE: usize = 16;
    /// Area leases one execution holds at once.
    pub const HELD_PER_EXECUTION: usize = 32;
    /// Bytes of one path.
    pub const PATH_BYTES: usize = 256;
    /// Components of one path.
    pub const PATH_COMPONENTS: usize = 32;
    /// The longest time one lease is taken for: one hour. A longer hold is a new take.
    pub const MAX_TTL_MS: u64 = 60 * 60 * 1000;
    /// The shortest: one second.
    pub const MIN_TTL_MS: u64 = 1000;
}

/// A normalised path relative to the repository's root: components joined by `/`, none empty,
/// `.` or `..`, no leading `/`, no control characters or backslashes. `.` alone (the whole
/// repository) is written as the empty path and shown as `.`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AreaPath(String);

impl AreaPath {
    /// Checks and normalises what an agent or a person wrote: `./src//db/` is `src/db`.
    pub fn parse(raw: &str) -> Result<AreaPath, String> {
        if raw.len() > limits::PATH_BYTES {
            return Err(format!(
                "a leased path has at most {} bytes, not {}",
                limits::PATH_BYTES,
                raw.len()
            ));
        }
        if raw.trim().is_empty() {
            return Err("a leased path cannot be empty (use `.` for the whole repository)".into());
        }
        if raw.chars().any(|c| c.is_control() || c == '\\') {
            return Err(format!(
                "the leased path {:?} holds a control character or a backslash",
                crate::text::one_line(raw)
            ));
        }
        if raw.starts_with('/') {
            return Err(format!(
                "the leased path `{raw}` is absolute; name a path relative to the repository's \
                 root, such as `src/db`"
            ));
        }
        let mut parts = Vec::new();
        for part in raw.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    return Err(format!(
                        "the leased path `{raw}` goes up with `..`; name a path inside the \
                         repository"
                    ));
                }
                p => parts.push(p),
            }
        }
        if parts.len() > limits::PATH_COMPONENTS {
            return Err(format!(
                "the leased path `{raw}` has {} components, more than {}",
                parts.len(),
                limits::PATH_COMPONENTS
            ));
        }
        if parts.first() == Some(&".git") {
            return Err(format!(
                "the leased path `{raw}` is inside `.git`, which is not part of the code"
            ));
        }
        Ok(AreaPath(parts.join("/")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The components, none for the whole repository.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|p| !p.is_empty())
    }

    /// True when one is a prefix of the other by whole components.
    pub fn overlaps(&self, other: &AreaPath) -> bool {
        let mut a = self.components();
        let mut b = other.components();
        loop {
            match (a.next(), b.next()) {
                (Some(x), Some(y)) if x == y => continue,
                (Some(_), Some(_)) => return false,
                _ => return true,
            }
        }
    }
}

impl fmt::Display for AreaPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str(".")
        } else {
            f.write_str(&self.0)
        }
    }
}

impl schemars::JsonSchema for AreaPath {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AreaPath".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        String::json_schema(generator)
    }
}

impl TryFrom<String> for AreaPath {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        AreaPath::parse(&s)
    }
}

impl From<AreaPath> for String {
    fn from(p: AreaPath) -> String {
        p.to_string()
    }
}

/// Where an area lease stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AreaLeaseState {
    Held,
    /// Released by its holder, or when its execution ended.
    Released,
    /// Its time ran out.
    Expired,
}

impl AreaLeaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            AreaLeaseState::Held => "held",
            AreaLeaseState::Released => "released",
            AreaLeaseState::Expired => "expired",
        }
    }
}

impl fmt::Display for AreaLeaseState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AreaLeaseState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "held" => Ok(AreaLeaseState::Held),
            "released" => Ok(AreaLeaseState::Released),
            "expired" => Ok(AreaLeaseState::Expired),
            other => Err(format!("unknown area lease state `{other}`")),
        }
    }
}

/// One execution's hold on one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AreaLease {
    pub id: AreaLeaseId,
    pub path: AreaPath,
    /// The execution that holds it, and the task that execution works on.
    pub execution: ExecutionId,
    pub holder_task: TaskId,
    /// The agent of the holding execution.
    pub agent: String,
    /// The task it is held for: the holder's own, or one of its sub-tasks.
    pub task: TaskId,
    pub taken_at: Timestamp,
    pub expires_at: Timestamp,
    pub state: AreaLeaseState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
}

impl AreaLease {
    /// Held and within its time at `now`.
    pub fn live(&self, now: Timestamp) -> bool {
        self.state == AreaLeaseState::Held && now < self.expires_at
    }

    /// Taken by a coordinator for a sub-task: a reservation, not the work under way.
    pub fn is_reservation(&self) -> bool {
        self.task != self.holder_task
    }

    /// Who holds it, for a refusal or a waiting reason.
    pub fn holder(&self) -> String {
        format!(
            "execution #{} (agent {}, task #{})",
            self.execution, self.agent, self.holder_task
        )
    }
}

/// Why `task` may not start now: a live lease held for it (a coordinator's reservation)
/// overlaps a live lease of another task that is being worked on: a lease a running execution
/// holds for its own task (`running` says whether an execution is running now), or another
/// reservation whose task runs now (`task_running`, which counts the tasks a decision is
/// starting as running). A reservation whose task is not running holds nothing back, however
/// long its coordinator runs: two sub-tasks reserved overlapping areas take turns. The first
/// such pair, as words a person can act on, and when the blocking lease runs out.
pub fn waits_for(
    task: TaskId,
    leases: &[AreaLease],
    running: impl Fn(ExecutionId) -> bool,
    task_running: impl Fn(TaskId) -> bool,
    now: Timestamp,
) -> Option<(String, Timestamp)> {
    let mine = leases.iter().filter(|l| l.task == task && l.live(now));
    for reserved in mine {
        let blocking = leases.iter().find(|other| {
            other.live(now)
                && other.task != task
                && other.holder_task != task
                && reserved.path.overlaps(&other.path)
                && if other.is_reservation() {
                    task_running(other.task)
                } else {
                    running(other.execution)
                }
        });
        if let Some(other) = blocking {
            let why = if other.is_reservation() {
                format!(
                    "waits for area {}: {} reserved for task #{}, which runs now, until {}",
                    reserved.path, other.path, other.task, other.expires_at
                )
            } else {
                format!(
                    "waits for area {}: {} leased to {} until {}",
                    reserved.path,
                    other.path,
                    other.holder(),
                    other.expires_at
                )
            };
            return Some((why, other.expires_at));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> AreaPath {
        AreaPath::parse(s).unwrap()
    }

    #[test]
    fn paths_are_normalised() {
        assert_eq!(p("./src//db/").as_str(), "src/db");
        assert_eq!(p(".").to_string(), ".");
        assert_eq!(p("a/./b").as_str(), "a/b");
    }

    #[test]
    fn bad_paths_are_refused_with_the_reason() {
        let cases = [
            ("/etc", "is absolute"),
            ("src/../..", "goes up with `..`"),
            ("", "cannot be empty"),
            ("a\\b", "backslash"),
            ("a\nb", "control character"),
            (".git/config", "inside `.git`"),
        ];
        for (raw, expect) in cases {
            let err = AreaPath::parse(raw).unwrap_err();
            assert!(err.contains(expect), "{raw:?}: {err}");
        }
        let long = "a/".repeat(200);
        assert!(
            AreaPath::parse(&long)
                .unwrap_err()
                .contains("at most 256 bytes")
        );
        let deep = vec!["a"; 33].join("/");
        assert!(
            AreaPath::parse(&deep)
                .unwrap_err()
                .contains("33 components")
        );
    }

    #[test]
    fn overlap_is_by_whole_components() {
        assert!(p("src").overlaps(&p("src/db.rs")));
        assert!(p("src/db.rs").overlaps(&p("src")));
        assert!(p("src").overlaps(&p("src")));
        assert!(p(".").overlaps(&p("docs")));
        assert!(!p("src").overlaps(&p("srcs")));
        assert!(!p("src/a").overlaps(&p("src/b")));
    }
}
