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

use domain::{NewTask, Task, TaskId};
use executor::ExecutionShared;
use store::Change;

use super::Engine;

/// The op names under which keys are recorded, as the store keeps them.
const SUBTASK_CREATE: &str = "subtask_create";
const COMMENT: &str = "comment";

/// The arguments of a `subtask create` call.
pub(super) struct SubtaskCall {
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    pub blocked_by: Vec<TaskId>,
    pub priority: Option<i32>,
    pub key: Option<String>,
}

impl Engine {
    /// Creates a sub-task of `task`, or finds the one made before under the same key.
    pub(super) async fn create_subtask(
        &mut self,
        task: &Task,
        actor: &str,
        shared: &ExecutionShared,
        call: SubtaskCall,
    ) -> Result<serde_json::Value, String> {
        let key = match &call.key {
            Some(k) => format!("key:{k}"),
            None => content_key(&call.title, &call.body, &call.labels),
        };
        // A key already used answers before any limit is checked: it creates nothing.
        if let Some(found) = self
            .store
            .call_key(task.id, SUBTASK_CREATE, &key)
            .await
            .map_err(super::refusals::reason)?
        {
            let Some(id) = found.result else {
                return Err("the key was used by a call that made no sub-task".into());
            };
            let title = self.snapshot.task(id).map(|t| t.title.clone());
            return Ok(serde_json::json!({ "id": id, "title": title, "existed": true }));
        }
        let existing = self.snapshot.children_of(task.id).count() as u32;
        scheduler::guards::check_new_child(task, existing, &self.setup.config)?;
        let new = NewTask {
            title: call.title,
            body: call.body,
            labels: call.labels,
            priority: call.priority.unwrap_or(task.priority),
            parent: Some(task.id),
            blocked_by: call.blocked_by,
            agent: None,
        };
        new.check()?;
        let applied = self
            .apply(actor, vec![Change::CreateKeyedTask { new, key }])
            .await
            .map_err(super::refusals::reason)?;
        shared.update_flags(|f| f.children_created += 1);
        let created = applied
            .tasks
            .iter()
            .find(|t| t.parent == Some(task.id))
            .ok_or("no task created")?;
        Ok(serde_json::json!({ "id": created.id, "title": created.title, "existed": false }))
    }

    /// Records a comment on `task`, once per key when the call names one.
    pub(super) async fn comment(
        &mut self,
        task: TaskId,
        actor: &str,
        text: String,
        key: Option<String>,
    ) -> Result<serde_json::Value, String> {
        let change = match key {
            None => Change::Comment { id: task, text },
            Some(key) => {
                let key = format!("key:{key}");
                let found = self
                    .store
                    .call_key(task, COMMENT, &key)
                    .await
                    .map_err(super::refusals::reason)?;
                if found.is_some() {
                    return Ok(serde_json::json!({ "commented": false, "existed": true }));
                }
                Change::KeyedComment {
                    id: task,
                    text,
                    key,
                }
            }
        };
        self.apply(actor, vec![change])
            .await
            .map_err(super::refusals::reason)?;
        Ok(serde_json::json!({ "commented": true }))
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
