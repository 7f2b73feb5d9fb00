//! A seeded simulation of a workflow runner: random definitions with every kind of state are
//! stepped through random answers, answers that come twice, stale and forged ones, timers on a
//! virtual clock, and crashes after which the runner rebuilds its run from the recorded inputs
//! (replayed from a random prefix on). After every step it checks that the run finishes at most
//! once and never moves after, that a refused input changes nothing and every duplicate is
//! refused, that what a step asks for is what the new visit awaits, that no command is begun
//! twice for one visit, and, at every crash and at the end, that the replay equals the live run.
//! Every seed must finish its run once its work is all answered.
//!
//! The runner does what the engine does: it records an input before it acts on it and a
//! command's begin before it carries it out; agents, gates, sub-workflows and timers are
//! durable (the store holds them), while commands and lands run in memory, so a crash cuts
//! them short and their visit ends as failed instead of running again.
//!
//! `WORKFLOW_SIM_SEED=N` replays one seed; `WORKFLOW_SIM_SEEDS=N` runs N seeds instead of the
//! default.

use std::collections::{BTreeMap, BTreeSet};

use workflow::{
    Command, Definition, Input, Instance, Outcome, State, StateKind, Target, Transition, Value,
    ValueType, When, replay, step,
};

const SEEDS: u64 = 2000;
/// Random steps before the world answers everything that is left.
const STEPS: usize = 250;

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn outcome(&mut self) -> Outcome {
        if self.chance(3) {
            Outcome::Failed
        } else {
            Outcome::Succeeded
        }
    }
}

/// A definition of 3 to 7 working states of every kind (parallel ones with two branches of
/// their own), ending in `ok` or `bad`; every transition has a budget, so every loop is
/// bounded.
fn definition(rng: &mut Rng) -> Definition {
    let n = 3 + rng.below(5) as usize;
    let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    let mut targets = names.clone();
    targets.extend(["ok".to_string(), "bad".to_string()]);
    let mut states = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let kind = match rng.below(6) {
            0 => StateKind::Agent {
                agent: "coder".into(),
                target: if rng.chance(2) {
                    Target::Task
                } else {
                    Target::Subtask {
                        title: format!("part {i}"),
                    }
                },
            },
            1 => StateKind::Command {
                run: vec!["make".into(), name.clone()],
            },
            2 => StateKind::Approval {
                summary: format!("{name}?"),
            },
            3 => {
                let branches = vec![format!("{name}a"), format!("{name}b")];
                for branch in &branches {
                    let kind = if rng.chance(2) {
                        StateKind::Command {
                            run: vec!["lint".into()],
                        }
                    } else {
                        StateKind::Agent {
                            agent: "writer".into(),
                            target: Target::Subtask {
                                title: branch.clone(),
                            },
                        }
                    };
                    states.push(State::new(branch, kind));
                }
                StateKind::Parallel { branches }
            }
            4 => StateKind::Workflow {
                workflow: "child".into(),
            },
            _ => StateKind::Land,
        };
        let approval = matches!(kind, StateKind::Approval { .. });
        let mut state = State::new(name, kind);
        if rng.chance(4) {
            state = state.timeout(1 + rng.below(60));
        }
        for _ in 0..1 + rng.below(3) {
            let when = match rng.below(7) {
                0 => When::Always,
                1 => When::Succeeded,
                2 => When::Failed,
                3 => When::TimedOut,
                4 if approval => When::Approved,
                5 if approval => When::Rejected,
                4 => When::ScoreAtLeast(0.5),
                5 => When::ScoreBelow(0.5),
                _ => When::Succeeded,
            };
            let to = rng.pick(&targets).clone();
            state = state.on(Transition::to(&to).when(when).max(1 + rng.below(3) as u32));
        }
        states.push(state);
    }
    states.push(State::new(
        "ok",
        StateKind::End {
            outcome: Outcome::Succeeded,
        },
    ));
    states.push(State::new(
        "bad",
        StateKind::End {
            outcome: Outcome::Failed,
        },
    ));
    Definition {
        name: "sim".into(),
        start: "s0".into(),
        blackboard: [
            ("note".to_string(), ValueType::String),
            ("bugs".to_string(), ValueType::Int),
        ]
        .into(),
        states,
    }
}

/// One begun command, by visit, state and kind.
type Key = (u32, String, &'static str);

fn key(command: &Command) -> Option<Key> {
    let kind = match command {
        Command::RunAgent { .. } => "agent",
        Command::RunCommand { .. } => "command",
        Command::RequestApproval { .. } => "approval",
        Command::StartWorkflow { .. } => "workflow",
        Command::Land { .. } => "land",
        Command::ArmTimer { .. } => "timer",
        Command::Cancel { .. } | Command::Finish { .. } => return None,
    };
    let (visit, state) = match command {
        Command::RunAgent { visit, state, .. }
        | Command::RunCommand { visit, state, .. }
        | Command::RequestApproval { visit, state, .. }
        | Command::StartWorkflow { visit, state, .. }
        | Command::Land { visit, state }
        | Command::ArmTimer { visit, state, .. } => (*visit, state.clone()),
        Command::Cancel { .. } | Command::Finish { .. } => return None,
    };
    Some((visit, state, kind))
}

/// The runner and the world around it.
struct Sim {
    seed: u64,
    def: Definition,
    rng: Rng,
    now: u64,
    // Durable: what the store holds.
    log: Vec<Input>,
    begun: BTreeSet<Key>,
    /// Agents, gates and sub-workflows under way: they outlive a crash.
    durable_work: Vec<Key>,
    deadlines: BTreeMap<u32, u64>,
    // In memory: lost in a crash.
    live: Instance,
    in_flight: Vec<Key>,
    // What the checks count, across crashes.
    finishes: usize,
    /// How often each command was carried out, as the world saw it.
    issued: BTreeMap<Key, u32>,
    offered: Vec<Input>,
    trace: Vec<String>,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng::new(seed);
        let def = definition(&mut rng);
        Sim {
            seed,
            def,
            rng,
            now: 0,
            log: Vec::new(),
            begun: BTreeSet::new(),
            durable_work: Vec::new(),
            deadlines: BTreeMap::new(),
            live: Instance::default(),
            in_flight: Vec::new(),
            finishes: 0,
            issued: BTreeMap::new(),
            offered: Vec::new(),
            trace: Vec::new(),
        }
    }

    fn fail(&self, what: &str) -> ! {
        let last: Vec<&String> = self.trace.iter().rev().take(12).collect();
        panic!(
            "seed {}: {what}\ndefinition: {:#?}\nlast steps, newest first: {last:#?}\n\
             replay with WORKFLOW_SIM_SEED={} cargo test -p workflow --test it sim",
            self.seed, self.def, self.seed
        );
    }

    fn check(&self, holds: bool, what: impl FnOnce() -> String) {
        if !holds {
            self.fail(&what());
        }
    }

    /// Offers `input` to the run as the tracker does: taken (recorded, then acted on) when it
    /// changes the run, refused otherwise.
    fn offer(&mut self, input: Input) {
        let duplicate = self.log.contains(&input);
        self.offered.push(input.clone());
        let (next, commands) = step(&self.def, &self.live, input.clone());
        if next == self.live {
            self.check(commands.is_empty(), || {
                format!("a refused {input:?} asked for {commands:?}")
            });
            return;
        }
        self.check(!duplicate, || {
            format!("{input:?}, taken once already, was taken again")
        });
        self.check(!self.live.is_finished(), || {
            format!("a finished run moved on {input:?}")
        });
        self.check(next.visit >= self.live.visit, || {
            "the visit went back".into()
        });
        self.trace
            .push(format!("took {input:?} -> {:?}", next.position));
        self.log.push(input);
        let left = next.visit != self.live.visit;
        self.live = next;
        let mut asked = BTreeSet::new();
        for command in &commands {
            match command {
                Command::Finish { .. } => self.finishes += 1,
                Command::Cancel { visit, .. } => {
                    let visit = *visit;
                    self.in_flight.retain(|k| k.0 != visit);
                }
                other => {
                    asked.insert(key(other).expect("work has a key"));
                }
            }
        }
        self.check(self.finishes <= 1, || "the run finished twice".into());
        self.check((self.finishes == 1) == self.live.is_finished(), || {
            format!(
                "finishes {} but the run is {:?}",
                self.finishes, self.live.status
            )
        });
        if left {
            // A new visit asks for exactly what it awaits.
            let awaited: BTreeSet<Key> = self
                .live
                .awaiting(&self.def)
                .iter()
                .filter_map(key)
                .collect();
            self.check(asked == awaited, || {
                format!("the step asked for {asked:?}, the visit awaits {awaited:?}")
            });
        }
    }

    /// The runner's turn: begins what the visit awaits and has not begun; a command or land
    /// begun before a crash that no memory holds ends its visit as failed.
    fn runner_turn(&mut self) {
        let awaited = self.live.awaiting(&self.def);
        for command in awaited {
            let Some(k) = key(&command) else { continue };
            self.check(k.0 == self.live.visit, || {
                format!("{command:?} awaited in visit {}", self.live.visit)
            });
            if !self.begun.contains(&k) {
                self.trace.push(format!("begin {k:?}"));
                self.begun.insert(k.clone());
                let times = self.issued.entry(k.clone()).or_default();
                *times += 1;
                let times = *times;
                self.check(times == 1, || {
                    format!("{k:?} was carried out {times} times")
                });
                match (&command, k.2) {
                    (Command::ArmTimer { visit, secs, .. }, _) => {
                        self.deadlines.insert(*visit, self.now + secs);
                    }
                    (_, "command" | "land") => self.in_flight.push(k),
                    _ => self.durable_work.push(k),
                }
                continue;
            }
            if matches!(k.2, "command" | "land") && !self.in_flight.contains(&k) {
                self.trace.push(format!("cut short {k:?}"));
                self.offer(Input::ended(k.0, &k.1, Outcome::Failed));
                // The run moved: what it awaited before is the next turn's to look at again.
                return;
            }
        }
    }

    /// The world answers one piece of work under way.
    fn answer_one(&mut self) {
        let total = self.in_flight.len() + self.durable_work.len();
        if total == 0 {
            return;
        }
        let i = self.rng.below(total as u64) as usize;
        let k = if i < self.in_flight.len() {
            self.in_flight.remove(i)
        } else {
            self.durable_work.remove(i - self.in_flight.len())
        };
        let input = self.answer(&k);
        self.offer(input);
    }

    fn answer(&mut self, k: &Key) -> Input {
        let (visit, state, kind) = k.clone();
        if kind == "approval" {
            let approved = self.rng.chance(2);
            return Input::Decided {
                visit,
                approved,
                feedback: (!approved).then(|| "again".to_string()),
            };
        }
        let mut values = BTreeMap::new();
        if self.rng.chance(3) {
            values.insert("bugs".to_string(), Value::Int(self.rng.below(5) as i64));
        }
        if self.rng.chance(5) {
            // A value of the wrong type, and a key the blackboard does not have: refused and
            // kept in the history, the run goes on.
            values.insert("note".to_string(), Value::Bool(true));
            values.insert("nope".to_string(), Value::Int(1));
        }
        Input::Ended {
            visit,
            state,
            outcome: self.rng.outcome(),
            score: self
                .rng
                .chance(2)
                .then(|| self.rng.below(100) as f64 / 100.0),
            values,
        }
    }

    /// Time passes; timers that are due fire (again and again while recorded: a late firing
    /// is refused as stale).
    fn tick(&mut self, by: u64) {
        self.now += by;
        let due: Vec<u32> = self
            .deadlines
            .iter()
            .filter(|(_, at)| **at <= self.now)
            .map(|(v, _)| *v)
            .collect();
        for visit in due {
            self.offer(Input::TimedOut { visit });
        }
    }

    /// An input nobody asked for: a random visit, state and kind.
    fn forged(&mut self) -> Input {
        let visit = self.rng.below(self.live.visit as u64 + 2) as u32;
        let mut names: Vec<String> = self.def.states.iter().map(|s| s.name.clone()).collect();
        names.push("nowhere".into());
        let state = self.rng.pick(&names).clone();
        match self.rng.below(4) {
            0 => Input::Start,
            1 => Input::Decided {
                visit,
                approved: self.rng.chance(2),
                feedback: None,
            },
            2 => Input::TimedOut { visit },
            _ => Input::ended(visit, &state, self.rng.outcome()),
        }
    }

    /// The runner dies: memory is gone; the run is read back from its recorded inputs.
    fn crash(&mut self) {
        self.trace.push("crash".into());
        self.in_flight.clear();
        self.check_replay();
        self.live = replay(&self.def, &self.log);
    }

    /// Replay equals live, from the start and resumed from a random prefix; the stored form
    /// of the run reads back as it was.
    fn check_replay(&mut self) {
        let replayed = replay(&self.def, &self.log);
        self.check(replayed == self.live, || {
            "replay differs from the live run".into()
        });
        let cut = self.rng.below(self.log.len() as u64 + 1) as usize;
        let resumed = self.log[cut..]
            .iter()
            .fold(replay(&self.def, &self.log[..cut]), |i, input| {
                step(&self.def, &i, input.clone()).0
            });
        self.check(resumed == self.live, || {
            format!("a replay resumed after {cut} inputs differs from the live run")
        });
        let stored = serde_json::to_string(&self.live).unwrap();
        let back: Instance = serde_json::from_str(&stored).unwrap();
        self.check(back == self.live, || {
            "the stored run reads back otherwise".into()
        });
    }

    fn run(mut self) {
        self.offer(Input::Start);
        for _ in 0..STEPS {
            match self.rng.below(12) {
                0..=3 => self.runner_turn(),
                4..=6 => self.answer_one(),
                7 => {
                    let by = self.rng.below(30);
                    self.tick(by);
                }
                8 => {
                    if !self.offered.is_empty() {
                        let again = self.rng.pick(&self.offered).clone();
                        self.offer(again);
                    }
                }
                9 => {
                    let forged = self.forged();
                    self.offer(forged);
                }
                10 if self.rng.chance(2) => self.crash(),
                _ => self.offer(Input::Start),
            }
        }
        // Everything left is answered: every run ends, since every loop has a budget.
        for _ in 0..1000 {
            if self.live.is_finished() {
                break;
            }
            self.runner_turn();
            while !self.in_flight.is_empty() || !self.durable_work.is_empty() {
                self.answer_one();
            }
            self.tick(100);
        }
        self.check(self.live.is_finished(), || {
            format!("the run never finished: {:?}", self.live)
        });
        self.check_replay();
        self.check(self.live.awaiting(&self.def).is_empty(), || {
            "a finished run awaits work".into()
        });
    }
}

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("WORKFLOW_SIM_SEED") {
        return vec![seed.parse().expect("WORKFLOW_SIM_SEED is a number")];
    }
    let n = std::env::var("WORKFLOW_SIM_SEEDS")
        .map(|n| n.parse().expect("WORKFLOW_SIM_SEEDS is a number"))
        .unwrap_or(SEEDS);
    (1..=n).collect()
}

#[test]
fn every_seed_finishes_once_replays_as_it_ran_and_begins_nothing_twice() {
    for seed in seeds() {
        Sim::new(seed).run();
    }
}

/// The checks can fail: a runner that forgets its begin marks in a crash (carrying a command
/// out again) is caught by some seed.
#[test]
fn a_runner_that_forgets_its_begins_is_caught() {
    let caught = (1..200).any(|seed| {
        let outcome = std::panic::catch_unwind(|| {
            let mut sim = Sim::new(seed);
            sim.offer(Input::Start);
            for _ in 0..STEPS {
                match sim.rng.below(4) {
                    0 | 1 => sim.runner_turn(),
                    2 => sim.answer_one(),
                    _ => {
                        sim.crash();
                        sim.begun.clear();
                    }
                }
            }
        });
        let Err(panic) = outcome else { return false };
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            message.contains("was carried out 2 times"),
            "seed {seed} failed otherwise: {message}"
        );
        true
    });
    assert!(caught, "no seed noticed a command begun twice");
}
