//! The conventions people know from gh and cargo: completions, manual pages, colour, `--json`
//! with `--fields`, several ids at once, the same label flags everywhere, `--tail`, `logs
//! --json`, `status --watch` and a second Ctrl-C.

use crate::support::*;

/// The sub-commands `agentgrid --help` lists, so that a command added later is checked too.
fn subcommands() -> Vec<String> {
    let help = stdout(&command(bin()).arg("--help").output().unwrap());
    let listed: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|name| name != "help")
        .collect();
    assert!(
        listed.len() >= 10 && listed.iter().any(|c| c == "task"),
        "the help lists the commands: {listed:?}\n{help}"
    );
    listed
}

#[test]
fn the_bash_completion_script_knows_every_command() {
    let out = command(bin())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let script = stdout(&out);
    assert!(script.contains("complete -F _agentgrid"), "{script}");
    for name in subcommands() {
        assert!(
            script.contains(&format!("agentgrid__{name}"))
                || script.contains(&format!("agentgrid,{name}")),
            "the bash completion names `{name}`"
        );
    }
    // Sub-commands and flags below the top level are completed too.
    assert!(
        script.contains("--remove-label"),
        "task edit's flags are there"
    );
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = command(bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        assert!(stdout(&out).contains("agentgrid"), "{shell}");
    }
    let out = command(bin())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
    assert!(
        stderr(&out).contains("bash"),
        "the shells are named: {}",
        stderr(&out)
    );
}

#[test]
fn the_manual_page_renders_with_every_command() {
    let out = command(bin()).arg("man").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let page = stdout(&out);
    assert!(page.contains(".TH agentgrid 1"), "{page}");
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    let out = command(bin())
        .args(["man", "--dir"])
        .arg(&pages)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for name in subcommands() {
        assert!(page.contains(&name), "the top page names `{name}`");
        let sub = std::fs::read_to_string(pages.join(format!("agentgrid-{name}.1")))
            .unwrap_or_else(|e| panic!("agentgrid-{name}.1: {e}"));
        assert!(sub.contains(&format!(".TH agentgrid-{name} 1")), "{sub}");
    }
    let add = std::fs::read_to_string(pages.join("agentgrid-task-add.1")).unwrap();
    assert!(add.contains("agentgrid task add"), "{add}");
    assert!(add.contains("\\-\\-label"), "{add}");
}

/// A `run` whose output goes to files, killed if the test ends first.
struct Running {
    child: std::process::Child,
    stderr: std::path::PathBuf,
    logs: tempfile::TempDir,
}

impl Running {
    fn start(repo: &Repo, args: &[&str]) -> Running {
        let logs = tempfile::tempdir().unwrap();
        let stderr = logs.path().join("stderr");
        let child = repo
            .cmd(args)
            .stdout(std::fs::File::create(logs.path().join("stdout")).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Running {
            child,
            stderr,
            logs,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("stdout")).unwrap_or_default()
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    fn exited_within(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Processes anywhere on the machine whose command line holds `marker`.
fn processes_with(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(marker))
                .unwrap_or(false)
        })
        .count()
}

#[test]
fn a_second_ctrl_c_forces_the_stop_and_the_next_run_recovers() {
    use nix::sys::signal::Signal;
    use std::time::Duration;
    // The first execution ignores SIGTERM and would hold the stop for the whole minute of
    // grace; a later one does the work at once.
    let marker = format!("sleep 47.{}", std::process::id() % 1000);
    let script = format!(
        "if [ \"$AGENTGRID_EXECUTION_ID\" = 1 ]; then trap '' TERM; {marker}; fi; echo done > work.txt"
    );
    let repo = Repo::with_agents(&[(
        "coder",
        &agent("coder", &script, "  routing: {default: true}\n"),
    )]);
    std::fs::write(
        repo.path().join(".agentgrid/config.yaml"),
        "apiVersion: agentgrid.dev/v1\nkind: Config\nspec:\n  shutdown_grace: 60s\n",
    )
    .unwrap();
    repo.ok(&["task", "add", "Do the work"]);
    let mut run = Running::start(&repo, &["run"]);
    wait_for(Duration::from_secs(60), "the agent to run", || {
        processes_with(&marker) > 0
    });

    run.signal(Signal::SIGINT);
    wait_for(
        Duration::from_secs(10),
        "the first Ctrl-C's message",
        || run.stderr().contains("Ctrl-C again to force"),
    );
    let first = run.stderr();
    assert!(
        first.contains("waiting for 1 execution(s) to wind down"),
        "{first}"
    );
    if let Some(status) = run.exited_within(Duration::from_secs(1)) {
        panic!(
            "the graceful stop waits for the agent that ignores SIGTERM, but run ended ({status:?}) \
             saying:\n{}",
            run.stderr()
        );
    }

    run.signal(Signal::SIGINT);
    let status = run
        .exited_within(Duration::from_secs(10))
        .expect("a second Ctrl-C ends run promptly");
    let errors = run.stderr();
    assert_eq!(status.code(), Some(130), "{errors}");
    assert!(
        errors.contains("killing execution(s) 1 (task #1, coder)"),
        "{errors}"
    );
    assert!(errors.contains("#1 go back to open"), "{errors}");
    assert_eq!(processes_with(&marker), 0, "the agent was killed");
    assert_eq!(
        repo.json(&["status", "--json"])["active_executions"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "nothing was written: the store is as a crash leaves it"
    );

    let out = repo.ok(&["run"]);
    assert!(out.contains("1 recovered after a crash"), "{out}");
    assert_eq!(repo.task_state(1), "done");
    let lost = repo
        .ok(&["events", "--json"])
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["type"] == "execution_finished" && e["state"] == "lost")
        .count();
    assert_eq!(lost, 1, "the killed execution was wound down as lost");
}

#[test]
fn several_ids_are_each_reported_and_one_bad_id_stops_none() {
    let repo = Repo::with_agents(&[(
        "coder",
        &agent("coder", "true", "  routing: {default: true}\n"),
    )]);
    for title in ["one", "two", "three"] {
        repo.ok(&["task", "add", title]);
    }
    repo.ok(&["task", "add", "below one", "--parent", "1"]);

    let out = repo.run(&["task", "cancel", "1", "999", "2", "4"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(
        said.contains("cancelled task #1 and 1 sub-task(s)"),
        "{said}"
    );
    assert!(
        said.contains("cancelled task #2"),
        "the id after the bad one: {said}"
    );
    assert!(
        said.contains("#4 was cancelled with a task above it"),
        "{said}"
    );
    assert!(
        stderr(&out).contains("#999 does not exist"),
        "{}",
        stderr(&out)
    );
    for (id, state) in [
        (1, "cancelled"),
        (2, "cancelled"),
        (3, "open"),
        (4, "cancelled"),
    ] {
        assert_eq!(repo.task_state(id), state, "task {id}");
    }

    // Reopen: #3 is open already, the others go back; JSON has one result per id, in order.
    let out = repo.run(&["task", "reopen", "1", "3", "2", "--json"]);
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    let results: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = results.as_array().unwrap();
    let ids: Vec<i64> = results.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [1, 3, 2]);
    let oks: Vec<bool> = results.iter().map(|r| r["ok"].as_bool().unwrap()).collect();
    assert_eq!(oks, [true, false, true], "{results:?}");
    assert!(
        results[1]["message"].as_str().unwrap().contains("#3"),
        "{results:?}"
    );
    assert_eq!(repo.task_state(1), "open");
    assert_eq!(repo.task_state(2), "open");

    let results = repo.json(&["task", "nudge", "1", "2", "1", "--json"]);
    assert_eq!(
        results.as_array().unwrap().len(),
        2,
        "a repeated id once: {results}"
    );
    assert!(results.as_array().unwrap().iter().all(|r| r["ok"] == true));

    let cancelled = repo.json(&["task", "cancel", "3", "--json"]);
    assert_eq!(
        cancelled[0]["cancelled"],
        serde_json::json!([3]),
        "{cancelled}"
    );
    let out = repo.run(&["task", "cancel"]);
    assert_eq!(out.status.code(), Some(2), "an id is required");
}

#[test]
fn labels_take_the_same_flags_everywhere() {
    let repo = Repo::with_agents(&[(
        "coder",
        &agent("coder", "true", "  routing: {default: true}\n"),
    )]);
    repo.ok(&["task", "add", "one", "--label", "ui", "-l", "db"]);
    repo.ok(&["task", "add", "two", "--label", "ui"]);
    repo.ok(&["task", "add", "three"]);
    let ids = |args: &[&str]| -> Vec<i64> {
        let mut all = vec!["task", "list", "--json"];
        all.extend_from_slice(args);
        repo.json(&all)
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids(&["--label", "ui"]), [1, 2]);
    assert_eq!(
        ids(&["--label", "ui", "--label", "db"]),
        [1],
        "every label given"
    );
    assert_eq!(ids(&["-l", "db"]), [1]);

    // `task edit` adds with --label and removes with --remove-label; the old --add-label is
    // still understood.
    repo.ok(&["task", "edit", "3", "--label", "docs", "-l", "ui"]);
    repo.ok(&[
        "task",
        "edit",
        "3",
        "--add-label",
        "later",
        "--remove-label",
        "ui",
    ]);
    let shown = repo.json(&["task", "show", "3", "--json"]);
    assert_eq!(
        shown["task"]["labels"],
        serde_json::json!(["docs", "later"])
    );
    let help = repo.ok(&["task", "edit", "--help"]);
    assert!(
        help.contains("--label") && help.contains("--remove-label"),
        "{help}"
    );
    assert!(
        !help.contains("--add-label"),
        "the old spelling is hidden: {help}"
    );
}

#[test]
fn an_unknown_agent_is_refused_with_the_agents_listed() {
    let repo = Repo::with_agents(&[
        (
            "coder",
            &agent("coder", "true", "  routing: {default: true}\n"),
        ),
        ("reviewer", &agent("reviewer", "true", "")),
    ]);
    let before = repo.ok(&["events", "--json"]);
    let out = repo.run(&["task", "add", "Fix it", "--agent", "codr"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("no agent named `codr`"), "{said}");
    assert!(
        said.contains("coder, reviewer"),
        "the agents are listed: {said}"
    );
    assert!(said.contains("nothing was created"), "{said}");
    assert_eq!(
        repo.ok(&["events", "--json"]),
        before,
        "nothing was written"
    );
    assert!(repo.tasks().is_empty());

    let task = repo.json(&["task", "add", "Review it", "--agent", "reviewer", "--json"]);
    assert_eq!(task["agent"], "reviewer");
    let out = repo.run(&["task", "edit", "1", "--agent", "nobody"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("coder, reviewer"), "{}", stderr(&out));
    assert_eq!(
        repo.tasks()[0]["agent"],
        "reviewer",
        "the edit changed nothing"
    );
    // An empty name routes by labels again.
    repo.ok(&["task", "edit", "1", "--agent", ""]);
    assert!(repo.tasks()[0]["agent"].is_null());
}

/// The `seq` of each event `events ARGS --json` prints.
fn seqs(repo: &Repo, args: &[&str]) -> Vec<u64> {
    let mut all = vec!["events", "--json"];
    all.extend_from_slice(args);
    repo.ok(&all)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn events_tail_shows_the_last_events_and_follows_from_there() {
    let repo = Repo::with_agents(&[(
        "coder",
        &agent("coder", "true", "  routing: {default: true}\n"),
    )]);
    for i in 1..=5 {
        repo.ok(&["task", "add", &format!("task {i}")]);
    }
    repo.ok(&["task", "comment", "2", "first"]);
    repo.ok(&["task", "comment", "2", "second"]);
    let all = seqs(&repo, &[]);
    assert_eq!(all.len(), 7);
    assert_eq!(seqs(&repo, &["--tail", "3"]), all[4..].to_vec());
    assert_eq!(
        seqs(&repo, &["--tail", "100"]),
        all,
        "fewer than asked: all of them"
    );
    // With --task: that task's last events, not the log's.
    let of_two = seqs(&repo, &["--task", "2"]);
    assert_eq!(of_two.len(), 3);
    assert_eq!(
        seqs(&repo, &["--tail", "2", "--task", "2"]),
        of_two[1..].to_vec()
    );
    let human = repo.ok(&["events", "--tail", "1"]);
    assert_eq!(human.lines().count(), 1);
    assert!(human.contains("second"), "{human}");

    // --follow: the tail, then what comes after it, once.
    let follow = Running::start(&repo, &["events", "--tail", "1", "--follow", "--json"]);
    let printed = || follow.stdout();
    wait_for(std::time::Duration::from_secs(10), "the tail", || {
        printed().lines().count() == 1
    });
    repo.ok(&["task", "comment", "1", "later"]);
    wait_for(std::time::Duration::from_secs(10), "the new event", || {
        printed().lines().count() == 2
    });
    let lines: Vec<serde_json::Value> = printed()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["seq"], all[6]);
    assert_eq!(lines[1]["text"], "later", "{lines:?}");
    follow.signal(nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn logs_json_prints_one_object_per_line_of_the_log() {
    let script = "echo 'first line'; printf 'with \\033[2J escape\\n' >&2; printf 'no newline'";
    let repo = Repo::with_agents(&[(
        "coder",
        &agent("coder", script, "  routing: {default: true}\n"),
    )]);
    repo.ok(&["task", "add", "Say things"]);
    repo.ok(&["run"]);
    let plain = repo.ok(&["logs", "1"]);
    let out = repo.ok(&["logs", "1", "--json"]);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let texts: Vec<&str> = lines.iter().map(|l| l["text"].as_str().unwrap()).collect();
    assert!(texts.contains(&"first line"), "{texts:?}");
    assert!(texts.contains(&"with \u{1b}[2J escape"), "{texts:?}");
    assert!(!out.contains('\u{1b}'), "JSON escapes the escape: {out}");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["execution"], 1);
        assert_eq!(line["line"], i as u64 + 1);
        // Each offset is where the line starts in the log, as `logs` prints it.
        let offset = line["offset"].as_u64().unwrap() as usize;
        assert!(
            plain.as_bytes()[offset..].starts_with(line["text"].as_str().unwrap().as_bytes()),
            "line {i} at {offset}: {plain:?}"
        );
    }
    assert!(!out.contains("--- validators ---"), "{out}");
}

#[test]
fn status_watch_shows_the_view_again_with_what_changed() {
    let repo = Repo::with_agents(&[(
        "coder",
        &agent("coder", "true", "  routing: {default: true}\n"),
    )]);
    repo.ok(&["task", "add", "one"]);
    let watch = Running::start(&repo, &["status", "--watch", "--interval", "0.2"]);
    let printed = || watch.stdout();
    wait_for(std::time::Duration::from_secs(10), "a first view", || {
        printed().contains("tasks: 1 open")
    });
    repo.ok(&["task", "add", "two"]);
    wait_for(std::time::Duration::from_secs(10), "a later view", || {
        printed().contains("tasks: 2 open")
    });
    let text = printed();
    drop(watch);
    assert!(
        text.matches("--- status at ").count() >= 2,
        "plain blocks one after another into a file: {text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "no screen control into a file: {text}"
    );
    let out = repo.run(&["status", "--interval", "1"]);
    assert_eq!(out.status.code(), Some(2), "--interval needs --watch");
    let out = repo.run(&["status", "--watch", "--interval", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("0.1 to 86400"), "{}", stderr(&out));
}

#[test]
fn colour_on_request_and_never_into_pipes_or_under_no_color() {
    let repo = Repo::with_agents(&[(
        "coder",
        &agent("coder", "true", "  routing: {default: true}\n"),
    )]);
    repo.ok(&["task", "add", "one"]);
    repo.ok(&["task", "add", "two"]);
    repo.ok(&["task", "cancel", "2"]);
    const ESC: char = '\u{1b}';
    let listed = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = repo.cmd(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    // Into a pipe, by default: plain.
    let plain = listed(&["task", "list"], &[]);
    assert!(!stdout(&plain).contains(ESC), "{}", stdout(&plain));
    let always = listed(&["task", "list", "--color", "always"], &[("NO_COLOR", "1")]);
    let coloured = stdout(&always);
    assert!(
        coloured.contains("\u{1b}[2mcancelled\u{1b}[0m"),
        "{coloured:?}"
    );
    // The colour codes do not move the columns: without them the text is the plain one.
    assert_eq!(
        coloured.replace("\u{1b}[2m", "").replace("\u{1b}[0m", ""),
        stdout(&plain)
    );
    let forced = listed(&["task", "list"], &[("CLICOLOR_FORCE", "1")]);
    assert!(
        stdout(&forced).contains(ESC),
        "CLICOLOR_FORCE colours a pipe"
    );
    let no_color = listed(
        &["task", "list"],
        &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")],
    );
    assert!(!stdout(&no_color).contains(ESC), "NO_COLOR wins under auto");
    let never = listed(
        &["task", "list", "--color", "never"],
        &[("CLICOLOR_FORCE", "1")],
    );
    assert!(!stdout(&never).contains(ESC));
    // Errors on standard error too, and the flag goes anywhere on the line.
    let error = listed(&["--color", "always", "task", "show", "99"], &[]);
    assert!(
        stderr(&error).starts_with("\u{1b}[1;31merror:\u{1b}[0m"),
        "{}",
        stderr(&error)
    );
    let error = listed(&["task", "show", "99"], &[]);
    assert!(stderr(&error).starts_with("error: "), "{}", stderr(&error));
    // run's marks.
    let run = stdout(&listed(&["run", "--color", "always"], &[]));
    assert!(run.contains("\u{1b}[32m✓\u{1b}[0m #1 done"), "{run:?}");
}

#[test]
fn parse_errors_and_help_follow_the_colour_choice() {
    let repo = Repo::new();
    const ESC: char = '\u{1b}';
    let said = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = repo.cmd(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (out.status.code(), stderr(&out), stdout(&out))
    };
    // A misspelt flag, into a pipe: coloured only when asked for.
    let (code, always, _) = said(&["--color", "always", "status", "--jsn"], &[]);
    assert_eq!(code, Some(2));
    assert!(
        always.contains("--jsn") && always.contains(ESC),
        "{always:?}"
    );
    let (_, equals, _) = said(&["status", "--jsn", "--color=always"], &[]);
    assert!(
        equals.contains(ESC),
        "the flag counts after the mistake too: {equals:?}"
    );
    let (code, never, _) = said(
        &["status", "--jsn", "--color", "never"],
        &[("CLICOLOR_FORCE", "1")],
    );
    assert_eq!(code, Some(2));
    assert!(never.contains("--jsn") && !never.contains(ESC), "{never:?}");
    let (_, no_color, _) = said(
        &["status", "--jsn"],
        &[("NO_COLOR", "1"), ("CLICOLOR_FORCE", "1")],
    );
    assert!(
        no_color.contains("--jsn") && !no_color.contains(ESC),
        "{no_color:?}"
    );
    let (_, forced, _) = said(&["status", "--jsn"], &[("CLICOLOR_FORCE", "1")]);
    assert!(
        forced.contains(ESC),
        "CLICOLOR_FORCE colours a pipe: {forced:?}"
    );
    // Help is clap's too.
    let (code, _, help) = said(&["--color", "always", "task", "--help"], &[]);
    assert_eq!(code, Some(0));
    assert!(help.contains(ESC), "{help:?}");
    let (_, _, help) = said(
        &["task", "--help"],
        &[("NO_COLOR", "1"), ("CLICOLOR_FORCE", "1")],
    );
    assert!(help.contains("Usage") && !help.contains(ESC), "{help:?}");
}

#[test]
fn an_import_naming_an_unknown_agent_is_refused_by_line_and_imports_nothing() {
    let repo = Repo::with_agents(&[
        (
            "coder",
            &agent("coder", "true", "  routing: {default: true}\n"),
        ),
        ("reviewer", &agent("reviewer", "true", "")),
    ]);
    let file = repo.path().join("tasks.jsonl");
    std::fs::write(
        &file,
        "{\"title\": \"One\", \"agent\": \"coder\"}\n\n{\"title\": \"Two\", \"agent\": \"reviwer\"}\n{\"title\": \"Three\"}\n{\"title\": \"Four\", \"agent\": \"nobody\"}\n",
    )
    .unwrap();
    let before = repo.ok(&["events", "--json"]);
    let out = repo.run(&["task", "import", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let said = stderr(&out);
    let place = file.display().to_string();
    assert!(
        said.contains(&format!("{place}:3: no agent named `reviwer`")),
        "{said}"
    );
    assert!(
        said.contains(&format!("{place}:5: no agent named `nobody`")),
        "{said}"
    );
    assert!(
        !said.contains(":1:"),
        "the known agent is not named: {said}"
    );
    assert!(said.contains("coder, reviewer"), "{said}");
    assert!(said.contains("nothing was imported"), "{said}");
    assert_eq!(
        repo.ok(&["events", "--json"]),
        before,
        "nothing was written"
    );

    // With the names right, the same lines import, each with its agent.
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("reviwer", "reviewer")
        .replace("nobody", "coder");
    std::fs::write(&file, text).unwrap();
    let tasks = repo.json(&["task", "import", file.to_str().unwrap(), "--json"]);
    let agents: Vec<&serde_json::Value> = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["agent"])
        .collect();
    assert_eq!(
        agents,
        [
            &serde_json::json!("coder"),
            &serde_json::json!("reviewer"),
            &serde_json::Value::Null,
            &serde_json::json!("coder")
        ]
    );
}

#[test]
fn status_watch_redraws_one_view_in_place_on_a_terminal() {
    let repo = Repo::with_agents(&[(
        "coder",
        &agent("coder", "true", "  routing: {default: true}\n"),
    )]);
    repo.ok(&["task", "add", "one"]);
    let mut watch = repo.pty(&["status", "--watch", "--interval", "0.2"]);
    watch.wait_for("tasks: 1 open");
    // Several views go by before the change, and more after it.
    std::thread::sleep(std::time::Duration::from_millis(700));
    repo.ok(&["task", "add", "two"]);
    watch.wait_for("tasks: 2 open");
    std::thread::sleep(std::time::Duration::from_millis(700));
    let screen = watch.wait_for("tasks: 2 open");
    assert_eq!(
        screen.matches("tasks: ").count(),
        1,
        "one view on the screen, not a scroll of copies:\n{screen}"
    );
    assert_eq!(screen.matches("Ctrl-C to stop").count(), 1, "{screen}");
    assert!(
        !screen.contains("1 open"),
        "the old view is gone:\n{screen}"
    );
    assert!(
        !screen.contains("--- status at "),
        "the plain separators are for pipes:\n{screen}"
    );
    // Ctrl-C at the terminal ends it.
    watch.send("\u{3}");
    let code = watch.wait();
    assert_ne!(
        code,
        Some(0),
        "stopped by the interrupt, not ended by itself"
    );
}
