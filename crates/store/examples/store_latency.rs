//! The time of the store calls an engine makes per execution, on a fresh file in a temporary
//! directory: `cargo run --release -p store --example store_latency [executions]`.
//!
//! Each execution is a claim (one batch), then its progress and end (one batch), then a read of
//! its task: the shape of a short execution's writes once the engine holds its progress back.
//! The calls run on a multi-threaded tokio runtime with two workers, as in `agentgrid run`, so
//! whatever hand-off the store makes between threads is in the numbers.

use std::time::{Duration, Instant};

use domain::{ExecutionKind, ExecutionState, NewTask, TaskState, Timestamp, Usage};
use store::{Change, SqliteStore, Store};

fn main() {
    let executions: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("the argument is a number of executions"))
        .unwrap_or(2000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open(&dir.path().join("agentgrid.db")).expect("a store");
        let now = Timestamp(1_000);
        let mut ids = Vec::with_capacity(executions);
        for i in 0..executions {
            let applied = store
                .apply(
                    "cli",
                    now,
                    vec![Change::CreateTask(NewTask::titled(format!("task {i}")))],
                )
                .await
                .expect("a task");
            ids.push(applied.tasks[0].id);
        }
        let mut claims = Vec::with_capacity(executions);
        let mut ends = Vec::with_capacity(executions);
        let mut reads = Vec::with_capacity(executions);
        let started = Instant::now();
        for &task in &ids {
            let t = Instant::now();
            let applied = store
                .apply(
                    "engine",
                    now,
                    vec![Change::CreateExecution {
                        task_id: task,
                        kind: ExecutionKind::Work,
                        agent: "noop".into(),
                        attempt: 1,
                        lease: None,
                    }],
                )
                .await
                .expect("a claim");
            claims.push(t.elapsed());
            let id = applied.executions[0].id;
            let t = Instant::now();
            store
                .apply(
                    "engine",
                    now,
                    vec![
                        Change::SetExecutionState {
                            id,
                            to: ExecutionState::Preparing,
                            reason: None,
                        },
                        Change::SetExecutionState {
                            id,
                            to: ExecutionState::Running,
                            reason: None,
                        },
                        Change::ProcessStarted {
                            id,
                            pid: 42,
                            iteration: 1,
                            log_path: None,
                        },
                        Change::ProcessExited {
                            id,
                            iteration: 1,
                            exit_code: Some(0),
                            signal: None,
                        },
                        Change::FinishExecution {
                            id,
                            state: ExecutionState::Succeeded,
                            exit_code: Some(0),
                            usage: Usage::default(),
                            summary: None,
                        },
                        Change::SettleTask {
                            id: task,
                            to: TaskState::Done,
                            reason: None,
                        },
                    ],
                )
                .await
                .expect("an end");
            ends.push(t.elapsed());
            let t = Instant::now();
            store.task(task).await.expect("a read").expect("the task");
            reads.push(t.elapsed());
        }
        let total = started.elapsed();
        println!(
            "{executions} executions in {:.1} ms ({:.1} µs each)",
            total.as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e6 / executions as f64
        );
        for (name, times) in [
            ("claim", &mut claims),
            ("end", &mut ends),
            ("read", &mut reads),
        ] {
            times.sort();
            let at = |q: f64| times[((times.len() as f64 - 1.0) * q) as usize];
            let us = |d: Duration| d.as_secs_f64() * 1e6;
            println!(
                "{name:>5}: median {:7.1} µs, p90 {:7.1} µs, p99 {:7.1} µs",
                us(at(0.5)),
                us(at(0.9)),
                us(at(0.99))
            );
        }
    });
}
