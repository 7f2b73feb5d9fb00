//! `agentgrid metrics`: agency metrics per agency and per agent, from the store's sums; and
//! the brief line `status` prints.

use std::collections::BTreeMap;

use app::{Actor, Metrics, MetricsReport, MetricsRow};
use domain::Timestamp;

use crate::output::{json, table};
use crate::project::Project;
use crate::user_error;

pub async fn metrics(project: &Project, since: Option<&str>, as_json: bool) -> anyhow::Result<u8> {
    let app = project.app().await?;
    let now = domain::Clock::now(&domain::SystemClock);
    let since = match since {
        Some(text) => {
            Some(parse_since(text, now).map_err(|e| user_error(format!("--since: {e}")))?)
        }
        None => None,
    };
    let report = app
        .ask(
            &Actor::command_line(),
            Metrics {
                since,
                agencies: agencies_of(project),
            },
        )
        .await?;
    if as_json {
        json(&report)?;
        return Ok(crate::exit::OK);
    }
    if report.agents.is_empty() {
        outln!(
            "no executions recorded{}",
            if since.is_some() {
                " in that window"
            } else {
                ""
            }
        );
        return Ok(crate::exit::OK);
    }
    let header = [
        "AGENCY/AGENT",
        "TASKS",
        "DONE",
        "UNAIDED",
        "1ST-PASS",
        "HANDOFF",
        "COST/DONE",
        "WALL/DONE",
        "EXEC/TASK",
    ];
    let mut rows: Vec<Vec<String>> = Vec::new();
    for a in &report.agencies {
        rows.push(cells(&format!("agency {}", a.name), a));
    }
    for a in &report.agents {
        rows.push(cells(&a.name, a));
    }
    rows.push(cells("total", &report.total));
    table(&header, &rows);
    Ok(crate::exit::OK)
}

/// One line of the totals for `status`, when anything ran.
pub fn brief(report: &MetricsReport) -> Option<String> {
    let t = &report.total;
    if t.executions == 0 && t.tasks == 0 {
        return None;
    }
    Some(format!(
        "metrics: {} done, {} without help, first-pass approvals {}, mean handoff {}, {} per done task (see `agentgrid metrics`)",
        t.done,
        percent(t.unaided_rate),
        percent(t.first_pass_rate),
        t.mean_handoff_ms.map_or("-".into(), crate::when::span),
        t.cost_per_done.clone().unwrap_or_else(|| "-".into()),
    ))
}

/// Each agent's agency, from the manifests when they load.
pub fn agencies_of(project: &Project) -> BTreeMap<String, String> {
    let Ok(loaded) = manifest::load_project(&project.state_dir) else {
        return BTreeMap::new();
    };
    loaded
        .agents
        .iter()
        .filter_map(|a| {
            let (agency, _) = loaded.agency_of(&a.name)?;
            Some((a.name.clone(), agency.name.clone()))
        })
        .collect()
}

fn cells(name: &str, r: &MetricsRow) -> Vec<String> {
    vec![
        name.to_string(),
        r.tasks.to_string(),
        r.done.to_string(),
        percent(r.unaided_rate),
        percent(r.first_pass_rate),
        r.mean_handoff_ms.map_or("-".into(), crate::when::span),
        r.cost_per_done.clone().unwrap_or_else(|| "-".into()),
        r.wall_ms_per_done.map_or("-".into(), crate::when::span),
        r.executions_per_task
            .map_or("-".into(), |x| format!("{x:.2}")),
    ]
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or("-".into(), |r| format!("{:.0}%", r * 100.0))
}

/// `2026-12-01`, `2026-12-01T08:30:00Z` (UTC), or a duration back from `now` (`7d`, `12h`).
fn parse_since(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    if let Ok(back) = text.parse::<domain::Duration>() {
        return Ok(Timestamp(now.0.saturating_sub(back.as_millis() as i64)));
    }
    let bad = || {
        format!(
            "`{text}` is neither a UTC time such as 2026-12-01T08:30:00Z or 2026-12-01 nor a \
             duration back from now such as 7d"
        )
    };
    let (date, time) = match text.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z').ok_or_else(bad)?)),
        None => (text, None),
    };
    let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    let (y, m, d) = (num(y)?, num(m)?, num(d)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let mut secs = days_from_civil(y, m, d) * 86_400;
    if let Some(time) = time {
        let parts: Vec<&str> = time.split(':').collect();
        let [h, mi, s] = parts.as_slice() else {
            return Err(bad());
        };
        let (h, mi) = (num(h)?, num(mi)?);
        let s = s.split('.').next().map(num).ok_or_else(bad)??;
        if h > 23 || mi > 59 || s > 60 {
            return Err(bad());
        }
        secs += h * 3600 + mi * 60 + s;
    }
    Ok(Timestamp(secs * 1000))
}

/// Days since 1970-01-01 of a date in the proleptic Gregorian calendar.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_times_dates_and_durations() {
        let now = Timestamp(1_800_000_000_000);
        assert_eq!(
            parse_since("2026-12-01T08:30:00Z", now)
                .unwrap()
                .to_rfc3339(),
            "2026-12-01T08:30:00.000Z"
        );
        assert_eq!(
            parse_since("1970-01-02", now).unwrap(),
            Timestamp(86_400_000)
        );
        assert_eq!(
            parse_since("7d", now).unwrap(),
            Timestamp(now.0 - 7 * 86_400_000)
        );
        let err = parse_since("yesterday", now).unwrap_err();
        assert!(err.contains("neither a UTC time"), "{err}");
    }
}
