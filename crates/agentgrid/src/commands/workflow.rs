//! `agentgrid workflow start|list|show`: starting a `kind: Workflow` on a task and reading
//! where its runs are. The run itself is recorded state in the store (the tracker's rules,
//! the `workflow` crate's machine); this module only reads the manifest and prints.

use domain::{Clock, SystemClock, TaskId, Timestamp, WorkflowId};
use serde_json::json;
use store::{Change, Store, WorkflowFilter, WorkflowRun};

use crate::cli::WorkflowCommand;
use crate::output::table;
use crate::project::Project;
use crate::{exit, user_error};

pub async fn workflow(project: &Project, command: WorkflowCommand) -> anyhow::Result<u8> {
    match command {
        WorkflowCommand::Start { task, name, json } => start(project, task, &name, json).await,
        WorkflowCommand::List { all, json } => list(project, all, json).await,
        WorkflowCommand::Show { id, json } => show(project, id, json).await,
    }
}

async fn start(project: &Project, task: TaskId, name: &str, as_json: bool) -> anyhow::Result<u8> {
    // The definition is read, and checked with every other manifest, at the start; the run
    // keeps it, so a later edit of the file changes only the runs started after it.
    let loaded = manifest::load_project(&project.state_dir).map_err(|d| {
        user_error(format!(
            "{d}\nthe manifests have problems (above); fix them, then start the workflow"
        ))
    })?;
    let Some(found) = loaded.workflow(name) else {
        let names: Vec<&str> = loaded.workflows.iter().map(|w| w.name.as_str()).collect();
        return Err(user_error(format!(
            "no workflow is called `{name}` (workflows: {}); workflows live in {}/workflows/",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            },
            project.state_dir.display()
        )));
    };
    let store = project.store().await?;
    let now = SystemClock.now();
    let change = Change::StartWorkflow {
        task,
        name: name.to_string(),
        definition: found.definition.clone(),
    };
    let applied = store.apply("cli", now, vec![change]).await?;
    let id = applied
        .events
        .iter()
        .find_map(|e| match &e.kind {
            domain::EventKind::TaskWorkflowStarted { workflow, .. } => Some(*workflow),
            _ => None,
        })
        .expect("a start records the run");
    let run = store
        .workflow_run(id)
        .await?
        .expect("the run was just recorded");
    if as_json {
        crate::output::json(&run_json(&run))?;
    } else {
        outln!(
            "started workflow run W{id} of `{name}` on task #{task}, at `{}`",
            run.instance.position.as_deref().unwrap_or("-")
        );
    }
    Ok(exit::OK)
}

async fn list(project: &Project, all: bool, as_json: bool) -> anyhow::Result<u8> {
    let store = project.store().await?;
    let filter = WorkflowFilter {
        task: None,
        running: !all,
    };
    let runs = store.workflow_runs(&filter).await?;
    if as_json {
        crate::output::json(&runs.iter().map(run_json).collect::<Vec<_>>())?;
        return Ok(exit::OK);
    }
    if runs.is_empty() {
        outln!(
            "{}",
            if all {
                "no workflow runs"
            } else {
                "no running workflow runs (--all shows finished ones too)"
            }
        );
        return Ok(exit::OK);
    }
    let now = SystemClock.now();
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                format!("W{}", r.id),
                format!("#{}", r.task_id),
                r.name.clone(),
                r.instance.status.as_str().to_string(),
                r.instance.position.clone().unwrap_or_default(),
                age(now, r.updated_at),
            ]
        })
        .collect();
    table(&["RUN", "TASK", "WORKFLOW", "STATUS", "AT", "SINCE"], &rows);
    Ok(exit::OK)
}

async fn show(project: &Project, id: WorkflowId, as_json: bool) -> anyhow::Result<u8> {
    let store = project.store().await?;
    let Some(run) = store.workflow_run(id).await? else {
        return Err(user_error(format!(
            "workflow run W{id} does not exist: see `agentgrid workflow list --all`"
        )));
    };
    if as_json {
        crate::output::json(&run_json(&run))?;
    } else {
        print_run(&run);
    }
    Ok(exit::OK)
}

/// The first workflow (in file order) whose `spec.labels` names one of a new task's labels,
/// to start in the task's own batch. Manifests that do not load start nothing, with a
/// warning: the task itself is made either way.
pub(super) fn by_label(
    project: &Project,
    labels: &[String],
) -> Option<(String, workflow::Definition)> {
    if labels.is_empty() {
        return None;
    }
    let loaded = match manifest::load_project(&project.state_dir) {
        Ok(loaded) => loaded,
        Err(diagnostics) => {
            eprintln!(
                "{}the manifests have problems, so no workflow is started by label on the new \
                 task (see `agentgrid validate`; then `agentgrid workflow start`): {}",
                crate::output::warning_prefix(),
                domain::text::one_line(&diagnostics.to_string())
            );
            return None;
        }
    };
    loaded
        .workflows
        .iter()
        .find(|w| w.labels.iter().any(|l| labels.contains(l)))
        .map(|w| (w.name.clone(), w.definition.clone()))
}

/// Every workflow that labels start, with its labels, in file order: for `task import`.
/// Manifests that do not load give none (the tasks are imported either way).
pub(super) fn label_starts(project: &Project) -> Vec<(Vec<String>, String, workflow::Definition)> {
    let Ok(loaded) = manifest::load_project(&project.state_dir) else {
        return Vec::new();
    };
    loaded
        .workflows
        .iter()
        .filter(|w| !w.labels.is_empty())
        .map(|w| (w.labels.clone(), w.name.clone(), w.definition.clone()))
        .collect()
}

/// The runs of a task, for `task show`.
pub(super) async fn of_task(store: &dyn Store, task: TaskId) -> anyhow::Result<Vec<WorkflowRun>> {
    let filter = WorkflowFilter {
        task: Some(task),
        running: false,
    };
    Ok(store.workflow_runs(&filter).await?)
}

/// One run as text: where it is, its blackboard and its history.
pub(super) fn print_run(run: &WorkflowRun) {
    let i = &run.instance;
    outln!(
        "workflow run W{} of `{}` on task #{}: {}{}",
        run.id,
        run.name,
        run.task_id,
        i.status.as_str(),
        match &i.position {
            Some(p) => format!(", at `{p}` (visit {})", i.visit),
            None => String::new(),
        }
    );
    for (key, value) in &i.blackboard {
        outln!("  {key} = {}", domain::text::one_line(&value.to_string()));
    }
    if let Some(p) = &run.parent {
        outln!(
            "  started by W{} at `{}` (visit {})",
            p.run,
            p.state,
            p.visit
        );
    }
    let waiting = run.begun.iter().filter(|b| {
        b.visit == i.visit && !i.is_finished() && !matches!(i.branches.get(&b.state), Some(Some(_)))
    });
    for b in waiting {
        let what = match (b.approval, b.subtask, b.deadline) {
            (Some(a), _, _) => format!("waits for approval #{a}"),
            (_, Some(t), _) => format!("runs its agent on sub-task #{t}"),
            (_, _, Some(d)) => format!("times out at {}", d.to_rfc3339()),
            _ => format!("{} under way", b.command.replace('_', " ")),
        };
        outln!("  now: `{}` {what}", b.state);
    }
    for entry in &i.history {
        outln!(
            "  {:>3}  {:<12} {}",
            entry.visit,
            entry.state,
            domain::text::one_line(&entry.note)
        );
    }
}

/// A run waiting at a gate: an approval a person decides, or a timer alone.
pub(super) struct Gate {
    pub run: WorkflowId,
    pub name: String,
    pub task: TaskId,
    pub state: String,
    pub approval: Option<domain::ApprovalId>,
    pub deadline: Option<Timestamp>,
    pub since: Timestamp,
}

/// The running runs that wait at a gate, for `status`: the visit's approval, or a timer that
/// is all the visit waits for besides.
pub(super) async fn gates(store: &dyn Store) -> anyhow::Result<Vec<Gate>> {
    let filter = WorkflowFilter {
        task: None,
        running: true,
    };
    let mut gates = Vec::new();
    for run in store.workflow_runs(&filter).await? {
        let visit = run.instance.visit;
        let of_visit: Vec<_> = run.begun.iter().filter(|b| b.visit == visit).collect();
        let approval = of_visit.iter().find(|b| b.approval.is_some());
        let timer = of_visit.iter().find(|b| b.deadline.is_some());
        let only_timer = of_visit.iter().all(|b| b.command == "arm_timer");
        let (state, since) = match (approval, timer) {
            (Some(b), _) => (b.state.clone(), b.at),
            (None, Some(b)) if only_timer => (b.state.clone(), b.at),
            _ => continue,
        };
        gates.push(Gate {
            run: run.id,
            name: run.name.clone(),
            task: run.task_id,
            state,
            approval: approval.and_then(|b| b.approval),
            deadline: timer.and_then(|b| b.deadline),
            since,
        });
    }
    Ok(gates)
}

pub(super) fn gate_line(gate: &Gate, now: Timestamp) -> String {
    let mut on = Vec::new();
    if let Some(a) = gate.approval {
        on.push(format!("approval #{a}"));
    }
    if let Some(d) = gate.deadline {
        on.push(if d > now {
            format!("times out in {}", age(d, now))
        } else {
            "timed out, taken at the engine's next turn".to_string()
        });
    }
    format!(
        "W{} of `{}` on #{} waits at `{}` ({}) for {}",
        gate.run,
        gate.name,
        gate.task,
        gate.state,
        on.join(", "),
        age(now, gate.since)
    )
}

pub(super) fn gate_json(gate: &Gate, now: Timestamp) -> serde_json::Value {
    json!({
        "run": gate.run,
        "workflow": gate.name,
        "task": gate.task,
        "state": gate.state,
        "approval": gate.approval,
        "deadline": gate.deadline.map(|d| d.to_rfc3339()),
        "since": gate.since.to_rfc3339(),
        "age": age(now, gate.since),
    })
}

pub(super) fn run_json(run: &WorkflowRun) -> serde_json::Value {
    json!({
        "id": run.id,
        "task": run.task_id,
        "name": run.name,
        "status": run.instance.status.as_str(),
        "position": run.instance.position,
        "visit": run.instance.visit,
        "steps": run.steps,
        "blackboard": run.instance.blackboard,
        "budgets_used": run.instance.taken,
        "history": run.instance.history,
        "begun": run.begun.iter().map(|b| json!({
            "visit": b.visit,
            "state": b.state,
            "command": b.command,
            "at": b.at.to_rfc3339(),
            "deadline": b.deadline.map(|d| d.to_rfc3339()),
            "approval": b.approval,
            "subtask": b.subtask,
        })).collect::<Vec<_>>(),
        "parent": run.parent.as_ref().map(|p| json!({"run": p.run, "visit": p.visit, "state": p.state})),
        "started_at": run.started_at.to_rfc3339(),
        "updated_at": run.updated_at.to_rfc3339(),
    })
}

fn age(now: Timestamp, then: Timestamp) -> String {
    let secs = now.since(then).as_millis() / 1000;
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s => format!("{}h", s / 3600),
    }
}
