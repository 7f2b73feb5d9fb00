//! `agentgrid events` and `agentgrid logs`: reading the event log and execution output.

use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use domain::{ExecutionId, TaskId};

use crate::project::Project;
use crate::user_error;

/// Where `events` begins.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// After this `seq` (0: from the beginning).
    After(u64),
    /// With the last N events.
    Tail(u32),
}

pub async fn events(
    project: &Project,
    start: Start,
    follow: bool,
    task: Option<TaskId>,
    json: bool,
) -> anyhow::Result<u8> {
    let app = project.app().await?;
    let actor = app::Actor::command_line();
    let mut seq = match start {
        Start::After(from) => from,
        Start::Tail(count) => {
            let tail = app.ask(&actor, app::TailEvents { task, count }).await?;
            for event in &tail.events {
                outln!("{}", event_line(event, json)?);
                if crate::output::closed() {
                    return Ok(crate::exit::OK);
                }
            }
            if !follow {
                return Ok(crate::exit::OK);
            }
            tail.next
        }
    };
    loop {
        let page = app
            .ask(
                &actor,
                app::Events {
                    task,
                    after: seq,
                    limit: 1000,
                },
            )
            .await?;
        seq = page.next;
        for event in &page.events {
            outln!("{}", event_line(event, json)?);
            if crate::output::closed() {
                return Ok(crate::exit::OK);
            }
        }
        if page.at_end {
            if !follow {
                return Ok(crate::exit::OK);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// One event as `events` prints it: a JSON object, or a line of columns.
fn event_line(event: &domain::Event, json: bool) -> anyhow::Result<String> {
    Ok(if json {
        crate::output::json_text(event, false)?
    } else {
        format!(
            "{:>6}  {}  {} {:<5} {:<24} {}",
            event.seq,
            event.at,
            event.entity.as_str(),
            event.entity_id,
            domain::text::one_line(&event.actor),
            domain::text::one_line(&event.kind.describe())
        )
    })
}

pub async fn logs(
    project: &Project,
    execution: ExecutionId,
    follow: bool,
    json: bool,
    raw: bool,
) -> anyhow::Result<u8> {
    let store = project.store().await?;
    let exec = store.execution(execution).await?.ok_or_else(|| {
        user_error(format!(
            "execution {execution} does not exist: see `agentgrid status`"
        ))
    })?;
    if !raw && !follow && !json {
        // A known CLI's output is read into events; those are what a person wants to read.
        let records = app::agent_events(&*store, execution).await?;
        if !records.is_empty() {
            for r in &records {
                outln!(
                    "[iteration {}] {}",
                    r.iteration,
                    domain::text::one_line(&r.event.describe())
                );
            }
            outln!("(the CLI's own output: agentgrid logs {execution} --raw)");
            print_validations(&*store, &exec).await?;
            return Ok(crate::exit::OK);
        }
    }
    let path = exec
        .log_path
        .clone()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            project
                .state_dir
                .join("logs")
                .join(format!("{execution}.log"))
        });
    let mut offset = 0u64;
    // An agent's output may hold escapes meant for the operator's terminal: on a terminal they
    // are shown, not obeyed. Into a pipe or a file the log goes byte for byte.
    let mut escaper = (!json && std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .then(TerminalEscaper::default);
    let mut lines = json.then(|| JsonLines::new(execution));
    loop {
        // Checked before reading, so the last read after the end sees everything it wrote.
        let running = follow
            && store
                .execution(execution)
                .await?
                .is_some_and(|e| e.state.is_active());
        if let Ok(mut file) = std::fs::File::open(&path) {
            file.seek(SeekFrom::Start(offset))?;
            // Copy in chunks so a huge log never sits in memory whole.
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                offset += n as u64;
                if let Some(lines) = lines.as_mut() {
                    if !lines.feed(&buf[..n])? {
                        return Ok(crate::exit::OK);
                    }
                    continue;
                }
                let shown = match escaper.as_mut() {
                    Some(escaper) => std::borrow::Cow::Owned(escaper.escape(&buf[..n])),
                    None => std::borrow::Cow::Borrowed(&buf[..n]),
                };
                if !crate::output::bytes(&shown) {
                    return Ok(crate::exit::OK);
                }
            }
        } else if !follow {
            // The log is created at the first line of output: an execution that printed nothing
            // has none, which is not an error.
            if exec.state.is_terminal() {
                eprintln!("execution {execution} printed nothing");
                if !json {
                    print_validations(&*store, &exec).await?;
                }
                return Ok(crate::exit::OK);
            }
            return Err(user_error(format!(
                "execution {execution} has printed nothing yet; use --follow to wait for its output"
            )));
        }
        if !running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let Some(lines) = lines.as_mut() {
        // A last line without its newline (the log of a process killed mid-line).
        lines.finish()?;
        // Each line of standard output is one log line: what judged the execution is in
        // `task show --json` and the events.
        return Ok(crate::exit::OK);
    }
    // The agent's log holds the agent's output; what judged it is in the events.
    print_validations(&*store, &exec).await?;
    Ok(crate::exit::OK)
}

/// The log as JSON lines. The log is the execution's output line by line (both streams, in
/// the order written, with agentgrid's own `[agentgrid: …]` notes), so a line's fields are
/// where it is: its number from 1 and its byte offset in the log, and its text (invalid UTF-8
/// replaced; JSON escapes every control character, so nothing reaches a terminal raw).
struct JsonLines {
    execution: ExecutionId,
    line: u64,
    offset: u64,
    partial: Vec<u8>,
}

impl JsonLines {
    fn new(execution: ExecutionId) -> JsonLines {
        JsonLines {
            execution,
            line: 0,
            offset: 0,
            partial: Vec::new(),
        }
    }

    /// Prints every whole line `chunk` completes; false once standard output is closed.
    fn feed(&mut self, chunk: &[u8]) -> anyhow::Result<bool> {
        self.partial.extend_from_slice(chunk);
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            self.print(&line[..end])?;
            self.offset += line.len() as u64;
            if crate::output::closed() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.print(&rest)?;
        }
        Ok(())
    }

    fn print(&mut self, text: &[u8]) -> anyhow::Result<()> {
        self.line += 1;
        let value = serde_json::json!({
            "execution": self.execution,
            "line": self.line,
            "offset": self.offset,
            "text": String::from_utf8_lossy(text),
        });
        crate::output::json_line(&value)
    }
}

async fn print_validations(
    store: &dyn store::Store,
    exec: &domain::Execution,
) -> anyhow::Result<()> {
    let validations = super::verdicts::of_execution(store, exec).await?;
    if validations.is_empty() {
        return Ok(());
    }
    outln!("\n--- validators ---");
    for v in &validations {
        super::verdicts::print(v, "", 40);
    }
    Ok(())
}

/// Escapes the bytes of a log that a terminal would act on: C0 controls but line breaks and
/// tabs, DEL, and the C1 controls as UTF-8 encodes them (`0xC2 0x80..=0x9F`). It works chunk by
/// chunk, holding back a `0xC2` that ends one chunk until the next shows what follows it.
#[derive(Debug, Default)]
struct TerminalEscaper {
    pending_c2: bool,
}

impl TerminalEscaper {
    fn escape(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len());
        for &byte in chunk {
            if std::mem::take(&mut self.pending_c2) {
                if (0x80..=0x9f).contains(&byte) {
                    out.extend_from_slice(format!("\\x{byte:02x}").as_bytes());
                    continue;
                }
                out.push(0xc2);
            }
            match byte {
                0xc2 => self.pending_c2 = true,
                b'\n' | b'\t' => out.push(byte),
                0..=0x1f | 0x7f => out.extend_from_slice(format!("\\x{byte:02x}").as_bytes()),
                _ => out.push(byte),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::TerminalEscaper;

    #[test]
    fn terminal_escapes_are_shown_not_obeyed() {
        let mut e = TerminalEscaper::default();
        assert_eq!(e.escape(b"ok\n\x1b[2Jgone\r"), b"ok\n\\x1b[2Jgone\\x0d");
        // A C1 control split across two chunks is still caught; other UTF-8 passes.
        let mut e = TerminalEscaper::default();
        let mut shown = e.escape(&[b'a', 0xc2]);
        shown.extend(e.escape(&[0x9b, b'b']));
        assert_eq!(shown, b"a\\x9bb");
        let mut e = TerminalEscaper::default();
        assert_eq!(e.escape("£".as_bytes()), "£".as_bytes());
    }
}
