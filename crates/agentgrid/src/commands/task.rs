//! `agentgrid task …`: the local tracker.

use domain::{EntityKind, NewTask, Task, TaskId, TaskState};
use store::{Change, ExecutionFilter, Store, TaskEdit, TaskFilter};

use crate::cli::{DepCommand, TaskCommand};
use crate::output::{clip, json, table};
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
                .map_err(|e| user_error(e.to_string()))
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
                println!("created task #{}: {}", task.id, task.title);
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
            if as_json {
                json(
                    &serde_json::json!({"task": task, "children": children, "executions": executions, "events": events}),
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
                println!("\nhistory:");
                for e in events {
                    println!(
                        "  {:>6}  {}  {}  {}",
                        e.seq,
                        e.at,
                        e.actor,
                        e.kind.describe()
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
    println!("#{} {}", t.id, t.title);
    println!("  state:     {}", t.state);
    println!("  priority:  {}", t.priority);
    if let Some(p) = t.parent {
        println!("  parent:    #{p}");
    }
    if !t.labels.is_empty() {
        println!("  labels:    {}", t.labels.join(", "));
    }
    if !t.blocked_by.is_empty() {
        let ids: Vec<String> = t.blocked_by.iter().map(|d| format!("#{d}")).collect();
        println!("  blocked by: {}", ids.join(", "));
    }
    if let Some(a) = &t.agent {
        println!("  agent:     {a}");
    }
    if let Some(b) = &t.branch {
        println!("  branch:    {b}");
    }
    println!(
        "  attempts:  {} failed, {} executions",
        t.attempts, t.executions
    );
    if let Some(s) = &t.summary {
        println!("  last word: {s}");
    }
    if !t.body.is_empty() {
        println!("\n{}", t.body);
    }
}
