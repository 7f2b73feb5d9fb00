//! The local git [`app::Lander`]: the land commit made with the project's hardened host git in
//! the object store alone, the base ref moved with the value it held, and the main checkout
//! brought along when it has the base branch checked out and nothing changed in it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use executor::AgentRun;

use app::{LandRequest, Lander, Prepared, Ready};
use domain::LandStrategy;
use workspace::message::LandMessage;
use workspace::{MainCheckout, Workspaces};

/// Lands tasks' branches on the base branch of the repository `workspaces` works in.
pub struct LocalLander {
    workspaces: Arc<Workspaces>,
    strategy: LandStrategy,
    judges: Judges,
}

/// What the validators of a land run with: the agents as the manifests define them (never as
/// anything in the tree says) and the places their sandboxes are made from.
pub struct Judges {
    pub agents: HashMap<String, Arc<AgentRun>>,
    pub project_dir: PathBuf,
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    /// The agentgrid binary: the sandbox helper.
    pub agentgrid_bin: PathBuf,
    pub grace: std::time::Duration,
}

impl LocalLander {
    /// `strategy` is the project's `land.strategy`.
    pub fn new(workspaces: Arc<Workspaces>, strategy: LandStrategy, judges: Judges) -> LocalLander {
        LocalLander {
            workspaces,
            strategy,
            judges,
        }
    }

    /// Runs the validators of the agent that worked on the task last on the landed commit,
    /// as a verdict of its own would; `Some(reason)` when they fail.
    async fn judge(
        &self,
        request: &LandRequest,
        old: &str,
        new: &str,
    ) -> Result<Option<String>, String> {
        let Some(name) = &request.judge else {
            return Ok(None);
        };
        let Some(agent) = self.judges.agents.get(name) else {
            return Ok(Some(format!(
                "the agent `{name}` that worked on #{} is no longer defined, so its validators \
                 cannot judge the landed tree",
                request.task.id
            )));
        };
        if agent.validators.is_empty() {
            // Its clean exit was the evidence; there is nothing to run again.
            return Ok(None);
        }
        let j = &self.judges;
        let judge_dir = executor::land_judge_dir(&j.state_dir, request.task.id);
        let site = executor::Site {
            task: request.task.id,
            execution: None,
            agent,
            workspaces: Some(&self.workspaces),
            project_dir: &j.project_dir,
            state_dir: &j.state_dir,
            run_dir: &j.run_dir,
            agentgrid_bin: &j.agentgrid_bin,
            grace: j.grace,
            gateway: None,
            judge_dir: judge_dir.clone(),
        };
        let verdict = executor::judge_commit(&site, &self.workspaces, old, new).await;
        if let Err(e) = workspace::JudgeTree::new(&judge_dir).remove() {
            tracing::warn!("could not remove the land's judge tree: {e}");
        }
        let validation = verdict?;
        if validation.passed {
            return Ok(None);
        }
        Ok(Some(format!(
            "the validators of `{name}` failed on the landed tree ({}); nothing was changed\n{}",
            validation
                .reason
                .clone()
                .unwrap_or_else(|| format!("score {:.2}", validation.score)),
            validation.feedback().trim_end()
        )))
    }

    /// Refuses while the main checkout has the base checked out with changes in tracked files:
    /// land never touches uncommitted work.
    async fn check_main(&self, base: &str) -> Result<MainCheckout, String> {
        let main = self
            .workspaces
            .main_checkout(base)
            .await
            .map_err(|e| e.to_string())?;
        if let MainCheckout::Dirty { files } = &main {
            let shown: Vec<&str> = files.iter().take(10).map(String::as_str).collect();
            let more = files.len().saturating_sub(shown.len());
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            return Err(format!(
                "the main checkout has {} checked out with uncommitted changes in {}{more}; \
                 commit or stash them, then land again (nothing was changed)",
                base.strip_prefix("refs/heads/").unwrap_or(base),
                shown.join(", ")
            ));
        }
        Ok(main)
    }
}

#[async_trait::async_trait]
impl Lander for LocalLander {
    fn default_strategy(&self) -> LandStrategy {
        self.strategy
    }

    async fn prepare(&self, request: &LandRequest) -> Result<Prepared, String> {
        let ws = &self.workspaces;
        let base = ws.base_ref().await.map_err(|e| e.to_string())?;
        let main = match self.check_main(&base).await {
            Ok(main) => main,
            Err(reason) => return Ok(Prepared::Refused { reason }),
        };
        let task = &request.task;
        let message = LandMessage {
            task: task.id,
            title: task.title.clone(),
            body: task.body.clone(),
            summary: task.summary.clone(),
            agents: request.agents.clone(),
            strategy: request.strategy.to_string(),
        };
        let prepared = ws
            .prepare_land(
                task.id,
                &base,
                request.strategy,
                &message.render(),
                &message.trailers(),
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(match prepared {
            workspace::Prepared::Ready { old, new } => {
                if let Some(reason) = self.judge(request, &old, &new).await? {
                    return Ok(Prepared::Refused { reason });
                }
                if main == MainCheckout::Clean
                    && let Err(e) = ws.check_main_update(&old, &new).await
                {
                    return Ok(Prepared::Refused {
                        reason: format!(
                            "the main checkout cannot be brought to the landed commit \
                             (an untracked file in the way?): {e}"
                        ),
                    });
                }
                Prepared::Ready(Ready { base, old, new })
            }
            workspace::Prepared::UpToDate { old } => Prepared::UpToDate { base, old },
            workspace::Prepared::Conflict { files, .. } => Prepared::Conflict { base, files },
        })
    }

    async fn publish(&self, ready: &Ready) -> Result<(), String> {
        let ws = &self.workspaces;
        // Checked again just before the move: the user may have edited meanwhile.
        let main = self.check_main(&ready.base).await?;
        ws.move_ref(&ready.base, &ready.old, &ready.new, "agentgrid land")
            .await
            .map_err(|e| e.to_string())?;
        if main == MainCheckout::Clean
            && let Err(e) = ws.update_main_checkout(&ready.old, &ready.new).await
        {
            // The ref moved; only the checkout's files lag behind it, and nothing of the
            // user's was touched (the dry run before said the update was safe).
            tracing::warn!("the base moved, but the main checkout was not updated: {e}");
            return Ok(());
        }
        Ok(())
    }

    async fn catch_up(&self, base: &str, old: &str, new: &str) -> Result<(), String> {
        let ws = &self.workspaces;
        let main = ws.main_checkout(base).await.map_err(|e| e.to_string())?;
        // A checkout that followed the base, or that moved on since (a commit, a switch), is
        // left as it is: only the state the crash leaves is caught up.
        if main == MainCheckout::Elsewhere
            || !ws
                .main_checkout_lags(base, old, new)
                .await
                .map_err(|e| e.to_string())?
        {
            return Ok(());
        }
        // A two-tree `read-tree -m -u` as `publish` runs it: it refuses, touching nothing,
        // where a file in the checkout holds changes of its own.
        ws.update_main_checkout(old, new)
            .await
            .map_err(|e| e.to_string())
    }

    async fn holds(&self, base: &str, commit: &str) -> Result<bool, String> {
        self.workspaces
            .is_ancestor(commit, base)
            .await
            .map_err(|e| e.to_string())
    }
}
