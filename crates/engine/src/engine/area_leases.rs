//! Area leases on the engine's side: the agent's `ctl lease take|release|list` calls, run as the
//! app's commands for the execution, and the held leases the scheduler looks at, with those
//! whose time ran out recorded as expired.
//!
//! The one rule here and not in the tracker is about the file system: a leased path may not
//! run through a symbolic link, in the repository's checkout or in the execution's worktree
//! (which the agent controls), since a link would make one area stand for another. Paths that
//! do not exist yet may be leased: an agent leases what it is about to create.

use std::path::Path;

use app::Actor;
use control::Op;
use domain::{Duration, ExecutionId, TaskId};

use super::Engine;

/// How many leases one sweep records expired at most; the next turn takes the rest.
const SWEEP_LIMIT: u32 = 100;

impl Engine {
    /// Answers a `ctl lease` call of `execution`, whose task is `task`.
    pub(super) async fn area_lease_call(
        &mut self,
        execution: ExecutionId,
        task: TaskId,
        actor: &Actor,
        op: Op,
    ) -> Result<serde_json::Value, String> {
        match op {
            Op::LeaseTake {
                paths,
                ttl_ms,
                task: for_task,
            } => {
                self.check_area_paths(task, &paths)?;
                let take = app::TakeAreaLeases {
                    paths,
                    ttl: Duration(ttl_ms),
                    for_task,
                };
                let taken = self.command(actor, take).await?;
                tracing::info!(execution_id = %execution, leases = taken.len(), "area leased");
                self.dirty = true;
                Ok(serde_json::json!({ "leases": taken }))
            }
            Op::LeaseRelease { paths } => {
                let released = self
                    .command(actor, app::ReleaseAreaLeases { paths })
                    .await?;
                self.dirty = true;
                Ok(serde_json::json!({ "released": released }))
            }
            Op::LeaseList => {
                let view = self
                    .command_query(actor, app::AreaLeaseList::default())
                    .await?;
                Ok(serde_json::json!({ "leases": view.leases, "waiting": view.waiting }))
            }
            other => Err(format!("`{}` is not a lease call", other.name())),
        }
    }

    /// Refuses paths that do not parse or run through a symbolic link, in the repository's
    /// checkout or in the worktree of `task`'s execution.
    pub(super) fn check_area_paths(&self, task: TaskId, paths: &[String]) -> Result<(), String> {
        let parsed = app::parse_area_paths(paths).map_err(|e| e.to_string())?;
        let mut places = vec![self.options.project_dir.clone()];
        if let Some(ws) = &self.workspaces {
            places.push(ws.path_of(task));
        }
        for p in &parsed {
            for root in &places {
                no_link_along(root, p)?;
            }
        }
        Ok(())
    }

    /// Records the held leases whose time ran out as expired and gives the scheduler the ones
    /// held now. A failure is logged and leaves the view as it was: the scheduler also checks
    /// each lease's time itself.
    pub(super) async fn refresh_area_leases(&mut self, now: domain::Timestamp) {
        let overdue = self
            .snapshot
            .area_leases
            .iter()
            .any(|l| l.expires_at <= now);
        // Every change to the leases is an event the engine sees; without one, and with none
        // due to expire, the snapshot's leases are the store's.
        if !overdue && self.known.area_leases_current() {
            return;
        }
        self.known.area_leases_looked();
        if overdue
            && let Err(e) = self
                .command(&Actor::Engine, app::SweepAreaLeases { limit: SWEEP_LIMIT })
                .await
        {
            tracing::warn!("recording expired area leases failed: {e}");
        }
        match self
            .store
            .area_leases(&store::AreaLeaseFilter::default())
            .await
        {
            Ok(held) => self.snapshot.area_leases = held,
            Err(e) => {
                self.known.forget();
                tracing::warn!("reading the area leases failed: {e}");
            }
        }
    }

    async fn command_query<Q: app::Query>(
        &self,
        actor: &Actor,
        query: Q,
    ) -> Result<Q::Output, String> {
        let app = app::App::new(self.store.clone(), self.clock.clone());
        app.ask(actor, query).await.map_err(|e| e.to_string())
    }
}

/// Refuses `path` when a directory or file along it under `root` is a symbolic link.
fn no_link_along(root: &Path, path: &domain::AreaPath) -> Result<(), String> {
    let mut at = root.to_path_buf();
    for part in path.components() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(format!(
                    "the leased path {path} runs through the symbolic link {}; lease the path \
                     it stands for inside the repository",
                    at.strip_prefix(root).unwrap_or(&at).display()
                ));
            }
            Ok(_) => {}
            // Not there (yet): nothing below it can be a link.
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}
