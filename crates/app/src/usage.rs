//! The usage view: tokens and cost from the gateway's metering, grouped by task, tree, agent
//! or day, with totals.

use domain::TaskId;
use serde::Serialize;
use store::{ModelUsage, UsageGroup, UsageKey};

use crate::{Actor, App, Error, Query};

/// Every model request recorded, summed per group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub by: UsageGroup,
}

/// The answer to [`Usage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageReport {
    /// One row per group, in the order of its key (task id, agent name, day).
    pub rows: Vec<UsageRow>,
    /// The sums over every row.
    pub total: UsageSums,
}

/// One group: what it stands for and its sums.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    /// `#3` for a task or a tree (its root), the agent's name, or the UTC day `2026-12-02`.
    pub key: String,
    /// The task or tree's id, for a row of either.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskId>,
    /// The task's title (the root's, for a tree), when it still exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(flatten)]
    pub usage: UsageSums,
}

/// A [`ModelUsage`] as the views print it: the sums, and the cost in dollars besides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageSums {
    #[serde(flatten)]
    pub counts: ModelUsage,
    /// Dollars as `$1.2345`, for reading; `cost_micros` is exact.
    pub cost: String,
}

impl From<ModelUsage> for UsageSums {
    fn from(counts: ModelUsage) -> UsageSums {
        UsageSums {
            counts,
            cost: domain::event::dollars(counts.cost_micros),
        }
    }
}

impl Default for UsageSums {
    fn default() -> UsageSums {
        ModelUsage::default().into()
    }
}

impl UsageSums {
    pub(crate) fn add(&mut self, u: &ModelUsage) {
        self.counts.add(u);
        self.cost = domain::event::dollars(self.counts.cost_micros);
    }
}

#[async_trait::async_trait]
impl Query for Usage {
    type Output = UsageReport;

    async fn run(self, app: &App, _actor: &Actor) -> Result<UsageReport, Error> {
        let store = app.store.as_ref();
        let sums = store.model_usage_grouped(self.by).await?;
        let mut total = UsageSums::default();
        let mut rows = Vec::with_capacity(sums.len());
        for sum in sums {
            total.add(&sum.usage);
            let (key, task, title) = match sum.key {
                UsageKey::Task(id) => {
                    let title = store.task(id).await?.map(|t| t.title);
                    (format!("#{id}"), Some(id), title)
                }
                UsageKey::Agent(name) => (name, None, None),
                UsageKey::Day(first) => (first.to_rfc3339()[..10].to_string(), None, None),
            };
            rows.push(UsageRow {
                key,
                task,
                title,
                usage: sum.usage.into(),
            });
        }
        Ok(UsageReport { rows, total })
    }
}
