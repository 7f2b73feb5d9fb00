//! What the program can see and write.

use std::fs;
use std::path::Path;

use sandbox::FilesystemMode;

use crate::support::*;

#[test]
fn the_workspace_is_writable_the_system_read_only_and_the_rest_absent() {
    let ws = scratch();
    let outside = scratch();
    let exposed = scratch();
    fs::write(outside.path().join("private.txt"), "not for the agent\n").unwrap();
    fs::write(exposed.path().join("visible.txt"), "public\n").unwrap();
    let mut spec = spec(ws.path());
    spec.expose = vec![canonical(&exposed.path().join("visible.txt"))];
    let script = format!(
        "echo work > out.txt && cat {exp}/visible.txt && head -c 0 /etc/passwd && echo SYSTEM-READ; \
         if cat {out}/private.txt; then echo READ-OUTSIDE; fi; \
         if ls {out}; then echo LISTED-OUTSIDE; fi; \
         if echo x > {exp}/escape.txt; then echo WROTE-OUTSIDE; fi; \
         if echo x >> {exp}/visible.txt; then echo APPENDED-OUTSIDE; fi; \
         if touch /usr/escape; then echo WROTE-USR; fi; \
         if touch /escape; then echo WROTE-ROOT; fi",
        out = outside.path().display(),
        exp = exposed.path().display()
    );
    let run = run(&spec, &script, &[]);
    assert!(run.ok(), "{run:#?}");
    assert_eq!(
        fs::read_to_string(ws.path().join("out.txt")).unwrap(),
        "work\n"
    );
    assert!(
        run.stdout.contains("public") && run.stdout.contains("SYSTEM-READ"),
        "the system and the exposed file stay readable: {run:#?}"
    );
    assert!(
        !run.stdout.contains("READ-OUTSIDE")
            && !run.stdout.contains("LISTED-OUTSIDE")
            && !run.stdout.contains("not for the agent"),
        "what the spec does not name is absent: {run:#?}"
    );
    assert!(
        !run.stdout.contains("WROTE") && !run.stdout.contains("APPENDED"),
        "{run:#?}"
    );
    assert!(run.stderr.contains("Read-only file system"), "{run:#?}");
    assert!(!exposed.path().join("escape.txt").exists());
    assert_eq!(
        fs::read_to_string(exposed.path().join("visible.txt")).unwrap(),
        "public\n"
    );
}

#[test]
fn hidden_paths_home_and_tmp_appear_empty_and_private() {
    let ws = scratch();
    let home = scratch();
    let state = scratch();
    fs::write(home.path().join("secret"), "home secret\n").unwrap();
    fs::write(state.path().join("engine.db"), "engine secret\n").unwrap();
    let host_tmp = tempfile::tempdir().unwrap();
    fs::write(host_tmp.path().join("secret"), "tmp secret\n").unwrap();
    let mut spec = spec(ws.path());
    spec.hide = vec![canonical(state.path())];
    let script = format!(
        "cat $HOME/secret {state}/engine.db {tmp}/secret; ls -A $HOME {state} /tmp; \
         echo mine > $HOME/cache && cat $HOME/cache; echo scratch > /tmp/t && cat /tmp/t; \
         echo TMPDIR=$TMPDIR",
        state = state.path().display(),
        tmp = host_tmp.path().display()
    );
    let home_path = home.path().display().to_string();
    let run = run(
        &spec,
        &script,
        &[("HOME", &home_path), ("TMPDIR", "/somewhere/else")],
    );
    assert!(!run.stdout.contains("secret"), "{run:#?}");
    assert!(
        run.stdout.contains("mine") && run.stdout.contains("scratch"),
        "{run:#?}"
    );
    assert!(run.stdout.contains("TMPDIR=/tmp"), "{run:#?}");
    // What was written to the private home and /tmp stayed inside.
    assert!(!home.path().join("cache").exists());
    assert!(!Path::new("/tmp/t").exists() || fs::read_to_string("/tmp/t").unwrap() != "scratch\n");
    assert_eq!(fs::read_dir(home.path()).unwrap().count(), 1);
}

/// A hidden path inside a system tree the view shows (a CLI's system-wide configuration in
/// `/etc`, which the agent must not read) is empty inside, and the rest of the tree stays.
/// Planting such a directory would take a write to the host's `/etc`, so the test hides one
/// that is there already.
#[test]
fn a_hidden_directory_inside_a_system_tree_is_empty_inside() {
    let Some(dir) = ["/etc/apt", "/etc/ssl", "/etc/default", "/etc/security"]
        .iter()
        .map(Path::new)
        .find(|d| fs::read_dir(d).is_ok_and(|mut e| e.next().is_some()))
    else {
        eprintln!("skipped: no populated directory of /etc to hide on this host");
        return;
    };
    let ws = scratch();
    let mut spec = spec(ws.path());
    spec.hide = vec![canonical(dir)];
    let script = format!(
        "ls -A {dir} | wc -l; head -c 0 /etc/passwd && echo SYSTEM-READ",
        dir = dir.display()
    );
    let run = run(&spec, &script, &[]);
    assert!(run.ok(), "{run:#?}");
    assert_eq!(run.stdout.lines().next(), Some("0"), "{run:#?}");
    assert!(run.stdout.contains("SYSTEM-READ"), "{run:#?}");
}

#[test]
fn symlinks_lead_nowhere_the_sandbox_cannot_go() {
    let ws = scratch();
    let secret_dir = scratch();
    let public = scratch();
    fs::write(secret_dir.path().join("key"), "secret key\n").unwrap();
    fs::write(public.path().join("file"), "public\n").unwrap();
    std::os::unix::fs::symlink(secret_dir.path().join("key"), ws.path().join("to-secret")).unwrap();
    std::os::unix::fs::symlink(public.path().join("file"), ws.path().join("to-public")).unwrap();
    let mut spec = spec(ws.path());
    spec.hide = vec![canonical(secret_dir.path())];
    spec.expose = vec![canonical(&public.path().join("file"))];
    let script = "cat to-secret; cat to-public; echo changed > to-public; \
                  ln -s /etc/hostname made-here && cat made-here >/dev/null && echo LINK-OK";
    let run = run(&spec, script, &[]);
    assert!(!run.stdout.contains("secret key"), "{run:#?}");
    assert!(run.stdout.contains("public"), "{run:#?}");
    assert!(
        run.stdout.contains("LINK-OK"),
        "links inside the workspace work: {run:#?}"
    );
    assert_eq!(
        fs::read_to_string(public.path().join("file")).unwrap(),
        "public\n",
        "writing through a symlink does not reach the read-only system"
    );
}

#[test]
fn exposed_and_writable_paths_reappear_inside_hidden_directories() {
    let ws_parent = scratch();
    let state = ws_parent.path().join(".agentgrid");
    let ws = state.join("workspaces/task-1");
    let run_dir = state.join("run");
    let logs = state.join("logs");
    for d in [&ws, &run_dir, &logs] {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(run_dir.join("1-prompt.md"), "the prompt\n").unwrap();
    fs::write(run_dir.join("2-prompt.md"), "another agent's prompt\n").unwrap();
    fs::write(logs.join("1.log"), "log\n").unwrap();
    let shared = scratch();
    let mut spec = spec(&ws);
    spec.hide = vec![canonical(&state)];
    spec.expose = vec![canonical(&run_dir.join("1-prompt.md"))];
    spec.writable = vec![canonical(shared.path())];
    let script = format!(
        "cat {run}/1-prompt.md; cat {run}/2-prompt.md; ls {logs}; echo x > {run}/1-prompt.md; \
         echo shared > {shared}/out; pwd",
        run = run_dir.display(),
        logs = logs.display(),
        shared = shared.path().display()
    );
    let run = run(&spec, &script, &[]);
    assert!(run.stdout.contains("the prompt"), "{run:#?}");
    assert!(!run.stdout.contains("another agent"), "{run:#?}");
    assert!(!run.stdout.contains("1.log"), "{run:#?}");
    assert_eq!(
        fs::read_to_string(run_dir.join("1-prompt.md")).unwrap(),
        "the prompt\n",
        "exposed paths are read-only"
    );
    assert_eq!(
        fs::read_to_string(shared.path().join("out")).unwrap(),
        "shared\n"
    );
    assert!(run.stdout.contains("workspaces/task-1"), "{run:#?}");
}

#[test]
fn read_only_mode_keeps_the_workspace_unchanged() {
    let ws = scratch();
    fs::write(ws.path().join("README"), "readme\n").unwrap();
    let mut spec = spec(ws.path());
    spec.filesystem = FilesystemMode::ReadOnly;
    let run = run(
        &spec,
        "cat README; echo x > new.txt; echo tmp > /tmp/ok && cat /tmp/ok",
        &[],
    );
    assert!(
        run.stdout.contains("readme") && run.stdout.contains("tmp"),
        "{run:#?}"
    );
    assert!(!ws.path().join("new.txt").exists());
}

#[test]
fn filesystem_none_sees_the_host_but_not_its_processes() {
    let ws = scratch();
    let outside = scratch();
    let mut spec = spec(ws.path());
    spec.filesystem = FilesystemMode::None;
    let script = format!(
        "echo x > {}/written && ls /proc | grep -c '^[0-9]'",
        outside.path().display()
    );
    let run = run(&spec, &script, &[]);
    assert!(run.ok(), "{run:#?}");
    assert!(
        outside.path().join("written").exists(),
        "no filesystem isolation"
    );
    let processes: u32 = run.stdout.trim().parse().unwrap();
    assert!(processes <= 5, "only the sandbox's own processes: {run:#?}");
}

#[test]
fn under_root_the_agent_is_unprivileged_but_owns_its_workspace() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: only a root engine gives the agent an identity of its own");
        return;
    }
    // A root-only file in a tree every sandbox shows.
    let secret = Path::new("/opt").join(format!(".agentgrid-root-only-{}", std::process::id()));
    fs::write(&secret, "root only\n").unwrap();
    fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let ws = scratch();
    fs::write(ws.path().join("existing.txt"), "old\n").unwrap();
    let spec = spec(ws.path());
    let script = format!(
        "id -u; cat {secret} || echo ROOT-ONLY-REFUSED; echo more >> existing.txt && \
         mkdir -p sub && echo new > sub/new.txt && echo WROTE; echo mine > $HOME/x && echo HOME-OK",
        secret = secret.display()
    );
    let run = run(&spec, &script, &[("HOME", "/root")]);
    let _ = fs::remove_file(&secret);
    assert!(run.ok(), "{run:#?}");
    assert!(!run.stdout.contains("root only"), "{run:#?}");
    assert!(run.stdout.contains("ROOT-ONLY-REFUSED"), "{run:#?}");
    assert!(run.stdout.starts_with("1000\n"), "{run:#?}");
    assert!(
        run.stdout.contains("WROTE") && run.stdout.contains("HOME-OK"),
        "{run:#?}"
    );
    // On disk, what the agent wrote belongs to root like the rest of the workspace.
    use std::os::unix::fs::MetadataExt;
    for path in ["existing.txt", "sub", "sub/new.txt"] {
        let meta = fs::metadata(ws.path().join(path)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "{path}");
    }
    assert_eq!(
        fs::read_to_string(ws.path().join("existing.txt")).unwrap(),
        "old\nmore\n"
    );
}
