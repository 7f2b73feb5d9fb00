//! Landing: how a done task's branch is brought into the project's base branch.

use serde::{Deserialize, Serialize};

/// How a task's branch lands on the base branch.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LandStrategy {
    /// One merge commit whose second parent is the task's branch: its history is kept.
    #[default]
    Merge,
    /// One commit on the base holding the whole change, with the base as its only parent.
    Squash,
    /// Each commit of the branch (its first-parent line) replayed on the base in order.
    Rebase,
}

impl LandStrategy {
    pub const ALL: [LandStrategy; 3] = [
        LandStrategy::Merge,
        LandStrategy::Squash,
        LandStrategy::Rebase,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LandStrategy::Merge => "merge",
            LandStrategy::Squash => "squash",
            LandStrategy::Rebase => "rebase",
        }
    }

    pub fn parse(text: &str) -> Option<LandStrategy> {
        LandStrategy::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for LandStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for s in LandStrategy::ALL {
            assert_eq!(LandStrategy::parse(s.as_str()), Some(s));
        }
        assert_eq!(LandStrategy::parse("octopus"), None);
    }
}
