//! `agentgrid status`: renders the application layer's status view, and warns about the
//! project's manifests that opt out of isolation.

use app::{Actor, EngineState, ProviderLine, Status};

use crate::output::{clip, json, one_line, table};
use crate::project::Project;

/// What a person reads beside executions the store calls active when no engine runs.
pub const INTERRUPTED: &str = "interrupted (engine gone; the next run recovers them)";

/// Whether an engine holds the project's lock, read without disturbing it.
pub fn engine_state(project: &Project) -> EngineState {
    match engine::EngineLock::holder(&project.state_dir.join("engine.lock")) {
        Ok(Some(holder)) => EngineState::Running {
            pid: holder.pid,
            since: holder.since,
        },
        Ok(None) => EngineState::Stopped,
        // A lock file that cannot be read says nothing either way.
        Err(e) => {
            tracing::warn!("cannot tell whether an engine runs: {e}");
            EngineState::Unknown
        }
    }
}
/// This project's node id, as the engine chose it; `None` before the first `run`. A broken id
/// file is reported and shown as none: `run` refuses it with the same message.
pub fn node_id(project: &Project) -> Option<domain::NodeId> {
    engine::read_node_id(&project.state_dir).unwrap_or_else(|e| {
        tracing::warn!("{e}");
        None
    })
}

/// How much of a reason the WHY columns show. The column wraps, so a reason is cut only past
/// several lines: a parent's names its failed sub-tasks with their own reasons, and the end of
/// a failure's reason says which attempt it was.
const WHY_CHARS: usize = 600;

pub async fn status(project: &Project, as_json: bool) -> anyhow::Result<u8> {
    let app = project.app().await?;
    let query = Status {
        engine: engine_state(project),
        node: node_id(project),
        ..Status::default()
    };
    let view = app.ask(&Actor::command_line(), query).await?;
    // Agents that run with less isolation than the default, chosen explicitly in their manifest.
    let loaded = manifest::load_project(&project.state_dir).ok();
    let relaxed: Vec<(String, Vec<String>)> = match &loaded {
        Some(loaded) => loaded
            .agents
            .iter()
            .map(|a| (a.name.clone(), a.manifest.spec.sandbox.relaxations()))
            .filter(|(_, r)| !r.is_empty())
            .collect(),
        None => Vec::new(),
    };
    // Workspace hooks that run on the host instead of in their agent's sandbox (`host: true`).
    let host_hooks: Vec<&'static str> = loaded
        .as_ref()
        .map(|loaded| loaded.config.workspace.hooks.on_host())
        .unwrap_or_default();
    let gates = super::workflow::gates(&*project.store().await?).await?;
    let agencies = agency_lines(project, loaded.as_ref(), &view).await?;
    let gate_now = domain::Clock::now(&domain::SystemClock);
    let handoff_budget = loaded
        .as_ref()
        .map_or(domain::handoff::limits::DEFAULT_PER_TASK, |l| {
            l.config.handoffs_per_task
        });
    if as_json {
        // The newest executions with their model use, so scripts see cost per execution at a
        // glance.
        let mut executions = Vec::with_capacity(view.recent.len());
        for e in &view.recent {
            let mut value = serde_json::to_value(&e.execution)?;
            value["model_usage"] = serde_json::to_value(app::UsageSums::from(e.usage))?;
            executions.push(value);
        }
        let unsandboxed: serde_json::Map<String, serde_json::Value> = relaxed
            .iter()
            .map(|(name, r)| (name.clone(), serde_json::json!(r)))
            .collect();
        let mut active = Vec::with_capacity(view.active.len());
        for a in &view.active {
            let mut value = serde_json::to_value(&a.execution)?;
            value["interrupted"] = serde_json::json!(a.interrupted);
            value["elsewhere"] = match &a.elsewhere {
                Some(lease) => serde_json::json!({
                    "node": lease.node,
                    "lease_left_ms": lease.until.0.saturating_sub(view.now.0),
                }),
                None => serde_json::Value::Null,
            };
            active.push(value);
        }
        json(&serde_json::json!({
            "tasks": view.tasks,
            "engine": view.engine,
            "node": node_id(project),
            "timers": view.timers,
            "active_executions": active,
            "executions": executions,
            "sandbox_relaxations": unsandboxed,
            "agencies": agencies.iter().map(|a| serde_json::json!({
                "name": a.name,
                "running": a.running,
                "concurrency": a.concurrency,
                "spent_today": app::UsageSums::from(a.spent),
                "budget_per_day": a.budget.as_ref().map(|b| serde_json::json!({
                    "tokens": b.tokens,
                    "cost": b.cost,
                })),
                "budget_per_tree": a.per_tree.as_ref().map(|b| serde_json::json!({
                    "tokens": b.tokens,
                    "cost": b.cost,
                })),
            })).collect::<Vec<_>>(),
            "host_hooks": host_hooks,
            "merge_failed": view.merge_failed
                .iter()
                .filter_map(|t| Some(serde_json::json!({ "task": t.id, "reason": t.merge_failed.as_deref()? })))
                .collect::<Vec<_>>(),
            "providers": view.providers.iter().map(provider_json).collect::<Vec<_>>(),
            "approvals": view.approvals.iter().map(|a| serde_json::json!({
                "id": a.id,
                "task": a.task_id,
                "source": a.source,
                "requested_at": a.requested_at,
                "age": super::approvals::age(a.requested_at, super::approvals::now()),
            })).collect::<Vec<_>>(),
            "workflow_gates": gates.iter().map(|g| super::workflow::gate_json(g, gate_now)).collect::<Vec<_>>(),
            "escalations": view.escalations.iter().map(|m| serde_json::json!({
                "id": m.id,
                "task": m.task_id,
                "severity": m.payload["severity"],
                "question": m.payload["text"],
                "from": m.sender,
                "at": m.receiver,
                "sent_at": m.created_at,
                "age": super::approvals::age(m.created_at, super::approvals::now()),
            })).collect::<Vec<_>>(),
            "escalations_more": view.escalations_total.saturating_sub(view.escalations.len() as u64),
            "area_leases": view.area_leases,
            "area_waits": view.area_waits,
            "handoffs": view.handoffs.iter().map(|h| serde_json::json!({
                "task": h.task,
                "state": h.state,
                "from": h.from,
                "to": h.to,
                "at": h.at,
                "age": super::approvals::age(h.at, super::approvals::now()),
                "handoffs": h.handoffs,
                "budget": handoff_budget,
            })).collect::<Vec<_>>(),
            "handoffs_more": view.handoffs_total.saturating_sub(view.handoffs.len() as u64),
            "metrics": status_metrics(project).await?.map(|m| m.total),
        }))?;
        return Ok(crate::exit::OK);
    }
    for (name, relaxations) in &relaxed {
        outln!(
            "{} agent {name} runs with {}",
            crate::output::warning_prefix(),
            relaxations.join(" and ")
        );
    }
    for hook in &host_hooks {
        outln!(
            "{} the {hook} hook runs on the host, outside the sandbox (host: true)",
            crate::output::warning_prefix()
        );
    }
    let line: Vec<String> = view
        .tasks
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| format!("{n} {s}"))
        .collect();
    outln!(
        "tasks: {}",
        if line.is_empty() {
            "none".to_string()
        } else {
            line.join(", ")
        }
    );
    if let Some(line) = crate::when::engine(&view.engine, view.now) {
        outln!("{line}");
    }
    match node_id(project) {
        Some(node) => outln!("node: {node}"),
        None => outln!("node: not chosen yet (the first `agentgrid run` chooses one)"),
    }
    for p in &view.providers {
        outln!("{}", provider_human(p));
    }
    let interrupted = view.active.iter().any(|a| a.interrupted);
    if view.active.is_empty() {
        outln!("no execution is running");
    } else {
        outln!("{}:", if interrupted { INTERRUPTED } else { "running" });
        let rows: Vec<Vec<String>> = view
            .active
            .iter()
            .map(|a| {
                let e = &a.execution;
                vec![
                    e.id.to_string(),
                    format!("#{}", e.task_id),
                    e.kind.to_string(),
                    match loaded.as_ref().and_then(|l| l.agency_of(&e.agent)) {
                        Some((agency, _)) => format!("{} ({})", e.agent, agency.name),
                        None => e.agent.clone(),
                    },
                    if let Some(lease) = &a.elsewhere {
                        format!(
                            "{} on node {} (lease {} s left)",
                            e.state,
                            lease.node,
                            (lease.until.0.saturating_sub(view.now.0) + 999) / 1000
                        )
                    } else if a.interrupted {
                        "interrupted".to_string()
                    } else {
                        e.state.to_string()
                    },
                    e.iteration.to_string(),
                    clip(a.why.as_deref().unwrap_or(""), WHY_CHARS),
                ]
            })
            .collect();
        table(
            &["EXEC", "TASK", "KIND", "AGENT", "STATE", "ITER", "WHY"],
            &rows,
        );
    }
    // Each agency's running executions against its cap, and its spend today against its
    // daily budget.
    for a in &agencies {
        let cap = a
            .concurrency
            .map_or(String::new(), |c| format!(" of at most {c}"));
        let spend = match &a.budget {
            Some(b) => {
                let mut parts = Vec::new();
                if let Some(cost) = b.cost {
                    parts.push(format!(
                        "{} of {}",
                        domain::event::dollars(a.spent.cost_micros),
                        domain::event::dollars(engine::dollars_to_micros(cost))
                    ));
                }
                if let Some(tokens) = b.tokens {
                    parts.push(format!("{} of {tokens} tokens", a.spent.tokens.total()));
                }
                let over = if a.over { ", used up" } else { "" };
                format!("; spent today {}{over}", parts.join(", "))
            }
            None => String::new(),
        };
        outln!("agency {}: {} running{cap}{spend}", a.name, a.running);
    }
    if !view.timers.is_empty() {
        outln!("timers:");
        let rows: Vec<Vec<String>> = view
            .timers
            .iter()
            .map(|t| vec![format!("#{}", t.task), crate::when::timer(t, view.now)])
            .collect();
        table(&["TASK", "WHEN"], &rows);
    }
    let attention: Vec<Vec<String>> = view
        .attention
        .iter()
        .map(|t| {
            vec![
                format!("#{}", t.id),
                t.state.to_string(),
                clip(t.summary.as_deref().unwrap_or(""), WHY_CHARS),
            ]
        })
        .collect();
    if !attention.is_empty() {
        outln!("needs a person:");
        table(&["TASK", "STATE", "WHY"], &attention);
        let left_out = view.attention_total.saturating_sub(attention.len() as u64);
        if left_out > 0 {
            outln!(
                "… and {left_out} older: see `agentgrid task list --state failed --state blocked`"
            );
        }
    }
    if !view.approvals.is_empty() {
        let now = super::approvals::now();
        let rows: Vec<Vec<String>> = view
            .approvals
            .iter()
            .map(|a| {
                vec![
                    a.id.to_string(),
                    format!("#{}", a.task_id),
                    a.source.to_string(),
                    super::approvals::age(a.requested_at, now),
                    clip(&a.summary, 100),
                ]
            })
            .collect();
        outln!("waiting for approval (see `agentgrid approvals`):");
        table(&["APPROVAL", "TASK", "ASKED BY", "AGE", "SUMMARY"], &rows);
    }
    if !gates.is_empty() {
        outln!("workflow runs waiting at a gate (see `agentgrid workflow show`):");
        for gate in &gates {
            outln!("  {}", super::workflow::gate_line(gate, gate_now));
        }
    }
    if !view.escalations.is_empty() {
        let now = super::approvals::now();
        let rows: Vec<Vec<String>> = view
            .escalations
            .iter()
            .map(|m| super::msg::escalation_row(m, now))
            .collect();
        outln!("escalated, waiting for an answer (see `agentgrid escalations answer`):");
        table(
            &["ID", "TASK", "SEVERITY", "FROM", "AT", "AGE", "QUESTION"],
            &rows,
        );
        let more = view
            .escalations_total
            .saturating_sub(view.escalations.len() as u64);
        if more > 0 {
            outln!("… and {more} newer: see `agentgrid escalations`");
        }
    }
    if !view.handoffs.is_empty() {
        let now = super::approvals::now();
        let rows: Vec<Vec<String>> = view
            .handoffs
            .iter()
            .map(|h| {
                vec![
                    format!("#{}", h.task),
                    h.state.to_string(),
                    format!("{} → {}", one_line(&h.from), one_line(&h.to)),
                    super::approvals::age(h.at, now),
                    format!("{} of {handoff_budget}", h.handoffs),
                ]
            })
            .collect();
        outln!("handed off, under way in the receiving part (see `agentgrid task show`):");
        table(&["TASK", "STATE", "FROM → TO", "AGE", "HANDOFFS"], &rows);
        let more = view
            .handoffs_total
            .saturating_sub(view.handoffs.len() as u64);
        if more > 0 {
            outln!("… and {more} older handed-off tasks");
        }
    }
    if let Some(line) = status_metrics(project)
        .await?
        .as_ref()
        .and_then(super::metrics::brief)
    {
        outln!("{line}");
    }
    if !view.area_leases.is_empty() {
        outln!(
            "area leases: {} held (see `agentgrid leases`)",
            view.area_leases.len()
        );
    }
    for w in &view.area_waits {
        outln!("task #{} {}", w.task, one_line(&w.reason));
    }
    let unmerged: Vec<Vec<String>> = view
        .merge_failed
        .iter()
        .filter_map(|t| {
            let why = t.merge_failed.as_deref()?;
            Some(vec![
                format!("#{}", t.id),
                t.state.to_string(),
                clip(why, WHY_CHARS),
            ])
        })
        .collect();
    if !unmerged.is_empty() {
        outln!("merge failed (the task cannot be done until its sub-tasks' work is merged):");
        table(&["TASK", "STATE", "WHY"], &unmerged);
    }
    if let Some((v, r)) = &view.last_failure {
        outln!(
            "last failed validator: `{}` on task #{} (execution {}, iteration {}): {}",
            super::verdicts::printable(&r.name),
            v.task,
            v.execution,
            v.iteration,
            super::verdicts::printable(&clip(
                r.reason.as_deref().unwrap_or("no reason recorded"),
                160
            ))
        );
    }
    Ok(crate::exit::OK)
}

/// The metrics totals `status` shows briefly.
async fn status_metrics(project: &Project) -> anyhow::Result<Option<app::MetricsReport>> {
    let app = project.app().await?;
    let query = app::Metrics {
        since: None,
        agencies: super::metrics::agencies_of(project),
    };
    Ok(Some(app.ask(&Actor::command_line(), query).await?))
}

/// `status --watch`: the view again every `interval`. On a terminal each view replaces the
/// last (cursor home, screen cleared); into a pipe or a file the views follow one another, each
/// under a line with its time, so that nothing is lost to a reader that keeps everything. Ends
/// when standard output closes, or on Ctrl-C (the default action of SIGINT).
pub async fn watch(
    project: &Project,
    as_json: bool,
    interval: std::time::Duration,
) -> anyhow::Result<u8> {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    loop {
        let at = domain::Clock::now(&domain::SystemClock);
        if terminal {
            crate::output::bytes(b"\x1b[H\x1b[2J");
            outln!(
                "every {:.1}s, at {at}; Ctrl-C to stop\n",
                interval.as_secs_f64()
            );
        } else {
            outln!("--- status at {at} ---");
        }
        status(project, as_json).await?;
        if crate::output::closed() {
            return Ok(crate::exit::OK);
        }
        if !terminal {
            outln!();
        }
        // Buffered output reaches a pipe's reader now, not after the next view.
        if !crate::output::bytes(b"") {
            return Ok(crate::exit::OK);
        }
        tokio::time::sleep(interval).await;
    }
}

fn provider_json(p: &ProviderLine) -> serde_json::Value {
    serde_json::json!({
        "name": p.name,
        "paused_until": p.paused.as_ref().map(|(until, _)| until.to_rfc3339()),
        "pause_reason": p.paused.as_ref().map(|(_, why)| why),
        "concurrency": p.concurrency,
    })
}

fn provider_human(p: &ProviderLine) -> String {
    let mut parts = Vec::new();
    if let Some((until, why)) = &p.paused {
        parts.push(format!(
            "paused until {until} ({}); its agents get no tasks meanwhile",
            crate::output::one_line(why)
        ));
    }
    if let Some(n) = p.concurrency {
        parts.push(format!(
            "rate limited: at most {n} requests under way for a while"
        ));
    }
    format!("provider {}: {}", p.name, parts.join("; "))
}

/// One agency as `status` shows it.
struct AgencyLine {
    name: String,
    running: usize,
    concurrency: Option<u32>,
    /// What its agents used of models today (UTC).
    spent: domain::ModelUsage,
    budget: Option<manifest::Budget>,
    per_tree: Option<manifest::Budget>,
    /// Whether the budget is used up: no task of the agency starts.
    over: bool,
}

/// Each agency of the manifests with its running executions and, when it has a daily budget,
/// what its agents spent today (one indexed read per member).
async fn agency_lines(
    project: &Project,
    loaded: Option<&manifest::Project>,
    view: &app::StatusView,
) -> anyhow::Result<Vec<AgencyLine>> {
    let Some(loaded) = loaded else {
        return Ok(Vec::new());
    };
    let store = project.store().await?;
    let (from, until) = gateway::day_bounds(domain::Clock::now(&domain::SystemClock));
    let mut lines = Vec::new();
    for agency in &loaded.agencies {
        let running = view
            .active
            .iter()
            .filter(|a| agency.role_of(&a.execution.agent).is_some())
            .count();
        let per_day = &agency.spec().budgets.per_day;
        let budget = (per_day.tokens.is_some() || per_day.cost.is_some()).then_some(*per_day);
        let mut spent = domain::ModelUsage::default();
        if budget.is_some() {
            for (agent, _) in agency.members() {
                let used = store
                    .model_usage(&store::UsageScope::Agent {
                        agent: agent.to_string(),
                        from,
                        until,
                    })
                    .await?;
                spent.add(&used);
            }
        }
        let over = budget.as_ref().is_some_and(|b| {
            b.tokens.is_some_and(|t| spent.tokens.total() >= t)
                || b.cost
                    .is_some_and(|c| spent.cost_micros >= engine::dollars_to_micros(c))
        });
        let per_tree = &agency.spec().budgets.per_tree;
        let per_tree = (per_tree.tokens.is_some() || per_tree.cost.is_some()).then_some(*per_tree);
        lines.push(AgencyLine {
            per_tree,
            name: agency.name.clone(),
            running,
            concurrency: agency.spec().limits.concurrency,
            spent,
            budget,
            over,
        });
    }
    Ok(lines)
}
