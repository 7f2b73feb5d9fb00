//! The tools the model may call, and what each does.
//!
//! Every argument comes from the model and is checked before anything is touched: paths
//! through [`Workspace::resolve`], sizes against [`Limits`], types by hand with an error that
//! says which argument was wrong. A refused call changes nothing and its error goes back to
//! the model as the tool's result, so the model can correct itself; only the loop's own
//! failures end the run.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::confine::{Workspace, open_read, open_write};

/// How much one tool may do.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The most bytes of one tool result sent back to the model.
    pub max_output_bytes: usize,
    /// The largest file read, written, edited or searched.
    pub max_file_bytes: u64,
    /// The longest a command may run (the model may ask for less).
    pub command_timeout: Duration,
    /// The most entries `list_files` walks.
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_output_bytes: 32 * 1024,
            max_file_bytes: 1 << 20,
            command_timeout: Duration::from_secs(300),
            max_entries: 2000,
        }
    }
}

/// The execution's control channel, for the control tools.
#[derive(Debug, Clone)]
pub struct Control {
    pub socket: PathBuf,
    pub token: String,
}

/// What a tool call gave: its text for the model and whether it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    pub text: String,
}

impl Outcome {
    fn ok(text: impl Into<String>) -> Outcome {
        Outcome {
            ok: true,
            text: text.into(),
        }
    }

    fn err(text: impl Into<String>) -> Outcome {
        Outcome {
            ok: false,
            text: text.into(),
        }
    }
}

/// The tools and the place they work in.
pub struct Tools {
    pub workspace: Workspace,
    pub limits: Limits,
    pub control: Option<Control>,
    /// The environment of `run_command`: the agent's, without what would let the workspace's
    /// code act as the agent (the token, the control socket, the model keys).
    pub command_env: Vec<(String, String)>,
}

/// The tool definitions sent to the model.
pub fn definitions() -> Value {
    let s = |d: &str| json!({"type": "string", "description": d});
    json!([
        {"name": "read_file", "description": "Read a text file of the workspace.",
         "input_schema": {"type": "object", "properties": {"path": s("Path relative to the workspace.")}, "required": ["path"]}},
        {"name": "write_file", "description": "Create or replace a file of the workspace with the given content.",
         "input_schema": {"type": "object", "properties": {"path": s("Path relative to the workspace."), "content": s("The whole new content.")}, "required": ["path", "content"]}},
        {"name": "edit", "description": "Replace one exact occurrence of `old` with `new` in a file. `old` must occur exactly once.",
         "input_schema": {"type": "object", "properties": {"path": s("Path relative to the workspace."), "old": s("The exact text to replace."), "new": s("The replacement.")}, "required": ["path", "old", "new"]}},
        {"name": "list_files", "description": "List the files under a directory of the workspace, recursively (`.git` left out).",
         "input_schema": {"type": "object", "properties": {"path": s("Directory relative to the workspace; default the root.")}}},
        {"name": "search_files", "description": "Search the workspace's text files for a regular expression; prints path:line: text.",
         "input_schema": {"type": "object", "properties": {"pattern": s("A regular expression (Rust syntax)."), "path": s("Directory to search; default the root.")}, "required": ["pattern"]}},
        {"name": "run_command", "description": "Run a shell command (sh -c) in the workspace and get its exit status and output.",
         "input_schema": {"type": "object", "properties": {"command": s("The shell command."), "timeout_seconds": {"type": "integer", "description": "At most this long (capped)."}}, "required": ["command"]}},
        {"name": "subtask", "description": "Create a sub-task of this task for another execution to do.",
         "input_schema": {"type": "object", "properties": {"title": s("One line."), "body": s("What to do."), "labels": {"type": "array", "items": {"type": "string"}}, "blocked_by": {"type": "array", "items": {"type": "integer"}}, "key": s("Idempotency key.")}, "required": ["title"]}},
        {"name": "complete", "description": "Claim the task is complete (the validators still decide).",
         "input_schema": {"type": "object", "properties": {"summary": s("What was done.")}, "required": ["summary"]}},
        {"name": "block", "description": "Say the task cannot go on without a person, and why.",
         "input_schema": {"type": "object", "properties": {"reason": s("What a person must do.")}, "required": ["reason"]}},
        {"name": "comment", "description": "Add a comment to the task.",
         "input_schema": {"type": "object", "properties": {"text": s("The comment."), "key": s("Idempotency key.")}, "required": ["text"]}}
    ])
}

/// `text` cut to at most `max` bytes at a character boundary, with a note saying how much
/// was left out.
pub fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n[… {} more bytes cut]", &text[..end], text.len() - end)
}

/// `text` cut to at most `max` characters.
pub fn cut_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

fn string<'a>(input: &'a Value, name: &str) -> Result<&'a str, String> {
    match input.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("the argument `{name}` must be a string")),
        None => Err(format!("the argument `{name}` is missing")),
    }
}

fn optional_string<'a>(input: &'a Value, name: &str) -> Result<Option<&'a str>, String> {
    match input.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("the argument `{name}` must be a string")),
    }
}

impl Tools {
    /// Runs one call; never panics on the model's input.
    pub async fn call(&self, name: &str, input: &Value) -> Outcome {
        if !input.is_object() {
            return Outcome::err("the tool's input must be a JSON object of its arguments");
        }
        let result = match name {
            "read_file" => self.read_file(input),
            "write_file" => self.write_file(input),
            "edit" => self.edit(input),
            "list_files" => self.list_files(input),
            "search_files" => self.search_files(input),
            "run_command" => self.run_command(input).await,
            "subtask" | "complete" | "block" | "comment" => self.control(name, input).await,
            other => Err(format!(
                "there is no tool `{}`; the tools are read_file, write_file, edit, list_files, \
                 search_files, run_command, subtask, complete, block and comment",
                cut_chars(other, 64)
            )),
        };
        match result {
            Ok(text) => Outcome::ok(cut(&text, self.limits.max_output_bytes)),
            Err(text) => Outcome::err(cut(&text, self.limits.max_output_bytes)),
        }
    }

    fn path(&self, input: &Value, name: &str) -> Result<PathBuf, String> {
        let given = string(input, name)?;
        self.workspace.resolve(given).map_err(|e| e.to_string())
    }

    fn read_text(&self, path: &Path) -> Result<String, String> {
        let shown = self.workspace.show(path);
        let file = open_read(path).map_err(|e| format!("cannot read `{shown}`: {e}"))?;
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot read `{shown}`: {e}"))?;
        if !meta.is_file() {
            return Err(format!("`{shown}` is not a file"));
        }
        if meta.len() > self.limits.max_file_bytes {
            return Err(format!(
                "`{shown}` has {} bytes, more than the {} a tool reads; use search_files or \
                 run_command to look at parts of it",
                meta.len(),
                self.limits.max_file_bytes
            ));
        }
        let mut bytes = Vec::new();
        file.take(self.limits.max_file_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read `{shown}`: {e}"))?;
        String::from_utf8(bytes).map_err(|_| format!("`{shown}` is not UTF-8 text"))
    }

    fn write_text(&self, path: &Path, content: &str) -> Result<(), String> {
        let shown = self.workspace.show(path);
        if content.len() as u64 > self.limits.max_file_bytes {
            return Err(format!(
                "the content has {} bytes, more than the {} a file may have",
                content.len(),
                self.limits.max_file_bytes
            ));
        }
        let mut file = open_write(path).map_err(|e| format!("cannot write `{shown}`: {e}"))?;
        file.write_all(content.as_bytes())
            .map_err(|e| format!("cannot write `{shown}`: {e}"))
    }

    fn read_file(&self, input: &Value) -> Result<String, String> {
        let path = self.path(input, "path")?;
        self.read_text(&path)
    }

    fn write_file(&self, input: &Value) -> Result<String, String> {
        let path = self.path(input, "path")?;
        let content = string(input, "content")?;
        self.write_text(&path, content)?;
        Ok(format!(
            "wrote {} bytes to `{}`",
            content.len(),
            self.workspace.show(&path)
        ))
    }

    fn edit(&self, input: &Value) -> Result<String, String> {
        let path = self.path(input, "path")?;
        let old = string(input, "old")?;
        let new = string(input, "new")?;
        let shown = self.workspace.show(&path);
        if old.is_empty() {
            return Err("`old` is empty; give the exact text to replace".into());
        }
        let text = self.read_text(&path)?;
        match text.matches(old).count() {
            0 => Err(format!(
                "`old` does not occur in `{shown}`; read the file and copy the text exactly, \
                 whitespace included"
            )),
            1 => {
                self.write_text(&path, &text.replacen(old, new, 1))?;
                Ok(format!("edited `{shown}`"))
            }
            n => Err(format!(
                "`old` occurs {n} times in `{shown}`; include more of the text around it so \
                 that it occurs exactly once"
            )),
        }
    }

    /// The files under `dir`, depth first in name order, without `.git` and without
    /// following links; at most `max_entries`.
    fn walk(&self, dir: &Path) -> Result<(Vec<(PathBuf, std::fs::Metadata)>, bool), String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        let mut truncated = false;
        while let Some(current) = stack.pop() {
            let mut entries: Vec<_> = match std::fs::read_dir(&current) {
                Ok(read) => read.filter_map(Result::ok).collect(),
                Err(e) => {
                    return Err(format!(
                        "cannot list `{}`: {e}",
                        self.workspace.show(&current)
                    ));
                }
            };
            entries.sort_by_key(|e| e.file_name());
            let mut subdirs = Vec::new();
            for entry in entries {
                if entry.file_name() == ".git" {
                    continue;
                }
                let Ok(meta) = entry.path().symlink_metadata() else {
                    continue;
                };
                if out.len() >= self.limits.max_entries {
                    truncated = true;
                    break;
                }
                if meta.is_dir() {
                    subdirs.push(entry.path());
                }
                out.push((entry.path(), meta));
            }
            if truncated {
                break;
            }
            stack.extend(subdirs.into_iter().rev());
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok((out, truncated))
    }

    fn directory(&self, input: &Value) -> Result<PathBuf, String> {
        let dir = match optional_string(input, "path")? {
            Some(given) => self.workspace.resolve(given).map_err(|e| e.to_string())?,
            None => self.workspace.root().to_path_buf(),
        };
        if !dir.is_dir() {
            return Err(format!(
                "`{}` is not a directory",
                self.workspace.show(&dir)
            ));
        }
        Ok(dir)
    }

    fn list_files(&self, input: &Value) -> Result<String, String> {
        let dir = self.directory(input)?;
        let (entries, truncated) = self.walk(&dir)?;
        let mut text = String::new();
        for (path, meta) in &entries {
            let shown = self.workspace.show(path);
            let line = if meta.is_dir() {
                format!("{shown}/\n")
            } else if meta.file_type().is_symlink() {
                format!("{shown} (link)\n")
            } else {
                format!("{shown} ({} bytes)\n", meta.len())
            };
            text.push_str(&line);
        }
        if truncated {
            text.push_str(&format!(
                "[stopped after {} entries; list a subdirectory]\n",
                self.limits.max_entries
            ));
        }
        if text.is_empty() {
            text = "(empty)".into();
        }
        Ok(text)
    }

    fn search_files(&self, input: &Value) -> Result<String, String> {
        let pattern = string(input, "pattern")?;
        let regex = regex::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| format!("the pattern is not a valid regular expression: {e}"))?;
        let dir = self.directory(input)?;
        let (entries, truncated) = self.walk(&dir)?;
        let mut text = String::new();
        'files: for (path, meta) in &entries {
            if !meta.is_file() || meta.len() > self.limits.max_file_bytes {
                continue;
            }
            let Ok(content) = std::fs::read_to_string(path) else {
                continue;
            };
            let shown = self.workspace.show(path);
            for (number, line) in content.lines().enumerate() {
                if regex.is_match(line) {
                    text.push_str(&format!(
                        "{shown}:{}: {}\n",
                        number + 1,
                        cut_chars(line, 200)
                    ));
                    if text.len() > self.limits.max_output_bytes {
                        text.push_str("[more matches left out; narrow the pattern or the path]\n");
                        break 'files;
                    }
                }
            }
        }
        if truncated {
            text.push_str(&format!(
                "[searched only the first {} entries; search a subdirectory]\n",
                self.limits.max_entries
            ));
        }
        if text.is_empty() {
            text = "no match".into();
        }
        Ok(text)
    }

    async fn run_command(&self, input: &Value) -> Result<String, String> {
        let command = string(input, "command")?;
        let asked = match input.get("timeout_seconds") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .ok_or("the argument `timeout_seconds` must be a whole number of seconds")?,
            ),
        };
        let timeout = asked
            .map(Duration::from_secs)
            .map_or(self.limits.command_timeout, |t| {
                t.min(self.limits.command_timeout)
            });
        let spec = launch::LaunchSpec::new("sh", self.workspace.root())
            .args(["-c", command])
            .with_env_exactly(self.command_env.clone());
        let started = Instant::now();
        let out = launch::run(spec, timeout, self.limits.max_output_bytes)
            .await
            .map_err(|e| format!("cannot run the command: {e}"))?;
        let status = if out.timed_out {
            format!("timed out after {} s and was killed", timeout.as_secs())
        } else if let Some(code) = out.code {
            format!("exit status {code}")
        } else {
            format!("killed by signal {}", out.signal.unwrap_or(0))
        };
        let mut text = format!("{status} ({} ms)\n", started.elapsed().as_millis());
        if !out.stdout.is_empty() {
            text.push_str(&format!("stdout:\n{}\n", out.stdout));
        }
        if !out.stderr.is_empty() {
            text.push_str(&format!("stderr:\n{}\n", out.stderr));
        }
        if out.success() { Ok(text) } else { Err(text) }
    }

    async fn control(&self, name: &str, input: &Value) -> Result<String, String> {
        let Some(control) = self.control.clone() else {
            return Err("the control channel is not available outside an execution".into());
        };
        let op = match name {
            "subtask" => control::Op::SubtaskCreate {
                title: string(input, "title")?.to_string(),
                body: optional_string(input, "body")?
                    .unwrap_or_default()
                    .to_string(),
                labels: serde_json::from_value(input.get("labels").cloned().unwrap_or(json!([])))
                    .map_err(|_| "the argument `labels` must be a list of strings")?,
                blocked_by: serde_json::from_value(
                    input.get("blocked_by").cloned().unwrap_or(json!([])),
                )
                .map_err(|_| "the argument `blocked_by` must be a list of task ids")?,
                priority: None,
                key: optional_string(input, "key")?.map(str::to_string),
                areas: Vec::new(),
                lease_ttl_ms: None,
            },
            "complete" => control::Op::Complete {
                summary: string(input, "summary")?.to_string(),
            },
            "block" => control::Op::Block {
                reason: string(input, "reason")?.to_string(),
            },
            _ => control::Op::Comment {
                text: string(input, "text")?.to_string(),
                key: optional_string(input, "key")?.map(str::to_string),
            },
        };
        // The client is blocking (a Unix socket with a read timeout).
        let answer = tokio::task::spawn_blocking(move || {
            control::call(&control.socket, &control.token, &op)
        })
        .await
        .map_err(|e| format!("the control call did not finish: {e}"))?;
        match answer {
            Ok(value) => Ok(value.to_string()),
            Err(e) => Err(format!("refused: {e}")),
        }
    }
}
