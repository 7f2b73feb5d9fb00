//! Who may use the gateway, with which budgets, and what they have used so far.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use domain::{Clock, ExecutionId, TaskId, Timestamp};
use tokio::sync::Notify;

use crate::config::Prices;
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

/// Sums of model requests: the one type the store and the views use too.
pub use domain::ModelUsage;

/// A cap on tokens, on cost, on both or on neither.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limit {
    /// Input plus output tokens.
    pub max_tokens: Option<u64>,
    /// Millionths of a dollar.
    pub max_cost_micros: Option<u64>,
}

impl Limit {
    /// Whether this limit caps nothing.
    pub fn is_unlimited(&self) -> bool {
        self.max_tokens.is_none() && self.max_cost_micros.is_none()
    }

    /// Why `used` has gone over this limit (more than it, not merely all of it), or `None`.
    fn exceeded(&self, used: &ModelUsage) -> Option<String> {
        if let Some(max) = self.max_tokens
            && used.tokens.total() > max
        {
            return Some(format!(
                "{max} tokens was exceeded ({} used)",
                used.tokens.total()
            ));
        }
        if let Some(max) = self.max_cost_micros
            && used.cost_micros > max
        {
            return Some(format!(
                "{} was exceeded ({} spent)",
                domain::event::dollars(max),
                domain::event::dollars(used.cost_micros)
            ));
        }
        None
    }

    /// Why a request of `input` estimated input tokens cannot be admitted under this limit.
    fn short_of(&self, used: &ModelUsage, input: u64) -> String {
        if let Some(why) = self.reached(used) {
            return why;
        }
        let what = match self.max_tokens {
            Some(max)
                if used
                    .tokens
                    .total()
                    .saturating_add(input + MIN_OUTPUT_TOKENS)
                    > max =>
            {
                format!(
                    "{max} tokens is nearly used up ({} used)",
                    used.tokens.total()
                )
            }
            _ => format!(
                "{} is nearly used up ({} spent)",
                domain::event::dollars(self.max_cost_micros.unwrap_or_default()),
                domain::event::dollars(used.cost_micros)
            ),
        };
        format!(
            "{what}: too little is left for this request's estimated {input} input tokens and \
             {MIN_OUTPUT_TOKENS} output tokens"
        )
    }

    /// Why `used` has reached this limit, or `None` while there is room left.
    fn reached(&self, used: &ModelUsage) -> Option<String> {
        if let Some(max) = self.max_tokens
            && used.tokens.total() >= max
        {
            return Some(format!(
                "{max} tokens is used up ({} used)",
                used.tokens.total()
            ));
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
    pub tree: ModelUsage,
    pub agent_day: ModelUsage,
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
    /// The model aliases this execution may use; `None` allows every alias. The first is the
    /// execution's own alias, which a model name matching no alias is mapped to.
    pub models: Option<Vec<String>>,
    pub baseline: Baseline,
    /// The agency the agent is in, when that agency has a daily budget.
    pub agency: Option<AgencyBudget>,
}

/// An agency's budgets: its daily one, shared by every execution of its agents on one UTC
/// day, and its task tree one, the most a tree may have spent for the agency's agents to
/// spend more in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgencyBudget {
    pub name: String,
    pub day: Limit,
    pub tree: Limit,
    /// What the store holds for the agency's agents today when the execution starts.
    pub baseline: ModelUsage,
}

impl Identity {
    /// Whether the execution may use `alias`.
    pub fn allows(&self, alias: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|list| list.iter().any(|m| m == alias))
    }
}

/// What a budget scope has used, and what the requests under way in it have reserved.
#[derive(Debug, Default, Clone, Copy)]
struct Account {
    used: ModelUsage,
    /// Tokens and cost reserved by admitted requests that have not been settled yet.
    reserved_tokens: u64,
    reserved_cost: u64,
    /// How many requests hold those reservations.
    holders: u64,
}

impl Account {
    fn hold(&mut self, tokens: u64, cost: u64) {
        self.reserved_tokens = self.reserved_tokens.saturating_add(tokens);
        self.reserved_cost = self.reserved_cost.saturating_add(cost);
        self.holders += 1;
    }

    fn release(&mut self, tokens: u64, cost: u64) {
        self.reserved_tokens = self.reserved_tokens.saturating_sub(tokens);
        self.reserved_cost = self.reserved_cost.saturating_sub(cost);
        self.holders = self.holders.saturating_sub(1);
    }

    /// The most output tokens a request with `input` estimated input tokens may be given
    /// within `limit`, counting what is used and reserved. `u64::MAX` when the limit caps
    /// nothing.
    fn room_for_output(&self, limit: &Limit, input: u64, prices: &Prices) -> u64 {
        let mut room = u64::MAX;
        if let Some(max) = limit.max_tokens {
            let committed = self
                .used
                .tokens
                .total()
                .saturating_add(self.reserved_tokens);
            room = room.min(max.saturating_sub(committed).saturating_sub(input));
        }
        if let Some(max) = limit.max_cost_micros {
            let held = self.used.cost_micros.saturating_add(self.reserved_cost);
            let committed = held.saturating_add(prices.cost_micros(input, 0, 0));
            // A budget spent to the last millionth is used up, even for a free request.
            if held >= max || committed > max {
                room = 0;
            } else if prices.output > 0 {
                // Rounded down, and a token less, so that the rounding in `cost_micros` can
                // never take the reservation over the limit.
                let tokens = u128::from(max - committed) * 1_000_000 / u128::from(prices.output);
                room = room.min(u64::try_from(tokens).unwrap_or(u64::MAX).saturating_sub(1));
            }
        }
        room
    }
}

/// The fewest output tokens a request is admitted with: below this the budget counts as used
/// up (some APIs refuse smaller caps, and an answer of a few tokens is of no use).
pub const MIN_OUTPUT_TOKENS: u64 = 16;

/// What a request asks for, as the gateway estimates it before sending it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Estimate {
    /// Input tokens counted from the request body.
    pub input_tokens: u64,
    /// The output cap the request names, if any.
    pub requested_output: Option<u64>,
    /// The cap to set when the request names none and a budget applies.
    pub default_output: u64,
    pub prices: Prices,
}

/// An admitted request's hold on its budgets, released when it is settled.
#[derive(Debug)]
pub(crate) struct Reservation {
    identity: Arc<Identity>,
    day: i64,
    tokens: u64,
    cost: u64,
    /// The input tokens the reservation was made for.
    pub input_tokens: u64,
    /// The output tokens it was made for, when the request has a cap.
    pub output_tokens: Option<u64>,
    /// The cap the gateway must set on the request whenever a budget applies: the request's
    /// own, or less when the budget leaves less room.
    pub set_cap: Option<u64>,
    settled: bool,
}

/// What admission decides.
pub(crate) enum Admission {
    Granted(Reservation),
    /// No room now, but requests under way hold reservations in the scope that is short:
    /// ask again when one settles.
    Wait,
    /// The budget is used up; the flag says whether this is the execution's first refusal.
    Refused(BudgetExceeded, bool),
}

#[derive(Default)]
struct State {
    tokens: HashMap<String, Arc<Identity>>,
    executions: HashMap<ExecutionId, Account>,
    trees: HashMap<TaskId, Account>,
    agent_days: HashMap<(String, i64), Account>,
    agency_days: HashMap<(String, i64), Account>,
    /// Executions already reported as over budget, so the engine hears it once.
    exceeded: HashSet<ExecutionId>,
    /// Reservations not yet settled, over every execution.
    outstanding: u64,
}

/// The table of live execution tokens and the running totals budgets are checked against.
///
/// Cheap to clone; every clone shares the same table. The engine calls [`Registry::register`]
/// when an execution starts and [`Registry::revoke`] when it ends.
#[derive(Clone)]
pub struct Registry {
    state: Arc<Mutex<State>>,
    clock: Arc<dyn Clock>,
    /// Woken whenever a reservation is settled.
    settled: Arc<Notify>,
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
            settled: Arc::new(Notify::new()),
        }
    }

    /// The time on the registry's clock: what pauses and the throttle are measured by.
    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
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
            .used
            .raise_to(&identity.baseline.tree);
        state
            .agent_days
            .entry((identity.agent.clone(), today))
            .or_default()
            .used
            .raise_to(&identity.baseline.agent_day);
        if let Some(agency) = &identity.agency {
            state
                .agency_days
                .entry((agency.name.clone(), today))
                .or_default()
                .used
                .raise_to(&agency.baseline);
        }
        // Days before today can no longer be charged; forgetting them keeps the table small.
        state
            .agent_days
            .retain(|(_, day), account| *day >= today || account.holders > 0);
        state
            .agency_days
            .retain(|(_, day), account| *day >= today || account.holders > 0);
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
        let root_held = state
            .trees
            .get(&identity.root)
            .is_some_and(|a| a.holders > 0);
        if !root_used && !root_held {
            state.trees.remove(&identity.root);
        }
        Some(Arc::unwrap_or_clone(identity))
    }

    pub(crate) fn identity(&self, token: &str) -> Option<Arc<Identity>> {
        self.lock().tokens.get(token).cloned()
    }

    /// What the execution's requests used since it was registered.
    pub fn execution_totals(&self, execution: ExecutionId) -> ModelUsage {
        self.lock()
            .executions
            .get(&execution)
            .map(|a| a.used)
            .unwrap_or_default()
    }

    /// What the tree used, as far as this registry knows (baselines included), while any of
    /// its executions is registered.
    pub fn tree_totals(&self, root: TaskId) -> ModelUsage {
        self.lock()
            .trees
            .get(&root)
            .map(|a| a.used)
            .unwrap_or_default()
    }

    /// What the agent used today (UTC), baselines included.
    pub fn agent_day_totals(&self, agent: &str) -> ModelUsage {
        let today = day_of(self.clock.now());
        self.lock()
            .agent_days
            .get(&(agent.to_owned(), today))
            .map(|a| a.used)
            .unwrap_or_default()
    }

    /// What the agency's agents used today (UTC), baselines included.
    pub fn agency_day_totals(&self, agency: &str) -> ModelUsage {
        let today = day_of(self.clock.now());
        self.lock()
            .agency_days
            .get(&(agency.to_owned(), today))
            .map(|a| a.used)
            .unwrap_or_default()
    }

    /// Adds one request's usage to the execution's, the tree's and the agent's day totals.
    #[cfg(test)]
    pub(crate) fn record(&self, identity: &Identity, used: &ModelUsage) {
        let today = day_of(self.clock.now());
        let mut state = self.lock();
        add_usage(&mut state, identity, today, used);
    }

    /// How many admitted requests have not been settled yet, over every execution.
    pub fn requests_under_way(&self) -> u64 {
        self.lock().outstanding
    }

    /// Waits until no admitted request is left unsettled, or `timeout` has passed; true when
    /// none is left. The engine calls it before it stops so that late usage is recorded.
    pub async fn settle_all(&self, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.requests_under_way() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.requests_under_way() == 0;
            }
        }
    }

    /// A future that completes at the next settlement; create it before [`Registry::admit`]
    /// so that a settlement in between is not missed.
    pub(crate) fn next_settlement(&self) -> tokio::sync::futures::OwnedNotified {
        Arc::clone(&self.settled).notified_owned()
    }

    /// Admits a request against every budget that applies to `identity`, in one step under
    /// one lock: all three scopes are reserved, or none. The output cap is the request's own,
    /// or `default_output` when it names none and a budget applies, lowered to what every
    /// scope has room for.
    pub(crate) fn admit(&self, identity: &Arc<Identity>, estimate: &Estimate) -> Admission {
        let today = day_of(self.clock.now());
        let mut state = self.lock();
        let zero = Account::default();
        let day_key = (identity.agent.clone(), today);
        let agency_key = identity.agency.as_ref().map(|a| (a.name.clone(), today));
        let mut scopes = vec![
            (
                BudgetScope::Execution,
                &identity.budgets.execution,
                *state.executions.get(&identity.execution).unwrap_or(&zero),
            ),
            (
                BudgetScope::Tree,
                &identity.budgets.tree,
                *state.trees.get(&identity.root).unwrap_or(&zero),
            ),
            (
                BudgetScope::AgentDay,
                &identity.budgets.agent_day,
                *state.agent_days.get(&day_key).unwrap_or(&zero),
            ),
        ];
        if let (Some(agency), Some(key)) = (&identity.agency, &agency_key) {
            scopes.push((
                BudgetScope::AgencyDay,
                &agency.day,
                *state.agency_days.get(key).unwrap_or(&zero),
            ));
            scopes.push((
                BudgetScope::AgencyTree,
                &agency.tree,
                *state.trees.get(&identity.root).unwrap_or(&zero),
            ));
        }
        let limited = scopes.iter().any(|(_, limit, _)| !limit.is_unlimited());
        let input = estimate.input_tokens;
        let mut cap = estimate.requested_output;
        let mut set_cap = None;
        if limited {
            let wanted = estimate.requested_output.unwrap_or(estimate.default_output);
            // A request that asks for fewer tokens than the floor needs only those.
            let floor = wanted.clamp(1, MIN_OUTPUT_TOKENS);
            let mut granted = wanted;
            let mut short = Vec::new();
            for (scope, limit, account) in &scopes {
                let room = account.room_for_output(limit, input, &estimate.prices);
                if room < floor {
                    short.push((*scope, **limit, *account));
                }
                granted = granted.min(room);
            }
            // Waiting helps only when every scope that is short has reservations that may
            // give room back when they settle.
            if let Some((scope, limit, account)) =
                short.iter().find(|(_, _, account)| account.holders == 0)
            {
                let reason = format!(
                    "{} of {}",
                    scope_name(identity, *scope),
                    limit.short_of(&account.used, input)
                );
                let first = state.exceeded.insert(identity.execution);
                return Admission::Refused(
                    BudgetExceeded {
                        execution: identity.execution,
                        scope: *scope,
                        reason,
                    },
                    first,
                );
            }
            if !short.is_empty() {
                return Admission::Wait;
            }
            // Set even when it equals the request's own: every cap field is rewritten, so a
            // request that names one twice cannot have the provider read a larger one.
            set_cap = Some(granted);
            cap = Some(granted);
        }
        let tokens = input.saturating_add(cap.unwrap_or(0));
        let cost = estimate.prices.cost_micros(input, cap.unwrap_or(0), 0);
        state
            .executions
            .entry(identity.execution)
            .or_default()
            .hold(tokens, cost);
        state
            .trees
            .entry(identity.root)
            .or_default()
            .hold(tokens, cost);
        state
            .agent_days
            .entry(day_key)
            .or_default()
            .hold(tokens, cost);
        if let Some(key) = agency_key {
            state.agency_days.entry(key).or_default().hold(tokens, cost);
        }
        state.outstanding += 1;
        Admission::Granted(Reservation {
            identity: Arc::clone(identity),
            day: today,
            tokens,
            cost,
            input_tokens: input,
            output_tokens: cap,
            set_cap,
            settled: false,
        })
    }

    /// Replaces a reservation by what the request really used, once; later calls do nothing.
    pub(crate) fn settle(&self, reservation: &mut Reservation, used: &ModelUsage) {
        self.release(reservation, Some(used));
    }

    fn release(&self, reservation: &mut Reservation, used: Option<&ModelUsage>) {
        if std::mem::replace(&mut reservation.settled, true) {
            return;
        }
        let today = day_of(self.clock.now());
        let identity = Arc::clone(&reservation.identity);
        {
            let mut state = self.lock();
            let (tokens, cost) = (reservation.tokens, reservation.cost);
            if let Some(account) = state.executions.get_mut(&identity.execution) {
                account.release(tokens, cost);
            }
            if let Some(account) = state.trees.get_mut(&identity.root) {
                account.release(tokens, cost);
            }
            if let Some(account) = state
                .agent_days
                .get_mut(&(identity.agent.clone(), reservation.day))
            {
                account.release(tokens, cost);
            }
            if let Some(agency) = &identity.agency
                && let Some(account) = state
                    .agency_days
                    .get_mut(&(agency.name.clone(), reservation.day))
            {
                account.release(tokens, cost);
            }
            if let Some(used) = used {
                add_usage(&mut state, &identity, today, used);
            }
            state.outstanding = state.outstanding.saturating_sub(1);
        }
        self.settled.notify_waiters();
    }

    /// The first budget that `token`'s execution has gone over (used more than its limit, not
    /// merely reached it), for the engine to check when the execution ends. Tree and daily
    /// budgets count only when the execution made a request of its own.
    pub fn over_budget(&self, token: &str) -> Option<BudgetExceeded> {
        let today = day_of(self.clock.now());
        let state = self.lock();
        let identity = state.tokens.get(token)?;
        let own = state.executions.get(&identity.execution)?;
        let zero = Account::default();
        let mut scopes = vec![
            (BudgetScope::Execution, &identity.budgets.execution, own),
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
        if let Some(agency) = &identity.agency {
            scopes.push((
                BudgetScope::AgencyDay,
                &agency.day,
                state
                    .agency_days
                    .get(&(agency.name.clone(), today))
                    .unwrap_or(&zero),
            ));
            scopes.push((
                BudgetScope::AgencyTree,
                &agency.tree,
                state.trees.get(&identity.root).unwrap_or(&zero),
            ));
        }
        let made_requests = own.used.requests > 0;
        scopes
            .iter()
            .filter(|(scope, _, _)| *scope == BudgetScope::Execution || made_requests)
            .find_map(|(scope, limit, account)| {
                limit.exceeded(&account.used).map(|why| BudgetExceeded {
                    execution: identity.execution,
                    scope: *scope,
                    reason: format!("{} of {why}", scope_name(identity, *scope)),
                })
            })
    }

    /// Checks the identity's three budgets as an empty request would. On a refusal, the
    /// second value says whether this is the first refusal for the execution.
    #[cfg(test)]
    pub(crate) fn check(&self, identity: &Identity) -> Result<(), (BudgetExceeded, bool)> {
        let estimate = Estimate {
            input_tokens: 0,
            requested_output: Some(0),
            default_output: 0,
            prices: Prices::default(),
        };
        match self.admit(&Arc::new(identity.clone()), &estimate) {
            Admission::Granted(mut reservation) => {
                self.release(&mut reservation, None);
                Ok(())
            }
            Admission::Wait => Ok(()),
            Admission::Refused(over, first) => Err((over, first)),
        }
    }
}

/// A scope as a refusal names it: "the task tree budget", "the agency code's daily budget".
fn scope_name(identity: &Identity, scope: BudgetScope) -> String {
    match (scope, &identity.agency) {
        (BudgetScope::AgencyDay, Some(agency)) => {
            format!("the agency {}'s daily budget", agency.name)
        }
        (BudgetScope::AgencyTree, Some(agency)) => {
            format!("the agency {}'s task tree budget", agency.name)
        }
        _ => format!("the {} budget", scope.as_str()),
    }
}

fn add_usage(state: &mut State, identity: &Identity, today: i64, used: &ModelUsage) {
    if let Some(agency) = &identity.agency {
        state
            .agency_days
            .entry((agency.name.clone(), today))
            .or_default()
            .used
            .add(used);
    }
    if let Some(account) = state.executions.get_mut(&identity.execution) {
        account.used.add(used);
    }
    state.trees.entry(identity.root).or_default().used.add(used);
    state
        .agent_days
        .entry((identity.agent.clone(), today))
        .or_default()
        .used
        .add(used);
}

#[cfg(test)]
mod tests {
    use domain::{ManualClock, Tokens};

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
            agency: None,
        }
    }

    fn used(tokens: u64, cost: u64) -> ModelUsage {
        ModelUsage {
            requests: 1,
            tokens: Tokens {
                input: tokens,
                output: 0,
                cached: 0,
            },
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
        assert_eq!(
            registry.execution_totals(ExecutionId(3)),
            ModelUsage::default()
        );
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
        assert_eq!(registry.agent_day_totals("claude"), ModelUsage::default());
    }

    #[test]
    fn an_agency_day_budget_is_shared_by_its_agents_and_names_the_agency() {
        let clock = Arc::new(ManualClock::new(T0));
        let registry = Registry::new(clock.clone());
        let member = |execution: i64, agent: &str, baseline: u64| {
            let mut i = identity(execution, execution * 10, agent, Budgets::default());
            i.agency = Some(AgencyBudget {
                name: "code".into(),
                day: Limit {
                    max_tokens: Some(100),
                    max_cost_micros: None,
                },
                tree: Limit::default(),
                baseline: used(baseline, 0),
            });
            i
        };
        // The store already holds 30 tokens of the agency's today.
        let coder = member(1, "coder", 30);
        let lead = member(2, "code-lead", 30);
        let outsider = identity(3, 30, "loner", Budgets::default());
        registry.register("tok-1", coder.clone());
        registry.register("tok-2", lead.clone());
        registry.register("tok-3", outsider.clone());
        assert_eq!(registry.agency_day_totals("code").tokens.total(), 30);
        registry.record(&coder, &used(80, 0));
        assert_eq!(registry.agency_day_totals("code").tokens.total(), 110);
        let (over, first) = registry.check(&lead).unwrap_err();
        assert_eq!(over.scope, BudgetScope::AgencyDay);
        assert!(first);
        assert_eq!(
            over.reason,
            "the agency code's daily budget of 100 tokens is used up (110 used)"
        );
        assert!(registry.check(&outsider).is_ok(), "outside the agency");
        assert_eq!(
            registry.over_budget("tok-1").map(|o| o.scope),
            Some(BudgetScope::AgencyDay)
        );
        let (_, end) = day_bounds(T0);
        clock.set(end);
        assert!(registry.check(&lead).is_ok(), "a new day, a new budget");
    }

    #[test]
    fn an_agency_tree_budget_bounds_its_agents_in_a_tree_and_nobody_else() {
        let registry = Registry::new(Arc::new(ManualClock::new(T0)));
        let mut coder = identity(1, 10, "coder", Budgets::default());
        coder.agency = Some(AgencyBudget {
            name: "code".into(),
            day: Limit::default(),
            tree: Limit {
                max_tokens: None,
                max_cost_micros: Some(1_000),
            },
            baseline: ModelUsage::default(),
        });
        // Another agent in the same tree, outside the agency.
        let helper = identity(2, 10, "helper", Budgets::default());
        registry.register("tok-1", coder.clone());
        registry.register("tok-2", helper.clone());
        registry.record(&helper, &used(10, 1_000));
        let (over, _) = registry.check(&coder).unwrap_err();
        assert_eq!(over.scope, BudgetScope::AgencyTree);
        assert_eq!(
            over.reason,
            "the agency code's task tree budget of $0.0010 is used up ($0.0010 spent)"
        );
        assert!(
            registry.check(&helper).is_ok(),
            "the agency's budget is its own"
        );
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
        assert_eq!(registry.tree_totals(TaskId(10)).tokens.total(), 900);
        registry.record(&first, &used(50, 0));
        // The store has caught up with the first 900 and part of the 50; the baseline for a
        // second execution must not add the 900 again.
        let mut second = identity(2, 10, "claude", budgets);
        second.baseline.tree = used(920, 0);
        registry.register("t2", second.clone());
        assert_eq!(registry.tree_totals(TaskId(10)).tokens.total(), 950);
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
        assert_eq!(
            registry.execution_totals(ExecutionId(1)),
            ModelUsage::default()
        );
        // A stream that ends after the revoke is still counted for the agent's day.
        registry.record(&a, &used(5, 1));
        assert_eq!(registry.agent_day_totals("claude").requests, 2);
        let shown = format!("{registry:?}");
        assert!(!shown.contains("tok-a"), "{shown}");
    }

    fn estimate(input: u64, output: Option<u64>) -> Estimate {
        Estimate {
            input_tokens: input,
            requested_output: output,
            default_output: 1_000,
            prices: Prices {
                input: 1_000_000,
                output: 2_000_000,
                cached: 0,
            },
        }
    }

    fn granted(admission: Admission) -> Reservation {
        match admission {
            Admission::Granted(reservation) => reservation,
            Admission::Wait => panic!("expected a grant, got a wait"),
            Admission::Refused(over, _) => panic!("expected a grant, got {over:?}"),
        }
    }

    #[test]
    fn a_reservation_holds_every_scope_at_once_and_fits_the_tightest() {
        let registry = Registry::new(Arc::new(ManualClock::new(T0)));
        let budgets = Budgets {
            execution: Limit {
                max_tokens: Some(1_000),
                max_cost_micros: None,
            },
            // $1/M in, $2/M out: 100 in + 200 out is 500 micros.
            tree: Limit {
                max_tokens: None,
                max_cost_micros: Some(500),
            },
            agent_day: Limit::default(),
        };
        let a = Arc::new(identity(1, 10, "claude", budgets));
        registry.register("tok-a", (*a).clone());
        let mut first = granted(registry.admit(&a, &estimate(100, Some(900))));
        // The tree's cost budget leaves room for 199 output tokens (one kept for rounding).
        assert_eq!(first.set_cap, Some(199));
        assert_eq!(first.output_tokens, Some(199));
        // Everything is held now: a second request waits for the first to settle.
        assert!(matches!(
            registry.admit(&a, &estimate(10, None)),
            Admission::Wait
        ));
        assert_eq!(registry.requests_under_way(), 1);
        registry.settle(&mut first, &used(100, 150));
        registry.settle(&mut first, &used(100, 150));
        assert_eq!(registry.requests_under_way(), 0);
        assert_eq!(
            registry.execution_totals(ExecutionId(1)).tokens.total(),
            100
        );
        // 350 micros left: 10 in costs 10, leaving 170 output tokens minus one.
        let second = granted(registry.admit(&a, &estimate(10, None)));
        assert_eq!(second.set_cap, Some(169));
        let b = Arc::new(identity(2, 10, "claude", budgets));
        registry.register("tok-b", (*b).clone());
        // The tree is shared: another execution of it waits too, and nothing was reserved
        // against its own execution budget by the refusal.
        assert!(matches!(
            registry.admit(&b, &estimate(200, None)),
            Admission::Wait
        ));
        assert_eq!(registry.lock().executions[&ExecutionId(2)].holders, 0);
    }

    #[test]
    fn an_execution_is_over_budget_only_once_it_used_more_than_its_limit() {
        let registry = Registry::new(Arc::new(ManualClock::new(T0)));
        let a = identity(
            1,
            10,
            "claude",
            Budgets {
                execution: Limit {
                    max_tokens: Some(100),
                    max_cost_micros: None,
                },
                ..Budgets::default()
            },
        );
        registry.register("tok-a", a.clone());
        registry.record(&a, &used(100, 0));
        assert_eq!(registry.over_budget("tok-a"), None, "all of it, not more");
        registry.record(&a, &used(1, 0));
        let over = registry.over_budget("tok-a").unwrap();
        assert_eq!(over.scope, BudgetScope::Execution);
        assert_eq!(
            over.reason,
            "the execution budget of 100 tokens was exceeded (101 used)"
        );
        assert_eq!(registry.over_budget("tok-unknown"), None);
    }
}
