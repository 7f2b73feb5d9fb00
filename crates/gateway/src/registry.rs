//! Who may use the gateway, with which budgets, and what they have used so far.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use domain::{Clock, ExecutionId, TaskId, Timestamp};

use crate::notice::{BudgetExceeded, BudgetScope};

const DAY_MS: i64 = 86_400_000;

/// The UTC day `at` falls in, as `[start, end)`: the span a daily agent budget covers, and the
/// span to pass to the store when summing an agent's usage for the day.
pub fn day_bounds(at: Timestamp) -> (Timestamp, Timestamp) {
    let start = at.0 - at.0.rem_euclid(DAY_MS);
    (Timestamp(start), Timestamp(start + DAY_MS))
}

fn day_of(at: Timestamp) -> i64 {
    at.0.div_euclid(DAY_MS)
}

/// Sums of model requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub cost_micros: u64,
}

impl Totals {
    /// Input plus output tokens: what a token budget counts.
    pub fn tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    fn add(&mut self, other: &Totals) {
        self.requests = self.requests.saturating_add(other.requests);
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(other.cached_tokens);
        self.cost_micros = self.cost_micros.saturating_add(other.cost_micros);
    }

    /// Each field the larger of the two: both are lower bounds of what was really used.
    fn raise_to(&mut self, other: &Totals) {
        self.requests = self.requests.max(other.requests);
        self.input_tokens = self.input_tokens.max(other.input_tokens);
        self.output_tokens = self.output_tokens.max(other.output_tokens);
        self.cached_tokens = self.cached_tokens.max(other.cached_tokens);
        self.cost_micros = self.cost_micros.max(other.cost_micros);
    }
}

/// A cap on tokens, on cost, on both or on neither.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limit {
    /// Input plus output tokens.
    pub max_tokens: Option<u64>,
    /// Millionths of a dollar.
    pub max_cost_micros: Option<u64>,
}

impl Limit {
    /// Why `used` has reached this limit, or `None` while there is room left.
    fn reached(&self, used: &Totals) -> Option<String> {
        if let Some(max) = self.max_tokens
            && used.tokens() >= max
        {
            return Some(format!("{max} tokens is used up ({} used)", used.tokens()));
        }
        if let Some(max) = self.max_cost_micros
            && used.cost_micros >= max
        {
            return Some(format!(
                "{} is used up ({} spent)",
                domain::event::dollars(max),
                domain::event::dollars(used.cost_micros)
            ));
        }
        None
    }
}

/// The three budgets an execution's requests are checked against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budgets {
    pub execution: Limit,
    /// Shared by every execution in the task tree.
    pub tree: Limit,
    /// Shared by every execution of the agent on one UTC day.
    pub agent_day: Limit,
}

/// What the store already holds for the tree and the agent's day when an execution starts, so
/// budgets hold across engine restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Baseline {
    pub tree: Totals,
    pub agent_day: Totals,
}

/// Who a token belongs to. The engine registers one per execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub execution: ExecutionId,
    pub task: TaskId,
    /// The root of the task's tree (`Task::root`).
    pub root: TaskId,
    pub agent: String,
    pub budgets: Budgets,
    /// The model aliases this execution may use; `None` allows every alias.
    pub models: Option<Vec<String>>,
    pub baseline: Baseline,
}

impl Identity {
    /// Whether the execution may use `alias`.
    pub fn allows(&self, alias: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|list| list.iter().any(|m| m == alias))
    }
}

#[derive(Default)]
struct State {
    tokens: HashMap<String, Arc<Identity>>,
    executions: HashMap<ExecutionId, Totals>,
    trees: HashMap<TaskId, Totals>,
    agent_days: HashMap<(String, i64), Totals>,
    /// Executions already reported as over budget, so the engine hears it once.
    exceeded: HashSet<ExecutionId>,
}

/// The table of live execution tokens and the running totals budgets are checked against.
///
/// Cheap to clone; every clone shares the same table. The engine calls [`Registry::register`]
/// when an execution starts and [`Registry::revoke`] when it ends.
#[derive(Clone)]
pub struct Registry {
    state: Arc<Mutex<State>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens are credentials: only their number is shown.
        let state = self.lock();
        f.debug_struct("Registry")
            .field("tokens", &state.tokens.len())
            .field("executions", &state.executions.len())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// An empty registry reading the day for agent budgets from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Registry {
        Registry {
            state: Arc::new(Mutex::new(State::default())),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update below is complete between statements, so a poisoned lock holds
        // consistent data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lets requests carrying `token` in as `identity`. The identity's baseline raises the
    /// tree's and the agent's day totals where the store knows of more than this process saw.
    pub fn register(&self, token: impl Into<String>, identity: Identity) {
        let today = day_of(self.clock.now());
        let mut state = self.lock();
        state
            .trees
            .entry(identity.root)
            .or_default()
            .raise_to(&identity.baseline.tree);
        state
            .agent_days
            .entry((identity.agent.clone(), today))
            .or_default()
            .raise_to(&identity.baseline.agent_day);
        // Days before today can no longer be charged; forgetting them keeps the table small.
        state.agent_days.retain(|(_, day), _| *day >= today);
        state.executions.entry(identity.execution).or_default();
        state.tokens.insert(token.into(), Arc::new(identity));
    }

    /// Refuses `token` from now on; requests already under way finish and are still counted.
    /// Returns the identity it belonged to.
    pub fn revoke(&self, token: &str) -> Option<Identity> {
        let mut state = self.lock();
        let identity = state.tokens.remove(token)?;
        let still_used = state
            .tokens
            .values()
            .any(|i| i.execution == identity.execution);
        if !still_used {
            state.executions.remove(&identity.execution);
            state.exceeded.remove(&identity.execution);
        }
        let root_used = state.tokens.values().any(|i| i.root == identity.root);
        if !root_used {
            state.trees.remove(&identity.root);
        }
        Some(Arc::unwrap_or_clone(identity))
    }

    pub(crate) fn identity(&self, token: &str) -> Option<Arc<Identity>> {
        self.lock().tokens.get(token).cloned()
    }

    /// What the execution's requests used since it was registered.
    pub fn execution_totals(&self, execution: ExecutionId) -> Totals {
        self.lock()
            .executions
            .get(&execution)
            .copied()
            .unwrap_or_default()
    }

    /// What the tree used, as far as this registry knows (baselines included), while any of
    /// its executions is registered.
    pub fn tree_totals(&self, root: TaskId) -> Totals {
        self.lock().trees.get(&root).copied().unwrap_or_default()
    }

    /// What the agent used today (UTC), baselines included.
    pub fn agent_day_totals(&self, agent: &str) -> Totals {
        let today = day_of(self.clock.now());
        self.lock()
            .agent_days
            .get(&(agent.to_owned(), today))
            .copied()
            .unwrap_or_default()
    }

    /// Adds one request's usage to the execution's, the tree's and the agent's day totals.
    pub(crate) fn record(&self, identity: &Identity, used: &Totals) {
        let today = day_of(self.clock.now());
        let mut state = self.lock();
        if let Some(totals) = state.executions.get_mut(&identity.execution) {
            totals.add(used);
        }
        state.trees.entry(identity.root).or_default().add(used);
        state
            .agent_days
            .entry((identity.agent.clone(), today))
            .or_default()
            .add(used);
    }

    /// Checks the identity's three budgets. On a refusal, the second value says whether this
    /// is the first refusal for the execution, which is when the engine must hear of it.
    pub(crate) fn check(&self, identity: &Identity) -> Result<(), (BudgetExceeded, bool)> {
        let today = day_of(self.clock.now());
        let mut state = self.lock();
        let zero = Totals::default();
        let checks = [
            (
                BudgetScope::Execution,
                &identity.budgets.execution,
                state.executions.get(&identity.execution).unwrap_or(&zero),
            ),
            (
                BudgetScope::Tree,
                &identity.budgets.tree,
                state.trees.get(&identity.root).unwrap_or(&zero),
            ),
            (
                BudgetScope::AgentDay,
                &identity.budgets.agent_day,
                state
                    .agent_days
                    .get(&(identity.agent.clone(), today))
                    .unwrap_or(&zero),
            ),
        ];
        let Some((scope, why)) = checks
            .iter()
            .find_map(|(scope, limit, used)| limit.reached(used).map(|why| (*scope, why)))
        else {
            return Ok(());
        };
        let reason = format!("the {} budget of {why}", scope.as_str());
        let first = state.exceeded.insert(identity.execution);
        Err((
            BudgetExceeded {
                execution: identity.execution,
                scope,
                reason,
            },
            first,
        ))
    }
}

#[cfg(test)]
mod tests {
    use domain::ManualClock;

    use super::*;

    fn identity(execution: i64, root: i64, agent: &str, budgets: Budgets) -> Identity {
        Identity {
            execution: ExecutionId(execution),
            task: TaskId(root),
            root: TaskId(root),
            agent: agent.into(),
            budgets,
            models: None,
            baseline: Baseline::default(),
        }
    }

    fn used(tokens: u64, cost: u64) -> Totals {
        Totals {
            requests: 1,
            input_tokens: tokens,
            output_tokens: 0,
            cached_tokens: 0,
            cost_micros: cost,
        }
    }

    const T0: Timestamp = Timestamp(1_700_000_000_000);

    #[test]
    fn day_bounds_cover_the_utc_day() {
        let (start, end) = day_bounds(T0);
        assert!(start <= T0 && T0 < end);
        assert_eq!(end.0 - start.0, DAY_MS);
        assert_eq!(start.0 % DAY_MS, 0);
        assert_eq!(day_bounds(start), (start, end));
    }

    #[test]
    fn each_budget_refuses_once_its_limit_is_reached() {
        let clock = Arc::new(ManualClock::new(T0));
        let registry = Registry::new(clock.clone());
        let tight_execution = Budgets {
            execution: Limit {
                max_tokens: Some(100),
                max_cost_micros: None,
            },
            ..Budgets::default()
        };
        let a = identity(1, 10, "claude", tight_execution);
        registry.register("tok-a", a.clone());
        assert!(registry.check(&a).is_ok());
        registry.record(&a, &used(99, 0));
        assert!(registry.check(&a).is_ok(), "one token is left");
        registry.record(&a, &used(1, 0));
        let (over, first) = registry.check(&a).unwrap_err();
        assert!(first);
        assert_eq!(over.scope, BudgetScope::Execution);
        assert_eq!(
            over.reason,
            "the execution budget of 100 tokens is used up (100 used)"
        );
        let (_, again) = registry.check(&a).unwrap_err();
        assert!(!again, "the engine hears of an execution once");

        // The tree's cost budget is shared between executions of the same tree.
        let tree_budget = Budgets {
            tree: Limit {
                max_tokens: None,
                max_cost_micros: Some(1_000),
            },
            ..Budgets::default()
        };
        let b = identity(2, 20, "codex", tree_budget);
        let c = identity(3, 20, "claude", tree_budget);
        registry.register("tok-b", b.clone());
        registry.register("tok-c", c.clone());
        registry.record(&b, &used(5, 600));
        assert!(registry.check(&c).is_ok());
        registry.record(&b, &used(5, 400));
        let (over, _) = registry.check(&c).unwrap_err();
        assert_eq!(over.scope, BudgetScope::Tree);
        assert_eq!(over.execution, ExecutionId(3));
        assert!(
            over.reason.contains("$0.0010 is used up"),
            "{}",
            over.reason
        );
        assert_eq!(registry.tree_totals(TaskId(20)).cost_micros, 1_000);
        assert_eq!(registry.execution_totals(ExecutionId(3)), Totals::default());
    }

    #[test]
    fn the_agent_day_budget_starts_again_on_the_next_day() {
        let clock = Arc::new(ManualClock::new(T0));
        let registry = Registry::new(clock.clone());
        let daily = Budgets {
            agent_day: Limit {
                max_tokens: Some(50),
                max_cost_micros: None,
            },
            ..Budgets::default()
        };
        let a = identity(1, 10, "claude", daily);
        let other_agent = identity(2, 11, "codex", daily);
        registry.register("tok-a", a.clone());
        registry.register("tok-b", other_agent.clone());
        registry.record(&a, &used(60, 0));
        assert_eq!(
            registry.check(&a).unwrap_err().0.scope,
            BudgetScope::AgentDay
        );
        assert!(
            registry.check(&other_agent).is_ok(),
            "budgets are per agent"
        );
        let (_, end) = day_bounds(T0);
        clock.set(end);
        assert!(registry.check(&a).is_ok(), "a new day, a new budget");
        assert_eq!(registry.agent_day_totals("claude"), Totals::default());
    }

    #[test]
    fn a_baseline_from_the_store_counts_without_counting_twice() {
        let registry = Registry::new(Arc::new(ManualClock::new(T0)));
        let budgets = Budgets {
            tree: Limit {
                max_tokens: Some(1_000),
                max_cost_micros: None,
            },
            ..Budgets::default()
        };
        let mut first = identity(1, 10, "claude", budgets);
        first.baseline.tree = used(900, 0);
        registry.register("t1", first.clone());
        assert_eq!(registry.tree_totals(TaskId(10)).tokens(), 900);
        registry.record(&first, &used(50, 0));
        // The store has caught up with the first 900 and part of the 50; the baseline for a
        // second execution must not add the 900 again.
        let mut second = identity(2, 10, "claude", budgets);
        second.baseline.tree = used(920, 0);
        registry.register("t2", second.clone());
        assert_eq!(registry.tree_totals(TaskId(10)).tokens(), 950);
        registry.record(&second, &used(50, 0));
        assert!(registry.check(&second).is_err());
    }

    #[test]
    fn revoked_tokens_are_refused_and_their_totals_forgotten() {
        let registry = Registry::new(Arc::new(ManualClock::new(T0)));
        let a = identity(1, 10, "claude", Budgets::default());
        registry.register("tok-a", a.clone());
        assert!(registry.identity("tok-a").is_some());
        assert!(registry.identity("tok-b").is_none());
        registry.record(&a, &used(5, 1));
        assert_eq!(registry.execution_totals(ExecutionId(1)).requests, 1);
        assert_eq!(registry.revoke("tok-a"), Some(a.clone()));
        assert!(registry.identity("tok-a").is_none());
        assert_eq!(registry.revoke("tok-a"), None);
        assert_eq!(registry.execution_totals(ExecutionId(1)), Totals::default());
        // A stream that ends after the revoke is still counted for the agent's day.
        registry.record(&a, &used(5, 1));
        assert_eq!(registry.agent_day_totals("claude").requests, 2);
        let shown = format!("{registry:?}");
        assert!(!shown.contains("tok-a"), "{shown}");
    }
}
