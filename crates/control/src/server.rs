//! The engine's side: one listener, reached by a path per execution, that checks each call's
//! token and forwards the call as that execution's.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use domain::ExecutionId;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::{Error, MAX_REQUEST_BYTES, Op, Request, Response};

/// One authenticated call for the engine to answer.
#[derive(Debug)]
pub struct ControlCall {
    pub execution: ExecutionId,
    pub op: Op,
    pub reply: oneshot::Sender<Result<serde_json::Value, String>>,
}

/// The engine's listening control socket. Each execution reaches it through a path of its own,
/// a hard link to the socket made by [`ControlHub::open`]: on Linux, connecting to any name of a
/// socket's inode reaches its listener. A link costs one system call where a listener of its
/// own per execution cost six (socket, bind, listen, the poller's registration and removal,
/// close) and a task. The token of each call says which execution it comes from.
pub struct ControlHub {
    /// The socket; the executions' links sit beside it (a link cannot cross file systems).
    path: PathBuf,
    tokens: Tokens,
    calls: mpsc::Sender<ControlCall>,
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    closed: AtomicBool,
    /// The directory is the hub's own (the fallback for deep paths) and goes with it.
    own_dir: bool,
}

/// The tokens of the executions that are running, with their ids. Few (one per running
/// execution), so a call's token is compared with every one of them in constant time.
type Tokens = Arc<Mutex<Vec<(String, ExecutionId)>>>;

/// Unix socket paths hold at most 107 bytes. The hub's directory must leave room for the
/// longest name put in it (`control.sock`, or an execution id and `.sock`).
const MAX_DIR_LEN: usize = 107 - 1 - 25;

impl ControlHub {
    /// Listens in `dir`, forwarding every authenticated call to `calls`. When `dir` is too deep
    /// for a socket path, a directory of this process's own under the temporary directory is
    /// used instead. A socket file left by a dead engine is replaced, and a missing directory
    /// made.
    pub fn bind(dir: &Path, calls: mpsc::Sender<ControlCall>) -> Result<ControlHub, Error> {
        let own_dir = dir.as_os_str().len() > MAX_DIR_LEN;
        let dir = if own_dir {
            std::env::temp_dir().join(format!("agentgrid-control-{}", std::process::id()))
        } else {
            dir.to_path_buf()
        };
        let hub = ControlHub {
            path: dir.join("control.sock"),
            tokens: Arc::default(),
            calls,
            listener: Mutex::new(None),
            closed: AtomicBool::new(false),
            own_dir,
        };
        hub.listen()?;
        Ok(hub)
    }

    /// Binds the socket and starts accepting, replacing an earlier listener.
    fn listen(&self) -> Result<(), Error> {
        let listener = match UnixListener::bind(&self.path) {
            Ok(listener) => listener,
            // A socket file left by a crashed engine: it is ours to replace.
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                std::fs::remove_file(&self.path)?;
                UnixListener::bind(&self.path)?
            }
            // The directory is missing: never made, or removed under a long-running engine
            // (a runtime directory cleaned up at logout).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = self.path.parent() {
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(dir)?;
                }
                UnixListener::bind(&self.path)?
            }
            Err(e) => return Err(e.into()),
        };
        let tokens = self.tokens.clone();
        let calls = self.calls.clone();
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let tokens = tokens.clone();
                        let calls = calls.clone();
                        tokio::spawn(async move {
                            if let Err(err) = serve(stream, &tokens, calls).await {
                                tracing::debug!("control connection ended: {err}");
                            }
                        });
                    }
                    // Out of file descriptors, say: the other connections and every later
                    // one must not lose their channel over it.
                    Err(err) => {
                        tracing::warn!("the control socket could not accept a connection: {err}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
        });
        let mut slot = self.listener.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = slot.replace(task) {
            old.abort();
        }
        Ok(())
    }

    /// Opens the channel of `execution`, accepting `token`, at a path of its own beside the
    /// socket (see [`ControlEndpoint::path`]). Until the endpoint is dropped, calls with the
    /// token reach the engine as this execution's.
    pub fn open(&self, execution: ExecutionId, token: String) -> Result<ControlEndpoint, Error> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Io(std::io::Error::other(
                "the engine's control socket is closed",
            )));
        }
        let path = self.path.with_file_name(format!("{execution}.sock"));
        match std::fs::hard_link(&self.path, &path) {
            Ok(()) => {}
            // A link left by a dead engine: ours to replace.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::remove_file(&path)?;
                std::fs::hard_link(&self.path, &path)?;
            }
            // The socket file or its directory went away: listen again, then link.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(
                    "the control socket {} was gone; listening again",
                    self.path.display()
                );
                self.listen()?;
                std::fs::hard_link(&self.path, &path)?;
            }
            Err(e) => return Err(e.into()),
        }
        lock(&self.tokens).push((token, execution));
        Ok(ControlEndpoint {
            path,
            execution,
            tokens: self.tokens.clone(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops listening and removes the socket file, even while executions still hold the hub.
    /// Only the first call does anything, so a hub dropped late never removes a socket that a
    /// later engine made at the same path.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(task) = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
        let _ = std::fs::remove_file(&self.path);
        if self.own_dir
            && let Some(dir) = self.path.parent()
        {
            // Only once empty: links of executions still running stay reachable.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

impl Drop for ControlHub {
    fn drop(&mut self) {
        self.close();
    }
}

/// One execution's control channel. Dropping it (or calling [`ControlEndpoint::close`])
/// removes its path and forgets its token: from then on the token opens nothing.
pub struct ControlEndpoint {
    path: PathBuf,
    execution: ExecutionId,
    tokens: Tokens,
}

impl ControlEndpoint {
    /// The execution's socket path, for `AGENTGRID_CONTROL_SOCKET`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn close(self) {}
}

impl Drop for ControlEndpoint {
    fn drop(&mut self) {
        lock(&self.tokens).retain(|(_, id)| *id != self.execution);
        let _ = std::fs::remove_file(&self.path);
    }
}

fn lock(tokens: &Tokens) -> std::sync::MutexGuard<'_, Vec<(String, ExecutionId)>> {
    // The list stays sound whatever panicked while it was held: a push or a retain.
    tokens
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The execution whose token this is, comparing with every running one in constant time.
fn execution_of(tokens: &Tokens, token: &str) -> Option<ExecutionId> {
    lock(tokens).iter().fold(None, |found, (known, id)| {
        if constant_time_eq(known.as_bytes(), token.as_bytes()) {
            Some(*id)
        } else {
            found
        }
    })
}

async fn serve(
    stream: UnixStream,
    tokens: &Tokens,
    calls: mpsc::Sender<ControlCall>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        if (&mut reader)
            .take(MAX_REQUEST_BYTES as u64 + 1)
            .read_line(&mut line)
            .await?
            == 0
        {
            return Ok(());
        }
        let response = if line.len() > MAX_REQUEST_BYTES {
            Response::error(format!(
                "request larger than {MAX_REQUEST_BYTES} bytes; send less"
            ))
        } else {
            answer(&line, tokens, &calls).await
        };
        let mut out = serde_json::to_vec(&response).unwrap_or_default();
        out.push(b'\n');
        write.write_all(&out).await?;
        if line.len() > MAX_REQUEST_BYTES {
            return Ok(());
        }
    }
}

async fn answer(line: &str, tokens: &Tokens, calls: &mpsc::Sender<ControlCall>) -> Response {
    let request: Request = match serde_json::from_str(line.trim_end()) {
        Ok(r) => r,
        Err(e) => {
            return Response::error(format!(
                "invalid request: {e}. Expected one JSON object per line with `token` and `op` \
                 (subtask_create, complete, block, comment, nudge, status)"
            ));
        }
    };
    let Some(execution) = execution_of(tokens, &request.token) else {
        return Response::error(
            "the execution token is not valid: it belongs to no running execution",
        );
    };
    let (reply, answer) = oneshot::channel();
    if calls
        .send(ControlCall {
            execution,
            op: request.op,
            reply,
        })
        .await
        .is_err()
    {
        return Response::error("the engine is shutting down; try again later");
    }
    match answer.await {
        Ok(Ok(data)) => Response::ok(data),
        Ok(Err(message)) => Response::error(message),
        Err(_) => Response::error("the engine dropped the call; try again"),
    }
}

/// Compares without stopping at the first difference, so timing reveals nothing of the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
