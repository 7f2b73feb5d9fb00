//! The rules of each [`Change`], applied to the projections inside one write transaction.
//!
//! Every change follows the same shape: load the rows it concerns, check the rule against what
//! is there now (including the effect of earlier changes in the same batch), write the new
//! rows, append the events. Returning an error leaves the transaction to be rolled back by the
//! caller, so a refused change never leaves half a batch behind.

use std::collections::{HashMap, VecDeque};

use domain::{
    EntityKind, Event, EventKind, Execution, ExecutionId, ExecutionKind, ExecutionState, NewTask,
    Task, TaskId, TaskState, Timestamp,
};
use rusqlite::Connection;

use super::rows::{self, Fail, refused};
use super::{steps, usage};
use crate::{Change, MergeResult, TaskEdit};

/// The state of one batch while its changes are applied.
///
/// Task and execution rows are written back once per batch rather than once per change: a
/// batch that records an execution's progress and end changes the same row five or six times,
/// and every UPDATE costs index maintenance and log pages. Changed rows wait in `dirty_*` (read
/// through [`Batch::task`] and [`Batch::execution`]) and go to the database in
/// [`Batch::write_back`], which runs before any query that reads those tables directly and at
/// the end of the batch. Events are appended at once, in change order.
pub(crate) struct Batch<'c> {
    conn: &'c Connection,
    actor: &'c str,
    now: Timestamp,
    pub(crate) events: Vec<Event>,
    pub(crate) tasks: Vec<TaskId>,
    pub(crate) executions: Vec<ExecutionId>,
    dirty_tasks: HashMap<TaskId, Task>,
    dirty_executions: HashMap<ExecutionId, Execution>,
    /// The state each loaded row has in the database, so that write-back rewrites the state
    /// column (and the indexes on it) only when it changed.
    stored_task_states: HashMap<TaskId, TaskState>,
    stored_execution_states: HashMap<ExecutionId, ExecutionState>,
    /// The last `entity_seq` used per entity in this batch.
    entity_seqs: HashMap<(EntityKind, i64), u64>,
    /// Each row as this batch last wrote it to the database (inserted or written back), so
    /// that the batch's answer need not read back what it has just written.
    written_tasks: HashMap<TaskId, Task>,
    written_executions: HashMap<ExecutionId, Execution>,
}

impl<'c> Batch<'c> {
    pub(crate) fn new(conn: &'c Connection, actor: &'c str, now: Timestamp) -> Batch<'c> {
        Batch {
            conn,
            actor,
            now,
            events: Vec::new(),
            tasks: Vec::new(),
            executions: Vec::new(),
            dirty_tasks: HashMap::new(),
            dirty_executions: HashMap::new(),
            stored_task_states: HashMap::new(),
            stored_execution_states: HashMap::new(),
            entity_seqs: HashMap::new(),
            written_tasks: HashMap::new(),
            written_executions: HashMap::new(),
        }
    }

    /// The task row as the database now holds it, from what this batch wrote where it can.
    pub(crate) fn written_task(&self, id: TaskId) -> Result<Option<Task>, Fail> {
        match self.written_tasks.get(&id) {
            Some(task) => {
                debug_assert_eq!(
                    Some(task),
                    rows::load_task(self.conn, id)?.as_ref(),
                    "the batch's copy of task #{id} differs from its row"
                );
                Ok(Some(task.clone()))
            }
            None => rows::load_task(self.conn, id),
        }
    }

    /// The execution row as the database now holds it, from what this batch wrote where it can.
    pub(crate) fn written_execution(&self, id: ExecutionId) -> Result<Option<Execution>, Fail> {
        match self.written_executions.get(&id) {
            Some(e) => {
                debug_assert_eq!(
                    Some(e),
                    rows::load_execution(self.conn, id)?.as_ref(),
                    "the batch's copy of execution #{id} differs from its row"
                );
                Ok(Some(e.clone()))
            }
            None => rows::load_execution(self.conn, id),
        }
    }

    /// Writes every changed task and execution row to the database.
    pub(crate) fn write_back(&mut self) -> Result<(), Fail> {
        // In id order, so that every batch takes row locks and pages in a predictable order.
        let mut tasks: Vec<Task> = self.dirty_tasks.drain().map(|(_, t)| t).collect();
        tasks.sort_by_key(|t| t.id);
        for task in tasks {
            if self.stored_task_states.get(&task.id) != Some(&task.state) {
                rows::save_task_state(self.conn, task.id, task.state)?;
                self.stored_task_states.insert(task.id, task.state);
            }
            rows::save_task(self.conn, &task)?;
            self.written_tasks.insert(task.id, task);
        }
        let mut executions: Vec<Execution> =
            self.dirty_executions.drain().map(|(_, e)| e).collect();
        executions.sort_by_key(|e| e.id);
        for e in executions {
            if self.stored_execution_states.get(&e.id) != Some(&e.state) {
                rows::save_execution_state(self.conn, e.id, e.state)?;
                self.stored_execution_states.insert(e.id, e.state);
            }
            rows::save_execution(self.conn, &e)?;
            self.written_executions.insert(e.id, e);
        }
        Ok(())
    }

    pub(crate) fn apply(&mut self, change: Change) -> Result<(), Fail> {
        match change {
            Change::CreateTask(new) => self.create_task(new).map(|_| ()),
            Change::CreateKeyedTask { new, key } => {
                let Some(parent) = new.parent else {
                    return refused(
                        "a task created under a key must be a sub-task: name its parent",
                    );
                };
                self.check_key_unused(parent, "subtask_create", &key)?;
                let id = self.create_task(new)?;
                steps::insert_call_key(
                    self.conn,
                    parent,
                    "subtask_create",
                    &key,
                    Some(id),
                    self.now,
                )
            }
            Change::KeyedComment { id, text, key } => {
                self.check_key_unused(id, "comment", &key)?;
                self.comment(id, text)?;
                steps::insert_call_key(self.conn, id, "comment", &key, None, self.now)
            }
            Change::FinishMerge { child, outcome } => self.finish_merge(child, outcome),
            Change::EditTask { id, edit } => self.edit_task(id, edit),
            Change::SetTaskState { id, to, reason } => self.set_task_state(id, to, reason),
            Change::SettleTask { id, to, reason } => {
                let state = self.task(id)?.state;
                if state != TaskState::Running {
                    return refused(format!(
                        "task #{id} is {state}, no longer running, so the end of its execution \
                         leaves it as it is"
                    ));
                }
                self.set_task_state(id, to, reason)
            }
            Change::AddDependency { id, blocked_by } => self.add_dependency(id, blocked_by),
            Change::RemoveDependency { id, blocked_by } => self.remove_dependency(id, blocked_by),
            Change::Nudge { id } => self.nudge(id),
            Change::Comment { id, text } => self.comment(id, text),
            Change::ScheduleTask {
                id,
                not_before,
                attempts,
                continuations,
                reason,
            } => {
                let mut task = self.task(id)?;
                task.not_before = not_before;
                task.attempts = attempts;
                task.continuations = continuations;
                let kind = EventKind::TaskScheduled {
                    not_before,
                    attempts,
                    continuations,
                    reason,
                };
                self.save_task(&mut task, vec![kind])
            }
            Change::SetBranch { id, branch } => {
                if branch.trim().is_empty() {
                    return refused("a branch name cannot be empty");
                }
                let mut task = self.task(id)?;
                task.branch = Some(branch.clone());
                self.save_task(&mut task, vec![EventKind::TaskBranchSet { branch }])
            }
            Change::ClaimCompletion { id, summary } => {
                if summary.trim().is_empty() {
                    return refused("a completion claim needs a summary of what was done");
                }
                let mut task = self.task(id)?;
                task.summary = Some(summary.clone());
                self.save_task(
                    &mut task,
                    vec![EventKind::TaskCompletionClaimed { summary }],
                )
            }
            Change::CreateExecution {
                task_id,
                kind,
                agent,
                attempt,
            } => self.create_execution(task_id, kind, agent, attempt),
            Change::SetExecutionState { id, to, reason } => {
                self.set_execution_state(id, to, reason)
            }
            Change::ProcessStarted {
                id,
                pid,
                iteration,
                log_path,
            } => {
                let mut e = self.active_execution(id, "a process start")?;
                if iteration == 0 || iteration < e.iteration {
                    return refused(format!(
                        "execution #{id} is on iteration {}, so a process cannot start iteration \
                         {iteration}: iterations count from 1 and never go back",
                        e.iteration
                    ));
                }
                e.pid = Some(pid);
                e.iteration = iteration;
                if log_path.is_some() {
                    e.log_path = log_path;
                }
                self.save_execution(
                    &e,
                    vec![EventKind::ExecutionProcessStarted { pid, iteration }],
                )
            }
            Change::ProcessExited {
                id,
                iteration,
                exit_code,
                signal,
            } => {
                let mut e = self.active_execution(id, "a process exit")?;
                self.check_iteration(&e, iteration, "exit")?;
                e.exit_code = exit_code;
                // The pid is forgotten as soon as the process is gone: the system may hand the
                // same number to an unrelated process, which recovery must never signal.
                e.pid = None;
                let kind = EventKind::ExecutionProcessExited {
                    iteration,
                    exit_code,
                    signal,
                };
                self.save_execution(&e, vec![kind])
            }
            Change::Validated {
                id,
                iteration,
                score,
                passed,
                results,
            } => {
                let mut e = self.active_execution(id, "a validation")?;
                self.check_iteration(&e, iteration, "validation")?;
                if !(0.0..=1.0).contains(&score) {
                    return refused(format!(
                        "the validation score {score} is out of range: scores go from 0 to 1"
                    ));
                }
                e.score = Some(score);
                let kind = EventKind::ExecutionValidated {
                    iteration,
                    score,
                    passed,
                    results,
                };
                self.save_execution(&e, vec![kind])
            }
            Change::Committed { id, branch, commit } => {
                if branch.trim().is_empty() || commit.trim().is_empty() {
                    return refused("a commit needs both a branch name and a commit id");
                }
                let e = self.active_execution(id, "a commit")?;
                self.save_execution(&e, vec![EventKind::ExecutionCommitted { branch, commit }])
            }
            Change::FinishExecution {
                id,
                state,
                exit_code,
                usage,
                summary,
            } => {
                let mut e = self.execution(id)?;
                if e.state.is_terminal() {
                    return Err(Fail::AlreadyFinished {
                        execution: id,
                        state: e.state,
                    });
                }
                if state.is_active() {
                    return refused(format!(
                        "execution #{id} cannot finish as {state}: that state is not an outcome; \
                         finish with one of {}",
                        terminal_execution_states()
                    ));
                }
                check_execution_transition(&e, state)?;
                let from = e.state;
                e.state = state;
                e.ended_at = Some(self.now);
                // An exit code already recorded by `ProcessExited` is kept when the finish
                // itself has none to report.
                e.exit_code = exit_code.or(e.exit_code);
                e.usage = usage;
                e.summary = summary.clone();
                e.pid = None;
                let events = vec![
                    EventKind::ExecutionStateChanged {
                        from,
                        to: state,
                        reason: None,
                    },
                    EventKind::ExecutionFinished {
                        kind: e.kind,
                        state,
                        usage,
                        summary,
                    },
                ];
                self.save_execution(&e, events)
            }
            Change::RecordModelUsage {
                id,
                model,
                input_tokens,
                output_tokens,
                cached_tokens,
                cost_micros,
            } => {
                let usage = usage::NewUsage {
                    execution: id,
                    model,
                    input_tokens,
                    output_tokens,
                    cached_tokens,
                    cost_micros,
                };
                usage::check(&usage)?;
                self.write_back()?;
                usage::insert(self.conn, &usage, self.now)?;
                self.touch_execution(id);
                let kind = EventKind::ExecutionModelUsage {
                    model: usage.model,
                    input_tokens,
                    output_tokens,
                    cached_tokens,
                    cost_micros,
                };
                self.emit(EntityKind::Execution, id.0, kind)
            }
            Change::RecordModelWaiting {
                id,
                model,
                attempt,
                delay_ms,
                status,
            } => {
                self.execution(id)?;
                self.touch_execution(id);
                let kind = EventKind::ExecutionModelWaiting {
                    model,
                    attempt,
                    delay_ms,
                    status,
                };
                self.emit(EntityKind::Execution, id.0, kind)
            }
            Change::RecordModelFallback {
                id,
                model,
                fallback,
                reason,
            } => {
                self.execution(id)?;
                self.touch_execution(id);
                let kind = EventKind::ExecutionModelFallback {
                    model,
                    fallback,
                    reason,
                };
                self.emit(EntityKind::Execution, id.0, kind)
            }
            Change::PauseProvider {
                id,
                provider,
                until,
                reason,
            } => {
                self.execution(id)?;
                self.touch_execution(id);
                self.conn
                    .prepare_cached(
                        "INSERT INTO providers (name, paused_until, pause_reason, paused_by,
                             updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (name) DO UPDATE SET paused_until = ?2, pause_reason = ?3,
                             paused_by = ?4, updated_at = ?5",
                    )?
                    .execute(rusqlite::params![
                        provider, until.0, reason, id.0, self.now.0
                    ])?;
                let kind = EventKind::ProviderPaused {
                    provider,
                    until,
                    reason,
                };
                self.emit(EntityKind::Execution, id.0, kind)
            }
            Change::ResumeProvider { id, provider } => {
                self.execution(id)?;
                self.touch_execution(id);
                self.conn
                    .prepare_cached(
                        "UPDATE providers SET paused_until = NULL, pause_reason = NULL,
                             paused_by = NULL, updated_at = ?2
                         WHERE name = ?1",
                    )?
                    .execute(rusqlite::params![provider, self.now.0])?;
                self.emit(
                    EntityKind::Execution,
                    id.0,
                    EventKind::ProviderResumed { provider },
                )
            }
            Change::ThrottleProvider {
                id,
                provider,
                limit,
            } => {
                self.execution(id)?;
                self.touch_execution(id);
                self.conn
                    .prepare_cached(
                        "INSERT INTO providers (name, concurrency, updated_at) VALUES (?1, ?2, ?3)
                         ON CONFLICT (name) DO UPDATE SET concurrency = ?2, updated_at = ?3",
                    )?
                    .execute(rusqlite::params![provider, limit, self.now.0])?;
                self.emit(
                    EntityKind::Execution,
                    id.0,
                    EventKind::ProviderThrottled { provider, limit },
                )
            }
        }
    }

    fn touch_task(&mut self, id: TaskId) {
        if !self.tasks.contains(&id) {
            self.tasks.push(id);
        }
    }

    fn touch_execution(&mut self, id: ExecutionId) {
        if !self.executions.contains(&id) {
            self.executions.push(id);
        }
    }

    fn emit(&mut self, entity: EntityKind, id: i64, kind: EventKind) -> Result<(), Fail> {
        let next = match self.entity_seqs.get(&(entity, id)) {
            Some(last) => last + 1,
            None => rows::next_entity_seq(self.conn, entity, id)?,
        };
        let event = rows::append_event(self.conn, self.actor, self.now, entity, id, next, kind)?;
        self.entity_seqs.insert((entity, id), next);
        self.events.push(event);
        Ok(())
    }

    /// The task as this batch has left it so far.
    fn task(&mut self, id: TaskId) -> Result<Task, Fail> {
        if let Some(task) = self.dirty_tasks.get(&id) {
            return Ok(task.clone());
        }
        match rows::load_task(self.conn, id)? {
            Some(task) => {
                self.stored_task_states.entry(id).or_insert(task.state);
                Ok(task)
            }
            None => refused(format!("task #{id} does not exist")),
        }
    }

    /// The execution as this batch has left it so far.
    fn execution(&mut self, id: ExecutionId) -> Result<Execution, Fail> {
        if let Some(e) = self.dirty_executions.get(&id) {
            return Ok(e.clone());
        }
        match rows::load_execution(self.conn, id)? {
            Some(e) => {
                self.stored_execution_states.entry(id).or_insert(e.state);
                Ok(e)
            }
            None => refused(format!("execution #{id} does not exist")),
        }
    }

    /// The execution, which must still be active for `what` to be recorded on it.
    fn active_execution(&mut self, id: ExecutionId, what: &str) -> Result<Execution, Fail> {
        let e = self.execution(id)?;
        if e.state.is_terminal() {
            return refused(format!(
                "execution #{id} already finished as {}, so {what} cannot be recorded on it",
                e.state
            ));
        }
        Ok(e)
    }

    fn check_iteration(&self, e: &Execution, iteration: u32, what: &str) -> Result<(), Fail> {
        if iteration != e.iteration {
            return refused(format!(
                "execution #{} is on iteration {}, but the {what} reported is for iteration \
                 {iteration}",
                e.id, e.iteration
            ));
        }
        Ok(())
    }

    /// Writes the task with `updated_at` moved to now and appends its events.
    fn save_task(&mut self, task: &mut Task, events: Vec<EventKind>) -> Result<(), Fail> {
        task.updated_at = self.now;
        self.dirty_tasks.insert(task.id, task.clone());
        self.touch_task(task.id);
        for kind in events {
            self.emit(EntityKind::Task, task.id.0, kind)?;
        }
        Ok(())
    }

    fn save_execution(&mut self, e: &Execution, events: Vec<EventKind>) -> Result<(), Fail> {
        self.dirty_executions.insert(e.id, e.clone());
        self.touch_execution(e.id);
        for kind in events {
            self.emit(EntityKind::Execution, e.id.0, kind)?;
        }
        Ok(())
    }

    fn check_key_unused(&self, task: TaskId, op: &str, key: &str) -> Result<(), Fail> {
        if key.trim().is_empty() {
            return refused("an idempotency key cannot be empty");
        }
        if steps::call_key(self.conn, task, op, key)?.is_some() {
            return refused(format!(
                "task #{task} already made a {op} call under the key {key:?}; a call under a \
                 used key changes nothing"
            ));
        }
        Ok(())
    }

    fn finish_merge(&mut self, child: TaskId, outcome: MergeResult) -> Result<(), Fail> {
        let Some(merge) = steps::unfinished_merge(self.conn, child)? else {
            return refused(format!(
                "no merge of sub-task #{child} is due: it is not done, or it is merged already"
            ));
        };
        let (failed, kind) = match outcome {
            MergeResult::Merged { commit } => (None, EventKind::TaskMerged { child, commit }),
            MergeResult::Failed { reason } => {
                if reason.trim().is_empty() {
                    return refused("a failed merge needs a reason");
                }
                let failed = Some(reason.clone());
                (failed, EventKind::TaskMergeFailed { child, reason })
            }
        };
        steps::finish_merge(self.conn, child, failed.as_deref(), self.now)?;
        let mut parent = self.task(merge.parent)?;
        let still_failed: Vec<String> = steps::unfinished_merges(self.conn, Some(parent.id))?
            .into_iter()
            .filter_map(|m| m.failed.map(|why| format!("sub-task #{}: {why}", m.child)))
            .collect();
        parent.merge_failed = (!still_failed.is_empty()).then(|| still_failed.join("; "));
        self.save_task(&mut parent, vec![kind])
    }

    fn create_task(&mut self, mut new: NewTask) -> Result<TaskId, Fail> {
        new.check().or_else(refused)?;
        check_agent_name(new.agent.as_deref())?;
        let (root, depth) = match new.parent {
            Some(parent_id) => {
                let Ok(parent) = self.task(parent_id) else {
                    return refused(format!("the parent task #{parent_id} does not exist"));
                };
                if parent.state.is_terminal() {
                    return refused(format!(
                        "the parent task #{parent_id} is {}, so no sub-task can be added under \
                         it",
                        parent.state
                    ));
                }
                (parent.root, parent.depth + 1)
            }
            // A top-level task is its own root; the id is known only after the insert.
            None => (TaskId(0), 0),
        };
        new.blocked_by.sort();
        new.blocked_by.dedup();
        for &dep in &new.blocked_by {
            if self.task(dep).is_err() {
                return refused(format!("task #{dep}, named in blocked_by, does not exist"));
            }
        }
        let mut task = Task::new(TaskId(0), new, root, depth, self.now);
        task.id = rows::insert_task(self.conn, &task)?;
        if task.parent.is_none() {
            task.root = task.id;
            rows::make_own_root(self.conn, task.id)?;
        }
        // A new task has no dependents yet, so its dependencies cannot close a cycle.
        for &dep in &task.blocked_by {
            rows::insert_dependency(self.conn, task.id, dep)?;
        }
        self.touch_task(task.id);
        let id = task.id;
        self.written_tasks.insert(id, task.clone());
        // A new id (ids are never reused) has no events yet: no need to ask for its last one.
        self.entity_seqs.insert((EntityKind::Task, id.0), 0);
        self.emit(EntityKind::Task, id.0, EventKind::TaskCreated { task })?;
        Ok(id)
    }

    fn edit_task(&mut self, id: TaskId, edit: TaskEdit) -> Result<(), Fail> {
        if edit.is_empty() {
            return refused(
                "the edit changes nothing: give a new title, body, labels, priority or agent",
            );
        }
        let mut task = self.task(id)?;
        if let Some(title) = &edit.title {
            task.title.clone_from(title);
        }
        if let Some(body) = &edit.body {
            task.body.clone_from(body);
        }
        if let Some(labels) = &edit.labels {
            task.labels.clone_from(labels);
        }
        if let Some(priority) = edit.priority {
            task.priority = priority;
        }
        if let Some(agent) = &edit.agent {
            check_agent_name(agent.as_deref())?;
            task.agent.clone_from(agent);
        }
        // The edited task must pass the same checks as a new one.
        let as_new = NewTask {
            title: task.title.clone(),
            body: String::new(),
            labels: task.labels.clone(),
            priority: task.priority,
            parent: None,
            blocked_by: Vec::new(),
            agent: None,
        };
        as_new.check().or_else(refused)?;
        let TaskEdit {
            title,
            body,
            labels,
            priority,
            agent,
        } = edit;
        let kind = EventKind::TaskEdited {
            title,
            body,
            labels,
            priority,
            agent,
        };
        self.save_task(&mut task, vec![kind])
    }

    fn set_task_state(
        &mut self,
        id: TaskId,
        to: TaskState,
        reason: Option<String>,
    ) -> Result<(), Fail> {
        let mut task = self.task(id)?;
        let from = task.state;
        if !from.can_transition_to(to) {
            let next: Vec<&str> = TaskState::ALL
                .into_iter()
                .filter(|s| from.can_transition_to(*s))
                .map(|s| s.as_str())
                .collect();
            let options = if next.is_empty() {
                format!("{from} is final")
            } else {
                format!("from {from} it can go to {}", next.join(", "))
            };
            return refused(format!(
                "task #{id} cannot go from {from} to {to}; {options}"
            ));
        }
        task.state = to;
        // A person reopening a stopped task gives it a fresh start: the retry and continuation
        // limits count from zero again.
        if to == TaskState::Open
            && matches!(
                from,
                TaskState::Failed | TaskState::Cancelled | TaskState::Blocked
            )
        {
            task.attempts = 0;
            task.continuations = 0;
        }
        if (to.is_terminal() || to == TaskState::Blocked) && reason.is_some() {
            task.summary.clone_from(&reason);
        }
        self.save_task(
            &mut task,
            vec![EventKind::TaskStateChanged { from, to, reason }],
        )?;
        // A done sub-task's branch is due to be merged into its parent's. The step is recorded
        // with the state that makes it due, so no crash can lose it.
        if to == TaskState::Done
            && let Some(parent) = task.parent
        {
            steps::insert_merge(self.conn, id, parent, self.now)?;
            self.touch_task(parent);
            self.emit(
                EntityKind::Task,
                parent.0,
                EventKind::TaskMergePending { child: id },
            )?;
        }
        Ok(())
    }

    fn add_dependency(&mut self, id: TaskId, blocked_by: TaskId) -> Result<(), Fail> {
        let mut task = self.task(id)?;
        self.task(blocked_by)?;
        if id == blocked_by {
            return refused(format!("task #{id} cannot be blocked by itself"));
        }
        if rows::has_dependency(self.conn, id, blocked_by)? {
            return refused(format!("task #{id} is already blocked by #{blocked_by}"));
        }
        if let Some(path) = self.dependency_path(blocked_by, id)? {
            let mut cycle = vec![format!("#{id}")];
            cycle.extend(path.iter().map(|t| format!("#{t}")));
            return refused(format!(
                "task #{id} cannot be blocked by #{blocked_by}: that would make a dependency \
                 cycle {} (each waits for the next), and none of them could ever start",
                cycle.join(" → ")
            ));
        }
        rows::insert_dependency(self.conn, id, blocked_by)?;
        task.blocked_by.push(blocked_by);
        task.blocked_by.sort();
        self.save_task(
            &mut task,
            vec![EventKind::TaskDependencyAdded { blocked_by }],
        )
    }

    /// The chain of `blocked_by` edges leading from `from` to `to`, both included, if any.
    /// Breadth-first, so the cycle named in an error is a shortest one.
    fn dependency_path(&self, from: TaskId, to: TaskId) -> Result<Option<Vec<TaskId>>, Fail> {
        let mut came_from: HashMap<TaskId, TaskId> = HashMap::new();
        let mut queue = VecDeque::from([from]);
        while let Some(current) = queue.pop_front() {
            if current == to {
                let mut path = vec![to];
                let mut at = to;
                while at != from {
                    at = came_from[&at];
                    path.push(at);
                }
                path.reverse();
                return Ok(Some(path));
            }
            for next in rows::dependencies(self.conn, current)? {
                if next != from && !came_from.contains_key(&next) {
                    came_from.insert(next, current);
                    queue.push_back(next);
                }
            }
        }
        Ok(None)
    }

    fn remove_dependency(&mut self, id: TaskId, blocked_by: TaskId) -> Result<(), Fail> {
        let mut task = self.task(id)?;
        if !rows::has_dependency(self.conn, id, blocked_by)? {
            return refused(format!(
                "task #{id} is not blocked by #{blocked_by}, so there is nothing to remove"
            ));
        }
        rows::delete_dependency(self.conn, id, blocked_by)?;
        task.blocked_by.retain(|t| *t != blocked_by);
        self.save_task(
            &mut task,
            vec![EventKind::TaskDependencyRemoved { blocked_by }],
        )
    }

    fn nudge(&mut self, id: TaskId) -> Result<(), Fail> {
        let mut task = self.task(id)?;
        if task.state.is_terminal() {
            return refused(format!(
                "task #{id} is {}, so there is nothing to nudge",
                task.state
            ));
        }
        task.nudged_at = Some(self.now);
        let by = self.actor.to_owned();
        self.save_task(&mut task, vec![EventKind::TaskNudged { by }])
    }

    fn comment(&mut self, id: TaskId, text: String) -> Result<(), Fail> {
        if text.trim().is_empty() {
            return refused("a comment needs some text");
        }
        domain::text::check_size("comment", &text, domain::text::MAX_COMMENT_BYTES)
            .or_else(refused)?;
        let mut task = self.task(id)?;
        let author = self.actor.to_owned();
        self.save_task(&mut task, vec![EventKind::TaskCommented { author, text }])
    }

    fn create_execution(
        &mut self,
        task_id: TaskId,
        kind: ExecutionKind,
        agent: String,
        attempt: u32,
    ) -> Result<(), Fail> {
        if agent.trim().is_empty() {
            return refused("an execution needs the name of the agent that runs it");
        }
        if attempt == 0 {
            return refused("attempts count from 1: the first try of a task is attempt 1");
        }
        let mut task = self.task(task_id)?;
        // The query and the insert below see the executions table, so earlier changes of this
        // batch (the end of the task's previous execution) must be in it.
        self.write_back()?;
        // The active execution is reported first: it is the real reason a second claim fails,
        // while the task state (running) would only be a symptom of it.
        if let Some(execution) = rows::active_execution_of(self.conn, task_id)? {
            return Err(Fail::AlreadyActive {
                task: task_id,
                execution,
            });
        }
        let needed = match kind {
            ExecutionKind::Work => TaskState::Open,
            ExecutionKind::Resume => TaskState::Waiting,
        };
        if task.state != needed {
            return refused(format!(
                "a {kind} execution needs task #{task_id} to be {needed}, but it is {}",
                task.state
            ));
        }
        let mut execution =
            Execution::queued(ExecutionId(0), task_id, kind, agent, attempt, self.now);
        execution.id = match rows::insert_execution(self.conn, &execution) {
            Ok(id) => id,
            // The partial unique index is the last line of defence against a second claim.
            Err(e) if is_unique_violation(&e) => {
                let active = rows::active_execution_of(self.conn, task_id)?;
                return Err(match active {
                    Some(execution) => Fail::AlreadyActive {
                        task: task_id,
                        execution,
                    },
                    None => Fail::Sql(e),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let from = task.state;
        task.state = TaskState::Running;
        task.executions += 1;
        task.nudged_at = None;
        task.not_before = None;
        let reason = Some(format!("{kind} execution #{} queued", execution.id));
        self.save_task(
            &mut task,
            vec![EventKind::TaskStateChanged {
                from,
                to: TaskState::Running,
                reason,
            }],
        )?;
        let id = execution.id;
        self.stored_execution_states.insert(id, execution.state);
        self.touch_execution(id);
        self.written_executions.insert(id, execution.clone());
        self.entity_seqs.insert((EntityKind::Execution, id.0), 0);
        self.emit(
            EntityKind::Execution,
            id.0,
            EventKind::ExecutionCreated { execution },
        )
    }

    fn set_execution_state(
        &mut self,
        id: ExecutionId,
        to: ExecutionState,
        reason: Option<String>,
    ) -> Result<(), Fail> {
        let mut e = self.execution(id)?;
        if to.is_terminal() && e.state.is_active() {
            return refused(format!(
                "execution #{id} can only become {to} through finish_execution, which also \
                 records its usage and outcome"
            ));
        }
        check_execution_transition(&e, to)?;
        let from = e.state;
        e.state = to;
        if to == ExecutionState::Running && e.started_at.is_none() {
            e.started_at = Some(self.now);
        }
        self.save_execution(
            &e,
            vec![EventKind::ExecutionStateChanged { from, to, reason }],
        )
    }
}

fn check_execution_transition(e: &Execution, to: ExecutionState) -> Result<(), Fail> {
    if e.state.can_transition_to(to) {
        return Ok(());
    }
    let from = e.state;
    let next: Vec<&str> = ExecutionState::ALL
        .into_iter()
        .filter(|s| from.can_transition_to(*s))
        .map(|s| s.as_str())
        .collect();
    let options = if next.is_empty() {
        format!("{from} is final")
    } else {
        format!("from {from} it can go to {}", next.join(", "))
    };
    refused(format!(
        "execution #{} cannot go from {from} to {to}; {options}",
        e.id
    ))
}

fn terminal_execution_states() -> String {
    ExecutionState::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_agent_name(agent: Option<&str>) -> Result<(), Fail> {
    match agent {
        Some(name) if name.trim().is_empty() => {
            refused("an agent name cannot be empty: name an agent, or leave the task unassigned")
        }
        _ => Ok(()),
    }
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}
