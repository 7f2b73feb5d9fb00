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
