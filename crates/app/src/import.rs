//! Checking a file of task lines before anything of it is written.

use domain::NewTask;

/// The fields a task line may carry: those of [`NewTask`].
const IMPORT_FIELDS: &[&str] = &[
    "title",
    "body",
    "labels",
    "priority",
    "parent",
    "blocked_by",
    "agent",
];

/// At most this many bad lines are listed; a file that is wrong throughout needs no more.
const IMPORT_ERRORS_SHOWN: usize = 20;

/// Parses and checks every line before anything is written. Blank lines are skipped; each other
/// line must be one JSON object with the fields of a task. Returns the tasks with their line
/// numbers (from 1), or one message listing every bad line.
pub fn parse_import(source: &str, text: &str) -> Result<Vec<(usize, NewTask)>, String> {
    let mut tasks = Vec::new();
    let mut problems = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        match parse_task_line(line) {
            Ok(task) => tasks.push((number, task)),
            Err(why) => problems.push(format!("{source}:{number}: {why}")),
        }
    }
    if problems.is_empty() {
        return Ok(tasks);
    }
    let count = problems.len();
    let mut message =
        format!("{count} line(s) of {source} are not valid tasks, so nothing was imported:\n");
    for problem in problems.iter().take(IMPORT_ERRORS_SHOWN) {
        message.push_str("  ");
        message.push_str(problem);
        message.push('\n');
    }
    if count > IMPORT_ERRORS_SHOWN {
        message.push_str(&format!("  … and {} more\n", count - IMPORT_ERRORS_SHOWN));
    }
    message.push_str(
        "each line must be a JSON object like {\"title\": \"Add CSV export\", \"labels\": [\"backend\"]}",
    );
    Err(message)
}

fn parse_task_line(line: &str) -> Result<NewTask, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not valid JSON ({e})"))?;
    let Some(object) = value.as_object() else {
        return Err("expected a JSON object with at least a \"title\"".into());
    };
    // serde would ignore a misspelt field silently; a task quietly missing its labels is worse
    // than an error.
    if let Some(unknown) = object.keys().find(|k| !IMPORT_FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "unknown field `{unknown}`: a task line may have {}",
            IMPORT_FIELDS.join(", ")
        ));
    }
    let task: NewTask = serde_json::from_value(value).map_err(|e| e.to_string())?;
    task.check()?;
    if task.agent.as_deref().is_some_and(|a| a.trim().is_empty()) {
        return Err("`agent` is empty: name an agent or leave the field out".into());
    }
    Ok(task)
}
