//! The sums agency metrics are made of, per agent, as [`Store::agent_metrics`] reads them.
//!
//! [`Store::agent_metrics`]: crate::Store::agent_metrics

use serde::Serialize;

/// What one agent's tasks and executions add up to. A task counts for the agent of its latest
/// execution (the one that finished it, for a done task); a handoff counts for the agent whose
/// process started first after it on the task. Rates and means are left to the reader, so
/// that sums of several agents (an agency) stay exact.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AgentMetrics {
    pub agent: String,
    /// Tasks whose latest execution is this agent's.
    pub tasks: u64,
    /// Of them, done.
    pub done: u64,
    /// Done without human help: no rejected approval, no answer to a block or an escalation,
    /// no person's feedback.
    pub done_unaided: u64,
    /// Tasks with at least one decided approval, and those whose first decision approved.
    pub approvals_decided: u64,
    pub approvals_first_pass: u64,
    /// Handoffs followed by a process start of this agent on the task, and the milliseconds
    /// from each handoff to that start, summed.
    pub handoffs: u64,
    pub handoff_ms: u64,
    /// The model cost and the executions' wall time of the done tasks, summed.
    pub done_cost_micros: u64,
    pub done_wall_ms: u64,
    /// This agent's executions, and the distinct tasks they ran on.
    pub executions: u64,
    pub executed_tasks: u64,
}

impl AgentMetrics {
    /// Adds `other`'s sums to these (the name stays).
    pub fn add(&mut self, other: &AgentMetrics) {
        self.tasks += other.tasks;
        self.done += other.done;
        self.done_unaided += other.done_unaided;
        self.approvals_decided += other.approvals_decided;
        self.approvals_first_pass += other.approvals_first_pass;
        self.handoffs += other.handoffs;
        self.handoff_ms += other.handoff_ms;
        self.done_cost_micros += other.done_cost_micros;
        self.done_wall_ms += other.done_wall_ms;
        self.executions += other.executions;
        self.executed_tasks += other.executed_tasks;
    }
}
