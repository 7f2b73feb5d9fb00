//! Area leases through the real binary: two agents racing for overlapping areas (the second
//! refused, naming the holder), a coordinator's reservation that holds its sub-task back until
//! the other agent's lease ends, a lease that runs out on its own, hostile paths refused, and
//! leases released when their execution ends, a kill -9 of the engine included.

use std::time::Duration;

use crate::support::*;

const CONFIG: &str = "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  concurrency: {global: 4}\n  retry: {base_delay: 100ms, max_delay: 200ms}\n  shutdown_grace: 2s\n";

/// Waits (in the agent's shell) up to ten seconds for the file `$OUT/NAME`.
fn wait_file(name: &str) -> String {
    format!(
        "i=0; while [ ! -e \"$OUT/{name}\" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; "
    )
}

/// A project whose one agent `coder` runs `script` unsandboxed (so that it can report to
/// `out`), with room for four executions at once.
fn project(script: &str, out: &std::path::Path) -> Repo {
    let manifest = agent(
        "coder",
        script,
        "  routing: {default: true}\n  sandbox: {filesystem: none, network: host}\n",
    )
    .replace(
        "    command:",
        &format!("    env: {{OUT: \"{}\"}}\n    command:", out.display()),
    );
    let repo = Repo::with_agents(&[("coder", &manifest)]);
    std::fs::write(repo.path().join(".agentgrid/config.yaml"), CONFIG).unwrap();
    repo
}

fn read(out: &std::path::Path, name: &str) -> String {
    std::fs::read_to_string(out.join(name)).unwrap_or_default()
}

fn events(repo: &Repo) -> Vec<serde_json::Value> {
    repo.ok(&["events", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The `(path, end_reason)` of every lease, newest first.
fn ended(repo: &Repo) -> Vec<(String, String)> {
    let all = repo.json(&["leases", "--all", "--json"]);
    all["leases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["path"].as_str().unwrap().to_string(),
                l["end_reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn held(repo: &Repo) -> Vec<serde_json::Value> {
    repo.json(&["leases", "--json"])["leases"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn two_agents_race_for_overlapping_areas_and_the_second_is_refused() {
    let out = tempfile::tempdir().unwrap();
    let script = format!(
        "if [ \"$AGENTGRID_TASK_ID\" = 1 ]; then \
           agentgrid ctl lease take src/db --ttl 10m > \"$OUT/take1\" 2>&1; echo \"rc=$?\" >> \"$OUT/take1\"; \
           touch \"$OUT/one\"; {two} \
         else \
           {one} \
           agentgrid ctl lease take src --ttl 10m > \"$OUT/take2\" 2>&1; echo \"rc=$?\" >> \"$OUT/take2\"; \
           agentgrid ctl lease take ./srcs/ --ttl 10m > \"$OUT/beside\" 2>&1; echo \"rc=$?\" >> \"$OUT/beside\"; \
           agentgrid ctl lease list > \"$OUT/list\" 2>&1; \
           touch \"$OUT/two\"; \
         fi",
        one = wait_file("one"),
        two = wait_file("two"),
    );
    let repo = project(&script, out.path());
    repo.ok(&["task", "add", "Change the schema"]);
    repo.ok(&["task", "add", "Rewrite the queries"]);
    repo.ok(&["run"]);

    let take1 = read(out.path(), "take1");
    assert!(take1.contains("\"path\": \"src/db\""), "{take1}");
    assert!(take1.ends_with("rc=0\n"), "{take1}");
    let take2 = read(out.path(), "take2");
    assert!(
        take2.contains(
            "the area src overlaps src/db leased to execution #1 (agent coder, task #1) until"
        ),
        "the refusal names the holder: {take2}"
    );
    assert!(
        take2.contains("wait until it is released or expires"),
        "{take2}"
    );
    assert!(take2.ends_with("rc=2\n"), "{take2}");
    let beside = read(out.path(), "beside");
    assert!(
        beside.contains("\"path\": \"srcs\""),
        "normalised: {beside}"
    );
    assert!(beside.ends_with("rc=0\n"), "{beside}");
    let list = read(out.path(), "list");
    assert!(
        list.contains("\"src/db\"") && list.contains("\"srcs\""),
        "{list}"
    );

    // Both executions ended, and their leases with them.
    assert!(held(&repo).is_empty(), "{:?}", held(&repo));
    assert_eq!(
        ended(&repo),
        [
            (
                "srcs".to_string(),
                "its execution ended as succeeded".to_string()
            ),
            (
                "src/db".to_string(),
                "its execution ended as succeeded".to_string()
            ),
        ]
    );
    let kinds: Vec<String> = events(&repo)
        .iter()
        .filter(|e| e["entity"] == "execution" && e["entity_id"] == 1)
        .map(|e| e["type"].as_str().unwrap().to_string())
        .filter(|t| t.contains("area_lease") || t == "execution_finished")
        .collect();
    assert_eq!(
        kinds,
        [
            "execution_area_lease_taken",
            "execution_finished",
            "execution_area_lease_released"
        ]
    );
}

#[test]
fn hostile_paths_are_refused_and_change_nothing() {
    let out = tempfile::tempdir().unwrap();
    let script = "ln -s /etc outside; \
        for p in /etc ../up 'a/../../b' .git/config outside/passwd; do \
          agentgrid ctl lease take \"$p\" --ttl 1m >> \"$OUT/log\" 2>&1; echo \"rc=$?\" >> \"$OUT/log\"; \
        done; \
        agentgrid ctl lease take src --ttl 2h >> \"$OUT/log\" 2>&1; echo \"rc=$?\" >> \"$OUT/log\"; \
        agentgrid ctl lease release docs >> \"$OUT/log\" 2>&1; echo \"rc=$?\" >> \"$OUT/log\"; \
        rm outside";
    let repo = project(script, out.path());
    repo.ok(&["task", "add", "Try everything"]);
    repo.ok(&["run"]);
    let log = read(out.path(), "log");
    for words in [
        "the leased path `/etc` is absolute",
        "the leased path `../up` goes up with `..`",
        "the leased path `a/../../b` goes up with `..`",
        "is inside `.git`",
        "the leased path outside/passwd runs through the symbolic link outside",
        "an area lease's time to live is at least 1s and at most 1h",
        "execution #1 holds no area lease on docs; it holds none",
    ] {
        assert!(log.contains(words), "{words:?} in {log}");
    }
    assert_eq!(log.matches("rc=2").count(), 7, "{log}");
    assert!(ended(&repo).is_empty(), "nothing was leased");
}

#[test]
fn a_reserved_sub_task_waits_until_the_other_agents_lease_ends() {
    let out = tempfile::tempdir().unwrap();
    // Task 1 holds `src` until the test says go. Task 2, a coordinator, makes sub-task 3 and
    // reserves `src/db` for it, staying until the sub-task has started. The sub-task is made
    // needing a capability no agent has, so that it cannot start before the reservation; the
    // test takes the label off once the reservation stands.
    let script = format!(
        "case \"$AGENTGRID_TASK_ID:$AGENTGRID_EXECUTION_KIND\" in \
           1:*) agentgrid ctl lease take src --ttl 10m > \"$OUT/held\" 2>&1; {go} ;; \
           2:work) {held} \
             agentgrid ctl subtask create 'Migrate the tables' --label needs:later > \"$OUT/child\" 2>&1; \
             agentgrid ctl lease take src/db --ttl 10m --task 3 > \"$OUT/reserved\" 2>&1; \
             echo \"rc=$?\" >> \"$OUT/reserved\"; \
             {started} ;; \
           3:*) touch \"$OUT/started\" ;; \
           *) ;; \
         esac",
        go = wait_file("go"),
        held = wait_file("held"),
        started = wait_file("started"),
    );
    let repo = project(&script, out.path());
    repo.ok(&["task", "add", "Refactor the storage"]);
    repo.ok(&["task", "add", "Plan the migration"]);
    let mut engine = repo
        .cmd(&["run"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(30), "the reservation", || {
        read(out.path(), "reserved").contains("rc=")
    });
    let reserved = read(out.path(), "reserved");
    assert!(
        reserved.ends_with("rc=0\n"),
        "a reservation may wait: {reserved} (sub-task: {})",
        read(out.path(), "child")
    );
    repo.ok(&["task", "edit", "3", "--remove-label", "needs:later"]);
    wait_for(
        Duration::from_secs(30),
        "task 3 to wait for its area",
        || {
            let status = repo.json(&["status", "--json"]);
            status["area_waits"]
                .as_array()
                .is_some_and(|w| w.iter().any(|w| w["task"] == 3))
        },
    );
    let show = repo.json(&["task", "show", "3", "--json"]);
    let why = show["area_wait"]["reason"].as_str().unwrap().to_string();
    assert!(
        why.starts_with(
            "waits for area src/db: src leased to execution #1 (agent coder, task #1) until"
        ),
        "{why}"
    );
    assert_eq!(show["task"]["state"], "open");
    assert_eq!(show["area_leases"][0]["path"], "src/db");
    let human = repo.ok(&["status"]);
    assert!(human.contains("task #3 waits for area src/db"), "{human}");
    assert!(!out.path().join("started").exists(), "task 3 did not start");

    std::fs::write(out.path().join("go"), "").unwrap();
    let status = engine.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(repo.task_state(3), "done");
    assert_eq!(repo.task_state(1), "done");

    // Task 3 was claimed only after task 1's lease was released.
    let log = events(&repo);
    let seq = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        log.iter()
            .find(|e| pred(e))
            .map(|e| e["seq"].as_u64().unwrap())
            .expect("the event is there")
    };
    let released = seq(&|e| e["type"] == "execution_area_lease_released" && e["entity_id"] == 1);
    let claimed =
        seq(&|e| e["type"] == "task_state_changed" && e["entity_id"] == 3 && e["to"] == "running");
    assert!(
        released < claimed,
        "released at {released}, claimed at {claimed}"
    );
    assert!(held(&repo).is_empty());
}

#[test]
fn a_lease_runs_out_on_its_own_and_frees_its_area() {
    let out = tempfile::tempdir().unwrap();
    let script = format!(
        "if [ \"$AGENTGRID_TASK_ID\" = 1 ]; then \
           agentgrid ctl lease take src --ttl 1s > /dev/null; touch \"$OUT/one\"; {two} \
         else \
           {one} sleep 1.3; \
           agentgrid ctl lease take src/db.rs --ttl 1m > \"$OUT/take2\" 2>&1; echo \"rc=$?\" >> \"$OUT/take2\"; \
           touch \"$OUT/two\"; \
         fi",
        one = wait_file("one"),
        two = wait_file("two"),
    );
    let repo = project(&script, out.path());
    repo.ok(&["task", "add", "Hold briefly"]);
    repo.ok(&["task", "add", "Take it after"]);
    repo.ok(&["run"]);
    let take2 = read(out.path(), "take2");
    assert!(take2.ends_with("rc=0\n"), "the area is free again: {take2}");
    assert_eq!(
        ended(&repo),
        [
            (
                "src/db.rs".to_string(),
                "its execution ended as succeeded".to_string()
            ),
            ("src".to_string(), "its time ran out".to_string()),
        ]
    );
    let expired: Vec<serde_json::Value> = events(&repo)
        .into_iter()
        .filter(|e| e["type"] == "execution_area_lease_expired")
        .collect();
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(expired[0]["entity_id"], 1);
    assert_eq!(expired[0]["path"], "src");
}

#[test]
fn leases_die_with_their_execution_after_a_kill_9_of_the_engine() {
    let out = tempfile::tempdir().unwrap();
    // The first run takes the lease and hangs; after the crash the task runs again and ends.
    let script = "if [ -e \"$OUT/held\" ]; then exit 0; fi; \
        agentgrid ctl lease take src docs --ttl 10m > \"$OUT/held\" 2>&1; sleep 60";
    let repo = project(script, out.path());
    repo.ok(&["task", "add", "Hang with a lease"]);
    let mut engine = repo
        .cmd(&["run"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(30), "the lease to be taken", || {
        held(&repo).len() == 2
    });
    engine.kill().unwrap(); // SIGKILL: no cleanup of any kind.
    engine.wait().unwrap();
    assert_eq!(held(&repo).len(), 2, "the store still has them");

    let run = repo.ok(&["run"]);
    assert!(run.contains("recovered after a crash"), "{run}");
    assert!(held(&repo).is_empty(), "{:?}", held(&repo));
    assert_eq!(
        ended(&repo),
        [
            (
                "docs".to_string(),
                "its execution ended as lost".to_string()
            ),
            ("src".to_string(), "its execution ended as lost".to_string()),
        ]
    );
    assert_eq!(repo.task_state(1), "done");
}

/// A sub-task's script that fails loudly when another sub-task is inside the area at the same
/// time: `mkdir` is atomic, so a second agent inside finds the directory there.
fn inside_the_area(name: &str) -> String {
    format!(
        "echo start >> \"$OUT/{name}\"; \
         if mkdir \"$OUT/inside\" 2>/dev/null; then \
           sleep 0.4; rmdir \"$OUT/inside\"; \
         else echo overlap >> \"$OUT/overlaps\"; fi; \
         echo end >> \"$OUT/{name}\""
    )
}

#[test]
fn sub_tasks_made_with_overlapping_areas_never_run_at_once() {
    let out = tempfile::tempdir().unwrap();
    // The coordinator makes three sub-tasks and exits at once: two reserve overlapping areas,
    // the third an area beside them. Room for four executions at once.
    let script = format!(
        "case \"$AGENTGRID_TASK_ID:$AGENTGRID_EXECUTION_KIND\" in \
           1:work) \
             agentgrid ctl subtask create 'Change the schema' --area src --key a >> \"$OUT/made\" 2>&1; \
             agentgrid ctl subtask create 'Rewrite the queries' --area ./src/db/ --lease-ttl 10m --key b >> \"$OUT/made\" 2>&1; \
             agentgrid ctl subtask create 'Write the docs' --area docs --key c >> \"$OUT/made\" 2>&1 ;; \
           2:*) {a} ;; \
           3:*) {b} ;; \
           *) ;; \
         esac",
        a = inside_the_area("a"),
        b = inside_the_area("b"),
    );
    let repo = project(&script, out.path());
    repo.ok(&["task", "add", "Plan the storage change"]);
    repo.ok(&["run"]);
    assert_eq!(read(out.path(), "made"), "2\n3\n4\n");
    assert_eq!(read(out.path(), "a"), "start\nend\n");
    assert_eq!(read(out.path(), "b"), "start\nend\n");
    assert_eq!(read(out.path(), "overlaps"), "", "the two ran at once");
    for id in 1..=4 {
        assert_eq!(repo.task_state(id), "done", "task {id}");
    }

    // Each sub-task's creation and its reservation are one transaction: the same batch's
    // events, next to each other in the log.
    let log = events(&repo);
    for (task, path) in [(2, "src"), (3, "src/db"), (4, "docs")] {
        let created = log
            .iter()
            .position(|e| e["type"] == "task_created" && e["entity_id"] == task)
            .unwrap();
        let reserved = &log[created + 1];
        assert_eq!(reserved["type"], "execution_area_lease_taken", "{reserved}");
        assert_eq!(reserved["lease"]["task"], task);
        assert_eq!(reserved["lease"]["path"], path);
    }
    // The reservations outlived the coordinator's first execution and ended with their
    // sub-tasks' success.
    assert!(held(&repo).is_empty(), "{:?}", held(&repo));
    let reasons: Vec<String> = ended(&repo).into_iter().map(|(_, why)| why).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .all(|r| r.ends_with("succeeded") && r.starts_with("task #")),
        "{reasons:?}"
    );
}

#[test]
fn a_refused_reservation_creates_no_sub_task() {
    let out = tempfile::tempdir().unwrap();
    // Task 1 reserves `src` for its sub-task and waits; task 2 then tries to make sub-tasks
    // with bad areas and with one overlapping task 1's reservation.
    let script = format!(
        "case \"$AGENTGRID_TASK_ID:$AGENTGRID_EXECUTION_KIND\" in \
           1:work) \
             agentgrid ctl subtask create 'Hold src' --area src --label needs:never > \"$OUT/held\" 2>&1; \
             {done} ;; \
           2:work) {held} ln -s /etc outside; \
             for a in /etc ../up outside/passwd src/db; do \
               agentgrid ctl subtask create \"Part $a\" --area \"$a\" >> \"$OUT/log\" 2>&1; \
               echo \"rc=$?\" >> \"$OUT/log\"; \
             done; \
             agentgrid ctl subtask create 'Too long' --area lib --lease-ttl 2h >> \"$OUT/log\" 2>&1; \
             echo \"rc=$?\" >> \"$OUT/log\"; \
             rm outside; touch \"$OUT/done\" ;; \
           *) ;; \
         esac",
        held = wait_file("held"),
        done = wait_file("done"),
    );
    let repo = project(&script, out.path());
    repo.ok(&["task", "add", "Plan one"]);
    repo.ok(&["task", "add", "Plan two"]);
    let mut engine = repo
        .cmd(&["run"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(60), "the refusals", || {
        out.path().join("done").exists()
    });
    let log = read(out.path(), "log");
    for words in [
        "the leased path `/etc` is absolute",
        "the leased path `../up` goes up with `..`",
        "the leased path outside/passwd runs through the symbolic link outside",
        "the area src/db overlaps src reserved for task #3 by execution #",
        "an area lease's time to live is at least 1s and at most 1h",
    ] {
        assert!(log.contains(words), "{words:?} in {log}");
    }
    assert_eq!(log.matches("rc=2").count(), 5, "{log}");
    // Only task 1's sub-task was made, and only its reservation is held.
    let ids: Vec<u64> = repo
        .tasks()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3], "no refused call made a sub-task");
    let leases = held(&repo);
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(leases[0]["task"], 3);
    // Task 3 can never run (no agent has its capability): the engine is stopped here.
    engine.kill().unwrap();
    engine.wait().unwrap();
}

#[test]
fn a_sub_task_held_behind_a_one_second_lease_starts_promptly_when_it_runs_out() {
    let out = tempfile::tempdir().unwrap();
    // Task 1 leases `src` for one second and stays until task 3 has started (ten seconds at
    // most); task 2 makes sub-task 3 reserving `src/db`. Without a wake-up at the lease's
    // expiry, task 3 would start only when task 1 ends, ten seconds later.
    let script = format!(
        "case \"$AGENTGRID_TASK_ID:$AGENTGRID_EXECUTION_KIND\" in \
           1:*) agentgrid ctl lease take src --ttl 1s > \"$OUT/held\" 2>&1; {started} ;; \
           2:work) {held} agentgrid ctl subtask create 'Migrate' --area src/db > /dev/null ;; \
           3:*) touch \"$OUT/started\" ;; \
           *) ;; \
         esac",
        held = wait_file("held"),
        started = wait_file("started"),
    );
    let repo = project(&script, out.path());
    repo.ok(&["task", "add", "Hold src briefly"]);
    repo.ok(&["task", "add", "Plan the migration"]);
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(3), "done");
    let log = events(&repo);
    let taken = log
        .iter()
        .find(|e| e["type"] == "execution_area_lease_taken" && e["lease"]["path"] == "src")
        .expect("task 1's lease");
    let expires = taken["lease"]["expires_at"].as_i64().unwrap();
    let claimed = log
        .iter()
        .find(|e| e["type"] == "task_state_changed" && e["entity_id"] == 3 && e["to"] == "running")
        .expect("task 3 ran");
    let at = claimed["at"].as_i64().unwrap();
    assert!(
        at >= expires,
        "task 3 started at {at}, before the lease ran out at {expires}"
    );
    assert!(
        at - expires < 3_000,
        "task 3 started {} ms after the lease ran out",
        at - expires
    );
    let end_of_1 = log
        .iter()
        .find(|e| e["type"] == "execution_finished" && e["entity_id"] == 1)
        .map(|e| e["at"].as_i64().unwrap())
        .unwrap();
    assert!(at < end_of_1, "task 3 started while task 1 still ran");
}
