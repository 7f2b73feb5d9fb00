//! The engine's side: one listener, reached by a path per execution, that checks each call's
//! token and forwards the call as that execution's.

use std::path::{Path, PathBuf};
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
    path: PathBuf,
    tokens: Tokens,
    task: tokio::task::JoinHandle<()>,
}

/// The tokens of the executions that are running, with their ids. Few (one per running
/// execution), so a call's token is compared with every one of them in constant time.
type Tokens = Arc<Mutex<Vec<(String, ExecutionId)>>>;

impl ControlHub {
    /// Listens on `path`, forwarding every authenticated call to `calls`. A socket file left
    /// at `path` by a dead engine is replaced, and a missing directory made.
    pub fn bind(path: &Path, calls: mpsc::Sender<ControlCall>) -> Result<ControlHub, Error> {
        let listener = match UnixListener::bind(path) {
            Ok(listener) => listener,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                std::fs::remove_file(path)?;
                UnixListener::bind(path)?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                UnixListener::bind(path)?
            }
            Err(e) => return Err(e.into()),
        };
        let tokens: Tokens = Arc::default();
        let known = tokens.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tokens = known.clone();
                let calls = calls.clone();
                tokio::spawn(async move {
                    if let Err(err) = serve(stream, &tokens, calls).await {
                        tracing::debug!("control connection ended: {err}");
                    }
                });
            }
        });
        Ok(ControlHub {
            path: path.to_path_buf(),
            tokens,
            task,
        })
    }

    /// Opens the channel of `execution` at `path`, accepting `token`. Until the returned
    /// endpoint is dropped, calls with the token reach the engine as this execution's.
    pub fn open(
        &self,
        path: &Path,
        execution: ExecutionId,
        token: String,
    ) -> Result<ControlEndpoint, Error> {
        match std::fs::hard_link(&self.path, path) {
            Ok(()) => {}
            // A link left by a dead engine: ours to replace.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::remove_file(path)?;
                std::fs::hard_link(&self.path, path)?;
            }
            Err(e) => return Err(e.into()),
        }
        lock(&self.tokens).push((token, execution));
        Ok(ControlEndpoint {
            path: path.to_path_buf(),
            execution,
            tokens: self.tokens.clone(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops listening and removes the socket file, even while executions still hold the hub.
    pub fn close(&self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
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
