//! Small builders for scheduler inputs, shared by the rule and property tests.

use domain::{ExecutionId, ExecutionKind, NewTask, Task, TaskId, TaskState, Timestamp};
use scheduler::{ActiveExecution, AgentPolicy, Config, Snapshot};

pub const T0: Timestamp = Timestamp(1_000_000);

pub fn task(id: i64) -> Task {
    Task::new(
        TaskId(id),
        NewTask::titled(format!("task {id}")),
        TaskId(id),
        0,
        Timestamp(T0.0 + id),
    )
}

pub fn child(id: i64, parent: &Task) -> Task {
    let mut new = NewTask::titled(format!("task {id}"));
    new.parent = Some(parent.id);
    Task::new(
        TaskId(id),
        new,
        parent.root,
        parent.depth + 1,
        Timestamp(T0.0 + id),
    )
}

pub fn labelled(mut t: Task, labels: &[&str]) -> Task {
    t.labels = labels.iter().map(|l| l.to_string()).collect();
    t
}

pub fn in_state(mut t: Task, state: TaskState) -> Task {
    t.state = state;
    t
}

pub fn config(agents: Vec<AgentPolicy>) -> Config {
    Config {
        agents,
        ..Config::default()
    }
}

pub fn worker() -> AgentPolicy {
    AgentPolicy::new("worker")
}

pub fn world(tasks: Vec<Task>) -> Snapshot {
    let mut s = Snapshot::default();
    for t in tasks {
        s.insert(t);
    }
    s
}

/// Marks `task` running with an active execution of `agent`.
pub fn run(s: &mut Snapshot, exec: i64, task: i64, agent: &str, started: Timestamp) {
    let found = s.update(TaskId(task), |t| {
        t.state = TaskState::Running;
        t.executions += 1;
    });
    assert!(found, "task {task} exists");
    s.active.push(ActiveExecution {
        id: ExecutionId(exec),
        task: TaskId(task),
        agent: agent.to_string(),
        kind: ExecutionKind::Work,
        iteration_started_at: Some(started),
        last_activity_at: started,
        kill_requested: false,
    });
}

/// Adds `new` as the next task of a generated world, under the earlier task at `parent` and
/// blocked by the earlier ones at `deps` (positions). Parents and dependencies point only at
/// earlier tasks, so the graphs have no cycles. Returns the task as added.
pub fn push_linked(
    built: &mut Vec<Task>,
    mut new: NewTask,
    parent: Option<usize>,
    deps: Vec<usize>,
) -> &mut Task {
    let i = built.len();
    let id = TaskId(i as i64 + 1);
    let parent = parent.filter(|p| *p < i).map(|p| &built[p]);
    new.parent = parent.map(|p| p.id);
    new.blocked_by = deps
        .into_iter()
        .filter(|d| *d < i)
        .map(|d| TaskId(d as i64 + 1))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let (root, depth) = parent.map_or((id, 0), |p| (p.root, p.depth + 1));
    built.push(Task::new(id, new, root, depth, Timestamp(i as i64)));
    built.last_mut().expect("just added")
}

/// A task with sub-tasks starts out split, waiting for them.
pub fn start_split(tasks: &mut [Task]) {
    let parents: std::collections::HashSet<TaskId> =
        tasks.iter().filter_map(|t| t.parent).collect();
    for t in tasks {
        if parents.contains(&t.id) {
            t.state = TaskState::Waiting;
        }
    }
}
