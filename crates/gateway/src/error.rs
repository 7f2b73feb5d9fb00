//! The gateway's one error type: problems with its configuration or its listening sockets.
//!
//! Problems with a single request never become an `Error`; they are answered over HTTP in the
//! provider's own error shape.

use std::path::PathBuf;

/// What can go wrong while setting up or starting the gateway.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration of providers and models does not hold together.
    #[error("the model gateway configuration is invalid: {0}")]
    Config(String),

    /// A provider's key is to come from an environment variable that is not set.
    #[error(
        "the environment variable {var} should hold an API key but is not set (or not valid \
         UTF-8) in the engine's environment; export it before starting the engine"
    )]
    MissingKey { var: String },

    /// The HTTP client for upstream calls could not be built.
    #[error("the model gateway could not set up its HTTP client: {0}")]
    Client(String),

    /// The gateway only listens on loopback addresses, so no other host can use its keys.
    #[error(
        "the model gateway refuses to listen on {addr}: it serves only loopback addresses such \
         as 127.0.0.1 or ::1, so that no other machine can spend the node's keys"
    )]
    NotLoopback { addr: std::net::SocketAddr },

    /// A TCP listener could not be opened.
    #[error("the model gateway could not listen on {addr}: {source}")]
    BindTcp {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },

    /// A Unix socket could not be opened.
    #[error(
        "the model gateway could not listen on the Unix socket {}: {source}; check that the \
         directory exists and is writable",
        path.display()
    )]
    BindUnix {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
