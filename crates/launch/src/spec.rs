//! What to start: the program, its arguments, working directory, environment and standard input.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use crate::Error;

/// What the child reads on its standard input.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StdinSpec {
    /// `/dev/null`: the child sees end of input at once.
    #[default]
    Null,
    /// These bytes, then end of input.
    Bytes(Vec<u8>),
}

/// Everything needed to start one child process.
///
/// `env` is the complete environment: the child gets exactly these variables and nothing of the
/// parent's. Start from [`base_env`] to pass on the few variables that are safe to inherit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    /// A path (if it contains a `/`, relative paths are taken from `cwd`) or a name looked up in
    /// the `PATH` of `env`.
    pub program: String,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    pub stdin: StdinSpec,
    /// When set, the child runs inside this sandbox (see the sandbox crate): the agentgrid
    /// binary starts first as the sandbox helper and becomes the program once the sandbox
    /// stands. Its output, process group and exit are the program's.
    pub sandbox: Option<sandbox::SandboxSpec>,
}

impl LaunchSpec {
    /// A spec with no arguments, [`base_env`] as its environment and no standard input.
    pub fn new(program: impl Into<String>, cwd: impl Into<PathBuf>) -> LaunchSpec {
        LaunchSpec {
            program: program.into(),
            args: Vec::new(),
            cwd: cwd.into(),
            env: base_env(),
            stdin: StdinSpec::Null,
            sandbox: None,
        }
    }

    /// Runs the child inside `sandbox`.
    pub fn with_sandbox(mut self, sandbox: sandbox::SandboxSpec) -> LaunchSpec {
        self.sandbox = Some(sandbox);
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> LaunchSpec {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> LaunchSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one variable, replacing an earlier value of the same name.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> LaunchSpec {
        set_var(&mut self.env, key.into(), value.into());
        self
    }

    /// Replaces the whole environment.
    pub fn with_env_exactly(mut self, env: Vec<(String, String)>) -> LaunchSpec {
        self.env = env;
        self
    }

    pub fn with_stdin(mut self, bytes: impl Into<Vec<u8>>) -> LaunchSpec {
        self.stdin = StdinSpec::Bytes(bytes.into());
        self
    }

    /// The value this spec gives to a variable, if any.
    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Where the program is: the path itself if it holds a `/`, otherwise the first executable
    /// of that name in the `PATH` of this spec's environment (never the parent's `PATH`, so what
    /// runs is what the spec says).
    pub fn resolve_program(&self) -> Result<PathBuf, Error> {
        if self.program.contains('/') {
            let path = Path::new(&self.program);
            let path = if path.is_absolute() {
                path.to_path_buf()
            } else {
                self.cwd.join(path)
            };
            return if is_executable(&path) {
                Ok(path)
            } else {
                Err(Error::NotExecutable { path })
            };
        }
        let search = self.env_value("PATH").unwrap_or("");
        find_on_path(&self.program, search).ok_or_else(|| Error::ProgramNotFound {
            program: self.program.clone(),
            path: search.to_string(),
        })
    }
}

/// The first executable named `program` in a directory of `search` (a `PATH` value), the
/// lookup of [`LaunchSpec::resolve_program`] and of the pre-flight check, which run one after
/// the other for every execution and so share what was found.
pub(crate) fn find_on_path(program: &str, search: &str) -> Option<PathBuf> {
    if let Some(found) = recently_found(search, program) {
        return Some(found);
    }
    // Empty PATH entries traditionally mean the current directory; skipping them keeps a
    // stray `::` from running whatever happens to lie in the workspace.
    let found = search
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| is_executable(candidate))?;
    remember_found(search, program, &found);
    Some(found)
}

/// Where a program name was last found on a `PATH`, and when. Looking a name up costs one
/// failed `stat` per `PATH` entry before the one that holds it (a dozen on a typical developer
/// machine), paid on every execution of the same agent otherwise. An entry is trusted for
/// [`FOUND_FOR`], and only while the file is still an executable, so a program installed
/// earlier on the `PATH` is picked up soon after.
type FoundKey = (String, String);
static FOUND: LazyLock<Mutex<HashMap<FoundKey, (PathBuf, Instant)>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
const FOUND_FOR: Duration = Duration::from_secs(1);
/// Past this many names the memory is simply cleared: it only saves system calls.
const FOUND_MAX: usize = 256;

fn recently_found(search: &str, program: &str) -> Option<PathBuf> {
    let found = FOUND.lock().unwrap_or_else(|p| p.into_inner());
    let key = (search.to_string(), program.to_string());
    let (path, at) = found.get(&key)?;
    (at.elapsed() < FOUND_FOR && is_executable(path)).then(|| path.clone())
}

fn remember_found(search: &str, program: &str, path: &Path) {
    let mut found = FOUND.lock().unwrap_or_else(|p| p.into_inner());
    if found.len() >= FOUND_MAX {
        found.clear();
    }
    found.insert(
        (search.to_string(), program.to_string()),
        (path.to_path_buf(), Instant::now()),
    );
}

/// Variables passed on from this process when set: what a program needs to find its tools, its
/// home, its language and its temporary directory. Nothing else leaks into children. Without a
/// `PATH` in this process, a conventional one is used so that standard tools can still be found.
pub fn base_env() -> Vec<(String, String)> {
    const INHERITED: [&str; 8] = [
        "PATH", "HOME", "USER", "LANG", "LC_ALL", "TERM", "TMPDIR", "TZ",
    ];
    let mut env: Vec<(String, String)> = INHERITED
        .iter()
        .filter_map(|key| {
            std::env::var(key)
                .ok()
                .map(|value| (key.to_string(), value))
        })
        .collect();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.insert(0, ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
    }
    env
}

/// Sets `key` in an environment list, replacing any earlier value.
pub fn set_var(env: &mut Vec<(String, String)>, key: String, value: String) {
    env.retain(|(k, _)| *k != key);
    env.push((key, value));
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_env_replaces_an_earlier_value() {
        let spec = LaunchSpec::new("true", "/")
            .with_env_exactly(vec![])
            .with_env("A", "1");
        let spec = spec.with_env("B", "2").with_env("A", "3");
        assert_eq!(
            spec.env,
            vec![("B".into(), "2".into()), ("A".into(), "3".into())]
        );
        assert_eq!(spec.env_value("A"), Some("3"));
    }

    #[test]
    fn programs_are_found_only_in_the_spec_path() {
        let spec =
            LaunchSpec::new("sh", "/").with_env_exactly(vec![("PATH".into(), "/bin".into())]);
        assert!(spec.resolve_program().unwrap().ends_with("sh"));
        let spec = spec.with_env_exactly(vec![("PATH".into(), "/nonexistent".into())]);
        let err = spec.resolve_program().unwrap_err().to_string();
        assert!(
            err.contains("`sh`") && err.contains("/nonexistent"),
            "{err}"
        );
    }

    #[test]
    fn a_program_found_before_is_not_run_once_it_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("agentgrid-test-tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("/nonexistent:{}", dir.path().display());
        let spec = LaunchSpec::new("agentgrid-test-tool", "/")
            .with_env_exactly(vec![("PATH".into(), path)]);
        assert_eq!(spec.resolve_program().unwrap(), tool);
        // Found again from memory, then not at all once the file is gone.
        assert_eq!(spec.resolve_program().unwrap(), tool);
        std::fs::remove_file(&tool).unwrap();
        assert!(matches!(
            spec.resolve_program(),
            Err(Error::ProgramNotFound { .. })
        ));
        // Another PATH is looked up on its own.
        let other = spec.with_env_exactly(vec![("PATH".into(), "/nonexistent".into())]);
        assert!(other.resolve_program().is_err());
    }

    #[test]
    fn base_env_holds_only_known_variables_and_always_a_path() {
        let env = base_env();
        assert!(env.iter().any(|(k, _)| k == "PATH"));
        let known = [
            "PATH", "HOME", "USER", "LANG", "LC_ALL", "TERM", "TMPDIR", "TZ",
        ];
        assert!(
            env.iter().all(|(k, _)| known.contains(&k.as_str())),
            "{env:?}"
        );
    }
}
