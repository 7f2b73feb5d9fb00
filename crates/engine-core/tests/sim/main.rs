//! Deterministic simulation of the engine's core.
//!
//! Each seed makes one world: a few tasks, agents that succeed, fail, hang, split their task
//! into sub-tasks, block or comment, another process that cancels and adds tasks, writes that
//! wait behind another process's lock, and crashes of the engine before and after writes, after
//! which a new core is built from the store and recovers. Time is virtual and every choice
//! comes from the seed, so a failing seed replays exactly:
//!
//! ```text
//! SIM_SEED=1234 cargo test -p engine-core --test sim
//! ```
//!
//! `SIM_SEEDS=N` runs N seeds instead of the default 2,000.

mod rng;
mod store;
mod world;

use world::{Defects, World};

const DEFAULT_SEEDS: u64 = 2_000;

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("SIM_SEED") {
        let seed = seed
            .parse()
            .unwrap_or_else(|_| panic!("SIM_SEED must be a number, not {seed:?}"));
        return vec![seed];
    }
    let count = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_SEEDS);
    (0..count).collect()
}

/// Runs one seed; the violation with the end of the trace when an invariant broke.
fn run(seed: u64, defects: Defects) -> Result<(), String> {
    World::new(seed, defects).run().map_err(|(violation, trace)| {
        let tail = trace[trace.len().saturating_sub(40)..].join("\n");
        format!("{violation}\n--- the last steps ---\n{tail}\nreplay: SIM_SEED={seed} cargo test -p engine-core --test sim")
    })
}

#[test]
fn every_seed_keeps_the_invariants() {
    let seeds = seeds();
    for &seed in &seeds {
        if let Err(report) = run(seed, Defects::default()) {
            panic!("{report}");
        }
    }
    eprintln!("{} seeds kept every invariant", seeds.len());
}

#[test]
fn a_seed_replays_exactly() {
    for seed in [3, 17, 99] {
        let once = World::new(seed, Defects::default()).run_traced();
        let again = World::new(seed, Defects::default()).run_traced();
        assert_eq!(once, again, "seed {seed} ran two different ways");
        assert!(once.len() > 5, "seed {seed} did almost nothing: {once:?}");
    }
}

/// Some seed finds `defects`, failing first for the invariant that says `broken`, and the same
/// seed without them keeps every invariant: the defect is what it found.
fn caught(defects: Defects, what: &str, broken: &str) {
    let found = (0..DEFAULT_SEEDS).find_map(|seed| run(seed, defects).err().map(|r| (seed, r)));
    let Some((seed, report)) = found else {
        panic!("no seed found {what}");
    };
    eprintln!("{what} was found by seed {seed}:\n{report}");
    let first = report.lines().next().unwrap_or_default();
    assert!(
        first.contains(broken),
        "seed {seed} failed for another reason: {first}"
    );
    run(seed, Defects::default()).unwrap_or_else(|r| panic!("seed {seed} fails anyway: {r}"));
}

#[test]
fn a_skipped_merge_is_caught() {
    let defects = Defects {
        skip_a_merge: true,
        ..Defects::default()
    };
    caught(
        defects,
        "the skipped merge",
        "every child's work is merged before its parent is done",
    );
}

#[test]
fn renewals_that_are_never_written_are_caught() {
    let defects = Defects {
        drop_renewals: true,
        ..Defects::default()
    };
    caught(
        defects,
        "the dropped renewals",
        "a running execution's lease is renewed before it runs out",
    );
}
