//! Each tool on a real directory: what it does, what it refuses, and its bounds.

use std::os::unix::fs::symlink;
use std::time::Duration;

use builtin::{Limits, Tools, Workspace};
use serde_json::json;

fn tools(limits: Limits) -> (tempfile::TempDir, Tools) {
    let dir = tempfile::tempdir().unwrap();
    let tools = Tools {
        workspace: Workspace::open(dir.path()).unwrap(),
        limits,
        control: None,
        command_env: launch::base_env(),
    };
    (dir, tools)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Runtime::new().unwrap().block_on(f)
}

#[test]
fn write_read_and_edit_need_exact_text_and_say_what_was_wrong() {
    let (dir, tools) = tools(Limits::default());
    block_on(async {
        let out = tools
            .call(
                "write_file",
                &json!({"path": "a/b.txt", "content": "one two two\n"}),
            )
            .await;
        assert!(out.ok, "{out:?}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a/b.txt")).unwrap(),
            "one two two\n"
        );
        let out = tools.call("read_file", &json!({"path": "a/b.txt"})).await;
        assert_eq!(out.text, "one two two\n");

        let out = tools
            .call(
                "edit",
                &json!({"path": "a/b.txt", "old": "two", "new": "2"}),
            )
            .await;
        assert!(!out.ok && out.text.contains("occurs 2 times"), "{out:?}");
        let out = tools
            .call(
                "edit",
                &json!({"path": "a/b.txt", "old": "three", "new": "3"}),
            )
            .await;
        assert!(!out.ok && out.text.contains("does not occur"), "{out:?}");
        let out = tools
            .call(
                "edit",
                &json!({"path": "a/b.txt", "old": "one", "new": "1"}),
            )
            .await;
        assert!(out.ok, "{out:?}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a/b.txt")).unwrap(),
            "1 two two\n"
        );

        // Wrong argument types and unknown tools are answers, not crashes.
        let out = tools
            .call("write_file", &json!({"path": 7, "content": "x"}))
            .await;
        assert!(
            !out.ok && out.text.contains("`path` must be a string"),
            "{out:?}"
        );
        let out = tools.call("write_file", &json!("not an object")).await;
        assert!(!out.ok && out.text.contains("JSON object"), "{out:?}");
        let out = tools.call("rm_rf", &json!({})).await;
        assert!(
            !out.ok && out.text.contains("there is no tool `rm_rf`"),
            "{out:?}"
        );
        let out = tools.call("complete", &json!({"summary": "done"})).await;
        assert!(!out.ok && out.text.contains("control channel"), "{out:?}");
    });
}

#[test]
fn a_write_never_follows_a_link_out_and_sizes_are_bounded() {
    let outside = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_file_bytes: 16,
        max_output_bytes: 64,
        ..Limits::default()
    };
    let (dir, tools) = tools(limits);
    symlink(outside.path().join("target"), dir.path().join("link")).unwrap();
    block_on(async {
        let out = tools
            .call("write_file", &json!({"path": "link", "content": "x"}))
            .await;
        assert!(!out.ok && out.text.contains("symbolic link"), "{out:?}");
        assert!(!outside.path().join("target").exists());

        let out = tools
            .call(
                "write_file",
                &json!({"path": "big", "content": "x".repeat(17)}),
            )
            .await;
        assert!(!out.ok && out.text.contains("more than the 16"), "{out:?}");
        assert!(!dir.path().join("big").exists());
        std::fs::write(dir.path().join("huge"), "y".repeat(100)).unwrap();
        let out = tools.call("read_file", &json!({"path": "huge"})).await;
        assert!(!out.ok && out.text.contains("100 bytes"), "{out:?}");

        // Output is cut to the limit, with a note.
        let out = tools
            .call("run_command", &json!({"command": "seq 1 1000"}))
            .await;
        assert!(out.ok, "{out:?}");
        assert!(
            out.text.len() < 64 + 40 && out.text.contains("more bytes cut"),
            "{out:?}"
        );
    });
}

#[test]
fn list_and_search_walk_the_workspace_without_git_and_within_bounds() {
    let (dir, tools) = tools(Limits {
        max_entries: 50,
        ..Limits::default()
    });
    std::fs::create_dir_all(dir.path().join(".git/objects")).unwrap();
    std::fs::write(dir.path().join(".git/config"), "needle").unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/a.rs"), "fn a() {}\n// needle here\n").unwrap();
    std::fs::write(dir.path().join("b.txt"), "no match\n").unwrap();
    for i in 0..60 {
        std::fs::write(dir.path().join(format!("many{i:02}")), "").unwrap();
    }
    block_on(async {
        let out = tools.call("list_files", &json!({"path": "src"})).await;
        assert_eq!(out.text, "src/a.rs (25 bytes)\n");
        let out = tools.call("list_files", &json!({})).await;
        assert!(!out.text.contains(".git"), "{}", out.text);
        assert!(
            out.text.contains("stopped after 50 entries"),
            "{}",
            out.text
        );

        let out = tools
            .call("search_files", &json!({"pattern": "needle", "path": "src"}))
            .await;
        assert_eq!(out.text, "src/a.rs:2: // needle here\n");
        let out = tools.call("search_files", &json!({"pattern": "("})).await;
        assert!(
            !out.ok && out.text.contains("not a valid regular expression"),
            "{out:?}"
        );
        let out = tools.call("list_files", &json!({"path": "../"})).await;
        assert!(!out.ok && out.text.contains("`..`"), "{out:?}");
    });
}

#[test]
fn a_command_runs_in_the_workspace_and_is_killed_at_its_timeout() {
    let (dir, tools) = tools(Limits {
        command_timeout: Duration::from_secs(1),
        ..Limits::default()
    });
    block_on(async {
        let out = tools
            .call("run_command", &json!({"command": "pwd; exit 3"}))
            .await;
        assert!(!out.ok, "{out:?}");
        assert!(out.text.starts_with("exit status 3"), "{out:?}");
        let real = dir.path().canonicalize().unwrap();
        assert!(out.text.contains(real.to_str().unwrap()), "{out:?}");
        let out = tools
            .call(
                "run_command",
                &json!({"command": "sleep 30", "timeout_seconds": 60}),
            )
            .await;
        assert!(
            !out.ok && out.text.starts_with("timed out after 1 s"),
            "{out:?}"
        );
    });
}
