//! Agencies' daily model budgets on the engine's side: the account each execution of an
//! agency's agent is registered with at the gateway (which refuses a request that would take
//! the agency past its budget), and the agencies' spend today in the scheduler's snapshot
//! (which starts no task of an agency whose budget is used up).

use domain::ModelUsage;

use super::{Engine, Error};

impl Engine {
    /// The gateway's accounts for `agent`'s agency, when that agency has a budget: its limits
    /// and what the store holds of its agents' use today.
    pub(super) async fn agency_budget(
        &self,
        agent: &str,
    ) -> Result<Option<gateway::AgencyBudget>, Error> {
        let Some((name, _)) = self.setup.directory.member(agent) else {
            return Ok(None);
        };
        let Some(policy) = self.setup.config.agencies.iter().find(|a| a.name == name) else {
            return Ok(None);
        };
        let budget = policy.day_budget;
        let tree = self
            .setup
            .agency_tree_budgets
            .get(name)
            .copied()
            .unwrap_or_default();
        if budget == scheduler::DayBudget::default() && tree.is_unlimited() {
            return Ok(None);
        }
        Ok(Some(gateway::AgencyBudget {
            name: name.to_string(),
            day: gateway::Limit {
                max_tokens: budget.tokens,
                max_cost_micros: budget.cost_micros,
            },
            tree,
            baseline: self.agency_spend_today(name).await?,
        }))
    }

    /// What the agents of agency `name` used today (UTC), from the store.
    async fn agency_spend_today(&self, name: &str) -> Result<ModelUsage, Error> {
        let (from, until) = gateway::day_bounds(self.clock.now());
        let mut total = ModelUsage::default();
        let Some(entry) = self.setup.directory.agency(name) else {
            return Ok(total);
        };
        for (agent, _) in &entry.members {
            let used = self
                .store
                .model_usage(&store::UsageScope::Agent {
                    agent: agent.clone(),
                    from,
                    until,
                })
                .await?;
            total.add(&used);
        }
        Ok(total)
    }

    /// Reads again what each agency with a daily budget spent today, for the scheduler; a
    /// change makes it decide again.
    pub(super) async fn refresh_agency_spend(&mut self) -> Result<(), Error> {
        let budgeted: Vec<String> = self
            .setup
            .config
            .agencies
            .iter()
            .filter(|a| a.day_budget != scheduler::DayBudget::default())
            .map(|a| a.name.clone())
            .collect();
        for name in budgeted {
            let used = self.agency_spend_today(&name).await?;
            if self.snapshot.agency_spend.get(&name) != Some(&used) {
                self.snapshot.agency_spend.insert(name, used);
                self.dirty = true;
            }
        }
        Ok(())
    }
}
