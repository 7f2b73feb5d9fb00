//! The one error type of the sandbox crate.

use std::io;
use std::path::PathBuf;

use crate::probe::Missing;

/// Everything that can go wrong while describing, checking or setting up a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The host lacks a mechanism the spec needs; each entry says what and how to opt out.
    #[error("{}", describe_missing(.missing))]
    Unsupported { missing: Vec<Missing> },

    #[error("invalid sandbox spec: {reason}")]
    InvalidSpec { reason: String },

    #[error(
        "cannot find the sandbox helper (the agentgrid binary): {source}; set the helper path \
         in the sandbox spec"
    )]
    HelperNotFound {
        #[source]
        source: io::Error,
    },

    #[error("cannot encode the sandbox invocation for the helper: {source}")]
    Encode {
        #[source]
        source: serde_json::Error,
    },

    #[error(
        "`{path}` is not a git worktree that agentgrid understands ({reason}); pass the git \
         metadata paths yourself"
    )]
    GitMetadata { path: PathBuf, reason: String },
}

fn describe_missing(missing: &[Missing]) -> String {
    let mut text = String::from("cannot start a sandboxed execution on this host:");
    for m in missing {
        text.push_str(&format!(
            "\n  - {} is missing ({}); to run without it knowingly, {}",
            m.mechanism.title(),
            m.reason,
            m.opt_out
        ));
    }
    text.push_str("\n`agentgrid doctor` shows what this host supports.");
    text
}
