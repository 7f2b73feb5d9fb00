//! Park and resume through the real binary: an agent CLI that asks for an approval ends its
//! execution cleanly, no process waits for the decision (the engine exits), and the execution
//! after the decision resumes the same CLI session, with the home that session lives in, in a
//! new engine.

use crate::support::*;

/// Plays Claude Code: reads the prompt on stdin, prints its stream-json session line, and on a
/// first start writes its "transcript" into `$HOME` and asks for an approval; started with
/// `--resume` it records its arguments and what its home still holds, and completes.
const CLAUDE_LIKE: &str = r#"#!/bin/sh
cat > /dev/null
echo '{"type":"system","subtype":"init","session_id":"sess-parked-1"}'
case " $* " in
*" --resume sess-parked-1 "*)
  { echo "args: $*"; echo "home: $(cat "$HOME/transcript" 2>/dev/null)"; } > resumed.txt
  agentgrid ctl complete --summary "went on in the same session" > /dev/null
  ;;
*)
  if [ -f "$HOME/transcript" ] || [ -f started ]; then
    echo "started afresh: $*" > fresh.txt
    agentgrid ctl complete --summary "started afresh" > /dev/null
  else
    touch started
    echo "the plan so far" > "$HOME/transcript"
    agentgrid ctl approval request --summary "plan: rewrite the parser" > /dev/null
  fi
  ;;
esac
echo '{"type":"result","subtype":"success","is_error":false,"num_turns":1,"result":"ok","session_id":"sess-parked-1"}'
"#;

#[test]
fn an_agent_parked_at_a_gate_resumes_its_session_after_the_decision() {
    let spec = "  routing: {default: true}\n  limits: {max_attempts: 1}\n";
    let manifest = format!(
        "apiVersion: agentgrid.dev/v1\nkind: Agent\nmetadata:\n  name: planner\nspec:\n  runtime:\n    type: claude\n    command: [\"sh\", \"scripts/claude-like.sh\"]\n{spec}"
    );
    let repo = Repo::with_agents(&[("planner", &manifest)]);
    std::fs::create_dir_all(repo.path().join("scripts")).unwrap();
    std::fs::write(repo.path().join("scripts/claude-like.sh"), CLAUDE_LIKE).unwrap();
    // The CLI reaches models only through the gateway; this one never asks for any.
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  models:\n    providers:\n      fx: {kind: anthropic, base_url: \"http://127.0.0.1:9\", api_key_env: PARK_TEST_KEY}\n    aliases:\n      sonnet: {provider: fx, model: fx-claude, prices: {input: 3, output: 15}}\n",
    )
    .unwrap();
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "a claude-like agent"]);
    let run = || {
        let out = repo
            .cmd(&["run"])
            .env("PARK_TEST_KEY", "sk-unused")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    };
    repo.ok(&["task", "add", "Rewrite the parser"]);

    // The engine ends with the task waiting: nothing runs while the person decides.
    run();
    assert_eq!(repo.task_state(1), "blocked");
    let status = repo.ok(&["status"]);
    assert!(status.contains("waiting for approval #1"), "{status}");
    let show = repo.json(&["task", "show", "1", "--json"]);
    assert!(
        show.to_string().contains("sess-parked-1"),
        "the session is on the execution's record: {show}"
    );

    repo.ok(&["approvals", "approve", "1"]);
    run();
    assert_eq!(repo.task_state(1), "done");
    let resumed = repo.git(&["show", "agentgrid/task-1:resumed.txt"]);
    assert!(
        resumed.contains("--resume sess-parked-1"),
        "the CLI was told to resume its session: {resumed}"
    );
    assert!(
        resumed.contains("home: the plan so far"),
        "the session's home came along: {resumed}"
    );
    let files = repo.git(&["ls-tree", "--name-only", "agentgrid/task-1"]);
    assert!(!files.contains("fresh.txt"), "{files}");
}
