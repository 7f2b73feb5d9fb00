//! `agentgrid leases`: a person's view of the area leases agents hold, and of the tasks the
//! scheduler holds back for an area. The rules are the tracker's and the scheduler's.

use app::{Actor, AreaLeaseList};

use crate::output::{clip, json, table};
use crate::project::Project;

pub async fn leases(project: &Project, all: bool, as_json: bool) -> anyhow::Result<u8> {
    let app = project.app().await?;
    let query = AreaLeaseList {
        ended: all,
        task: None,
        limit: all.then_some(200),
    };
    let view = app.ask(&Actor::command_line(), query).await?;
    if as_json {
        json(&view)?;
        return Ok(crate::exit::OK);
    }
    if view.leases.is_empty() {
        outln!(
            "no area leases{}: agents take them with `agentgrid ctl lease take PATHS --ttl 10m`",
            if all { "" } else { " held" }
        );
    } else {
        let rows: Vec<Vec<String>> = view
            .leases
            .iter()
            .map(|l| {
                let state = if l.state == domain::AreaLeaseState::Held && !l.live(view.now) {
                    "expired".to_string()
                } else {
                    l.state.to_string()
                };
                let until = if l.live(view.now) {
                    crate::when::relative(l.expires_at, view.now)
                } else {
                    l.end_reason.clone().unwrap_or_default()
                };
                vec![
                    format!("L{}", l.id),
                    clip(l.path.as_str(), 60),
                    format!("#{}", l.task),
                    format!("#{} {}", l.execution, l.agent),
                    state,
                    clip(&until, 60),
                ]
            })
            .collect();
        table(
            &["LEASE", "PATH", "FOR", "HELD BY", "STATE", "UNTIL"],
            &rows,
        );
    }
    if !view.waiting.is_empty() {
        outln!("waiting for an area:");
        let rows: Vec<Vec<String>> = view
            .waiting
            .iter()
            .map(|w| vec![format!("#{}", w.task), clip(&w.reason, 120)])
            .collect();
        table(&["TASK", "WHY"], &rows);
    }
    Ok(crate::exit::OK)
}
