//! The approval queue: deciding on approvals, asking about them, and the views a person
//! decides from.
//!
//! The rules of a decision (made once, a rejection reopens the task) are the tracker's; here a
//! decision is checked against what a person can name (an approval that exists) and carried
//! out as one batch, and the views gather what a person needs: the task and its tree, the
//! validators' verdicts of the execution under review, and what the tree cost so far. The
//! diff is read by the face with the workspace's host git, since this layer does no git.

use std::sync::Arc;

use domain::event::ValidatorResult;
use domain::{
    Approval, ApprovalId, ApprovalState, Decision, EntityKind, EventKind, Task, TaskId, TaskState,
    Timestamp,
};
use serde::Serialize;
use store::{ApprovalFilter, Change, ModelUsage, UsageScope};

use crate::{Actor, App, Command, Error, Land, Landed, Lander, Query};

/// Decide on a pending approval: approve it, or reject it with feedback for the next
/// execution (which reopens the task).
#[derive(Clone)]
pub struct DecideApproval {
    pub id: ApprovalId,
    pub decision: Decision,
    /// Lands an approved done task's work at once (the project's `approvals.land_after`);
    /// `None` leaves landing to `agentgrid land`.
    pub land_after: Option<Arc<dyn Lander>>,
}

impl std::fmt::Debug for DecideApproval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecideApproval")
            .field("id", &self.id)
            .field("decision", &self.decision)
            .field("land_after", &self.land_after.is_some())
            .finish()
    }
}

/// What a decision did: the approval as decided and, when the policy lands approved work,
/// how that land went.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    pub approval: Approval,
    pub land: Option<LandAfter>,
}

/// The land that followed an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LandAfter {
    /// Landed, already there, or a conflict handed to a task (see [`Landed`]).
    Landed(Landed),
    /// Not landed, for this reason; nothing moved, and the reason is on the task.
    Failed(String),
}

#[async_trait::async_trait]
impl Command for DecideApproval {
    type Output = Decided;

    async fn run(self, app: &App, actor: &Actor) -> Result<Decided, Error> {
        find(app, self.id).await?;
        if let Decision::Reject { feedback } = &self.decision
            && feedback.trim().is_empty()
        {
            return Err(Error::invalid(
                "a rejection needs feedback: say what the next execution must change \
                 (--feedback TEXT)",
            ));
        }
        let change = Change::DecideApproval {
            id: self.id,
            decision: self.decision,
        };
        let applied = app.apply(actor, vec![change]).await?;
        let decided = applied
            .approvals
            .into_iter()
            .find(|a| a.id == self.id)
            .ok_or_else(|| Error::invalid(format!("approval #{} was not decided", self.id)))?;
        let land = match self.land_after {
            Some(lander) => land_after_approval(app, actor, &decided, lander).await?,
            None => None,
        };
        Ok(Decided {
            approval: decided,
            land,
        })
    }
}

/// Lands the work of an approved done task (an approval the policy asked for). The approval
/// is recorded whatever happens here: landing is a step of its own, and a land that fails
/// leaves the decision standing, the base where it was, and the reason on the task, where the
/// next person to look finds it.
async fn land_after_approval(
    app: &App,
    actor: &Actor,
    approval: &Approval,
    lander: Arc<dyn Lander>,
) -> Result<Option<LandAfter>, Error> {
    if approval.state != ApprovalState::Approved {
        return Ok(None);
    }
    let task = app.find(approval.task_id).await?;
    // An agent's request approves a plan mid-work: the task runs again, nothing lands yet.
    if task.state != TaskState::Done {
        return Ok(None);
    }
    let land = Land {
        task: task.id,
        strategy: None,
        dry_run: false,
        lander,
    };
    let note = match land.run(app, actor).await {
        Ok(landed) => {
            if let Landed::Conflict {
                files, task: made, ..
            } = &landed
            {
                let by = made
                    .map(|t| format!("; task #{t} resolves them"))
                    .unwrap_or_default();
                let text = format!(
                    "approval #{} was approved, but landing conflicts in {}{by}",
                    approval.id,
                    files.join(", ")
                );
                app.apply(actor, vec![Change::Comment { id: task.id, text }])
                    .await?;
            }
            return Ok(Some(LandAfter::Landed(landed)));
        }
        Err(Error::Invalid { message, .. }) => message,
        Err(other) => other.to_string(),
    };
    let text = format!("approval #{} was approved, but {note}", approval.id);
    app.apply(actor, vec![Change::Comment { id: task.id, text }])
        .await?;
    Ok(Some(LandAfter::Failed(note)))
}

/// Ask a question about a pending approval instead of deciding; it is recorded on the task
/// and shown with the approval, which stays pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AskApproval {
    pub id: ApprovalId,
    pub question: String,
}

#[async_trait::async_trait]
impl Command for AskApproval {
    type Output = ();

    async fn run(self, app: &App, actor: &Actor) -> Result<(), Error> {
        find(app, self.id).await?;
        if self.question.trim().is_empty() {
            return Err(Error::invalid(
                "the question is empty: say what you want to know",
            ));
        }
        let change = Change::AskApproval {
            id: self.id,
            question: self.question,
        };
        app.apply(actor, vec![change]).await?;
        Ok(())
    }
}

async fn find(app: &App, id: ApprovalId) -> Result<Approval, Error> {
    app.store.approval(id).await?.ok_or_else(|| {
        Error::invalid(format!(
            "approval #{id} does not exist: see `agentgrid approvals list`"
        ))
    })
}

/// The approvals in one state (pending by default), newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalList {
    /// `None` lists every state.
    pub state: Option<ApprovalState>,
    pub limit: u32,
}

impl Default for ApprovalList {
    fn default() -> Self {
        ApprovalList {
            state: Some(ApprovalState::Pending),
            limit: 100,
        }
    }
}

/// One row of the queue: the approval with what its summary columns show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApprovalLine {
    pub approval: Approval,
    pub title: String,
    /// The agent whose work it is: the execution's, or the task's assignment.
    pub agent: Option<String>,
    /// The validators' verdict on the work, when any validator ran.
    pub validators: Option<ValidatorSummary>,
    /// The model use of the task's whole tree so far, as the model gateway recorded it.
    pub usage: ModelUsage,
}

/// The validators of the last validation of the execution under review.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidatorSummary {
    pub passed: usize,
    pub total: usize,
    pub score: f64,
}

#[async_trait::async_trait]
impl Query for ApprovalList {
    type Output = Vec<ApprovalLine>;

    async fn run(self, app: &App, _actor: &Actor) -> Result<Vec<ApprovalLine>, Error> {
        let filter = ApprovalFilter {
            state: self.state,
            task: None,
            limit: Some(self.limit),
        };
        let mut lines = Vec::new();
        for approval in app.store.approvals(&filter).await? {
            lines.push(line(app, approval).await?.0);
        }
        Ok(lines)
    }
}

/// What the rows show, and the last validation's results for the detail view.
async fn line(
    app: &App,
    approval: Approval,
) -> Result<(ApprovalLine, Vec<ValidatorResult>), Error> {
    let store = app.store.as_ref();
    let task = app.find(approval.task_id).await?;
    let execution = match approval.execution_id {
        Some(id) => store.execution(id).await?,
        None => None,
    };
    let results = match &execution {
        Some(e) => crate::of_execution(store, e)
            .await?
            .pop()
            .map(|v| (v.score, v.results)),
        None => None,
    };
    let validators = results.as_ref().and_then(|(score, results)| {
        (!results.is_empty()).then(|| ValidatorSummary {
            passed: results.iter().filter(|r| r.passed).count(),
            total: results.len(),
            score: *score,
        })
    });
    let usage = store.model_usage(&UsageScope::Tree(task.root)).await?;
    let agent = execution.map(|e| e.agent).or_else(|| task.agent.clone());
    let line = ApprovalLine {
        title: task.title,
        agent,
        validators,
        usage,
        approval,
    };
    Ok((line, results.map(|(_, r)| r).unwrap_or_default()))
}

/// One approval with everything a person decides from, but the diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalShow {
    pub id: ApprovalId,
}

/// The answer to [`ApprovalShow`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApprovalDetail {
    #[serde(flatten)]
    pub line: ApprovalLine,
    pub task: Task,
    /// The sub-tasks of the task, by id.
    pub children: Vec<Task>,
    /// Each validator's verdict in the last validation of the execution under review.
    pub results: Vec<ValidatorResult>,
    /// The questions asked about this approval, oldest first.
    pub questions: Vec<Question>,
    /// Commands that show the work.
    pub preview: Vec<String>,
}

/// A question a person asked about an approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Question {
    pub by: String,
    pub at: Timestamp,
    pub text: String,
}

#[async_trait::async_trait]
impl Query for ApprovalShow {
    type Output = ApprovalDetail;

    async fn run(self, app: &App, _actor: &Actor) -> Result<ApprovalDetail, Error> {
        let approval = find(app, self.id).await?;
        let task_id = approval.task_id;
        let (line, results) = line(app, approval).await?;
        let store = app.store.as_ref();
        let task = app.find(task_id).await?;
        let children = store.children(task_id).await?;
        let questions = store
            .entity_events(EntityKind::Task, task_id.0)
            .await?
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::TaskApprovalQuestioned {
                    approval,
                    by,
                    question,
                } if approval == self.id => Some(Question {
                    by,
                    at: e.at,
                    text: question,
                }),
                _ => None,
            })
            .collect();
        let preview = vec![
            format!("agentgrid approvals show {} --diff", self.id),
            format!("git log -p agentgrid/task-{task_id}"),
            format!("agentgrid task show {task_id}"),
        ];
        Ok(ApprovalDetail {
            line,
            task,
            children,
            results,
            questions,
            preview,
        })
    }
}

impl App {
    /// The feedback of the task's latest rejected approval, for the prompt of its next
    /// execution; `None` when no approval of the task was rejected.
    pub async fn latest_rejection_feedback(&self, task: TaskId) -> Result<Option<String>, Error> {
        let filter = ApprovalFilter {
            state: Some(ApprovalState::Rejected),
            task: Some(task),
            limit: Some(1),
        };
        Ok(self
            .store
            .approvals(&filter)
            .await?
            .into_iter()
            .next()
            .and_then(|a| a.feedback))
    }
}
