//! Which agent takes a task: an explicit assignment; else the agency that accepts it (by labels
//! and `needs:` capabilities) and, inside it, a specialist by role, capability and load, or
//! the agency's coordinator; else, among the agents outside agencies, the best label match,
//! else a default.

use domain::{ExecutionKind, Task, Timestamp};

use crate::agency::{Call, RoutingMode, rule_bid};
use crate::{AgencyPolicy, AgentPolicy, Config};

/// The prefix of a task label that asks for a capability: `needs:python`.
pub const NEEDS_PREFIX: &str = "needs:";
/// The prefix of a task label that asks for a role in its agency: `role:tester`.
pub const ROLE_PREFIX: &str = "role:";

/// Where routing sent a task.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed<'a> {
    pub agent: &'a AgentPolicy,
    /// The agency the agent is in, if any (its cap holds).
    pub agency: Option<&'a AgencyPolicy>,
    /// How the agency chose the agent, for the task's history; `None` outside agencies.
    pub reason: Option<String>,
}

/// The agent that should run `kind` on `task`, or why there is none, as if no agent were busy.
pub fn route<'a>(
    task: &Task,
    kind: ExecutionKind,
    config: &'a Config,
) -> Result<&'a AgentPolicy, String> {
    assign(task, kind, config, &|_| 0, Timestamp(0)).map(|r| r.agent)
}

/// Routes `task` for `kind`, with `load(agent)` the executions each agent runs now (a
/// specialist at its cap is passed over for another, or for its coordinator). `now` opens a
/// contract net's call for proposals; with bids made by rule every invited agent answers at
/// once, so the call is awarded in the same decision.
pub fn assign<'a>(
    task: &Task,
    kind: ExecutionKind,
    config: &'a Config,
    load: &dyn Fn(&str) -> u32,
    now: Timestamp,
) -> Result<Routed<'a>, String> {
    if let Some(name) = &task.agent {
        let agent = config
            .agent(name)
            .ok_or_else(|| format!("assigned to agent `{name}`, which is not defined"))?;
        if !agent.kinds.contains(&kind) {
            return Err(format!(
                "assigned agent `{name}` does not run {kind} executions"
            ));
        }
        return Ok(Routed {
            agent,
            agency: config.agency_of(name),
            reason: None,
        });
    }
    let needs: Vec<&str> = task
        .labels
        .iter()
        .filter_map(|l| l.strip_prefix(NEEDS_PREFIX))
        .collect();
    if let Some(target) = &task.handoff {
        return handed_to(task, kind, config, target, &needs, load, now);
    }
    if let Some(agency) = accepting_agency(task, &needs, config) {
        let role = task.labels.iter().find_map(|l| l.strip_prefix(ROLE_PREFIX));
        return within_agency(task, kind, config, agency, role, &needs, load, now);
    }
    let outside = |a: &&AgentPolicy| config.agency_of(&a.name).is_none();
    let capable = |a: &&AgentPolicy| {
        a.kinds.contains(&kind) && needs.iter().all(|n| a.capabilities.iter().any(|c| c == n))
    };
    let mut best: Option<(&AgentPolicy, usize)> = None;
    for agent in config
        .agents
        .iter()
        .filter(outside)
        .filter(|a| !a.default)
        .filter(capable)
    {
        let score = if agent.labels.is_empty() {
            0
        } else {
            let matched = agent
                .labels
                .iter()
                .filter(|l| task.labels.contains(l))
                .count();
            if matched == 0 {
                continue;
            }
            matched
        };
        // Strictly greater: on a tie the agent declared first keeps the task.
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((agent, score));
        }
    }
    let outside_agent = best.map(|(a, _)| a).or_else(|| {
        config
            .agents
            .iter()
            .filter(outside)
            .filter(|a| a.default)
            .find(capable)
    });
    if let Some(agent) = outside_agent {
        return Ok(Routed {
            agent,
            agency: None,
            reason: None,
        });
    }
    let mut why = format!(
        "no agent runs {kind} executions for labels [{}]",
        task.labels.join(", ")
    );
    if !needs.is_empty() {
        why.push_str(&format!(" needing capabilities [{}]", needs.join(", ")));
    }
    if !config.agencies.is_empty() {
        let offers: Vec<String> = config
            .agencies
            .iter()
            .map(|a| {
                format!(
                    "{} (labels [{}], capabilities [{}])",
                    a.name,
                    a.labels.join(", "),
                    agency_capabilities(a, config).join(", ")
                )
            })
            .collect();
        why.push_str(&format!(
            ": no agency accepts it (agencies: {}) and no agent outside them takes it; give the \
             task a label an agency accepts, or add the capability to an agency",
            offers.join("; ")
        ));
    }
    Err(why)
}

/// Everything an agency covers: its own capabilities and those of its members.
fn agency_capabilities<'a>(agency: &'a AgencyPolicy, config: &'a Config) -> Vec<&'a str> {
    let mut caps: Vec<&str> = agency.capabilities.iter().map(String::as_str).collect();
    for s in &agency.specialists {
        caps.extend(s.capabilities.iter().map(String::as_str));
    }
    let members = std::iter::once(agency.coordinator.as_str())
        .chain(agency.specialists.iter().map(|s| s.agent.as_str()));
    for member in members {
        if let Some(agent) = config.agent(member) {
            caps.extend(agent.capabilities.iter().map(String::as_str));
        }
    }
    caps.sort_unstable();
    caps.dedup();
    caps
}

/// The agency that accepts the task: one whose labels the task carries, or whose capabilities
/// cover every `needs:`; the one with the most labels matched wins, ties go to the first
/// declared. An agency that lacks a capability the task needs never takes it.
fn accepting_agency<'a>(
    task: &Task,
    needs: &[&str],
    config: &'a Config,
) -> Option<&'a AgencyPolicy> {
    let mut best: Option<(&AgencyPolicy, usize)> = None;
    for agency in &config.agencies {
        let caps = agency_capabilities(agency, config);
        if !needs.iter().all(|n| caps.contains(n)) {
            continue;
        }
        let matched = agency
            .labels
            .iter()
            .filter(|l| task.labels.contains(l))
            .count();
        if matched == 0 && needs.is_empty() {
            continue;
        }
        if best.is_none_or(|(_, s)| matched > s) {
            best = Some((agency, matched));
        }
    }
    best.map(|(a, _)| a)
}

/// Routes a task a handoff sent to `target`: inside the receiving agency, to the role the
/// handoff named, else to the role the task's labels ask for when the agency has it, else to
/// any specialist fit for the task, else to its coordinator. The agency's labels need not
/// match the task's: the handoff is what brought the task there.
fn handed_to<'a>(
    task: &Task,
    kind: ExecutionKind,
    config: &'a Config,
    target: &domain::HandoffTarget,
    needs: &[&str],
    load: &dyn Fn(&str) -> u32,
    now: Timestamp,
) -> Result<Routed<'a>, String> {
    let Some(agency) = config.agencies.iter().find(|a| a.name == target.agency) else {
        return Err(format!(
            "handed off to agency `{}`, which is not defined: add it under \
             .agentgrid/agencies/, or assign the task to an agent (task edit --agent)",
            target.agency
        ));
    };
    let role = target.role.as_deref().or_else(|| {
        task.labels
            .iter()
            .find_map(|l| l.strip_prefix(ROLE_PREFIX))
            .filter(|r| agency.specialists.iter().any(|s| s.role == *r))
    });
    let mut routed = within_agency(task, kind, config, agency, role, needs, load, now)?;
    routed.reason = Some(format!(
        "handed off to {target}: {}",
        routed.reason.as_deref().unwrap_or("its part opens")
    ));
    Ok(routed)
}

#[allow(clippy::too_many_arguments)]
fn within_agency<'a>(
    task: &Task,
    kind: ExecutionKind,
    config: &'a Config,
    agency: &'a AgencyPolicy,
    role: Option<&str>,
    needs: &[&str],
    load: &dyn Fn(&str) -> u32,
    now: Timestamp,
) -> Result<Routed<'a>, String> {
    let wanted: Vec<&str> = task
        .labels
        .iter()
        .map(String::as_str)
        .filter(|l| !l.starts_with(NEEDS_PREFIX) && !l.starts_with(ROLE_PREFIX))
        // The labels that brought the task to the agency say nothing about who in it fits.
        .filter(|l| !agency.labels.iter().any(|a| a == l))
        .collect();
    // The specialists that could take the task at all: the role asked for, an agent that runs
    // the kind. Capabilities and room decide among them.
    let invited: Vec<(&crate::SpecialistPolicy, &AgentPolicy, Vec<&str>)> = agency
        .specialists
        .iter()
        .filter(|s| role.is_none_or(|r| r == s.role))
        .filter_map(|s| {
            let agent = config.agent(&s.agent)?;
            if !agent.kinds.contains(&kind) {
                return None;
            }
            let mut caps: Vec<&str> = s.capabilities.iter().map(String::as_str).collect();
            caps.extend(agent.capabilities.iter().map(String::as_str));
            caps.extend(agent.labels.iter().map(String::as_str));
            Some((s, agent, caps))
        })
        .collect();
    let coordinator = config
        .agent(&agency.coordinator)
        .filter(|a| a.kinds.contains(&kind));
    let to_coordinator = |why: String| match coordinator {
        Some(agent) => Ok(Routed {
            agent,
            agency: Some(agency),
            reason: Some(why),
        }),
        None => Err(format!(
            "agency `{}` accepts it, but {why} and its coordinator `{}` does not run {kind} \
             executions",
            agency.name, agency.coordinator
        )),
    };
    match agency.mode {
        RoutingMode::Rule => {
            let best = invited
                .iter()
                .filter(|(_, agent, caps)| {
                    needs.iter().all(|n| caps.contains(n))
                        && agent.concurrency.is_none_or(|cap| load(&agent.name) < cap)
                })
                // The least loaded; on a tie the one declared first.
                .min_by_key(|(_, agent, _)| load(&agent.name));
            match best {
                Some((s, agent, _)) => Ok(Routed {
                    agent,
                    agency: Some(agency),
                    reason: Some(format!(
                        "routed to agency `{}`: its {} `{}` (load {})",
                        agency.name,
                        s.role,
                        agent.name,
                        load(&agent.name)
                    )),
                }),
                None => to_coordinator(format!(
                    "routed to agency `{}`: no specialist{} with room has the capabilities \
                     [{}]; its coordinator `{}` takes it",
                    agency.name,
                    role.map(|r| format!(" of role `{r}`")).unwrap_or_default(),
                    needs.join(", "),
                    agency.coordinator
                )),
            }
        }
        RoutingMode::ContractNet { deadline } => {
            let mut call = Call::open(
                agency.name.clone(),
                invited.iter().map(|(s, ..)| s.agent.clone()).collect(),
                now,
                deadline,
            );
            for (s, agent, caps) in &invited {
                let bid = rule_bid(
                    s,
                    caps,
                    needs,
                    &wanted,
                    load(&agent.name),
                    agent.concurrency,
                );
                // Each invited agent answers once, before the deadline, and the call is open.
                let _ = call.answer(&s.agent, bid, now);
            }
            // Every invited agent has answered, so the call is awarded now.
            let award = call
                .close(now, &agency.coordinator)
                .cloned()
                .expect("a call every invited agent answered is awarded");
            if award.fallback {
                return to_coordinator(award.reason);
            }
            let agent = config
                .agent(&award.agent)
                .expect("only agents of the config are invited");
            Ok(Routed {
                agent,
                agency: Some(agency),
                reason: Some(award.reason),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use domain::{NewTask, TaskId, Timestamp};

    use super::*;

    fn task(labels: &[&str]) -> Task {
        let mut new = NewTask::titled("t");
        new.labels = labels.iter().map(|s| s.to_string()).collect();
        Task::new(TaskId(1), new, TaskId(1), 0, Timestamp(0))
    }

    fn agent(name: &str, labels: &[&str], caps: &[&str], default: bool) -> AgentPolicy {
        let mut a = AgentPolicy::new(name);
        a.labels = labels.iter().map(|s| s.to_string()).collect();
        a.capabilities = caps.iter().map(|s| s.to_string()).collect();
        a.default = default;
        a
    }

    fn check(
        task: &Task,
        kind: ExecutionKind,
        agents: Vec<AgentPolicy>,
        expect: Result<&str, &str>,
    ) {
        let config = Config {
            agents,
            ..Config::default()
        };
        let got = route(task, kind, &config).map(|a| a.name.as_str());
        match (got, expect) {
            (Ok(name), Ok(want)) => assert_eq!(name, want),
            (Err(err), Err(want)) => assert!(err.contains(want), "{err}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn a_handed_off_task_goes_to_the_receiving_part_whatever_its_labels() {
        use crate::{AgencyPolicy, SpecialistPolicy};
        let mut code = AgencyPolicy::new("code", "code-lead");
        code.labels = vec!["code".into()];
        code.specialists = vec![SpecialistPolicy::new("coder", "developer")];
        let mut qa = AgencyPolicy::new("qa", "qa-lead");
        qa.labels = vec!["qa".into()];
        qa.specialists = vec![
            SpecialistPolicy::new("tester", "tester"),
            SpecialistPolicy::new("auditor", "auditor"),
        ];
        let config = Config {
            agents: ["code-lead", "coder", "qa-lead", "tester", "auditor"]
                .iter()
                .map(|n| agent(n, &[], &[], false))
                .collect(),
            agencies: vec![code, qa],
            ..Config::default()
        };
        let to = |agency: &str, role: Option<&str>, labels: &[&str]| {
            let mut t = task(labels);
            t.handoff = Some(domain::HandoffTarget {
                agency: agency.into(),
                role: role.map(str::to_string),
            });
            assign(&t, ExecutionKind::Work, &config, &|_| 0, Timestamp(0))
                .map(|r| (r.agent.name.clone(), r.reason.unwrap_or_default()))
        };
        // The task's labels bring it to Code; the handoff sends it to QA's auditor.
        let (agent, reason) = to("qa", Some("auditor"), &["code"]).unwrap();
        assert_eq!(agent, "auditor");
        assert!(
            reason.starts_with("handed off to qa/auditor: routed to agency `qa`"),
            "{reason}"
        );
        // Without a role: the task's role label when the agency has it, else any specialist.
        assert_eq!(
            to("qa", None, &["code", "role:auditor"]).unwrap().0,
            "auditor"
        );
        assert_eq!(
            to("qa", None, &["code", "role:developer"]).unwrap().0,
            "tester"
        );
        // The coordinator's role goes to the coordinator.
        assert_eq!(
            to("code", Some("coordinator"), &["qa"]).unwrap().0,
            "code-lead"
        );
        // An agency the configuration no longer has is named as such.
        let err = to("ops", None, &["code"]).unwrap_err();
        assert!(
            err.contains("handed off to agency `ops`, which is not defined"),
            "{err}"
        );
    }

    #[test]
    fn most_matching_labels_wins_and_ties_go_to_the_first_declared() {
        let agents = || {
            vec![
                agent("any", &[], &[], false),
                agent("backend", &["backend"], &[], false),
                agent("backend-db", &["backend", "db"], &[], false),
                agent("backend-too", &["backend"], &[], false),
            ]
        };
        check(
            &task(&["backend", "db"]),
            ExecutionKind::Work,
            agents(),
            Ok("backend-db"),
        );
        check(
            &task(&["backend"]),
            ExecutionKind::Work,
            agents(),
            Ok("backend"),
        );
        check(&task(&["docs"]), ExecutionKind::Work, agents(), Ok("any"));
    }

    #[test]
    fn capabilities_filter_and_default_is_the_fallback() {
        let agents = || {
            vec![
                agent("py", &["backend"], &["python"], false),
                agent("fallback", &[], &["python", "go"], true),
            ]
        };
        check(
            &task(&["backend", "needs:python"]),
            ExecutionKind::Work,
            agents(),
            Ok("py"),
        );
        check(
            &task(&["backend", "needs:go"]),
            ExecutionKind::Work,
            agents(),
            Ok("fallback"),
        );
        check(
            &task(&["frontend"]),
            ExecutionKind::Work,
            agents(),
            Ok("fallback"),
        );
        check(
            &task(&["needs:rust"]),
            ExecutionKind::Work,
            agents(),
            Err("needing capabilities [rust]"),
        );
    }

    #[test]
    fn explicit_assignment_wins_but_must_exist_and_run_the_kind() {
        let mut t = task(&["backend"]);
        t.agent = Some("writer".into());
        let mut writer = agent("writer", &["docs"], &[], false);
        writer.kinds = vec![ExecutionKind::Work];
        check(
            &t,
            ExecutionKind::Work,
            vec![agent("b", &["backend"], &[], false), writer.clone()],
            Ok("writer"),
        );
        check(
            &t,
            ExecutionKind::Resume,
            vec![writer],
            Err("does not run resume"),
        );
        check(&t, ExecutionKind::Work, vec![], Err("not defined"));
    }

    #[test]
    fn kinds_restrict_routing() {
        let mut planner = agent("planner", &["epic"], &[], false);
        planner.kinds = vec![ExecutionKind::Resume];
        check(
            &task(&["epic"]),
            ExecutionKind::Work,
            vec![planner.clone()],
            Err("no agent runs work"),
        );
        check(
            &task(&["epic"]),
            ExecutionKind::Resume,
            vec![planner],
            Ok("planner"),
        );
    }
}
