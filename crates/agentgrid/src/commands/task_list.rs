//! `agentgrid task list`: the newest tasks under a limit, or every match read and printed a
//! page at a time, so that a list of 100,000 tasks never sits in memory at once.

use app::{Actor, App, TaskList, TaskListPage, Timer};
use domain::{Task, Timestamp};
use store::TaskFilter;

use crate::output::{JsonArray, Table, clip};

/// How many tasks are read from the store at a time when every match is listed.
const PAGE: u32 = 500;

pub(super) async fn list(
    app: &App,
    actor: &Actor,
    filter: TaskFilter,
    limit: Option<u32>,
    as_json: bool,
) -> anyhow::Result<()> {
    match limit {
        Some(limit) => newest(app, actor, filter, limit, as_json).await,
        None => every(app, actor, filter, as_json).await,
    }
}

/// The newest `limit` matches, oldest first, with a note when older ones were left out.
async fn newest(
    app: &App,
    actor: &Actor,
    filter: TaskFilter,
    limit: u32,
    as_json: bool,
) -> anyhow::Result<()> {
    let query = TaskList {
        filter: filter.clone(),
        limit: Some(limit),
    };
    let page = app.ask(actor, query).await?;
    if as_json {
        let mut array = JsonArray::default();
        for task in &page.tasks {
            array.push(&with_timer(task)?)?;
        }
        array.finish();
        return Ok(());
    }
    if page.tasks.is_empty() {
        return say_none(app, &filter).await;
    }
    let timers = page.tasks.iter().any(|t| Timer::of(t).is_some());
    let mut table = Table::new(header(timers));
    table.rows(&rows(&page.tasks, timers.then(|| app.now())));
    if page.more {
        outln!(
            "(the newest {} shown; older tasks match: raise --limit)",
            page.tasks.len()
        );
    }
    Ok(())
}

/// Every match, oldest first, printed page by page as the store hands them over.
async fn every(app: &App, actor: &Actor, filter: TaskFilter, as_json: bool) -> anyhow::Result<()> {
    // Whether the table needs its NEXT column must be known before its first row, and a timer
    // may sit on the last page: one indexed read of the project's timers tells.
    let timers = !as_json && !app.store().tasks_with_timers(1).await?.is_empty();
    let now = app.now();
    let mut table = Table::new(header(timers));
    let mut array = JsonArray::default();
    let mut after = None;
    let mut printed = 0usize;
    loop {
        let query = TaskListPage {
            filter: filter.clone(),
            after,
            size: PAGE,
        };
        let page = app.ask(actor, query).await?;
        if as_json {
            for task in &page {
                array.push(&with_timer(task)?)?;
            }
        } else if !page.is_empty() {
            table.rows(&rows(&page, timers.then_some(now)));
        }
        printed += page.len();
        after = page.last().map(|t| t.id);
        // A reader that went away (`| head`) has seen all it wants.
        if page.len() < PAGE as usize || crate::output::closed() {
            break;
        }
    }
    if as_json {
        array.finish();
    } else if printed == 0 {
        say_none(app, &filter).await?;
    }
    Ok(())
}

/// A task as `--json` prints it: with the timer it waits for (`null` for none).
fn with_timer(task: &Task) -> anyhow::Result<serde_json::Value> {
    let mut value = serde_json::to_value(task)?;
    value["timer"] = serde_json::to_value(Timer::of(task))?;
    Ok(value)
}

/// What an empty list says: adding a task is the way on only for a project that has none.
async fn say_none(app: &App, filter: &TaskFilter) -> anyhow::Result<()> {
    let any = app.store().task_counts().await?.iter().any(|(_, n)| *n > 0);
    if any {
        outln!("{}", super::task::no_match(filter));
    } else {
        outln!("no tasks: add one with `agentgrid task add \"…\"`");
    }
    Ok(())
}

fn header(timers: bool) -> &'static [&'static str] {
    if timers {
        &["ID", "STATE", "PRI", "PARENT", "LABELS", "NEXT", "TITLE"]
    } else {
        &["ID", "STATE", "PRI", "PARENT", "LABELS", "TITLE"]
    }
}

/// The table's rows, with a NEXT column (each task's timer as seen at the given time) or not.
fn rows(tasks: &[Task], timers_at: Option<Timestamp>) -> Vec<Vec<String>> {
    tasks
        .iter()
        .map(|t| {
            let mut row = vec![
                t.id.to_string(),
                t.state.to_string(),
                t.priority.to_string(),
                t.parent.map_or_else(|| "-".into(), |p| p.to_string()),
                t.labels.join(","),
            ];
            if let Some(now) = timers_at {
                row.push(
                    Timer::of(t)
                        .map_or_else(|| "-".into(), |timer| crate::when::timer(&timer, now)),
                );
            }
            row.push(clip(&t.title, 60));
            row
        })
        .collect()
}

/// The table of `tasks` without timers, as `task show` lists sub-tasks.
pub fn print_tasks(tasks: &[Task]) {
    Table::new(header(false)).rows(&rows(tasks, None));
}
