//! The policy knobs the scheduler obeys: caps, retries, timers, guards and the agents it routes to.
//!
//! This is plain data. The `manifest` crate reads it from YAML and converts; the scheduler never
//! sees a file.

use std::collections::BTreeMap;

use domain::policy::defaults;
pub use domain::{Completion, Guards, RetryPolicy};
use domain::{Duration, ExecutionKind};

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Most executions active at once across the whole node.
    pub global_concurrency: u32,
    /// Most executions active at once among tasks carrying a label.
    pub per_label: BTreeMap<String, u32>,
    pub retry: RetryPolicy,
    /// Delay before running a task again after a clean exit that did not finish it.
    pub continuation_delay: Duration,
    /// Clean exits in a row that may leave a task unfinished before it counts as a failed attempt.
    pub max_continuations: u32,
    /// While sub-tasks run, their parent is resumed this often.
    pub resume_interval: Duration,
    pub guards: Guards,
    /// In the order they were declared; ties in routing go to the earlier one.
    pub agents: Vec<AgentPolicy>,
    /// Groups of agents tasks are routed to by capability first; in the order declared.
    pub agencies: Vec<crate::AgencyPolicy>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            global_concurrency: defaults::GLOBAL_CONCURRENCY,
            per_label: BTreeMap::new(),
            retry: RetryPolicy::default(),
            continuation_delay: defaults::CONTINUATION_DELAY,
            max_continuations: defaults::MAX_CONTINUATIONS,
            resume_interval: defaults::RESUME_INTERVAL,
            guards: Guards::default(),
            agents: Vec::new(),
            agencies: Vec::new(),
        }
    }
}

/// What the scheduler needs to know about one agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentPolicy {
    pub name: String,
    /// Takes tasks having at least one of these labels (empty: no label requirement).
    pub labels: Vec<String>,
    /// A task labelled `needs:X` goes only to an agent with capability X.
    pub capabilities: Vec<String>,
    /// Takes tasks no other agent matches.
    pub default: bool,
    pub kinds: Vec<ExecutionKind>,
    pub concurrency: Option<u32>,
    pub max_attempts: u32,
    /// Wall time allowed for one iteration of the agent process.
    pub timeout: Duration,
    /// Silence (no output, no control call) allowed before the execution counts as stalled.
    pub stall_timeout: Duration,
    pub completion: Completion,
    /// The agent has validators, so its clean exit proves nothing by itself: its work is done
    /// only when they pass. A parent routed to it is judged by them on the merged tree.
    pub validators: bool,
    /// The model providers the agent's models go through. While every one of them is paused
    /// (a used-up quota, [`Snapshot::paused_providers`](crate::Snapshot)) the agent is given no
    /// task. Empty: the agent uses no models, and no pause holds it.
    pub providers: Vec<String>,
}

impl AgentPolicy {
    /// An agent that takes any task, of either kind, with the default limits.
    pub fn new(name: impl Into<String>) -> AgentPolicy {
        AgentPolicy {
            name: name.into(),
            labels: Vec::new(),
            capabilities: Vec::new(),
            default: false,
            kinds: vec![ExecutionKind::Work, ExecutionKind::Resume],
            concurrency: None,
            max_attempts: 3,
            timeout: Duration::from_mins(30),
            stall_timeout: Duration::from_mins(5),
            completion: Completion::Exit,
            validators: false,
            providers: Vec::new(),
        }
    }
}

impl Config {
    pub fn agent(&self, name: &str) -> Option<&AgentPolicy> {
        self.agents.iter().find(|a| a.name == name)
    }

    /// The agency `agent` is a member of, if any.
    pub fn agency_of(&self, agent: &str) -> Option<&crate::AgencyPolicy> {
        self.agencies.iter().find(|a| a.has_member(agent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_and_stops_at_the_cap() {
        let retry = RetryPolicy {
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(60),
        };
        let delays: Vec<u64> = (1..=6)
            .map(|n| retry.backoff(n).as_millis() / 1000)
            .collect();
        assert_eq!(delays, vec![10, 20, 40, 60, 60, 60]);
        assert_eq!(
            retry.backoff(1000),
            Duration::from_secs(60),
            "huge counts do not overflow"
        );
    }
}
