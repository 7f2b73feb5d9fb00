//! What the rules look at: the tasks, executions, merges and call keys a batch touches, with
//! the version of every entity, and the keys a backend loads to fill it.

use crate::fasthash::{Map, Set};

use domain::{Approval, ApprovalId, EntityKind, EventKind, Execution, ExecutionId, Task, TaskId};

use crate::Entry;

/// Something [`crate::decide`] may need to look at, named so that a backend can load it.
///
/// [`crate::wants`] lists the keys a change needs; a backend loads those the [`State`] does not
/// know yet (see [`State::knows`]) and asks again, since what a change needs can depend on
/// what was loaded (the parent of a merge, the tasks along a dependency path).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// One task, or the fact that it does not exist.
    Task(TaskId),
    /// One execution, or the fact that it does not exist.
    Execution(ExecutionId),
    /// The active execution of a task, if it has one: a backend loads it as an execution and
    /// marks the task with [`State::load_active_of`].
    ActiveOf(TaskId),
    /// Whether `task` made an `op` call under `key`, and what it produced.
    CallKey {
        task: TaskId,
        op: String,
        key: String,
    },
    /// The merge of a done sub-task that has not succeeded yet, if there is one.
    Merge(TaskId),
    /// Every merge into a parent that has not succeeded yet.
    MergesInto(TaskId),
    /// The land of a task's branch on the base branch: under way, done, or none.
    Land(TaskId),
    /// One approval, or the fact that it does not exist.
    Approval(ApprovalId),
    /// The pending approval of a task, if it has one: a backend loads it with
    /// [`State::load_approval`] and marks the task with [`State::load_pending_approval_of`].
    PendingApprovalOf(TaskId),
    /// The id the next requested approval gets.
    NextApprovalId,
    /// One workflow run, or the fact that it does not exist.
    Workflow(domain::WorkflowId),
    /// Every workflow run of a task: a backend loads each with [`State::load_workflow`] and
    /// marks the task with [`State::load_workflows_of`].
    WorkflowsOf(TaskId),
    /// The id the next started workflow run gets.
    NextWorkflowId,
    /// One message, or the fact that it does not exist.
    Message(domain::MessageId),
    /// The id the next sent message gets.
    NextMessageId,
    /// The open alert with this fingerprint, if there is one: a backend loads it with
    /// [`State::load_message`] and marks the fingerprint with [`State::load_open_alert`].
    OpenAlert(String),
    /// How many messages an execution sent, and how many of them are open.
    SentBy(ExecutionId),
    /// Whether agent `reader` acknowledged the announcement `id` for itself.
    ReadBy {
        id: domain::MessageId,
        reader: String,
    },
    /// Every live-or-unrecorded held area lease, of every execution: a backend loads each with
    /// [`State::load_area_lease`] and marks them known with [`State::load_held_area_leases`].
    HeldAreaLeases,
    /// The held area leases of one execution: loaded like [`Key::HeldAreaLeases`], marked with
    /// [`State::load_area_leases_of`].
    AreaLeasesOf(ExecutionId),
    /// The id the next area lease gets.
    NextAreaLeaseId,
    /// The id the next created task gets.
    NextTaskId,
    /// The id the next created execution gets.
    NextExecutionId,
}

/// The merge of a done sub-task's branch into its parent's, as a recorded step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeStep {
    pub parent: TaskId,
    pub status: MergeStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeStatus {
    /// Due since the child was done, never tried.
    Pending,
    /// The last try failed, for this reason.
    Failed(String),
    /// Merged, or nothing to merge.
    Done,
}

/// The land of a task's branch on the base branch, as a recorded step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandStep {
    pub status: LandStatus,
    pub strategy: domain::LandStrategy,
    /// The ref that moves (`refs/heads/main`).
    pub base: String,
    /// What the ref held before, and the land commit.
    pub old: String,
    pub new: String,
    /// For a sub-task landed with its tree, the task whose land brought it.
    pub root: Option<TaskId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandStatus {
    /// Recorded before the ref moves; finished or forgotten from what the ref holds.
    Started,
    Landed,
}

/// The entities the rules decide on, as the batch has left them so far.
///
/// A *partial* state (what a store builds per batch) knows only what was loaded into it and
/// what the batch's own events made; a *complete* state (a fold of a whole log, or the model in
/// tests) knows everything, so whatever it does not hold does not exist.
///
/// Each entity's *version* is the number of its events in the log: the `entity_seq` of its
/// last event, 0 before the first. The next event of an entity must be appended at version + 1,
/// which is how a backend notices a writer that changed the entity behind its back.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct State {
    complete: bool,
    tasks: Map<TaskId, Option<Task>>,
    executions: Map<ExecutionId, Option<Execution>>,
    active_known: Set<TaskId>,
    /// Merges by child. `None`: no merge of that child is due (never done, or merged already).
    merges: Map<TaskId, Option<MergeStep>>,
    merges_known: Set<TaskId>,
    /// Lands by task. `None`: never landed, no land under way.
    lands: Map<TaskId, Option<LandStep>>,
    /// What each keyed call produced (`Some(result)`) or that the key is unused (`None`).
    call_keys: Map<(TaskId, String, String), Option<Option<TaskId>>>,
    approvals: Map<ApprovalId, Option<Approval>>,
    pending_known: Set<TaskId>,
    next_approval_id: Option<ApprovalId>,
    workflows: Map<domain::WorkflowId, Option<crate::WorkflowRun>>,
    workflows_known: Set<TaskId>,
    next_workflow_id: Option<domain::WorkflowId>,
    messages: Map<domain::MessageId, Option<domain::Message>>,
    open_alerts_known: Set<String>,
    sent_by: Map<ExecutionId, crate::Sent>,
    /// Whether each (announcement, reading agent) was acknowledged.
    reads: Map<(domain::MessageId, String), bool>,
    next_message_id: Option<domain::MessageId>,
    area_leases: Map<domain::AreaLeaseId, domain::AreaLease>,
    held_area_leases_known: bool,
    area_leases_of_known: Set<ExecutionId>,
    next_area_lease_id: Option<domain::AreaLeaseId>,
    versions: Map<(EntityKind, i64), u64>,
    next_task_id: Option<TaskId>,
    next_execution_id: Option<ExecutionId>,
}

impl State {
    /// A state that knows everything: empty, it is the empty tracker, and every id starts at 1.
    pub fn complete() -> State {
        State {
            complete: true,
            next_task_id: Some(TaskId(1)),
            next_execution_id: Some(ExecutionId(1)),
            next_approval_id: Some(ApprovalId(1)),
            next_workflow_id: Some(domain::WorkflowId(1)),
            next_message_id: Some(domain::MessageId(1)),
            next_area_lease_id: Some(domain::AreaLeaseId(1)),
            ..State::default()
        }
    }

    /// A state that knows only what is loaded into it.
    pub fn partial() -> State {
        State::default()
    }

    /// True when the rules may read `key` from this state without loading it first.
    pub fn knows(&self, key: &Key) -> bool {
        if self.complete {
            return true;
        }
        match key {
            Key::Task(id) => self.tasks.contains_key(id),
            Key::Execution(id) => self.executions.contains_key(id),
            Key::ActiveOf(task) => self.active_known.contains(task),
            Key::CallKey { task, op, key } => {
                self.call_keys
                    .contains_key(&(*task, op.clone(), key.clone()))
            }
            Key::Merge(child) => self.merges.contains_key(child),
            Key::MergesInto(parent) => self.merges_known.contains(parent),
            Key::Land(task) => self.lands.contains_key(task),
            Key::Approval(id) => self.approvals.contains_key(id),
            Key::PendingApprovalOf(task) => self.pending_known.contains(task),
            Key::NextApprovalId => self.next_approval_id.is_some(),
            Key::Workflow(id) => self.workflows.contains_key(id),
            Key::WorkflowsOf(task) => self.workflows_known.contains(task),
            Key::NextWorkflowId => self.next_workflow_id.is_some(),
            Key::Message(id) => self.messages.contains_key(id),
            Key::NextMessageId => self.next_message_id.is_some(),
            Key::OpenAlert(fp) => self.open_alerts_known.contains(fp),
            Key::SentBy(e) => self.sent_by.contains_key(e),
            Key::ReadBy { id, reader } => self.reads.contains_key(&(*id, reader.clone())),
            Key::HeldAreaLeases => self.held_area_leases_known,
            Key::AreaLeasesOf(e) => {
                self.held_area_leases_known || self.area_leases_of_known.contains(e)
            }
            Key::NextAreaLeaseId => self.next_area_lease_id.is_some(),
            Key::NextTaskId => self.next_task_id.is_some(),
            Key::NextExecutionId => self.next_execution_id.is_some(),
        }
    }

    pub fn task(&self, id: TaskId) -> Option<&Task> {
        self.tasks.get(&id).and_then(Option::as_ref)
    }

    pub fn execution(&self, id: ExecutionId) -> Option<&Execution> {
        self.executions.get(&id).and_then(Option::as_ref)
    }

    /// Every task this state holds, in no particular order.
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.values().flatten()
    }

    /// Every execution this state holds, in no particular order.
    pub fn executions(&self) -> impl Iterator<Item = &Execution> {
        self.executions.values().flatten()
    }

    /// The task's execution in an active state, if any (the lowest id, should there ever be
    /// two). Needs [`Key::ActiveOf`].
    pub fn active_execution_of(&self, task: TaskId) -> Option<ExecutionId> {
        self.executions()
            .filter(|e| e.task_id == task && e.state.is_active())
            .map(|e| e.id)
            .min()
    }

    /// The merge of `child` that has not succeeded yet. Needs [`Key::Merge`].
    pub fn merge(&self, child: TaskId) -> Option<&MergeStep> {
        self.merges
            .get(&child)
            .and_then(Option::as_ref)
            .filter(|m| m.status != MergeStatus::Done)
    }

    /// Why merges into `parent` failed, child by child in id order. Needs
    /// [`Key::MergesInto`].
    pub fn failed_merges_into(&self, parent: TaskId) -> Vec<(TaskId, &str)> {
        let mut failed: Vec<(TaskId, &str)> = self
            .merges
            .iter()
            .filter_map(|(child, m)| match m {
                Some(MergeStep {
                    parent: p,
                    status: MergeStatus::Failed(why),
                }) if *p == parent => Some((*child, why.as_str())),
                _ => None,
            })
            .collect();
        failed.sort();
        failed
    }

    /// Every merge into `parent` that has not succeeded yet, by child in id order.
    pub fn unfinished_merges_into(&self, parent: TaskId) -> Vec<(TaskId, &MergeStep)> {
        let mut merges: Vec<(TaskId, &MergeStep)> = self
            .merges
            .iter()
            .filter_map(|(child, m)| m.as_ref().map(|m| (*child, m)))
            .filter(|(_, m)| m.parent == parent && m.status != MergeStatus::Done)
            .collect();
        merges.sort_by_key(|(child, _)| *child);
        merges
    }

    /// What `task`'s `op` call under `key` produced, or `None` when the key is unused. Needs
    /// [`Key::CallKey`].
    pub fn call_key(&self, task: TaskId, op: &str, key: &str) -> Option<Option<TaskId>> {
        self.call_keys
            .get(&(task, op.to_owned(), key.to_owned()))
            .copied()
            .flatten()
    }

    pub fn approval(&self, id: ApprovalId) -> Option<&Approval> {
        self.approvals.get(&id).and_then(Option::as_ref)
    }

    /// Every approval this state holds, in no particular order.
    pub fn approvals(&self) -> impl Iterator<Item = &Approval> {
        self.approvals.values().flatten()
    }

    /// The task's pending approval, if any. Needs [`Key::PendingApprovalOf`].
    pub fn pending_approval_of(&self, task: TaskId) -> Option<&Approval> {
        self.approvals()
            .filter(|a| a.task_id == task && a.state == domain::ApprovalState::Pending)
            .min_by_key(|a| a.id)
    }

    pub fn next_approval_id(&self) -> ApprovalId {
        self.next_approval_id.unwrap_or(ApprovalId(1))
    }

    pub fn workflow(&self, id: domain::WorkflowId) -> Option<&crate::WorkflowRun> {
        self.workflows.get(&id).and_then(Option::as_ref)
    }

    /// Every workflow run this state holds, in no particular order.
    pub fn workflows(&self) -> impl Iterator<Item = &crate::WorkflowRun> {
        self.workflows.values().flatten()
    }

    pub fn next_workflow_id(&self) -> domain::WorkflowId {
        self.next_workflow_id.unwrap_or(domain::WorkflowId(1))
    }

    pub fn load_workflow(&mut self, id: domain::WorkflowId, run: Option<crate::WorkflowRun>) {
        self.workflows.entry(id).or_insert(run);
    }

    /// Records that every workflow run of `task` was loaded.
    pub fn load_workflows_of(&mut self, task: TaskId) {
        self.workflows_known.insert(task);
    }

    pub fn load_next_workflow_id(&mut self, id: domain::WorkflowId) {
        self.next_workflow_id.get_or_insert(id);
    }

    pub(crate) fn put_workflow(&mut self, run: crate::WorkflowRun) {
        if let Some(next) = &mut self.next_workflow_id {
            *next = (*next).max(domain::WorkflowId(run.id.0 + 1));
        }
        self.workflows.insert(run.id, Some(run));
    }

    pub(crate) fn workflow_mut(
        &mut self,
        id: domain::WorkflowId,
    ) -> Option<&mut crate::WorkflowRun> {
        self.workflows.get_mut(&id).and_then(Option::as_mut)
    }

    pub fn message(&self, id: domain::MessageId) -> Option<&domain::Message> {
        self.messages.get(&id).and_then(Option::as_ref)
    }

    /// Every message this state holds, in no particular order.
    pub fn messages(&self) -> impl Iterator<Item = &domain::Message> {
        self.messages.values().flatten()
    }

    /// The open alert with fingerprint `fp` (the lowest id, should there be two). Needs
    /// [`Key::OpenAlert`].
    pub fn open_alert(&self, fp: &str) -> Option<&domain::Message> {
        self.messages()
            .filter(|m| m.state.is_open() && m.fingerprint.as_deref() == Some(fp))
            .min_by_key(|m| m.id)
    }

    /// What execution `e` has sent. Needs [`Key::SentBy`]. A partial state counts from what
    /// was loaded and what its batch did since; a message closed in the batch before the counts
    /// were loaded is counted open once more, which errs on the side of refusing.
    pub fn sent_by(&self, e: ExecutionId) -> crate::Sent {
        if self.complete {
            let mine = self.messages().filter(|m| m.sender_execution == Some(e));
            return mine.fold(crate::Sent::default(), |s, m| crate::Sent {
                open: s.open + u32::from(m.state.is_open()),
                total: s.total + 1,
            });
        }
        self.sent_by.get(&e).copied().unwrap_or_default()
    }

    pub fn next_message_id(&self) -> domain::MessageId {
        self.next_message_id.unwrap_or(domain::MessageId(1))
    }

    pub fn load_message(&mut self, id: domain::MessageId, message: Option<domain::Message>) {
        self.messages.entry(id).or_insert(message);
    }

    /// Records that the open alert with fingerprint `fp` (if there is one) was loaded.
    pub fn load_open_alert(&mut self, fp: &str) {
        self.open_alerts_known.insert(fp.to_owned());
    }

    pub fn load_sent_by(&mut self, e: ExecutionId, sent: crate::Sent) {
        self.sent_by.entry(e).or_insert(sent);
    }

    /// Whether agent `reader` acknowledged the announcement `id` for itself. Needs
    /// [`Key::ReadBy`].
    pub fn read_by(&self, id: domain::MessageId, reader: &str) -> bool {
        self.reads
            .get(&(id, reader.to_string()))
            .copied()
            .unwrap_or(false)
    }

    pub fn load_read_by(&mut self, id: domain::MessageId, reader: &str, read: bool) {
        self.reads.entry((id, reader.to_string())).or_insert(read);
    }

    pub(crate) fn put_read_by(&mut self, id: domain::MessageId, reader: &str) {
        self.reads.insert((id, reader.to_string()), true);
    }

    pub fn load_next_message_id(&mut self, id: domain::MessageId) {
        self.next_message_id.get_or_insert(id);
    }

    pub(crate) fn put_message(&mut self, message: domain::Message) {
        if let Some(next) = &mut self.next_message_id {
            *next = (*next).max(domain::MessageId(message.id.0 + 1));
        }
        self.messages.insert(message.id, Some(message));
    }

    pub(crate) fn message_mut(&mut self, id: domain::MessageId) -> Option<&mut domain::Message> {
        self.messages.get_mut(&id).and_then(Option::as_mut)
    }

    /// Moves the loaded counts of `e` by `open` and `total`; nothing when they were not loaded.
    pub(crate) fn count_sent(&mut self, e: ExecutionId, open: i32, total: u32) {
        if let Some(sent) = self.sent_by.get_mut(&e) {
            sent.open = sent.open.saturating_add_signed(open);
            sent.total += total;
        }
    }

    /// The held area leases this state knows of (expired ones not yet recorded included), in
    /// id order. Needs [`Key::HeldAreaLeases`] for all of them, [`Key::AreaLeasesOf`] for one
    /// execution's.
    pub fn held_area_leases(&self) -> Vec<&domain::AreaLease> {
        let mut held: Vec<&domain::AreaLease> = self
            .area_leases
            .values()
            .filter(|l| l.state == domain::AreaLeaseState::Held)
            .collect();
        held.sort_by_key(|l| l.id);
        held
    }

    pub fn area_lease(&self, id: domain::AreaLeaseId) -> Option<&domain::AreaLease> {
        self.area_leases.get(&id)
    }

    pub fn next_area_lease_id(&self) -> domain::AreaLeaseId {
        self.next_area_lease_id.unwrap_or(domain::AreaLeaseId(1))
    }

    pub fn load_area_lease(&mut self, lease: domain::AreaLease) {
        self.area_leases.entry(lease.id).or_insert(lease);
    }

    pub fn load_held_area_leases(&mut self) {
        self.held_area_leases_known = true;
    }

    pub fn load_area_leases_of(&mut self, e: ExecutionId) {
        self.area_leases_of_known.insert(e);
    }

    pub fn load_next_area_lease_id(&mut self, id: domain::AreaLeaseId) {
        self.next_area_lease_id.get_or_insert(id);
    }

    pub(crate) fn put_area_lease(&mut self, lease: domain::AreaLease) {
        if let Some(next) = &mut self.next_area_lease_id {
            *next = (*next).max(domain::AreaLeaseId(lease.id.0 + 1));
        }
        self.area_leases.insert(lease.id, lease);
    }

    pub(crate) fn area_lease_mut(
        &mut self,
        id: domain::AreaLeaseId,
    ) -> Option<&mut domain::AreaLease> {
        self.area_leases.get_mut(&id)
    }

    pub fn next_task_id(&self) -> TaskId {
        self.next_task_id.unwrap_or(TaskId(1))
    }

    pub fn next_execution_id(&self) -> ExecutionId {
        self.next_execution_id.unwrap_or(ExecutionId(1))
    }

    /// The version an entity is at before `entry` is appended to it: known, or 0 for the event
    /// that creates it. `None` when the backend must read it from its log first (and tell it
    /// with [`State::load_version`]).
    pub fn version_before(&self, entry: &Entry) -> Option<u64> {
        if let Some(v) = self.versions.get(&(entry.entity, entry.id)) {
            return Some(*v);
        }
        let creates = matches!(
            entry.kind,
            EventKind::TaskCreated { .. }
                | EventKind::ExecutionCreated { .. }
                | EventKind::MessageSent { .. }
        );
        (creates || self.complete).then_some(0)
    }

    /// The version of an entity, if known.
    pub fn version(&self, entity: EntityKind, id: i64) -> Option<u64> {
        self.versions.get(&(entity, id)).copied()
    }

    pub fn load_task(&mut self, id: TaskId, task: Option<Task>) {
        self.tasks.entry(id).or_insert(task);
    }

    pub fn load_execution(&mut self, id: ExecutionId, execution: Option<Execution>) {
        self.executions.entry(id).or_insert(execution);
    }

    /// Records that the active execution of `task` (if it has one) was loaded.
    pub fn load_active_of(&mut self, task: TaskId) {
        self.active_known.insert(task);
    }

    pub fn load_call_key(
        &mut self,
        task: TaskId,
        op: &str,
        key: &str,
        made: Option<Option<TaskId>>,
    ) {
        self.call_keys
            .entry((task, op.to_owned(), key.to_owned()))
            .or_insert(made);
    }

    pub fn load_merge(&mut self, child: TaskId, merge: Option<MergeStep>) {
        self.merges.entry(child).or_insert(merge);
    }

    /// Records that every unfinished merge into `parent` was loaded with
    /// [`State::load_merge`].
    pub fn load_merges_into(&mut self, parent: TaskId) {
        self.merges_known.insert(parent);
    }

    /// The land of `task`, under way or done. Needs [`Key::Land`].
    pub fn land(&self, task: TaskId) -> Option<&LandStep> {
        self.lands.get(&task).and_then(Option::as_ref)
    }

    pub fn load_land(&mut self, task: TaskId, land: Option<LandStep>) {
        self.lands.entry(task).or_insert(land);
    }

    pub(crate) fn put_land(&mut self, task: TaskId, land: Option<LandStep>) {
        self.lands.insert(task, land);
    }

    pub fn load_approval(&mut self, id: ApprovalId, approval: Option<Approval>) {
        self.approvals.entry(id).or_insert(approval);
    }

    /// Records that the pending approval of `task` (if it has one) was loaded.
    pub fn load_pending_approval_of(&mut self, task: TaskId) {
        self.pending_known.insert(task);
    }

    pub fn load_next_approval_id(&mut self, id: ApprovalId) {
        self.next_approval_id.get_or_insert(id);
    }

    pub fn load_next_task_id(&mut self, id: TaskId) {
        self.next_task_id.get_or_insert(id);
    }

    pub fn load_next_execution_id(&mut self, id: ExecutionId) {
        self.next_execution_id.get_or_insert(id);
    }

    pub fn load_version(&mut self, entity: EntityKind, id: i64, version: u64) {
        self.versions.entry((entity, id)).or_insert(version);
    }

    // The parts `evolve` writes.

    pub(crate) fn task_mut(&mut self, id: TaskId) -> Option<&mut Task> {
        self.tasks.get_mut(&id).and_then(Option::as_mut)
    }

    pub(crate) fn execution_mut(&mut self, id: ExecutionId) -> Option<&mut Execution> {
        self.executions.get_mut(&id).and_then(Option::as_mut)
    }

    pub(crate) fn put_task(&mut self, task: Task) {
        if let Some(next) = &mut self.next_task_id {
            *next = (*next).max(TaskId(task.id.0 + 1));
        }
        self.tasks.insert(task.id, Some(task));
    }

    pub(crate) fn put_execution(&mut self, execution: Execution) {
        if let Some(next) = &mut self.next_execution_id {
            *next = (*next).max(ExecutionId(execution.id.0 + 1));
        }
        self.executions.insert(execution.id, Some(execution));
    }

    pub(crate) fn put_approval(&mut self, approval: Approval) {
        if let Some(next) = &mut self.next_approval_id {
            *next = (*next).max(ApprovalId(approval.id.0 + 1));
        }
        self.approvals.insert(approval.id, Some(approval));
    }

    pub(crate) fn approval_mut(&mut self, id: ApprovalId) -> Option<&mut Approval> {
        self.approvals.get_mut(&id).and_then(Option::as_mut)
    }

    pub(crate) fn put_merge(&mut self, child: TaskId, merge: MergeStep) {
        self.merges.insert(child, Some(merge));
    }

    pub(crate) fn merge_entry(&mut self, child: TaskId) -> Option<&mut MergeStep> {
        self.merges.get_mut(&child).and_then(Option::as_mut)
    }

    pub(crate) fn put_call_key(&mut self, task: TaskId, op: &str, key: &str, made: Option<TaskId>) {
        self.call_keys
            .insert((task, op.to_owned(), key.to_owned()), Some(made));
    }

    pub(crate) fn bump_version(&mut self, entity: EntityKind, id: i64) {
        *self.versions.entry((entity, id)).or_insert(0) += 1;
    }
}
