//! The `Store` trait: the one interface the rest of agentgrid uses to record and read state.

use async_trait::async_trait;
use domain::{
    Approval, ApprovalId, EntityKind, Event, EventKind, Execution, ExecutionId, Task, TaskId,
    TaskState, Timestamp,
};

use crate::{
    Applied, ApprovalFilter, Change, Error, ExecutionFilter, KeyedCall, Land, Merge, ModelUsage,
    TaskFilter, UsageGroup, UsageGroupSum, UsageScope,
};

/// A durable event log with projections of tasks, dependencies and executions.
///
/// Implementations must apply each batch of changes atomically and write every event in the same
/// transaction as the projection rows it describes, so the log and the tables never disagree.
/// The trait is object safe and is meant to be shared as `Arc<dyn Store>`; nothing in it names a
/// database driver, so a PostgreSQL backend can implement it later.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks and applies `changes` in order, in one transaction, on behalf of `actor` at `now`.
    /// When any change is refused, nothing from the batch is written and the error names the
    /// change by its index in `changes`.
    async fn apply(
        &self,
        actor: &str,
        now: Timestamp,
        changes: Vec<Change>,
    ) -> Result<Applied, Error>;

    /// One task, with its `blocked_by` list, or `None` when no task has this id.
    async fn task(&self, id: TaskId) -> Result<Option<Task>, Error>;

    /// The tasks matching `filter`, ordered by id.
    async fn tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>, Error>;

    /// The direct sub-tasks of `id`, ordered by id.
    async fn children(&self, id: TaskId) -> Result<Vec<Task>, Error>;

    /// One execution, or `None` when no execution has this id.
    async fn execution(&self, id: ExecutionId) -> Result<Option<Execution>, Error>;

    /// The executions matching `filter`, ordered by id.
    async fn executions(&self, filter: &ExecutionFilter) -> Result<Vec<Execution>, Error>;

    /// At most `limit` events with a global `seq` greater than `seq`, in ascending order. Pass
    /// the last `seq` seen to resume reading the log; pass 0 to read from the start.
    async fn events_after(&self, seq: u64, limit: u32) -> Result<Vec<Event>, Error>;

    /// Every event of one task or execution, in its own order (`entity_seq` from 1).
    async fn entity_events(&self, entity: EntityKind, id: i64) -> Result<Vec<Event>, Error>;

    /// The global `seq` of the newest event, 0 for an empty log.
    async fn last_seq(&self) -> Result<u64, Error>;

    /// The files another process's write changes, for a follower that watches them (inotify)
    /// instead of polling [`Store::events_after`]. Empty for a backend without local files,
    /// whose followers poll.
    fn watched_files(&self) -> Vec<std::path::PathBuf> {
        Vec::new()
    }

    /// Whether another connection committed since the last call (the first call says true): a
    /// cheap check that skips reading the log when a watched file changed for this store's own
    /// writes. A backend that cannot tell says true.
    async fn written_elsewhere(&self) -> Result<bool, Error> {
        Ok(true)
    }

    /// The tasks that have any remark: an event that what is said to a task's agent is read
    /// from (a comment, feedback, an answer, a decided approval). `None` when the backend
    /// cannot tell cheaply; the engine then reads every task's events for its prompts.
    async fn remarked_tasks(&self) -> Result<Option<Vec<TaskId>>, Error> {
        Ok(None)
    }

    /// Whether any message is open (pending or delivered): while none is, no mailbox holds
    /// anything to show or to sweep, and the engine reads none for a prompt.
    async fn any_open_message(&self) -> Result<bool, Error> {
        for state in [
            domain::MessageState::Pending,
            domain::MessageState::Delivered,
        ] {
            let filter = crate::MessageFilter {
                state: Some(state),
                limit: Some(1),
                ..crate::MessageFilter::default()
            };
            if !self.messages(&filter).await?.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The sums of the model requests recorded by [`Change::RecordModelUsage`] in `scope`;
    /// all zero when there are none.
    async fn model_usage(&self, scope: &UsageScope) -> Result<ModelUsage, Error>;

    /// Every model request recorded, summed per group (a task, a tree, an agent or a UTC
    /// day), in the order of the group's key.
    async fn model_usage_grouped(&self, by: UsageGroup) -> Result<Vec<UsageGroupSum>, Error>;

    /// Every provider the engine ever paused or throttled, by name.
    async fn providers(&self) -> Result<Vec<crate::ProviderStanding>, Error>;

    /// Like [`Store::model_usage`], split by model alias, ordered by alias.
    async fn model_usage_by_model(
        &self,
        scope: &UsageScope,
    ) -> Result<Vec<(String, ModelUsage)>, Error>;

    /// The call `op` that `task`'s agents made under `key`, if any (see
    /// [`Change::CreateKeyedTask`] and [`Change::KeyedComment`]).
    async fn call_key(&self, task: TaskId, op: &str, key: &str)
    -> Result<Option<KeyedCall>, Error>;

    /// Merges of done sub-tasks that have not succeeded yet (never tried, or failed), into
    /// `parent` or, with `None`, into any task; ordered by child.
    async fn unfinished_merges(&self, parent: Option<TaskId>) -> Result<Vec<Merge>, Error>;

    /// The land of `task`, under way or done, if there is one. The default folds the task's
    /// events, for stores (and test doubles) that keep no table of lands.
    async fn land(&self, task: TaskId) -> Result<Option<Land>, Error> {
        let events = self.entity_events(EntityKind::Task, task.0).await?;
        let mut land = None;
        for event in events {
            match event.kind {
                EventKind::TaskLandStarted {
                    strategy,
                    base,
                    old,
                    new,
                } => {
                    land = Some(Land {
                        task,
                        landed: false,
                        strategy,
                        base,
                        old,
                        new,
                        root: None,
                    })
                }
                EventKind::TaskLanded {
                    strategy,
                    base,
                    old,
                    new,
                    root,
                } => {
                    land = Some(Land {
                        task,
                        landed: true,
                        strategy,
                        base,
                        old,
                        new,
                        root,
                    })
                }
                EventKind::TaskLandAbandoned { .. } => land = None,
                _ => {}
            }
        }
        Ok(land)
    }

    /// One approval, or `None` when no approval has this id.
    async fn approval(&self, id: ApprovalId) -> Result<Option<Approval>, Error>;

    /// The approvals `filter` selects, newest first.
    async fn approvals(&self, filter: &ApprovalFilter) -> Result<Vec<Approval>, Error>;

    /// One workflow run, or `None` when no run has this id.
    async fn workflow_run(
        &self,
        id: domain::WorkflowId,
    ) -> Result<Option<tracker::WorkflowRun>, Error>;

    /// The workflow runs `filter` selects, oldest first.
    async fn workflow_runs(
        &self,
        filter: &crate::WorkflowFilter,
    ) -> Result<Vec<tracker::WorkflowRun>, Error>;

    /// One message, or `None` when no message has this id.
    async fn message(&self, id: domain::MessageId) -> Result<Option<domain::Message>, Error>;

    /// The messages `filter` selects, newest first.
    async fn messages(&self, filter: &crate::MessageFilter) -> Result<Vec<domain::Message>, Error>;

    /// At most `limit` open messages that an execution answering to `receivers` (and, with
    /// `execution`, that execution itself) may read at `now`: within their time to live, the
    /// most urgent first, then the oldest; without the announcements agent `reader` has
    /// acknowledged for itself. Reading records nothing; a delivery is a change.
    async fn inbox(
        &self,
        receivers: &[String],
        execution: Option<ExecutionId>,
        reader: Option<&str>,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<domain::Message>, Error>;

    /// The open (pending or delivered) escalations addressed to `receiver`, oldest first, at
    /// most `limit`: what `status` shows and the engine's tick sends up, read along an index
    /// of open escalations alone, however many other messages the receiver has.
    async fn open_escalations(
        &self,
        receiver: &domain::Receiver,
        limit: u32,
    ) -> Result<Vec<domain::Message>, Error> {
        let mut open = Vec::new();
        for state in [
            domain::MessageState::Pending,
            domain::MessageState::Delivered,
        ] {
            let filter = crate::MessageFilter {
                state: Some(state),
                receiver: Some(receiver.clone()),
                ..crate::MessageFilter::default()
            };
            open.extend(
                self.messages(&filter)
                    .await?
                    .into_iter()
                    .filter(|m| m.kind == domain::MessageType::Escalation),
            );
        }
        open.sort_by_key(|m| m.id);
        open.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(open)
    }

    /// How many escalations are open, at every receiver.
    async fn open_escalation_count(&self) -> Result<u64, Error> {
        let mut n = 0;
        for state in [
            domain::MessageState::Pending,
            domain::MessageState::Delivered,
        ] {
            let filter = crate::MessageFilter {
                state: Some(state),
                ..crate::MessageFilter::default()
            };
            n += self
                .messages(&filter)
                .await?
                .iter()
                .filter(|m| m.kind == domain::MessageType::Escalation)
                .count() as u64;
        }
        Ok(n)
    }

    /// At most `limit` open messages that can never be delivered at `now` (expired, or their
    /// execution ended), for a sweep to record as dead letters.
    async fn messages_due(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<crate::MessageSweep>, Error>;

    /// The area leases `filter` selects (see `domain::area`). Stores without them hold none.
    async fn area_leases(
        &self,
        filter: &crate::AreaLeaseFilter,
    ) -> Result<Vec<domain::AreaLease>, Error> {
        let _ = filter;
        Ok(Vec::new())
    }

    /// The sums of agency metrics per agent, of the tasks updated (and executions queued) at or
    /// after `since`. Stores without them have none.
    async fn agent_metrics(
        &self,
        since: Option<Timestamp>,
    ) -> Result<Vec<crate::AgentMetrics>, Error> {
        let _ = since;
        Ok(Vec::new())
    }

    /// At most `limit` held area leases whose time ran out at `now`, for a sweep to record.
    async fn area_leases_due(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<domain::AreaLease>, Error> {
        let _ = (now, limit);
        Ok(Vec::new())
    }

    // The views. Each reads what it returns and no more (an index, a `LIMIT`), so that `status`
    // and `task list --limit` cost in proportion to what they show, not to every task ever
    // made. The defaults compute the same answers from the lists above, for stores (and test
    // doubles) that have nothing better.

    /// How many tasks are in each state, ordered by state name; states without tasks are left
    /// out.
    async fn task_counts(&self) -> Result<Vec<(TaskState, u64)>, Error> {
        let mut counts: std::collections::BTreeMap<&'static str, (TaskState, u64)> =
            std::collections::BTreeMap::new();
        for task in self.tasks(&TaskFilter::default()).await? {
            counts
                .entry(task.state.as_str())
                .or_insert((task.state, 0))
                .1 += 1;
        }
        Ok(counts.into_values().collect())
    }

    /// The `limit` newest tasks (highest ids) matching `filter`, handed back in ascending id
    /// order like [`Store::tasks`].
    async fn newest_tasks(&self, filter: &TaskFilter, limit: u32) -> Result<Vec<Task>, Error> {
        let mut tasks = self.tasks(filter).await?;
        let keep = usize::try_from(limit).unwrap_or(usize::MAX);
        Ok(tasks.split_off(tasks.len().saturating_sub(keep)))
    }

    /// One page of a walk over the tasks matching `filter` in id order: at most `limit` of
    /// them, with ids above `after` (from the first when `None`). A caller that lists every
    /// task asks again after the last id it got, until a page comes back short, so no more
    /// than one page is ever held (keyset pagination: each page starts where the last ended,
    /// at a cost that does not grow with how far the walk has come).
    async fn tasks_after(
        &self,
        filter: &TaskFilter,
        after: Option<TaskId>,
        limit: u32,
    ) -> Result<Vec<Task>, Error> {
        let mut tasks = self.tasks(filter).await?;
        tasks.retain(|t| after.is_none_or(|a| t.id > a));
        tasks.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(tasks)
    }

    /// The `limit` open and waiting tasks with a timer (`Task::not_before`: a retry's backoff,
    /// a continuation's delay, a parent's resume), soonest first.
    async fn tasks_with_timers(&self, limit: u32) -> Result<Vec<Task>, Error> {
        let filter = TaskFilter {
            states: vec![domain::TaskState::Open, domain::TaskState::Waiting],
            ..TaskFilter::default()
        };
        let mut tasks: Vec<Task> = self
            .tasks(&filter)
            .await?
            .into_iter()
            .filter(|t| t.not_before.is_some())
            .collect();
        tasks.sort_by_key(|t| (t.not_before, t.id));
        tasks.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(tasks)
    }

    /// The `limit` newest unfinished tasks whose open part a handoff chose (`Task::handoff`),
    /// in ascending id order, and how many such tasks there are in all.
    async fn tasks_handed_off(&self, limit: u32) -> Result<(Vec<Task>, u64), Error> {
        let mut tasks: Vec<Task> = self
            .tasks(&TaskFilter::default())
            .await?
            .into_iter()
            .filter(|t| t.handoff.is_some() && !t.state.is_terminal())
            .collect();
        let total = tasks.len() as u64;
        let keep = usize::try_from(limit).unwrap_or(usize::MAX);
        Ok((tasks.split_off(tasks.len().saturating_sub(keep)), total))
    }

    /// The `limit` newest tasks on which a merge of a sub-task failed (`Task::merge_failed`),
    /// in ascending id order.
    async fn tasks_with_failed_merge(&self, limit: u32) -> Result<Vec<Task>, Error> {
        let mut tasks: Vec<Task> = self
            .tasks(&TaskFilter::default())
            .await?
            .into_iter()
            .filter(|t| t.merge_failed.is_some())
            .collect();
        let keep = usize::try_from(limit).unwrap_or(usize::MAX);
        Ok(tasks.split_off(tasks.len().saturating_sub(keep)))
    }
}
