//! The engine's side: a listener per execution that checks the token and forwards calls.

use std::path::{Path, PathBuf};

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

/// A listening control socket. Dropping it (or calling [`ControlServer::close`]) stops the
/// listener and removes the socket file.
pub struct ControlServer {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl ControlServer {
    /// Listens on `path` for `execution`, accepting only `token`, forwarding calls to `calls`.
    pub fn bind(
        path: &Path,
        execution: ExecutionId,
        token: String,
        calls: mpsc::Sender<ControlCall>,
    ) -> Result<ControlServer, Error> {
        // Tried first as is: a new execution's socket path is free and its directory exists,
        // and each extra system call is paid on every execution.
        let listener = match UnixListener::bind(path) {
            Ok(listener) => listener,
            // A socket file left by a crashed engine: it is ours to replace.
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                std::fs::remove_file(path)?;
                UnixListener::bind(path)?
            }
            // The run directory went away (a tmpfs cleaned up under a long-running engine).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                UnixListener::bind(path)?
            }
            Err(e) => return Err(e.into()),
        };
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let token = token.clone();
                let calls = calls.clone();
                tokio::spawn(async move {
                    if let Err(err) = serve(stream, execution, &token, calls).await {
                        tracing::debug!(%execution, "control connection ended: {err}");
                    }
                });
            }
        });
        Ok(ControlServer {
            path: path.to_path_buf(),
            task,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn close(self) {}
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve(
    stream: UnixStream,
    execution: ExecutionId,
    token: &str,
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
            answer(&line, execution, token, &calls).await
        };
        let mut out = serde_json::to_vec(&response).unwrap_or_default();
        out.push(b'\n');
        write.write_all(&out).await?;
        if line.len() > MAX_REQUEST_BYTES {
            return Ok(());
        }
    }
}

async fn answer(
    line: &str,
    execution: ExecutionId,
    token: &str,
    calls: &mpsc::Sender<ControlCall>,
) -> Response {
    let request: Request = match serde_json::from_str(line.trim_end()) {
        Ok(r) => r,
        Err(e) => {
            return Response::error(format!(
                "invalid request: {e}. Expected one JSON object per line with `token` and `op` \
                 (subtask_create, complete, block, comment, nudge, status)"
            ));
        }
    };
    if !constant_time_eq(request.token.as_bytes(), token.as_bytes()) {
        return Response::error("the execution token is not valid for this execution");
    }
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
