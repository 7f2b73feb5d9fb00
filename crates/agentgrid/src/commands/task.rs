//! `agentgrid task …`: the local tracker's face. The rules live in the application layer
//! (`app`); this module turns arguments into its commands and queries and prints the answers.

use app::{
    Actor, AddDependency, Answer, Cancel, Comment, EditTask, Import, Nudge, RemoveDependency,
    Reopen, TaskShow,
};
use domain::{NewTask, Task, TaskId};
use store::TaskFilter;

use crate::cli::{DepCommand, TaskCommand};
use crate::output::{block, clip, json, one_line, table};
use crate::project::Project;
use crate::{exit, user_error};

pub async fn task(project: &Project, cmd: TaskCommand) -> anyhow::Result<u8> {
    let app = project.app().await?;
    let actor = Actor::command_line();
    match cmd {
        TaskCommand::Add(args) => {
            if let Some(agent) = &args.agent {
                known_agent(project, agent, "nothing was created")?;
            }
            let new = NewTask {
                title: args.title,
                body: args.body,
                labels: args.labels,
                priority: args.priority,
                parent: args.parent,
                blocked_by: args.blocked_by,
                agent: args.agent,
            };
            let workflow = super::workflow::by_label(project, &new.labels);
            let name = workflow.as_ref().map(|(name, _)| name.clone());
            let (task, run) = app
                .execute(&actor, app::AddTaskWithWorkflow { new, workflow })
                .await?;
            if args.json {
                json(&task)?;
            } else {
                outln!("created task #{}: {}", task.id, one_line(&task.title));
                if let (Some(run), Some(name)) = (run, name) {
                    outln!("started workflow run W{run} of `{name}` by its label");
                }
            }
        }
        TaskCommand::Import {
            file,
            json: as_json,
        } => {
            let (source, text) = read_input(&file)?;
            known_agents_of_import(project, &source, &text)?;
            let tasks = app
                .execute(
                    &actor,
                    Import {
                        source: source.clone(),
                        text,
                        by_label: super::workflow::label_starts(project),
                    },
                )
                .await?;
            if tasks.is_empty() {
                outln!("no tasks to import: {source} has no task lines");
                return Ok(exit::OK);
            }
            if as_json {
                json(&tasks)?;
            } else {
                let first = tasks.first().map(|t| t.id);
                let last = tasks.last().map(|t| t.id);
                match (first, last) {
                    (Some(a), Some(b)) if a != b => {
                        outln!("imported {} tasks: #{a} to #{b}", tasks.len())
                    }
                    (Some(a), _) => outln!("imported 1 task: #{a}"),
                    _ => outln!("imported no tasks"),
                }
            }
        }
        TaskCommand::List {
            state,
            labels,
            parent,
            limit,
            json: as_json,
        } => {
            let filter = TaskFilter {
                states: state,
                labels,
                parent: parent.map(Some),
                root: None,
            };
            super::task_list::list(&app, &actor, filter, limit, as_json).await?;
        }
        TaskCommand::Show { id, json: as_json } => {
            let detail = app.ask(&actor, TaskShow { id }).await?;
            let distance = branch_distance(project, &detail.task).await;
            let runs = super::workflow::of_task(&*project.store().await?, id).await?;
            let routing = routing_of(project, &detail.task);
            if as_json {
                let mut value = serde_json::to_value(&detail)?;
                value["routing"] = match &routing {
                    None => serde_json::Value::Null,
                    Some(Ok((agent, agency))) => {
                        serde_json::json!({"agent": agent, "agency": agency, "waits": null})
                    }
                    Some(Err(why)) => {
                        serde_json::json!({"agent": null, "agency": null, "waits": why})
                    }
                };
                value["workflows"] = runs.iter().map(super::workflow::run_json).collect();
                value["branch_distance"] = match &distance {
                    Some((base, d)) => serde_json::json!({
                        "base": base,
                        "ahead": d.ahead,
                        "behind": d.behind,
                    }),
                    None => serde_json::Value::Null,
                };
                json(&value)?;
            } else {
                print_task(&detail.task);
                match &routing {
                    Some(Ok((agent, Some(agency)))) => {
                        outln!("  routing:   agency {agency}, agent {agent} (when nothing is busy)")
                    }
                    Some(Ok((agent, None))) => outln!("  routing:   agent {agent}"),
                    Some(Err(why)) => outln!("  waits:     {why}"),
                    None => {}
                }
                if let Some(wait) = &detail.area_wait {
                    outln!("  waits:     {}", crate::output::one_line(&wait.reason));
                }
                for l in &detail.area_leases {
                    outln!(
                        "  area:      {} (L{}, held by execution #{} until {})",
                        crate::output::one_line(l.path.as_str()),
                        l.id,
                        l.execution,
                        l.expires_at.to_rfc3339()
                    );
                }
                if let Some((base, d)) = &distance {
                    outln!(
                        "  distance:  {} commit(s) ahead of {base}, {} behind",
                        d.ahead,
                        d.behind
                    );
                }
                let u = &detail.usage;
                if u.counts.requests > 0 {
                    outln!(
                        "  cost:      {} ({} request(s); tokens: {} in, {} of them cached, {} out)",
                        u.cost,
                        u.counts.requests,
                        u.counts.tokens.input,
                        u.counts.tokens.cached,
                        u.counts.tokens.output
                    );
                }
                if let Some(v) = &detail.last_validation {
                    outln!(
                        "\nlast validation (execution {}, iteration {}): {}, score {:.2}",
                        v.execution,
                        v.iteration,
                        if v.passed { "passed" } else { "failed" },
                        v.score
                    );
                    let rows: Vec<Vec<String>> = v
                        .results
                        .iter()
                        .map(|r| {
                            let result = match (r.timed_out, r.passed) {
                                (true, _) => "timed out",
                                (false, true) => "passed",
                                (false, false) => "failed",
                            };
                            vec![
                                r.name.clone(),
                                format!("{:.2}", r.score),
                                result.to_string(),
                            ]
                        })
                        .collect();
                    table(&["VALIDATOR", "SCORE", "RESULT"], &rows);
                }
                for run in &runs {
                    outln!();
                    super::workflow::print_run(run);
                }
                print_handoffs(&detail.handoffs);
                if !detail.children.is_empty() {
                    outln!("\nsub-tasks:");
                    super::task_list::print_tasks(&detail.children);
                }
                if !detail.executions.is_empty() {
                    outln!("\nexecutions:");
                    let rows: Vec<Vec<String>> = detail
                        .executions
                        .iter()
                        .map(|e| {
                            vec![
                                e.id.to_string(),
                                e.kind.to_string(),
                                e.agent.clone(),
                                e.attempt.to_string(),
                                e.iteration.to_string(),
                                e.state.to_string(),
                                format!("{:.1}s", e.usage.wall_ms as f64 / 1000.0),
                                clip(e.summary.as_deref().unwrap_or(""), 60),
                            ]
                        })
                        .collect();
                    table(
                        &[
                            "ID", "KIND", "AGENT", "ATTEMPT", "ITER", "STATE", "WALL", "SUMMARY",
                        ],
                        &rows,
                    );
                }
                if !detail.validations.is_empty() {
                    outln!("\nvalidation:");
                    for v in &detail.validations {
                        super::verdicts::print(v, "  ", 12);
                    }
                }
                if !detail.agents.is_empty() {
                    outln!("\nagent:");
                    for a in &detail.agents {
                        print_agent_summary(a);
                    }
                }
                outln!("\nhistory:");
                for e in &detail.events {
                    outln!(
                        "  {:>6}  {}  {}  {}",
                        e.seq,
                        e.at,
                        one_line(&e.actor),
                        one_line(&e.kind.describe())
                    );
                }
            }
        }
        TaskCommand::Edit(args) => {
            // `--agent ''` routes by labels again and names no agent.
            if let Some(agent) = args.agent.as_deref().filter(|a| !a.is_empty()) {
                known_agent(project, agent, "nothing was changed")?;
            }
            let edit = EditTask {
                id: args.id,
                title: args.title,
                body: args.body,
                add_labels: args.add_labels,
                remove_labels: args.remove_labels,
                priority: args.priority,
                agent: args.agent,
            };
            let task = app.execute(&actor, edit).await?;
            if args.json {
                json(&task)?;
            } else {
                outln!("updated task #{}", task.id);
            }
        }
        TaskCommand::Cancel { ids, reason, json } => {
            // A task cancelled with an earlier id's tree is not cancelled twice.
            let gone = std::cell::RefCell::new(std::collections::BTreeSet::new());
            let results = each_id(ids, |id| {
                let (app, actor, reason, gone) = (&app, &actor, reason.clone(), &gone);
                async move {
                    let done_already = gone.borrow().contains(&id);
                    if done_already {
                        return Ok((
                            format!("task #{id} was cancelled with a task above it"),
                            Vec::new(),
                        ));
                    }
                    let cancel = Cancel {
                        ids: vec![id],
                        cascade: true,
                        reason,
                    };
                    let cancelled = app.execute(actor, cancel).await?;
                    gone.borrow_mut().extend(cancelled.tasks.iter().copied());
                    let below = cancelled.sub_tasks(1);
                    let message = format!(
                        "cancelled task #{id}{}",
                        if below > 0 {
                            format!(" and {below} sub-task(s)")
                        } else {
                            String::new()
                        }
                    );
                    Ok((message, cancelled.tasks))
                }
            })
            .await;
            return report_each(&results, json);
        }
        TaskCommand::Reopen {
            ids,
            feedback,
            json,
        } => {
            let results = each_id(ids, |id| {
                let (app, actor, feedback) = (&app, &actor, feedback.clone());
                async move {
                    let with_feedback = feedback.is_some();
                    app.execute(actor, Reopen { id, feedback }).await?;
                    let said = if with_feedback {
                        format!("reopened task #{id}: its next execution gets your feedback")
                    } else {
                        format!("reopened task #{id}")
                    };
                    Ok((said, Vec::new()))
                }
            })
            .await;
            return report_each(&results, json);
        }
        TaskCommand::Answer { id, text } => {
            app.execute(&actor, Answer { id, text }).await?;
            outln!("answered task #{id} and reopened it: its next execution gets your answer");
        }
        TaskCommand::Nudge { ids, json } => {
            let results = each_id(ids, |id| {
                let (app, actor) = (&app, &actor);
                async move {
                    app.execute(actor, Nudge { id }).await?;
                    Ok((
                        format!("nudged task #{id}: it runs as soon as caps and guards allow"),
                        Vec::new(),
                    ))
                }
            })
            .await;
            return report_each(&results, json);
        }
        TaskCommand::Comment { id, text } => {
            app.execute(&actor, Comment::new(id, text)).await?;
            outln!("commented on task #{id}");
        }
        TaskCommand::Dep(DepCommand::Add { task, blocker }) => {
            app.execute(&actor, AddDependency { task, blocker }).await?;
            outln!("task #{task} now waits for #{blocker}");
        }
        TaskCommand::Dep(DepCommand::Rm { task, blocker }) => {
            app.execute(&actor, RemoveDependency { task, blocker })
                .await?;
            outln!("task #{task} no longer waits for #{blocker}");
        }
    }
    Ok(exit::OK)
}

/// Refuses an agent name that no manifest of the project defines, listing the ones that are
/// defined: a task assigned to a typo would wait for ever, routed to nobody.
fn known_agent(project: &Project, name: &str, unchanged: &str) -> anyhow::Result<()> {
    let manifests = project.manifests()?;
    if manifests.agent(name).is_some() {
        return Ok(());
    }
    let names: Vec<String> = manifests.agents.iter().map(|a| a.name.clone()).collect();
    let dir = project.state_dir.join("agents");
    Err(user_error(if names.is_empty() {
        format!(
            "no agent named `{}`: the project defines no agents; add one under {}/ (see `agentgrid init`); {unchanged}",
            one_line(name),
            dir.display()
        )
    } else {
        format!(
            "no agent named `{}`: the project's agents are {} (defined in {}/); {unchanged}",
            one_line(name),
            names.join(", "),
            dir.display()
        )
    }))
}

/// Refuses an import whose lines name an agent the project does not define, naming each such
/// line, as `task add --agent` refuses one. Lines that are wrong in another way are left to the
/// import itself, which reports them all.
fn known_agents_of_import(project: &Project, source: &str, text: &str) -> anyhow::Result<()> {
    let Ok(lines) = app::parse_import(source, text) else {
        return Ok(());
    };
    let named: Vec<(usize, String)> = lines
        .into_iter()
        .filter_map(|(line, task)| Some((line, task.agent?)))
        .collect();
    if named.is_empty() {
        return Ok(());
    }
    let manifests = project.manifests()?;
    let unknown: Vec<String> = named
        .iter()
        .filter(|(_, agent)| manifests.agent(agent).is_none())
        .map(|(line, agent)| format!("  {source}:{line}: no agent named `{}`", one_line(agent)))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = manifests.agents.iter().map(|a| a.name.clone()).collect();
    let dir = project.state_dir.join("agents");
    let agents = if names.is_empty() {
        format!(
            "the project defines no agents; add one under {}/ (see `agentgrid init`)",
            dir.display()
        )
    } else {
        format!(
            "the project's agents are {} (defined in {}/)",
            names.join(", "),
            dir.display()
        )
    };
    Err(user_error(format!(
        "{} line(s) of {source} name an unknown agent, so nothing was imported:\n{}\n{agents}; \
         name one of them, or leave `agent` out to route by labels",
        unknown.len(),
        unknown.join("\n")
    )))
}

/// What a command given several ids did with one of them.
#[derive(Debug, serde::Serialize)]
struct IdResult {
    id: TaskId,
    ok: bool,
    /// What was done, or what was wrong and what to do.
    message: String,
    /// `cancel` only: every task cancelled for this id, its sub-tasks included, deepest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cancelled: Vec<TaskId>,
    /// The exit status this id alone would have given.
    #[serde(skip)]
    exit: u8,
}

/// Runs `one` for each id (repeated ids once, in the order given), on to the next whatever it
/// answered.
async fn each_id<F, Fut>(ids: Vec<TaskId>, mut one: F) -> Vec<IdResult>
where
    F: FnMut(TaskId) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(String, Vec<TaskId>)>>,
{
    let mut seen = std::collections::BTreeSet::new();
    let mut results = Vec::with_capacity(ids.len());
    for id in ids.into_iter().filter(|id| seen.insert(*id)) {
        results.push(match one(id).await {
            Ok((message, touched)) => IdResult {
                id,
                ok: true,
                message,
                cancelled: touched,
                exit: exit::OK,
            },
            Err(e) => IdResult {
                id,
                ok: false,
                message: crate::error::describe(&e),
                cancelled: Vec::new(),
                exit: crate::error::exit_code(&e),
            },
        });
    }
    results
}

/// Prints one line per id (failures on standard error) or the JSON array; the exit status is
/// the first failure's.
fn report_each(results: &[IdResult], as_json: bool) -> anyhow::Result<u8> {
    if as_json {
        json(results)?;
    } else {
        for r in results {
            if r.ok {
                outln!("{}", r.message);
            } else if r.message.contains(&format!("#{}", r.id)) {
                eprintln!("{} {}", crate::output::error_prefix(), r.message);
            } else {
                // Every line names its id, so that a failure among many is found.
                eprintln!(
                    "{} task #{}: {}",
                    crate::output::error_prefix(),
                    r.id,
                    r.message
                );
            }
        }
    }
    Ok(results.iter().find(|r| !r.ok).map_or(exit::OK, |r| r.exit))
}

/// The text to import and a name for it in messages.
fn read_input(file: &std::path::Path) -> anyhow::Result<(String, String)> {
    use std::io::Read;
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| user_error(format!("cannot read standard input: {e}")))?;
        Ok(("standard input".into(), text))
    } else {
        let bytes = std::fs::read(file).map_err(|e| {
            user_error(format!(
                "cannot read {}: {e}; give a file of JSON lines, or `-` for standard input",
                file.display()
            ))
        })?;
        let name = file.display().to_string();
        let text = utf8_text(&name, bytes)?;
        Ok((name, text))
    }
}

/// `bytes` as text, or an error naming the line and column of the first byte that is not
/// UTF-8, with the decoder's own error as its cause.
fn utf8_text(name: &str, bytes: Vec<u8>) -> Result<String, app::Error> {
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = 1 + good.iter().filter(|&&b| b == b'\n').count();
        let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let column = 1 + String::from_utf8_lossy(&good[line_start..]).chars().count();
        app::Error::invalid_because(
            format!("{name}:{line}:{column}: not UTF-8 text, so nothing was imported"),
            e.utf8_error(),
        )
    })
}

/// How far the task's branch is from its base, and the base's name; `None` when the task has
/// no branch yet or the branch cannot be read (the rest of `task show` stands without it).
async fn branch_distance(project: &Project, task: &Task) -> Option<(String, workspace::Distance)> {
    task.branch.as_ref()?;
    let manager = super::diff::workspaces(project).await.ok().flatten()?;
    if super::diff::readable_branch(&manager, task)
        .await
        .ok()?
        .is_some()
    {
        return None;
    }
    let distance = match manager.distance(task.id, task.parent).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(task = %task.id, "cannot tell how far the branch is from its base: {e}");
            return None;
        }
    };
    let base = match task.parent {
        Some(parent) => workspace::Workspaces::branch_name(parent),
        None => manager.config().base.clone(),
    };
    Some((base, distance))
}

fn print_task(t: &Task) {
    outln!("#{} {}", t.id, one_line(&t.title));
    outln!("  state:     {}", t.state);
    outln!("  priority:  {}", t.priority);
    if let Some(p) = t.parent {
        outln!("  parent:    #{p}");
    }
    if !t.labels.is_empty() {
        outln!("  labels:    {}", one_line(&t.labels.join(", ")));
    }
    if !t.blocked_by.is_empty() {
        let ids: Vec<String> = t.blocked_by.iter().map(|d| format!("#{d}")).collect();
        outln!("  blocked by: {}", ids.join(", "));
    }
    if let Some(a) = &t.agent {
        outln!("  agent:     {}", one_line(a));
    }
    if let Some(b) = &t.branch {
        outln!("  branch:    {}", one_line(b));
    }
    outln!(
        "  attempts:  {} failed, {} executions",
        t.attempts,
        t.executions
    );
    if let Some(s) = &t.summary {
        outln!("  last word: {}", one_line(s));
    }
    if let Some(m) = &t.merge_failed {
        outln!("  merge failed: {}", one_line(m));
    }
    if !t.body.is_empty() {
        outln!();
        block(&t.body, "  ");
    }
}

/// Who handed the task to whom and when, with the summary and artifacts (agent text, so each
/// is one escaped line).
fn print_handoffs(handoffs: &[app::HandoffRecord]) {
    if handoffs.is_empty() {
        return;
    }
    outln!("\nhandoffs:");
    for h in handoffs {
        let void = match &h.voided {
            Some(why) => format!(" [did not take effect: {}]", one_line(&clip(why, 80))),
            None => String::new(),
        };
        outln!(
            "  {}  {} (execution {}){void}: {}",
            h.at.to_rfc3339(),
            one_line(&h.route()),
            h.execution,
            one_line(&clip(&h.summary, 200))
        );
        if !h.artifacts.is_empty() {
            let paths: Vec<String> = h
                .artifacts
                .iter()
                .map(|a| one_line(a).into_owned())
                .collect();
            outln!("    artifacts: {}", paths.join(", "));
        }
    }
}

/// One execution's agent events in a few lines: the session, what it did, what it said last.
fn print_agent_summary(a: &app::AgentSummary) {
    let session = a
        .session
        .as_deref()
        .map(|s| format!(", session {}", one_line(s)))
        .unwrap_or_default();
    outln!(
        "  execution {}: {} messages, tool calls: {} ({} failed), reported {} tokens in, {} out{session}",
        a.execution,
        a.messages,
        a.tool_calls,
        a.failed_tool_calls,
        a.reported_tokens.input,
        a.reported_tokens.output
    );
    for e in &a.errors {
        outln!("    error: {}", one_line(&clip(e, 200)));
    }
    for w in &a.warnings {
        outln!("    warning: {}", one_line(&clip(w, 200)));
    }
    if let Some((text, failed)) = &a.result {
        let what = if *failed { "failed" } else { "result" };
        outln!("    {what}: {}", one_line(&clip(text, 200)));
    }
}

/// What an empty `task list` found, in the words of its filter: "no failed tasks", "no open or
/// blocked tasks labelled ui under #3".
pub(super) fn no_match(filter: &TaskFilter) -> String {
    let mut text = String::from("no ");
    let states: Vec<String> = filter.states.iter().map(|s| s.to_string()).collect();
    match states.split_last() {
        None => {}
        Some((last, [])) => text.push_str(&format!("{last} ")),
        Some((last, rest)) => text.push_str(&format!("{} or {last} ", rest.join(", "))),
    }
    text.push_str("tasks");
    if !filter.labels.is_empty() {
        text.push_str(&format!(
            " labelled {}",
            one_line(&filter.labels.join(" and "))
        ));
    }
    if let Some(Some(parent)) = filter.parent {
        text.push_str(&format!(" under #{parent}"));
    }
    text
}

/// Where an open task would go now, by the same rules the scheduler routes with (as if no
/// agent were busy): the agent and its agency, or why nothing takes it. `None` for a task
/// that is not open, or when the manifests do not load (`validate` says why).
fn routing_of(
    project: &Project,
    task: &domain::Task,
) -> Option<Result<(String, Option<String>), String>> {
    if task.state != domain::TaskState::Open {
        return None;
    }
    let manifests = project.manifests().ok()?;
    let setup = engine::setup_from_project(&manifests, &project.root).ok()?;
    let config = &setup.config;
    Some(
        scheduler::assign(
            task,
            domain::ExecutionKind::Work,
            config,
            &|_| 0,
            domain::Timestamp(0),
        )
        .map(|r| (r.agent.name.clone(), r.agency.map(|a| a.name.clone()))),
    )
}
