//! The rules of area leases (see `domain::area`): who may take one, on what, for how long,
//! what overlap refuses, and that a lease dies with its execution.
//!
//! A lease's events are its holder execution's (`execution_area_lease_taken`,
//! `..._released`, `..._expired`). The rules that matter against an agent that grabs or lies:
//! - a lease is taken by an active execution for its own task or one of its task's sub-tasks,
//!   never for another task;
//! - paths are normalised relative paths (the face parses them); counts, lengths and the time
//!   to live are bounded ([`limits`]);
//! - a lease for the holder's own task overlapping a live lease another execution holds for
//!   another task is refused, naming the holder and when it expires; a coordinator's
//!   reservation for a sub-task is refused only by another reservation (the scheduler holds
//!   the sub-task back while a running execution's lease overlaps it);
//! - a lease whose time ran out is recorded expired by the first change that meets it;
//! - when its execution finishes, whatever the end (lost included), every lease it holds for
//!   its own task is released in the same transaction;
//! - a coordinator's reservation outlives the coordinator's execution (which typically exits
//!   to wait for its sub-tasks): it ends when its time runs out, when the coordinator releases
//!   it, or when an execution of the sub-task it reserves for succeeds, since that task's work
//!   is then over; a failed execution leaves it standing for the retry;
//! - a sub-task and its reservation can be made in one batch ([`Change::ReserveAreasOnNewest`]
//!   after the sub-task's creation), so the scheduler never sees the sub-task without it.

use domain::area::limits;
use domain::{
    AreaLease, AreaLeaseId, AreaLeaseState, AreaPath, Duration, EventKind, ExecutionId,
    ExecutionState, TaskId,
};

use crate::decide::Decision;
use crate::refusal::{Refusal, refused};
use crate::{Change, Entry, Key, State};

/// The keys an area lease change reads; also the leases an execution's end releases.
pub(crate) fn wants(state: &State, change: &Change, keys: &mut Vec<Key>) {
    match change {
        Change::TakeAreaLeases {
            execution,
            for_task,
            ..
        } => {
            keys.push(Key::Execution(*execution));
            if let Some(e) = state.execution(*execution) {
                keys.push(Key::Task(e.task_id));
            }
            if let Some(t) = for_task {
                keys.push(Key::Task(*t));
            }
            keys.push(Key::HeldAreaLeases);
            keys.push(Key::NextAreaLeaseId);
        }
        Change::ReleaseAreaLeases { execution, .. } => {
            keys.push(Key::Execution(*execution));
            keys.push(Key::AreaLeasesOf(*execution));
        }
        // A lease that ran out is among the held ones until it is recorded.
        Change::ExpireAreaLease { .. } => keys.push(Key::HeldAreaLeases),
        Change::ReserveAreasOnNewest { execution, .. } => {
            keys.push(Key::Execution(*execution));
            if let Some(e) = state.execution(*execution) {
                keys.push(Key::Task(e.task_id));
            }
            keys.push(Key::NextTaskId);
            if state.knows(&Key::NextTaskId) && state.next_task_id().0 > 1 {
                keys.push(Key::Task(TaskId(state.next_task_id().0 - 1)));
            }
            keys.push(Key::HeldAreaLeases);
            keys.push(Key::NextAreaLeaseId);
        }
        Change::FinishExecution { id, state: end, .. } => {
            keys.push(Key::AreaLeasesOf(*id));
            // A success ends the reservations made for its task, whoever holds them.
            if *end == ExecutionState::Succeeded {
                keys.push(Key::HeldAreaLeases);
            }
        }
        Change::LoseExpired { id } => keys.push(Key::AreaLeasesOf(*id)),
        _ => {}
    }
}

impl Decision<'_> {
    fn area_event(&mut self, execution: ExecutionId, kind: EventKind) {
        self.execution_event(execution, kind);
    }

    /// Records as expired every held lease whose time ran out (they no longer hold anything).
    fn expire_overdue(&mut self) {
        let overdue: Vec<(ExecutionId, AreaLeaseId, AreaPath)> = self
            .state
            .held_area_leases()
            .into_iter()
            .filter(|l| !l.live(self.now))
            .map(|l| (l.execution, l.id, l.path.clone()))
            .collect();
        for (execution, lease, path) in overdue {
            self.area_event(
                execution,
                EventKind::ExecutionAreaLeaseExpired { lease, path },
            );
        }
    }

    pub(crate) fn take_area_leases(
        &mut self,
        execution: ExecutionId,
        for_task: Option<TaskId>,
        paths: &[AreaPath],
        ttl: Duration,
    ) -> Result<(), Refusal> {
        let e = self.active_execution(execution, "an area lease")?;
        let (holder_task, agent) = (e.task_id, e.agent.clone());
        let task = for_task.unwrap_or(holder_task);
        if task != holder_task {
            let t = self.task(task)?;
            if t.parent != Some(holder_task) {
                return refused(format!(
                    "task #{task} is not a sub-task of task #{holder_task}: execution \
                     #{execution} leases areas for its own task or for its sub-tasks"
                ));
            }
            if t.state.is_terminal() {
                return refused(format!(
                    "task #{task} is {}, so there is no work to lease an area for",
                    t.state
                ));
            }
        }
        if paths.is_empty() || paths.len() > limits::PATHS_PER_TAKE {
            return refused(format!(
                "a lease names 1 to {} paths, not {}",
                limits::PATHS_PER_TAKE,
                paths.len()
            ));
        }
        if ttl.0 < limits::MIN_TTL_MS || ttl.0 > limits::MAX_TTL_MS {
            return refused(format!(
                "an area lease's time to live is at least {} and at most {}, not {ttl}",
                Duration(limits::MIN_TTL_MS),
                Duration(limits::MAX_TTL_MS)
            ));
        }
        let mut wanted: Vec<&AreaPath> = Vec::new();
        for p in paths {
            if !wanted.contains(&p) {
                wanted.push(p);
            }
        }
        let now = self.now;
        let held = self.state.held_area_leases();
        let reservation = task != holder_task;
        for p in &wanted {
            let conflict = held.iter().find(|l| {
                l.live(now)
                    && l.execution != execution
                    && l.task != task
                    && l.path.overlaps(p)
                    // A reservation waits for the work under way; it never outranks another.
                    && (!reservation || l.is_reservation())
            });
            if let Some(l) = conflict {
                let what = if l.is_reservation() {
                    format!("reserved for task #{} by", l.task)
                } else {
                    "leased to".to_string()
                };
                return refused(format!(
                    "the area {p} overlaps {} {what} {} until {}; wait until it is released or \
                     expires, or lease another area",
                    l.path,
                    l.holder(),
                    l.expires_at
                ));
            }
        }
        // The same path for the same task again renews it: the old lease ends, a new one starts.
        let renewed: Vec<(AreaLeaseId, AreaPath)> = held
            .iter()
            .filter(|l| l.execution == execution && l.task == task && wanted.contains(&&l.path))
            .filter(|l| l.live(now))
            .map(|l| (l.id, l.path.clone()))
            .collect();
        let still_held = held
            .iter()
            .filter(|l| l.execution == execution && l.live(now))
            .count();
        let after = still_held - renewed.len() + wanted.len();
        if after > limits::HELD_PER_EXECUTION {
            return refused(format!(
                "execution #{execution} would hold {after} area leases, more than the {} one \
                 execution may hold; release some first",
                limits::HELD_PER_EXECUTION
            ));
        }
        self.expire_overdue();
        for (lease, path) in renewed {
            let reason = "taken again".to_string();
            self.area_event(
                execution,
                EventKind::ExecutionAreaLeaseReleased {
                    lease,
                    path,
                    reason,
                },
            );
        }
        let mut id = self.state.next_area_lease_id();
        for p in wanted {
            let lease = AreaLease {
                id,
                path: p.clone(),
                execution,
                holder_task,
                agent: agent.clone(),
                task,
                taken_at: now,
                expires_at: now.plus(ttl),
                state: AreaLeaseState::Held,
                ended_at: None,
                end_reason: None,
            };
            self.area_event(execution, EventKind::ExecutionAreaLeaseTaken { lease });
            id = AreaLeaseId(id.0 + 1);
        }
        Ok(())
    }

    /// [`Change::ReserveAreasOnNewest`]: reserves `paths` for the task created last, which must
    /// be a sub-task of the execution's task.
    pub(crate) fn reserve_areas_on_newest(
        &mut self,
        execution: ExecutionId,
        paths: &[AreaPath],
        ttl: Duration,
    ) -> Result<(), Refusal> {
        let holder_task = self.active_execution(execution, "an area lease")?.task_id;
        let next = self.state.next_task_id();
        let newest = TaskId(next.0 - 1);
        let is_sub_task = next.0 > 1
            && self
                .state
                .task(newest)
                .is_some_and(|t| t.parent == Some(holder_task));
        if !is_sub_task {
            return refused(format!(
                "no sub-task of task #{holder_task} was just created to reserve an area for; \
                 reserve areas with the sub-task's creation (`ctl subtask create --area`)"
            ));
        }
        self.take_area_leases(execution, Some(newest), paths, ttl)
    }

    pub(crate) fn release_area_leases(
        &mut self,
        execution: ExecutionId,
        paths: &[AreaPath],
    ) -> Result<(), Refusal> {
        self.execution(execution)?;
        let mine: Vec<&AreaLease> = self
            .state
            .held_area_leases()
            .into_iter()
            .filter(|l| l.execution == execution)
            .collect();
        let mut ended = Vec::new();
        if paths.is_empty() {
            ended.extend(mine.iter().map(|l| (l.id, l.path.clone())));
        } else {
            for p in paths {
                let matching: Vec<&&AreaLease> = mine.iter().filter(|l| &l.path == p).collect();
                if matching.is_empty() {
                    let held: Vec<String> = mine.iter().map(|l| l.path.to_string()).collect();
                    return refused(format!(
                        "execution #{execution} holds no area lease on {p}; it holds {}",
                        if held.is_empty() {
                            "none".to_string()
                        } else {
                            held.join(", ")
                        }
                    ));
                }
                for l in matching {
                    if !ended.iter().any(|(id, _)| *id == l.id) {
                        ended.push((l.id, l.path.clone()));
                    }
                }
            }
        }
        for (lease, path) in ended {
            let reason = format!("released by {}", self.actor);
            self.area_event(
                execution,
                EventKind::ExecutionAreaLeaseReleased {
                    lease,
                    path,
                    reason,
                },
            );
        }
        Ok(())
    }

    pub(crate) fn expire_area_lease(&mut self, id: AreaLeaseId) -> Result<(), Refusal> {
        // Only held leases are loaded, so an ended one reads like one never taken.
        let Some(l) = self
            .state
            .area_lease(id)
            .filter(|l| l.state == AreaLeaseState::Held)
        else {
            return refused(format!(
                "area lease L{id} is not held: it ended already, or was never taken"
            ));
        };
        if l.live(self.now) {
            return refused(format!(
                "area lease L{id} holds until {}; it has not expired",
                l.expires_at
            ));
        }
        let (execution, path) = (l.execution, l.path.clone());
        self.area_event(
            execution,
            EventKind::ExecutionAreaLeaseExpired { lease: id, path },
        );
        Ok(())
    }

    /// After an execution's finish: the leases it held for its own task die with it; its
    /// reservations for sub-tasks stand until they run out. When it `succeeded`, the
    /// reservations made for its task end too.
    pub(crate) fn release_on_end(&mut self, execution: ExecutionId, how: &str, succeeded: bool) {
        let task = self.state.execution(execution).map(|e| e.task_id);
        let ending: Vec<(ExecutionId, AreaLeaseId, AreaPath, String)> = self
            .state
            .held_area_leases()
            .into_iter()
            .filter_map(|l| {
                let reason = if l.execution == execution && !l.is_reservation() {
                    format!("its execution ended as {how}")
                } else if succeeded && Some(l.task) == task && l.is_reservation() {
                    format!("task #{}'s execution #{execution} succeeded", l.task)
                } else {
                    return None;
                };
                Some((l.execution, l.id, l.path.clone(), reason))
            })
            .collect();
        for (holder, lease, path, reason) in ending {
            self.area_event(
                holder,
                EventKind::ExecutionAreaLeaseReleased {
                    lease,
                    path,
                    reason,
                },
            );
        }
    }
}

/// Folds an area lease event into the state; false for every other event.
pub(crate) fn evolve(state: &mut State, entry: &Entry) -> bool {
    match &entry.kind {
        EventKind::ExecutionAreaLeaseTaken { lease } => state.put_area_lease(lease.clone()),
        EventKind::ExecutionAreaLeaseReleased { lease, reason, .. } => {
            if let Some(l) = state.area_lease_mut(*lease) {
                l.state = AreaLeaseState::Released;
                l.ended_at = Some(entry.at);
                l.end_reason = Some(reason.clone());
            }
        }
        EventKind::ExecutionAreaLeaseExpired { lease, .. } => {
            if let Some(l) = state.area_lease_mut(*lease) {
                l.state = AreaLeaseState::Expired;
                l.ended_at = Some(entry.at);
                l.end_reason = Some("its time ran out".into());
            }
        }
        _ => return false,
    }
    true
}
