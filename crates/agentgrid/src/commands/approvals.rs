//! `agentgrid approvals …`: the approval queue's face. The rules and views live in the
//! application layer; this module adds the diff (read with the workspace's host git), prints
//! the answers and, on a terminal, opens the interactive queue (`approvals_tui`).

use std::io::IsTerminal;
use std::sync::Arc;

use app::{
    Actor, App, ApprovalDetail, ApprovalLine, ApprovalList, ApprovalShow, AskApproval,
    DecideApproval, Decided, LandAfter, Landed, Lander,
};
use domain::{ApprovalId, ApprovalState, Decision, Timestamp};
use serde::Serialize;
use workspace::{Review, WorkspaceConfig, Workspaces};

use crate::cli::ApprovalsCommand;
use crate::exit;
use crate::output::{block, clip, json, one_line, table};
use crate::project::Project;

/// How much of a diff `show --diff` and the detail view hold.
pub(super) const MAX_PATCH_BYTES: usize = 4 * 1024 * 1024;

/// One row of the queue with the diff stats of the task's branch, when there is a branch to
/// read.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Row {
    #[serde(flatten)]
    pub line: ApprovalLine,
    pub diff: Option<DiffStat>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct DiffStat {
    pub files: usize,
    pub added: u64,
    pub removed: u64,
}

impl From<&Review> for DiffStat {
    fn from(r: &Review) -> DiffStat {
        let (added, removed) = r.totals();
        DiffStat {
            files: r.files.len(),
            added,
            removed,
        }
    }
}

/// What the queue reads from: the application layer, and the project's repository for diffs.
pub(super) struct Queue {
    pub app: App,
    pub workspaces: Option<Workspaces>,
    /// The project, when its policy lands approved work (`approvals.land_after`): the lander
    /// is made from it for each approval.
    land_after: Option<Project>,
    /// The project, for the land state of a workflow whose gate an approval opens.
    project: Project,
}

impl Queue {
    pub(super) async fn open(project: &Project) -> anyhow::Result<Queue> {
        let land_after = manifest::load_project(&project.state_dir)
            .is_ok_and(|m| m.config.approvals.land_after)
            .then(|| Project {
                root: project.root.clone(),
                state_dir: project.state_dir.clone(),
            });
        Ok(Queue {
            app: project.app().await?,
            workspaces: workspaces(project),
            land_after,
            project: Project {
                root: project.root.clone(),
                state_dir: project.state_dir.clone(),
            },
        })
    }

    /// The diff of the task's branch, `None` without worktrees or a branch to compare.
    pub(super) async fn review(&self, task: domain::TaskId, patch: usize) -> Option<Review> {
        self.workspaces.as_ref()?.review(task, patch).await.ok()
    }

    pub(super) async fn rows(&self, state: Option<ApprovalState>) -> anyhow::Result<Vec<Row>> {
        let query = ApprovalList {
            state,
            ..ApprovalList::default()
        };
        let lines = self.app.ask(&Actor::command_line(), query).await?;
        let mut rows = Vec::with_capacity(lines.len());
        for line in lines {
            let diff = self
                .review(line.approval.task_id, 0)
                .await
                .as_ref()
                .map(DiffStat::from);
            rows.push(Row { line, diff });
        }
        Ok(rows)
    }

    pub(super) async fn detail(
        &self,
        id: ApprovalId,
    ) -> anyhow::Result<(ApprovalDetail, Option<Review>)> {
        let detail = self
            .app
            .ask(&Actor::command_line(), ApprovalShow { id })
            .await?;
        let review = self.review(detail.task.id, MAX_PATCH_BYTES).await;
        Ok((detail, review))
    }

    pub(super) async fn decide(
        &self,
        id: ApprovalId,
        decision: Decision,
    ) -> anyhow::Result<Decided> {
        // Only an approval lands; the lander (the manifests' agents, the workspaces) is made
        // before anything is decided, so that a broken setup refuses and changes nothing.
        let land_after = match (&self.land_after, &decision) {
            (Some(project), Decision::Approve) => {
                let lander: Arc<dyn Lander> = Arc::new(super::land::local_lander(project).await?);
                Some(lander)
            }
            _ => None,
        };
        let command = DecideApproval {
            id,
            decision,
            land_after,
        };
        let mut decided = self.app.execute(&Actor::command_line(), command).await?;
        if decided.land.is_none() && decided.approval.state == ApprovalState::Approved {
            decided.land = self.land_workflow_state(decided.approval.task_id).await?;
        }
        Ok(decided)
    }

    /// An approval that moved a workflow run to its land state: the land is carried out here
    /// and now, as the engine would, so that approving lands the work. Left to the engine
    /// when one runs (it holds the lock and lands at its next turn) or nothing waits to land.
    async fn land_workflow_state(&self, task: domain::TaskId) -> anyhow::Result<Option<LandAfter>> {
        if app::awaited_land(&self.app, task).await?.is_none() {
            return Ok(None);
        }
        let lock = self.project.state_dir.join("engine.lock");
        let _lock = match engine::EngineLock::acquire(&lock) {
            Ok(lock) => lock,
            Err(engine::Error::Locked { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let lander: Arc<dyn Lander> = Arc::new(super::land::local_lander(&self.project).await?);
        let land = app::LandWorkflowState { task, lander };
        Ok(self.app.execute(&Actor::command_line(), land).await?)
    }

    /// The feedback for a rejection of `id`, written in the person's editor; `None` when they
    /// left it empty.
    pub(super) async fn feedback_in_editor(
        &self,
        editor: String,
        id: ApprovalId,
    ) -> anyhow::Result<Option<String>> {
        let (detail, _) = self.detail(id).await?;
        let (task, title) = (detail.task.id, detail.task.title);
        tokio::task::spawn_blocking(move || {
            let about = super::feedback_editor::About {
                approval: id,
                task,
                title: &title,
            };
            super::feedback_editor::write_feedback(&editor, &about)
        })
        .await?
    }
}

/// What an approval's decision says on one line, with how its land went when one followed.
pub(super) fn decided_line(decided: &Decided) -> String {
    let a = &decided.approval;
    match (a.state, &decided.land) {
        (ApprovalState::Rejected, _) if a.source == domain::ApprovalSource::Workflow => format!(
            "rejected #{}: the workflow takes task #{} on, with the feedback for its next agent",
            a.id, a.task_id
        ),
        (ApprovalState::Rejected, _) => format!(
            "rejected #{}: task #{} is reopened with the feedback",
            a.id, a.task_id
        ),
        (state, None) => format!("{state} #{} (task #{})", a.id, a.task_id),
        (state, Some(LandAfter::Landed(landed))) => {
            let said = super::land::landed_lines(a.task_id, landed).join("; ");
            format!("{state} #{} (task #{}): {said}", a.id, a.task_id)
        }
        (state, Some(LandAfter::Failed(why))) => format!(
            "{state} #{} (task #{}), but it was not landed: {why}",
            a.id, a.task_id
        ),
    }
}

/// Whether the land that followed a decision (if any) failed to bring the work in.
pub(super) fn land_failed(decided: &Decided) -> bool {
    matches!(
        decided.land,
        Some(LandAfter::Failed(_)) | Some(LandAfter::Landed(Landed::Conflict { .. }))
    )
}

/// The project's worktree settings, enough to read a task's branch; `None` when worktrees are
/// off or the manifests cannot be read (the queue then shows no diffs).
fn workspaces(project: &Project) -> Option<Workspaces> {
    let manifests = manifest::load_project(&project.state_dir).ok()?;
    let ws = &manifests.config.workspace;
    if !ws.enabled {
        return None;
    }
    let root = if ws.root.is_absolute() {
        ws.root.clone()
    } else {
        project.root.join(&ws.root)
    };
    Some(Workspaces::new(WorkspaceConfig {
        repo_root: project.root.clone(),
        root,
        base: ws.base.clone(),
        hooks: workspace::Hooks::default(),
        hook_timeout: std::time::Duration::from_secs(60),
        quota: workspace::Quota::default(),
        drivers: workspace::TrustedDrivers::default(),
    }))
}

pub async fn approvals(project: &Project, cmd: Option<ApprovalsCommand>) -> anyhow::Result<u8> {
    let queue = Queue::open(project).await?;
    let actor = Actor::command_line();
    let Some(cmd) = cmd else {
        if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
            return super::approvals_tui::run(queue).await;
        }
        let rows = queue.rows(Some(ApprovalState::Pending)).await?;
        print_rows(&rows, now());
        outln!(
            "(not a terminal: run `agentgrid approvals` in one for the interactive queue, or \
             use `agentgrid approvals show|approve|reject|ask ID`)"
        );
        return Ok(exit::OK);
    };
    match cmd {
        ApprovalsCommand::List { all, json: as_json } => {
            let state = (!all).then_some(ApprovalState::Pending);
            let rows = queue.rows(state).await?;
            if as_json {
                json(&rows)?;
            } else {
                print_rows(&rows, now());
            }
        }
        ApprovalsCommand::Show {
            id,
            diff,
            json: as_json,
        } => {
            let (detail, review) = queue.detail(id).await?;
            if as_json {
                let mut value = serde_json::to_value(&detail)?;
                value["diff"] = serde_json::to_value(review.as_ref().map(DiffStat::from))?;
                if diff {
                    value["patch"] = serde_json::json!(review.as_ref().map(|r| &r.patch));
                }
                json(&value)?;
            } else {
                print_detail(&detail, review.as_ref(), now());
                if diff {
                    match &review {
                        Some(r) => {
                            outln!("\ndiff {}..{}:", short(&r.base), short(&r.head));
                            block(&r.patch, "  ");
                            if r.truncated {
                                outln!("  (cut at {MAX_PATCH_BYTES} bytes)");
                            }
                        }
                        None => outln!("\nno diff: the task has no branch to compare"),
                    }
                }
            }
        }
        ApprovalsCommand::Approve { id, json: as_json } => {
            let decided = queue.decide(id, Decision::Approve).await?;
            print_decided(&decided, as_json)?;
            if land_failed(&decided) {
                return Ok(exit::FAILED);
            }
        }
        ApprovalsCommand::Reject {
            id,
            feedback,
            json: as_json,
        } => {
            let feedback = match feedback {
                Some(text) => text,
                None => match asked_in_editor(&queue, id).await? {
                    Some(text) => text,
                    None => {
                        outln!("the feedback was empty: approval #{id} stays pending");
                        return Ok(exit::OK);
                    }
                },
            };
            let decided = queue.decide(id, Decision::Reject { feedback }).await?;
            print_decided(&decided, as_json)?;
        }
        ApprovalsCommand::Ask {
            id,
            question,
            json: as_json,
        } => {
            queue
                .app
                .execute(&actor, AskApproval { id, question })
                .await?;
            if as_json {
                json(&serde_json::json!({ "approval": id, "asked": true }))?;
            } else {
                outln!("asked about #{id}; it stays pending");
            }
        }
    }
    Ok(exit::OK)
}

/// The feedback of `approvals reject ID` without `--feedback`: written in the person's editor
/// when there is a person at a terminal and an editor to open.
async fn asked_in_editor(queue: &Queue, id: ApprovalId) -> anyhow::Result<Option<String>> {
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        return Err(crate::user_error(
            "a rejection needs feedback: give --feedback TEXT (off a terminal no editor opens \
             for it)",
        ));
    }
    let Some(editor) = super::feedback_editor::chosen() else {
        return Err(crate::user_error(
            "a rejection needs feedback: give --feedback TEXT, or set $VISUAL or $EDITOR to \
             write it in your editor",
        ));
    };
    queue.feedback_in_editor(editor, id).await
}

fn print_decided(decided: &Decided, as_json: bool) -> anyhow::Result<()> {
    if !as_json {
        outln!("{}", decided_line(decided));
        return Ok(());
    }
    let mut value = serde_json::to_value(&decided.approval)?;
    if let Some(land) = &decided.land {
        value["land"] = match land {
            LandAfter::Landed(landed) => serde_json::json!({
                "outcome": match landed {
                    Landed::Moved { .. } => "landed",
                    Landed::UpToDate { .. } => "up_to_date",
                    Landed::Conflict { .. } => "conflict",
                },
                "said": super::land::landed_lines(decided.approval.task_id, landed),
            }),
            LandAfter::Failed(why) => serde_json::json!({ "outcome": "failed", "reason": why }),
        };
    }
    json(&value)
}

pub(super) fn now() -> Timestamp {
    use domain::Clock;
    domain::SystemClock.now()
}

/// How long ago, in the largest unit: `45s`, `12m`, `3h`, `2d`.
pub(super) fn age(since: Timestamp, now: Timestamp) -> String {
    let secs = (now.0 - since.0).max(0) / 1000;
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// The summary columns of a row, in the order of [`HEADER`].
pub(super) fn cells(row: &Row, now: Timestamp) -> Vec<String> {
    let line = &row.line;
    let a = &line.approval;
    vec![
        a.id.to_string(),
        format!("#{}", a.task_id),
        clip(&line.title, 40),
        line.agent.clone().unwrap_or_else(|| "-".into()),
        age(a.requested_at, now),
        match &line.validators {
            Some(v) => format!("{}/{} ({:.2})", v.passed, v.total, v.score),
            None => "-".into(),
        },
        match &row.diff {
            Some(d) => format!("+{} -{}", d.added, d.removed),
            None => "-".into(),
        },
        domain::event::dollars(line.usage.cost_micros),
        a.state.to_string(),
    ]
}

pub(super) const HEADER: [&str; 9] = [
    "ID",
    "TASK",
    "TITLE",
    "AGENT",
    "AGE",
    "VALIDATORS",
    "DIFF",
    "COST",
    "STATE",
];

fn print_rows(rows: &[Row], now: Timestamp) {
    if rows.is_empty() {
        outln!("no approvals are waiting");
        return;
    }
    let cells: Vec<Vec<String>> = rows.iter().map(|r| cells(r, now)).collect();
    table(&HEADER, &cells);
}

/// The detail of an approval as lines of text, shared by `show` and the interactive queue.
/// Every text an agent wrote is escaped.
pub(super) fn detail_lines(
    detail: &ApprovalDetail,
    review: Option<&Review>,
    now: Timestamp,
) -> Vec<String> {
    let a = &detail.line.approval;
    let mut out = vec![
        format!(
            "approval #{} · {} · asked by the {} {} ago",
            a.id,
            a.state,
            a.source,
            age(a.requested_at, now)
        ),
        format!(
            "task #{}: {} ({})",
            detail.task.id,
            one_line(&detail.task.title),
            detail.task.state
        ),
    ];
    if let Some(by) = &a.decided_by {
        out.push(format!("decided by {}", one_line(by)));
    }
    if let Some(feedback) = &a.feedback {
        out.push(format!("feedback: {}", one_line(feedback)));
    }
    out.push(String::new());
    out.push("summary:".into());
    out.extend(
        domain::text::multi_line(&a.summary)
            .lines()
            .map(|l| format!("  {l}")),
    );
    if !detail.children.is_empty() {
        out.push(String::new());
        out.push("sub-tasks:".into());
        for c in &detail.children {
            out.push(format!("  #{} {} ({})", c.id, one_line(&c.title), c.state));
        }
    }
    out.push(String::new());
    if detail.results.is_empty() {
        out.push("validators: none ran".into());
    } else {
        out.push("validators:".into());
        for r in &detail.results {
            let counts = r
                .counts
                .as_ref()
                .map(|c| {
                    format!(
                        ", {} passed, {} failed, {} errors, {} skipped",
                        c.passed, c.failed, c.errors, c.skipped
                    )
                })
                .unwrap_or_default();
            out.push(format!(
                "  {} {} score {:.2}{counts}",
                if r.passed { "pass" } else { "FAIL" },
                one_line(&r.name),
                r.score
            ));
        }
    }
    let u = &detail.line.usage;
    out.push(format!(
        "cost so far: {} ({} requests, {} tokens in, {} out)",
        domain::event::dollars(u.cost_micros),
        u.requests,
        u.tokens.input,
        u.tokens.output
    ));
    match review {
        Some(r) => {
            let (added, removed) = r.totals();
            out.push(format!(
                "diff: {} files, +{added} -{removed}",
                r.files.len()
            ));
            for f in &r.files {
                let counts = match (f.added, f.removed) {
                    (Some(a), Some(d)) => format!("+{a} -{d}"),
                    _ => "binary".into(),
                };
                out.push(format!("  {counts:>12}  {}", one_line(&f.path)));
            }
        }
        None => out.push("diff: none (no branch to compare)".into()),
    }
    if !detail.questions.is_empty() {
        out.push(String::new());
        out.push("questions:".into());
        for q in &detail.questions {
            out.push(format!(
                "  {} ({} ago): {}",
                one_line(&q.by),
                age(q.at, now),
                one_line(&q.text)
            ));
        }
    }
    out.push(String::new());
    out.push("preview:".into());
    out.extend(detail.preview.iter().map(|p| format!("  {p}")));
    out
}

fn print_detail(detail: &ApprovalDetail, review: Option<&Review>, now: Timestamp) {
    for line in detail_lines(detail, review, now) {
        outln!("{line}");
    }
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(10)]
}
