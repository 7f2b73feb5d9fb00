//! `kind: Agency` manifests: the documented example, and every broken reference between
//! agencies and agents reported at its place with what to do.

use std::fs;
use std::path::PathBuf;

use manifest::{AgencyRouting, load_project};

use crate::MINIMAL_AGENT;

fn agent(name: &str, extra: &str) -> String {
    format!(
        "{}{extra}",
        MINIMAL_AGENT.replace("name: minimal", &format!("name: {name}"))
    )
}

/// The agency example from the module documentation.
pub const CODE_AGENCY: &str = r#"apiVersion: agentgrid.dev/v1
kind: Agency
metadata: {name: code}
spec:
  description: Writes and fixes code.
  coordinator: code-lead
  specialists:
    - {agent: coder, role: developer, capabilities: [rust, python]}
    - {agent: fixer, role: bugfixer, cost: 2}
  labels: [code, bug]
  capabilities: [rust, python]
  context: [docs/standards.md]
  limits: {concurrency: 2}
  routing: contract-net
  bid_deadline: 45s
  policies:
    handoffs: [{from: developer, to: [qa]}]
    approval: true
"#;

const QA_AGENCY: &str = r#"apiVersion: agentgrid.dev/v1
kind: Agency
metadata: {name: qa}
spec:
  coordinator: qa-lead
  labels: [qa]
"#;

fn project(files: &[(&str, String)]) -> (tempfile::TempDir, PathBuf) {
    let repo = tempfile::tempdir().unwrap();
    let root = repo.path().join(".agentgrid");
    for (path, text) in files {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    (repo, root)
}

fn agents() -> Vec<(&'static str, String)> {
    vec![
        ("agents/code-lead.yaml", agent("code-lead", "")),
        (
            "agents/coder.yaml",
            agent("coder", "  agency: code\n  role: developer\n"),
        ),
        ("agents/fixer.yaml", agent("fixer", "")),
        (
            "agents/qa-lead.yaml",
            agent("qa-lead", "  agency: qa\n  role: coordinator\n"),
        ),
    ]
}

/// The problems of a project made of the good one with `changes` applied, as strings with
/// their file name (not the whole path).
fn problems(changes: &[(&str, String)]) -> Vec<String> {
    let mut files = agents();
    files.push(("agencies/code.yaml", CODE_AGENCY.to_string()));
    files.push(("agencies/qa.yaml", QA_AGENCY.to_string()));
    for (path, text) in changes {
        files.retain(|(p, _)| p != path);
        files.push((path, text.clone()));
    }
    let (_repo, root) = project(&files);
    match load_project(&root) {
        Ok(_) => Vec::new(),
        Err(d) => d
            .iter()
            .map(|d| {
                let text = d.to_string();
                text.replace(&format!("{}/", root.display()), "")
            })
            .collect(),
    }
}

#[test]
fn the_example_agency_loads_with_its_members() {
    let mut files = agents();
    files.push(("agencies/code.yaml", CODE_AGENCY.to_string()));
    files.push(("agencies/qa.yaml", QA_AGENCY.to_string()));
    let (_repo, root) = project(&files);
    let p = load_project(&root).unwrap();
    let code = p.agency("code").unwrap();
    let spec = code.spec();
    assert_eq!(spec.coordinator, "code-lead");
    assert_eq!(spec.specialists[1].cost, 2.0);
    assert_eq!(spec.specialists[0].cost, 1.0, "the default cost");
    assert_eq!(spec.routing, AgencyRouting::ContractNet);
    assert_eq!(spec.bid_deadline, domain::Duration::from_secs(45));
    assert_eq!(spec.limits.concurrency, Some(2));
    assert!(spec.policies.approval);
    assert_eq!(
        p.agency_of("fixer").map(|(a, r)| (a.name.as_str(), r)),
        Some(("code", "bugfixer"))
    );
    assert_eq!(p.agency_of("qa-lead").map(|(_, r)| r), Some("coordinator"));
    assert!(p.agency_of("nobody").is_none());
}

#[test]
fn a_member_that_is_not_an_agent_is_named_with_the_agents_there_are() {
    let broken = CODE_AGENCY.replace("agent: fixer", "agent: fixr");
    assert_eq!(
        problems(&[("agencies/code.yaml", broken)]),
        [
            "agencies/code.yaml:9:15: spec.specialists: `fixr` is not an agent of the project (agents: code-lead, coder, fixer, qa-lead); add .agentgrid/agents/fixr.yaml or name an existing agent"
        ]
    );
    let broken = CODE_AGENCY.replace("coordinator: code-lead", "coordinator: boss");
    let got = problems(&[("agencies/code.yaml", broken)]);
    assert!(
        got[0].starts_with("agencies/code.yaml:6:16: spec.coordinator: `boss` is not an agent"),
        "{got:?}"
    );
}

#[test]
fn an_agent_in_two_agencies_is_refused_where_it_is_listed_again() {
    let qa = QA_AGENCY.replace(
        "labels: [qa]",
        "labels: [qa]\n  specialists: [{agent: fixer, role: tester}]",
    );
    assert_eq!(
        problems(&[("agencies/qa.yaml", qa)]),
        [
            "agencies/qa.yaml:7:25: spec.specialists: `fixer` is already in the agency `code` at agencies/code.yaml:9:15; an agent belongs to one agency at most: remove it from one of them or copy it under another name"
        ]
    );
}

#[test]
fn an_agents_agency_and_role_must_match_the_agency() {
    let got = problems(&[(
        "agents/coder.yaml",
        agent("coder", "  agency: qa\n  role: developer\n"),
    )]);
    assert_eq!(
        got,
        [
            "agents/coder.yaml:8:11: spec.agency: the agent says it belongs to `qa`, but the agency `code` lists it; make the two agree"
        ]
    );
    let got = problems(&[(
        "agents/coder.yaml",
        agent("coder", "  agency: code\n  role: tester\n"),
    )]);
    assert_eq!(
        got,
        [
            "agents/coder.yaml:9:9: spec.role: `tester` is not a role of the agency `code` (roles: coordinator, developer, bugfixer); the agency gives `coder` the role `developer`"
        ]
    );
    let got = problems(&[("agents/coder.yaml", agent("coder", "  agency: ops\n"))]);
    assert_eq!(
        got,
        [
            "agents/coder.yaml:8:11: spec.agency: `ops` is not an agency of the project (agencies: code, qa); add .agentgrid/agencies/ops.yaml or name an existing one"
        ]
    );
    let got = problems(&[("agents/fixer.yaml", agent("fixer", "  agency: qa\n"))]);
    assert!(got[0].contains("but the agency `code` lists it"), "{got:?}");
    let got = problems(&[("agents/solo.yaml", agent("solo", "  agency: qa\n"))]);
    assert_eq!(
        got,
        [
            "agents/solo.yaml:8:11: spec.agency: the agency `qa` does not list `solo`; add it to the agency's `specialists` (with its role) or as its `coordinator`"
        ]
    );
    let got = problems(&[("agents/solo.yaml", agent("solo", "  role: tester\n"))]);
    assert!(
        got[0].starts_with("agents/solo.yaml:8:9: spec.role: `solo` is in no agency"),
        "{got:?}"
    );
}

#[test]
fn handoffs_name_roles_of_the_agency_and_agencies_that_exist() {
    let broken = CODE_AGENCY.replace("{from: developer, to: [qa]}", "{from: dev, to: [qa, ops]}");
    assert_eq!(
        problems(&[("agencies/code.yaml", broken)]),
        [
            "agencies/code.yaml:17:23: spec.policies.handoffs[0].from: `dev` is not a role of this agency (roles: coordinator, developer, bugfixer); name one of them",
            "agencies/code.yaml:17:37: spec.policies.handoffs[0].to[1]: `ops` is not an agency of the project (agencies: code, qa); add .agentgrid/agencies/ops.yaml or name an existing one",
        ]
    );
}

#[test]
fn the_fields_of_an_agency_are_checked_in_one_pass() {
    let broken = CODE_AGENCY
        .replace("routing: contract-net", "routing: auction")
        .replace("concurrency: 2", "concurrency: 0")
        .replace("context: [docs/standards.md]", "context: [../secrets]")
        .replace("role: bugfixer", "role: coordinator")
        .replace("bid_deadline: 45s", "bid_deadlin: 45s");
    let got = problems(&[("agencies/code.yaml", broken)]);
    let want = [
        "spec.specialists[1].role: `coordinator` is the coordinator's role",
        "spec.context[0]: `../secrets` leaves the repository",
        "spec.limits.concurrency: must be 1 or more",
        "spec.routing: expected `rule` or `contract-net`, found `auction`",
        "spec: unknown field `bid_deadlin` (did you mean `bid_deadline`?)",
    ];
    for w in want {
        assert!(got.iter().any(|g| g.contains(w)), "no {w:?} in {got:?}");
    }
    let idle = QA_AGENCY.replace("  labels: [qa]\n", "");
    let got = problems(&[("agencies/qa.yaml", idle)]);
    assert!(got[0].contains("the agency accepts no work"), "{got:?}");
    let twice = QA_AGENCY.to_string();
    let got = problems(&[("agencies/qa2.yaml", twice)]);
    assert!(
        got[0].starts_with(
            "agencies/qa2.yaml:3:18: metadata.name: the agency name `qa` is already used at"
        ),
        "{got:?}"
    );
}

const CONFIG_WITH_MODELS: &str = "apiVersion: agentgrid.dev/v1
kind: Config
spec:
  models:
    providers:
      anthropic: {kind: anthropic, base_url: https://api.anthropic.com, api_key_env: ANTHROPIC_API_KEY}
      openai: {kind: openai, base_url: https://api.openai.com/v1, api_key_env: OPENAI_API_KEY}
    aliases:
      default: {provider: anthropic, model: claude-sonnet-4-5}
";

/// Every seed agency, written for every runtime, alone and all five together, loads without a
/// problem, with the members, roles and prompts it promises.
#[test]
fn every_template_validates_for_every_runtime() {
    let all = manifest::agency_template_names();
    assert_eq!(all, ["code", "qa", "devops", "security", "docs"]);
    for (runtime_name, runtime) in manifest::TemplateRuntime::NAMES {
        for present in [vec![], all.clone()] {
            let names: Vec<&str> = if present.is_empty() {
                all.clone()
            } else {
                vec!["all"]
            };
            for only in names {
                let chosen: Vec<&str> = if only == "all" {
                    all.clone()
                } else {
                    vec![only]
                };
                let mut files = vec![("config.yaml".to_string(), CONFIG_WITH_MODELS.to_string())];
                for t in &chosen {
                    let template = manifest::agency_template(t).unwrap();
                    for f in template.files(t, *runtime, &chosen) {
                        files.push((f.path, f.text));
                    }
                }
                let refs: Vec<(&str, String)> =
                    files.iter().map(|(p, t)| (p.as_str(), t.clone())).collect();
                let (_repo, root) = project(&refs);
                let p = load_project(&root)
                    .unwrap_or_else(|d| panic!("{runtime_name} {chosen:?}:\n{d}"));
                assert_eq!(p.agencies.len(), chosen.len());
                for agency in &p.agencies {
                    let lead = format!("{}-lead", agency.name);
                    assert_eq!(agency.spec().coordinator, lead);
                    assert!(!agency.spec().specialists.is_empty());
                    for (member, role) in agency.members() {
                        let a = p.agent(member).unwrap();
                        assert_eq!(a.spec().role.as_deref(), Some(role));
                        assert!(
                            !a.spec().validation.validators.is_empty(),
                            "{member} has validators"
                        );
                        assert!(a.spec().prompt.contains("agency.context"));
                    }
                    if chosen.len() > 1 {
                        assert!(
                            !agency.spec().policies.handoffs.is_empty(),
                            "{} hands off",
                            agency.name
                        );
                    }
                }
            }
        }
    }
    // A template under another name: its agents and label follow the name.
    let files: Vec<(&str, String)> = manifest::agency_template("code")
        .unwrap()
        .files("backend", manifest::TemplateRuntime::Claude, &[])
        .into_iter()
        .map(|f| (Box::leak(f.path.into_boxed_str()) as &str, f.text))
        .collect();
    let (_repo, root) = project(&files);
    let p = load_project(&root).unwrap();
    assert_eq!(p.agencies[0].spec().labels, ["backend"]);
    assert!(p.agent("backend-developer").is_some());
}

#[test]
fn the_agency_context_reaches_the_prompt() {
    let mut ctx = manifest::PromptContext::sample();
    let prompt =
        "{% if agency %}{{ agency.role }} of {{ agency.name }}:\n{{ agency.context }}{% endif %}";
    let out = manifest::render_prompt(prompt, &ctx).unwrap();
    assert_eq!(
        out,
        "developer of code:\n## docs/standards.md\nEvery change comes with a test.\n"
    );
    ctx.agency = None;
    assert_eq!(manifest::render_prompt(prompt, &ctx).unwrap(), "");
}

#[test]
fn a_bad_or_missing_agency_name_is_reported_at_its_place_with_an_example() {
    let bad = QA_AGENCY.replace("name: qa", "name: Q_A");
    let found = problems(&[("agencies/qa.yaml", bad)]);
    assert!(
        found.contains(
            &"agencies/qa.yaml:3:18: metadata.name: `Q_A` is not a valid agency name: use \
              lowercase letters, digits and dashes, such as `code`"
                .to_string()
        ),
        "{found:?}"
    );
    let nameless = QA_AGENCY.replace("metadata: {name: qa}\n", "");
    let found = problems(&[("agencies/qa.yaml", nameless)]);
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("agencies/qa.yaml:") && p.contains("metadata: {name: code}")),
        "{found:?}"
    );
}

#[test]
fn an_agencys_deadline_and_budget_and_an_agents_topics_load_and_bad_ones_are_placed() {
    let code = CODE_AGENCY.replace(
        "  bid_deadline: 45s\n",
        "  bid_deadline: 45s\n  escalation_deadline: 2m\n  budgets: {per_day: {cost: 5.5, tokens: 1000}, per_tree: {tokens: 500}}\n",
    );
    let mut files = agents();
    files.retain(|(p, _)| *p != "agents/coder.yaml");
    files.push((
        "agents/coder.yaml",
        agent(
            "coder",
            "  agency: code\n  role: developer\n  topics: [builds, releases/main]\n",
        ),
    ));
    files.push(("agencies/code.yaml", code.clone()));
    files.push(("agencies/qa.yaml", QA_AGENCY.to_string()));
    let (_repo, root) = project(&files);
    let p = load_project(&root).unwrap();
    let spec = p.agency("code").unwrap().spec();
    assert_eq!(spec.escalation_deadline, domain::Duration::from_secs(120));
    assert_eq!(spec.budgets.per_day.cost, Some(5.5));
    assert_eq!(spec.budgets.per_day.tokens, Some(1000));
    assert_eq!(spec.budgets.per_tree.tokens, Some(500));
    assert_eq!(
        p.agency("qa").unwrap().spec().escalation_deadline,
        domain::Duration::from_secs(600),
        "ten minutes unless set"
    );
    let coder = p.agents.iter().find(|a| a.name == "coder").unwrap();
    assert_eq!(coder.manifest.spec.topics, ["builds", "releases/main"]);

    let got = problems(&[
        (
            "agents/coder.yaml",
            agent(
                "coder",
                "  agency: code\n  role: developer\n  topics: [builds, \"no way\", builds]\n",
            ),
        ),
        (
            "agencies/code.yaml",
            code.replace("cost: 5.5", "cost: -1")
                .replace("escalation_deadline: 2m", "escalation_deadline: 0s"),
        ),
    ]);
    let text = got.join("\n");
    assert!(
        text.contains("spec.topics[1]: `no way` is not a topic name"),
        "{text}"
    );
    assert!(
        text.contains("spec.topics[2]: `builds` is listed twice; list each topic once"),
        "{text}"
    );
    assert!(text.contains("spec.escalation_deadline"), "{text}");
    assert!(text.contains("spec.budgets.per_day.cost"), "{text}");
}
