//! The status line of `agentgrid run`: elapsed time, running / queued / waiting tasks and the
//! model spend of this run.
//!
//! On a terminal (standard error) it is one line redrawn in place every second (`\r`, then
//! "erase line"), cleared before each progress line is printed and drawn again after it, and
//! cleared when the run ends. Anywhere else a redrawn line would be noise in a log, so it is a
//! plain line at most every `--status-every` seconds (60 by default; 0 turns it off): a log
//! reader sees that the engine is alive and what it holds, without a line per second.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use domain::{Clock, SystemClock, TaskState};
use store::{Store, UsageScope};

/// Clears the terminal's current line and puts the cursor at its start.
const CLEAR: &str = "\r\x1b[2K";

/// How often the line is brought up to date on a terminal.
const REDRAW: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Redrawn in place on standard error.
    Terminal,
    /// A plain line on standard error every so often.
    Plain(Duration),
    Off,
}

impl Mode {
    /// The terminal mode when standard error is one; otherwise plain lines `every` seconds
    /// apart, or none for 0.
    pub fn detect(every_secs: u64) -> Mode {
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            Mode::Terminal
        } else if every_secs == 0 {
            Mode::Off
        } else {
            Mode::Plain(Duration::from_secs(every_secs))
        }
    }
}

/// The line as last drawn, shared by the ticker and the progress printer.
#[derive(Clone, Default)]
pub struct StatusLine {
    /// The text on the terminal's last line now, if any.
    shown: Arc<Mutex<Option<String>>>,
}

impl StatusLine {
    /// Prints a progress line above the status line: clears it, prints, draws it again.
    pub fn above(&self, print: impl FnOnce()) {
        let shown = self.shown.lock().unwrap_or_else(PoisonError::into_inner);
        let mut err = std::io::stderr().lock();
        if shown.is_some() {
            let _ = write!(err, "{CLEAR}");
            let _ = err.flush();
        }
        print();
        if let Some(line) = shown.as_ref() {
            let _ = write!(err, "{line}");
            let _ = err.flush();
        }
    }

    fn draw(&self, line: String) {
        let mut shown = self.shown.lock().unwrap_or_else(PoisonError::into_inner);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{CLEAR}{line}");
        let _ = err.flush();
        *shown = Some(line);
    }

    /// Takes the line off the terminal for good.
    pub fn clear(&self) {
        let mut shown = self.shown.lock().unwrap_or_else(PoisonError::into_inner);
        if shown.take().is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "{CLEAR}");
            let _ = err.flush();
        }
    }

    /// Keeps the line up to date until dropped (the caller aborts the task it runs in).
    pub async fn run(self, store: Arc<dyn Store>, mode: Mode) {
        let every = match mode {
            Mode::Off => return,
            Mode::Terminal => REDRAW,
            Mode::Plain(every) => every,
        };
        let started = Instant::now();
        let since = SystemClock.now();
        loop {
            tokio::time::sleep(every).await;
            let Ok(line) = line(store.as_ref(), started.elapsed(), since).await else {
                continue;
            };
            match mode {
                Mode::Terminal => self.draw(line),
                _ => eprintln!("{line}"),
            }
        }
    }
}

/// `0:42 elapsed · 2 running · 5 queued · 1 waiting · $0.0123 spent`.
async fn line(
    store: &dyn Store,
    elapsed: Duration,
    since: domain::Timestamp,
) -> Result<String, store::Error> {
    let counts = store.task_counts().await?;
    let count = |state: TaskState| {
        counts
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n)
    };
    let spent = store.model_usage(&UsageScope::Since(since)).await?;
    let secs = elapsed.as_secs();
    let clock = if secs >= 3600 {
        format!("{}:{:02}:{:02}", secs / 3600, (secs % 3600) / 60, secs % 60)
    } else {
        format!("{}:{:02}", secs / 60, secs % 60)
    };
    Ok(format!(
        "{clock} elapsed · {} running · {} queued · {} waiting · {} spent",
        count(TaskState::Running),
        count(TaskState::Open),
        count(TaskState::Waiting),
        domain::event::dollars(spent.cost_micros)
    ))
}
