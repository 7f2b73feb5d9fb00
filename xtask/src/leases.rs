//! `cargo xtask bench --only leases`: what renewing the leases of many running executions
//! costs, measured on the real SQLite store in a temporary directory.
//!
//! The store holds `executions` claimed executions (500 by default), each with its lease, as an
//! engine running that many would. The engine renews them all in one batch every third of the
//! lease's length (`engine/src/lease.rs`), so two numbers matter: how long one such batch takes
//! (and so how many renewals a second the store writes), and how late a read issued while the
//! batch is written is answered, which is what a control call waiting on the store sees.
//! Each has a baseline measured in the same run on the same store: a batch renewing a single
//! lease (the fixed cost of one store call), and the same read with nothing else in flight.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use domain::{ExecutionKind, Lease, NewTask, Timestamp};
use store::{Change, ExecutionFilter, SqliteStore, Store};

use crate::views::percentile;

/// What was measured.
pub struct Measured {
    executions: usize,
    rounds: usize,
    /// One batch renewing every lease, and its baseline: a batch renewing one.
    all: Vec<Duration>,
    one: Vec<Duration>,
    /// A read answered while a batch of every lease is written, and the same read idle.
    read_during: Vec<Duration>,
    read_idle: Vec<Duration>,
}

impl Measured {
    pub fn print(&self) {
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
        let p50 = |s: &[Duration]| percentile(s, 0.5);
        let p95 = |s: &[Duration]| percentile(s, 0.95);
        println!(
            "leases: {} claimed executions, {} rounds each",
            self.executions, self.rounds
        );
        println!(
            "  renew 1 lease (baseline)        p50 {}  p95 {}",
            ms(p50(&self.one)),
            ms(p95(&self.one))
        );
        println!(
            "  renew all {} leases             p50 {}  p95 {}  ({:.1}x the baseline, {:.0} renewals/s)",
            self.executions,
            ms(p50(&self.all)),
            ms(p95(&self.all)),
            ratio(p50(&self.all), p50(&self.one)),
            self.executions as f64 / p50(&self.all).as_secs_f64().max(1e-9)
        );
        println!(
            "  read, idle (baseline)           p50 {}  p95 {}",
            ms(p50(&self.read_idle)),
            ms(p95(&self.read_idle))
        );
        println!(
            "  read during a renewal of all    p50 {}  p95 {}  ({:.1}x the baseline)",
            ms(p50(&self.read_during)),
            ms(p95(&self.read_during)),
            ratio(p95(&self.read_during), p95(&self.read_idle))
        );
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

/// Builds the store under `base` and measures `rounds` rounds of each kind, alternating.
pub fn measure(base: &Path, executions: usize, rounds: usize) -> anyhow::Result<Measured> {
    let dir = tempfile::Builder::new()
        .prefix("agentgrid-leases-")
        .tempdir_in(base)
        .with_context(|| format!("cannot make a temporary directory in {}", base.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = Arc::new(SqliteStore::open(&dir.path().join("agentgrid.db"))?);
        let mut now = Timestamp(1_767_000_000_000);
        let length = domain::Duration::from_secs(30);
        let node: domain::NodeId = "bench-node".parse().map_err(|e| anyhow::anyhow!("{e}"))?;
        let new: Vec<Change> = (0..executions)
            .map(|i| Change::CreateTask(NewTask::titled(format!("Task {i}"))))
            .collect();
        let created = store.apply("cli", now, new).await?;
        let claims: Vec<Change> = created
            .tasks
            .iter()
            .map(|task| Change::CreateExecution {
                task_id: task.id,
                kind: ExecutionKind::Work,
                agent: "bench".into(),
                attempt: 1,
                lease: Some(Lease::starting(node.clone(), now, length)),
            })
            .collect();
        store.apply("engine", now, claims).await?;
        let active = store
            .executions(&ExecutionFilter {
                active_only: true,
                ..Default::default()
            })
            .await?;
        anyhow::ensure!(
            active.len() == executions,
            "{} executions are active, {executions} were claimed",
            active.len()
        );
        let renewals = |at: Timestamp, how_many: usize| -> Vec<Change> {
            active
                .iter()
                .take(how_many)
                .map(|e| Change::RenewLease {
                    id: e.id,
                    fence: e.fence,
                    until: at.plus(length),
                })
                .collect()
        };
        let probe = created.tasks[0].id;
        let mut measured = Measured {
            executions,
            rounds,
            all: Vec::new(),
            one: Vec::new(),
            read_during: Vec::new(),
            read_idle: Vec::new(),
        };
        for _ in 0..rounds {
            now = Timestamp(now.0 + 10_000);
            let started = Instant::now();
            store.apply("engine", now, renewals(now, 1)).await?;
            measured.one.push(started.elapsed());

            let started = Instant::now();
            store.task(probe).await?;
            measured.read_idle.push(started.elapsed());

            now = Timestamp(now.0 + 10_000);
            let writer = Arc::clone(&store);
            let batch = renewals(now, executions);
            let started = Instant::now();
            let renewing = tokio::spawn(async move { writer.apply("engine", now, batch).await });
            // Give the batch a head start, as a control call arriving mid-renewal would find it.
            tokio::task::yield_now().await;
            let asked = Instant::now();
            store.task(probe).await?;
            measured.read_during.push(asked.elapsed());
            renewing.await??;
            measured.all.push(started.elapsed());
        }
        Ok(measured)
    })
}
