//! The area lease rule: a task an area is reserved for waits while a running execution of
//! another task holds an overlapping lease, and runs once that lease ends or runs out.

use domain::{
    AreaLease, AreaLeaseId, AreaLeaseState, AreaPath, Duration, ExecutionId, TaskId, Timestamp,
};
use scheduler::decide;

use crate::world::*;

fn lease(
    id: i64,
    path: &str,
    execution: i64,
    holder: i64,
    task: i64,
    until: Timestamp,
) -> AreaLease {
    AreaLease {
        id: AreaLeaseId(id),
        path: AreaPath::parse(path).unwrap(),
        execution: ExecutionId(execution),
        holder_task: TaskId(holder),
        agent: "worker".into(),
        task: TaskId(task),
        taken_at: T0,
        expires_at: until,
        state: AreaLeaseState::Held,
        ended_at: None,
        end_reason: None,
    }
}

/// Room for everything: only the leases hold a task back.
fn roomy() -> scheduler::Config {
    scheduler::Config {
        global_concurrency: 10,
        ..config(vec![worker()])
    }
}

fn dispatched(s: &scheduler::Snapshot, now: Timestamp) -> Vec<i64> {
    decide(s, &roomy(), now)
        .dispatches()
        .map(|(t, _, _)| t.0)
        .collect()
}

/// Task 1 runs as execution 10 and holds `src` until `T0 + 60 s`; task 2 (the coordinator)
/// runs as execution 20 and reserved `src/db` for its sub-task 3 until `T0 + 600 s`.
fn reserved_behind_a_running_lease() -> scheduler::Snapshot {
    let coordinator = task(2);
    let sub = child(3, &coordinator);
    let mut s = world(vec![task(1), coordinator, sub]);
    run(&mut s, 10, 1, "worker", T0);
    run(&mut s, 20, 2, "worker", T0);
    s.area_leases = vec![
        lease(1, "src", 10, 1, 1, T0.plus(Duration::from_secs(60))),
        lease(2, "src/db", 20, 2, 3, T0.plus(Duration::from_secs(600))),
    ];
    s
}

#[test]
fn a_reserved_task_waits_for_an_overlapping_lease_of_a_running_execution() {
    let s = reserved_behind_a_running_lease();
    let d = decide(&s, &roomy(), T0);
    assert_eq!(d.dispatches().count(), 0, "{:?}", d.actions);
    assert_eq!(
        d.next_wakeup,
        Some(T0.plus(Duration::from_secs(60))),
        "it looks again when the lease runs out"
    );
    let (why, until) = domain::area::waits_for(
        TaskId(3),
        &s.area_leases,
        |e| s.active.iter().any(|a| a.id == e),
        |_| false,
        T0,
    )
    .unwrap();
    assert!(
        why.starts_with(
            "waits for area src/db: src leased to execution #10 (agent worker, task #1) until"
        ),
        "{why}"
    );
    assert_eq!(until, T0.plus(Duration::from_secs(60)));
}

#[test]
fn the_task_runs_once_the_lease_runs_out_is_released_or_its_execution_ends() {
    let s = reserved_behind_a_running_lease();
    assert_eq!(dispatched(&s, T0.plus(Duration::from_secs(60))), vec![3]);

    let mut released = s.clone();
    released.area_leases.remove(0);
    assert_eq!(dispatched(&released, T0), vec![3]);

    let mut ended = s.clone();
    ended.active.retain(|a| a.id != ExecutionId(10));
    assert_eq!(
        dispatched(&ended, T0),
        vec![3],
        "a lease whose execution is no longer running holds nothing back"
    );
}

#[test]
fn only_overlap_holds_a_task_back() {
    let mut s = reserved_behind_a_running_lease();
    s.area_leases[0].path = AreaPath::parse("srcs").unwrap();
    assert_eq!(dispatched(&s, T0), vec![3]);
    s.area_leases[0].path = AreaPath::parse(".").unwrap();
    assert!(
        dispatched(&s, T0).is_empty(),
        "the whole repository overlaps"
    );
}

#[test]
fn a_lease_for_the_task_itself_or_an_unreserved_task_holds_nothing_back() {
    // A lease held for task 3 by another execution of task 3's own tree does not hold task 3
    // back from itself, and task 4 with no reservation runs whatever is leased.
    let mut s = reserved_behind_a_running_lease();
    s.insert(task(4));
    s.area_leases[0].task = TaskId(3);
    s.area_leases[0].holder_task = TaskId(3);
    let got = dispatched(&s, T0);
    assert!(got.contains(&3) && got.contains(&4), "{got:?}");
}

/// Task 2 (the coordinator, execution 20, running or not) reserved `src` for its sub-task 3
/// until `T0 + 60 s`, `src/db` for its sub-task 4 and `docs` for sub-task 5 until `T0 + 600 s`.
fn siblings_reserved_overlapping(coordinator_running: bool) -> scheduler::Snapshot {
    let coordinator = task(2);
    let mut s = world(vec![
        coordinator.clone(),
        child(3, &coordinator),
        child(4, &coordinator),
        child(5, &coordinator),
    ]);
    if coordinator_running {
        run(&mut s, 20, 2, "worker", T0);
    } else {
        s.update(TaskId(2), |t| t.state = domain::TaskState::Waiting);
    }
    let until = T0.plus(Duration::from_secs(600));
    s.area_leases = vec![
        lease(1, "src", 20, 2, 3, T0.plus(Duration::from_secs(60))),
        lease(2, "src/db", 20, 2, 4, until),
        lease(3, "docs", 20, 2, 5, until),
    ];
    s
}

#[test]
fn sub_tasks_reserved_overlapping_areas_take_turns_whether_their_coordinator_runs_or_not() {
    for coordinator_running in [true, false] {
        let s = siblings_reserved_overlapping(coordinator_running);
        assert_eq!(
            dispatched(&s, T0),
            vec![3, 5],
            "one decision starts one of the two, and the one beside them \
             (coordinator running: {coordinator_running})"
        );
        let mut s = s;
        run(&mut s, 30, 3, "worker", T0);
        let d = decide(&s, &roomy(), T0);
        let got: Vec<i64> = d.dispatches().map(|(t, _, _)| t.0).collect();
        assert_eq!(got, vec![5], "task 4 waits while task 3 runs");
        assert_eq!(
            d.next_wakeup,
            Some(T0.plus(Duration::from_secs(60))),
            "it looks again when task 3's reservation runs out"
        );
        let (why, _) = domain::area::waits_for(
            TaskId(4),
            &s.area_leases,
            |e| s.active.iter().any(|a| a.id == e),
            |t| s.active.iter().any(|a| a.task == t),
            T0,
        )
        .unwrap();
        assert!(
            why.starts_with("waits for area src/db: src reserved for task #3, which runs now"),
            "{why}"
        );
    }
}
