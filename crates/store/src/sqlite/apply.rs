//! Applying a batch on SQLite: load what each change needs, let the tracker's rules decide,
//! append the events, and write the rows the evolved state changed.
//!
//! No rule lives here. For every change the batch loads the keys [`tracker::wants`] names that
//! its [`tracker::State`] does not know yet, asks [`tracker::decide`], appends each event at
//! the entity's next version and folds it in with [`tracker::evolve`]. Rows are written once,
//! at the end, from the evolved state: a batch that records an execution's progress and end
//! changes the same row five or six times, and every UPDATE costs index maintenance and log
//! pages. Returning an error leaves the transaction to be rolled back by the caller, so a
//! refused change never leaves half a batch behind.

use std::collections::HashMap;

use domain::{EntityKind, Event, EventKind, Execution, ExecutionId, Task, TaskId, Timestamp};
use rusqlite::Connection;
use tracker::{Command, Key, MergeStatus, MergeStep, State};

use super::cache::RowCache;
use super::rows::{self, Fail};
use super::{steps, usage};
use crate::Change;

/// The row the cache holds, else the database's. Debug builds read the database at every hit
/// as well and panic when the two differ, so that every test checks the cache.
fn cached_or_read<T: Clone + PartialEq + std::fmt::Debug>(
    cached: Option<&T>,
    read: impl FnOnce() -> Result<Option<T>, Fail>,
) -> Result<Option<T>, Fail> {
    let Some(cached) = cached else {
        return read();
    };
    #[cfg(debug_assertions)]
    assert_eq!(
        read()?.as_ref(),
        Some(cached),
        "a cached row is not the database's"
    );
    #[cfg(not(debug_assertions))]
    let _ = read;
    Ok(Some(cached.clone()))
}

/// The state of one batch while its changes are applied.
pub(crate) struct Batch<'c> {
    conn: &'c Connection,
    /// The rows this connection last committed: read instead of the database when there.
    cache: &'c RowCache,
    actor: &'c str,
    now: Timestamp,
    state: State,
    /// Every task and execution as loaded from the database, to write back only what changed
    /// (and the state column, with the indexes on it, only when it changed).
    stored_tasks: HashMap<TaskId, Task>,
    stored_executions: HashMap<ExecutionId, Execution>,
    /// Executions the batch created, with the index of the change that did.
    created_executions: HashMap<ExecutionId, usize>,
    /// The events that write tables beside the task and execution rows, in log order.
    side: Vec<tracker::Event>,
    pub(crate) events: Vec<Event>,
    /// The events decided and not yet appended, with the index of the change that made each.
    pending: Vec<(usize, rows::NewEvent)>,
    /// The tasks and executions the batch touched, in the order first touched.
    tasks: Vec<TaskId>,
    executions: Vec<ExecutionId>,
    /// The approvals the batch requested or decided.
    approvals: Vec<domain::ApprovalId>,
    /// The workflow runs the batch started or moved on.
    workflows: Vec<domain::WorkflowId>,
    /// The messages the batch sent or changed.
    messages: Vec<domain::MessageId>,
    /// The area leases the batch took or ended.
    area_leases: Vec<domain::AreaLeaseId>,
}

impl<'c> Batch<'c> {
    pub(crate) fn new(
        conn: &'c Connection,
        cache: &'c RowCache,
        actor: &'c str,
        now: Timestamp,
    ) -> Batch<'c> {
        Batch {
            conn,
            cache,
            actor,
            now,
            state: State::partial(),
            stored_tasks: HashMap::new(),
            stored_executions: HashMap::new(),
            created_executions: HashMap::new(),
            side: Vec::new(),
            events: Vec::new(),
            pending: Vec::new(),
            tasks: Vec::new(),
            executions: Vec::new(),
            approvals: Vec::new(),
            workflows: Vec::new(),
            messages: Vec::new(),
            area_leases: Vec::new(),
        }
    }

    /// Decides one change against the state the batch has reached and records its events.
    pub(crate) fn apply(&mut self, index: usize, change: &Change) -> Result<(), Fail> {
        loop {
            let missing: Vec<Key> = tracker::wants(&self.state, change)
                .into_iter()
                .filter(|k| !self.state.knows(k))
                .collect();
            if missing.is_empty() {
                break;
            }
            for key in missing {
                self.load(key)?;
            }
        }
        let command = Command {
            actor: self.actor,
            now: self.now,
            change,
        };
        let events = tracker::decide(&self.state, &command)?;
        for event in events {
            let entry = match &event {
                tracker::Event::Logged(entry) => entry,
                tracker::Event::KeyUsed(_) => {
                    self.side.push(event.clone());
                    tracker::evolve(&mut self.state, &event);
                    continue;
                }
            };
            let before = match self.state.version_before(entry) {
                Some(v) => v,
                None => {
                    let v = match self.cache.version(entry.entity, entry.id) {
                        Some(v) => {
                            #[cfg(debug_assertions)]
                            {
                                let stored =
                                    rows::next_entity_seq(self.conn, entry.entity, entry.id)? - 1;
                                assert_eq!(
                                    v, stored,
                                    "the cached version of {:?} {} is not the database's",
                                    entry.entity, entry.id
                                );
                            }
                            v
                        }
                        None => rows::next_entity_seq(self.conn, entry.entity, entry.id)? - 1,
                    };
                    self.state.load_version(entry.entity, entry.id, v);
                    v
                }
            };
            if writes_side_table(&entry.kind) {
                self.side.push(event.clone());
            }
            if let EventKind::ExecutionCreated { execution } = &entry.kind {
                self.created_executions.insert(execution.id, index);
            }
            if let EventKind::TaskApprovalRequested { approval, .. }
            | EventKind::TaskApprovalDecided { approval, .. } = &entry.kind
                && !self.approvals.contains(approval)
            {
                self.approvals.push(*approval);
            }
            if let EventKind::TaskWorkflowStarted { workflow, .. }
            | EventKind::TaskWorkflowStepped { workflow, .. }
            | EventKind::TaskWorkflowBegun { workflow, .. } = &entry.kind
                && !self.workflows.contains(workflow)
            {
                self.workflows.push(*workflow);
            }
            if let EventKind::ExecutionAreaLeaseTaken {
                lease: domain::AreaLease { id, .. },
            }
            | EventKind::ExecutionAreaLeaseReleased { lease: id, .. }
            | EventKind::ExecutionAreaLeaseExpired { lease: id, .. } = &entry.kind
                && !self.area_leases.contains(id)
            {
                self.area_leases.push(*id);
            }
            self.touch(entry.entity, entry.id);
            tracker::evolve(&mut self.state, &event);
            let tracker::Event::Logged(entry) = event else {
                unreachable!("handled above");
            };
            // Appended with the batch's others before its rows are written (`write_back`).
            self.pending.push((
                index,
                rows::NewEvent {
                    at: entry.at,
                    entity: entry.entity,
                    entity_id: entry.id,
                    entity_seq: before + 1,
                    kind: entry.kind,
                },
            ));
        }
        Ok(())
    }

    /// Appends the batch's events to the log, in the order they were decided. The unique
    /// index on (entity, entity_id, entity_seq) refuses an event at a version another writer
    /// took: the expected version is checked by the database.
    fn append_events(&mut self) -> Result<(), (Fail, Option<usize>)> {
        let (indexes, events): (Vec<usize>, Vec<rows::NewEvent>) =
            std::mem::take(&mut self.pending).into_iter().unzip();
        let appended = rows::append_events(self.conn, self.actor, events)
            .map_err(|(e, at)| (e, indexes.get(at).copied()))?;
        self.events.extend(appended);
        Ok(())
    }

    fn touch(&mut self, entity: EntityKind, id: i64) {
        match entity {
            EntityKind::Task if !self.tasks.contains(&TaskId(id)) => self.tasks.push(TaskId(id)),
            EntityKind::Execution if !self.executions.contains(&ExecutionId(id)) => {
                self.executions.push(ExecutionId(id));
            }
            EntityKind::Message if !self.messages.contains(&domain::MessageId(id)) => {
                self.messages.push(domain::MessageId(id));
            }
            _ => {}
        }
    }

    /// Reads one key from the database into the state.
    fn load(&mut self, key: Key) -> Result<(), Fail> {
        match key {
            Key::Task(id) => {
                let task = cached_or_read(self.cache.task(id), || rows::load_task(self.conn, id))?;
                if let Some(task) = &task {
                    self.stored_tasks.insert(id, task.clone());
                }
                self.state.load_task(id, task);
            }
            Key::Execution(id) => self.load_execution(id)?,
            Key::ActiveOf(task) => {
                if let Some(id) = rows::active_execution_of(self.conn, task)?
                    && !self.state.knows(&Key::Execution(id))
                {
                    self.load_execution(id)?;
                }
                self.state.load_active_of(task);
            }
            Key::CallKey { task, op, key } => {
                let made = steps::call_key(self.conn, task, &op, &key)?.map(|k| k.result);
                self.state.load_call_key(task, &op, &key, made);
            }
            Key::Merge(child) => {
                let merge = steps::unfinished_merge(self.conn, child)?.map(merge_step);
                self.state.load_merge(child, merge);
            }
            Key::MergesInto(parent) => {
                for merge in steps::unfinished_merges(self.conn, Some(parent))? {
                    let child = merge.child;
                    self.state.load_merge(child, Some(merge_step(merge)));
                }
                self.state.load_merges_into(parent);
            }
            Key::Land(task) => {
                let land = steps::land(self.conn, task)?.map(land_step);
                self.state.load_land(task, land);
            }
            Key::Approval(id) => {
                let approval = steps::approval(self.conn, id)?;
                self.state.load_approval(id, approval);
            }
            Key::PendingApprovalOf(task) => {
                if let Some(a) = steps::pending_approval_of(self.conn, task)? {
                    self.state.load_approval(a.id, Some(a));
                }
                self.state.load_pending_approval_of(task);
            }
            Key::NextApprovalId => {
                let next = steps::next_approval_id(self.conn)?;
                self.state.load_next_approval_id(domain::ApprovalId(next));
            }
            Key::Workflow(id) => {
                let run = super::workflows::run(self.conn, id)?;
                self.state.load_workflow(id, run);
            }
            Key::WorkflowsOf(task) => {
                let filter = crate::WorkflowFilter {
                    task: Some(task),
                    running: false,
                };
                for run in super::workflows::runs(self.conn, &filter)? {
                    self.state.load_workflow(run.id, Some(run));
                }
                self.state.load_workflows_of(task);
            }
            Key::NextWorkflowId => {
                let next = super::workflows::next_id(self.conn)?;
                self.state.load_next_workflow_id(domain::WorkflowId(next));
            }
            Key::Message(id) => {
                let message = super::messages::message(self.conn, id)?;
                self.state.load_message(id, message);
            }
            Key::NextMessageId => {
                let next = super::messages::next_id(self.conn)?;
                self.state.load_next_message_id(domain::MessageId(next));
            }
            Key::OpenAlert(fp) => {
                if let Some(m) = super::messages::open_alert(self.conn, &fp)? {
                    self.state.load_message(m.id, Some(m));
                }
                self.state.load_open_alert(&fp);
            }
            Key::SentBy(e) => {
                let sent = super::messages::sent_by(self.conn, e)?;
                self.state.load_sent_by(e, sent);
            }
            Key::ReadBy { id, reader } => {
                let read = super::messages::read_by(self.conn, id, &reader)?;
                self.state.load_read_by(id, &reader, read);
            }
            Key::HeldAreaLeases => {
                for lease in super::area_leases::held(self.conn)? {
                    self.state.load_area_lease(lease);
                }
                self.state.load_held_area_leases();
            }
            Key::AreaLeasesOf(e) => {
                for lease in super::area_leases::held_by(self.conn, e)? {
                    self.state.load_area_lease(lease);
                }
                self.state.load_area_leases_of(e);
            }
            Key::NextAreaLeaseId => {
                let next = super::area_leases::next_id(self.conn)?;
                self.state
                    .load_next_area_lease_id(domain::AreaLeaseId(next));
            }
            Key::NextTaskId => {
                let next = rows::next_id(self.conn, rows::IdTable::Tasks)?;
                self.state.load_next_task_id(TaskId(next));
            }
            Key::NextExecutionId => {
                let next = rows::next_id(self.conn, rows::IdTable::Executions)?;
                self.state.load_next_execution_id(ExecutionId(next));
            }
        }
        Ok(())
    }

    fn load_execution(&mut self, id: ExecutionId) -> Result<(), Fail> {
        let execution = cached_or_read(self.cache.execution(id), || {
            rows::load_execution(self.conn, id)
        })?;
        if let Some(e) = &execution {
            self.stored_executions.insert(id, e.clone());
        }
        self.state.load_execution(id, execution);
        Ok(())
    }

    /// Writes every row the batch changed, and returns the change that created an execution
    /// the unique index refused, if one did.
    pub(crate) fn write_back(&mut self) -> Result<(), (Fail, Option<usize>)> {
        self.append_events()?;
        // In id order, so that every batch takes pages in a predictable order, and parents
        // (older, so lower ids) are written before their sub-tasks.
        let mut tasks = self.tasks.clone();
        tasks.sort();
        for id in tasks {
            let Some(task) = self.state.task(id) else {
                continue;
            };
            match self.stored_tasks.get(&id) {
                None => {
                    rows::insert_task(self.conn, task).map_err(|e| (e, None))?;
                }
                Some(old) if old == task => {}
                Some(old) => {
                    let state = (old.state != task.state).then_some(task.state);
                    rows::save_task(self.conn, task, state).map_err(|e| (e, None))?;
                }
            }
            let old_deps = self
                .stored_tasks
                .get(&id)
                .map(|t| t.blocked_by.as_slice())
                .unwrap_or_default();
            for dep in &task.blocked_by {
                if !old_deps.contains(dep) {
                    rows::insert_dependency(self.conn, id, *dep).map_err(|e| (e, None))?;
                }
            }
            for dep in old_deps {
                if !task.blocked_by.contains(dep) {
                    rows::delete_dependency(self.conn, id, *dep).map_err(|e| (e, None))?;
                }
            }
        }
        let mut executions = self.executions.clone();
        executions.sort();
        for id in executions {
            let Some(e) = self.state.execution(id) else {
                continue;
            };
            match self.stored_executions.get(&id) {
                None => {
                    if let Err(err) = rows::insert_execution(self.conn, e) {
                        let index = self.created_executions.get(&id).copied();
                        // The partial unique index is the last line of defence against a
                        // second claim.
                        if is_unique_violation(&err)
                            && let Some(active) = rows::active_execution_of(self.conn, e.task_id)
                                .map_err(|f| (f, index))?
                        {
                            return Err((
                                Fail::AlreadyActive {
                                    task: e.task_id,
                                    execution: active,
                                },
                                index,
                            ));
                        }
                        return Err((err.into(), index));
                    }
                }
                Some(old) if old == e => {}
                Some(old) => {
                    let state = (old.state != e.state).then_some(e.state);
                    rows::save_execution(self.conn, e, state).map_err(|f| (f, None))?;
                }
            }
        }
        for side in std::mem::take(&mut self.side) {
            self.write_side(side).map_err(|f| (f, None))?;
        }
        // After the tasks and executions they point at.
        self.approvals.sort();
        for id in &self.approvals {
            if let Some(a) = self.state.approval(*id) {
                steps::save_approval(self.conn, a).map_err(|f| (f, None))?;
            }
        }
        // Dead letters and acknowledgements first, so that a new alert never meets the open one
        // it replaces in the unique index of open alerts.
        let mut messages: Vec<&domain::Message> = self
            .messages
            .iter()
            .filter_map(|id| self.state.message(*id))
            .collect();
        messages.sort_by_key(|m| (m.state.is_open(), m.id));
        for m in messages {
            super::messages::save(self.conn, m).map_err(|f| (f, None))?;
        }
        // After the executions and tasks they point at.
        self.area_leases.sort();
        for id in &self.area_leases {
            if let Some(l) = self.state.area_lease(*id) {
                super::area_leases::save(self.conn, l).map_err(|f| (f, None))?;
            }
        }
        self.workflows.sort();
        for id in &self.workflows {
            if let Some(run) = self.state.workflow(*id) {
                super::workflows::save(self.conn, run).map_err(|f| (f, None))?;
            }
        }
        Ok(())
    }

    fn write_side(&self, side: tracker::Event) -> Result<(), Fail> {
        let entry = match side {
            tracker::Event::KeyUsed(k) => {
                return steps::insert_call_key(self.conn, k.task, k.op, &k.key, k.result, k.at);
            }
            tracker::Event::Logged(entry) => entry,
        };
        let (at, id) = (entry.at, entry.id);
        match entry.kind {
            EventKind::TaskMergePending { child } => {
                steps::insert_merge(self.conn, child, TaskId(id), at)
            }
            EventKind::TaskMerged { child, .. } => steps::finish_merge(self.conn, child, None, at),
            EventKind::TaskMergeFailed { child, reason } => {
                steps::finish_merge(self.conn, child, Some(&reason), at)
            }
            EventKind::TaskLandStarted { .. } | EventKind::TaskLanded { .. } => {
                let task = TaskId(id);
                let land = self.state.land(task).map(|step| crate::Land {
                    task,
                    landed: step.status == tracker::LandStatus::Landed,
                    strategy: step.strategy,
                    base: step.base.clone(),
                    old: step.old.clone(),
                    new: step.new.clone(),
                    root: step.root,
                });
                steps::save_land(self.conn, task, land.as_ref(), at)
            }
            EventKind::TaskLandAbandoned { .. } => {
                steps::save_land(self.conn, TaskId(id), None, at)
            }
            EventKind::MessageReaderAcked { reader, by } => {
                super::messages::insert_read(self.conn, domain::MessageId(id), &reader, &by, at)
            }
            EventKind::ExecutionModelUsage {
                model,
                input_tokens,
                output_tokens,
                cached_tokens,
                cost_micros,
            } => {
                let usage = usage::NewUsage {
                    execution: ExecutionId(id),
                    model,
                    tokens: domain::Tokens {
                        input: input_tokens,
                        output: output_tokens,
                        cached: cached_tokens,
                    },
                    cost_micros,
                };
                usage::insert(self.conn, &usage, at)
            }
            EventKind::ProviderPaused {
                provider,
                until,
                reason,
            } => {
                self.conn
                    .prepare_cached(
                        "INSERT INTO providers (name, paused_until, pause_reason, paused_by,
                             updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (name) DO UPDATE SET paused_until = ?2, pause_reason = ?3,
                             paused_by = ?4, updated_at = ?5",
                    )?
                    .execute(rusqlite::params![provider, until.0, reason, id, at.0])?;
                Ok(())
            }
            EventKind::ProviderResumed { provider } => {
                self.conn
                    .prepare_cached(
                        "UPDATE providers SET paused_until = NULL, pause_reason = NULL,
                             paused_by = NULL, updated_at = ?2
                         WHERE name = ?1",
                    )?
                    .execute(rusqlite::params![provider, at.0])?;
                Ok(())
            }
            EventKind::ProviderThrottled { provider, limit } => {
                self.conn
                    .prepare_cached(
                        "INSERT INTO providers (name, concurrency, updated_at) VALUES (?1, ?2, ?3)
                         ON CONFLICT (name) DO UPDATE SET concurrency = ?2, updated_at = ?3",
                    )?
                    .execute(rusqlite::params![provider, limit, at.0])?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// What the batch did: its events, and the final state of every task and execution it
    /// touched, in the order first touched.
    /// The rows the batch loaded, as they were: what the cache may keep of those the batch
    /// did not change, once it committed.
    pub(crate) fn take_loaded(&mut self) -> (Vec<Task>, Vec<Execution>) {
        (
            std::mem::take(&mut self.stored_tasks)
                .into_values()
                .collect(),
            std::mem::take(&mut self.stored_executions)
                .into_values()
                .collect(),
        )
    }

    pub(crate) fn applied(self) -> crate::Applied {
        let state = &self.state;
        crate::Applied {
            tasks: self
                .tasks
                .iter()
                .filter_map(|&id| state.task(id).cloned())
                .collect(),
            executions: self
                .executions
                .iter()
                .filter_map(|&id| state.execution(id).cloned())
                .collect(),
            approvals: self
                .approvals
                .iter()
                .filter_map(|&id| state.approval(id).cloned())
                .collect(),
            messages: self
                .messages
                .iter()
                .filter_map(|&id| state.message(id).cloned())
                .collect(),
            area_leases: self
                .area_leases
                .iter()
                .filter_map(|&id| state.area_lease(id).cloned())
                .collect(),
            events: self.events,
        }
    }
}

/// True for the events whose projection is a table of its own rather than a task or an
/// execution row.
fn writes_side_table(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::TaskMergePending { .. }
            | EventKind::TaskMerged { .. }
            | EventKind::TaskMergeFailed { .. }
            | EventKind::TaskLandStarted { .. }
            | EventKind::TaskLanded { .. }
            | EventKind::TaskLandAbandoned { .. }
            | EventKind::ExecutionModelUsage { .. }
            | EventKind::ProviderPaused { .. }
            | EventKind::ProviderResumed { .. }
            | EventKind::ProviderThrottled { .. }
            | EventKind::MessageReaderAcked { .. }
    )
}

fn land_step(land: crate::Land) -> tracker::LandStep {
    tracker::LandStep {
        status: if land.landed {
            tracker::LandStatus::Landed
        } else {
            tracker::LandStatus::Started
        },
        strategy: land.strategy,
        base: land.base,
        old: land.old,
        new: land.new,
        root: land.root,
    }
}

fn merge_step(merge: crate::Merge) -> MergeStep {
    MergeStep {
        parent: merge.parent,
        status: match merge.failed {
            Some(why) => MergeStatus::Failed(why),
            None => MergeStatus::Pending,
        },
    }
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}
