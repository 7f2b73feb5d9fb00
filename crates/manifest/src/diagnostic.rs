//! Diagnostics: one problem in one manifest file, with its position, and the list of them.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem found in a manifest, pointing at the place to fix.
///
/// `line` and `column` are 1-based. They are 0 when the problem concerns the whole file (it could
/// not be read, say); the display then leaves them out.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Diagnostic {
    pub fn new(
        file: impl Into<PathBuf>,
        line: usize,
        column: usize,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            file: file.into(),
            line,
            column,
            message: message.into(),
        }
    }

    /// A problem with the file as a whole.
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        Diagnostic::new(file, 0, 0, message)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

/// Where a setting was written, kept beside a decoded value whose problems can only be found
/// after loading (a name the host must know, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl Place {
    /// A problem with the setting written here.
    pub fn diagnostic(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(&self.file, self.line, self.column, message)
    }
}

/// Every problem found, sorted by file and position. Displays one diagnostic per line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    /// Sorts by file, line and column, and drops exact repeats.
    pub(crate) fn sorted(mut list: Vec<Diagnostic>) -> Diagnostics {
        list.sort();
        list.dedup();
        Diagnostics(list)
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_path_line_column_and_message() {
        let d = Diagnostic::new("a/b.yaml", 3, 7, "bad");
        assert_eq!(d.to_string(), "a/b.yaml:3:7: bad");
        assert_eq!(
            Diagnostic::whole_file(Path::new("c.yaml"), "unreadable").to_string(),
            "c.yaml: unreadable"
        );
    }

    #[test]
    fn the_list_is_sorted_and_one_per_line() {
        let all = Diagnostics::sorted(vec![
            Diagnostic::new("b.yaml", 1, 1, "x"),
            Diagnostic::new("a.yaml", 9, 2, "y"),
            Diagnostic::new("a.yaml", 2, 5, "z"),
            Diagnostic::new("a.yaml", 2, 5, "z"),
        ]);
        assert_eq!(
            all.to_string(),
            "a.yaml:2:5: z\na.yaml:9:2: y\nb.yaml:1:1: x"
        );
    }
}
