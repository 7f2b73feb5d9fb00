//! Long-running children: [`spawn`] with live output to a log file and a channel, and the
//! [`Process`] handle to watch, signal and wait for them.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use domain::{Clock, SystemClock, Timestamp, Usage};
use nix::sys::signal::Signal;
use tokio::sync::{mpsc, oneshot};

use crate::group::wait_gone;
use crate::output::{Lines, Ring, Tail, render_line};
use crate::start::{OutputSink, RawExit, start, watch};
use crate::{Error, LaunchSpec, OutputLine, Stream};

/// How long [`Process::wait`] waits for the output readers after the group was killed. They
/// normally end at once; only a descendant that left the group can hold a pipe open longer.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// How long [`Process::wait`] and [`crate::run`] wait for the killed group to vanish.
pub(crate) const SETTLE_GRACE: Duration = Duration::from_secs(5);

/// Where a spawned child's output goes.
#[derive(Debug, Clone)]
pub struct OutputSpec {
    /// Every line, stdout and stderr merged in arrival order, is appended here. The file is
    /// created with the first line, so a child that prints nothing leaves no empty file behind;
    /// whether it can be created is checked before the child starts.
    pub log_file: Option<PathBuf>,
    /// Every line, tagged with its stream, as long as the receiver keeps up. Lines that find the
    /// channel full are dropped (and counted), never the log file's.
    pub line_tx: Option<mpsc::Sender<OutputLine>>,
    /// Longer lines are cut to this many bytes and end in a marker, in the log and the channel.
    pub max_line_bytes: usize,
    /// How many bytes of the latest output to keep in memory for [`Exit::tail`].
    pub tail_bytes: usize,
    /// The most the log file may hold, counting what it held before (earlier iterations of
    /// the same execution append to it). Past this, the log keeps the head it has and the last
    /// `log_tail_bytes` of the output, written when the child ends with a note that counts
    /// what was dropped. Output past the cap reaches neither `line_tx` nor
    /// [`Process::last_output_at`]: it is not a sign of life.
    pub max_log_bytes: u64,
    /// How much of the output past the cap is kept in memory for the log's end.
    pub log_tail_bytes: usize,
}

/// The default cap on an execution's log, and the part of it kept for the tail.
pub const MAX_LOG_BYTES: u64 = 16 << 20;
pub const LOG_TAIL_BYTES: usize = 1 << 20;

impl Default for OutputSpec {
    fn default() -> OutputSpec {
        OutputSpec {
            log_file: None,
            line_tx: None,
            max_line_bytes: 64 * 1024,
            tail_bytes: 16 * 1024,
            max_log_bytes: MAX_LOG_BYTES,
            log_tail_bytes: LOG_TAIL_BYTES,
        }
    }
}

/// How a child ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// The exit code, if it exited by itself.
    pub code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// User plus system CPU time of the child and of the descendants it waited for.
    pub cpu_ms: u64,
    /// From spawn to exit.
    pub wall_ms: u64,
    /// The last `tail_bytes` of its output.
    pub tail: String,
}

impl Exit {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    pub fn usage(&self) -> Usage {
        Usage {
            wall_ms: self.wall_ms,
            cpu_ms: self.cpu_ms,
        }
    }

    /// "exited with 3", "killed by SIGTERM".
    pub fn describe(&self) -> String {
        describe_status(self.code, self.signal)
    }
}

pub(crate) fn describe_status(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(c), _) => format!("exited with {c}"),
        (None, Some(s)) => match Signal::try_from(s) {
            Ok(sig) => format!("killed by {sig}"),
            Err(_) => format!("killed by signal {s}"),
        },
        (None, None) => "ended".into(),
    }
}

/// What the readers of one child share.
struct Shared {
    started: Instant,
    /// Milliseconds from `started` to the latest line, and the wall clock at that moment.
    last_output_ms: AtomicU64,
    last_output_at: AtomicU64,
    dropped_lines: AtomicU64,
    /// Set once the log cap was reached: from then on output is only counted and its last
    /// bytes kept, without being cut into lines.
    capped: AtomicBool,
    sink: Mutex<Sink>,
}

struct Sink {
    log: Log,
    /// Records waiting to be written, so that the log gets one write per read of a pipe
    /// rather than one per line.
    pending: Vec<u8>,
    /// What the log may still take before it is capped.
    head_left: u64,
    /// The cap, for the notes.
    max_log_bytes: u64,
    /// Output past the cap; its last bytes go to the end of the log.
    over: Ring,
    /// The closing note and the tail were written.
    finished: bool,
    tail: Tail,
    line_tx: Option<mpsc::Sender<OutputLine>>,
}

/// The log file, opened when the first line comes.
enum Log {
    None,
    Pending(PathBuf),
    Open(PathBuf, File),
}

impl Shared {
    fn line(&self, stream: Stream, bytes: &[u8], cut: usize) {
        let (text, cut_bytes) = render_line(bytes, cut);
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        let record_len = text.len() as u64 + 1;
        if self.capped.load(Ordering::Relaxed) || record_len > sink.head_left {
            if !self.capped.swap(true, Ordering::Relaxed) {
                let note = format!(
                    "[agentgrid: the log is full ({} per execution): later output is logged only \
                     as its last {} bytes, when the process ends]\n",
                    human_bytes(sink.max_log_bytes),
                    sink.over.capacity()
                );
                sink.pending.extend_from_slice(note.as_bytes());
            }
            sink.over.push(text.as_bytes());
            sink.over.push(b"\n");
            return;
        }
        sink.head_left -= record_len;
        self.last_output_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.last_output_at
            .store(SystemClock.now().0.max(0) as u64, Ordering::Relaxed);
        sink.pending.extend_from_slice(text.as_bytes());
        sink.pending.push(b'\n');
        let start = sink.pending.len() - record_len as usize;
        let record = sink.pending[start..].to_vec();
        sink.tail.push(&record);
        if let Some(tx) = &sink.line_tx {
            match tx.try_send(OutputLine {
                stream,
                text,
                cut_bytes,
            }) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.dropped_lines.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => sink.line_tx = None,
            }
        }
    }

    /// Output past the cap: counted, its last bytes kept. The parts go in together, so that
    /// the other pipe's output cannot come between them.
    fn over_cap(&self, parts: &[&[u8]]) {
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        for part in parts {
            sink.over.push(part);
        }
    }

    /// Writes what is pending to the log.
    fn flush(&self) {
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        sink.flush();
    }

    /// Once the output has ended: the note on what the cap dropped, and the tail it kept.
    fn finish(&self) {
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        if std::mem::replace(&mut sink.finished, true) {
            return;
        }
        if self.capped.load(Ordering::Relaxed) {
            let mut kept = sink.over.bytes();
            // The kept part starts where the ring cut it; a line begun before is dropped whole.
            if sink.over.total > kept.len() as u64
                && let Some(newline) = kept.iter().position(|&b| b == b'\n')
            {
                kept.drain(..=newline);
            }
            let dropped = sink.over.total - kept.len() as u64;
            let note = format!(
                "[agentgrid: {dropped} bytes of output not logged: past the cap of {} the log \
                 keeps only the last {} bytes]\n",
                human_bytes(sink.max_log_bytes),
                kept.len()
            );
            sink.pending.extend_from_slice(note.as_bytes());
            sink.pending.extend_from_slice(&kept);
            if !kept.ends_with(b"\n") && !kept.is_empty() {
                sink.pending.push(b'\n');
            }
            sink.tail.push(&kept);
        }
        sink.flush();
    }
}

impl Sink {
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        if let Log::Pending(path) = &self.log {
            self.log = match open_log(path) {
                Ok(file) => Log::Open(path.clone(), file),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot create the output log; the output goes unlogged");
                    Log::None
                }
            };
        }
        if let Log::Open(path, file) = &mut self.log
            && let Err(e) = file.write_all(&self.pending)
        {
            // A full disk must not kill the child; the log stops and says why, once.
            tracing::warn!(path = %path.display(), error = %e, "cannot write the output log; further output goes unlogged");
            self.log = Log::None;
        }
        self.pending.clear();
    }
}

/// "16 MiB", "300 bytes".
fn human_bytes(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

/// A running child, leader of its own process group (its pgid is its pid).
///
/// Dropping a `Process` neither kills nor leaks it: its watcher (a task of the runtime, or a
/// thread outside one) reaps the child and kills the rest of its group whenever it exits, as
/// long as the runtime runs.
pub struct Process {
    pub pid: i32,
    shared: Arc<Shared>,
    exit: oneshot::Receiver<Result<RawExit, String>>,
    /// Resolves once both pipes were read to their end.
    drained: oneshot::Receiver<()>,
    finished: Arc<AtomicBool>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.pid)
            .field("exited", &self.has_exited())
            .finish()
    }
}

/// Starts `spec` and streams its output as `output` says. Returns once the child runs.
///
/// Inside a cancelled [`crate::cancellable`] scope nothing starts ([`Error::Cancelled`]); a
/// child that runs when the scope is cancelled is the caller's to stop (see
/// [`crate::cancelled`]), with the grace it owes it.
pub fn spawn(spec: LaunchSpec, output: OutputSpec) -> Result<Process, Error> {
    if crate::cancel::is_cancelled() {
        return Err(Error::Cancelled {
            program: spec.program,
        });
    }
    let (log, logged) = match output.log_file {
        Some(path) => match check_log(&path) {
            Ok(Some(file)) => {
                let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                (Log::Open(path, file), len)
            }
            Ok(None) => (Log::Pending(path), 0),
            Err(source) => return Err(Error::LogFile { path, source }),
        },
        None => (Log::None, 0),
    };
    let room = output.max_log_bytes.saturating_sub(logged);
    let tail_room = (output.log_tail_bytes as u64).min(room / 2);
    let child = start(spec)?;
    let pid = child.pid;
    let shared = Arc::new(Shared {
        started: child.started,
        last_output_ms: AtomicU64::new(0),
        last_output_at: AtomicU64::new(SystemClock.now().0.max(0) as u64),
        dropped_lines: AtomicU64::new(0),
        capped: AtomicBool::new(false),
        sink: Mutex::new(Sink {
            log,
            pending: Vec::new(),
            head_left: room - tail_room,
            max_log_bytes: output.max_log_bytes,
            over: Ring::new(tail_room as usize),
            finished: false,
            tail: Tail::new(output.tail_bytes),
            line_tx: output.line_tx,
        }),
    });
    let finished = child.finished.clone();
    let sink = LineSink {
        shared: shared.clone(),
        stdout: Lines::new(output.max_line_bytes),
        stderr: Lines::new(output.max_line_bytes),
        stdout_open: true,
        stderr_open: true,
        max_line_bytes: output.max_line_bytes,
        held: (Held::default(), Held::default()),
    };
    let watched = watch(child, sink)?;
    Ok(Process {
        pid,
        shared,
        exit: watched.exit,
        drained: watched.drained,
        finished,
    })
}

/// An existing log file is opened at once (that creates nothing); a new one is only checked
/// for: its directory must exist and be writable.
fn check_log(path: &Path) -> std::io::Result<Option<File>> {
    match OpenOptions::new().append(true).open(path) {
        Ok(file) => return Ok(Some(file)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    match nix::unistd::access(
        dir,
        nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
    ) {
        Ok(()) => Ok(None),
        Err(nix::errno::Errno::ENOENT) => Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("the directory {} does not exist", dir.display()),
        )),
        Err(e) => Err(std::io::Error::from(e)),
    }
}

fn open_log(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Cuts each pipe's bytes into lines for [`Shared::line`].
struct LineSink {
    shared: Arc<Shared>,
    stdout: Lines,
    stderr: Lines,
    stdout_open: bool,
    stderr_open: bool,
    max_line_bytes: usize,
    held: (Held, Held),
}

impl LineSink {
    fn lines(&mut self, stream: Stream) -> &mut Lines {
        match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        }
    }

    fn held(&mut self, stream: Stream) -> &mut Held {
        match stream {
            Stream::Stdout => &mut self.held.0,
            Stream::Stderr => &mut self.held.1,
        }
    }

    /// Past the cap nothing is cut into lines: the bytes are only counted and kept, at the
    /// cost of a copy, however fast the child prints. Each pipe's bytes still go in whole
    /// lines (up to `max_line_bytes` held back), so that the two pipes do not mix mid-line.
    fn over_cap(&mut self, stream: Stream, bytes: &[u8]) {
        let max = self.max_line_bytes;
        let shared = self.shared.clone();
        let before = self.lines(stream).take_partial();
        let held = self.held(stream);
        held.bytes.extend_from_slice(&before);
        match bytes.iter().rposition(|&b| b == b'\n') {
            Some(newline) => {
                shared.over_cap(&[&held.bytes, &bytes[..=newline]]);
                held.bytes.clear();
                held.bytes.extend_from_slice(&bytes[newline + 1..]);
                held.mid_line = false;
            }
            None => {
                held.bytes.extend_from_slice(bytes);
                if held.bytes.len() > max {
                    shared.over_cap(&[&held.bytes]);
                    held.bytes.clear();
                    held.mid_line = true;
                }
            }
        }
    }
}

/// A pipe's bytes past the cap that do not end a line yet.
#[derive(Default)]
struct Held {
    bytes: Vec<u8>,
    /// Part of the line was already kept.
    mid_line: bool,
}

impl OutputSink for LineSink {
    fn data(&mut self, stream: Stream, bytes: &[u8]) {
        let shared = self.shared.clone();
        if shared.capped.load(Ordering::Relaxed) {
            self.over_cap(stream, bytes);
        } else {
            self.lines(stream)
                .feed(bytes, &mut |line, cut| shared.line(stream, line, cut));
        }
        shared.flush();
    }

    fn closed(&mut self, stream: Stream) {
        let shared = self.shared.clone();
        if shared.capped.load(Ordering::Relaxed) {
            self.over_cap(stream, &[]);
            let held = std::mem::take(self.held(stream));
            // A last line without a newline ends here, as it does below the cap.
            if !held.bytes.is_empty() || held.mid_line {
                shared.over_cap(&[&held.bytes, b"\n"]);
            }
        } else {
            self.lines(stream)
                .finish(&mut |line, cut| shared.line(stream, line, cut));
        }
        match stream {
            Stream::Stdout => self.stdout_open = false,
            Stream::Stderr => self.stderr_open = false,
        }
        if self.stdout_open || self.stderr_open {
            shared.flush();
        } else {
            shared.finish();
        }
    }
}

impl Process {
    /// The process group id, equal to the pid.
    pub fn pgid(&self) -> i32 {
        self.pid
    }

    /// When the child was started.
    pub fn started_at(&self) -> Instant {
        self.shared.started
    }

    /// When the child last printed a line (its start time if it never did), for stall detection.
    pub fn last_output_at(&self) -> Instant {
        self.shared.started
            + Duration::from_millis(self.shared.last_output_ms.load(Ordering::Relaxed))
    }

    /// The wall-clock time of the last line (or of the start), for records and display.
    pub fn last_output_timestamp(&self) -> Timestamp {
        Timestamp(self.shared.last_output_at.load(Ordering::Relaxed) as i64)
    }

    /// How long the child has been silent.
    pub fn silent_for(&self) -> Duration {
        self.last_output_at().elapsed()
    }

    /// Lines the live channel missed because it was full.
    pub fn dropped_lines(&self) -> u64 {
        self.shared.dropped_lines.load(Ordering::Relaxed)
    }

    /// The latest output so far, at most `tail_bytes` long.
    pub fn tail(&self) -> String {
        self.shared
            .sink
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tail
            .text()
    }

    /// Whether the direct child has exited (its group is then killed too).
    pub fn has_exited(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }

    /// Sends `signal` to the child's whole group. Does nothing once the child has exited, since
    /// its pid may then belong to someone else.
    pub fn kill_group(&self, signal: Signal) -> Result<(), Error> {
        if self.has_exited() {
            return Ok(());
        }
        crate::kill_group(self.pid, signal)
    }

    /// Waits for the child to exit and its output to be read to the end.
    pub async fn wait(self) -> Result<Exit, Error> {
        let Process {
            pid,
            shared,
            exit,
            drained,
            ..
        } = self;
        let raw = match exit.await {
            Ok(Ok(raw)) => raw,
            Ok(Err(reason)) => return Err(Error::Wait { pid, reason }),
            Err(_) => {
                return Err(Error::Wait {
                    pid,
                    reason: "the watcher of the child ended early".into(),
                });
            }
        };
        // The reaper has sent SIGKILL to the rest of the group; let it take effect, so that when
        // wait() returns no descendant still runs (or holds files in the working directory).
        if !wait_gone(pid, SETTLE_GRACE).await {
            tracing::warn!(pid, "processes of the group are still alive after SIGKILL");
        }
        if tokio::time::timeout(DRAIN_GRACE, drained).await.is_err() {
            // Only a descendant that escaped the group can still hold the pipes; its output is
            // no longer this process's business.
            tracing::warn!(
                pid,
                "output pipes still open after the process group died; not waiting for them"
            );
        }
        // Normally done when both pipes closed; here for the case above.
        shared.finish();
        let tail = shared
            .sink
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tail
            .text();
        Ok(Exit {
            code: raw.code,
            signal: raw.signal,
            cpu_ms: raw.cpu_ms,
            wall_ms: raw.wall_ms,
            tail,
        })
    }
}
