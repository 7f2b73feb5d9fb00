//! The fixture's one error type.

/// What can go wrong while loading a script or starting a fixture.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The script is not valid JSON of the expected shape.
    #[error(
        "the model fixture script {origin} is not valid: {detail}; a script is a JSON list of \
         steps such as {{\"reply\": \"text\", \"input_tokens\": 10, \"output_tokens\": 2}} or \
         {{\"status\": 429, \"retry_after_ms\": 50}}"
    )]
    Script { origin: String, detail: String },

    /// The listening socket could not be opened.
    #[error(
        "the model fixture could not listen on 127.0.0.1:{port}: {source}; pick another port or pass 0 for any free one"
    )]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
}
