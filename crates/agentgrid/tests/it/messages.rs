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
