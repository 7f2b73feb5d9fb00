//! What the gateway tells the engine: usage per request, waits on rate limits, and refusals
//! for budget.

use domain::{Duration, ExecutionId, ModelUsage, TaskId, Timestamp, Tokens};

/// One message from the gateway to the engine, on the channel given to
/// [`Gateway::new`](crate::Gateway::new).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A request finished (or its stream was cut) and used these tokens.
    Usage(UsageRecord),
    /// A provider refused a request as rate limited or overloaded; the gateway waits and tries
    /// again.
    Waiting(Waiting),
    /// A request was refused because a budget is used up. Sent once per execution; the engine
    /// should end the execution as `budget_exceeded`.
    BudgetExceeded(BudgetExceeded),
    /// A provider said the account's quota is used up: it gets no requests until `until`.
    /// Sent when a pause starts or its end moves later.
    ProviderPaused(ProviderPaused),
    /// A request of this execution was refused without reaching the provider, because the
    /// provider is paused and no fallback could take it.
    PausedRefusal(ProviderPaused),
    /// A request went to its alias's fallback because the alias's provider is out of quota;
    /// the agent got the fallback's answer.
    Fallback(Fallback),
    /// Bursts of 429s lowered a provider's limit on requests under way, or quiet raised it.
    ProviderThrottled(ProviderThrottled),
}

/// A provider's pause, and the execution whose request met it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderPaused {
    pub execution: ExecutionId,
    pub provider: String,
    pub until: Timestamp,
    /// Why, such as `quota: insufficient_quota`.
    pub reason: String,
}

impl ProviderPaused {
    /// The sentence an agent and a task are given: `provider openai paused until … (quota: …)`.
    pub fn describe(&self) -> String {
        format!(
            "provider {} paused until {} ({})",
            self.provider, self.until, self.reason
        )
    }
}

/// A request answered by `fallback` instead of `model`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    pub execution: ExecutionId,
    pub model: String,
    pub fallback: String,
    /// Why the alias's own provider could not answer.
    pub reason: String,
}

/// A provider's new limit on requests under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderThrottled {
    /// The execution whose request changed it.
    pub execution: ExecutionId,
    pub provider: String,
    /// `None` when the limit is lifted.
    pub limit: Option<u32>,
}

/// The tokens and cost of one model request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    pub execution: ExecutionId,
    pub task: TaskId,
    pub root: TaskId,
    pub agent: String,
    /// The alias the agent asked for.
    pub model: String,
    /// The request's tokens: `input` counts every input token, the cached ones included.
    pub tokens: Tokens,
    /// Millionths of a dollar, by the alias's prices.
    pub cost_micros: u64,
    /// False when the response ended before the provider's final usage report (the agent hung
    /// up mid-stream, or the provider cut it): the counts are what had been reported by then.
    pub complete: bool,
}

impl UsageRecord {
    /// The request as sums: what a budget or a view adds up.
    pub fn usage(&self) -> ModelUsage {
        ModelUsage::of_request(self.tokens, self.cost_micros)
    }
}

/// The gateway waits `delay` before attempt `attempt + 1` of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub execution: ExecutionId,
    pub model: String,
    /// The attempt that was refused, from 1.
    pub attempt: u32,
    pub delay: Duration,
    /// The provider's status: 429, 503 or 529.
    pub status: u16,
}

/// Which budget ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetScope {
    Execution,
    /// All executions in the task tree.
    Tree,
    /// All executions of the agent on this UTC day.
    AgentDay,
    /// All executions of the agents of one agency on this UTC day.
    AgencyDay,
    /// The task tree, as an agency's per-tree budget bounds it for its agents.
    AgencyTree,
}

impl BudgetScope {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetScope::Execution => "execution",
            BudgetScope::Tree => "task tree",
            BudgetScope::AgentDay => "agent's daily",
            BudgetScope::AgencyDay => "agency's daily",
            BudgetScope::AgencyTree => "agency's task tree",
        }
    }
}

/// A request refused for budget, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetExceeded {
    pub execution: ExecutionId,
    pub scope: BudgetScope,
    /// One sentence naming the budget and what was used, such as "the task tree budget of
    /// 100000 tokens is used up (100512 used)".
    pub reason: String,
}
