//! `--fields a,b,c`: which fields of a command's JSON are printed, checked against the fields
//! the command documents.
//!
//! Decision: the list of fields a command has is read from `docs/json.md`, built into the
//! binary, rather than kept in a second list here. The document is the contract, the binary
//! refuses a field the document does not name, and an end-to-end test compares the document
//! with what every command prints, so the three cannot drift apart.
//!
//! The document's shape, as this module reads it: a heading `### \`agentgrid task list
//! --json\`` opens a command's section and `### \`task\`` a shared object's; a table row
//! ``| `name` | type | meaning |`` is a field. A name may be a dotted path (`usage.cost`), and a
//! type that names a shared object in backticks (``a `task` ``, ``array of `execution` ``) lets
//! a dotted path reach into that object's fields. A type that says `optional` is a field that
//! only some outputs have. A line ``Fields: see `task`.`` gives a section an object's fields.

use std::collections::BTreeMap;

use serde_json::Value;

/// The JSON document, as built into the binary.
pub const DOC: &str = include_str!("../../../docs/json.md");

/// Where the document lives in the repository, for messages.
pub const DOC_PATH: &str = "docs/json.md";

/// One documented field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The name, or a dotted path inside an object field.
    pub name: String,
    /// The shared object its value is (or holds an array of), if any.
    pub object: Option<String>,
    /// Only some outputs of the command have it.
    pub optional: bool,
}

/// The fields of every command and shared object the document describes.
#[derive(Debug, Default)]
pub struct Doc {
    /// By command path without `agentgrid` and `--json`: `task list`.
    pub commands: BTreeMap<String, Vec<Field>>,
    /// By object name: `task`.
    pub objects: BTreeMap<String, Vec<Field>>,
}

enum Section {
    None,
    Command(String),
    Object(String),
}

impl Doc {
    /// Reads the document's sections and tables.
    pub fn parse(text: &str) -> Doc {
        let mut doc = Doc::default();
        let mut section = Section::None;
        // Sections that take an object's fields, resolved once every object is known.
        let mut borrowed: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            if let Some(heading) = line.strip_prefix("### ") {
                let inner = heading.trim().trim_matches('`');
                section = if let Some(rest) = inner.strip_prefix("agentgrid ") {
                    let path = rest.trim_end_matches("--json").trim().to_string();
                    doc.commands.entry(path.clone()).or_default();
                    Section::Command(path)
                } else if !inner.contains(' ') && heading.trim().starts_with('`') {
                    doc.objects.entry(inner.to_string()).or_default();
                    Section::Object(inner.to_string())
                } else {
                    Section::None
                };
                continue;
            }
            if line.starts_with("## ") {
                section = Section::None;
                continue;
            }
            let list = match &section {
                Section::None => continue,
                Section::Command(path) => {
                    if let Some(rest) = line.strip_prefix("Fields: see ") {
                        if let Some(object) = backticked(rest).into_iter().next() {
                            borrowed.push((path.clone(), object));
                        }
                        continue;
                    }
                    doc.commands.get_mut(path)
                }
                Section::Object(name) => doc.objects.get_mut(name),
            };
            let (Some(list), Some(field)) = (list, field_row(line)) else {
                continue;
            };
            list.push(field);
        }
        for (path, object) in borrowed {
            let fields = doc.objects.get(&object).cloned().unwrap_or_default();
            if let Some(list) = doc.commands.get_mut(&path) {
                list.extend(fields);
            }
        }
        // A type names an object only if the document describes one by that name.
        let names: Vec<String> = doc.objects.keys().cloned().collect();
        for list in doc.commands.values_mut().chain(doc.objects.values_mut()) {
            for field in list {
                if field.object.as_ref().is_some_and(|o| !names.contains(o)) {
                    field.object = None;
                }
            }
        }
        doc
    }

    /// The document built into the binary.
    pub fn built_in() -> Doc {
        Doc::parse(DOC)
    }

    /// Whether `path` (`usage.cost`) names a field of `fields`, directly or through the
    /// objects it reaches.
    fn knows(&self, fields: &[Field], path: &str) -> bool {
        if fields.iter().any(|f| f.name == path) {
            return true;
        }
        // The longest documented prefix that is an object decides what the rest may be.
        fields.iter().any(|f| {
            let Some(rest) = path.strip_prefix(&f.name).and_then(|r| r.strip_prefix('.')) else {
                return false;
            };
            f.object
                .as_ref()
                .and_then(|o| self.objects.get(o))
                .is_some_and(|inner| self.knows(inner, rest))
        })
    }
}

/// A table row's field: the name in backticks in the first cell, the type in the second.
fn field_row(line: &str) -> Option<Field> {
    let cells: Vec<&str> = line.trim().strip_prefix('|')?.split('|').collect();
    let name = cells.first()?.trim();
    let name = name.strip_prefix('`')?.strip_suffix('`')?;
    let kind = cells.get(1).map(|c| c.trim()).unwrap_or_default();
    Some(Field {
        name: name.to_string(),
        object: backticked(kind).into_iter().next(),
        optional: kind.contains("optional"),
    })
}

/// The words in backticks in `text`.
fn backticked(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The fields a person asked for, as a tree of paths: `a, b.c, b.d` is `a` whole and `c` and
/// `d` of `b`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    children: BTreeMap<String, Selection>,
    /// The field is wanted whole (a path ended here).
    whole: bool,
}

impl Selection {
    /// The selection `list` asks of the command `path` (`["task", "list"]`), or why it
    /// cannot be had.
    pub fn parse(path: &[String], list: &str) -> Result<Selection, String> {
        let command = path.join(" ");
        let doc = Doc::built_in();
        let Some(fields) = doc.commands.get(&command) else {
            return Err(format!(
                "`agentgrid {command} --json` has no documented fields to select; leave out --fields"
            ));
        };
        let mut selection = Selection::default();
        let mut unknown = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if doc.knows(fields, name) {
                selection.insert(name);
            } else {
                unknown.push(name.to_string());
            }
        }
        if !unknown.is_empty() {
            // The fields themselves first, then the paths documented inside them.
            let (top, inner): (Vec<&Field>, Vec<&Field>) =
                fields.iter().partition(|f| !f.name.contains('.'));
            let valid: Vec<&str> = top.iter().chain(&inner).map(|f| f.name.as_str()).collect();
            return Err(format!(
                "--fields: `agentgrid {command} --json` has no field {}; its fields are {} (see {DOC_PATH}); nothing was done",
                unknown
                    .iter()
                    .map(|u| format!("`{}`", domain::text::one_line(u)))
                    .collect::<Vec<_>>()
                    .join(", "),
                valid.join(", "),
            ));
        }
        if selection.children.is_empty() {
            return Err(format!(
                "--fields is empty: name at least one field of `agentgrid {command} --json`, as in --fields {}",
                fields
                    .iter()
                    .take(2)
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
        Ok(selection)
    }

    fn insert(&mut self, path: &str) {
        let mut node = self;
        for part in path.split('.') {
            node = node.children.entry(part.to_string()).or_default();
        }
        node.whole = true;
    }

    /// `value` with only the selected fields: an array is selected element by element, a
    /// field that an output does not have is left out, and a value that is not an object
    /// where a path goes on (a `null`) is kept as it is.
    pub fn apply(&self, value: &Value) -> Value {
        match value {
            Value::Array(items) => Value::Array(items.iter().map(|v| self.apply(v)).collect()),
            Value::Object(object) => {
                let mut out = serde_json::Map::new();
                for (name, wanted) in &self.children {
                    if let Some(inner) = object.get(name) {
                        let kept = if wanted.whole {
                            inner.clone()
                        } else {
                            wanted.apply(inner)
                        };
                        out.insert(name.clone(), kept);
                    }
                }
                Value::Object(out)
            }
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# JSON\n\n## Objects\n\n### `usage`\n\n| field | type | meaning |\n| --- | --- | --- |\n| `cost` | string | spend |\n| `requests` | integer | how many |\n\n## Commands\n\n### `agentgrid task show --json`\n\n| field | type | meaning |\n| --- | --- | --- |\n| `id` | integer | the id |\n| `usage` | a `usage` | its spend |\n| `land` | object, optional | when landed |\n| `land.base` | string | the base |\n\n### `agentgrid task add --json`\n\nFields: see `usage`.\n";

    #[test]
    fn sections_tables_objects_and_borrowed_fields_are_read() {
        let doc = Doc::parse(SAMPLE);
        let show = &doc.commands["task show"];
        let names: Vec<&str> = show.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["id", "usage", "land", "land.base"]);
        assert_eq!(show[1].object.as_deref(), Some("usage"));
        assert!(show[2].optional && !show[0].optional);
        let add: Vec<&str> = doc.commands["task add"]
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(add, ["cost", "requests"]);
        assert!(doc.knows(show, "usage.cost"));
        assert!(doc.knows(show, "land.base"));
        assert!(!doc.knows(show, "usage.nothing"));
        assert!(!doc.knows(show, "id.x"));
    }

    #[test]
    fn a_selection_keeps_whole_fields_and_paths_through_arrays() {
        let mut selection = Selection::default();
        selection.insert("id");
        selection.insert("runs.state");
        let value = serde_json::json!([
            {"id": 1, "title": "a", "runs": [{"state": "done", "pid": 3}], "gone": null},
            {"id": 2, "runs": null},
        ]);
        assert_eq!(
            selection.apply(&value),
            serde_json::json!([
                {"id": 1, "runs": [{"state": "done"}]},
                {"id": 2, "runs": null},
            ])
        );
    }

    #[test]
    fn the_built_in_document_describes_commands_and_objects() {
        let doc = Doc::built_in();
        assert!(doc.commands.len() >= 15, "{:?}", doc.commands.keys());
        for (command, fields) in &doc.commands {
            assert!(!fields.is_empty(), "`{command}` documents no field");
        }
        assert!(doc.objects.contains_key("task"));
    }
}
