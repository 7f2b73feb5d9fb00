//! Control calls that change state under an idempotency key.
//!
//! An agent's step can run more than once: a planner killed half-way runs again after the
//! restart, and a work step runs again as a retry, a continuation or a later iteration. A call
//! made under a key its task already used changes nothing and answers with what the first call
//! made, so the step finds its sub-tasks instead of making them twice.
//!
//! Decision: the default key of `subtask create` is the call's content (title, body and labels)
//! within its parent, not the execution's kind, attempt or iteration, since none of those is the
//! same when the step runs again. Two sub-tasks with the same title, body and labels are taken
//! to be one; an agent that wants two alike gives them distinct `--key`s. Explicit and derived
//! keys live in separate namespaces (`key:` and `content:`), so that one can never stand for the
//! other. Comments are deduplicated only under an explicit key: the same words said twice may be
//! news twice.

use std::sync::{Arc, Mutex, PoisonError};

use app::{Actor, App};
use domain::{NewTask, Task, TaskId, Timestamp};
use executor::ExecutionShared;
use store::{Applied, Change, Store};

use super::Engine;

/// The arguments of a `subtask create` call.
pub(super) struct SubtaskCall {
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    pub blocked_by: Vec<TaskId>,
    pub priority: Option<i32>,
    pub key: Option<String>,
    /// Areas reserved for the sub-task as it is made, for `lease_ttl_ms`.
    pub areas: Vec<String>,
    pub lease_ttl_ms: Option<u64>,
}

/// How the engine writes the batches of the application layer's commands: waiting out a
/// database another process holds, as for its own batches, and keeping what was written so
/// that the engine takes it into its view before the agent hears the answer.
#[derive(Default)]
struct Recorder {
    /// The engine's leases when it holds any: what an execution's call writes carries its
    /// fencing token, so a call from an execution that lost its lease is refused.
    leases: Option<engine_core::lease::Leases>,
    applied: Mutex<Vec<Applied>>,
}

#[async_trait::async_trait]
impl app::Writer for Recorder {
    async fn apply(
        &self,
        store: &dyn Store,
        actor: &str,
        now: Timestamp,
        changes: Vec<Change>,
    ) -> Result<Applied, store::Error> {
        let changes = match &self.leases {
            Some(leases) => leases.fence(actor, changes),
            None => changes,
        };
        let applied = super::apply_waiting(store, actor, || now, changes).await?;
        self.applied
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(applied.clone());
        Ok(applied)
    }
}

impl Engine {
    /// Runs an agent's call as the application layer's command, the one path every face's
    /// changes take (and where an execution is held to its own task), then takes what it wrote
    /// into the snapshot. The refusal is the agent's answer.
    pub(super) async fn command<C: app::Command>(
        &mut self,
        actor: &Actor,
        command: C,
    ) -> Result<C::Output, String> {
        let recorder = Arc::new(Recorder {
            leases: self.leases.clone(),
            applied: Mutex::default(),
        });
        let app = App::new(self.store.clone(), self.clock.clone())
            .with_writer(recorder.clone())
            .with_directory(self.setup.directory.clone());
        let result = app.execute(actor, command).await;
        let applied = std::mem::take(
            &mut *recorder
                .applied
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for batch in &applied {
            self.absorb(batch);
        }
        result.map_err(super::refusals::of_command)
    }

    /// Creates a sub-task of `task`, or finds the one made before under the same key.
    pub(super) async fn create_subtask(
        &mut self,
        task: &Task,
        actor: &Actor,
        shared: &ExecutionShared,
        call: SubtaskCall,
    ) -> Result<serde_json::Value, String> {
        let key = match &call.key {
            Some(k) => format!("key:{k}"),
            None => content_key(&call.title, &call.body, &call.labels),
        };
        let new = NewTask {
            title: call.title,
            body: call.body,
            labels: call.labels,
            priority: call.priority.unwrap_or(task.priority),
            parent: Some(task.id),
            blocked_by: call.blocked_by,
            agent: None,
        };
        // A key already used answers before any limit is checked: it creates nothing. So the
        // runaway guards, which need the engine's counts, are checked only for a new key.
        let used = self
            .store
            .call_key(task.id, app::SUBTASK_CREATE_OP, &key)
            .await
            .map_err(|e| e.to_string())?;
        if used.is_none() {
            let existing = self.snapshot.children_of(task.id).count() as u32;
            scheduler::guards::check_new_child(task, existing, &self.setup.config)?;
        }
        let reserve = if call.areas.is_empty() {
            None
        } else {
            self.check_area_paths(task.id, &call.areas)?;
            Some(app::Reserve {
                paths: call.areas,
                ttl: domain::Duration(
                    call.lease_ttl_ms
                        .unwrap_or(domain::area::limits::MAX_TTL_MS),
                ),
            })
        };
        let made = self
            .command(actor, app::CreateSubtask { new, key, reserve })
            .await?;
        if !made.existed {
            shared.update_flags(|f| f.children_created += 1);
        }
        let title = made
            .task
            .as_ref()
            .map(|t| t.title.clone())
            .or_else(|| self.snapshot.task(made.id).map(|t| t.title.clone()));
        Ok(serde_json::json!({ "id": made.id, "title": title, "existed": made.existed }))
    }

    /// Records a comment on `task`, once per key when the call names one.
    pub(super) async fn comment(
        &mut self,
        task: TaskId,
        actor: &Actor,
        text: String,
        key: Option<String>,
    ) -> Result<serde_json::Value, String> {
        let comment = app::Comment {
            id: task,
            text,
            key: key.map(|k| format!("key:{k}")),
        };
        if self.command(actor, comment).await? {
            Ok(serde_json::json!({ "commented": true }))
        } else {
            Ok(serde_json::json!({ "commented": false, "existed": true }))
        }
    }

    /// `ctl complete`: the claim is recorded; the validators still decide.
    pub(super) async fn claim_completion(
        &mut self,
        task: TaskId,
        actor: &Actor,
        shared: &ExecutionShared,
        summary: String,
    ) -> Result<serde_json::Value, String> {
        if summary.trim().is_empty() {
            return Err("say what was done: --summary must not be empty".into());
        }
        let claim = app::ClaimCompletion {
            task,
            summary: summary.clone(),
        };
        self.command(actor, claim).await?;
        shared.update_flags(|f| f.claimed = Some(summary));
        Ok(
            serde_json::json!({ "claimed": true, "note": "validators decide whether the task is done" }),
        )
    }

    /// `ctl block`: the reason is recorded now; the task is blocked when the execution ends.
    pub(super) async fn block(
        &mut self,
        task: TaskId,
        actor: &Actor,
        shared: &ExecutionShared,
        reason: String,
    ) -> Result<serde_json::Value, String> {
        if reason.trim().is_empty() {
            return Err("say what a person must decide: --reason must not be empty".into());
        }
        let block = app::Block {
            task,
            reason: reason.clone(),
        };
        self.command(actor, block).await?;
        shared.update_flags(|f| f.blocked = Some(reason));
        Ok(serde_json::json!({ "blocked": true }))
    }

    /// `ctl nudge`: any task may be nudged; caps and guards still apply.
    pub(super) async fn nudge(
        &mut self,
        actor: &Actor,
        task: TaskId,
    ) -> Result<serde_json::Value, String> {
        self.command(actor, app::Nudge { id: task }).await?;
        Ok(serde_json::json!({ "nudged": task }))
    }
}

/// The key a `subtask create` gets when the call names none: a hash of its content. FNV-1a
/// over 128 bits, written out here rather than taken from the standard library, whose hashers
/// may change between releases while keys must stay the same across upgrades. It needs no
/// resistance to forgery: a collision only makes the agent's own call find its own sub-task.
pub(super) fn content_key(title: &str, body: &str, labels: &[String]) -> String {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    labels.sort_unstable();
    labels.dedup();
    let mut hash = OFFSET;
    let mut feed = |bytes: &[u8]| {
        // Each field goes in with its length, so that no two splits of one text hash alike.
        for b in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
            hash ^= u128::from(*b);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    feed(title.as_bytes());
    feed(body.as_bytes());
    for label in labels {
        feed(label.as_bytes());
    }
    format!("content:{hash:032x}")
}

#[cfg(test)]
mod tests {
    use super::content_key;

    #[test]
    fn the_content_key_is_stable_and_tells_contents_apart() {
        let labels = vec!["b".to_string(), "a".to_string()];
        let key = content_key("Parse the header", "", &labels);
        assert_eq!(key, content_key("Parse the header", "", &labels));
        // Label order and repeats do not matter; every field does.
        let reordered = vec!["a".to_string(), "b".to_string(), "a".to_string()];
        assert_eq!(key, content_key("Parse the header", "", &reordered));
        assert_ne!(key, content_key("Parse the header", "x", &labels));
        assert_ne!(key, content_key("Parse the headers", "", &labels));
        assert_ne!(key, content_key("Parse the header", "", &[]));
        // Moving text from one field to the next is another content.
        assert_ne!(content_key("ab", "c", &[]), content_key("a", "bc", &[]));
        assert!(key.starts_with("content:") && key.len() == "content:".len() + 32);
    }
}
