//! Messages through the real binary: a person's message reaches the agent's prompt
//! (`{{ inbox }}`) and `ctl msg inbox`, is acknowledged once, and the agent's own message
//! reaches people; a hostile agent's messages (too big, of no type, to another task's
//! execution, a flood) are refused and change nothing.

use crate::support::*;

/// A project whose one agent runs `script` with the default prompt, keeping a copy of it in
/// its worktree; its sandbox is off so that it can report to `out`.
fn project(script: &str, out: &std::path::Path) -> Repo {
    let manifest = agent(
        "coder",
        &format!("cp \"$AGENTGRID_PROMPT_FILE\" prompt.txt; {script}"),
        "  routing: {default: true}\n  sandbox: {filesystem: none, network: host}\n",
    )
    .replace("  prompt: \"Task {{ task.id }}: {{ task.title }}\"\n", "")
    .replace(
        "    command:",
        &format!("    env: {{OUT: \"{}\"}}\n    command:", out.display()),
    );
    Repo::with_agents(&[("coder", &manifest)])
}

fn messages(repo: &Repo) -> Vec<serde_json::Value> {
    let list = repo.json(&["msg", "list", "--limit", "1000", "--json"]);
    list.as_array().expect("a list").clone()
}

#[test]
fn a_persons_message_reaches_the_agent_and_is_acknowledged_once() {
    let out = tempfile::NamedTempFile::new().unwrap();
    let script = "agentgrid ctl msg inbox > \"$OUT\"; \
                  agentgrid ctl msg ack M1 >> \"$OUT\"; echo \"ack=$?\" >> \"$OUT\"; \
                  agentgrid ctl msg ack M1 >> \"$OUT\" 2>&1; echo \"again=$?\" >> \"$OUT\"; \
                  agentgrid ctl msg send --to people --type STATUS --payload '{\"text\": \"JSON it is\"}' --correlation q-1 >> \"$OUT\"";
    let repo = project(script, out.path());
    repo.ok(&["task", "add", "Add an export"]);
    let id = repo.ok(&[
        "msg",
        "send",
        "--to",
        "agent:coder",
        "--type",
        "QUESTION",
        "--payload",
        r#"{"text": "CSV or JSON?"}"#,
        "--correlation",
        "q-1",
        "--priority",
        "high",
    ]);
    assert_eq!(id.trim(), "M1");
    repo.ok(&["run"]);

    let prompt = repo.git(&["show", "agentgrid/task-1:prompt.txt"]);
    assert!(
        prompt.contains(r#"M1 QUESTION from cli (high) [re q-1]: {"text":"CSV or JSON?"}"#),
        "the message is in the prompt: {prompt}"
    );
    let log = std::fs::read_to_string(out.path()).unwrap();
    assert!(
        log.contains("CSV or JSON?"),
        "ctl msg inbox shows it: {log}"
    );
    assert!(log.contains("ack=0"), "{log}");
    assert!(log.contains("again=2"), "{log}");
    assert!(log.contains("acknowledged once"), "{log}");

    let all = messages(&repo);
    assert_eq!(all.len(), 2, "{all:?}");
    let (reply, question) = (&all[0], &all[1]);
    assert_eq!(question["state"], "acked");
    assert_eq!(question["acked_by"], "agent:coder#1");
    assert_eq!(question["deliveries"], 2, "the prompt and the inbox");
    assert_eq!(reply["type"], "STATUS");
    assert_eq!(reply["receiver"], "people");
    assert_eq!(reply["sender"], "agent:coder#1");
    assert_eq!(reply["sender_execution"], 1);
    assert_eq!(reply["task_id"], 1);
    assert_eq!(reply["correlation"], "q-1");
    assert_eq!(reply["state"], "pending");

    let show = repo.json(&["msg", "show", "1", "--json"]);
    let kinds: Vec<&str> = show["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "message_sent",
            "message_delivered",
            "message_delivered",
            "message_acked"
        ]
    );
    // A person reads the reply and acknowledges it; once.
    repo.ok(&["msg", "ack", "M2"]);
    let again = repo.run(&["msg", "ack", "M2"]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("acknowledged already"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn hostile_messages_are_refused_and_change_nothing() {
    let out = tempfile::NamedTempFile::new().unwrap();
    // Task 1's agent does nothing; task 2's agent attacks: a payload over the bound, a type
    // that does not exist, a payload of the wrong shape, task 1's execution as receiver, and
    // a flood of STATUS messages to people.
    let script = "if [ \"$AGENTGRID_TASK_ID\" = 2 ]; then \
        big=$(head -c 20000 /dev/zero | tr '\\0' a); \
        agentgrid ctl msg send --to people --type STATUS --payload \"{\\\"text\\\": \\\"$big\\\"}\" >> \"$OUT\" 2>&1; echo \"big=$?\" >> \"$OUT\"; \
        agentgrid ctl msg send --to people --type GOSSIP --payload '{\"text\": \"x\"}' >> \"$OUT\" 2>&1; echo \"type=$?\" >> \"$OUT\"; \
        agentgrid ctl msg send --to people --type STATUS --payload '{\"rm\": \"-rf\"}' >> \"$OUT\" 2>&1; echo \"shape=$?\" >> \"$OUT\"; \
        agentgrid ctl msg send --to execution:1 --type STATUS --payload '{\"text\": \"x\"}' >> \"$OUT\" 2>&1; echo \"other=$?\" >> \"$OUT\"; \
        i=0; while [ $i -lt 101 ]; do agentgrid ctl msg send --to people --type STATUS --payload \"{\\\"text\\\": \\\"step $i\\\"}\" > /dev/null 2>> \"$OUT\" || echo \"flood refused at $i\" >> \"$OUT\"; i=$((i+1)); done; \
        fi";
    let repo = project(script, out.path());
    repo.ok(&["task", "add", "Harmless"]);
    repo.ok(&["task", "add", "Hostile", "--blocked-by", "1"]);
    repo.ok(&["run"]);
    let log = std::fs::read_to_string(out.path()).unwrap();
    for (exit, says) in [
        ("big=2", "at most 16 KiB"),
        ("type=2", "`GOSSIP` is not a message type"),
        ("shape=2", "has no field `rm`"),
        ("other=2", "may not write to execution #1 of task #1"),
    ] {
        assert!(log.contains(exit), "{exit}: {log}");
        assert!(log.contains(says), "{says}: {log}");
    }
    assert!(log.contains("no message was sent"), "{log}");
    assert!(log.contains("flood refused at 100"), "{log}");
    assert_eq!(log.matches("flood refused").count(), 1, "{log}");
    let all = messages(&repo);
    assert_eq!(all.len(), 100, "only the flood's first hundred were sent");
    assert!(all.iter().all(|m| m["sender_execution"] == 2));
}

/// Torture: the engine is killed with SIGKILL at random moments while agents read, send and
/// acknowledge messages, then started again, until every task is done. On the record: every
/// message a person sent is delivered at least once and acknowledged once, no message is
/// acknowledged twice, none is delivered after its time to live ran out, and none for one
/// execution reaches another. `MSG_TORTURE_SEED=N` replays the kill times of a failure.
#[test]
fn messages_survive_kill_9_of_the_engine() {
    const TASKS: usize = 16;
    const FROM_PEOPLE: usize = 12;
    let seed: u64 = std::env::var("MSG_TORTURE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos() as u64
        });
    let mut rng = seed;
    let mut next = move |below: u64| {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) % below
    };
    // Each agent acknowledges what its inbox shows, tells the other agents something (now and
    // then with a short time to live), and leaves a note for its own execution that nobody
    // acknowledges: it must die with the execution, never reach the next one.
    let script = "out=$(agentgrid ctl msg inbox 2>/dev/null); \
        for id in $(printf '%s' \"$out\" | grep -o '\"id\": [0-9]*' | grep -o '[0-9]*'); do agentgrid ctl msg ack $id >/dev/null 2>&1; done; \
        ttl=''; if [ $((AGENTGRID_TASK_ID % 3)) = 0 ]; then ttl='--ttl 300ms'; fi; \
        agentgrid ctl msg send --to agent:w --type STATUS --payload \"{\\\"text\\\": \\\"from $AGENTGRID_TASK_ID\\\"}\" $ttl >/dev/null 2>&1; \
        agentgrid ctl msg send --to execution:$AGENTGRID_EXECUTION_ID --type HEARTBEAT --payload '{}' >/dev/null 2>&1; \
        sleep 0.2; echo $AGENTGRID_TASK_ID > done.txt";
    let repo = Repo::with_agents(&[("w", &agent("w", script, "  routing: {default: true}\n"))]);
    for i in 1..=TASKS {
        repo.ok(&["task", "add", &format!("task {i}")]);
    }
    for i in 1..=FROM_PEOPLE {
        let payload = format!(r#"{{"text": "note {i}"}}"#);
        repo.ok(&[
            "msg",
            "send",
            "--to",
            "agent:w",
            "--type",
            "STATUS",
            "--payload",
            &payload,
            "--priority",
            "urgent",
        ]);
    }
    // An announcement: the one agent acknowledges it for itself, once, however often it is
    // killed, and no later execution of it is shown it again.
    repo.ok(&[
        "msg",
        "send",
        "--to",
        "broadcast",
        "--type",
        "STATUS",
        "--payload",
        r#"{"text": "to everyone"}"#,
    ]);
    let mut kills = 0;
    for _ in 0..3 {
        let mut engine = repo
            .cmd(&["run"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300 + next(1200)));
        if engine.try_wait().unwrap().is_none() {
            engine.kill().unwrap(); // SIGKILL: no cleanup of any kind.
            kills += 1;
        }
        engine.wait().unwrap();
    }
    repo.ok(&["run"]);
    let tasks = repo.tasks();
    assert!(
        tasks.iter().all(|t| t["state"] == "done"),
        "seed {seed}: {tasks:?}"
    );

    let events: Vec<serde_json::Value> = repo
        .ok(&["events", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let all = messages(&repo);
    let by_id: std::collections::HashMap<i64, &serde_json::Value> =
        all.iter().map(|m| (m["id"].as_i64().unwrap(), m)).collect();
    let mut delivered: std::collections::HashMap<i64, u32> = Default::default();
    let mut acked: std::collections::HashMap<i64, u32> = Default::default();
    let mut read: std::collections::HashMap<(i64, String), u32> = Default::default();
    for e in events.iter().filter(|e| e["entity"] == "message") {
        let id = e["entity_id"].as_i64().unwrap();
        let m = by_id[&id];
        match e["type"].as_str().unwrap() {
            "message_delivered" => {
                *delivered.entry(id).or_default() += 1;
                if let Some(until) = m["expires_at"].as_i64() {
                    assert!(
                        e["at"].as_i64().unwrap() < until,
                        "seed {seed}: M{id} delivered after its time to live: {e}"
                    );
                }
                if let Some(to) = m["receiver"].as_str().unwrap().strip_prefix("execution:") {
                    assert_eq!(
                        e["execution"].to_string(),
                        to,
                        "seed {seed}: M{id} reached another execution"
                    );
                }
            }
            "message_acked" => *acked.entry(id).or_default() += 1,
            "message_reader_acked" => {
                let reader = e["reader"].as_str().unwrap().to_string();
                *read.entry((id, reader)).or_default() += 1;
            }
            _ => {}
        }
    }
    assert!(
        acked.values().all(|n| *n == 1),
        "seed {seed}: a message was acknowledged twice: {acked:?}"
    );
    for m in all.iter().filter(|m| m["sender"] == "cli") {
        let id = m["id"].as_i64().unwrap();
        assert!(
            delivered.get(&id).copied().unwrap_or(0) >= 1,
            "seed {seed}: M{id} was never delivered"
        );
        if m["receiver"] == "broadcast" {
            assert_eq!(
                read.get(&(id, "w".to_string())),
                Some(&1),
                "seed {seed}: the announcement M{id} was not acknowledged once by w: {read:?}"
            );
            assert_eq!(m["state"], "delivered", "seed {seed}: {m}");
        } else {
            assert_eq!(m["state"], "acked", "seed {seed}: {m}");
        }
    }
    assert!(
        read.values().all(|n| *n == 1),
        "seed {seed}: an announcement was acknowledged twice by one reader: {read:?}"
    );
    // The notes each execution left for itself were never delivered to another; those whose
    // execution ended before a sweep are dead letters naming it.
    let swept = all
        .iter()
        .filter(|m| m["type"] == "HEARTBEAT" && m["state"] == "dead")
        .count();
    assert!(
        swept > 0,
        "seed {seed}: no note to an ended execution was swept"
    );
    assert!(
        kills > 0,
        "seed {seed}: the engine was never killed mid-run"
    );
    eprintln!(
        "seed {seed}: {kills} kills, {} messages, {} deliveries, {} acknowledged, {swept} swept",
        all.len(),
        delivered.values().sum::<u32>(),
        acked.len()
    );
}

/// An agent stuck at a question escalates it and blocks; `status` shows the escalation with
/// its age; a person's answer reopens the task and reaches its next execution's inbox.
#[test]
fn an_escalation_is_shown_until_answered_and_the_answer_reaches_the_agent() {
    let out = tempfile::NamedTempFile::new().unwrap();
    let script = "cat \"$AGENTGRID_PROMPT_FILE\" >> \"$OUT\"; echo '--- end of prompt' >> \"$OUT\"; \
        if grep -q 'ANSWER from' \"$AGENTGRID_PROMPT_FILE\"; then \
          agentgrid ctl complete --summary 'used the answer'; \
        else \
          agentgrid ctl escalate --severity critical 'Which database should the export read?' >> \"$OUT\"; \
          agentgrid ctl escalate --severity dire 'x' >> \"$OUT\" 2>&1; echo \"dire=$?\" >> \"$OUT\"; \
          agentgrid ctl block --reason 'escalated'; \
        fi";
    let repo = project(script, out.path());
    repo.ok(&["task", "add", "Add an export"]);
    repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "blocked");
    let log = std::fs::read_to_string(out.path()).unwrap();
    assert!(
        log.contains("dire=2") && log.contains("not a severity"),
        "{log}"
    );

    let status = repo.json(&["status", "--json"]);
    let escalations = status["escalations"].as_array().unwrap();
    assert_eq!(escalations.len(), 1, "{status}");
    assert_eq!(escalations[0]["severity"], "critical");
    assert_eq!(escalations[0]["task"], 1);
    assert_eq!(escalations[0]["from"], "agent:coder#1");
    assert!(escalations[0]["age"].is_string(), "{status}");
    let human = repo.ok(&["status"]);
    assert!(
        human.contains("Which database should the export read?"),
        "{human}"
    );
    let id = escalations[0]["id"].as_i64().unwrap().to_string();

    repo.ok(&["escalations", "answer", &id, "Read from PostgreSQL"]);
    assert_eq!(
        repo.task_state(1),
        "open",
        "the answer reopens the blocked task"
    );
    let refused = repo.run(&["escalations", "answer", &id, "again"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        repo.json(&["status", "--json"])["escalations"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    repo.ok(&["run"]);
    assert_eq!(repo.task_state(1), "done");
    let log = std::fs::read_to_string(out.path()).unwrap();
    let second = log.split("--- end of prompt").nth(1).unwrap();
    assert!(
        second.contains(&format!(
            r#"ANSWER from cli (high) [re M{id}]: {{"text":"Read from PostgreSQL"}}"#
        )),
        "the answer is in the next prompt: {second}"
    );
}
