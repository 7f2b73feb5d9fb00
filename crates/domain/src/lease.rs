//! Claims that several engines can share a store with: which node runs an execution, until when
//! its claim holds, and the fencing token that tells a stale worker's writes from the live one's.
//!
//! An execution's claim is a [`Lease`]: the [`NodeId`] of the engine that runs it and the time
//! until which that engine vouches for it. The engine renews the leases of its live executions
//! well before they run out; an execution whose lease ran out belongs to an engine that stopped
//! (or can no longer reach the store), and any engine may record it lost. Every change an
//! execution makes carries its fencing token (the task's claim count when it was claimed, so a
//! later claim of the same task always has a greater one); once the execution is lost or its
//! task claimed again, a change under the old token is refused, however late it arrives.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Duration, Timestamp};

/// The stable name of one engine on one machine, recorded on every execution it claims.
///
/// One to 64 characters from `A-Z a-z 0-9 . _ -`, so that it reads the same in a log line, a
/// file name and a JSON field.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(String);

impl NodeId {
    pub const MAX_LEN: usize = 64;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for NodeId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > NodeId::MAX_LEN {
            return Err(format!(
                "a node id has 1 to {} characters, not {}",
                NodeId::MAX_LEN,
                s.len()
            ));
        }
        if let Some(bad) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "a node id may hold only letters, digits, `.`, `_` and `-`, not {bad:?}"
            ));
        }
        Ok(NodeId(s.to_owned()))
    }
}

impl TryFrom<String> for NodeId {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<NodeId> for String {
    fn from(id: NodeId) -> String {
        id.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who holds an execution's claim, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Lease {
    pub node: NodeId,
    /// The claim holds up to (not including) this time unless it is renewed.
    pub until: Timestamp,
}

impl Lease {
    /// A lease taken by `node` at `now` for `length`.
    pub fn starting(node: NodeId, now: Timestamp, length: Duration) -> Lease {
        Lease {
            node,
            until: now.plus(length),
        }
    }

    /// True once the holder has stopped vouching for the execution: at `until` and after.
    pub fn expired(&self, now: Timestamp) -> bool {
        now >= self.until
    }
}

/// The fencing token of an execution: the claim count of its task when the execution was
/// claimed. Greater for every later claim of the same task.
pub type Fence = u32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_short_and_plain() {
        for good in ["a", "build-01", "host.example_7", &"x".repeat(64)] {
            assert_eq!(good.parse::<NodeId>().unwrap().as_str(), good);
        }
        let long = "x".repeat(65);
        for (bad, says) in [
            ("", "1 to 64 characters"),
            (long.as_str(), "not 65"),
            ("a b", "not ' '"),
            ("node/1", "not '/'"),
            ("é", "not 'é'"),
        ] {
            let err = bad.parse::<NodeId>().unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_node_id_round_trips_through_json_and_refuses_a_bad_one() {
        let id: NodeId = "n-1".parse().unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"n-1\"");
        assert_eq!(serde_json::from_str::<NodeId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<NodeId>("\"a b\"").is_err());
    }

    #[test]
    fn a_lease_runs_out_at_its_end() {
        let node: NodeId = "n".parse().unwrap();
        let lease = Lease::starting(node, Timestamp(1_000), Duration::from_secs(30));
        assert_eq!(lease.until, Timestamp(31_000));
        assert!(!lease.expired(Timestamp(30_999)));
        assert!(lease.expired(Timestamp(31_000)));
        assert!(lease.expired(Timestamp(40_000)));
    }
}
