//! What the agents' CLIs said they did, read from the executions' events, and its summary.

use domain::{AgentEvent, EntityKind, EventKind, ExecutionId, Tokens};
use store::Store;

/// One agent event as recorded: its iteration and the event.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    pub iteration: u32,
    pub event: AgentEvent,
}

/// Every agent event an execution recorded, in order.
pub async fn agent_events(
    store: &dyn Store,
    execution: ExecutionId,
) -> Result<Vec<AgentRecord>, store::Error> {
    let events = store
        .entity_events(EntityKind::Execution, execution.0)
        .await?;
    Ok(events
        .into_iter()
        .filter_map(|ev| match ev.kind {
            EventKind::ExecutionAgentEvent { iteration, event } => {
                Some(AgentRecord { iteration, event })
            }
            _ => None,
        })
        .collect())
}

/// The counts `task show` prints for an execution's agent events.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AgentSummary {
    pub execution: ExecutionId,
    pub session: Option<String>,
    pub messages: u32,
    pub tool_calls: u32,
    pub failed_tool_calls: u32,
    /// The CLI's own token count over all iterations. The CLI's output is the agent's, so
    /// the sum saturates rather than overflow on made-up numbers.
    pub reported_tokens: Tokens,
    /// The last final result: its text and whether the CLI called it a failure.
    pub result: Option<(String, bool)>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

impl AgentSummary {
    /// The summary of `execution`'s records; `None` when it has none.
    pub fn of(execution: ExecutionId, records: &[AgentRecord]) -> Option<AgentSummary> {
        if records.is_empty() {
            return None;
        }
        let mut s = AgentSummary {
            execution,
            session: None,
            messages: 0,
            tool_calls: 0,
            failed_tool_calls: 0,
            reported_tokens: Tokens::default(),
            result: None,
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        for r in records {
            match &r.event {
                AgentEvent::Session { id } => s.session = Some(id.clone()),
                AgentEvent::Message { .. } => s.messages += 1,
                AgentEvent::ToolCall { failed, .. } => {
                    s.tool_calls += 1;
                    s.failed_tool_calls += u32::from(*failed);
                }
                AgentEvent::Usage {
                    input_tokens,
                    output_tokens,
                    cached_tokens,
                } => s.reported_tokens.add(&Tokens {
                    input: *input_tokens,
                    output: *output_tokens,
                    cached: *cached_tokens,
                }),
                AgentEvent::Error { message } => s.errors.push(message.clone()),
                AgentEvent::Warning { message } => s.warnings.push(message.clone()),
                AgentEvent::Result { text, is_error } => s.result = Some((text.clone(), *is_error)),
                AgentEvent::Dropped { .. } => {}
            }
        }
        Some(s)
    }
}
