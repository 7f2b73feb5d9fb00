//! Which agent takes a task: an explicit assignment, else the best label match, else a default.

use domain::{ExecutionKind, Task};

use crate::{AgentPolicy, Config};

/// The prefix of a task label that asks for a capability: `needs:python`.
pub const NEEDS_PREFIX: &str = "needs:";

/// The agent that should run `kind` on `task`, or why there is none.
pub fn route<'a>(
    task: &Task,
    kind: ExecutionKind,
    config: &'a Config,
) -> Result<&'a AgentPolicy, String> {
    if let Some(name) = &task.agent {
        let agent = config
            .agent(name)
            .ok_or_else(|| format!("assigned to agent `{name}`, which is not defined"))?;
        if !agent.kinds.contains(&kind) {
            return Err(format!(
                "assigned agent `{name}` does not run {kind} executions"
            ));
        }
        return Ok(agent);
    }
    let needs: Vec<&str> = task
        .labels
        .iter()
        .filter_map(|l| l.strip_prefix(NEEDS_PREFIX))
        .collect();
    let capable = |a: &&AgentPolicy| {
        a.kinds.contains(&kind) && needs.iter().all(|n| a.capabilities.iter().any(|c| c == n))
    };
    let mut best: Option<(&AgentPolicy, usize)> = None;
    for agent in config.agents.iter().filter(|a| !a.default).filter(capable) {
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
    if let Some((agent, _)) = best {
        return Ok(agent);
    }
    if let Some(agent) = config.agents.iter().filter(|a| a.default).find(capable) {
        return Ok(agent);
    }
    let mut why = format!(
        "no agent runs {kind} executions for labels [{}]",
        task.labels.join(", ")
    );
    if !needs.is_empty() {
        why.push_str(&format!(" needing capabilities [{}]", needs.join(", ")));
    }
    Err(why)
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
