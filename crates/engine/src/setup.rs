//! From the project's manifests to what the engine runs with: the scheduler's policy, each
//! agent's runtime and validators, and the workspace settings.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use executor::{AgentRun, Runner, Runtime, ScoreRule, Validator};
use manifest::{Project, ScoreMethod};
use scheduler::{AgentPolicy, Config};
use workspace::{Hooks, WorkspaceConfig};

use crate::Error;

/// Everything the engine needs from configuration, already checked and converted.
#[derive(Clone)]
pub struct Setup {
    pub config: Config,
    pub agents: HashMap<String, Arc<AgentRun>>,
    /// `None` when workspaces are disabled: agents run in the project directory.
    pub workspace: Option<WorkspaceConfig>,
    pub grace: StdDuration,
    /// How long an execution's claim holds without a renewal (`spec.lease`).
    pub lease: domain::Duration,
    /// The model gateway's settings, when the node configures any model alias.
    pub gateway: Option<gateway::Options>,
    /// Model budgets, applied to every execution.
    pub budgets: gateway::Budgets,
    /// Which done tasks wait for a person's approval.
    pub approvals: manifest::Approvals,
    /// Each agency member's agency, role and context files, for its prompts.
    pub agencies: crate::Agencies,
    /// Who is in which agency with which role and follows which topics, for delivery.
    pub directory: Arc<app::Directory>,
    /// Each agency's per-tree budget (`spec.budgets.per_tree`), for its agents' gateway
    /// identities.
    pub agency_tree_budgets: HashMap<String, gateway::Limit>,
    /// The project's workflows by name, for the sub-workflows a run starts.
    pub workflows: HashMap<String, workflow::Definition>,
    /// How a workflow's `land` state lands (`land.strategy`).
    pub land_strategy: domain::LandStrategy,
    /// The most handoffs one task may have (`handoffs_per_task`).
    pub handoffs_per_task: u32,
}

/// Converts a loaded project. `repo_root` is the git repository the worktrees come from.
pub fn setup_from_project(project: &Project, repo_root: &Path) -> Result<Setup, Error> {
    let spec = &project.config;
    let mut agents = HashMap::new();
    let mut policies = Vec::new();
    for agent in &project.agents {
        let m = &agent.manifest;
        let s = &m.spec;
        policies.push(AgentPolicy {
            name: m.metadata.name.clone(),
            labels: s.routing.labels.clone(),
            capabilities: s.routing.capabilities.clone(),
            default: s.routing.default,
            kinds: s.routing.kinds.clone(),
            concurrency: s.limits.concurrency,
            max_attempts: s.limits.max_attempts,
            timeout: s.limits.timeout,
            stall_timeout: s.limits.stall_timeout,
            completion: s.completion,
            validators: !s.validation.validators.is_empty(),
            // An agent may ask for any alias, so it is held back only while every provider
            // serving one is paused.
            providers: model_providers(&spec.models),
        });
        let mut validators = Vec::new();
        for v in &s.validation.validators {
            let rule = match &v.score {
                ScoreMethod::Exit => ScoreRule::Exit,
                ScoreMethod::PassedFailed => ScoreRule::PassedFailed,
                ScoreMethod::Pytest => ScoreRule::Runner(Runner::Pytest),
                ScoreMethod::Unittest => ScoreRule::Runner(Runner::Unittest),
                ScoreMethod::CargoTest => ScoreRule::Runner(Runner::CargoTest),
                ScoreMethod::Nextest => ScoreRule::Runner(Runner::Nextest),
                ScoreMethod::GoTest => ScoreRule::Runner(Runner::GoTest),
                ScoreMethod::Jest => ScoreRule::Runner(Runner::Jest),
                ScoreMethod::Vitest => ScoreRule::Runner(Runner::Vitest),
                ScoreMethod::Mocha => ScoreRule::Runner(Runner::Mocha),
                ScoreMethod::Junit => ScoreRule::Junit(
                    v.report
                        .as_deref()
                        .map(std::path::PathBuf::from)
                        .ok_or_else(|| {
                            Error::Setup(format!(
                                "agent `{}`, validator `{}`: `score: junit` needs a `report` path",
                                m.metadata.name, v.name
                            ))
                        })?,
                ),
                ScoreMethod::Regex(pattern) => {
                    ScoreRule::Regex(regex::Regex::new(pattern).map_err(|e| {
                        Error::Setup(format!(
                            "agent `{}`, validator `{}`: bad regex: {e}",
                            m.metadata.name, v.name
                        ))
                    })?)
                }
            };
            validators.push(Validator {
                name: v.name.clone(),
                argv: v.argv(),
                timeout: v.timeout.as_std(),
                weight: v.weight,
                rule,
                score_only: v.score_only,
            });
        }
        let run = AgentRun {
            name: m.metadata.name.clone(),
            runtime: Runtime {
                kind: s.runtime.kind,
                model: crate::runtimes::model_alias(&m.metadata.name, &s.runtime, &spec.models)?,
                argv: match s.runtime.kind {
                    manifest::RuntimeKind::Builtin => builtin_argv(s.runtime.model.as_deref()),
                    // A CLI's type with no command runs the adapter's program.
                    _ => s.runtime.command.clone(),
                },
                env: s
                    .runtime
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                stdin: s.runtime.stdin,
            },
            prompt: s.prompt.clone(),
            validators,
            threshold: s.validation.threshold,
            max_iterations: s.limits.max_iterations,
            timeout: s.limits.timeout,
            sandbox: s.sandbox.clone(),
            share: s.validation.share.clone(),
            protect: s.validation.protect.clone(),
        };
        agents.insert(run.name.clone(), Arc::new(run));
    }
    let config = Config {
        global_concurrency: spec.concurrency.global.max(1),
        per_label: spec.concurrency.per_label.clone(),
        retry: spec.retry,
        continuation_delay: spec.continuation.delay,
        max_continuations: spec.continuation.max,
        resume_interval: spec.resume.interval,
        guards: spec.guards,
        agents: policies,
        agencies: crate::agencies::policies(project),
    };
    let ws = &spec.workspace;
    let workspace = ws.enabled.then(|| {
        let root = if ws.root.is_absolute() {
            ws.root.clone()
        } else {
            repo_root.join(&ws.root)
        };
        WorkspaceConfig {
            repo_root: repo_root.to_path_buf(),
            root,
            base: ws.base.clone(),
            hooks: Hooks {
                after_create: ws.hooks.after_create.as_ref().map(hook),
                before_run: ws.hooks.before_run.as_ref().map(hook),
                after_run: ws.hooks.after_run.as_ref().map(hook),
                before_remove: ws.hooks.before_remove.as_ref().map(hook),
            },
            hook_timeout: ws.hooks.timeout.as_std(),
            quota: workspace::Quota {
                bytes: ws.quota.bytes.0,
                files: u64::from(ws.quota.files),
            },
            // Filled in by `resolve_git_drivers`, which has to ask git.
            drivers: workspace::TrustedDrivers::default(),
        }
    });
    let gateway = gateway_options(&spec.models)?;
    let limit = |b: &manifest::Budget| gateway::Limit {
        max_tokens: b.tokens,
        max_cost_micros: b.cost.map(dollars_to_micros),
    };
    let budgets = gateway::Budgets {
        execution: limit(&spec.budgets.per_execution),
        tree: limit(&spec.budgets.per_tree),
        agent_day: limit(&spec.budgets.per_agent_per_day),
    };
    // An agency with `policies.approval` sends its done top-level work to a person: the tasks
    // carrying its labels wait, as `approvals.require_labels` makes them.
    let mut approvals = spec.approvals.clone();
    for agency in project
        .agencies
        .iter()
        .filter(|a| a.spec().policies.approval)
    {
        for label in &agency.spec().labels {
            if !approvals.require_labels.contains(label) {
                approvals.require_labels.push(label.clone());
            }
        }
    }
    Ok(Setup {
        approvals,
        agencies: crate::Agencies::from_project(project, repo_root),
        directory: Arc::new(crate::agencies::directory(project)),
        agency_tree_budgets: project
            .agencies
            .iter()
            .map(|a| (a.name.clone(), limit(&a.spec().budgets.per_tree)))
            .collect(),
        workflows: project
            .workflows
            .iter()
            .map(|w| (w.name.clone(), w.definition.clone()))
            .collect(),
        land_strategy: spec.land.strategy,
        handoffs_per_task: spec.handoffs_per_task,
        config,
        agents,
        workspace,
        grace: spec.shutdown_grace.as_std(),
        lease: spec.lease,
        gateway,
        budgets,
    })
}

/// The built-in agent is the agentgrid binary itself, found first on the agent's `PATH` (the
/// executor puts the binary's directory there and shows the binary inside the sandbox). The
/// alias is passed as an argument, and arguments are templates, so it is quoted as a literal.
fn builtin_argv(model: Option<&str>) -> Vec<String> {
    let mut argv = vec!["agentgrid".to_string(), "__agent-builtin".to_string()];
    if let Some(model) = model {
        argv.push("--model".into());
        argv.push(format!(
            "{{{{ {} }}}}",
            serde_json::to_string(model).unwrap_or_default()
        ));
    }
    argv
}

fn hook(h: &manifest::Hook) -> workspace::Hook {
    workspace::Hook {
        command: h.command().to_string(),
        host: h.host(),
    }
}

/// The providers that serve at least one model alias, by name.
fn model_providers(models: &manifest::Models) -> Vec<String> {
    let mut providers: Vec<String> = models
        .aliases
        .values()
        .map(|a| a.provider.clone())
        .collect();
    providers.sort();
    providers.dedup();
    providers
}

/// Dollars as millionths of a dollar, the unit budgets and usage are counted in.
pub fn dollars_to_micros(dollars: f64) -> u64 {
    (dollars * 1_000_000.0).round().max(0.0) as u64
}

/// The gateway's options from the node's `models` section. Keys are read from the engine's
/// environment here, once, so a missing key stops `run` before any agent starts.
fn gateway_options(models: &manifest::Models) -> Result<Option<gateway::Options>, Error> {
    if models.aliases.is_empty() {
        return Ok(None);
    }
    let mut providers = Vec::new();
    for (name, p) in &models.providers {
        let api_key = match &p.api_key_env {
            Some(var) => Some(gateway::ApiKey::from_env(var).map_err(|_| {
                Error::Setup(format!(
                    "model provider `{name}` takes its key from the environment variable {var}, \
                     which is not set: export it before `agentgrid run`"
                ))
            })?),
            None => None,
        };
        let base = p.base_url.trim_end_matches('/');
        // Gemini's paths hang off `/v1beta`; the others' off `/v1`.
        let version = match p.kind {
            manifest::ProviderKind::Gemini => "/v1beta",
            _ => "/v1",
        };
        let base_url = if base.ends_with(version) || base.ends_with("/v1") {
            base.to_string()
        } else {
            format!("{base}{version}")
        };
        providers.push(gateway::Provider {
            name: name.clone(),
            kind: p.kind,
            base_url,
            api_key,
            quota_pause: p.quota_pause,
            responses: p.responses,
        });
    }
    let routes = models
        .aliases
        .iter()
        .map(|(alias, a)| gateway::ModelRoute {
            alias: alias.clone(),
            provider: a.provider.clone(),
            upstream_model: a.model.clone(),
            prices: gateway::Prices {
                input: dollars_to_micros(a.prices.input),
                output: dollars_to_micros(a.prices.output),
                cached: dollars_to_micros(a.prices.cached_input),
            },
            fallback: a.fallback.clone(),
        })
        .collect();
    let mut options = gateway::Options::new(providers, routes);
    options.retry = gateway::RetryPolicy {
        max_attempts: models.retry.max_attempts,
        initial_delay: models.retry.base_delay,
        max_delay: models.retry.max_delay,
    };
    let limits = &models.limits;
    options.limits = gateway::Limits {
        concurrent_requests: limits.concurrent_requests as usize,
        idle_timeout: limits.idle_timeout,
        total_timeout: limits.total_timeout,
        drain_timeout: limits.drain_timeout,
        max_output_tokens: limits.max_output_tokens,
    };
    Ok(Some(options))
}

/// Reads the definitions of the git drivers the project trusts (`workspace.git.drivers`) from
/// the user's global and system git configuration, once, and gives them to the workspace
/// settings. A name defined nowhere is an error at the place the manifest names it.
pub async fn resolve_git_drivers(
    project: &Project,
    repo_root: &Path,
    setup: &mut Setup,
) -> Result<(), Error> {
    let Some(ws) = setup.workspace.as_mut() else {
        return Ok(());
    };
    let named = &project.config.workspace.git.drivers;
    let names: Vec<String> = named.iter().map(|d| d.name.clone()).collect();
    match workspace::trusted_drivers(&names, repo_root).await {
        Ok(drivers) => {
            ws.drivers = drivers;
            Ok(())
        }
        Err(workspace::Error::UndefinedDriver { name, reason }) => {
            let message = format!("spec.workspace.git.drivers: `{name}`: {reason}");
            let place = named
                .iter()
                .find(|d| d.name == name)
                .and_then(|d| d.place.as_ref());
            Err(Error::Setup(match place {
                Some(place) => place.diagnostic(message).to_string(),
                None => message,
            }))
        }
        Err(e) => Err(Error::Setup(format!(
            "cannot read the trusted git drivers' definitions: {e}"
        ))),
    }
}
