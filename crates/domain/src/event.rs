//! Events: the append-only record of every state change.
//!
//! Each event belongs to one entity (a task or an execution) and carries two sequence numbers:
//! `seq`, global across the whole log, and `entity_seq`, counting that entity's own events from 1.
//! A reader that remembers the last `seq` it saw can resume from there at any time.

use serde::{Deserialize, Serialize};

use crate::{
    ApprovalId, ApprovalSource, Decision, Execution, ExecutionId, ExecutionKind, ExecutionState,
    Task, TaskId, TaskState, Timestamp, Usage,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Task,
    Execution,
    Message,
}

impl EntityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Task => "task",
            EntityKind::Execution => "execution",
            EntityKind::Message => "message",
        }
    }
}

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Event {
    /// Global position in the log, from 1, growing with every event (without gaps in SQLite;
    /// readers rely only on its order).
    pub seq: u64,
    pub at: Timestamp,
    pub entity: EntityKind,
    pub entity_id: i64,
    /// Position among this entity's events, from 1.
    pub entity_seq: u64,
    /// Who caused it: `cli`, `engine`, `agent:<name>`, `execution:<id>`.
    pub actor: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What changed. The `type` tag is the stable name used in `agentgrid events` and the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    TaskCreated {
        task: Task,
    },
    TaskEdited {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        labels: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        priority: Option<i32>,
        /// `Some(None)` clears the assignment.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<Option<String>>,
    },
    TaskStateChanged {
        from: TaskState,
        to: TaskState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    TaskDependencyAdded {
        blocked_by: TaskId,
    },
    TaskDependencyRemoved {
        blocked_by: TaskId,
    },
    TaskNudged {
        by: String,
    },
    TaskCommented {
        author: String,
        text: String,
    },
    /// A person's answer to the question the task's agent asked with `ctl block`. It reaches
    /// the next execution's prompt as `answer`.
    TaskAnswered {
        author: String,
        text: String,
    },
    /// A person's feedback on the task's work (a reopen with feedback, an approval rejected
    /// with it). It reaches the next execution's prompt in `feedback`, labelled as theirs.
    TaskFeedbackGiven {
        author: String,
        text: String,
    },
    /// The scheduler's bookkeeping on a task: backoff, attempt and continuation counters.
    TaskScheduled {
        not_before: Option<Timestamp>,
        attempts: u32,
        continuations: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    TaskBranchSet {
        branch: String,
    },
    /// The agent said the task is complete. A claim only: validators decide.
    TaskCompletionClaimed {
        summary: String,
    },
    /// An agent handed its part of the task to another agency or role (`ctl handoff`),
    /// recorded the moment the handoff is accepted. Its part ends with its execution; the
    /// receiver's part opens when that execution exits cleanly.
    TaskHandedOff {
        from_agency: String,
        from_role: String,
        to_agency: String,
        #[serde(default)]
        to_role: Option<String>,
        summary: String,
        /// Paths in the task's branch, relative to the worktree's root.
        #[serde(default)]
        artifacts: Vec<String>,
        execution: ExecutionId,
    },
    /// The handoff `execution` made did not take effect: the execution did not exit cleanly,
    /// so the sender's part goes on (retried as its failure allows).
    TaskHandoffVoided {
        execution: ExecutionId,
        /// The part the task is back in (`None`: routed by its labels).
        #[serde(default)]
        restore: Option<crate::HandoffTarget>,
        reason: String,
    },
    /// On a parent: its sub-task `child` is done, and the child's branch is due to be merged
    /// into the parent's. Written in the transaction that makes the child done, so a crash
    /// before the merge leaves the record of what is still to do.
    TaskMergePending {
        child: TaskId,
    },
    /// On a parent: the branch of its sub-task `child` is merged in (`commit` is the merge
    /// commit; none when there was nothing new or nothing to merge).
    TaskMerged {
        child: TaskId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commit: Option<String>,
    },
    /// On a parent: merging the branch of its sub-task `child` failed (a conflict, say). The
    /// parent cannot be done until a later merge of it succeeds.
    TaskMergeFailed {
        child: TaskId,
        reason: String,
    },
    /// A land of the task's branch on the base branch began: the land commit `new` is made
    /// and judged, and the base ref `base` still holds `old`. Written before the ref moves, so
    /// that a crash in between is found and finished (or forgotten) from the ref itself.
    TaskLandStarted {
        strategy: crate::LandStrategy,
        base: String,
        old: String,
        new: String,
    },
    /// The base ref moved from `old` to `new`: the task's work is on the base branch. On a
    /// sub-task of a landed tree, `root` names the task whose land brought it.
    TaskLanded {
        strategy: crate::LandStrategy,
        base: String,
        old: String,
        new: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        root: Option<TaskId>,
    },
    /// A land that began was forgotten: the base ref never moved.
    TaskLandAbandoned {
        reason: String,
    },
    /// A person's approval of the task's work was asked for (by the policy or the agent).
    TaskApprovalRequested {
        approval: ApprovalId,
        source: ApprovalSource,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        execution: Option<ExecutionId>,
        summary: String,
    },
    /// A person decided on the approval; `by` is who, as the store records actors.
    TaskApprovalDecided {
        approval: ApprovalId,
        by: String,
        #[serde(flatten)]
        decision: Decision,
    },
    /// A person asked a question about the approval instead of deciding; it stays pending.
    TaskApprovalQuestioned {
        approval: ApprovalId,
        by: String,
        question: String,
    },
    /// A run of the workflow `name` began on the task; `definition` is the workflow as it was
    /// then (the `workflow` crate's `Definition`), so the run never changes under a later edit.
    TaskWorkflowStarted {
        workflow: crate::WorkflowId,
        name: String,
        definition: serde_json::Value,
        /// The run whose workflow state started this one, and the visit of that state: this
        /// run's end is that visit's input.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<crate::WorkflowParent>,
    },
    /// The engine began carrying out a command of a workflow run's visit (the `workflow`
    /// crate's `Command`, by its kind): recorded before it acts, so that no command is carried
    /// out twice for one visit, a restart included. `deadline` is a timer's, `approval` the
    /// approval a gate asked for, `subtask` the sub-task an agent state made.
    TaskWorkflowBegun {
        workflow: crate::WorkflowId,
        visit: u32,
        state: String,
        command: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline: Option<Timestamp>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        approval: Option<ApprovalId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subtask: Option<TaskId>,
    },
    /// A workflow run took one input (the `workflow` crate's `Input`); `position` and `status`
    /// are where it is after it, `note` what happened, for people reading the log.
    TaskWorkflowStepped {
        workflow: crate::WorkflowId,
        input: serde_json::Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        position: Option<String>,
        status: String,
        note: String,
    },
    ExecutionCreated {
        execution: Execution,
    },
    ExecutionStateChanged {
        from: ExecutionState,
        to: ExecutionState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    ExecutionProcessStarted {
        pid: i32,
        iteration: u32,
        /// Where the process's output goes, when the start names a new place for it. Absent
        /// from events written before it was recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_path: Option<String>,
    },
    ExecutionProcessExited {
        iteration: u32,
        exit_code: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
    },
    ExecutionValidated {
        iteration: u32,
        score: f64,
        passed: bool,
        /// Each validator's name, score and pass flag.
        results: Vec<ValidatorResult>,
    },
    ExecutionCommitted {
        branch: String,
        commit: String,
    },
    ExecutionFinished {
        kind: ExecutionKind,
        state: ExecutionState,
        usage: Usage,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        summary: Option<String>,
        /// The exit code the finish reported, if any; one recorded by an earlier process exit
        /// stands when this is absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
    },
    /// One model request the execution's agent made through the model gateway: the tokens it
    /// used and what they cost by the node's price table.
    ExecutionModelUsage {
        /// The model alias the agent asked for.
        model: String,
        /// Every input token, the cached ones included.
        input_tokens: u64,
        output_tokens: u64,
        /// The part of `input_tokens` read from the provider's prompt cache.
        cached_tokens: u64,
        /// Millionths of a dollar.
        cost_micros: u64,
    },
    /// The model gateway got a rate-limit or overload answer for the execution's agent and
    /// waits before trying again, instead of failing the request.
    ExecutionModelWaiting {
        model: String,
        /// The attempt that was refused, from 1.
        attempt: u32,
        delay_ms: u64,
        /// The upstream HTTP status: 429, 503 or 529.
        status: u16,
    },
    /// A request of the execution's agent for `model` was answered by its `fallback` alias,
    /// because `model`'s provider is out of quota.
    ExecutionModelFallback {
        model: String,
        fallback: String,
        reason: String,
    },
    /// A provider said the account's quota is used up, answering this execution's request:
    /// it gets no requests, and agents that use only paused providers get no tasks, until
    /// `until`.
    ProviderPaused {
        provider: String,
        until: Timestamp,
        reason: String,
    },
    /// The pause of a provider ended; recorded on the execution whose request started it.
    ProviderResumed {
        provider: String,
    },
    /// Bursts of 429s lowered a provider's limit on requests under way, or quiet raised it;
    /// `None` when the limit is lifted. Recorded on the execution whose request changed it.
    ProviderThrottled {
        provider: String,
        #[serde(default)]
        limit: Option<u32>,
    },
    /// What the execution's agent CLI said it did, read from its machine output.
    ExecutionAgentEvent {
        /// The iteration whose process said it.
        iteration: u32,
        event: crate::AgentEvent,
    },
    /// The engine holding the execution's claim renewed its lease (see [`crate::lease`]).
    ExecutionLeaseRenewed {
        until: Timestamp,
    },
    /// The execution took an area lease (see [`crate::area`]), for its task or a sub-task's.
    ExecutionAreaLeaseTaken {
        lease: crate::AreaLease,
    },
    /// The execution's area lease ended before its time: released by the agent, or because
    /// the execution ended.
    ExecutionAreaLeaseReleased {
        lease: crate::AreaLeaseId,
        path: crate::AreaPath,
        reason: String,
    },
    /// The execution's area lease ran out of time.
    ExecutionAreaLeaseExpired {
        lease: crate::AreaLeaseId,
        path: crate::AreaPath,
    },
    /// A message was sent (see [`crate::message`]); the event of the message that creates it.
    MessageSent {
        message: crate::Message,
    },
    /// An alert identical to this open one was sent again and folded into it.
    MessageCoalesced {
        by: String,
    },
    /// The message was shown to the execution (in its prompt's inbox or `ctl msg inbox`).
    MessageDelivered {
        execution: ExecutionId,
    },
    /// The message was acknowledged, once; `by` names who did.
    MessageAcked {
        by: String,
    },
    /// An announcement (to a topic or to everyone) was acknowledged by one of its readers,
    /// agent `reader`, for itself, once; `by` names the execution that did. It stays open for
    /// the other readers until its time to live ends.
    MessageReaderAcked {
        reader: String,
        by: String,
    },
    /// The message will never be delivered, for `reason`.
    MessageDeadLettered {
        reason: String,
    },
}

impl EventKind {
    /// The stable `type` name of this event.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::TaskCreated { .. } => "task_created",
            EventKind::TaskEdited { .. } => "task_edited",
            EventKind::TaskStateChanged { .. } => "task_state_changed",
            EventKind::TaskDependencyAdded { .. } => "task_dependency_added",
            EventKind::TaskDependencyRemoved { .. } => "task_dependency_removed",
            EventKind::TaskNudged { .. } => "task_nudged",
            EventKind::TaskCommented { .. } => "task_commented",
            EventKind::TaskAnswered { .. } => "task_answered",
            EventKind::TaskFeedbackGiven { .. } => "task_feedback_given",
            EventKind::TaskScheduled { .. } => "task_scheduled",
            EventKind::TaskBranchSet { .. } => "task_branch_set",
            EventKind::TaskCompletionClaimed { .. } => "task_completion_claimed",
            EventKind::TaskHandedOff { .. } => "task_handed_off",
            EventKind::TaskHandoffVoided { .. } => "task_handoff_voided",
            EventKind::TaskMergePending { .. } => "task_merge_pending",
            EventKind::TaskMerged { .. } => "task_merged",
            EventKind::TaskMergeFailed { .. } => "task_merge_failed",
            EventKind::TaskLandStarted { .. } => "task_land_started",
            EventKind::TaskLanded { .. } => "task_landed",
            EventKind::TaskLandAbandoned { .. } => "task_land_abandoned",
            EventKind::TaskApprovalRequested { .. } => "task_approval_requested",
            EventKind::TaskApprovalDecided { .. } => "task_approval_decided",
            EventKind::TaskApprovalQuestioned { .. } => "task_approval_questioned",
            EventKind::TaskWorkflowStarted { .. } => "task_workflow_started",
            EventKind::TaskWorkflowStepped { .. } => "task_workflow_stepped",
            EventKind::TaskWorkflowBegun { .. } => "task_workflow_begun",
            EventKind::ExecutionCreated { .. } => "execution_created",
            EventKind::ExecutionStateChanged { .. } => "execution_state_changed",
            EventKind::ExecutionProcessStarted { .. } => "execution_process_started",
            EventKind::ExecutionProcessExited { .. } => "execution_process_exited",
            EventKind::ExecutionValidated { .. } => "execution_validated",
            EventKind::ExecutionCommitted { .. } => "execution_committed",
            EventKind::ExecutionFinished { .. } => "execution_finished",
            EventKind::ExecutionModelUsage { .. } => "execution_model_usage",
            EventKind::ExecutionModelWaiting { .. } => "execution_model_waiting",
            EventKind::ExecutionModelFallback { .. } => "execution_model_fallback",
            EventKind::ProviderPaused { .. } => "provider_paused",
            EventKind::ProviderResumed { .. } => "provider_resumed",
            EventKind::ProviderThrottled { .. } => "provider_throttled",
            EventKind::ExecutionAgentEvent { .. } => "execution_agent_event",
            EventKind::ExecutionLeaseRenewed { .. } => "execution_lease_renewed",
            EventKind::ExecutionAreaLeaseTaken { .. } => "execution_area_lease_taken",
            EventKind::ExecutionAreaLeaseReleased { .. } => "execution_area_lease_released",
            EventKind::ExecutionAreaLeaseExpired { .. } => "execution_area_lease_expired",
            EventKind::MessageSent { .. } => "message_sent",
            EventKind::MessageCoalesced { .. } => "message_coalesced",
            EventKind::MessageDelivered { .. } => "message_delivered",
            EventKind::MessageAcked { .. } => "message_acked",
            EventKind::MessageReaderAcked { .. } => "message_reader_acked",
            EventKind::MessageDeadLettered { .. } => "message_dead_lettered",
        }
    }

    /// One human line describing the change, for `agentgrid events` and progress output.
    pub fn describe(&self) -> String {
        match self {
            EventKind::TaskCreated { task } => match task.parent {
                Some(p) => format!("created \"{}\" under #{p}", task.title),
                None => format!("created \"{}\"", task.title),
            },
            EventKind::TaskEdited { .. } => "edited".into(),
            EventKind::TaskStateChanged { from, to, reason } => match reason {
                Some(r) => format!("{from} → {to}: {r}"),
                None => format!("{from} → {to}"),
            },
            EventKind::TaskDependencyAdded { blocked_by } => {
                format!("now blocked by #{blocked_by}")
            }
            EventKind::TaskDependencyRemoved { blocked_by } => {
                format!("no longer blocked by #{blocked_by}")
            }
            EventKind::TaskNudged { by } => format!("nudged by {by}"),
            EventKind::TaskCommented { author, text } => format!("{author}: {text}"),
            EventKind::TaskAnswered { author, text } => format!("{author} answered: {text}"),
            EventKind::TaskFeedbackGiven { author, text } => {
                format!("{author} gave feedback: {text}")
            }
            EventKind::TaskScheduled {
                not_before,
                attempts,
                reason,
                ..
            } => {
                let when = not_before
                    .map(|t| format!(" not before {t}"))
                    .unwrap_or_default();
                let why = reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                format!("scheduled{when}, {attempts} failed attempts{why}")
            }
            EventKind::TaskBranchSet { branch } => format!("works on branch {branch}"),
            EventKind::TaskCompletionClaimed { summary } => format!("agent claims done: {summary}"),
            EventKind::TaskHandedOff {
                from_agency,
                from_role,
                to_agency,
                to_role,
                summary,
                ..
            } => {
                let to = match to_role {
                    Some(role) => format!("{to_agency}/{role}"),
                    None => to_agency.clone(),
                };
                format!("handed off by {from_agency}/{from_role} to {to}: {summary}")
            }
            EventKind::TaskHandoffVoided {
                execution, reason, ..
            } => {
                format!("the handoff of execution #{execution} did not take effect: {reason}")
            }
            EventKind::TaskMergePending { child } => format!("merge of #{child} pending"),
            EventKind::TaskMerged { child, commit } => match commit {
                Some(c) => format!("merged #{child} ({})", &c[..c.len().min(10)]),
                None => format!("merged #{child} (nothing new)"),
            },
            EventKind::TaskMergeFailed { child, reason } => {
                format!("merge of #{child} failed: {reason}")
            }
            EventKind::TaskLandStarted {
                strategy,
                base,
                old,
                new,
            } => format!(
                "land ({strategy}) on {base} started: {} → {}",
                short(old),
                short(new)
            ),
            EventKind::TaskLanded {
                strategy,
                base,
                new,
                root,
                ..
            } => match root {
                Some(root) => format!("landed on {base} at {} with #{root}", short(new)),
                None => format!("landed ({strategy}) on {base} at {}", short(new)),
            },
            EventKind::TaskLandAbandoned { reason } => format!("land abandoned: {reason}"),
            EventKind::TaskApprovalRequested {
                approval,
                source,
                summary,
                ..
            } => format!("approval #{approval} requested by the {source}: {summary}"),
            EventKind::TaskApprovalDecided {
                approval,
                by,
                decision,
            } => match decision {
                Decision::Approve => format!("approval #{approval} approved by {by}"),
                Decision::Reject { feedback } => {
                    format!("approval #{approval} rejected by {by}: {feedback}")
                }
            },
            EventKind::TaskApprovalQuestioned {
                approval,
                by,
                question,
            } => format!("approval #{approval}: {by} asks: {question}"),
            EventKind::TaskWorkflowStarted { workflow, name, .. } => {
                format!("workflow run W{workflow} of `{name}` started")
            }
            EventKind::TaskWorkflowBegun {
                workflow,
                visit,
                state,
                command,
                ..
            } => format!("workflow run W{workflow} began {command} for `{state}` (visit {visit})"),
            EventKind::TaskWorkflowStepped {
                workflow,
                position,
                status,
                note,
                ..
            } => match position {
                Some(p) => format!("workflow run W{workflow} at `{p}` ({status}): {note}"),
                None => format!("workflow run W{workflow} ({status}): {note}"),
            },
            EventKind::ExecutionCreated { execution } => format!(
                "{} execution of #{} by {} (attempt {})",
                execution.kind, execution.task_id, execution.agent, execution.attempt
            ),
            EventKind::ExecutionStateChanged { from, to, reason } => match reason {
                Some(r) => format!("{from} → {to}: {r}"),
                None => format!("{from} → {to}"),
            },
            EventKind::ExecutionProcessStarted { pid, iteration, .. } => {
                format!("iteration {iteration} started, pid {pid}")
            }
            EventKind::ExecutionProcessExited {
                iteration,
                exit_code,
                signal,
            } => match (exit_code, signal) {
                (Some(c), _) => format!("iteration {iteration} exited with {c}"),
                (None, Some(s)) => format!("iteration {iteration} killed by signal {s}"),
                (None, None) => format!("iteration {iteration} ended"),
            },
            EventKind::ExecutionValidated {
                iteration,
                score,
                passed,
                results,
            } => {
                let mut line = format!(
                    "iteration {iteration} validation {} (score {})",
                    if *passed { "passed" } else { "failed" },
                    crate::text::score(*score)
                );
                // The failing validators and why, so that the log says more than a number.
                for r in results.iter().filter(|r| !r.passed) {
                    line.push_str(&format!("; {}", r.describe()));
                }
                line
            }
            EventKind::ExecutionCommitted { branch, commit } => {
                format!("committed {} on {branch}", &commit[..commit.len().min(10)])
            }
            EventKind::ExecutionFinished { state, summary, .. } => match summary {
                Some(s) => format!("finished {state}: {s}"),
                None => format!("finished {state}"),
            },
            EventKind::ExecutionModelUsage {
                model,
                input_tokens,
                output_tokens,
                cached_tokens,
                cost_micros,
            } => format!(
                "model {model}: {input_tokens} tokens in ({cached_tokens} cached), \
                 {output_tokens} out, {}",
                dollars(*cost_micros)
            ),
            EventKind::ExecutionModelWaiting {
                model,
                attempt,
                delay_ms,
                status,
            } => format!(
                "model {model} answered {status} on attempt {attempt}; retrying in {}",
                crate::Duration(*delay_ms)
            ),
            EventKind::ExecutionModelFallback {
                model,
                fallback,
                reason,
            } => format!("model {model} answered by its fallback {fallback}: {reason}"),
            EventKind::ProviderPaused {
                provider,
                until,
                reason,
            } => format!("provider {provider} paused until {until} ({reason})"),
            EventKind::ProviderResumed { provider } => format!("provider {provider} resumed"),
            EventKind::ExecutionAgentEvent { iteration, event } => {
                format!("agent (iteration {iteration}) {}", event.describe())
            }
            EventKind::ProviderThrottled { provider, limit } => match limit {
                Some(n) => format!(
                    "provider {provider} rate limited: at most {n} requests under way for a while"
                ),
                None => format!("provider {provider} no longer throttled"),
            },
            EventKind::ExecutionLeaseRenewed { until } => format!("lease renewed until {until}"),
            EventKind::ExecutionAreaLeaseTaken { lease } => format!(
                "area lease L{} on {} for task #{} until {}",
                lease.id, lease.path, lease.task, lease.expires_at
            ),
            EventKind::ExecutionAreaLeaseReleased {
                lease,
                path,
                reason,
            } => format!("area lease L{lease} on {path} released: {reason}"),
            EventKind::ExecutionAreaLeaseExpired { lease, path } => {
                format!("area lease L{lease} on {path} expired")
            }
            EventKind::MessageSent { message } => format!(
                "{} from {} to {}: {}",
                message.kind,
                message.sender,
                message.receiver,
                message.headline()
            ),
            EventKind::MessageCoalesced { by } => format!("the same alert again, from {by}"),
            EventKind::MessageDelivered { execution } => {
                format!("delivered to execution #{execution}")
            }
            EventKind::MessageAcked { by } => format!("acknowledged by {by}"),
            EventKind::MessageReaderAcked { reader, by } => {
                format!("acknowledged for agent {reader} by {by}")
            }
            EventKind::MessageDeadLettered { reason } => format!("dead letter: {reason}"),
        }
    }
}

/// The first seven characters of a commit id, as git abbreviates it.
pub fn short(commit: &str) -> &str {
    &commit[..commit.len().min(7)]
}

/// Millionths of a dollar written as dollars with four decimals, such as `$0.0123`.
pub fn dollars(micros: u64) -> String {
    // Rounded to the nearest hundredth of a cent by integer arithmetic, so large sums stay exact.
    let hundredths_of_cents = micros.saturating_add(50) / 100;
    format!(
        "${}.{:04}",
        hundredths_of_cents / 10_000,
        hundredths_of_cents % 10_000
    )
}

/// One validator's verdict on one iteration, with the evidence it rests on.
///
/// Events written before the evidence was kept hold only the first four fields; the rest
/// decode to their defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ValidatorResult {
    pub name: String,
    pub score: f64,
    pub passed: bool,
    pub weight: f64,
    /// The command as it was run, its words joined with spaces.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The signal that killed it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// It ran out of time and was killed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub timed_out: bool,
    #[serde(default)]
    pub duration_ms: u64,
    /// The test counts read from the runner's summary, where the rule reads one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<TestCounts>,
    /// Why it failed; `None` when it passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Only its score counts: it does not fail the iteration by itself.
    #[serde(default, skip_serializing_if = "is_false")]
    pub score_only: bool,
    /// The last few KiB of its output, stdout then stderr.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output_tail: String,
}

impl ValidatorResult {
    /// One human line: name, verdict, score, counts and the reason.
    pub fn describe(&self) -> String {
        let verdict = if self.passed { "passed" } else { "failed" };
        let mut line = format!(
            "{} {verdict} (score {}",
            self.name,
            crate::text::score(self.score)
        );
        if let Some(c) = &self.counts {
            line.push_str(&format!(", {c}"));
        }
        if self.duration_ms > 0 {
            line.push_str(&format!(", {}", crate::Duration(self.duration_ms)));
        }
        line.push(')');
        if self.score_only {
            line.push_str(" [score only]");
        }
        if let Some(r) = &self.reason {
            line.push_str(&format!(": {r}"));
        }
        line
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What a test runner's summary says. `errors` are tests (or collection, setup and teardown)
/// that broke rather than failed an assertion; every runner that reports them apart counts them
/// here, and both failures and errors fail a validator.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct TestCounts {
    pub passed: u64,
    pub failed: u64,
    #[serde(default)]
    pub errors: u64,
    #[serde(default)]
    pub skipped: u64,
}

impl TestCounts {
    /// Passed over passed, failed and errors; `None` when nothing ran.
    pub fn ratio(&self) -> Option<f64> {
        let total = self.passed + self.failed + self.errors;
        (total > 0).then(|| self.passed as f64 / total as f64)
    }
}

impl std::fmt::Display for TestCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} passed, {} failed", self.passed, self.failed)?;
        if self.errors > 0 {
            write!(f, ", {} errors", self.errors)?;
        }
        if self.skipped > 0 {
            write!(f, ", {} skipped", self.skipped)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_with_a_flat_type_tag() {
        let event = Event {
            seq: 7,
            at: Timestamp(1000),
            entity: EntityKind::Task,
            entity_id: 3,
            entity_seq: 2,
            actor: "cli".into(),
            kind: EventKind::TaskNudged { by: "cli".into() },
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "task_nudged");
        assert_eq!(json["seq"], 7);
        assert_eq!(json["by"], "cli");
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
        assert_eq!(event.kind.name(), "task_nudged");
    }

    #[test]
    fn model_usage_and_waiting_events_round_trip_and_read_well() {
        let usage = EventKind::ExecutionModelUsage {
            model: "sonnet".into(),
            input_tokens: 1200,
            output_tokens: 300,
            cached_tokens: 800,
            cost_micros: 12_345,
        };
        let json = serde_json::to_value(&usage).unwrap();
        assert_eq!(json["type"], "execution_model_usage");
        assert_eq!(json["cost_micros"], 12_345);
        assert_eq!(serde_json::from_value::<EventKind>(json).unwrap(), usage);
        assert_eq!(
            usage.describe(),
            "model sonnet: 1200 tokens in (800 cached), 300 out, $0.0123"
        );
        let waiting = EventKind::ExecutionModelWaiting {
            model: "sonnet".into(),
            attempt: 2,
            delay_ms: 1500,
            status: 429,
        };
        assert_eq!(waiting.name(), "execution_model_waiting");
        assert_eq!(
            waiting.describe(),
            "model sonnet answered 429 on attempt 2; retrying in 1s500ms"
        );
    }

    #[test]
    fn validation_events_written_before_evidence_was_kept_still_decode() {
        let old = serde_json::json!({
            "type": "execution_validated", "iteration": 1, "score": 0.5, "passed": false,
            "results": [{"name": "tests", "score": 0.5, "passed": false, "weight": 1.0}],
        });
        let kind: EventKind = serde_json::from_value(old).unwrap();
        let EventKind::ExecutionValidated { results, .. } = &kind else {
            panic!("{kind:?}");
        };
        assert_eq!(results[0].counts, None);
        assert_eq!(results[0].reason, None);
        assert_eq!(
            kind.describe(),
            "iteration 1 validation failed (score 0.50); tests failed (score 0.50)"
        );
        let new = EventKind::ExecutionValidated {
            iteration: 2,
            score: 0.99,
            passed: false,
            results: vec![ValidatorResult {
                name: "tests".into(),
                score: 0.99,
                weight: 1.0,
                command: "pytest -q".into(),
                exit_code: Some(1),
                duration_ms: 1500,
                counts: Some(TestCounts {
                    passed: 280,
                    failed: 0,
                    errors: 1,
                    skipped: 39,
                }),
                reason: Some("exited with 1; pytest reported 1 error".into()),
                output_tail: "E   fixture broke".into(),
                ..Default::default()
            }],
        };
        let json = serde_json::to_value(&new).unwrap();
        assert_eq!(json["results"][0]["counts"]["errors"], 1);
        assert_eq!(serde_json::from_value::<EventKind>(json).unwrap(), new);
        assert_eq!(
            new.describe(),
            "iteration 2 validation failed (score 0.99); tests failed (score 0.99, 280 passed, \
             0 failed, 1 errors, 39 skipped, 1s500ms): exited with 1; pytest reported 1 error"
        );
    }

    #[test]
    fn dollars_round_to_a_hundredth_of_a_cent() {
        assert_eq!(dollars(0), "$0.0000");
        assert_eq!(dollars(49), "$0.0000");
        assert_eq!(dollars(50), "$0.0001");
        assert_eq!(dollars(1_234_567), "$1.2346");
        assert_eq!(dollars(u64::MAX), "$18446744073709.5516");
    }
}
