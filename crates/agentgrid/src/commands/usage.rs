//! `agentgrid usage`: the gateway's metering as a table with totals.

use app::{Actor, Usage, UsageSums};
use store::UsageGroup;

use crate::cli::UsageBy;
use crate::output::{clip, json, table};
use crate::project::Project;

pub async fn usage(project: &Project, by: UsageBy, as_json: bool) -> anyhow::Result<u8> {
    let app = project.app().await?;
    let by = match by {
        UsageBy::Task => UsageGroup::Task,
        UsageBy::Tree => UsageGroup::Tree,
        UsageBy::Agent => UsageGroup::Agent,
        UsageBy::Day => UsageGroup::Day,
    };
    let report = app.ask(&Actor::command_line(), Usage { by }).await?;
    if as_json {
        json(&report)?;
        return Ok(crate::exit::OK);
    }
    if report.rows.is_empty() {
        outln!(
            "no model requests recorded: agents that call models through the gateway (config `models:`) are metered here"
        );
        return Ok(crate::exit::OK);
    }
    let first = match by {
        UsageGroup::Task => "TASK",
        UsageGroup::Tree => "TREE",
        UsageGroup::Agent => "AGENT",
        UsageGroup::Day => "DAY (UTC)",
    };
    let titled = matches!(by, UsageGroup::Task | UsageGroup::Tree);
    let cells = |key: String, title: Option<&str>, u: &UsageSums| {
        let mut row = vec![key];
        if titled {
            row.push(clip(title.unwrap_or(""), 40));
        }
        row.extend([
            u.counts.requests.to_string(),
            u.counts.tokens.input.to_string(),
            u.counts.tokens.cached.to_string(),
            u.counts.tokens.output.to_string(),
            u.cost.clone(),
        ]);
        row
    };
    let mut rows: Vec<Vec<String>> = report
        .rows
        .iter()
        // `table` escapes agent names and titles, which agents and manifests wrote.
        .map(|r| cells(r.key.clone(), r.title.as_deref(), &r.usage))
        .collect();
    rows.push(cells("total".into(), None, &report.total));
    let mut header = vec![first];
    if titled {
        header.push("TITLE");
    }
    header.extend(["REQUESTS", "INPUT", "CACHED", "OUTPUT", "COST"]);
    table(&header, &rows);
    Ok(crate::exit::OK)
}
