//! The engine's side: one listener, reached by a path per execution, that checks each call's
//! token and forwards the call as that execution's.
//!
//! Everything an agent can make the server hold is bounded ([`Limits`]): connections in
//! total and per execution, the time a connection may stay silent, the size of a request and
//! of each of its fields, and the number of calls of each execution. A flood of connections
//! costs the engine at most `max_connections` descriptors, and when the process runs out of
//! descriptors anyway, accepting backs off instead of spinning.

use std::collections::VecDeque;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use domain::ExecutionId;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedReadHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::limits::MAX_REQUEST_BYTES;
use crate::{Error, Limits, Op, Request, Response};

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
    shared: Arc<Shared>,
    calls: mpsc::Sender<ControlCall>,
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    closed: AtomicBool,
    /// The directory is the hub's own (the fallback for deep paths) and goes with it.
    own_dir: bool,
}

/// What the listener, the connections and the endpoints share.
struct Shared {
    limits: Limits,
    /// The running executions. Few (one per running execution), so a call's token is compared
    /// with every one of them in constant time.
    executions: Mutex<Vec<Entry>>,
    connections: Mutex<Connections>,
}

/// A running execution: its token and what it has used of its limits.
struct Entry {
    token: String,
    id: ExecutionId,
    calls: u32,
    comments: u32,
    subtasks: u32,
    connections: u32,
    /// Calls it may still make at once before they are paced, and when that was reckoned.
    allowance: f64,
    reckoned: std::time::Instant,
}

/// The open connections. Those that have not yet sent a valid token are queued oldest first,
/// each with a way to close it, so that a flood of silent connections makes room for new ones
/// instead of locking everyone out.
#[derive(Default)]
struct Connections {
    /// Connections being served, not counting those closed to make room.
    open: usize,
    /// Connections closed to make room whose tasks have not yet ended.
    closing: usize,
    next_id: u64,
    anonymous: VecDeque<(u64, oneshot::Sender<()>)>,
}

/// Unix socket paths hold at most 107 bytes. The hub's directory must leave room for the
/// longest name put in it (`control.sock`, or an execution id and `.sock`).
const MAX_DIR_LEN: usize = 107 - 1 - 25;

impl ControlHub {
    /// Listens in `dir`, forwarding every authenticated call to `calls`. When `dir` is too deep
    /// for a socket path, a directory of this process's own under the temporary directory is
    /// used instead. A socket file left by a dead engine is replaced, and a missing directory
    /// made.
    pub fn bind(dir: &Path, calls: mpsc::Sender<ControlCall>) -> Result<ControlHub, Error> {
        ControlHub::bind_with(dir, calls, Limits::default())
    }

    /// Like [`ControlHub::bind`], with `limits` instead of the default ones. The connection cap
    /// is lowered to a quarter of the process's descriptor limit when that is smaller, so that
    /// connections can never take the descriptors the engine needs for its own work.
    pub fn bind_with(
        dir: &Path,
        calls: mpsc::Sender<ControlCall>,
        mut limits: Limits,
    ) -> Result<ControlHub, Error> {
        if let Some(soft) = descriptor_limit() {
            limits.max_connections = limits.max_connections.min((soft / 4).max(8));
        }
        let own_dir = dir.as_os_str().len() > MAX_DIR_LEN;
        let dir = if own_dir {
            std::env::temp_dir().join(format!("agentgrid-control-{}", std::process::id()))
        } else {
            dir.to_path_buf()
        };
        let hub = ControlHub {
            path: dir.join("control.sock"),
            shared: Arc::new(Shared {
                limits,
                executions: Mutex::default(),
                connections: Mutex::default(),
            }),
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
        let shared = self.shared.clone();
        let calls = self.calls.clone();
        let task = tokio::spawn(accept_loop(listener, shared, calls));
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
        lock(&self.shared.executions).push(Entry {
            token,
            id: execution,
            calls: 0,
            comments: 0,
            subtasks: 0,
            connections: 0,
            allowance: f64::from(self.shared.limits.call_burst),
            reckoned: std::time::Instant::now(),
        });
        Ok(ControlEndpoint {
            path,
            execution,
            shared: self.shared.clone(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The limits in force (the connection cap as lowered for this process).
    pub fn limits(&self) -> &Limits {
        &self.shared.limits
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
    shared: Arc<Shared>,
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
        lock(&self.shared.executions).retain(|e| e.id != self.execution);
        let _ = std::fs::remove_file(&self.path);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The lists stay sound whatever panicked while they were held: a push, a retain, a count.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The soft limit on this process's open descriptors, if it can be read.
fn descriptor_limit() -> Option<usize> {
    // SAFETY: getrlimit writes one plain struct that lives on this stack frame.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the pointer is valid for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    usize::try_from(limit.rlim_cur).ok()
}

/// How long accepting pauses after a failure, at first and at most.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

async fn accept_loop(
    listener: UnixListener,
    shared: Arc<Shared>,
    calls: mpsc::Sender<ControlCall>,
) {
    // One descriptor held back for the moment the process has none left: closing it lets the
    // waiting connection be accepted and closed at once, so that it leaves the queue instead
    // of making every later accept fail the same way (and this loop spin).
    let mut reserve = std::fs::File::open("/dev/null").ok();
    let mut backoff = ACCEPT_BACKOFF.0;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                backoff = ACCEPT_BACKOFF.0;
                let Some(connection) = Connection::admit(&shared) else {
                    // Full of connections that all belong to executions: refuse this one.
                    drop(stream);
                    continue;
                };
                let shared = shared.clone();
                let calls = calls.clone();
                tokio::spawn(async move {
                    if let Err(err) = serve(stream, &shared, calls, connection).await {
                        tracing::debug!("control connection ended: {err}");
                    }
                });
            }
            Err(err) => {
                let exhausted = matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                if exhausted && reserve.take().is_some() {
                    if let Ok(Ok((stream, _))) =
                        tokio::time::timeout(Duration::ZERO, listener.accept()).await
                    {
                        drop(stream);
                    }
                    reserve = std::fs::File::open("/dev/null").ok();
                }
                tracing::warn!(
                    "the control socket could not accept a connection: {err}; trying again in \
                     {backoff:?}"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
            }
        }
    }
}

/// One open connection's share of the limits; given back when it is dropped.
struct Connection {
    id: u64,
    shared: Arc<Shared>,
    /// Fires when the connection is closed to make room, until it says whose it is.
    evicted: Option<oneshot::Receiver<()>>,
    /// The execution whose token it sent first; it serves no other.
    execution: Option<ExecutionId>,
}

impl Connection {
    /// Counts a new connection in, closing the oldest anonymous one when the cap is reached.
    /// `None` when every open connection belongs to an execution, or too many closings are
    /// still under way.
    fn admit(shared: &Arc<Shared>) -> Option<Connection> {
        let max = shared.limits.max_connections;
        let mut connections = lock(&shared.connections);
        if connections.open >= max {
            // A closed connection gives its descriptor back when its task next runs: allow
            // only so many of those in flight.
            if connections.closing >= 2 * max {
                return None;
            }
            let (_, evict) = connections.anonymous.pop_front()?;
            let _ = evict.send(());
            connections.open -= 1;
            connections.closing += 1;
        }
        connections.open += 1;
        connections.next_id += 1;
        let id = connections.next_id;
        let (evict, evicted) = oneshot::channel();
        connections.anonymous.push_back((id, evict));
        Some(Connection {
            id,
            shared: shared.clone(),
            evicted: Some(evicted),
            execution: None,
        })
    }

    /// Binds the connection to the execution whose token it sent, within that execution's cap.
    fn claim(&mut self, entry: &mut Entry) -> Result<(), String> {
        match self.execution {
            Some(id) if id == entry.id => return Ok(()),
            Some(_) => {
                return Err(
                    "this connection already serves another execution; connect again".into(),
                );
            }
            None => {}
        }
        let max = self.shared.limits.max_connections_per_execution;
        if entry.connections >= max {
            return Err(format!(
                "execution #{} already holds {max} control connections, the most allowed; \
                 close one before opening another",
                entry.id
            ));
        }
        {
            let mut connections = lock(&self.shared.connections);
            let Some(at) = connections
                .anonymous
                .iter()
                .position(|(id, _)| *id == self.id)
            else {
                // Closed to make room just as its first request came.
                return Err("the engine had too many control connections; connect again".into());
            };
            connections.anonymous.remove(at);
        }
        entry.connections += 1;
        self.execution = Some(entry.id);
        self.evicted = None;
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        {
            let mut connections = lock(&self.shared.connections);
            let queued = connections
                .anonymous
                .iter()
                .position(|(id, _)| *id == self.id);
            match (self.execution, queued) {
                // Closed to make room: already counted as closing.
                (None, None) => connections.closing = connections.closing.saturating_sub(1),
                (_, Some(at)) => {
                    connections.anonymous.remove(at);
                    connections.open = connections.open.saturating_sub(1);
                }
                (Some(_), None) => connections.open = connections.open.saturating_sub(1),
            }
        }
        if let Some(execution) = self.execution {
            for entry in lock(&self.shared.executions).iter_mut() {
                if entry.id == execution {
                    entry.connections = entry.connections.saturating_sub(1);
                }
            }
        }
    }
}

/// What reading one request line gave.
enum Read {
    Line,
    TooLong,
    End,
}

/// Reads one line into `line` (without its newline), keeping at most `max` bytes: the rest of
/// a longer line is read and thrown away, so that the connection can go on.
async fn read_request(
    reader: &mut BufReader<OwnedReadHalf>,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Read> {
    let mut too_long = false;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(match (too_long, line.is_empty()) {
                (true, _) => Read::TooLong,
                (false, true) => Read::End,
                (false, false) => Read::Line,
            });
        }
        let (part, used, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        if !too_long {
            if line.len() + part.len() > max {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(part);
            }
        }
        reader.consume(used);
        if done {
            return Ok(if too_long { Read::TooLong } else { Read::Line });
        }
    }
}

async fn serve(
    stream: UnixStream,
    shared: &Shared,
    calls: mpsc::Sender<ControlCall>,
    mut connection: Connection,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    let limits = &shared.limits;
    loop {
        line.clear();
        let wait = match connection.execution {
            None => limits.first_request_timeout,
            Some(_) => limits.idle_timeout,
        };
        let request = tokio::time::timeout(
            wait,
            read_request(&mut reader, &mut line, MAX_REQUEST_BYTES),
        );
        let read = match connection.evicted.as_mut() {
            Some(evicted) => tokio::select! {
                read = request => read,
                _ = evicted => return Ok(()),
            },
            None => request.await,
        };
        // Silent for too long: the connection goes, and with it its descriptor.
        let Ok(read) = read else { return Ok(()) };
        let response = match read? {
            Read::End => return Ok(()),
            Read::TooLong => Response::error(format!(
                "request larger than {} KiB: no valid call is that large (a comment holds at \
                 most {} KiB, a body {} KiB); send less",
                MAX_REQUEST_BYTES / 1024,
                limits.max_text_bytes / 1024,
                limits.max_body_bytes / 1024
            )),
            Read::Line => answer(&line, shared, &calls, &mut connection).await,
        };
        let mut out = serde_json::to_vec(&response).unwrap_or_default();
        out.push(b'\n');
        // A client that never reads its answers must not hold the connection for ever.
        match tokio::time::timeout(limits.idle_timeout, write.write_all(&out)).await {
            Ok(written) => written?,
            Err(_) => return Ok(()),
        }
    }
}

async fn answer(
    line: &[u8],
    shared: &Shared,
    calls: &mpsc::Sender<ControlCall>,
    connection: &mut Connection,
) -> Response {
    let request: Request = match serde_json::from_slice(line.trim_ascii_end()) {
        Ok(r) => r,
        Err(e) => {
            return Response::error(format!(
                "invalid request: {e}. Expected one JSON object per line with `token` and `op` \
                 (subtask_create, complete, block, comment, nudge, status)"
            ));
        }
    };
    let call = crate::refusal::call_name(&request.op);
    let refused = |why: String| Response::error(crate::refusal::for_agent(call, &why));
    let (execution, pause) = match admit_call(shared, connection, &request) {
        Ok(admitted) => admitted,
        Err(message) => return refused(message),
    };
    if !pause.is_zero() {
        tokio::time::sleep(pause).await;
    }
    let counted = match request.op {
        Op::SubtaskCreate { .. } => Some(Counted::Subtask),
        Op::Comment { .. } | Op::Block { .. } | Op::ApprovalRequest { .. } => {
            Some(Counted::Comment)
        }
        _ => None,
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
        Ok(Ok(data)) => {
            // A call under a key already used made nothing, so it takes nothing from the
            // execution's allowance of sub-tasks or comments.
            if data.get("existed").and_then(|v| v.as_bool()) == Some(true)
                && let Some(counted) = counted
            {
                refund(shared, execution, counted);
            }
            Response::ok(data)
        }
        Ok(Err(message)) => refused(message),
        Err(_) => Response::error("the engine dropped the call; try again"),
    }
}

/// The per-execution counts a call can take from.
#[derive(Debug, Clone, Copy)]
enum Counted {
    Subtask,
    Comment,
}

fn refund(shared: &Shared, execution: ExecutionId, counted: Counted) {
    let mut executions = lock(&shared.executions);
    if let Some(entry) = executions.iter_mut().find(|e| e.id == execution) {
        match counted {
            Counted::Subtask => entry.subtasks = entry.subtasks.saturating_sub(1),
            Counted::Comment => entry.comments = entry.comments.saturating_sub(1),
        }
    }
}

/// Checks a request's token, its fields and its execution's counts, and counts it. Only a call
/// that passes reaches the engine, after the pause returned (none while the execution keeps
/// within its rate).
fn admit_call(
    shared: &Shared,
    connection: &mut Connection,
    request: &Request,
) -> Result<(ExecutionId, Duration), String> {
    let limits = &shared.limits;
    let mut executions = lock(&shared.executions);
    let entry = entry_of(&mut executions, &request.token)
        .ok_or("the execution token is not valid: it belongs to no running execution")?;
    connection.claim(entry)?;
    if entry.calls >= limits.max_calls_per_execution {
        return Err(format!(
            "execution #{} has made {} control calls, the most allowed per execution; no more \
             are answered",
            entry.id, limits.max_calls_per_execution
        ));
    }
    entry.calls += 1;
    limits.check(&request.op)?;
    match request.op {
        Op::Comment { .. } | Op::Block { .. } | Op::ApprovalRequest { .. } => {
            if entry.comments >= limits.max_comments_per_execution {
                return Err(format!(
                    "execution #{} has made {} comments, the most allowed ({} comments per \
                     execution); put the rest in the task's files",
                    entry.id, entry.comments, limits.max_comments_per_execution
                ));
            }
            entry.comments += 1;
        }
        Op::SubtaskCreate { .. } => {
            if entry.subtasks >= limits.max_subtasks_per_execution {
                return Err(format!(
                    "execution #{} has created {} sub-tasks, the most allowed ({} sub-tasks per \
                     execution)",
                    entry.id, entry.subtasks, limits.max_subtasks_per_execution
                ));
            }
            entry.subtasks += 1;
        }
        // Messages are counted by the tracker, per execution and across restarts.
        Op::Complete { .. }
        | Op::Handoff { .. }
        | Op::Nudge { .. }
        | Op::Status
        | Op::WorkflowStart { .. }
        | Op::BlackboardSet { .. }
        | Op::BlackboardGet { .. }
        | Op::BlackboardList
        | Op::MsgSend { .. }
        | Op::MsgInbox
        | Op::MsgAck { .. }
        | Op::Escalate { .. }
        | Op::EscalateUp { .. }
        | Op::EscalationAnswer { .. } => {}
        // Leases are bounded by the tracker: per take and held per execution.
        Op::LeaseTake { .. } | Op::LeaseRelease { .. } | Op::LeaseList => {}
    }
    Ok((entry.id, pace(entry, limits)))
}

/// Takes one call from the execution's allowance, which refills at `calls_per_second` up to
/// `call_burst`, and says how long the call must wait for its turn. Calls made at once on
/// several connections each wait for their own turn, since the allowance goes below zero.
fn pace(entry: &mut Entry, limits: &Limits) -> Duration {
    let rate = f64::from(limits.calls_per_second.max(1));
    let now = std::time::Instant::now();
    let refill = now.duration_since(entry.reckoned).as_secs_f64() * rate;
    entry.allowance = (entry.allowance + refill).min(f64::from(limits.call_burst.max(1)));
    entry.reckoned = now;
    entry.allowance -= 1.0;
    if entry.allowance >= 0.0 {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(-entry.allowance / rate)
    }
}

/// The entry whose token this is, comparing with every running one in constant time.
fn entry_of<'a>(executions: &'a mut [Entry], token: &str) -> Option<&'a mut Entry> {
    let found = executions
        .iter()
        .enumerate()
        .fold(None, |found, (i, entry)| {
            if constant_time_eq(entry.token.as_bytes(), token.as_bytes()) {
                Some(i)
            } else {
                found
            }
        })?;
    executions.get_mut(found)
}

/// Compares without stopping at the first difference, so timing reveals nothing of the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
