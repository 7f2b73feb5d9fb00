//! Delivery through the organisation, through the real binary: messages to a role, an agency
//! and a topic reach the inboxes of exactly their readers and are acknowledged under their
//! rules; a specialist's escalation goes to its coordinator, who is woken to answer it or
//! sends it up, and one left open past the agency's deadline goes up to people by itself.
//! The attacks: a role message from outside the agency, an acknowledgement by an agent that
//! is not a reader, an escalation sent as a plain message (the loop between coordinator and
//! specialist), a time to live of 0 and a huge payload.

use std::path::Path;

use crate::support::*;

/// An agent that logs each execution to `dir/log`, keeps its prompt as
/// `dir/prompt-EXECUTION`, then runs `dir/steps-TASK.sh` (when the test wrote one) with its
/// output in the log.
fn member(name: &str, dir: &Path, extra: &str) -> String {
    let script = "echo \"== $AGENTGRID_AGENT#$AGENTGRID_EXECUTION_ID task $AGENTGRID_TASK_ID\" >> \"$DIR/log\"; \
                  cp \"$AGENTGRID_PROMPT_FILE\" \"$DIR/prompt-$AGENTGRID_EXECUTION_ID\"; \
                  if [ -f \"$DIR/steps-$AGENTGRID_TASK_ID.sh\" ]; then . \"$DIR/steps-$AGENTGRID_TASK_ID.sh\" >> \"$DIR/log\" 2>&1; fi; true";
    agent(
        name,
        script,
        &format!(
            "  prompt: \"Task {{{{ task.id }}}}\\n{{% if inbox %}}{{{{ inbox }}}}{{% endif %}}\\n\"\n  sandbox: {{filesystem: none, network: host}}\n{extra}"
        ),
    )
    .replace("  prompt: \"Task {{ task.id }}: {{ task.title }}\"\n", "")
    .replace(
        "    command:",
        &format!("    env: {{DIR: \"{}\"}}\n    command:", dir.display()),
    )
}

/// Code (`code-lead`; `coder`, a developer following `builds`; `fixer`, a bugfixer), QA
/// (`qa-lead`; `tester`) and `loner`, outside agencies, also following `builds`.
fn organisation(dir: &Path, code_extra: &str) -> Repo {
    let repo = Repo::with_agents(&[
        (
            "code-lead",
            &member("code-lead", dir, "  agency: code\n  role: coordinator\n"),
        ),
        (
            "coder",
            &member(
                "coder",
                dir,
                "  agency: code\n  role: developer\n  topics: [builds]\n",
            ),
        ),
        (
            "fixer",
            &member("fixer", dir, "  agency: code\n  role: bugfixer\n"),
        ),
        (
            "qa-lead",
            &member("qa-lead", dir, "  agency: qa\n  role: coordinator\n"),
        ),
        (
            "tester",
            &member("tester", dir, "  agency: qa\n  role: tester\n"),
        ),
        ("loner", &member("loner", dir, "  topics: [builds]\n")),
    ]);
    let agencies = repo.path().join(".agentgrid/agencies");
    std::fs::create_dir_all(&agencies).unwrap();
    std::fs::write(
        agencies.join("code.yaml"),
        format!(
            "apiVersion: agentgrid.dev/v1\nkind: Agency\nmetadata: {{name: code}}\nspec:\n  coordinator: code-lead\n  specialists: [{{agent: coder, role: developer}}, {{agent: fixer, role: bugfixer}}]\n  labels: [code]\n{code_extra}"
        ),
    )
    .unwrap();
    std::fs::write(
        agencies.join("qa.yaml"),
        "apiVersion: agentgrid.dev/v1\nkind: Agency\nmetadata: {name: qa}\nspec:\n  coordinator: qa-lead\n  specialists: [{agent: tester, role: tester}]\n  labels: [qa]\n",
    )
    .unwrap();
    repo.ok(&["validate"]);
    repo
}

/// One execution at a time, so that an agent's block is recorded before its coordinator runs.
fn one_at_a_time(repo: &Repo) {
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  concurrency: {global: 1}\n",
    )
    .unwrap();
}

fn steps(dir: &Path, task: u64, script: &str) {
    std::fs::write(dir.join(format!("steps-{task}.sh")), script).unwrap();
}

fn messages(repo: &Repo) -> std::collections::HashMap<i64, serde_json::Value> {
    let list = repo.json(&["msg", "list", "--limit", "1000", "--json"]);
    list.as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_i64().unwrap(), m.clone()))
        .collect()
}

/// The prompt of execution `e` and the message ids its inbox listed.
fn inbox_of(dir: &Path, e: u64) -> Vec<i64> {
    let prompt = std::fs::read_to_string(dir.join(format!("prompt-{e}"))).unwrap();
    prompt
        .lines()
        .filter_map(|l| l.strip_prefix('M')?.split_once(' ')?.0.parse().ok())
        .collect()
}

fn send(repo: &Repo, to: &str, kind: &str, payload: &str) -> String {
    repo.ok(&[
        "msg",
        "send",
        "--to",
        to,
        "--type",
        kind,
        "--payload",
        payload,
    ])
    .trim()
    .to_string()
}

#[test]
fn role_agency_and_topic_messages_reach_their_readers_only() {
    let dir = tempfile::tempdir().unwrap();
    let repo = organisation(dir.path(), "");
    assert_eq!(
        send(&repo, "role:developer", "QUESTION", r#"{"text": "CSV?"}"#),
        "M1"
    );
    assert_eq!(
        send(&repo, "agency:code", "STATUS", r#"{"text": "freeze"}"#),
        "M2"
    );
    assert_eq!(
        send(&repo, "topic:builds", "ALERT", r#"{"text": "main is red"}"#),
        "M3"
    );
    assert_eq!(
        send(&repo, "agency:qa", "STATUS", r#"{"text": "qa only"}"#),
        "M4"
    );
    // A person's message to a role or an agency that does not exist, or with a time to live
    // of 0, is refused and sends nothing.
    for (to, ttl, says) in [
        ("role:nobody", None, "no agency has the role `nobody`"),
        (
            "agency:ops",
            None,
            "`ops` is not an agency of the project (agencies: code, qa)",
        ),
        (
            "role:code/tester",
            None,
            "`tester` is not a role of the agency code",
        ),
        ("agent:coder", Some("0s"), "time to live is more than 0"),
    ] {
        let mut args = vec![
            "msg",
            "send",
            "--to",
            to,
            "--type",
            "STATUS",
            "--payload",
            r#"{"text": "x"}"#,
        ];
        if let Some(ttl) = ttl {
            args.extend(["--ttl", ttl]);
        }
        let out = repo.run(&args);
        assert_eq!(out.status.code(), Some(2), "{to}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{to}: {}", stderr(&out));
    }
    assert_eq!(messages(&repo).len(), 4);

    // Task 1: the tester, of QA, tries to acknowledge the developers' question, to write to
    // Code's coordinator, and writes to its own.
    steps(
        dir.path(),
        1,
        "agentgrid ctl msg ack M1; echo \"t-ack=$?\"; \
         agentgrid ctl msg send --to role:code/coordinator --type STATUS --payload '{\"text\": \"x\"}'; echo \"t-cross=$?\"; \
         agentgrid ctl msg send --to role:coordinator --type STATUS --payload '{\"text\": \"to my lead\"}'; echo \"t-own=$?\"",
    );
    // Task 2: the loner, in no agency, writes to a role, an escalation as a message, a huge
    // payload, acknowledges an announcement and the agency's message, and writes to Code.
    steps(
        dir.path(),
        2,
        "agentgrid ctl msg send --to role:coordinator --type STATUS --payload '{\"text\": \"x\"}'; echo \"l-role=$?\"; \
         agentgrid ctl msg send --to people --type ESCALATION --payload '{\"text\": \"x\", \"severity\": \"low\"}'; echo \"l-esc=$?\"; \
         big=$(head -c 20000 /dev/zero | tr '\\0' a); \
         agentgrid ctl msg send --to agency:code --type STATUS --payload \"{\\\"text\\\": \\\"$big\\\"}\"; echo \"l-big=$?\"; \
         agentgrid ctl msg ack M3; echo \"l-ann=$?\"; \
         agentgrid ctl msg ack M3; echo \"l-ann2=$?\"; \
         agentgrid ctl msg ack M2; echo \"l-ack=$?\"; \
         agentgrid ctl msg send --to agency:code --type QUESTION --payload '{\"text\": \"from outside\"}'; echo \"l-agency=$?\"",
    );
    // Task 3: the coder acknowledges the question and the agency's message.
    steps(
        dir.path(),
        3,
        "agentgrid ctl msg ack M1; echo \"c-ack1=$?\"; agentgrid ctl msg ack M2; echo \"c-ack2=$?\"; \
         agentgrid ctl msg ack M3; echo \"c-ann=$?\"",
    );
    // Task 4: Code's coordinator, a reader of the agency's message too, finds it taken.
    steps(
        dir.path(),
        4,
        "agentgrid ctl msg ack M2; echo \"lead-ack2=$?\"",
    );
    for (i, agent) in ["tester", "loner", "coder", "code-lead", "qa-lead", "loner"]
        .iter()
        .enumerate()
    {
        let mut args = vec!["task", "add", "step", "--agent", agent];
        let before = i.to_string();
        if i > 0 {
            args.extend(["--blocked-by", &before]);
        }
        repo.ok(&args);
    }
    repo.ok(&["run"]);
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    for (exit, says) in [
        (
            "t-ack=2",
            "message M1 is for role:developer, and agent tester of execution #1 is not one of its readers",
        ),
        (
            "t-cross=2",
            "an agent writes to the roles of its own agency only; write to agency:code instead",
        ),
        ("t-own=0", ""),
        (
            "l-role=2",
            "agent loner is in no agency, so it has no roles to write to",
        ),
        (
            "l-esc=2",
            "an agent escalates with `agentgrid ctl escalate`",
        ),
        ("l-big=2", "at most 16 KiB"),
        ("l-ann=0", ""),
        (
            "l-ann2=2",
            "message M3 was acknowledged already for agent loner",
        ),
        ("c-ann=0", ""),
        (
            "l-ack=2",
            "message M2 is for agency:code, and agent loner of execution #2 is not one of its readers",
        ),
        ("l-agency=0", ""),
        ("c-ack1=0", ""),
        ("c-ack2=0", ""),
        ("lead-ack2=2", "acknowledged already by agent:coder#3"),
    ] {
        assert!(log.contains(exit), "{exit}: {log}");
        assert!(log.contains(says), "{says}: {log}");
    }
    // Who read what: M5 is the tester's to its own coordinator, M6 the loner's to Code.
    assert_eq!(inbox_of(dir.path(), 1), [4], "the tester: its agency's");
    assert_eq!(inbox_of(dir.path(), 2), [3], "the loner: its topic's");
    assert_eq!(
        inbox_of(dir.path(), 3),
        [1, 2, 3, 6],
        "the coder: the loner's acknowledgement of the announcement was its own"
    );
    assert_eq!(
        inbox_of(dir.path(), 4),
        [6],
        "code's coordinator: the agency's message was taken already"
    );
    assert_eq!(inbox_of(dir.path(), 5), [4, 5], "qa's coordinator");
    assert!(
        inbox_of(dir.path(), 6).is_empty(),
        "the loner again: it acknowledged the announcement for itself"
    );

    let all = messages(&repo);
    assert_eq!(all.len(), 6, "{all:?}");
    assert_eq!(all[&1]["state"], "acked");
    assert_eq!(all[&1]["acked_by"], "agent:coder#3");
    assert_eq!(all[&2]["acked_by"], "agent:coder#3");
    assert_eq!(
        all[&3]["state"], "delivered",
        "an announcement stays open for its other readers"
    );
    let shown = repo.json(&["msg", "show", "M3", "--json"]);
    let reads: Vec<&str> = shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "message_reader_acked")
        .map(|e| e["reader"].as_str().unwrap())
        .collect();
    assert_eq!(reads, ["loner", "coder"], "{shown}");
    assert_eq!(all[&5]["receiver"], "role:qa/coordinator");
    assert_eq!(all[&6]["receiver"], "agency:code");
}

#[test]
fn a_specialists_escalation_goes_to_its_coordinator_who_answers_it() {
    let dir = tempfile::tempdir().unwrap();
    let repo = organisation(dir.path(), "");
    one_at_a_time(&repo);
    // The coder asks, then blocks; asked again with the answer in its inbox, it completes.
    steps(
        dir.path(),
        1,
        "if grep -q 'ANSWER from' \"$AGENTGRID_PROMPT_FILE\"; then agentgrid ctl complete --summary 'used v2'; \
         else agentgrid ctl escalate --severity high 'Which schema version?'; agentgrid ctl block --reason 'asked my lead'; fi",
    );
    // The coordinator, woken with a task of its own, cannot send the escalation back down as
    // a message, escalates its own question to people, and answers the coder.
    steps(
        dir.path(),
        2,
        "agentgrid ctl msg send --to role:developer --type ESCALATION --payload '{\"text\": \"you decide\", \"severity\": \"low\"}'; echo \"down=$?\"; \
         agentgrid ctl escalate --severity low 'May I pick v2?'; echo \"own=$?\"; \
         agentgrid ctl escalation answer M1 --text 'Use v2'; echo \"answer=$?\"; \
         agentgrid ctl escalation answer M1 --text 'again'; echo \"again=$?\"",
    );
    repo.ok(&["task", "add", "Migrate", "--agent", "coder"]);
    repo.ok(&["run"]);
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(log.contains("down=2"), "{log}");
    assert!(log.contains("own=0") && log.contains("answer=0"), "{log}");
    assert!(
        log.contains("again=2")
            && log.contains(
                "escalation M1 was acknowledged already by agent:code-lead#2: it was answered"
            ),
        "{log}"
    );

    let all = messages(&repo);
    let question = &all[&1];
    assert_eq!(question["type"], "ESCALATION");
    assert_eq!(question["receiver"], "role:code/coordinator");
    assert_eq!(question["state"], "acked");
    assert_eq!(question["acked_by"], "agent:code-lead#2");
    // Its own question is the coordinator's to people; the answer goes to the asking task.
    assert_eq!(all[&2]["receiver"], "people");
    assert_eq!(all[&2]["sender"], "agent:code-lead#2");
    assert_eq!(all[&3]["type"], "ANSWER");
    assert_eq!(all[&3]["receiver"], "task:1");
    assert_eq!(all[&3]["correlation"], "M1");
    // The coordinator was woken by a task made for it, and saw the question in its prompt.
    let woke = repo.json(&["task", "show", "2", "--json"]);
    assert_eq!(woke["task"]["agent"], "code-lead", "{woke}");
    let prompt = std::fs::read_to_string(dir.path().join("prompt-2")).unwrap();
    assert!(
        prompt.contains("M1 ESCALATION from agent:coder#1 (high): ")
            && prompt.contains("Which schema version?"),
        "{prompt}"
    );
    // The coder ran again with the answer and is done.
    assert_eq!(repo.task_state(1), "done");
    let prompt = std::fs::read_to_string(dir.path().join("prompt-3")).unwrap();
    assert!(
        prompt.contains(r#"ANSWER from agent:code-lead#2 (high) [re M1]: {"text":"Use v2"}"#),
        "{prompt}"
    );
    // Only the coordinator's own question waits, with people.
    let status = repo.json(&["status", "--json"]);
    let open = status["escalations"].as_array().unwrap();
    assert_eq!(open.len(), 1, "{status}");
    assert_eq!(open[0]["at"], "people");
    assert_eq!(open[0]["id"], 2);
}

#[test]
fn an_escalation_goes_up_by_the_coordinator_or_by_itself_past_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let repo = organisation(dir.path(), "  escalation_deadline: 5s\n");
    one_at_a_time(&repo);
    // Task 1: the coder asks and blocks; its coordinator (task 2) sends it up with a note.
    steps(
        dir.path(),
        1,
        "agentgrid ctl escalate 'Can we drop Python 3.8?'; agentgrid ctl block --reason asked",
    );
    steps(
        dir.path(),
        2,
        "agentgrid ctl escalate --up M1 'a product decision'; echo \"up=$?\"; \
         agentgrid ctl escalate --up M2; echo \"higher=$?\"",
    );
    repo.ok(&["task", "add", "Drop 3.8", "--agent", "coder"]);
    repo.ok(&["run"]);
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(log.contains("up=0"), "{log}");
    assert!(
        log.contains("higher=2") && log.contains("is with people already; it goes no higher"),
        "{log}"
    );
    let all = messages(&repo);
    assert_eq!(all[&1]["state"], "acked");
    assert_eq!(all[&2]["receiver"], "people");
    assert_eq!(all[&2]["correlation"], "M1");
    assert_eq!(
        all[&2]["payload"]["text"],
        "Can we drop Python 3.8? (the coordinator says: a product decision)"
    );

    // Task 3: the fixer asks; its coordinator (task 4) reads the question and does nothing.
    steps(
        dir.path(),
        3,
        "agentgrid ctl escalate --severity critical 'Revert the release?'; agentgrid ctl block --reason asked",
    );
    repo.ok(&["task", "add", "Fix prod", "--agent", "fixer"]);
    repo.ok(&["run"]);
    let status = repo.json(&["status", "--json"]);
    let at_lead: Vec<&serde_json::Value> = status["escalations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["at"] == "role:code/coordinator")
        .collect();
    assert_eq!(at_lead.len(), 1, "{status}");
    assert_eq!(at_lead[0]["question"], "Revert the release?");
    assert!(at_lead[0]["age"].is_string(), "{status}");
    let human = repo.ok(&["status"]);
    assert!(human.contains("role:code/coordinator"), "{human}");
    let id = at_lead[0]["id"].as_i64().unwrap();

    // Past the deadline the engine's tick sends it up by itself.
    let mut engine = repo
        .cmd(&["run", "--forever"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut up = None;
    wait_for(
        std::time::Duration::from_secs(30),
        "the escalation to go up",
        || {
            let all = messages(&repo);
            up = all
                .values()
                .find(|m| m["correlation"] == format!("M{id}"))
                .cloned();
            up.is_some()
        },
    );
    engine.kill().unwrap();
    engine.wait().unwrap();
    let up = up.unwrap();
    assert_eq!(up["receiver"], "people");
    assert_eq!(up["sender"], "engine");
    assert_eq!(up["priority"], "urgent");
    let text = up["payload"]["text"].as_str().unwrap();
    assert!(
        text.starts_with(
            "Revert the release? (the coordinator code-lead left it unanswered for 5s"
        ),
        "{text}"
    );
    let all = messages(&repo);
    assert_eq!(all[&id]["state"], "acked");
    assert_eq!(all[&id]["acked_by"], "engine");
}

/// Calls the chat API from 20 threads at once, each asking for up to 200 output tokens.
const PARALLEL_PY: &str = r#"import json, os, threading, urllib.request, urllib.error
base, key = os.environ["OPENAI_BASE_URL"], os.environ["OPENAI_API_KEY"]
def call():
    body = {"model": "gpt", "stream": True, "max_tokens": 200,
            "messages": [{"role": "user", "content": "Write a long answer"}]}
    req = urllib.request.Request(base + "/chat/completions", data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": "Bearer " + key})
    try:
        urllib.request.urlopen(req, timeout=20).read()
    except Exception:
        pass
threads = [threading.Thread(target=call) for _ in range(20)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"#;

#[test]
fn an_agencys_daily_budget_holds_during_a_run_and_then_starts_nothing() {
    const KEY: &str = "sk-real-node-key-agency-9c1f";
    const BUDGET: u64 = 2_000;
    let step = modelfixture::Step {
        pause_ms: 20,
        ..modelfixture::Step::reply("a long answer indeed", 20, 500, 0)
    };
    let (_rt, fixture, repo) = ModelProject {
        agent_py: PARALLEL_PY,
        args: "",
        extra_spec: "  agency: code\n  role: coordinator\n",
        config: &|url| {
            let origin = url.trim_end_matches("/v1");
            format!(
                "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  models:\n    providers:\n      fx: {{kind: openai-compatible, base_url: \"{origin}\", api_key_env: FIXTURE_KEY}}\n    aliases:\n      gpt: {{provider: fx, model: fx-gpt, prices: {{input: 2, output: 8}}}}\n"
            )
        },
        key: KEY,
        task: "Call the model",
    }
    .build(modelfixture::Script::new(vec![step; 20]));
    let agencies = repo.path().join(".agentgrid/agencies");
    std::fs::create_dir_all(&agencies).unwrap();
    std::fs::write(
        agencies.join("code.yaml"),
        format!(
            "apiVersion: agentgrid.dev/v1\nkind: Agency\nmetadata: {{name: code}}\nspec:\n  coordinator: caller\n  labels: [code]\n  budgets: {{per_day: {{tokens: {BUDGET}}}}}\n"
        ),
    )
    .unwrap();
    let validate = repo
        .cmd(&["validate"])
        .env("FIXTURE_KEY", KEY)
        .output()
        .unwrap();
    assert!(validate.status.success(), "{}", stderr(&validate));
    repo.ok(&["task", "edit", "1", "--label", "code"]);
    let run = || repo.cmd(&["run"]).env("FIXTURE_KEY", KEY).output().unwrap();
    let out = run();
    // The agency's account held every parallel request to what was left of it.
    let status = repo.json(&["status", "--json"]);
    let code = &status["agencies"][0];
    assert_eq!(code["name"], "code", "{status}");
    let spent = code["spent_today"]["input_tokens"].as_u64().unwrap()
        + code["spent_today"]["output_tokens"].as_u64().unwrap();
    assert!(spent <= BUDGET, "{spent} tokens spent\n{}", stdout(&out));
    let requests = code["spent_today"]["requests"].as_u64().unwrap();
    assert!((1..20).contains(&requests), "{requests} requests");
    assert_eq!(fixture.requests().len() as u64, requests);
    assert_eq!(code["budget_per_day"]["tokens"], BUDGET);
    let show = repo.json(&["task", "show", "1", "--json"]);
    let execution = &show["executions"][0];
    assert_eq!(execution["state"], "budget_exceeded", "{}", stdout(&out));
    let events = repo.ok(&["events", "--task", "1"]);
    assert!(
        events.contains("the agency code's daily budget of 2000 tokens"),
        "the reason is recorded: {events}"
    );

    // With the day's budget used up (set to what was spent), a new task of the agency is
    // not started, and `status` says why.
    std::fs::write(
        agencies.join("code.yaml"),
        format!(
            "apiVersion: agentgrid.dev/v1\nkind: Agency\nmetadata: {{name: code}}\nspec:\n  coordinator: caller\n  labels: [code]\n  budgets: {{per_day: {{tokens: {spent}}}}}\n"
        ),
    )
    .unwrap();
    repo.ok(&["task", "add", "More", "--label", "code"]);
    let before = fixture.requests().len();
    run();
    let show = repo.json(&["task", "show", "2", "--json"]);
    assert!(show["executions"].as_array().unwrap().is_empty(), "{show}");
    assert_eq!(repo.task_state(2), "open");
    assert_eq!(fixture.requests().len(), before);
    let human = repo.ok(&["status"]);
    assert!(
        human.contains(&format!(
            "agency code: 0 running; spent today {spent} of {spent} tokens, used up"
        )),
        "{human}"
    );
}

#[test]
fn the_engines_tick_makes_expired_messages_dead_letters_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let repo = organisation(dir.path(), "");
    let sent = repo.ok(&[
        "msg",
        "send",
        "--to",
        "role:developer",
        "--type",
        "STATUS",
        "--payload",
        r#"{"text": "soon stale"}"#,
        "--ttl",
        "1s",
    ]);
    assert_eq!(sent.trim(), "M1");
    // No task runs: only the tick can see the time to live run out. `msg show` reads without
    // sweeping, so the dead letter it shows is the engine's.
    let mut engine = repo
        .cmd(&["run", "--forever"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut shown = serde_json::Value::Null;
    wait_for(
        std::time::Duration::from_secs(30),
        "the dead letter",
        || {
            shown = repo.json(&["msg", "show", "M1", "--json"]);
            shown["message"]["state"] == "dead"
        },
    );
    engine.kill().unwrap();
    engine.wait().unwrap();
    let reason = shown["message"]["dead_reason"].as_str().unwrap();
    assert!(
        reason.starts_with("expired: its time to live ran out at "),
        "{reason}"
    );
    let last = shown["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["type"], "message_dead_lettered", "{shown}");
    assert_eq!(last["actor"], "engine", "{shown}");
}
