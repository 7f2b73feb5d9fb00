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
