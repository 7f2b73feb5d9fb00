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
