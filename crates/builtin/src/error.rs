//! Why a run of the loop failed.

/// A failure that ends the run: the process exits non-zero with this on stderr, so the
/// execution fails with it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Setup(String),
    /// The gateway or the provider refused the request (a budget, a quota, a bad request).
    #[error("the model API answered HTTP {status}: {message}")]
    Api { status: u16, message: String },
    #[error("cannot reach the model API: {0}")]
    Transport(String),
    #[error("the model's answer is malformed: {0}")]
    BadAnswer(String),
    #[error(
        "stopped after {0} turns without a final answer; raise the limit with `--max-turns` or \
         split the task"
    )]
    TooManyTurns(u32),
}
