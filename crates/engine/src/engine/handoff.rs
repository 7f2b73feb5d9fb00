//! `ctl handoff`: an agent ends its agency's (or role's) part of its task and opens another's
//! on the same task. The engine resolves the receiver and holds the sender to its agency's
//! `policies.handoffs`, checks the artifacts against the worktree, then records the handoff
//! (`app::HandOff`: the `task_handed_off` event and a `HANDOFF` message in one batch) and marks
//! the execution, whose clean exit then opens the receiver's part instead of being judged.
//!
//! Every refusal changes nothing and says what to do: the rule to add to a manifest, the
//! artifact to fix, or, past the task's handoff budget, to escalate.

use std::path::{Component, Path, PathBuf};

use domain::handoff::{HandedOff, limits};
use domain::{HandoffTarget, Task, TaskState};
use executor::ExecutionShared;
use manifest::Agency;

use super::Engine;

/// The arguments of a `handoff` call.
pub(super) struct HandoffCall {
    pub to: String,
    pub summary: String,
    pub artifacts: Vec<String>,
}

impl Engine {
    /// `ctl handoff`: records the handoff and marks the execution so that its clean exit opens
    /// the receiver's part.
    pub(super) async fn hand_off(
        &mut self,
        task: &Task,
        actor: &app::Actor,
        shared: &ExecutionShared,
        call: HandoffCall,
    ) -> Result<serde_json::Value, String> {
        let flags = shared.flags();
        if let Some(done) = &flags.handed_off {
            return Err(format!(
                "this execution has already handed the task off to {}: exit now, and the \
                 receiver's part opens",
                done.to
            ));
        }
        if flags.claimed.is_some() || flags.blocked.is_some() {
            return Err(
                "this execution has already claimed completion, blocked or asked for an \
                 approval; a handoff cannot follow: exit and let that decide"
                    .into(),
            );
        }
        if call.summary.trim().is_empty() {
            return Err("tell the receiver what to do: --summary must not be empty".into());
        }
        let app::Actor::Execution { agent, .. } = actor else {
            return Err("only an agent hands off".into());
        };
        let (from, to) = resolve(self.setup.agencies.declared(), agent, &call.to)?;
        let open = self
            .snapshot
            .children_of(task.id)
            .filter(|c| !c.state.is_terminal())
            .count();
        if open > 0 {
            return Err(format!(
                "task #{} has {open} sub-task(s) still open; a handoff passes the whole task, \
                 so wait for them (exit to split, and hand off from the resume)",
                task.id
            ));
        }
        let root = match &self.workspaces {
            Some(w) => w.path_of(task.id),
            None => self.options.project_dir.clone(),
        };
        let artifacts = check_artifacts(&root, &call.artifacts)?;
        let budget = self.setup.handoffs_per_task;
        if task.handoffs >= budget {
            return Err(over_budget(task, budget));
        }
        let restore = task.handoff.clone();
        let command = app::HandOff {
            task: task.id,
            from,
            to: to.clone(),
            summary: call.summary,
            artifacts: artifacts.clone(),
            budget,
        };
        let done = self.command(actor, command).await.map_err(|why| {
            if why.contains("handoff budget") {
                over_budget(task, budget)
            } else {
                why
            }
        })?;
        shared.update_flags(|f| {
            f.handed_off = Some(HandedOff {
                to: to.clone(),
                restore,
            })
        });
        Ok(serde_json::json!({
            "handed_off": true,
            "to": to.to_string(),
            "artifacts": artifacts,
            "handoffs": done.handoffs,
            "budget": budget,
            "message": done.message,
            "note": "exit now: your part of the task ends with this execution, and the \
                     receiver's opens; a handoff is not completion",
        }))
    }
}

/// Calls that make no sense once the execution has handed its task off, and why.
pub(super) fn refused_after_handoff(shared: &ExecutionShared, op: &control::Op) -> Option<String> {
    use control::Op;
    let to = shared.flags().handed_off?.to;
    let what = match op {
        Op::Complete { .. } => "claim completion",
        Op::Block { .. } => "block",
        Op::ApprovalRequest { .. } => "ask for an approval",
        Op::SubtaskCreate { .. } => "create sub-tasks",
        Op::WorkflowStart { .. } => "start a workflow",
        _ => return None,
    };
    Some(format!(
        "this execution handed the task off to {to}, so it can no longer {what}: the \
         receiver's part decides now; exit"
    ))
}

fn over_budget(task: &Task, budget: u32) -> String {
    format!(
        "task #{} has been handed off {} time(s), the most its handoff budget allows \
         (handoffs_per_task: {budget} in .agentgrid/config.yaml): do not hand it off again; \
         escalate instead (agentgrid ctl escalate --severity high \"…\") so that a person \
         decides how it goes on",
        task.id, task.handoffs
    )
}

/// The sender's part and the receiver's, from `to` (`AGENCY`, `AGENCY/ROLE` or `role:ROLE`
/// in the sender's own agency), under the sender's agency's `policies.handoffs`.
pub(super) fn resolve(
    agencies: &[Agency],
    agent: &str,
    to: &str,
) -> Result<(HandoffTarget, HandoffTarget), String> {
    let Some((own, role)) = agencies
        .iter()
        .find_map(|a| a.role_of(agent).map(|r| (a, r.to_string())))
    else {
        return Err(format!(
            "agent `{agent}` is in no agency, and handoffs go between agencies' parts: add it \
             to an agency (spec.agency and spec.role in its manifest, and the agency's \
             specialists), or finish the task itself"
        ));
    };
    let to = to.trim();
    let (agency_name, to_role) = if let Some(r) = to.strip_prefix("role:") {
        (own.name.as_str(), Some(r))
    } else if let Some((a, r)) = to.split_once('/') {
        (a, Some(r))
    } else {
        (to, None)
    };
    if agency_name.is_empty() || to_role.is_some_and(str::is_empty) {
        return Err(format!(
            "--to {to:?} names no receiver: give AGENCY, AGENCY/ROLE or role:ROLE"
        ));
    }
    let Some(target) = agencies.iter().find(|a| a.name == agency_name) else {
        let names: Vec<&str> = agencies.iter().map(|a| a.name.as_str()).collect();
        return Err(format!(
            "there is no agency `{agency_name}`; the agencies are: {}",
            names.join(", ")
        ));
    };
    if let Some(r) = to_role
        && !target.members().any(|(_, role)| role == r)
    {
        let roles: Vec<&str> = target.members().map(|(_, role)| role).collect();
        return Err(format!(
            "agency `{}` has no role `{r}`; its roles are: {}",
            target.name,
            roles.join(", ")
        ));
    }
    let from = HandoffTarget {
        agency: own.name.clone(),
        role: Some(role.clone()),
    };
    let to = HandoffTarget {
        agency: target.name.clone(),
        role: to_role.map(str::to_string),
    };
    // Within its own agency an agent names the role it hands to: the agency as a whole would
    // route the task by its labels, which is how it reached this agent.
    if target.name == own.name && to_role.is_none_or(|r| r == role) {
        return Err(format!(
            "--to {to} is your own part (agent `{agent}`, {}/{role}): a handoff goes to \
             someone else; finish the work yourself, or hand it to another role (role:ROLE) \
             or agency",
            own.name
        ));
    }
    let allowed = own
        .spec()
        .policies
        .handoffs
        .iter()
        .any(|rule| rule.from == role && rule.to.contains(&target.name));
    if !allowed {
        return Err(format!(
            "agency `{}` does not let its {role}s hand off to agency `{}`: add \
             `{{from: {role}, to: [{}]}}` to spec.policies.handoffs in {}",
            own.name,
            target.name,
            target.name,
            own.source.display()
        ));
    }
    Ok((from, to))
}

/// Checks each artifact: a relative path inside the worktree `root`, through no symbolic link
/// and no `.git`, that exists now (it is committed to the branch when the execution ends).
/// Answers the paths as they will be shown, normalized (no `.` parts, no trailing slash).
pub(super) fn check_artifacts(root: &Path, artifacts: &[String]) -> Result<Vec<String>, String> {
    if artifacts.len() > limits::ARTIFACTS {
        return Err(format!(
            "the handoff names {} artifacts; at most {} are allowed",
            artifacts.len(),
            limits::ARTIFACTS
        ));
    }
    let mut checked: Vec<String> = Vec::new();
    for raw in artifacts {
        let refuse = |why: &str| {
            Err(format!(
                "the artifact {:?} {why}: name a file or directory of your worktree by its path \
                 from the worktree's root",
                raw.chars().take(80).collect::<String>()
            ))
        };
        if raw.len() > limits::ARTIFACT_PATH_BYTES || raw.chars().any(char::is_control) {
            return refuse("is too long or holds a control character");
        }
        let path = Path::new(raw);
        let mut parts: Vec<&str> = Vec::new();
        for component in path.components() {
            match component {
                Component::Normal(part) => match part.to_str() {
                    Some(".git") => return refuse("is inside git's metadata"),
                    Some(p) => parts.push(p),
                    None => return refuse("is not valid UTF-8"),
                },
                Component::CurDir => {}
                Component::ParentDir => return refuse("leads out of the worktree (`..`)"),
                Component::RootDir | Component::Prefix(_) => {
                    return refuse("is absolute");
                }
            }
        }
        if parts.is_empty() {
            return refuse("names the worktree itself");
        }
        // Each step is looked at without following it, so a link the agent made (to
        // /etc/passwd, or to a directory outside) is refused wherever it sits in the path.
        let mut at = PathBuf::from(root);
        for part in &parts {
            at.push(part);
            match std::fs::symlink_metadata(&at) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return refuse("is or goes through a symbolic link");
                }
                Ok(meta) if meta.is_file() || meta.is_dir() => {}
                Ok(_) => return refuse("is not a regular file or a directory"),
                Err(_) => return refuse("does not exist in the worktree"),
            }
        }
        let normal = parts.join("/");
        if !checked.contains(&normal) {
            checked.push(normal);
        }
    }
    Ok(checked)
}

/// Whether a task is in a part a handoff opened, for the prompt's `{{ handoff }}`.
pub(super) fn opened_by_handoff(task: &Task) -> bool {
    task.handoff.is_some() && task.state != TaskState::Done
}

impl Engine {
    /// The prompt's `{{ handoff }}`: the newest handoff of the task that took effect, while
    /// the task is in a part a handoff opened. Nothing is read for other tasks.
    pub(super) async fn prompt_handoff(&self, task: &Task) -> Option<String> {
        if !opened_by_handoff(task) {
            return None;
        }
        let events = self
            .store
            .entity_events(domain::EntityKind::Task, task.id.0)
            .await
            .map_err(|e| tracing::warn!(task = %task.id, "cannot read the task's handoffs: {e}"))
            .ok()?;
        let records = app::handoffs_of(&events);
        let executions = self
            .store
            .executions(&store::ExecutionFilter {
                task: Some(task.id),
                ..store::ExecutionFilter::default()
            })
            .await
            .unwrap_or_default();
        app::handoff_text(&records, |id| {
            executions
                .iter()
                .find(|e| e.id == id)
                .map(|e| e.agent.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_stay_inside_the_worktree_and_follow_no_link() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("notes")).unwrap();
        std::fs::write(root.join("notes/bugs.md"), "two bugs").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("passwd")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();
        let ok = check_artifacts(
            root,
            &[
                "./notes/bugs.md".into(),
                "notes/".into(),
                "notes/bugs.md".into(),
            ],
        )
        .unwrap();
        assert_eq!(ok, ["notes/bugs.md", "notes"]);
        for (bad, why) in [
            ("../../etc/passwd", "leads out of the worktree"),
            ("/etc/passwd", "is absolute"),
            ("passwd", "symbolic link"),
            ("etc/hosts", "symbolic link"),
            ("missing.md", "does not exist"),
            (".git/config", "git's metadata"),
            (".", "the worktree itself"),
        ] {
            let err = check_artifacts(root, &[bad.into()]).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let many: Vec<String> = (0..=limits::ARTIFACTS).map(|_| "notes".into()).collect();
        assert!(
            check_artifacts(root, &many)
                .unwrap_err()
                .contains("at most")
        );
    }
}
