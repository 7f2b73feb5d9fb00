//! `agentgrid task …`: the local tracker's face. The rules live in the application layer
//! (`app`); this module turns arguments into its commands and queries and prints the answers.

use app::{
    Actor, AddDependency, AddTask, Answer, Cancel, Comment, EditTask, Import, Nudge,
    RemoveDependency, Reopen, TaskList, TaskShow,
};
use domain::{NewTask, Task};
use store::TaskFilter;

use crate::cli::{DepCommand, TaskCommand};
use crate::output::{block, clip, json, one_line, table};
use crate::project::Project;
use crate::{exit, user_error};

pub async fn task(project: &Project, cmd: TaskCommand) -> anyhow::Result<u8> {
    let app = project.app().await?;
    let actor = Actor::command_line();
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
            let task = app.execute(&actor, AddTask(new)).await?;
            if args.json {
                json(&task)?;
            } else {
                outln!("created task #{}: {}", task.id, one_line(&task.title));
            }
        }
        TaskCommand::Import {
            file,
            json: as_json,
        } => {
            let (source, text) = read_input(&file)?;
            let tasks = app
                .execute(
                    &actor,
                    Import {
                        source: source.clone(),
                        text,
                    },
                )
                .await?;
            if tasks.is_empty() {
                outln!("no tasks to import: {source} has no task lines");
                return Ok(exit::OK);
            }
            if as_json {
                json(&tasks)?;
            } else {
                let first = tasks.first().map(|t| t.id);
                let last = tasks.last().map(|t| t.id);
                match (first, last) {
                    (Some(a), Some(b)) if a != b => {
                        outln!("imported {} tasks: #{a} to #{b}", tasks.len())
                    }
                    (Some(a), _) => outln!("imported 1 task: #{a}"),
                    _ => outln!("imported no tasks"),
                }
            }
        }
        TaskCommand::List {
            state,
            label,
            parent,
            limit,
            json: as_json,
        } => {
            let filter = TaskFilter {
                states: state,
                label,
                parent: parent.map(Some),
                root: None,
            };
            let page = app
                .ask(
                    &actor,
                    TaskList {
                        filter: filter.clone(),
                        limit,
                    },
                )
                .await?;
            if as_json {
                json(&page.tasks)?;
            } else if page.tasks.is_empty() {
                // Adding a task is the way on only for a project that has none at all.
                let any = app.store().task_counts().await?.iter().any(|(_, n)| *n > 0);
                if any {
                    outln!("{}", no_match(&filter));
                } else {
                    outln!("no tasks: add one with `agentgrid task add \"…\"`");
                }
            } else {
                print_tasks(&page.tasks);
                if page.more {
                    outln!(
                        "(the newest {} shown; older tasks match: raise --limit)",
                        page.tasks.len()
                    );
                }
            }
        }
        TaskCommand::Show { id, json: as_json } => {
            let detail = app.ask(&actor, TaskShow { id }).await?;
            if as_json {
                json(&detail)?;
            } else {
                print_task(&detail.task);
                if !detail.children.is_empty() {
                    outln!("\nsub-tasks:");
                    print_tasks(&detail.children);
                }
                if !detail.executions.is_empty() {
                    outln!("\nexecutions:");
                    let rows: Vec<Vec<String>> = detail
                        .executions
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
                if !detail.validations.is_empty() {
                    outln!("\nvalidation:");
                    for v in &detail.validations {
                        super::verdicts::print(v, "  ", 12);
                    }
                }
                outln!("\nhistory:");
                for e in &detail.events {
                    outln!(
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
            let edit = EditTask {
                id: args.id,
                title: args.title,
                body: args.body,
                add_labels: args.add_labels,
                remove_labels: args.remove_labels,
                priority: args.priority,
                agent: args.agent,
            };
            let task = app.execute(&actor, edit).await?;
            if args.json {
                json(&task)?;
            } else {
                outln!("updated task #{}", task.id);
            }
        }
        TaskCommand::Cancel { id, reason } => {
            let cancel = Cancel {
                ids: vec![id],
                cascade: true,
                reason,
            };
            let cancelled = app.execute(&actor, cancel).await?;
            let below = cancelled.sub_tasks(1);
            outln!(
                "cancelled task #{id}{}",
                if below > 0 {
                    format!(" and {below} sub-task(s)")
                } else {
                    String::new()
                }
            );
        }
        TaskCommand::Reopen { id, feedback } => {
            let with_feedback = feedback.is_some();
            app.execute(&actor, Reopen { id, feedback }).await?;
            if with_feedback {
                outln!("reopened task #{id}: its next execution gets your feedback");
            } else {
                outln!("reopened task #{id}");
            }
        }
        TaskCommand::Answer { id, text } => {
            app.execute(&actor, Answer { id, text }).await?;
            outln!("answered task #{id} and reopened it: its next execution gets your answer");
        }
        TaskCommand::Nudge { id } => {
            app.execute(&actor, Nudge { id }).await?;
            outln!("nudged task #{id}: it runs as soon as caps and guards allow");
        }
        TaskCommand::Comment { id, text } => {
            app.execute(&actor, Comment { id, text }).await?;
            outln!("commented on task #{id}");
        }
        TaskCommand::Dep(DepCommand::Add { task, blocker }) => {
            app.execute(&actor, AddDependency { task, blocker }).await?;
            outln!("task #{task} now waits for #{blocker}");
        }
        TaskCommand::Dep(DepCommand::Rm { task, blocker }) => {
            app.execute(&actor, RemoveDependency { task, blocker })
                .await?;
            outln!("task #{task} no longer waits for #{blocker}");
        }
    }
    Ok(exit::OK)
}

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
    outln!("#{} {}", t.id, one_line(&t.title));
    outln!("  state:     {}", t.state);
    outln!("  priority:  {}", t.priority);
    if let Some(p) = t.parent {
        outln!("  parent:    #{p}");
    }
    if !t.labels.is_empty() {
        outln!("  labels:    {}", one_line(&t.labels.join(", ")));
    }
    if !t.blocked_by.is_empty() {
        let ids: Vec<String> = t.blocked_by.iter().map(|d| format!("#{d}")).collect();
        outln!("  blocked by: {}", ids.join(", "));
    }
    if let Some(a) = &t.agent {
        outln!("  agent:     {}", one_line(a));
    }
    if let Some(b) = &t.branch {
        outln!("  branch:    {}", one_line(b));
    }
    outln!(
        "  attempts:  {} failed, {} executions",
        t.attempts,
        t.executions
    );
    if let Some(s) = &t.summary {
        outln!("  last word: {}", one_line(s));
    }
    if let Some(m) = &t.merge_failed {
        outln!("  merge failed: {}", one_line(m));
    }
    if !t.body.is_empty() {
        outln!();
        block(&t.body, "  ");
    }
}

/// What an empty `task list` found, in the words of its filter: "no failed tasks", "no open or
/// blocked tasks labelled ui under #3".
fn no_match(filter: &TaskFilter) -> String {
    let mut text = String::from("no ");
    let states: Vec<String> = filter.states.iter().map(|s| s.to_string()).collect();
    match states.split_last() {
        None => {}
        Some((last, [])) => text.push_str(&format!("{last} ")),
        Some((last, rest)) => text.push_str(&format!("{} or {last} ", rest.join(", "))),
    }
    text.push_str("tasks");
    if let Some(label) = &filter.label {
        text.push_str(&format!(" labelled {}", one_line(label)));
    }
    if let Some(Some(parent)) = filter.parent {
        text.push_str(&format!(" under #{parent}"));
    }
    text
}
