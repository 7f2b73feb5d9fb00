//! The configuration `agentgrid init` writes says "the values shown are the defaults": it must
//! mean exactly what an empty configuration means, field for field.

use crate::support::Repo;

#[test]
fn the_config_init_writes_equals_the_defaults() {
    let repo = Repo::new();
    repo.ok(&["init"]);
    let file = repo.path().join(".agentgrid/config.yaml");
    let written = std::fs::read_to_string(&file).unwrap();
    let parsed = manifest::parse_config(&written, &file)
        .unwrap_or_else(|e| panic!("init's config does not load: {e:?}"));
    assert_eq!(parsed, manifest::ConfigSpec::default());
    // And an empty spec decodes to the same defaults, so neither side hides a second one.
    let empty = "apiVersion: agentgrid.dev/v1\nkind: Config\nspec: {}\n";
    assert_eq!(
        manifest::parse_config(empty, &file).unwrap(),
        manifest::ConfigSpec::default()
    );
    // The scheduler's own defaults agree with the file's for the settings they share.
    let scheduler = scheduler::Config::default();
    assert_eq!(parsed.guards, scheduler.guards);
    assert_eq!(parsed.retry, scheduler.retry);
    assert_eq!(parsed.concurrency.global, scheduler.global_concurrency);
    assert_eq!(parsed.continuation.delay, scheduler.continuation_delay);
    assert_eq!(parsed.continuation.max, scheduler.max_continuations);
    assert_eq!(parsed.resume.interval, scheduler.resume_interval);
}

/// The agent file `init` writes sets its runtime, prompt, routing, network and attempts on
/// purpose; every other field it shows (`limits.timeout: 30m`, `stall_timeout: 5m`) or leaves
/// out must be what the manifest's defaults say, so the file does not teach a second default.
#[test]
fn the_agent_init_writes_sets_only_what_it_means_to() {
    let repo = Repo::new();
    // A PATH holding git alone: no agent CLI is found, so `init` writes its template agent.
    let bin = tempfile::tempdir().unwrap();
    let git = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|dir| dir.join("git"))
        .find(|path| path.is_file())
        .expect("git is on PATH");
    std::os::unix::fs::symlink(&git, bin.path().join("git")).unwrap();
    let out = repo
        .cmd(&["init"])
        .env("PATH", bin.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    let file = repo.path().join(".agentgrid/agents/worker.yaml");
    let written = std::fs::read_to_string(&file).unwrap();
    let agents = manifest::parse_agents(&written, &file)
        .unwrap_or_else(|e| panic!("init's agent does not load: {e:?}"));
    let [worker] = agents.as_slice() else {
        panic!("one agent in {}: {agents:?}", file.display());
    };
    let spec = worker.spec();
    // On purpose: the template cannot succeed, so one attempt shows its message at once, and it
    // takes every task.
    assert_eq!(
        spec.limits,
        manifest::Limits {
            max_attempts: 1,
            ..manifest::Limits::default()
        }
    );
    assert_eq!(
        spec.routing,
        manifest::Routing {
            default: true,
            ..manifest::Routing::default()
        }
    );
    // Everything else is the default.
    assert_eq!(spec.sandbox, manifest::SandboxProfile::default());
    assert_eq!(spec.validation, manifest::Validation::default());
    assert_eq!(spec.completion, manifest::Completion::default());
    assert_eq!(spec.runtime.stdin, manifest::StdinMode::default());
    assert_eq!(
        (&spec.agency, &spec.role, spec.topics.is_empty()),
        (&None, &None, true)
    );
}
