//! Walking a YAML node tree into typed values while collecting every problem on the way.
//!
//! Each decoder records what is wrong in the [`Cx`] and returns `None` instead of stopping, so
//! the caller falls back to a default and carries on with the next field. That is how a file
//! with three independent mistakes yields three diagnostics.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::Path;

use domain::{Duration, ExecutionKind};

use crate::Diagnostic;
use crate::template::{Names, check_template};
use crate::yaml::{Node, Value};

/// The YAML documents of `source`, or `None` with the syntax error reported at its place.
pub(crate) fn documents(
    source: &str,
    file: &Path,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Vec<Node>> {
    match crate::yaml::parse_documents(source) {
        Ok(docs) => Some(docs),
        Err(e) => {
            diagnostics.push(Diagnostic::new(
                file,
                e.line,
                e.column,
                format!("YAML syntax error: {}", e.message),
            ));
            None
        }
    }
}

/// Every document of one manifest file, each decoded by `decode`; the file's problems go to
/// `diagnostics`.
pub(crate) fn each_document<T>(
    source: &str,
    file: &Path,
    diagnostics: &mut Vec<Diagnostic>,
    mut decode: impl FnMut(&mut Cx, &Node) -> T,
) -> Vec<T> {
    let Some(docs) = documents(source, file, diagnostics) else {
        return Vec::new();
    };
    let mut cx = Cx::new(file, source);
    let out = docs.iter().map(|doc| decode(&mut cx, doc)).collect();
    diagnostics.extend(cx.diagnostics);
    out
}

/// The file being decoded and the problems found in it so far.
pub(crate) struct Cx<'s> {
    pub file: &'s Path,
    pub source: &'s str,
    pub diagnostics: Vec<Diagnostic>,
}

impl<'s> Cx<'s> {
    pub fn new(file: &'s Path, source: &'s str) -> Self {
        Cx {
            file,
            source,
            diagnostics: Vec::new(),
        }
    }

    /// Records a problem at `node`. `path` names the field (`spec.limits.timeout`) so the message
    /// says where even without looking at the position.
    pub fn error(&mut self, node: &Node, path: &str, message: impl Display) {
        self.error_at(node.line, node.column, path, message);
    }

    pub fn error_at(&mut self, line: usize, column: usize, path: &str, message: impl Display) {
        let message = if path.is_empty() {
            message.to_string()
        } else {
            format!("{path}: {message}")
        };
        self.diagnostics
            .push(Diagnostic::new(self.file, line, column, message));
    }

    /// Records "expected X, found Y".
    pub fn expected(&mut self, node: &Node, path: &str, what: &str) {
        self.error(
            node,
            path,
            format!("expected {what}, found {}", node.describe()),
        );
    }

    /// Checks a template held by `node` and reports each problem on the line where it is, as far
    /// as the YAML lets us tell: inside a literal block (`|`) template lines are source lines.
    pub fn check_template(&mut self, node: &Node, path: &str, text: &str, names: Names) {
        let literal = node.is_literal_block(self.source);
        for problem in check_template(text, names) {
            let (line, column) = if literal {
                (node.line + problem.line - 1, node.column)
            } else {
                (node.line, node.column)
            };
            self.error_at(line, column, path, problem.message);
        }
    }

    /// Opens a mapping whose keys must come from `allowed`. Reports a node that is not a
    /// mapping, and every unknown key (with the allowed list and a likely intended name).
    /// An empty value (`limits:` with nothing under it) counts as an empty mapping.
    pub fn fields<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        allowed: &[&str],
    ) -> Option<Fields<'n>> {
        let entries = match &node.value {
            Value::Map(entries) => entries.as_slice(),
            Value::Null => &[],
            _ => {
                let what = format!("a mapping with the fields {}", allowed.join(", "));
                self.expected(node, path, &what);
                return None;
            }
        };
        let mut known = Vec::new();
        for (key, value) in entries {
            let name = key.scalar_text(self.source).unwrap_or_default();
            if allowed.contains(&name.as_str()) {
                known.push((name, key, value));
                continue;
            }
            let guess = closest(&name, allowed)
                .map(|g| format!(" (did you mean `{g}`?)"))
                .unwrap_or_default();
            let message = format!(
                "unknown field `{name}`{guess}; allowed fields here: {}",
                allowed.join(", ")
            );
            self.error(key, path, message);
        }
        Some(Fields {
            node,
            path: path.to_string(),
            entries: known,
        })
    }
}

/// The known fields of one mapping.
pub(crate) struct Fields<'n> {
    pub node: &'n Node,
    pub path: String,
    entries: Vec<(String, &'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    /// The value under `name`; `None` when absent or empty (`name:` with nothing after it).
    pub fn value(&self, name: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, v)| *v)
            .filter(|v| v.value != Value::Null)
    }

    /// The key node of `name`, to point at a field as a whole.
    pub fn key(&self, name: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, k, _)| *k)
    }

    pub fn path(&self, name: &str) -> String {
        join(&self.path, name)
    }

    /// Decodes an optional field: `None` when absent or when invalid (then it was reported).
    pub fn get<T: Decode>(&self, cx: &mut Cx, name: &str) -> Option<T> {
        let node = self.value(name)?;
        T::decode(cx, node, &self.path(name))
    }

    /// Decodes a field that has a default.
    pub fn or<T: Decode>(&self, cx: &mut Cx, name: &str, default: T) -> T {
        self.get(cx, name).unwrap_or(default)
    }

    /// Decodes a field that must be there; a missing one is reported at the mapping with an
    /// example of what to write.
    pub fn required<T: Decode>(&self, cx: &mut Cx, name: &str, example: &str) -> Option<T> {
        if self.value(name).is_none() {
            self.missing(cx, name, example);
            return None;
        }
        self.get(cx, name)
    }

    pub fn missing(&self, cx: &mut Cx, name: &str, example: &str) {
        let at = self.key(name).unwrap_or(self.node);
        cx.error(
            at,
            &self.path,
            format!("missing field `{name}`; add it, for example `{example}`"),
        );
    }
}

/// `spec` + `limits` → `spec.limits`.
pub(crate) fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// The allowed name nearest to a misspelt one, if it is close enough to be a plausible typo.
pub(crate) fn closest<'a>(name: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|a| (edit_distance(name, a), *a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 3))
        .min()
        .map(|(_, a)| a)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for j in 0..b.len() {
            let cost = usize::from(ca != b[j]);
            let next = (row[j + 1] + 1).min(row[j] + 1).min(prev + cost);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// A value that can be read from one node, reporting what is wrong if it cannot.
pub(crate) trait Decode: Sized {
    fn decode(cx: &mut Cx, node: &Node, path: &str) -> Option<Self>;
}

impl Decode for String {
    fn decode(cx: &mut Cx, node: &Node, path: &str) -> Option<Self> {
        let text = node.scalar_text(cx.source);
        if text.is_none() {
            cx.expected(node, path, "text");
        }
        text
    }
}

impl Decode for bool {
    fn decode(cx: &mut Cx, node: &Node, path: &str) -> Option<Self> {
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                cx.expected(node, path, "true or false");
                None
            }
        }
    }
}

impl Decode for u32 {
    fn decode(cx: &mut Cx, node: &Node, path: &str) -> Option<Self> {
        match node.value {
            Value::Int(n) if (0..=i128::from(u32::MAX)).contains(&n) => Some(n as u32),
            _ => {
                cx.expected(node, path, "a whole number, 0 or more");
                None
            }
        }
    }
}

impl Decode for f64 {
    fn decode(cx: &mut Cx, node: &Node, path: &str) -> Option<Self> {
        match node.value {
            Value::Int(n) => Some(n as f64),
            Value::Float(f) if f.is_finite() => Some(f),
            _ => {
                cx.expected(node, path, "a number");
                None
            }
        }
    }
}

impl Decode for Duration {
    fn decode(cx: &mut Cx, node: &Node, path: &str) -> Option<Self> {
        let Some(text) = node.scalar_text(cx.source) else {
            cx.expected(node, path, "a duration such as 30s, 10m or 2h");
            return None;
        };
        match text.parse() {
            Ok(d) => Some(d),
            Err(message) => {
                cx.error(node, path, message);
                None
            }
        }
    }
}

impl Decode for ExecutionKind {
    fn decode(cx: &mut Cx, node: &Node, path: &str) -> Option<Self> {
        let text = String::decode(cx, node, path)?;
        match text.parse() {
            Ok(kind) => Some(kind),
            Err(message) => {
                cx.error(node, path, message);
                None
            }
        }
    }
}

/// A list; bad elements are reported and left out.
impl<T: Decode> Decode for Vec<T> {
    fn decode(cx: &mut Cx, node: &Node, path: &str) -> Option<Self> {
        let Value::Seq(items) = &node.value else {
            cx.expected(node, path, "a list such as [a, b]");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if let Some(v) = T::decode(cx, item, &format!("{path}[{i}]")) {
                out.push(v);
            }
        }
        Some(out)
    }
}

/// A mapping from names to values; bad values are reported and left out.
impl<T: Decode> Decode for BTreeMap<String, T> {
    fn decode(cx: &mut Cx, node: &Node, path: &str) -> Option<Self> {
        let Value::Map(entries) = &node.value else {
            cx.expected(node, path, "a mapping of names to values, such as {a: b}");
            return None;
        };
        let mut out = BTreeMap::new();
        for (key, value) in entries {
            let Some(name) = key.scalar_text(cx.source) else {
                cx.expected(key, path, "a name as the key");
                continue;
            };
            if let Some(v) = T::decode(cx, value, &join(path, &name)) {
                out.insert(name, v);
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_documents;

    fn decode<T: Decode>(source: &str) -> (Option<T>, Vec<String>) {
        let doc = parse_documents(source).unwrap().remove(0);
        let mut cx = Cx::new(Path::new("t.yaml"), source);
        let value = T::decode(&mut cx, &doc, "x");
        (
            value,
            cx.diagnostics.iter().map(|d| d.to_string()).collect(),
        )
    }

    #[test]
    fn scalars_decode_or_say_what_was_expected() {
        assert_eq!(decode::<u32>("3").0, Some(3));
        assert_eq!(
            decode::<u32>("-1").1,
            ["t.yaml:1:1: x: expected a whole number, 0 or more, found the number -1"]
        );
        assert_eq!(decode::<f64>("0.5").0, Some(0.5));
        assert_eq!(decode::<bool>("yes").0, Some(true));
        assert_eq!(decode::<String>("0x1F").0.as_deref(), Some("0x1F"));
        assert_eq!(decode::<Duration>("90s").0, Some(Duration::from_secs(90)));
        let (_, errors) = decode::<Duration>("10 minutes");
        assert!(
            errors[0].contains("`10 minutes` is not a duration"),
            "{errors:?}"
        );
    }

    #[test]
    fn lists_keep_good_items_and_report_bad_ones() {
        let (v, errors) = decode::<Vec<u32>>("[1, x, 3]");
        assert_eq!(v, Some(vec![1, 3]));
        assert_eq!(
            errors,
            ["t.yaml:1:5: x[1]: expected a whole number, 0 or more, found the text `x`"]
        );
    }

    #[test]
    fn unknown_fields_list_the_allowed_ones_and_guess() {
        let source = "timout: 1\nweight: 2\n";
        let doc = parse_documents(source).unwrap().remove(0);
        let mut cx = Cx::new(Path::new("t.yaml"), source);
        let fields = cx.fields(&doc, "spec", &["timeout", "weight"]).unwrap();
        assert_eq!(fields.get::<u32>(&mut cx, "weight"), Some(2));
        assert_eq!(
            cx.diagnostics[0].to_string(),
            "t.yaml:1:1: spec: unknown field `timout` (did you mean `timeout`?); allowed fields here: timeout, weight"
        );
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
        assert_eq!(
            closest("thresold", &["threshold", "validators"]),
            Some("threshold")
        );
        assert_eq!(closest("zzz", &["threshold", "validators"]), None);
    }
}
