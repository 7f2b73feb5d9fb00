//! The agent control channel: how an agent inside an execution talks to the engine.
//!
//! Each execution gets its own Unix socket path and a random token. The agent runs
//! `agentgrid ctl …`, which connects to `$AGENTGRID_CONTROL_SOCKET`, sends one JSON line
//! ([`Request`]: the token and an [`Op`]) and reads one JSON line back ([`Response`]).
//!
//! [`ControlHub`] is the engine's one listening socket; [`ControlHub::open`] gives each
//! execution a path of its own (a hard link to that socket) and registers its token. Each call
//! is checked against the tokens of the running executions and handed to the engine as a
//! [`ControlCall`] of the execution it belongs to, over a channel; the engine validates it
//! against the store, records it as events, and answers. The server never touches the store
//! itself, so every rule about what an agent may do lives in the engine.
//!
//! The key decision: a socket path per execution, removed when the execution ends, and a token
//! that is forgotten at the same moment. A token copied out of a finished execution opens
//! nothing, and the engine refuses calls for executions that are no longer active even if a
//! connection is somehow still open. Sandboxes expose only their execution's path.
//!
//! ```no_run
//! # fn demo() -> Result<(), control::Error> {
//! let answer = control::call(
//!     std::path::Path::new("/tmp/ctl.sock"),
//!     "token",
//!     &control::Op::Comment { text: "halfway there".into(), key: None },
//! )?;
//! # Ok(()) }
//! ```

mod client;
mod limits;
mod protocol;
pub mod refusal;
mod server;

pub use client::call;
pub use limits::{Limits, MAX_REQUEST_BYTES};
pub use protocol::{Op, Request, Response};
pub use server::{ControlCall, ControlEndpoint, ControlHub};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot reach the control socket {path}: {source}. `agentgrid ctl` works only inside a \
         running execution, which sets AGENTGRID_CONTROL_SOCKET and AGENTGRID_TOKEN"
    )]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("the control channel failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the engine answered with something that is not a control response: {0}")]
    BadResponse(String),
    /// The engine refused the call; the message says why.
    #[error("{0}")]
    Refused(String),
}
