//! Routing through agencies: by capability to an agency, by role, capability and load to a
//! specialist, else to its coordinator; per-agency caps; the contract net. One case per rule,
//! then properties over random worlds.

use domain::{Duration, ExecutionId, ExecutionKind, TaskId, TaskState, Timestamp};
use proptest::prelude::*;
use scheduler::agency::{Bid, Call};
use scheduler::{
    Action, ActiveExecution, AgencyPolicy, AgentPolicy, Config, RoutingMode, Snapshot,
    SpecialistPolicy, assign, decide, route,
};

use crate::world::{T0, labelled, run, task, world};

fn agent(name: &str, caps: &[&str], concurrency: Option<u32>) -> AgentPolicy {
    let mut a = AgentPolicy::new(name);
    a.capabilities = caps.iter().map(|c| c.to_string()).collect();
    a.concurrency = concurrency;
    a
}

fn agency(name: &str, labels: &[&str], lead: &str, specialists: &[(&str, &str)]) -> AgencyPolicy {
    let mut a = AgencyPolicy::new(name, lead);
    a.labels = labels.iter().map(|l| l.to_string()).collect();
    a.specialists = specialists
        .iter()
        .map(|(agent, role)| SpecialistPolicy::new(*agent, *role))
        .collect();
    a
}

/// Code (lead `code-lead`, `coder` and `rustacean` who knows rust) and QA (lead `qa-lead`,
/// `tester`), plus `loner`, in no agency, who takes what nobody else does.
fn two_agencies() -> Config {
    let mut loner = AgentPolicy::new("loner");
    loner.default = true;
    Config {
        global_concurrency: 10,
        agents: vec![
            agent("code-lead", &[], None),
            agent("coder", &[], Some(1)),
            agent("rustacean", &["rust"], Some(1)),
            agent("qa-lead", &[], None),
            agent("tester", &[], None),
            loner,
        ],
        agencies: vec![
            agency(
                "code",
                &["code"],
                "code-lead",
                &[("coder", "developer"), ("rustacean", "developer")],
            ),
            agency("qa", &["qa", "test"], "qa-lead", &[("tester", "tester")]),
        ],
        ..Config::default()
    }
}

fn routed(config: &Config, labels: &[&str], load: &dyn Fn(&str) -> u32) -> Result<String, String> {
    let t = labelled(task(1), labels);
    assign(&t, ExecutionKind::Work, config, load, T0).map(|r| r.agent.name.clone())
}

#[test]
fn labels_pick_the_agency_and_load_picks_the_specialist() {
    let c = two_agencies();
    assert_eq!(routed(&c, &["qa"], &|_| 0).unwrap(), "tester");
    assert_eq!(routed(&c, &["code"], &|_| 0).unwrap(), "coder");
    // `coder` is at its cap: the next developer takes the task.
    let busy = |a: &str| u32::from(a == "coder");
    assert_eq!(routed(&c, &["code"], &busy).unwrap(), "rustacean");
    // Both developers are full: the coordinator takes it.
    assert_eq!(routed(&c, &["code"], &|_| 1).unwrap(), "code-lead");
}

#[test]
fn needs_pick_the_agency_and_the_capable_specialist() {
    let mut c = two_agencies();
    c.agencies[0].capabilities = vec!["python".into()];
    // No label, but `needs:rust` is covered by a member of Code.
    assert_eq!(routed(&c, &["needs:rust"], &|_| 0).unwrap(), "rustacean");
    // The agency's own capability accepts the task; no specialist has it: the coordinator.
    assert_eq!(routed(&c, &["needs:python"], &|_| 0).unwrap(), "code-lead");
    // QA is asked for, but it cannot do rust, and Code carries no `qa` label... Code still
    // covers the need, so it takes it.
    assert_eq!(
        routed(&c, &["qa", "needs:rust"], &|_| 0).unwrap(),
        "rustacean"
    );
}

#[test]
fn a_role_label_picks_the_role() {
    let mut c = two_agencies();
    c.agencies[0]
        .specialists
        .push(SpecialistPolicy::new("tester", "reviewer"));
    c.agencies[1].specialists.clear();
    assert_eq!(
        routed(&c, &["code", "role:reviewer"], &|_| 0).unwrap(),
        "tester"
    );
    assert_eq!(
        routed(&c, &["code", "role:nobody"], &|_| 0).unwrap(),
        "code-lead"
    );
}

#[test]
fn tasks_no_agency_accepts_go_outside_or_wait_and_say_why() {
    let mut c = two_agencies();
    assert_eq!(routed(&c, &["docs"], &|_| 0).unwrap(), "loner");
    c.agents.retain(|a| a.name != "loner");
    let why = routed(&c, &["docs", "needs:go"], &|_| 0).unwrap_err();
    assert!(why.contains("no agency accepts it"), "{why}");
    assert!(
        why.contains("code (labels [code], capabilities [rust])"),
        "{why}"
    );
    // In a decision, it is simply not dispatched.
    let s = world(vec![labelled(task(1), &["docs"])]);
    assert!(decide(&s, &c, T0).actions.is_empty());
}

#[test]
fn the_reason_of_the_routing_goes_with_the_dispatch() {
    let c = two_agencies();
    let s = world(vec![labelled(task(1), &["qa"])]);
    let d = decide(&s, &c, T0);
    match &d.actions[0] {
        Action::Dispatch { agent, reason, .. } => {
            assert_eq!(agent, "tester");
            let reason = reason.as_deref().unwrap();
            assert!(
                reason.contains("routed to agency `qa`: its tester `tester`"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_agency_cap_holds_across_its_agents() {
    let mut c = two_agencies();
    c.agencies[0].concurrency = Some(2);
    let mut s = world((1..=5).map(|i| labelled(task(i), &["code"])).collect());
    let d = decide(&s, &c, T0);
    assert_eq!(d.dispatches().count(), 2, "{:?}", d.actions);
    let agents: Vec<&str> = d.dispatches().map(|(_, a, _)| a).collect();
    assert_eq!(agents, ["coder", "rustacean"]);
    run(&mut s, 1, 1, "coder", T0);
    let d = decide(&s, &c, T0);
    assert_eq!(d.dispatches().count(), 1, "one running, one more fits");
}

#[test]
fn an_agency_whose_daily_budget_is_spent_starts_nothing_and_the_others_go_on() {
    let mut c = two_agencies();
    c.agencies[0].day_budget = scheduler::DayBudget {
        tokens: Some(1000),
        cost_micros: Some(2_000_000),
    };
    let mut s = world(vec![
        labelled(task(1), &["code"]),
        labelled(task(2), &["qa"]),
    ]);
    let spend = |tokens: u64, cost_micros: u64| domain::ModelUsage {
        tokens: domain::Tokens {
            input: tokens,
            ..Default::default()
        },
        cost_micros,
        requests: 1,
    };
    // Under the budget: both start.
    s.agency_spend.insert("code".into(), spend(999, 1_999_999));
    let d = decide(&s, &c, T0);
    let agents: Vec<&str> = d.dispatches().map(|(_, a, _)| a).collect();
    assert_eq!(agents, ["coder", "tester"]);
    // The cost is used up: Code's task waits, QA's starts, and nothing wakes the loop for it.
    s.agency_spend.insert("code".into(), spend(10, 2_000_000));
    let d = decide(&s, &c, T0);
    let agents: Vec<&str> = d.dispatches().map(|(_, a, _)| a).collect();
    assert_eq!(agents, ["tester"]);
    assert_eq!(d.next_wakeup, None);
    let code = c.agencies.first();
    assert_eq!(
        scheduler::agency_budget_spent(code, &s).as_deref(),
        Some("agency code's daily budget of $2.0000 a day ($2.0000 spent today) is used up")
    );
    // The tokens are used up as well: still nothing for Code.
    s.agency_spend.insert("code".into(), spend(1000, 0));
    let d = decide(&s, &c, T0);
    assert_eq!(d.dispatches().count(), 1);
    // A budget left unset limits nothing, however much was spent.
    c.agencies[0].day_budget = scheduler::DayBudget::default();
    let d = decide(&s, &c, T0);
    assert_eq!(d.dispatches().count(), 2);
}

#[test]
fn contract_net_awards_the_best_bid_and_falls_back_to_the_coordinator() {
    let mut c = two_agencies();
    c.agencies[0].mode = RoutingMode::ContractNet {
        deadline: Duration::from_secs(30),
    };
    c.agencies[0].specialists[0].cost = 3.0;
    let t = labelled(task(1), &["code"]);
    let r = assign(&t, ExecutionKind::Work, &c, &|_| 0, T0).unwrap();
    assert_eq!(r.agent.name, "rustacean", "same confidence, lower cost");
    let reason = r.reason.unwrap();
    assert!(
        reason.contains("awarded to `rustacean`, the best of 2 bid(s)"),
        "{reason}"
    );
    // A task that needs what nobody has: every specialist declines, the coordinator takes it.
    c.agencies[0].capabilities = vec!["python".into()];
    let t = labelled(task(2), &["needs:python"]);
    let r = assign(&t, ExecutionKind::Work, &c, &|_| 0, T0).unwrap();
    assert_eq!(r.agent.name, "code-lead");
    assert!(
        r.reason
            .unwrap()
            .contains("all 2 invited agent(s) declined")
    );
}

#[test]
fn route_without_load_is_assign_with_none() {
    let c = two_agencies();
    let t = labelled(task(1), &["test"]);
    assert_eq!(route(&t, ExecutionKind::Work, &c).unwrap().name, "tester");
}

// --- properties -------------------------------------------------------------------------

const LABELS: [&str; 5] = ["code", "qa", "docs", "needs:rust", "role:b"];

fn arb_config() -> impl Strategy<Value = Config> {
    let agents = prop::collection::vec(
        (prop::option::of(1..3u32), any::<bool>(), any::<bool>()),
        2..8,
    );
    let agencies = prop::collection::vec(
        (
            0..3usize,
            prop::option::of(1..4u32),
            any::<bool>(),
            prop::collection::vec(any::<bool>(), 0..4),
        ),
        0..3,
    );
    (agents, agencies, 1..8u32).prop_map(|(agents, agencies, global)| {
        let agents: Vec<AgentPolicy> = agents
            .into_iter()
            .enumerate()
            .map(|(i, (cap, rust, default))| {
                let mut a = agent(&format!("a{i}"), if rust { &["rust"] } else { &[] }, cap);
                a.default = default;
                a
            })
            .collect();
        // Agents are handed out in order, so none is in two agencies.
        let mut next = 0;
        let mut out = Vec::new();
        for (i, (label, cap, net, roles)) in agencies.into_iter().enumerate() {
            if next >= agents.len() {
                break;
            }
            let mut a = agency(
                &format!("g{i}"),
                &[["code", "qa", "docs"][label]],
                &agents[next].name,
                &[],
            );
            next += 1;
            for b in roles {
                if next >= agents.len() {
                    break;
                }
                a.specialists.push(SpecialistPolicy::new(
                    agents[next].name.clone(),
                    if b { "b" } else { "a" },
                ));
                next += 1;
            }
            a.concurrency = cap;
            if net {
                a.mode = RoutingMode::ContractNet {
                    deadline: Duration::from_secs(30),
                };
            }
            out.push(a);
        }
        Config {
            global_concurrency: global,
            agents,
            agencies: out,
            ..Config::default()
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Over a run of decisions with executions ending: a task is dispatched to at most one
    /// agent at a time, never twice in one decision; no agency runs more than its cap; a task
    /// routed to an agency runs on one of its members; a task no agent can take stays open and
    /// routing says why.
    #[test]
    fn agencies_route_each_task_once_and_hold_their_caps(
        config in arb_config(),
        tasks in prop::collection::vec(prop::collection::vec(0..5usize, 0..3), 1..25),
        ends in prop::collection::vec(any::<u8>(), 30),
    ) {
        let mut s = Snapshot::default();
        for (i, labels) in tasks.iter().enumerate() {
            let labels: Vec<&str> = labels.iter().map(|l| LABELS[*l]).collect();
            s.insert(labelled(task(i as i64 + 1), &labels));
        }
        let mut now = T0;
        let mut next_exec = 1;
        for end in ends {
            let d = decide(&s, &config, now);
            let mut seen = std::collections::HashSet::new();
            for (task_id, agent_name, _) in d.dispatches() {
                prop_assert!(seen.insert(task_id), "task {task_id} dispatched twice in one decision");
                prop_assert!(
                    !s.active.iter().any(|e| e.task == task_id),
                    "task {task_id} dispatched while it runs"
                );
                let t = s.task(task_id).unwrap().clone();
                let want = route(&t, ExecutionKind::Work, &config);
                prop_assert!(want.is_ok(), "dispatched a task routing refuses");
                if let Some(agency) = config.agency_of(agent_name) {
                    prop_assert!(agency.has_member(agent_name));
                }
                s.update(task_id, |t| { t.state = TaskState::Running; t.executions += 1; });
                s.active.push(ActiveExecution {
                    id: ExecutionId(next_exec),
                    task: task_id,
                    agent: agent_name.to_string(),
                    kind: ExecutionKind::Work,
                    iteration_started_at: Some(now),
                    last_activity_at: now,
                    kill_requested: false,
                });
                next_exec += 1;
            }
            prop_assert!(s.active.len() as u32 <= config.global_concurrency);
            for agency in &config.agencies {
                let running = s.active.iter().filter(|e| agency.has_member(&e.agent)).count() as u32;
                if let Some(cap) = agency.concurrency {
                    prop_assert!(running <= cap, "agency {} runs {running} over its cap {cap}", agency.name);
                }
            }
            // Some executions end, done.
            if !s.active.is_empty() {
                let i = end as usize % s.active.len();
                let e = s.active.remove(i);
                s.update(e.task, |t| t.state = TaskState::Done);
            }
            now = now.plus(Duration::from_secs(1));
        }
        for t in s.tasks().filter(|t| t.state == TaskState::Open) {
            if let Err(why) = route(t, ExecutionKind::Work, &config) {
                prop_assert!(why.contains("no agent runs work executions"), "{why}");
            }
        }
    }

    /// Answers and closes in any order at any time: a call is awarded at most once, and once
    /// its deadline has passed a close always awards, to the fallback when nobody bid.
    #[test]
    fn a_call_is_awarded_once_and_the_deadline_always_decides(
        steps in prop::collection::vec((0..4usize, any::<bool>(), 0..3u8, 0..50u64), 0..20),
    ) {
        let invited: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let start = Timestamp(1_000_000);
        let mut call = Call::open("g", invited.clone(), start, Duration::from_secs(30));
        let mut award: Option<scheduler::agency::Award> = None;
        let mut bids = 0;
        for (who, bids_now, what, secs) in steps {
            let now = start.plus(Duration::from_secs(secs));
            if what == 0 {
                let got = call.close(now, "lead").cloned();
                match (&award, got) {
                    (Some(first), Some(again)) => prop_assert_eq!(first, &again, "awarded twice"),
                    (Some(_), None) => prop_assert!(false, "an award vanished"),
                    (None, Some(a)) => award = Some(a),
                    (None, None) => prop_assert!(now < call.deadline(), "past the deadline and not awarded"),
                }
            } else {
                let name = ["a", "b", "c", "x"][who];
                let bid = bids_now.then(|| Bid { agent: name.into(), cost: f64::from(what), confidence: 0.5 });
                let before = call.clone();
                match call.answer(name, bid.clone(), now) {
                    Ok(()) => {
                        prop_assert!(award.is_none());
                        if bid.is_some() { bids += 1; }
                    }
                    Err(_) => prop_assert_eq!(&call, &before, "a refused answer changed the call"),
                }
            }
        }
        let late = call.deadline().plus(Duration::from_secs(1));
        let last = call.close(late, "lead").cloned();
        prop_assert!(last.is_some(), "the deadline fallback is always taken");
        let last = last.unwrap();
        if let Some(first) = &award { prop_assert_eq!(first, &last); }
        if bids == 0 { prop_assert!(last.fallback && last.agent == "lead"); }
        else { prop_assert!(!last.fallback && invited.contains(&last.agent)); }
    }
}

#[test]
fn a_dead_agency_member_does_not_stop_the_others() {
    // An agency whose coordinator runs no work and whose only specialist is busy: the task
    // waits with the reason; a task for another agency still runs.
    let mut c = two_agencies();
    c.agents[0].kinds = vec![ExecutionKind::Resume];
    let mut s = world(vec![
        labelled(task(1), &["code"]),
        labelled(task(2), &["qa"]),
    ]);
    s.active.push(ActiveExecution {
        id: ExecutionId(9),
        task: TaskId(99),
        agent: "coder".into(),
        kind: ExecutionKind::Work,
        iteration_started_at: Some(T0),
        last_activity_at: T0,
        kill_requested: false,
    });
    c.agents[2].concurrency = Some(0);
    let d = decide(&s, &c, T0);
    let agents: Vec<&str> = d.dispatches().map(|(_, a, _)| a).collect();
    assert_eq!(agents, ["tester"]);
    let busy = |a: &str| u32::from(a == "coder");
    let why = routed(&c, &["code"], &busy).unwrap_err();
    assert!(
        why.contains("its coordinator `code-lead` does not run work executions"),
        "{why}"
    );
}
