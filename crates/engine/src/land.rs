//! The local git [`app::Lander`]: the land commit made with the project's hardened host git in
//! the object store alone, the base ref moved with the value it held, and the main checkout
//! brought along when it has the base branch checked out and nothing changed in it.

use std::sync::Arc;

use app::{LandRequest, Lander, Prepared, Ready};
use domain::LandStrategy;
use workspace::message::LandMessage;
use workspace::{MainCheckout, Workspaces};

/// Lands tasks' branches on the base branch of the repository `workspaces` works in.
pub struct LocalLander {
    workspaces: Arc<Workspaces>,
    strategy: LandStrategy,
}

impl LocalLander {
    /// `strategy` is the project's `land.strategy`.
    pub fn new(workspaces: Arc<Workspaces>, strategy: LandStrategy) -> LocalLander {
        LocalLander {
            workspaces,
            strategy,
        }
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

    async fn holds(&self, base: &str, commit: &str) -> Result<bool, String> {
        self.workspaces
            .is_ancestor(commit, base)
            .await
            .map_err(|e| e.to_string())
    }
}
