//! What an error means for the exit status, and how it is shown.
//!
//! The exit status comes from the kind of the error, found by walking its chain of sources, so
//! that wrapping an error in context never changes what a script sees.

use crate::exit;

/// A request that was wrong and changed nothing: bad arguments, an unknown id, no project.
#[derive(Debug)]
pub struct UserError(pub String);

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

/// Shorthand for a usage error with a message.
pub fn user_error(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UserError(message.into()))
}

/// The exit status for `err`: the first cause in its chain that has a known kind decides;
/// anything else is a failure.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    err.chain().find_map(kind_of).unwrap_or(exit::FAILED)
}

fn kind_of(cause: &(dyn std::error::Error + 'static)) -> Option<u8> {
    if cause.is::<UserError>() {
        return Some(exit::USAGE);
    }
    if let Some(e) = cause.downcast_ref::<store::Error>() {
        return Some(store_kind(e));
    }
    if let Some(e) = cause.downcast_ref::<app::Error>() {
        return match e {
            // A store's error as the cause decides (a busy database is no wrong request).
            app::Error::Invalid {
                cause: Some(cause), ..
            } if cause.is::<store::Error>() => None,
            app::Error::Invalid { .. } | app::Error::Refused { .. } => Some(exit::USAGE),
            // Transparent, so the store's error is not a separate link of the chain.
            app::Error::Store(e) => Some(store_kind(e)),
            // The store's error is the next link and decides.
            app::Error::NothingImported(_) => None,
        };
    }
    if let Some(e) = cause.downcast_ref::<engine::Error>() {
        return Some(match e {
            // The README's promise: a second engine is a request that changed nothing.
            engine::Error::Locked { .. } => exit::USAGE,
            // Transparent, so the store's error is not a separate link of the chain.
            engine::Error::Store(e) => store_kind(e),
            engine::Error::Io(_) => exit::TRY_AGAIN,
            engine::Error::Setup(_) => exit::FAILED,
        });
    }
    None
}

fn store_kind(e: &store::Error) -> u8 {
    match e {
        // Refused inside the transaction, so nothing of the batch was written.
        store::Error::Refused { .. }
        | store::Error::AlreadyActive { .. }
        | store::Error::AlreadyFinished { .. }
        | store::Error::Stale { .. } => exit::USAGE,
        // Another process holds the database, or the host refused a write: the same request
        // can succeed later.
        store::Error::Busy { .. } | store::Error::Database { .. } => exit::TRY_AGAIN,
        store::Error::TooNew { .. } | store::Error::Corrupt { .. } => exit::FAILED,
    }
}

/// The error and each of its causes, as `outer: caused by inner`. A cause whose text its
/// wrapper already quotes is not repeated.
pub fn describe(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if text.is_empty() {
            text = part;
        } else if !text.contains(&part) {
            text.push_str(": caused by ");
            text.push_str(&part);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_survive_context_and_busy_is_not_a_usage_error() {
        let busy = store::Error::Busy {
            path: "db".into(),
            action: "writing",
            waited_ms: 5,
        };
        let err = anyhow::Error::new(busy).context("cannot add the task");
        assert_eq!(exit_code(&err), exit::TRY_AGAIN);
        let locked = anyhow::Error::new(engine::Error::Locked { pid: "1".into() });
        assert_eq!(exit_code(&locked), exit::USAGE);
        let in_engine = anyhow::Error::new(engine::Error::Store(store::Error::Busy {
            path: "db".into(),
            action: "reading",
            waited_ms: 5,
        }));
        assert_eq!(exit_code(&in_engine), exit::TRY_AGAIN);
        assert_eq!(exit_code(&user_error("bad").context("outer")), exit::USAGE);
        assert_eq!(exit_code(&anyhow::anyhow!("plain")), exit::FAILED);
    }

    #[test]
    fn an_invalid_request_keeps_its_cause_and_a_store_cause_decides_the_exit() {
        let busy = store::Error::Busy {
            path: "db".into(),
            action: "writing",
            waited_ms: 5,
        };
        let err = anyhow::Error::new(app::Error::invalid_because("tasks.jsonl:3", busy));
        assert_eq!(exit_code(&err), exit::TRY_AGAIN);
        assert!(
            describe(&err).starts_with("tasks.jsonl:3: caused by "),
            "{}",
            describe(&err)
        );
        let bytes = vec![b'a', 0xff];
        let bad = std::str::from_utf8(&bytes).unwrap_err();
        let err = anyhow::Error::new(app::Error::invalid_because("f:1:1", bad));
        assert_eq!(exit_code(&err), exit::USAGE);
        assert!(
            describe(&err).contains("invalid utf-8"),
            "{}",
            describe(&err)
        );
    }

    #[test]
    fn causes_are_shown_once() {
        let io = std::io::Error::other("disk full");
        let err = anyhow::Error::new(io).context("cannot write the log");
        assert_eq!(describe(&err), "cannot write the log: caused by disk full");
        // As the store's database errors do: the message quotes its source.
        let quoted = anyhow::Error::new(std::io::Error::other("disk full"))
            .context("the database failed while writing: disk full");
        assert_eq!(
            describe(&quoted),
            "the database failed while writing: disk full"
        );
    }
}
