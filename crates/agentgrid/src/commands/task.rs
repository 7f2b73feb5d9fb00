//! `agentgrid task …`: the local tracker.

use domain::{EntityKind, NewTask, Task, TaskId, TaskState};
use store::{Change, ExecutionFilter, Store, TaskEdit, TaskFilter};

use crate::cli::{DepCommand, TaskCommand};
use crate::output::{block, clip, json, one_line, table};
use crate::project::Project;
use crate::{exit, user_error};

const ACTOR: &str = "cli";

pub async fn task(project: &Project, cmd: TaskCommand) -> anyhow::Result<u8> {
    let store = project.store().await?;
    let now = domain::Clock::now(&domain::SystemClock);
    let apply = |changes: Vec<Change>| {
        let store = store.clone();
        async move {
            store
                .apply(ACTOR, now, changes)
                .await
                .map_err(|e| match e.change_index() {
                    // A refused change is a wrong request.
                    Some(_) => user_error(e.to_string()),
                    // A database that failed or stayed locked is not: the error keeps its kind
                    // (`store::Error::Busy` is transient, the same command may simply be run
                    // again).
                    None => anyhow::Error::new(e),
                })
        }
    };
    match cmd {
        TaskCommand::Add(args) => {
            let new = NewTask {
                title: args.title,
                body: args.body,
                labels: args.labels,
                priority: args.priority,
                parent: args.parent,
                blocked_by: args.blocked_by,
                agent: args.agent,
            };
            new.check().map_err(user_error)?;
            let applied = apply(vec![Change::CreateTask(new)]).await?;
            let task = applied
                .tasks
                .last()
                .ok_or_else(|| anyhow::anyhow!("the store created no task"))?;
            if args.json {
                json(task)?;
            } else {
                println!("created task #{}: {}", task.id, one_line(&task.title));
            }
        }
        TaskCommand::Import {
            file,
            json: as_json,
        } => {
            let (source, text) = read_input(&file)?;
            let lines = parse_import(&source, &text).map_err(user_error)?;
            if lines.is_empty() {
                println!("no tasks to import: {source} has no task lines");
                return Ok(exit::OK);
            }
            let (numbers, changes): (Vec<usize>, Vec<Change>) = lines
                .into_iter()
                .map(|(n, task)| (n, Change::CreateTask(task)))
                .unzip();
            // One transaction: either every line becomes a task or none does.
            let applied = store
                .apply(ACTOR, now, changes)
                .await
                .map_err(|e| import_refused(&source, &numbers, e))?;
            if as_json {
                json(&applied.tasks)?;
            } else {
                let first = applied.tasks.first().map(|t| t.id);
                let last = applied.tasks.last().map(|t| t.id);
                match (first, last) {
                    (Some(a), Some(b)) if a != b => {
                        println!("imported {} tasks: #{a} to #{b}", applied.tasks.len())
                    }
                    (Some(a), _) => println!("imported 1 task: #{a}"),
                    _ => println!("imported no tasks"),
                }
            }
        }
        TaskCommand::List {
            state,
            label,
            parent,
            json: as_json,
        } => {
            let filter = TaskFilter {
                states: state,
                label,
                parent: parent.map(Some),
                root: None,
            };
            let tasks = store.tasks(&filter).await?;
            if as_json {
                json(&tasks)?;
            } else if tasks.is_empty() {
                println!("no tasks: add one with `agentgrid task add \"…\"`");
            } else {
                print_tasks(&tasks);
            }
        }
        TaskCommand::Show { id, json: as_json } => {
            let task = find(&*store, id).await?;
            let children = store.children(id).await?;
            let executions = store
                .executions(&ExecutionFilter {
                    task: Some(id),
                    ..Default::default()
                })
                .await?;
            let events = store.entity_events(EntityKind::Task, id.0).await?;
            let mut validations = Vec::new();
            for e in &executions {
                validations.extend(super::verdicts::of_execution(&*store, e).await?);
            }
            if as_json {
                json(
                    &serde_json::json!({"task": task, "children": children, "executions": executions, "validations": validations, "events": events}),
                )?;
            } else {
                print_task(&task);
                if !children.is_empty() {
                    println!("\nsub-tasks:");
                    print_tasks(&children);
                }
                if !executions.is_empty() {
                    println!("\nexecutions:");
                    let rows: Vec<Vec<String>> = executions
                        .iter()
                        .map(|e| {
                            vec![
                                e.id.to_string(),
                                e.kind.to_string(),
                                e.agent.clone(),
                                e.attempt.to_string(),
                                e.iteration.to_string(),
                                e.state.to_string(),
                                format!("{:.1}s", e.usage.wall_ms as f64 / 1000.0),
                                clip(e.summary.as_deref().unwrap_or(""), 60),
                            ]
                        })
                        .collect();
                    table(
                        &[
                            "ID", "KIND", "AGENT", "ATTEMPT", "ITER", "STATE", "WALL", "SUMMARY",
                        ],
                        &rows,
                    );
                }
                if !validations.is_empty() {
                    println!("\nvalidation:");
                    for v in &validations {
                        super::verdicts::print(v, "  ", 12);
                    }
                }
                println!("\nhistory:");
                for e in events {
                    println!(
                        "  {:>6}  {}  {}  {}",
                        e.seq,
                        e.at,
                        one_line(&e.actor),
                        one_line(&e.kind.describe())
                    );
                }
            }
        }
        TaskCommand::Edit(args) => {
            let task = find(&*store, args.id).await?;
            let labels = if args.add_labels.is_empty() && args.remove_labels.is_empty() {
                None
            } else {
                let mut labels: Vec<String> = task
                    .labels
                    .iter()
                    .filter(|l| !args.remove_labels.contains(l))
                    .cloned()
                    .collect();
                for l in args.add_labels {
                    if !labels.contains(&l) {
                        labels.push(l);
                    }
                }
                Some(labels)
            };
            let edit = TaskEdit {
                title: args.title,
                body: args.body,
                labels,
                priority: args.priority,
                agent: args
                    .agent
                    .map(|a| if a.is_empty() { None } else { Some(a) }),
            };
            if edit.is_empty() {
                return Err(user_error(
                    "nothing to change: pass --title, --body, --add-label, --remove-label, --priority or --agent",
                ));
            }
            let applied = apply(vec![Change::EditTask { id: args.id, edit }]).await?;
            let task = applied.tasks.last().cloned().unwrap_or(task);
            if args.json {
                json(&task)?;
            } else {
                println!("updated task #{}", task.id);
            }
        }
        TaskCommand::Cancel { id, reason } => {
            let task = find(&*store, id).await?;
            if task.state.is_terminal() {
                return Err(user_error(format!("task #{id} is already {}", task.state)));
            }
            // The task and every open task below it, deepest first, in one transaction.
            let mut changes = Vec::new();
            let mut stack = vec![id];
            let mut order = Vec::new();
            while let Some(t) = stack.pop() {
                order.push(t);
                for child in store.children(t).await? {
                    stack.push(child.id);
                }
            }
            let reason = reason.unwrap_or_else(|| "cancelled from the command line".into());
            for t in order.into_iter().rev() {
                let state = find(&*store, t).await?.state;
                if !state.is_terminal() && state.can_transition_to(TaskState::Cancelled) {
                    changes.push(Change::SetTaskState {
                        id: t,
                        to: TaskState::Cancelled,
                        reason: Some(reason.clone()),
                    });
                }
            }
            let n = changes.len();
            apply(changes).await?;
            println!(
                "cancelled task #{id}{}",
                if n > 1 {
                    format!(" and {} sub-task(s)", n - 1)
                } else {
                    String::new()
                }
            );
        }
        TaskCommand::Reopen { id } => {
            let task = find(&*store, id).await?;
            if !task.state.can_transition_to(TaskState::Open) || task.state == TaskState::Running {
                return Err(user_error(format!(
                    "task #{id} is {}; only failed, cancelled or blocked tasks can be reopened",
                    task.state
                )));
            }
            apply(vec![Change::SetTaskState {
                id,
                to: TaskState::Open,
                reason: Some("reopened".into()),
            }])
            .await?;
            println!("reopened task #{id}");
        }
        TaskCommand::Nudge { id } => {
            apply(vec![Change::Nudge { id }]).await?;
            println!("nudged task #{id}: it runs as soon as caps and guards allow");
        }
        TaskCommand::Comment { id, text } => {
            apply(vec![Change::Comment { id, text }]).await?;
            println!("commented on task #{id}");
        }
        TaskCommand::Dep(DepCommand::Add { task, blocker }) => {
            apply(vec![Change::AddDependency {
                id: task,
                blocked_by: blocker,
            }])
            .await?;
            println!("task #{task} now waits for #{blocker}");
        }
        TaskCommand::Dep(DepCommand::Rm { task, blocker }) => {
            apply(vec![Change::RemoveDependency {
                id: task,
                blocked_by: blocker,
            }])
            .await?;
            println!("task #{task} no longer waits for #{blocker}");
        }
    }
    Ok(exit::OK)
}

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

/// The text to import and a name for it in messages.
fn read_input(file: &std::path::Path) -> anyhow::Result<(String, String)> {
    use std::io::Read;
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| user_error(format!("cannot read standard input: {e}")))?;
        Ok(("standard input".into(), text))
    } else {
        let text = std::fs::read_to_string(file).map_err(|e| {
            user_error(format!(
                "cannot read {}: {e}; give a file of JSON lines, or `-` for standard input",
                file.display()
            ))
        })?;
        Ok((file.display().to_string(), text))
    }
}

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

/// A batch the store refused names the change by its index; the user knows it by its line.
fn import_refused(source: &str, numbers: &[usize], error: store::Error) -> anyhow::Error {
    let line = error.change_index().and_then(|i| numbers.get(i));
    match (line, &error) {
        (Some(line), store::Error::Refused { reason, .. }) => {
            user_error(format!("{source}:{line}: {reason}; nothing was imported"))
        }
        (Some(line), _) => user_error(format!("{source}:{line}: {error}; nothing was imported")),
        (None, _) => anyhow::Error::new(error).context("nothing was imported"),
    }
}

async fn find(store: &dyn Store, id: TaskId) -> anyhow::Result<Task> {
    store.task(id).await?.ok_or_else(|| {
        user_error(format!(
            "task #{id} does not exist: see `agentgrid task list`"
        ))
    })
}

pub fn print_tasks(tasks: &[Task]) {
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.state.to_string(),
                t.priority.to_string(),
                t.parent
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "-".into()),
                t.labels.join(","),
                clip(&t.title, 60),
            ]
        })
        .collect();
    table(&["ID", "STATE", "PRI", "PARENT", "LABELS", "TITLE"], &rows);
}

fn print_task(t: &Task) {
    println!("#{} {}", t.id, one_line(&t.title));
    println!("  state:     {}", t.state);
    println!("  priority:  {}", t.priority);
    if let Some(p) = t.parent {
        println!("  parent:    #{p}");
    }
    if !t.labels.is_empty() {
        println!("  labels:    {}", one_line(&t.labels.join(", ")));
    }
    if !t.blocked_by.is_empty() {
        let ids: Vec<String> = t.blocked_by.iter().map(|d| format!("#{d}")).collect();
        println!("  blocked by: {}", ids.join(", "));
    }
    if let Some(a) = &t.agent {
        println!("  agent:     {}", one_line(a));
    }
    if let Some(b) = &t.branch {
        println!("  branch:    {}", one_line(b));
    }
    println!(
        "  attempts:  {} failed, {} executions",
        t.attempts, t.executions
    );
    if let Some(s) = &t.summary {
        println!("  last word: {}", one_line(s));
    }
    if !t.body.is_empty() {
        println!();
        block(&t.body, "  ");
    }
}
