//! YAML documents as a tree of nodes that remember where in the file they came from.
//!
//! The manifests are read in two steps: serde-saphyr parses the text into this tree (every node
//! wrapped in its `Spanned` location), and the decoders in this crate walk the tree. Walking a
//! tree by hand, instead of deserializing straight into the typed structs, is what lets one pass
//! report every problem in a file: serde stops at the first error, a walker simply records it and
//! moves on to the next field.

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{MessageFormatter, Spanned};

/// One YAML node and its position (1-based line and column, in characters).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub value: Value,
    pub line: usize,
    pub column: usize,
    /// Where the node's text sits in the source, when the parser knows it.
    pub bytes: Option<std::ops::Range<usize>>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in source order; duplicate keys were already rejected by the parser.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A short description of what the node holds, for "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Null => "nothing (null)".into(),
            Value::Bool(b) => format!("`{b}`"),
            Value::Int(n) => format!("the number {n}"),
            Value::Float(f) => format!("the number {f}"),
            Value::Str(s) => format!("the text `{}`", shorten(s)),
            Value::Seq(_) => "a list".into(),
            Value::Map(_) => "a mapping".into(),
        }
    }

    /// The scalar as text: strings as they are, other scalars as they were written.
    pub fn scalar_text(&self, source: &str) -> Option<String> {
        let written = || {
            self.bytes
                .clone()
                .and_then(|r| source.get(r))
                .map(str::to_string)
        };
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Bool(b) => Some(written().unwrap_or_else(|| b.to_string())),
            Value::Int(n) => Some(written().unwrap_or_else(|| n.to_string())),
            Value::Float(f) => Some(written().unwrap_or_else(|| f.to_string())),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }

    /// True for a literal block scalar (`key: |`), whose lines map one to one onto the source.
    /// Template errors inside one can then point at the exact line.
    pub fn is_literal_block(&self, source: &str) -> bool {
        let Some(start) = self.bytes.as_ref().map(|r| r.start) else {
            return false;
        };
        let Some(before) = source.get(..start) else {
            return false;
        };
        let indicator = before
            .trim_end()
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '+');
        indicator.ends_with('|') && before.trim_end().len() < before.len()
    }
}

fn shorten(s: &str) -> String {
    let first_line = s.lines().next().unwrap_or("");
    if first_line.chars().count() > 40 || first_line.len() < s.trim_end().len() {
        format!("{}…", first_line.chars().take(40).collect::<String>())
    } else {
        first_line.to_string()
    }
}

/// A YAML syntax error: where, and the parser's explanation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Parses every document of a YAML stream. Empty documents (and an empty file) yield nothing.
pub(crate) fn parse_documents(source: &str) -> Result<Vec<Node>, SyntaxError> {
    let options = serde_saphyr::options! {
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::AsString,
    };
    match serde_saphyr::from_multiple_with_options::<Spanned<RawNode>>(source, options) {
        Ok(docs) => Ok(docs.into_iter().map(Node::from).collect()),
        Err(err) => {
            let (line, column) = err
                .location()
                .map(|l| (l.line() as usize, l.column() as usize))
                .unwrap_or((1, 1));
            let message = serde_saphyr::UserMessageFormatter
                .format_message(err.without_snippet())
                .into_owned();
            Err(SyntaxError {
                line: line.max(1),
                column: column.max(1),
                message,
            })
        }
    }
}

/// The shape serde-saphyr fills in; converted into [`Node`] right after parsing.
enum RawNode {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<RawNode>>),
    Map(Vec<(Spanned<RawNode>, Spanned<RawNode>)>),
}

impl From<Spanned<RawNode>> for Node {
    fn from(spanned: Spanned<RawNode>) -> Node {
        let at = spanned.referenced;
        let span = at.span();
        let bytes = match (span.byte_offset(), span.byte_len()) {
            (Some(start), Some(len)) => Some(start as usize..(start + len) as usize),
            _ => None,
        };
        let value = match spanned.value {
            RawNode::Null => Value::Null,
            RawNode::Bool(b) => Value::Bool(b),
            RawNode::Int(n) => Value::Int(n),
            RawNode::Float(f) => Value::Float(f),
            RawNode::Str(s) => Value::Str(s),
            RawNode::Seq(items) => Value::Seq(items.into_iter().map(Node::from).collect()),
            RawNode::Map(entries) => Value::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| (Node::from(k), Node::from(v)))
                    .collect(),
            ),
        };
        Node {
            value,
            line: at.line() as usize,
            column: at.column() as usize,
            bytes,
        }
    }
}

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawNode;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<RawNode, D::Error> {
        RawNode::deserialize(d)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawNode, E> {
        Ok(RawNode::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawNode, E> {
        Ok(RawNode::Int(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawNode, E> {
        Ok(RawNode::Int(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<RawNode, E> {
        Ok(RawNode::Int(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<RawNode, E> {
        // Numbers this large never fit a manifest field; saturating keeps the error message sane.
        Ok(RawNode::Int(i128::try_from(v).unwrap_or(i128::MAX)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawNode, E> {
        Ok(RawNode::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawNode, E> {
        Ok(RawNode::Str(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<RawNode, E> {
        Ok(RawNode::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawNode, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(RawNode::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawNode, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(RawNode::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(node: &Node) -> &[(Node, Node)] {
        match &node.value {
            Value::Map(entries) => entries,
            other => panic!("expected a map, got {other:?}"),
        }
    }

    #[test]
    fn nodes_carry_line_and_column() {
        let docs = parse_documents("a: 1\nb:\n  - x\n  - {c: d}\n").unwrap();
        assert_eq!(docs.len(), 1);
        let entries = map(&docs[0]);
        assert_eq!((entries[0].1.line, entries[0].1.column), (1, 4));
        assert_eq!((entries[1].0.line, entries[1].0.column), (2, 1));
        let Value::Seq(items) = &entries[1].1.value else {
            panic!("expected a list")
        };
        assert_eq!((items[1].line, items[1].column), (4, 5));
    }

    #[test]
    fn several_documents_and_empty_input() {
        assert_eq!(parse_documents("a: 1\n---\nb: 2\n").unwrap().len(), 2);
        assert!(parse_documents("").unwrap().is_empty());
        assert!(parse_documents("# only a comment\n").unwrap().is_empty());
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = parse_documents("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(!err.message.is_empty());
        assert!(
            !err.message.contains("line"),
            "the position is reported separately: {}",
            err.message
        );
    }

    #[test]
    fn plain_scalars_keep_their_spelling_as_text() {
        let source = "a: 0x1F\nb: yes\nc: 'q'\n";
        let docs = parse_documents(source).unwrap();
        let texts: Vec<_> = map(&docs[0])
            .iter()
            .map(|(_, v)| v.scalar_text(source).unwrap())
            .collect();
        assert_eq!(texts, ["0x1F", "yes", "q"]);
    }

    #[test]
    fn literal_blocks_are_recognised() {
        let source = "a: |\n  x\nb: >\n  y\nc: |-\n  z\nd: w\n";
        let docs = parse_documents(source).unwrap();
        let flags: Vec<_> = map(&docs[0])
            .iter()
            .map(|(_, v)| v.is_literal_block(source))
            .collect();
        assert_eq!(flags, [true, false, true, false]);
    }
}
