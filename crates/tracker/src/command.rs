//! The write vocabulary of the tracker: the changes a caller asks for.

use domain::event::ValidatorResult;
use domain::{
    ApprovalId, ApprovalSource, Decision, ExecutionId, ExecutionKind, ExecutionState, Fence,
    HandoffTarget, LandStrategy, Lease, NewTask, TaskId, TaskState, Timestamp, Usage,
};

/// One requested change to the tracker. A batch of them is applied atomically by
/// a store's `apply`; each is checked against the state left by the changes
/// before it in the same batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Create a task (state Open) with its dependencies.
    CreateTask(NewTask),
    /// Create a sub-task under an idempotency key of its parent (`new.parent`). Refused when
    /// the parent already made a sub-task under this key: the store's `call_key` says which one.
    CreateKeyedTask {
        new: NewTask,
        key: String,
    },
    /// Change the fields a person may edit.
    EditTask {
        id: TaskId,
        edit: TaskEdit,
    },
    /// Move a task through its state machine. A `reason` given when entering Blocked or a
    /// terminal state becomes the task's summary.
    SetTaskState {
        id: TaskId,
        to: TaskState,
        reason: Option<String>,
    },
    /// What an execution's end makes of its task: like [`Change::SetTaskState`], but only
    /// while the task is still running. Refused when it is not (cancelled by a person while the
    /// execution ended, say): the end must not undo what happened to the task meanwhile.
    SettleTask {
        id: TaskId,
        to: TaskState,
        reason: Option<String>,
    },
    /// `id` cannot start before `blocked_by` is done.
    AddDependency {
        id: TaskId,
        blocked_by: TaskId,
    },
    RemoveDependency {
        id: TaskId,
        blocked_by: TaskId,
    },
    /// Ask the scheduler to look at the task soon.
    Nudge {
        id: TaskId,
    },
    /// A note on the task by the batch's actor.
    Comment {
        id: TaskId,
        text: String,
    },
    /// The batch's actor answers the question the task's agent asked (`ctl block`).
    Answer {
        id: TaskId,
        text: String,
    },
    /// The batch's actor gives feedback on the task's work, for its next execution.
    Feedback {
        id: TaskId,
        text: String,
    },
    /// A comment under an idempotency key of the task; refused when the task already has a
    /// comment under this key.
    KeyedComment {
        id: TaskId,
        text: String,
        key: String,
    },
    /// The merge of a done sub-task's branch into its parent's, due since the child was done,
    /// was carried out: merged (or nothing to merge), or failed. A failure is recorded on the
    /// parent (`Task::merge_failed`) until a later merge of the same child succeeds.
    FinishMerge {
        child: TaskId,
        outcome: MergeResult,
    },
    /// A land of a done task's branch begins: `new` is the land commit, `base` the ref that
    /// holds `old` and is about to move. Refused while another land of the task is under way
    /// and once the task is landed.
    StartLand {
        id: TaskId,
        strategy: LandStrategy,
        base: String,
        old: String,
        new: String,
    },
    /// The land under way ended: the ref moved (`landed`), or it never will (`reason` says why).
    FinishLand {
        id: TaskId,
        landed: bool,
        reason: Option<String>,
    },
    /// A done sub-task of `root`'s tree came to the base branch with `root`'s land, which this
    /// batch (or an earlier one) finished. Nothing happens to a task landed already.
    MarkLanded {
        id: TaskId,
        root: TaskId,
    },
    /// Ask a person to approve the task's work. A task waits for one decision at a time: an
    /// agent's request is refused while one is pending, and the policy's makes nothing then.
    RequestApproval {
        task: TaskId,
        source: ApprovalSource,
        execution: Option<ExecutionId>,
        summary: String,
    },
    /// A person's decision on a pending approval, made once. A rejection reopens the task (a
    /// done or blocked one), and an approval the agent asked for reopens its blocked task so
    /// that the work goes on, in the same transaction as the decision.
    DecideApproval {
        id: ApprovalId,
        decision: Decision,
    },
    /// A question about a pending approval; it stays pending.
    AskApproval {
        id: ApprovalId,
        question: String,
    },
    /// Start a run of the workflow `name` (`definition`, as the manifest says it now) on the
    /// task and enter its first state. Refused while the task has a run that has not finished.
    StartWorkflow {
        task: TaskId,
        name: String,
        definition: workflow::Definition,
    },
    /// [`Change::StartWorkflow`] on the task the change before it in the batch created: a
    /// task added with a workflow's label and the workflow's run are one batch, so a crash
    /// between them cannot leave the labelled task without its run.
    StartWorkflowOnNewest {
        name: String,
        definition: workflow::Definition,
    },
    /// Give a workflow run one input. Refused when the run is over or the input changes
    /// nothing (a visit that is over, a decision taken already): each input is taken once.
    StepWorkflow {
        id: domain::WorkflowId,
        input: workflow::Input,
    },
    /// The engine begins carrying out `command`, one the run's current visit waits for
    /// ([`workflow::Instance::awaiting`]). Refused when the visit is over or the command was
    /// begun already: a command is carried out once per visit. What the rules do along with
    /// it: a gate's approval is requested, an agent state's task is assigned (and reopened when
    /// it ended, for the workflow only) or its sub-task made, a timer's deadline recorded, a
    /// sub-workflow (`child`: its name and definition, as the manifest says it now) started.
    BeginWorkflowCommand {
        id: domain::WorkflowId,
        command: workflow::Command,
        child: Option<(String, workflow::Definition)>,
    },
    /// The agent of execution `execution` writes `text`, read as the declared type of `key`,
    /// to the blackboard of the workflow run whose current visit runs it (an agent state on
    /// its task, or on the sub-task the state made). Refused for any other execution, an
    /// undeclared key, a value of another type or too long: see [`workflow::check_value`].
    WriteBlackboard {
        execution: ExecutionId,
        key: String,
        text: String,
    },
    /// Send a message (see `domain::message`). An alert identical to an open one is folded
    /// into it instead.
    SendMessage(domain::NewMessage),
    /// The message was shown to execution `to`, which must be one it is for and active.
    DeliverMessage {
        id: domain::MessageId,
        to: ExecutionId,
    },
    /// Acknowledge a message, once: by the execution it was delivered to, or (`by: None`) by
    /// the batch's actor, a person.
    AckMessage {
        id: domain::MessageId,
        by: Option<ExecutionId>,
    },
    /// An open message whose time to live ran out becomes a dead letter.
    ExpireMessage {
        id: domain::MessageId,
    },
    /// An open message becomes a dead letter for `reason` (its execution ended, say).
    DeadLetter {
        id: domain::MessageId,
        reason: String,
    },
    /// Execution `execution` takes area leases on `paths` for `ttl` (see `domain::area`), for
    /// its own task or (`for_task`) one of its task's sub-tasks. All or none: one refused path
    /// refuses the batch. The same path for the same task again renews it.
    TakeAreaLeases {
        execution: ExecutionId,
        for_task: Option<TaskId>,
        paths: Vec<domain::AreaPath>,
        ttl: domain::Duration,
    },
    /// [`Change::TakeAreaLeases`] for the task the change before it in the batch created, which
    /// must be a sub-task of the execution's task: a sub-task and the areas reserved for it are
    /// one batch, so the scheduler never sees the sub-task without its reservation.
    ReserveAreasOnNewest {
        execution: ExecutionId,
        paths: Vec<domain::AreaPath>,
        ttl: domain::Duration,
    },
    /// Execution `execution` releases its area leases on `paths` (every one it holds when
    /// `paths` is empty). Refused when it holds none on a path named.
    ReleaseAreaLeases {
        execution: ExecutionId,
        paths: Vec<domain::AreaPath>,
    },
    /// A held area lease whose time ran out is recorded expired.
    ExpireAreaLease {
        id: domain::AreaLeaseId,
    },
    /// The scheduler's bookkeeping: backoff and counters.
    ScheduleTask {
        id: TaskId,
        not_before: Option<Timestamp>,
        attempts: u32,
        continuations: u32,
        reason: Option<String>,
    },
    SetBranch {
        id: TaskId,
        branch: String,
    },
    /// The agent says the task is complete; becomes the task's summary.
    ClaimCompletion {
        id: TaskId,
        summary: String,
    },
    /// The running `execution` hands its part of task `id` to `to`: refused unless the
    /// execution is the task's active one and the task has had fewer than `budget` handoffs.
    /// The task's next execution is routed to `to` (see `domain::handoff`).
    HandOff {
        id: TaskId,
        execution: ExecutionId,
        from: HandoffTarget,
        to: HandoffTarget,
        summary: String,
        artifacts: Vec<String>,
        budget: u32,
    },
    /// The handoff `execution` made on task `id` does not take effect (the execution did not
    /// exit cleanly): the task goes back to the part it was in before, `restore`.
    VoidHandoff {
        id: TaskId,
        execution: ExecutionId,
        restore: Option<HandoffTarget>,
        reason: String,
    },
    /// Claim the task for a new execution: the task goes to Running, the execution is Queued.
    /// The execution's fencing token is the task's claim count after this claim; its first
    /// `lease` comes with the claim, so a claim costs no write of its own for it.
    CreateExecution {
        task_id: TaskId,
        kind: ExecutionKind,
        agent: String,
        attempt: u32,
        lease: Option<Lease>,
    },
    /// A change made on behalf of a running execution, under its fencing token. Refused, with
    /// nothing of `change` decided, once the execution no longer holds its task's claim: it was
    /// recorded lost, or its task was claimed again since.
    Fenced {
        execution: ExecutionId,
        fence: Fence,
        change: Box<Change>,
    },
    /// The holder of an active execution's lease extends it to `until`. Refused for an
    /// execution that ended (lost included) or under a token that is not its own.
    RenewLease {
        id: ExecutionId,
        fence: Fence,
        until: Timestamp,
    },
    /// Record as lost an active execution whose lease ran out: the engine holding it stopped
    /// renewing it. Refused while the lease still holds, so no engine can take another's live
    /// execution from it.
    LoseExpired {
        id: ExecutionId,
    },
    /// Move an execution between active states. Terminal states go through `FinishExecution`.
    SetExecutionState {
        id: ExecutionId,
        to: ExecutionState,
        reason: Option<String>,
    },
    ProcessStarted {
        id: ExecutionId,
        pid: i32,
        iteration: u32,
        log_path: Option<String>,
    },
    ProcessExited {
        id: ExecutionId,
        iteration: u32,
        exit_code: Option<i32>,
        signal: Option<i32>,
    },
    Validated {
        id: ExecutionId,
        iteration: u32,
        score: f64,
        passed: bool,
        results: Vec<ValidatorResult>,
    },
    Committed {
        id: ExecutionId,
        branch: String,
        commit: String,
    },
    /// Record the outcome of an execution, once.
    FinishExecution {
        id: ExecutionId,
        state: ExecutionState,
        exit_code: Option<i32>,
        usage: Usage,
        summary: Option<String>,
    },
    /// One model request of the execution's agent, as the model gateway measured it. Accepted
    /// on a finished execution too, since a stream may end after its execution did and the
    /// tokens were spent all the same.
    RecordModelUsage {
        id: ExecutionId,
        /// The model alias the agent asked for.
        model: String,
        /// The request's tokens; `cached` is a part of `input`.
        tokens: domain::Tokens,
        /// Millionths of a dollar.
        cost_micros: u64,
    },
    /// The model gateway waits before retrying a request of the execution's agent that the
    /// provider refused as rate limited or overloaded. An event only; no projection changes.
    RecordModelWaiting {
        id: ExecutionId,
        model: String,
        /// The refused attempt, from 1.
        attempt: u32,
        delay_ms: u64,
        /// The provider's HTTP status.
        status: u16,
    },
    /// What the execution's agent CLI said it did. An event only.
    RecordAgentEvent {
        id: ExecutionId,
        iteration: u32,
        event: domain::AgentEvent,
    },
    /// A request of the execution's agent was answered by the alias's fallback. An event only.
    RecordModelFallback {
        id: ExecutionId,
        model: String,
        fallback: String,
        reason: String,
    },
    /// A provider refused the execution's request for a used-up quota and is paused until
    /// `until`. Accepted on a finished execution too, like usage.
    PauseProvider {
        id: ExecutionId,
        provider: String,
        until: Timestamp,
        reason: String,
    },
    /// The pause a request of the execution started has ended.
    ResumeProvider {
        id: ExecutionId,
        provider: String,
    },
    /// A provider's limit on requests under way changed; `None` lifts it.
    ThrottleProvider {
        id: ExecutionId,
        provider: String,
        limit: Option<u32>,
    },
}

impl Change {
    /// The stable snake_case name used in error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Change::CreateTask(_) => "create_task",
            Change::CreateKeyedTask { .. } => "create_keyed_task",
            Change::KeyedComment { .. } => "keyed_comment",
            Change::FinishMerge { .. } => "finish_merge",
            Change::StartLand { .. } => "start_land",
            Change::FinishLand { .. } => "finish_land",
            Change::MarkLanded { .. } => "mark_landed",
            Change::EditTask { .. } => "edit_task",
            Change::SetTaskState { .. } => "set_task_state",
            Change::SettleTask { .. } => "settle_task",
            Change::AddDependency { .. } => "add_dependency",
            Change::RemoveDependency { .. } => "remove_dependency",
            Change::Nudge { .. } => "nudge",
            Change::Comment { .. } => "comment",
            Change::RequestApproval { .. } => "request_approval",
            Change::StartWorkflow { .. } => "start_workflow",
            Change::StartWorkflowOnNewest { .. } => "start_workflow_on_newest",
            Change::StepWorkflow { .. } => "step_workflow",
            Change::BeginWorkflowCommand { .. } => "begin_workflow_command",
            Change::WriteBlackboard { .. } => "write_blackboard",
            Change::DecideApproval { .. } => "decide_approval",
            Change::AskApproval { .. } => "ask_approval",
            Change::Answer { .. } => "answer",
            Change::Feedback { .. } => "feedback",
            Change::SendMessage(_) => "send_message",
            Change::DeliverMessage { .. } => "deliver_message",
            Change::AckMessage { .. } => "ack_message",
            Change::ExpireMessage { .. } => "expire_message",
            Change::DeadLetter { .. } => "dead_letter",
            Change::TakeAreaLeases { .. } => "take_area_leases",
            Change::ReserveAreasOnNewest { .. } => "reserve_areas_on_newest",
            Change::ReleaseAreaLeases { .. } => "release_area_leases",
            Change::ExpireAreaLease { .. } => "expire_area_lease",
            Change::ScheduleTask { .. } => "schedule_task",
            Change::SetBranch { .. } => "set_branch",
            Change::ClaimCompletion { .. } => "claim_completion",
            Change::HandOff { .. } => "hand_off",
            Change::VoidHandoff { .. } => "void_handoff",
            Change::CreateExecution { .. } => "create_execution",
            Change::Fenced { change, .. } => change.name(),
            Change::RenewLease { .. } => "renew_lease",
            Change::LoseExpired { .. } => "lose_expired",
            Change::SetExecutionState { .. } => "set_execution_state",
            Change::ProcessStarted { .. } => "process_started",
            Change::ProcessExited { .. } => "process_exited",
            Change::Validated { .. } => "validated",
            Change::Committed { .. } => "committed",
            Change::FinishExecution { .. } => "finish_execution",
            Change::RecordModelUsage { .. } => "record_model_usage",
            Change::RecordModelWaiting { .. } => "record_model_waiting",
            Change::RecordModelFallback { .. } => "record_model_fallback",
            Change::RecordAgentEvent { .. } => "record_agent_event",
            Change::PauseProvider { .. } => "pause_provider",
            Change::ResumeProvider { .. } => "resume_provider",
            Change::ThrottleProvider { .. } => "throttle_provider",
        }
    }

    /// What the change does, in the words of the person who asked for it: "creating the task"
    /// where [`name`](Change::name) says `create_task`. Used to say what was refused.
    pub fn doing(&self) -> &'static str {
        match self {
            Change::CreateTask(_) | Change::CreateKeyedTask { .. } => "creating the task",
            Change::KeyedComment { .. } | Change::Comment { .. } => "adding the comment",
            Change::Answer { .. } => "recording the answer",
            Change::Feedback { .. } => "recording the feedback",
            Change::FinishMerge { .. } => "recording the merge",
            Change::StartLand { .. } => "starting the land",
            Change::FinishLand { .. } => "finishing the land",
            Change::MarkLanded { .. } => "marking the task landed",
            Change::RequestApproval { .. } => "asking for an approval",
            Change::StartWorkflow { .. } | Change::StartWorkflowOnNewest { .. } => {
                "starting the workflow"
            }
            Change::StepWorkflow { .. } => "moving the workflow on",
            Change::BeginWorkflowCommand { .. } => "carrying out a workflow step",
            Change::WriteBlackboard { .. } => "writing the blackboard",
            Change::DecideApproval { .. } => "deciding the approval",
            Change::AskApproval { .. } => "asking about the approval",
            Change::RecordAgentEvent { .. } => "recording the agent's event",
            Change::EditTask { .. } => "editing the task",
            Change::SetTaskState { .. } | Change::SettleTask { .. } => "changing the task's state",
            Change::AddDependency { .. } => "adding the dependency",
            Change::RemoveDependency { .. } => "removing the dependency",
            Change::Nudge { .. } => "nudging the task",
            Change::SendMessage(_) => "sending the message",
            Change::DeliverMessage { .. } => "delivering the message",
            Change::AckMessage { .. } => "acknowledging the message",
            Change::ExpireMessage { .. } | Change::DeadLetter { .. } => "recording the dead letter",
            Change::TakeAreaLeases { .. } | Change::ReserveAreasOnNewest { .. } => {
                "taking the area lease"
            }
            Change::ReleaseAreaLeases { .. } => "releasing the area lease",
            Change::ExpireAreaLease { .. } => "recording the area lease expired",
            Change::ScheduleTask { .. } => "scheduling the task",
            Change::SetBranch { .. } => "setting the task's branch",
            Change::ClaimCompletion { .. } => "claiming completion",
            Change::HandOff { .. } => "handing the task off",
            Change::VoidHandoff { .. } => "voiding the handoff",
            Change::CreateExecution { .. } => "starting an execution",
            Change::Fenced { change, .. } => change.doing(),
            Change::RenewLease { .. } => "renewing the execution's lease",
            Change::LoseExpired { .. } => "recording the execution lost",
            Change::SetExecutionState { .. } => "changing the execution's state",
            Change::ProcessStarted { .. } | Change::ProcessExited { .. } => {
                "recording the agent's process"
            }
            Change::Validated { .. } => "recording the validation",
            Change::Committed { .. } => "recording the commit",
            Change::FinishExecution { .. } => "finishing the execution",
            Change::RecordModelUsage { .. }
            | Change::RecordModelWaiting { .. }
            | Change::RecordModelFallback { .. } => "recording model usage",
            Change::PauseProvider { .. }
            | Change::ResumeProvider { .. }
            | Change::ThrottleProvider { .. } => "changing the provider's standing",
        }
    }
}

/// How the merge of a sub-task's branch into its parent's ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeResult {
    /// The merge commit, or none when there was nothing new (or nothing to merge).
    Merged {
        commit: Option<String>,
    },
    Failed {
        reason: String,
    },
}

/// The editable fields of a task; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskEdit {
    pub title: Option<String>,
    pub body: Option<String>,
    pub labels: Option<Vec<String>>,
    pub priority: Option<i32>,
    /// `Some(None)` clears the assignment.
    pub agent: Option<Option<String>>,
}

impl TaskEdit {
    /// True when the edit would change no field at all.
    pub fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.body.is_none()
            && self.labels.is_none()
            && self.priority.is_none()
            && self.agent.is_none()
    }
}
