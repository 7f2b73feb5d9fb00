//! The one error type of the workspace crate.

use std::io;
use std::path::PathBuf;

use domain::TaskId;

use crate::HookKind;

/// Everything that can go wrong while making, using or removing a task's workspace.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The worktree holds more than a commit may add.
    #[error(transparent)]
    OverQuota(crate::OverQuota),

    /// git or a hook could not be started at all.
    #[error(transparent)]
    Launch(#[from] launch::Error),

    #[error("`{command}` in `{dir}` {status}: {output}")]
    Git {
        command: String,
        dir: PathBuf,
        status: String,
        output: String,
    },

    #[error(
        "`{repo}` is not a git repository ({output}); point repo_root at the top of a git checkout"
    )]
    NotARepository { repo: PathBuf, output: String },

    #[error(
        "cannot land on the base branch `{base}`: {why}; set workspace.base in \
         .agentgrid/config.yaml to the branch tasks land on"
    )]
    NoBaseBranch { base: String, why: String },

    #[error(
        "the base branch `{branch}` is checked out in another worktree at `{path}`; landing \
         would leave that checkout behind its branch: switch it to another branch first"
    )]
    BaseCheckedOutElsewhere { branch: String, path: PathBuf },

    #[error(
        "`{reference}` moved while landing (expected {expected}, found {found}); nothing was \
         changed: land again"
    )]
    BaseMoved {
        reference: String,
        expected: String,
        found: String,
    },

    #[error("the repository `{repo}` has no commits: make a first commit, then try again")]
    NoCommits { repo: PathBuf },

    #[error(
        "cannot start the branch of task {task} from `{start}`: no such commit, branch or tag in \
         `{repo}`; check the configured base branch or the parent task's branch"
    )]
    UnknownStartPoint {
        task: TaskId,
        start: String,
        repo: PathBuf,
    },

    #[error(
        "cannot make the workspace of task {task} at `{path}`: something that is not its git \
         worktree is already there; move it away or delete it, then try again"
    )]
    PathTaken { task: TaskId, path: PathBuf },

    #[error(
        "the worktree at `{path}` has `{found}` checked out, not `{expected}`; remove that \
         worktree (git worktree remove) so the task's own branch can be checked out there"
    )]
    WrongBranch {
        path: PathBuf,
        expected: String,
        found: String,
    },

    #[error(
        "refusing to use the git directory `{path}` of task {task}: {reason}; remove the task's \
         worktree (git worktree remove --force) and let agentgrid check it out again"
    )]
    UntrustedGitDir {
        task: TaskId,
        path: PathBuf,
        reason: String,
    },

    #[error(
        "refusing to {action} in `{path}`: its HEAD is `{found}`, not the task's branch \
         `{expected}`, so something in the workspace moved it; nothing was committed. Check the \
         branches, then point HEAD back (git symbolic-ref HEAD refs/heads/{expected})"
    )]
    HeadMoved {
        action: &'static str,
        path: PathBuf,
        expected: String,
        found: String,
    },

    #[error("the trusted git driver `{name}` cannot be used: {reason}")]
    UndefinedDriver { name: String, reason: String },

    #[error(
        "refusing to run git on the repository `{path}`: {reason}; nothing was committed. If \
         you made that change yourself, restart agentgrid so that it is taken as the repository's"
    )]
    TamperedRepository { path: PathBuf, reason: String },

    #[error("the {hook} hook failed in `{path}` ({status}); its last output:\n{output}")]
    Hook {
        hook: HookKind,
        path: PathBuf,
        status: String,
        output: String,
    },

    #[error(
        "refusing to {action} `{path}`: it has uncommitted changes ({}); commit them first",
        files.join(", ")
    )]
    Uncommitted {
        action: &'static str,
        path: PathBuf,
        files: Vec<String>,
    },

    #[error(
        "work in the worktree of task {wanted} was asked for in the turn held at another \
         worktree (task {held}'s); nothing was done: take the turn of the worktree you work in"
    )]
    WrongTurn { held: TaskId, wanted: TaskId },

    #[error("cannot {action} `{path}`: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}
