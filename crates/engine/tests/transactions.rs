//! How the engine groups its changes into store transactions. Each transaction is a commit, the
//! largest share of what a short execution costs, so the engine writes an execution's end
//! together with the claim of the execution that takes its place. The leases' renewals are
//! written beside the loop, which goes on writing ends and claims meanwhile.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use domain::{
    EntityKind, Event, EventKind, Execution, ExecutionId, NewTask, SystemClock, Task, TaskId,
    TaskState, Timestamp,
};
use engine::{Engine, EngineOptions, RunMode};
use store::{
    Applied, Change, Error, ExecutionFilter, KeyedCall, Merge, ModelUsage, SqliteStore, Store,
    TaskFilter, UsageScope,
};

/// A SQLite store that remembers the names of the changes of every batch applied to it.
struct Recording {
    inner: SqliteStore,
    batches: Mutex<Vec<Vec<&'static str>>>,
    /// A task that "someone else" cancels just before the first end of an execution is
    /// written, as `agentgrid task cancel` can do at any moment.
    cancel_before_end: Mutex<Option<TaskId>>,
    /// How long the first batch of lease renewals takes before it is written, as a round of
    /// 500 renewals takes 25-40 ms on a real store; taken by that batch.
    slow_renewal: Mutex<Option<Duration>>,
    /// When that batch began and when it was written.
    renewal_window: Mutex<Option<(Instant, Instant)>>,
    /// When each batch other than that one was written, with its changes' names.
    written_at: Mutex<Vec<(Instant, Vec<&'static str>)>>,
}

#[async_trait]
impl Store for Recording {
    async fn apply(
        &self,
        actor: &str,
        now: Timestamp,
        changes: Vec<Change>,
    ) -> Result<Applied, Error> {
        let names: Vec<&'static str> = changes.iter().map(Change::name).collect();
        let cancel = names
            .contains(&"finish_execution")
            .then(|| self.cancel_before_end.lock().unwrap().take())
            .flatten();
        let slow = names
            .contains(&"renew_lease")
            .then(|| self.slow_renewal.lock().unwrap().take())
            .flatten();
        if let Some(hold) = slow {
            let began = Instant::now();
            tokio::time::sleep(hold).await;
            let applied = self.inner.apply(actor, now, changes).await;
            *self.renewal_window.lock().unwrap() = Some((began, Instant::now()));
            self.batches.lock().unwrap().push(names);
            return applied;
        }
        if let Some(task) = cancel {
            let cancel = Change::SetTaskState {
                id: task,
                to: TaskState::Cancelled,
                reason: Some("cancelled from the CLI".into()),
            };
            self.inner.apply("cli", now, vec![cancel]).await.unwrap();
        }
        let applied = self.inner.apply(actor, now, changes).await?;
        self.written_at
            .lock()
            .unwrap()
            .push((Instant::now(), names.clone()));
        self.batches.lock().unwrap().push(names);
        Ok(applied)
    }
    async fn task(&self, id: TaskId) -> Result<Option<Task>, Error> {
        self.inner.task(id).await
    }
    async fn message(&self, id: domain::MessageId) -> Result<Option<domain::Message>, Error> {
        self.inner.message(id).await
    }
    async fn messages(&self, filter: &store::MessageFilter) -> Result<Vec<domain::Message>, Error> {
        self.inner.messages(filter).await
    }
    async fn inbox(
        &self,
        receivers: &[String],
        execution: Option<domain::ExecutionId>,
        reader: Option<&str>,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<domain::Message>, Error> {
        self.inner
            .inbox(receivers, execution, reader, now, limit)
            .await
    }
    async fn messages_due(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<store::MessageSweep>, Error> {
        self.inner.messages_due(now, limit).await
    }
    async fn tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>, Error> {
        self.inner.tasks(filter).await
    }
    async fn model_usage_grouped(
        &self,
        by: store::UsageGroup,
    ) -> Result<Vec<store::UsageGroupSum>, Error> {
        self.inner.model_usage_grouped(by).await
    }
    async fn children(&self, id: TaskId) -> Result<Vec<Task>, Error> {
        self.inner.children(id).await
    }
    async fn execution(&self, id: ExecutionId) -> Result<Option<Execution>, Error> {
        self.inner.execution(id).await
    }
    async fn executions(&self, filter: &ExecutionFilter) -> Result<Vec<Execution>, Error> {
        self.inner.executions(filter).await
    }
    async fn events_after(&self, seq: u64, limit: u32) -> Result<Vec<Event>, Error> {
        self.inner.events_after(seq, limit).await
    }
    async fn entity_events(&self, entity: EntityKind, id: i64) -> Result<Vec<Event>, Error> {
        self.inner.entity_events(entity, id).await
    }
    async fn last_seq(&self) -> Result<u64, Error> {
        self.inner.last_seq().await
    }
    async fn model_usage(&self, scope: &UsageScope) -> Result<ModelUsage, Error> {
        self.inner.model_usage(scope).await
    }
    async fn model_usage_by_model(
        &self,
        scope: &UsageScope,
    ) -> Result<Vec<(String, ModelUsage)>, Error> {
        self.inner.model_usage_by_model(scope).await
    }
    async fn call_key(
        &self,
        task: TaskId,
        op: &str,
        key: &str,
    ) -> Result<Option<KeyedCall>, Error> {
        self.inner.call_key(task, op, key).await
    }
    async fn unfinished_merges(&self, parent: Option<TaskId>) -> Result<Vec<Merge>, Error> {
        self.inner.unfinished_merges(parent).await
    }

    async fn providers(&self) -> Result<Vec<store::ProviderStanding>, Error> {
        self.inner.providers().await
    }
    async fn approval(&self, id: domain::ApprovalId) -> Result<Option<domain::Approval>, Error> {
        self.inner.approval(id).await
    }
    async fn approvals(
        &self,
        filter: &store::ApprovalFilter,
    ) -> Result<Vec<domain::Approval>, Error> {
        self.inner.approvals(filter).await
    }
    async fn workflow_run(
        &self,
        id: domain::WorkflowId,
    ) -> Result<Option<store::WorkflowRun>, Error> {
        self.inner.workflow_run(id).await
    }
    async fn workflow_runs(
        &self,
        filter: &store::WorkflowFilter,
    ) -> Result<Vec<store::WorkflowRun>, Error> {
        self.inner.workflow_runs(filter).await
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A project without worktrees whose one agent runs `command`, one execution at a time.
fn project(dir: &Path, command: &str) -> engine::Setup {
    let state = dir.join(".agentgrid");
    write(
        &state.join("config.yaml"),
        "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  concurrency:\n    global: 1\n  \
         workspace:\n    enabled: false\n  retry:\n    base_delay: 20ms\n    max_delay: 40ms\n",
    );
    write(
        &state.join("agents/noop.yaml"),
        &format!(
            "apiVersion: agentgrid.dev/v1\nkind: Agent\nmetadata:\n  name: noop\nspec:\n  \
             runtime:\n    type: command\n    command: [{command}]\n  prompt: \"Task {{{{ task.id }}}}\"\n  \
             routing:\n    default: true\n  sandbox:\n    enabled: false\n"
        ),
    );
    let loaded = manifest::load_project(&state).unwrap_or_else(|d| panic!("{d}"));
    engine::setup_from_project(&loaded, dir).unwrap()
}

async fn run(dir: &Path, setup: engine::Setup, tasks: usize) -> (Arc<Recording>, Vec<Task>) {
    run_cancelling(dir, setup, tasks, None).await
}

async fn run_cancelling(
    dir: &Path,
    setup: engine::Setup,
    tasks: usize,
    cancel_before_end: Option<TaskId>,
) -> (Arc<Recording>, Vec<Task>) {
    run_with(dir, setup, tasks, cancel_before_end, None).await
}

async fn run_with(
    dir: &Path,
    setup: engine::Setup,
    tasks: usize,
    cancel_before_end: Option<TaskId>,
    slow_renewal: Option<Duration>,
) -> (Arc<Recording>, Vec<Task>) {
    let state = dir.join(".agentgrid");
    let store = Arc::new(Recording {
        inner: SqliteStore::open(&state.join("agentgrid.db")).unwrap(),
        batches: Mutex::new(Vec::new()),
        cancel_before_end: Mutex::new(cancel_before_end),
        slow_renewal: Mutex::new(slow_renewal),
        renewal_window: Mutex::new(None),
        written_at: Mutex::new(Vec::new()),
    });
    let new = (1..=tasks)
        .map(|i| Change::CreateTask(NewTask::titled(format!("task {i}"))))
        .collect();
    store.inner.apply("test", Timestamp(1), new).await.unwrap();
    let options = EngineOptions {
        project_dir: dir.to_path_buf(),
        state_dir: state.clone(),
        run_dir: dir.join("run"),
        agentgrid_bin: "/bin/false".into(),
        mode: RunMode::UntilIdle,
        events: None,
    };
    let engine = Engine::new(store.clone(), Arc::new(SystemClock), setup, options);
    engine.run(std::future::pending()).await.unwrap();
    let all = store.tasks(&TaskFilter::default()).await.unwrap();
    (store, all)
}

#[tokio::test]
async fn an_execution_end_shares_its_transaction_with_the_next_claim() {
    let dir = tempfile::tempdir().unwrap();
    let setup = project(dir.path(), "\"true\"");
    let (store, tasks) = run(dir.path(), setup, 4).await;
    assert!(
        tasks.iter().all(|t| t.state == TaskState::Done),
        "{tasks:#?}"
    );
    let batches = store.batches.lock().unwrap().clone();
    let ends: Vec<&Vec<&str>> = batches
        .iter()
        .filter(|b| b.contains(&"finish_execution"))
        .collect();
    assert_eq!(ends.len(), 4, "one end per task: {batches:?}");
    // With one execution at a time, each end but the last makes room for the next claim.
    for batch in &ends[..3] {
        let end = batch.iter().position(|c| *c == "finish_execution").unwrap();
        let claim = batch.iter().position(|c| *c == "create_execution");
        assert!(
            claim.is_some_and(|claim| claim > end),
            "the end should come first, then the next claim, in one batch: {batches:?}"
        );
    }
    assert!(
        !ends[3].contains(&"create_execution"),
        "nothing was left to claim: {batches:?}"
    );
}

#[tokio::test]
async fn the_loop_records_ends_and_claims_while_leases_are_renewed() {
    // Leases renewed every 100 ms; the first round takes 600 ms to be written, while
    // executions of 200 ms each end and the next are claimed. The loop must not wait for it.
    let dir = tempfile::tempdir().unwrap();
    let mut setup = project(dir.path(), "\"sleep\", \"0.2\"");
    setup.lease = domain::Duration::from_millis(300);
    let hold = Duration::from_millis(600);
    let (store, tasks) = run_with(dir.path(), setup, 5, None, Some(hold)).await;
    assert!(
        tasks.iter().all(|t| t.state == TaskState::Done),
        "{tasks:#?}"
    );
    let (began, written) = store
        .renewal_window
        .lock()
        .unwrap()
        .expect("a round of renewals was written");
    let meanwhile: Vec<Vec<&str>> = store
        .written_at
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, _)| *at > began && *at < written)
        .map(|(_, names)| names.clone())
        .collect();
    assert!(
        meanwhile.iter().any(|b| b.contains(&"finish_execution")),
        "an end was written while the renewal was: {meanwhile:?}"
    );
    assert!(
        meanwhile.iter().any(|b| b.contains(&"create_execution")),
        "a claim was written while the renewal was: {meanwhile:?}"
    );
    // The late renewal found executions that had ended meanwhile; none was stopped for it:
    // every task ran once and succeeded.
    let executions = store.executions(&ExecutionFilter::default()).await.unwrap();
    assert_eq!(executions.len(), 5, "{executions:#?}");
    assert!(
        executions
            .iter()
            .all(|e| e.state == domain::ExecutionState::Succeeded),
        "{executions:#?}"
    );
}

#[tokio::test]
async fn a_failed_execution_is_retried_after_its_end_is_recorded() {
    // A failure re-opens the task with a backoff: the end goes in at once, on its own, and the
    // retry is claimed later in its own transaction, after the end in the log.
    let dir = tempfile::tempdir().unwrap();
    let setup = project(dir.path(), "\"false\"");
    let (store, tasks) = run(dir.path(), setup, 1).await;
    assert_eq!(tasks[0].state, TaskState::Failed, "{tasks:#?}");
    let batches = store.batches.lock().unwrap().clone();
    let claims = batches
        .iter()
        .flatten()
        .filter(|c| **c == "create_execution")
        .count();
    assert!(claims >= 2, "the task was retried: {batches:?}");
    let events = store.events_after(0, 10_000).await.unwrap();
    let mut open_claims = 0i32;
    for event in &events {
        match event.kind {
            EventKind::ExecutionCreated { .. } => open_claims += 1,
            EventKind::ExecutionFinished { .. } => open_claims -= 1,
            _ => {}
        }
        assert!(
            (0..=1).contains(&open_claims),
            "at most one claim at a time, each ended before the next: {events:#?}"
        );
    }
}

#[tokio::test]
async fn a_task_cancelled_while_its_execution_ends_stays_cancelled() {
    // The end was computed while the task was running (a failure: retry later); by the time
    // it is written the task is cancelled. The execution's end is recorded, the task is not
    // reopened for the retry, and the run goes on with the other tasks.
    let dir = tempfile::tempdir().unwrap();
    let setup = project(dir.path(), "\"false\"");
    let (store, tasks) = run_cancelling(dir.path(), setup, 3, Some(TaskId(1))).await;
    let states: Vec<TaskState> = tasks.iter().map(|t| t.state).collect();
    assert_eq!(
        states,
        vec![TaskState::Cancelled, TaskState::Failed, TaskState::Failed],
        "{tasks:#?}"
    );
    let first = store
        .executions(&ExecutionFilter {
            task: Some(TaskId(1)),
            ..ExecutionFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(first.len(), 1, "task 1 ran once: {first:#?}");
    assert_eq!(first[0].state, domain::ExecutionState::Failed);
    assert!(first[0].ended_at.is_some());
}

/// A commit by a process that keeps the store open (the approvals TUI, a database browser)
/// wakes the engine at once: the store rings the bell after each commit, while the engine's
/// own store does not, so that its writes to the log wake nothing. Without the bell only the
/// slow poll (every ten seconds) would find the task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_by_a_process_that_keeps_the_store_open_wakes_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let setup = project(dir.path(), "\"true\"");
    let state = dir.path().join(".agentgrid");
    let path = state.join("agentgrid.db");
    let quiet = store::OpenOptions {
        ring_bell: false,
        ..Default::default()
    };
    let engine_store: Arc<dyn Store> = Arc::new(SqliteStore::open_with(&path, &quiet).unwrap());
    let other = SqliteStore::open(&path).unwrap();
    let options = EngineOptions {
        project_dir: dir.path().to_path_buf(),
        state_dir: state.clone(),
        run_dir: dir.path().join("run"),
        agentgrid_bin: "/bin/false".into(),
        mode: RunMode::Forever,
        events: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let engine = Engine::new(engine_store, Arc::new(SystemClock), setup, options);
    let running = tokio::spawn(engine.run(async {
        let _ = stopped.await;
    }));
    // The engine is idle by now, asleep until something wakes it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let created = Instant::now();
    let applied = other
        .apply(
            "cli",
            Timestamp(1),
            vec![Change::CreateTask(NewTask::titled("from elsewhere"))],
        )
        .await
        .unwrap();
    let id = applied.tasks[0].id;
    loop {
        let task = other.task(id).await.unwrap().unwrap();
        if task.state == TaskState::Done {
            break;
        }
        assert!(
            created.elapsed() < Duration::from_secs(5),
            "the task another connection made is still {} after {:?}",
            task.state,
            created.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
}
