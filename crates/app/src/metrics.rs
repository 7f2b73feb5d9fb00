//! Agency metrics (`agentgrid metrics`, a line of `status`): the store's sums per agent, put
//! together per agency and as rates and means a person reads.
//!
//! Which agency an agent is in is the manifests' to say, which the app does not read: the face
//! passes the map. An agent outside any agency is counted alone.

use std::collections::BTreeMap;

use domain::Timestamp;
use serde::Serialize;
use store::AgentMetrics;

use crate::{Actor, App, Error, Query};

/// The metrics of the tasks updated (and executions queued) at or after `since`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics {
    pub since: Option<Timestamp>,
    /// Each agent's agency, by agent name.
    pub agencies: BTreeMap<String, String>,
}

/// What `agentgrid metrics` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricsReport {
    pub since: Option<Timestamp>,
    /// One row per agency with any task or execution, by name.
    pub agencies: Vec<MetricsRow>,
    /// One row per agent, by name.
    pub agents: Vec<MetricsRow>,
    pub total: MetricsRow,
}

/// One agent's, one agency's or everyone's metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricsRow {
    pub name: String,
    /// The agent's agency (for an agent's row).
    pub agency: Option<String>,
    pub tasks: u64,
    pub done: u64,
    pub done_unaided: u64,
    /// `done_unaided / done`.
    pub unaided_rate: Option<f64>,
    pub approvals_decided: u64,
    pub approvals_first_pass: u64,
    /// `approvals_first_pass / approvals_decided`.
    pub first_pass_rate: Option<f64>,
    pub handoffs: u64,
    pub mean_handoff_ms: Option<u64>,
    pub cost_micros_per_done: Option<u64>,
    /// The same, as text (`$0.0123`).
    pub cost_per_done: Option<String>,
    pub wall_ms_per_done: Option<u64>,
    pub executions: u64,
    /// `executions / executed tasks`.
    pub executions_per_task: Option<f64>,
}

impl MetricsRow {
    pub fn of(name: &str, agency: Option<&str>, m: &AgentMetrics) -> MetricsRow {
        let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
        let mean = |a: u64, b: u64| (b > 0).then(|| (a + b / 2) / b);
        let cost = mean(m.done_cost_micros, m.done);
        MetricsRow {
            name: name.to_string(),
            agency: agency.map(str::to_string),
            tasks: m.tasks,
            done: m.done,
            done_unaided: m.done_unaided,
            unaided_rate: ratio(m.done_unaided, m.done),
            approvals_decided: m.approvals_decided,
            approvals_first_pass: m.approvals_first_pass,
            first_pass_rate: ratio(m.approvals_first_pass, m.approvals_decided),
            handoffs: m.handoffs,
            mean_handoff_ms: mean(m.handoff_ms, m.handoffs),
            cost_micros_per_done: cost,
            cost_per_done: cost.map(domain::event::dollars),
            wall_ms_per_done: mean(m.done_wall_ms, m.done),
            executions: m.executions,
            executions_per_task: ratio(m.executions, m.executed_tasks),
        }
    }
}

#[async_trait::async_trait]
impl Query for Metrics {
    type Output = MetricsReport;

    async fn run(self, app: &App, _actor: &Actor) -> Result<MetricsReport, Error> {
        let per_agent = app.store.agent_metrics(self.since).await?;
        let mut total = AgentMetrics::default();
        let mut by_agency: BTreeMap<&str, AgentMetrics> = BTreeMap::new();
        let mut agents = Vec::with_capacity(per_agent.len());
        for m in &per_agent {
            total.add(m);
            let agency = self.agencies.get(&m.agent).map(String::as_str);
            if let Some(a) = agency {
                by_agency.entry(a).or_default().add(m);
            }
            agents.push(MetricsRow::of(&m.agent, agency, m));
        }
        Ok(MetricsReport {
            since: self.since,
            agencies: by_agency
                .iter()
                .map(|(name, m)| MetricsRow::of(name, None, m))
                .collect(),
            agents,
            total: MetricsRow::of("total", None, &total),
        })
    }
}
