//! What a sandbox looks like: filesystem and network modes, the paths it exposes or hides, its
//! limits, and how the description travels to the re-executed helper.

use std::path::{Path, PathBuf};

use domain::{ByteSize, Duration};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::git::GitMetadata;

/// The environment variable that carries the [`Invocation`] to the helper as JSON. The helper
/// reads it and never passes it on to the program it starts.
pub const SPEC_VAR: &str = "AGENTGRID_SANDBOX_SPEC";

/// The first argument that makes the agentgrid binary act as the sandbox helper.
pub const HELPER_ARG: &str = "__sandbox";

/// What the sandboxed program may write and reach: one type each with the manifest's.
pub use domain::{FilesystemMode, NetworkMode};

/// The relay of [`NetworkMode::Gateway`]: connections to `127.0.0.1:<port>` inside the sandbox
/// are forwarded to the Unix socket `socket` outside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayRelay {
    /// The gateway's Unix socket on the host. It is also mounted into the sandbox at the same
    /// path, so the program may use it directly.
    pub socket: PathBuf,
    /// The loopback port the relay listens on inside the sandbox.
    pub port: u16,
}

/// Resource limits. `None` means no limit of that kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Memory of the whole execution where a memory cgroup can be used; always also the data
    /// segment (`RLIMIT_DATA`: heap and private writable mappings) of each process.
    pub memory: Option<ByteSize>,
    /// Processes and threads at once: the pids cgroup where it can be used, and always
    /// `RLIMIT_NPROC` (which the kernel does not enforce for root).
    pub processes: Option<u64>,
    /// Open files of each process (`RLIMIT_NOFILE`).
    pub open_files: Option<u64>,
    /// Largest file a process may write (`RLIMIT_FSIZE`); the private `/tmp` holds at most
    /// `memory` (or 1 GiB) in all.
    pub file_size: Option<ByteSize>,
    /// CPU time of each process (`RLIMIT_CPU`).
    pub cpu_time: Option<Duration>,
    /// Wall time of the whole execution, enforced inside the sandbox: when it passes, every
    /// process in the sandbox is killed.
    pub wall_time: Option<Duration>,
}

/// Everything the helper needs to build one sandbox.
///
/// The helper binary itself is not part of the description that travels; it is where the
/// description is sent ([`SandboxSpec::helper`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSpec {
    pub filesystem: FilesystemMode,
    pub network: NetworkMode,
    /// The directory the agent works in: writable under [`FilesystemMode::WorkspaceWrite`],
    /// read-only under [`FilesystemMode::ReadOnly`].
    pub workspace: PathBuf,
    /// The workspace's git metadata when it is a linked worktree, as the engine that made the
    /// worktree knows it. Made visible read-only, even inside a hidden directory, so that `git
    /// status`, `diff` and `log` work. The sandbox never looks for it in the workspace itself
    /// (its `.git` file is the agent's to rewrite). See [`crate::git`] for what committing from
    /// inside needs.
    #[serde(default)]
    pub git: Option<GitMetadata>,
    /// More paths (directories or files) that are writable inside, at the same place.
    #[serde(default)]
    pub writable: Vec<PathBuf>,
    /// Paths that stay visible read-only even when they lie inside a hidden directory: the
    /// control socket, the prompt file.
    #[serde(default)]
    pub expose: Vec<PathBuf>,
    /// Paths whose contents are hidden: a directory appears empty, a file appears empty. Home
    /// directories (`/home`, `/root` and `$HOME`), `/run`, `/tmp` and `/var/tmp` are always
    /// hidden under the filesystem modes other than `none`.
    #[serde(default)]
    pub hide: Vec<PathBuf>,
    /// Required with [`NetworkMode::Gateway`], refused otherwise.
    #[serde(default)]
    pub gateway: Option<GatewayRelay>,
    #[serde(default)]
    pub limits: Limits,
    /// The program that becomes the helper: the agentgrid binary (or any program whose `main`
    /// calls [`crate::helper_main`] for [`HELPER_ARG`]). `None` means the running executable.
    #[serde(skip)]
    pub helper: Option<PathBuf>,
}

impl SandboxSpec {
    /// The default profile for `workspace`: workspace writable, no network, no limits.
    pub fn new(workspace: impl Into<PathBuf>) -> SandboxSpec {
        SandboxSpec {
            filesystem: FilesystemMode::default(),
            network: NetworkMode::default(),
            workspace: workspace.into(),
            git: None,
            writable: Vec::new(),
            expose: Vec::new(),
            hide: Vec::new(),
            gateway: None,
            limits: Limits::default(),
            helper: None,
        }
    }

    /// Whether this sandbox needs namespaces at all. With no filesystem and no network
    /// isolation it is only seccomp, no_new_privs, dropped capabilities and limits.
    pub fn uses_namespaces(&self) -> bool {
        self.filesystem != FilesystemMode::None || self.network != NetworkMode::Host
    }

    /// Checks that the spec is coherent, independent of the host.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: String| Err(Error::InvalidSpec { reason });
        let all = std::iter::once(&self.workspace)
            .chain(&self.writable)
            .chain(&self.expose)
            .chain(&self.hide)
            .chain(self.gateway.iter().map(|g| &g.socket))
            .chain(self.git.iter().flat_map(|g| [&g.git_dir, &g.common_dir]));
        for path in all {
            if !path.is_absolute() {
                return invalid(format!(
                    "`{}` is not an absolute path; every sandbox path must be absolute",
                    path.display()
                ));
            }
            if path
                .components()
                .any(|c| c == std::path::Component::ParentDir)
            {
                return invalid(format!(
                    "`{}` contains `..`; give sandbox paths in their plain form",
                    path.display()
                ));
            }
        }
        if self.workspace == Path::new("/") {
            return invalid("the workspace cannot be `/`".into());
        }
        match (self.network, &self.gateway) {
            (NetworkMode::Gateway, None) => {
                return invalid(
                    "network `gateway` needs a gateway relay (socket and port); none was given"
                        .into(),
                );
            }
            (NetworkMode::Gateway, Some(g)) if g.port == 0 => {
                return invalid("the gateway relay port must not be 0".into());
            }
            (NetworkMode::None | NetworkMode::Host, Some(_)) => {
                return invalid(
                    "a gateway relay is only possible with network `gateway`; drop it or change \
                     the network mode"
                        .into(),
                );
            }
            _ => {}
        }
        if let Some(0) = self.limits.processes {
            return invalid("a process limit of 0 would not even allow the program itself".into());
        }
        if self.limits.wall_time == Some(Duration::ZERO) {
            return invalid("a wall-time limit of 0 would kill the program at once".into());
        }
        Ok(())
    }
}

/// What the helper receives: the sandbox and the program to run in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocation {
    pub spec: SandboxSpec,
    /// The program's resolved path.
    pub program: PathBuf,
    /// What the program sees as its own name (`argv[0]`).
    pub arg0: String,
    pub args: Vec<String>,
    /// The working directory, the same path inside and outside.
    pub cwd: PathBuf,
    /// What the starting process found the host supports. The helper uses it instead of
    /// probing again: probing starts throwaway namespaces, a cost every execution would pay.
    #[serde(default)]
    pub support: Option<crate::probe::HostSupport>,
    /// The process that starts the helper (the engine). The sandbox ends as soon as that
    /// process does, so nothing an agent started outlives the engine.
    #[serde(default)]
    pub engine_pid: Option<u32>,
}

/// How to start the helper for one program: run `helper` with `args`, in the program's working
/// directory, with the program's environment plus `env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperCommand {
    pub helper: PathBuf,
    pub args: Vec<String>,
    pub env: (String, String),
}

/// Prepares the start of `program` (already resolved to a path) inside `spec`.
pub fn helper_command(
    spec: &SandboxSpec,
    program: &Path,
    arg0: &str,
    args: &[String],
    cwd: &Path,
) -> Result<HelperCommand, Error> {
    spec.validate()?;
    let helper = match &spec.helper {
        Some(path) => path.clone(),
        None => std::env::current_exe().map_err(|source| Error::HelperNotFound { source })?,
    };
    let invocation = Invocation {
        spec: spec.clone(),
        program: program.to_path_buf(),
        arg0: arg0.to_string(),
        args: args.to_vec(),
        cwd: cwd.to_path_buf(),
        support: Some(crate::probe::host_support().clone()),
        engine_pid: Some(std::process::id()),
    };
    let json = serde_json::to_string(&invocation).map_err(|source| Error::Encode { source })?;
    Ok(HelperCommand {
        helper,
        args: vec![HELPER_ARG.to_string()],
        env: (SPEC_VAR.to_string(), json),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_travels_as_json_without_the_helper_path() {
        let mut spec = SandboxSpec::new("/work/ws");
        spec.helper = Some("/bin/agentgrid".into());
        spec.limits.memory = Some(ByteSize(512 << 20));
        spec.limits.wall_time = Some(Duration::from_secs(5));
        let cmd = helper_command(
            &spec,
            Path::new("/bin/sh"),
            "sh",
            &["-c".into()],
            Path::new("/w"),
        )
        .unwrap();
        assert_eq!(cmd.helper, Path::new("/bin/agentgrid"));
        assert_eq!(cmd.args, [HELPER_ARG]);
        assert_eq!(cmd.env.0, SPEC_VAR);
        let back: Invocation = serde_json::from_str(&cmd.env.1).unwrap();
        assert_eq!(back.spec.helper, None);
        assert_eq!(back.spec.limits, spec.limits);
        assert_eq!(back.program, Path::new("/bin/sh"));
        assert!(cmd.env.1.contains("\"workspace-write\""), "{}", cmd.env.1);
        assert!(cmd.env.1.contains("\"512MiB\""), "{}", cmd.env.1);
    }

    #[test]
    fn incoherent_specs_are_refused_with_the_reason() {
        let base = SandboxSpec::new("/work/ws");
        let cases: Vec<(SandboxSpec, &str)> = vec![
            (SandboxSpec::new("relative/ws"), "absolute"),
            (SandboxSpec::new("/"), "cannot be `/`"),
            (
                SandboxSpec {
                    hide: vec!["/a/../b".into()],
                    ..base.clone()
                },
                "`..`",
            ),
            (
                SandboxSpec {
                    network: NetworkMode::Gateway,
                    ..base.clone()
                },
                "needs a gateway relay",
            ),
            (
                SandboxSpec {
                    gateway: Some(GatewayRelay {
                        socket: "/run/g.sock".into(),
                        port: 8080,
                    }),
                    ..base.clone()
                },
                "only possible with network `gateway`",
            ),
            (
                SandboxSpec {
                    limits: Limits {
                        processes: Some(0),
                        ..Limits::default()
                    },
                    ..base.clone()
                },
                "process limit of 0",
            ),
        ];
        for (spec, expected) in cases {
            let err = spec.validate().unwrap_err().to_string();
            assert!(err.contains(expected), "{err} should mention {expected}");
        }
        base.validate().unwrap();
    }

    #[test]
    fn only_full_opt_out_runs_without_namespaces() {
        let mut spec = SandboxSpec::new("/w");
        assert!(spec.uses_namespaces());
        spec.filesystem = FilesystemMode::None;
        assert!(
            spec.uses_namespaces(),
            "network none still needs a namespace"
        );
        spec.network = NetworkMode::Host;
        assert!(!spec.uses_namespaces());
    }
}
