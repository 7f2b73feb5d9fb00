//! Running programs through the sandbox helper, as the launch crate does.
//!
//! The launch crate depends on this one, so these tests cannot use it; they start the helper
//! binary directly with `std::process::Command`, in a process group of its own, with exactly
//! the environment they choose — the same way launch starts it.
#![allow(clippy::disallowed_methods)]

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sandbox::SandboxSpec;

/// How a sandboxed run ended.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

/// A directory outside the places every sandbox hides (homes, /tmp, /var/tmp, /run), so that
/// tests can place files the sandbox sees read-only. The build's own scratch directory serves
/// unless the repository itself lies in a hidden place (a clone under /tmp); then a directory
/// under /var/lib does.
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(scratch_root()).unwrap()
}

fn scratch_root() -> PathBuf {
    const HIDDEN: [&str; 5] = ["/tmp", "/var/tmp", "/run", "/home", "/root"];
    let target = canonical(Path::new(env!("CARGO_TARGET_TMPDIR")));
    if !HIDDEN.iter().any(|h| target.starts_with(h)) {
        return target;
    }
    let fallback = PathBuf::from("/var/lib/agentgrid-sandbox-tests");
    std::fs::create_dir_all(&fallback).unwrap_or_else(|e| {
        panic!(
            "the build directory {} lies where every sandbox hides files, and {} cannot be \
             made ({e}): run these tests from a clone outside /tmp and home directories",
            target.display(),
            fallback.display()
        )
    });
    fallback
}

pub fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap()
}

pub fn spec(workspace: &Path) -> SandboxSpec {
    let mut spec = SandboxSpec::new(canonical(workspace));
    spec.helper = Some(env!("CARGO_BIN_EXE_sandbox-helper").into());
    spec
}

/// Runs `sh -c script` in `spec`, with `env` as the whole environment (plus PATH), and kills
/// the run's process group if it takes longer than a minute.
pub fn run(spec: &SandboxSpec, script: &str, env: &[(&str, &str)]) -> Run {
    let cmd = sandbox::helper_command(
        spec,
        Path::new("/bin/sh"),
        "sh",
        &["-c".into(), script.into()],
        &spec.workspace,
    )
    .unwrap();
    let mut command = Command::new(&cmd.helper);
    command
        .args(&cmd.args)
        .current_dir(&spec.workspace)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs(env.iter().copied())
        .env(&cmd.env.0, &cmd.env.1)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let child = command.spawn().unwrap();
    let pgid = child.id() as i32;
    let started = Instant::now();
    let watchdog = std::thread::spawn(move || {
        while started.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(100));
            if nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), None).is_err() {
                return;
            }
        }
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    });
    let out = child.wait_with_output().unwrap();
    // The helper's group dies with the helper: nothing of the sandbox may survive it.
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = watchdog.join();
    Run {
        code: out.status.code(),
        signal: out.status.signal(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs git outside any sandbox, in `dir`.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t.invalid")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
