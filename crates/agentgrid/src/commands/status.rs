//! `agentgrid status`.

use std::collections::BTreeMap;

use domain::{EntityKind, EventKind, ExecutionKind, TaskId, TaskState};
use store::{ExecutionFilter, TaskFilter};

use crate::output::{clip, json, table};
use crate::project::Project;

pub async fn status(project: &Project, as_json: bool) -> anyhow::Result<u8> {
    let store = project.store().await?;
    let tasks = store.tasks(&TaskFilter::default()).await?;
    let active = store
        .executions(&ExecutionFilter {
            active_only: true,
            ..Default::default()
        })
        .await?;
    let mut counts: BTreeMap<String, usize> =
        TaskState::ALL.iter().map(|s| (s.to_string(), 0)).collect();
    for t in &tasks {
        *counts.entry(t.state.to_string()).or_default() += 1;
    }
    let recent = store.executions(&ExecutionFilter::default()).await?;
    // Agents that run with less isolation than the default, chosen explicitly in their manifest.
    let loaded = manifest::load_project(&project.state_dir).ok();
    let relaxed: Vec<(String, Vec<&'static str>)> = match &loaded {
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
    let providers = provider_standing(store.as_ref()).await?;
    if as_json {
        // Each execution with its model use, so scripts see cost per execution at a glance.
        let mut executions = Vec::with_capacity(recent.len());
        for e in &recent {
            let usage = store
                .model_usage(&store::UsageScope::Execution(e.id))
                .await?;
            let mut value = serde_json::to_value(e)?;
            value["model_usage"] = serde_json::json!({
                "requests": usage.requests,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cached_tokens": usage.cached_tokens,
                "cost_micros": usage.cost_micros,
                "cost": domain::event::dollars(usage.cost_micros),
            });
            executions.push(value);
        }
        let unsandboxed: serde_json::Map<String, serde_json::Value> = relaxed
            .iter()
            .map(|(name, r)| (name.clone(), serde_json::json!(r)))
            .collect();
        json(&serde_json::json!({
            "tasks": counts,
            "active_executions": active,
            "executions": executions,
            "sandbox_relaxations": unsandboxed,
            "host_hooks": host_hooks,
            "merge_failed": tasks
                .iter()
                .filter_map(|t| Some(serde_json::json!({ "task": t.id, "reason": t.merge_failed.as_deref()? })))
                .collect::<Vec<_>>(),
            "providers": providers.iter().map(ProviderLine::json).collect::<Vec<_>>(),
        }))?;
        return Ok(crate::exit::OK);
    }
    for (name, relaxations) in &relaxed {
        outln!(
            "warning: agent {name} runs with {}",
            relaxations.join(" and ")
        );
    }
    for hook in &host_hooks {
        outln!("warning: the {hook} hook runs on the host, outside the sandbox (host: true)");
    }
    let line: Vec<String> = counts
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
    for p in &providers {
        outln!("{}", p.human());
    }
    if active.is_empty() {
        outln!("no execution is running");
    } else {
        outln!("running:");
        let mut rows: Vec<Vec<String>> = Vec::with_capacity(active.len());
        for e in &active {
            let why = match e.kind {
                ExecutionKind::Resume => wake_reason(store.as_ref(), e.task_id).await?,
                ExecutionKind::Work => None,
            };
            rows.push(vec![
                e.id.to_string(),
                format!("#{}", e.task_id),
                e.kind.to_string(),
                e.agent.clone(),
                e.state.to_string(),
                e.iteration.to_string(),
                clip(why.as_deref().unwrap_or(""), 100),
            ]);
        }
        table(
            &["EXEC", "TASK", "KIND", "AGENT", "STATE", "ITER", "WHY"],
            &rows,
        );
    }
    let attention: Vec<Vec<String>> = tasks
        .iter()
        .filter(|t| matches!(t.state, TaskState::Blocked | TaskState::Failed))
        .map(|t| {
            vec![
                format!("#{}", t.id),
                t.state.to_string(),
                // A parent's reason names its failed sub-tasks, their own reasons and the ones
                // left open, so it gets more room than a title.
                clip(t.summary.as_deref().unwrap_or(""), 240),
            ]
        })
        .collect();
    if !attention.is_empty() {
        outln!("needs a person:");
        table(&["TASK", "STATE", "WHY"], &attention);
    }
    let unmerged: Vec<Vec<String>> = tasks
        .iter()
        .filter_map(|t| {
            let why = t.merge_failed.as_deref()?;
            Some(vec![
                format!("#{}", t.id),
                t.state.to_string(),
                clip(why, 240),
            ])
        })
        .collect();
    if !unmerged.is_empty() {
        outln!("merge failed (the task cannot be done until its sub-tasks' work is merged):");
        table(&["TASK", "STATE", "WHY"], &unmerged);
    }
    if let Some((v, r)) = super::verdicts::last_failure(&*store, &recent).await? {
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

/// A model provider that is paused or throttled now.
struct ProviderLine {
    name: String,
    paused: Option<(domain::Timestamp, String)>,
    concurrency: Option<u32>,
}

impl ProviderLine {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "paused_until": self.paused.as_ref().map(|(until, _)| until.to_rfc3339()),
            "pause_reason": self.paused.as_ref().map(|(_, why)| why),
            "concurrency": self.concurrency,
        })
    }

    fn human(&self) -> String {
        let mut parts = Vec::new();
        if let Some((until, why)) = &self.paused {
            parts.push(format!(
                "paused until {until} ({}); its agents get no tasks meanwhile",
                crate::output::one_line(why)
            ));
        }
        if let Some(n) = self.concurrency {
            parts.push(format!(
                "rate limited: at most {n} requests under way for a while"
            ));
        }
        format!("provider {}: {}", self.name, parts.join("; "))
    }
}

/// The providers paused (a pause not yet over by the system clock) or throttled now.
async fn provider_standing(store: &dyn store::Store) -> anyhow::Result<Vec<ProviderLine>> {
    let now = domain::Clock::now(&domain::SystemClock);
    Ok(store
        .providers()
        .await?
        .into_iter()
        .map(|p| ProviderLine {
            paused: p
                .paused_until
                .filter(|until| *until > now)
                .map(|until| (until, p.pause_reason.unwrap_or_default())),
            concurrency: p.concurrency,
            name: p.name,
        })
        .filter(|p| p.paused.is_some() || p.concurrency.is_some())
        .collect())
}

/// Why the scheduler started a task's current execution, when it said: the engine's note
/// recorded just before the claim (a resume woken by a failed sub-task, a run that validates a
/// parent's merged tree).
async fn wake_reason(store: &dyn store::Store, task: TaskId) -> anyhow::Result<Option<String>> {
    let events = store.entity_events(EntityKind::Task, task.0).await?;
    let Some(claimed) = events.iter().rposition(|e| {
        matches!(
            e.kind,
            EventKind::TaskStateChanged {
                to: TaskState::Running,
                ..
            }
        )
    }) else {
        return Ok(None);
    };
    Ok(claimed.checked_sub(1).and_then(|i| match &events[i].kind {
        EventKind::TaskCommented { author, text } if author == "engine" => Some(text.clone()),
        _ => None,
    }))
}
