//! Runaway guards checked when an agent asks for a new sub-task.
//!
//! `decide` enforces the guards on executions; these checks stop a tree from growing too deep or
//! too wide at the moment a sub-task is requested, so the request is refused with a reason the
//! agent can read and nothing is created.

use domain::Task;

use crate::Config;

/// Whether `parent`, which has `existing_children` sub-tasks, may get one more.
pub fn check_new_child(
    parent: &Task,
    existing_children: u32,
    config: &Config,
) -> Result<(), String> {
    let guards = &config.guards;
    if parent.state.is_terminal() {
        return Err(format!(
            "task #{} is {}; it cannot get sub-tasks",
            parent.id, parent.state
        ));
    }
    let depth = parent.depth + 1;
    if depth > guards.max_depth {
        return Err(format!(
            "a sub-task of #{} would be at depth {depth}, deeper than guards.max_depth ({}); \
             do the work in this task instead of splitting further",
            parent.id, guards.max_depth
        ));
    }
    if existing_children >= guards.max_children {
        return Err(format!(
            "task #{} already has {existing_children} sub-tasks, the limit of guards.max_children; \
             group the work into fewer, larger sub-tasks",
            parent.id
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use domain::{NewTask, TaskId, TaskState, Timestamp};

    use super::*;
    use crate::Guards;

    fn task_at_depth(depth: u32) -> Task {
        Task::new(
            TaskId(5),
            NewTask::titled("t"),
            TaskId(1),
            depth,
            Timestamp(0),
        )
    }

    #[test]
    fn depth_and_width_limits_refuse_with_the_setting_named() {
        let config = Config {
            guards: Guards {
                max_depth: 2,
                max_children: 3,
                ..Guards::default()
            },
            ..Config::default()
        };
        assert!(check_new_child(&task_at_depth(1), 0, &config).is_ok());
        let deep = check_new_child(&task_at_depth(2), 0, &config).unwrap_err();
        assert!(deep.contains("guards.max_depth (2)"), "{deep}");
        assert!(check_new_child(&task_at_depth(0), 2, &config).is_ok());
        let wide = check_new_child(&task_at_depth(0), 3, &config).unwrap_err();
        assert!(wide.contains("guards.max_children"), "{wide}");
        let mut done = task_at_depth(0);
        done.state = TaskState::Done;
        assert!(
            check_new_child(&done, 0, &config)
                .unwrap_err()
                .contains("is done")
        );
    }
}
