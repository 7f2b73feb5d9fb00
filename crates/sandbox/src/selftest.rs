//! The boundary's check of itself: a program run inside a sandbox that tries what an agent
//! would try, and reports what it reached.
//!
//! The outside half ([`SelfTest`]) prepares the bait on the host (a secret file in the home
//! directory and in a state directory, a listening Unix socket beside them) and says what the
//! inside half must find; the inside half ([`selftest_main`], the agentgrid binary started as
//! `agentgrid __sandbox-selftest` in the default sandbox) tries each and prints one line per
//! check: `ok <name>`, `leak <name>: <what it reached>`, or `info <name>: <value>`.
//! [`SelfTest::verdict`] reads the lines back. A check that printed nothing counts as a leak:
//! the test must prove the boundary, not assume it.

use std::fs;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// The first argument that makes the agentgrid binary the inside half of the self-test.
pub const SELFTEST_ARG: &str = "__sandbox-selftest";

/// Whether this process was started as the inside half of the self-test.
pub fn is_selftest_invocation() -> bool {
    std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == SELFTEST_ARG)
}

/// The inside half: runs the checks named by the arguments (`unreadable <path>`,
/// `unconnectable <path>`, `no-ip`, `private-proc <host pid>`, `uid`) and exits 0.
pub fn selftest_main() -> ! {
    let args: Vec<String> = std::env::args().skip(2).collect();
    let mut i = 0;
    while i < args.len() {
        let arg = |n: usize| args.get(i + n).cloned().unwrap_or_default();
        match args[i].as_str() {
            "unreadable" => {
                let path = PathBuf::from(arg(1));
                let name = arg(2);
                let listed = path
                    .parent()
                    .and_then(|p| fs::read_dir(p).ok())
                    .is_some_and(|mut d| {
                        d.any(|e| {
                            e.is_ok_and(|e| Some(e.file_name().as_os_str()) == path.file_name())
                        })
                    });
                match fs::read(&path) {
                    Ok(_) => println!("leak {name}: read {}", path.display()),
                    Err(_) if listed => println!("leak {name}: {} is listed", path.display()),
                    Err(_) => println!("ok {name}"),
                }
                i += 3;
            }
            "unconnectable" => {
                let path = PathBuf::from(arg(1));
                match UnixStream::connect(&path) {
                    Ok(_) => println!("leak host-socket: connected to {}", path.display()),
                    Err(_) => println!("ok host-socket"),
                }
                i += 2;
            }
            "no-ip" => {
                let tcp = std::net::TcpListener::bind("127.0.0.1:0").is_ok();
                let udp = std::net::UdpSocket::bind("0.0.0.0:0").is_ok();
                if tcp || udp {
                    println!("leak no-ip-socket: an IP socket could be made under network none");
                } else {
                    println!("ok no-ip-socket");
                }
                i += 1;
            }
            "private-proc" => {
                let host_pid = arg(1);
                let pids = fs::read_dir("/proc")
                    .map(|d| {
                        d.filter_map(Result::ok)
                            .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                            .count()
                    })
                    .unwrap_or(0);
                let engine_seen = Path::new("/proc").join(&host_pid).join("environ");
                if fs::read(&engine_seen).is_ok() || pids > 8 {
                    println!("leak private-proc: {pids} processes visible");
                } else {
                    println!("ok private-proc");
                }
                i += 2;
            }
            "uid" => {
                // SAFETY: getuid cannot fail.
                println!("info uid: {}", unsafe { libc::getuid() });
                i += 1;
            }
            other => {
                println!("leak self-test: unknown check `{other}`");
                i += 1;
            }
        }
    }
    std::process::exit(0)
}

/// The effective uid of this process (the engine's, outside any sandbox).
pub fn engine_uid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// The outside half: the bait on the host, cleaned up when dropped.
#[derive(Debug)]
pub struct SelfTest {
    dir: PathBuf,
    home_secret: Option<PathBuf>,
    state_secret: PathBuf,
    socket: PathBuf,
    _listener: UnixListener,
}

/// The names of the checks every self-test makes, in the order they are reported.
const CHECKS: &[&str] = &[
    "home-hidden",
    "state-hidden",
    "host-socket",
    "no-ip-socket",
    "private-proc",
];

impl SelfTest {
    /// Lays the bait in a fresh directory under `dir` (a place that is not hidden by name,
    /// such as the project's state directory), and in `$HOME` when there is one.
    pub fn prepare(dir: &Path) -> std::io::Result<SelfTest> {
        let dir = dir.join(format!(".sandbox-selftest-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let state_secret = dir.join("state-secret");
        fs::write(&state_secret, "agentgrid self-test\n")?;
        let socket = dir.join("host.sock");
        let listener = UnixListener::bind(&socket)?;
        let home_secret = std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|h| h.is_absolute() && h.is_dir())
            .map(|h| h.join(format!(".agentgrid-selftest-{}", std::process::id())))
            .filter(|p| fs::write(p, "agentgrid self-test\n").is_ok());
        Ok(SelfTest {
            dir,
            home_secret,
            state_secret,
            socket,
            _listener: listener,
        })
    }

    /// The directory the sandbox's workspace can be (inside the bait directory, so that only
    /// the workspace itself is named).
    pub fn workspace(&self) -> PathBuf {
        self.dir.join("workspace")
    }

    /// The arguments for the inside half.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![SELFTEST_ARG.to_string()];
        let home = self
            .home_secret
            .clone()
            .unwrap_or_else(|| PathBuf::from("/nonexistent/home"));
        for (path, name) in [(&home, "home-hidden"), (&self.state_secret, "state-hidden")] {
            args.extend([
                "unreadable".into(),
                path.display().to_string(),
                name.to_string(),
            ]);
        }
        args.extend([
            "unconnectable".into(),
            self.socket.display().to_string(),
            "no-ip".into(),
            "private-proc".into(),
            std::process::id().to_string(),
            "uid".into(),
        ]);
        args
    }

    /// Reads the inside half's output: every check with its outcome, and the uid the program
    /// ran as.
    pub fn verdict(&self, output: &str) -> (Vec<Check>, Option<u32>) {
        let mut checks = Vec::new();
        for name in CHECKS {
            let found = output.lines().find_map(|line| {
                if line == format!("ok {name}") {
                    Some((true, "held".to_string()))
                } else {
                    line.strip_prefix(&format!("leak {name}: "))
                        .map(|d| (false, d.to_string()))
                }
            });
            let (ok, detail) = found.unwrap_or((false, "the check did not report".into()));
            checks.push(Check {
                name: name.to_string(),
                ok,
                detail,
            });
        }
        let uid = output
            .lines()
            .find_map(|l| l.strip_prefix("info uid: ")?.trim().parse().ok());
        (checks, uid)
    }
}

impl Drop for SelfTest {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        if let Some(path) = &self.home_secret {
            let _ = fs::remove_file(path);
        }
    }
}
