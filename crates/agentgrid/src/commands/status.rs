//! `agentgrid status`: renders the application layer's status view, and warns about the
//! project's manifests that opt out of isolation.

use app::{Actor, ProviderLine, Status};

use crate::output::{clip, json, table};
use crate::project::Project;

/// How much of a reason the WHY columns show. The column wraps, so a reason is cut only past
/// several lines: a parent's names its failed sub-tasks with their own reasons, and the end of
/// a failure's reason says which attempt it was.
const WHY_CHARS: usize = 600;

pub async fn status(project: &Project, as_json: bool) -> anyhow::Result<u8> {
    let app = project.app().await?;
    let view = app.ask(&Actor::command_line(), Status::default()).await?;
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
    if as_json {
        // The newest executions with their model use, so scripts see cost per execution at a
        // glance.
        let mut executions = Vec::with_capacity(view.recent.len());
        for e in &view.recent {
            let usage = &e.usage;
            let mut value = serde_json::to_value(&e.execution)?;
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
        let active: Vec<&domain::Execution> = view.active.iter().map(|a| &a.execution).collect();
        json(&serde_json::json!({
            "tasks": view.tasks,
            "active_executions": active,
            "executions": executions,
            "sandbox_relaxations": unsandboxed,
            "host_hooks": host_hooks,
            "merge_failed": view.merge_failed
                .iter()
                .filter_map(|t| Some(serde_json::json!({ "task": t.id, "reason": t.merge_failed.as_deref()? })))
                .collect::<Vec<_>>(),
            "providers": view.providers.iter().map(provider_json).collect::<Vec<_>>(),
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
    for p in &view.providers {
        outln!("{}", provider_human(p));
    }
    if view.active.is_empty() {
        outln!("no execution is running");
    } else {
        outln!("running:");
        let rows: Vec<Vec<String>> = view
            .active
            .iter()
            .map(|a| {
                let e = &a.execution;
                vec![
                    e.id.to_string(),
                    format!("#{}", e.task_id),
                    e.kind.to_string(),
                    e.agent.clone(),
                    e.state.to_string(),
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
