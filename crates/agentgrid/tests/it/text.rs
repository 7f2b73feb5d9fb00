//! Agent text on the operator's terminal: escapes and forged lines in titles, comments and
//! reasons are refused on input or shown escaped by every command that prints them.

use crate::support::*;

/// No byte a terminal would act on: ESC, BEL, carriage return and the UTF-8 C1 controls.
fn assert_inert(what: &str, text: &str) {
    for c in text.chars() {
        assert!(
            !(c.is_control() && c != '\n' && c != '\t'),
            "{what} printed the control character {:?}:\n{text}",
            c
        );
    }
}

#[test]
fn escapes_and_forged_lines_from_an_agent_never_reach_the_terminal() {
    // The agent tries a title with an escape, one with a forged line, a comment that would
    // clear the screen and retitle the window, and a block reason with a forged status line.
    let script = concat!(
        "agentgrid ctl subtask create \"$(printf 'evil \\033[31mred')\" >> refusals.txt 2>&1; echo \"exit=$?\" >> refusals.txt; ",
        "agentgrid ctl subtask create \"$(printf 'one\\n#7 done')\" >> refusals.txt 2>&1; echo \"exit=$?\" >> refusals.txt; ",
        "agentgrid ctl comment \"$(printf 'note \\033]0;owned\\007\\033[2J\\n#1 done\\rX')\"; ",
        "agentgrid ctl block --reason \"$(printf 'stuck \\033[5m\\n#1 done: validated')\""
    );
    let repo = Repo::with_agents(&[(
        "noisy",
        &agent("noisy", script, "  routing: {default: true}\n"),
    )]);
    repo.ok(&[
        "task",
        "add",
        "Print safely",
        "--body",
        "line one\n\u{1b}[2Jline two",
    ]);
    let run = repo.run(&["run"]);
    assert_inert("run", &stdout(&run));

    let refusals = repo.git(&["show", "agentgrid/task-1:refusals.txt"]);
    assert_eq!(refusals.matches("exit=2").count(), 2, "{refusals}");
    assert!(refusals.contains("control character"), "{refusals}");
    assert_eq!(repo.tasks().len(), 1, "no sub-task was created");
    assert_eq!(repo.task_state(1), "blocked");

    let show = repo.ok(&["task", "show", "1"]);
    assert_inert("task show", &show);
    assert!(show.contains("\\x1b]0;owned\\x07"), "{show}");
    assert!(
        !show.lines().any(|l| l.starts_with("#1 done")),
        "a forged line passes for output:\n{show}"
    );
    assert!(show.contains("  line one\n  \\x1b[2Jline two"), "{show}");
    for args in [
        &["events"][..],
        &["status"],
        &["task", "list"],
        &["logs", "1"],
    ] {
        let out = repo.run(args);
        assert_inert(&args.join(" "), &stdout(&out));
    }
    // Scripts still get the text as it was written, escaped only by JSON.
    let json = repo.json(&["task", "show", "1", "--json"]);
    assert!(json.to_string().contains("\\u001b]0;owned"), "{json}");
}

#[test]
fn a_person_cannot_add_a_title_with_control_characters() {
    let repo = Repo::with_agents(&[]);
    let out = repo.run(&["task", "add", "two\nlines"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("one line"), "{}", stderr(&out));
    let out = repo.run(&["task", "add", "x", "--body", &"b".repeat(70 * 1024)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("limit is 65536 bytes"),
        "{}",
        stderr(&out)
    );
    assert!(repo.tasks().is_empty());
}
