//! What can go wrong with a command or a query.

/// Why a command or query failed. In every case nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself was wrong: an unknown task, a change the tracker's rules forbid, a
    /// bad line in an import. The message says what (and where: `file:line` for a line of an
    /// import) and what to do instead; `cause`, when there is one, says why, and stays the next
    /// link of the error's chain so that faces show it and read its kind.
    #[error("{message}")]
    Invalid {
        message: String,
        #[source]
        cause: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
    /// The tracker's rules refused a change of the request: what was being done (in the words
    /// of the request: "creating the task") and the rules' reason, kept apart so that each
    /// face can word it for its reader.
    #[error("{doing} was refused: {reason}")]
    Refused { doing: &'static str, reason: String },
    /// The store failed or refused the batch; its error says which (a refusal, a busy
    /// database, a broken file).
    #[error(transparent)]
    Store(#[from] store::Error),
    /// An import the store refused as a whole, for a reason not tied to one of its lines.
    #[error("nothing was imported")]
    NothingImported(#[source] store::Error),
}

impl Error {
    /// A wrong request, said in `message`.
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::Invalid {
            message: message.into(),
            cause: None,
        }
    }

    /// A wrong request at `place` (what and where), because of `cause` (why).
    pub fn invalid_because(
        place: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::Invalid {
            message: place.into(),
            cause: Some(Box::new(cause)),
        }
    }

    /// Whether the request was wrong (as opposed to the store failing under it).
    pub fn is_invalid_request(&self) -> bool {
        matches!(self, Error::Invalid { .. } | Error::Refused { .. })
    }
}
