//! The crate's error type, for rendering templates. Manifest problems are [`crate::Diagnostics`].

/// A template that could not be rendered.
///
/// Templates are checked when the manifests load, so at run time these errors mean the data
/// did not fit what the template expected (or the template came from somewhere else).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error(
        "template syntax error on line {line}: {detail}; fix the {{{{ … }}}} or {{% … %}} markup there"
    )]
    TemplateSyntax { line: usize, detail: String },

    #[error("template line {line} uses `{name}`, which is not defined; {hint}")]
    UndefinedVariable {
        name: String,
        line: usize,
        hint: String,
    },

    #[error("template failed on line {line}: {detail}")]
    Render { line: usize, detail: String },
}
