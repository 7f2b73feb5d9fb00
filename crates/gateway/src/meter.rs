//! Metering a response as it passes through: the body goes on to the agent chunk by chunk,
//! untouched, while usage is read from it on the way. When the body ends, or the agent hangs
//! up, the usage is recorded once.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;

use crate::config::Prices;
use crate::notice::{Notice, UsageRecord};
use crate::registry::{Identity, Totals};
use crate::server::Shared;
use crate::wire::{Api, UsageReader};

/// The longest stream line or JSON body kept for reading usage. A longer one still passes
/// through to the agent whole; only its usage cannot be read.
const MAX_KEPT: usize = 16 * 1024 * 1024;

/// How the body is read.
enum Mode {
    /// Server-sent events: complete lines are read as they arrive; `line` holds the start of a
    /// line whose end has not arrived yet.
    Events { line: Vec<u8>, overflow: bool },
    /// One JSON document, read when it is complete.
    Json { body: Vec<u8>, overflow: bool },
}

/// The accounting of one response.
pub(crate) struct Meter {
    api: Api,
    mode: Mode,
    reader: UsageReader,
    shared: Arc<Shared>,
    identity: Arc<Identity>,
    alias: String,
    prices: Prices,
    finished: bool,
}

impl Meter {
    pub(crate) fn new(
        api: Api,
        events: bool,
        shared: Arc<Shared>,
        identity: Arc<Identity>,
        alias: String,
        prices: Prices,
    ) -> Meter {
        let mode = if events {
            Mode::Events {
                line: Vec::new(),
                overflow: false,
            }
        } else {
            Mode::Json {
                body: Vec::new(),
                overflow: false,
            }
        };
        Meter {
            api,
            mode,
            reader: UsageReader::default(),
            shared,
            identity,
            alias,
            prices,
            finished: false,
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        let api = self.api;
        match &mut self.mode {
            Mode::Json { body, overflow } => {
                if body.len() + chunk.len() > MAX_KEPT {
                    *overflow = true;
                    body.clear();
                } else if !*overflow {
                    body.extend_from_slice(chunk);
                }
            }
            Mode::Events { line, overflow } => {
                let mut rest = chunk;
                while let Some(at) = rest.iter().position(|&b| b == b'\n') {
                    let (head, tail) = rest.split_at(at);
                    rest = &tail[1..];
                    if *overflow {
                        // The end of an over-long line: drop it and start afresh.
                        *overflow = false;
                        line.clear();
                    } else if line.is_empty() {
                        read_line(&mut self.reader, api, head);
                    } else {
                        line.extend_from_slice(head);
                        read_line(&mut self.reader, api, line);
                        line.clear();
                    }
                }
                if !rest.is_empty() && !*overflow {
                    if line.len() + rest.len() > MAX_KEPT {
                        *overflow = true;
                        line.clear();
                    } else {
                        line.extend_from_slice(rest);
                    }
                }
            }
        }
    }

    /// Records the usage, once: at the end of the body, or when the body is dropped early.
    fn finish(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        match &mut self.mode {
            Mode::Json { body, overflow } => {
                if !*overflow {
                    self.reader.read_body(self.api, body);
                }
            }
            Mode::Events { line, overflow } => {
                // A last line without its newline still counts.
                if !*overflow && !line.is_empty() {
                    read_line(&mut self.reader, self.api, line);
                }
            }
        }
        let Some(counts) = self.reader.counts() else {
            tracing::warn!(
                execution = %self.identity.execution,
                model = %self.alias,
                "a model response ended without reporting token usage; nothing was recorded"
            );
            return;
        };
        let cost_micros = self
            .prices
            .cost_micros(counts.input, counts.output, counts.cached);
        let totals = Totals {
            requests: 1,
            input_tokens: counts.input,
            output_tokens: counts.output,
            cached_tokens: counts.cached.min(counts.input),
            cost_micros,
        };
        self.shared.registry.record(&self.identity, &totals);
        self.shared.notify(Notice::Usage(UsageRecord {
            execution: self.identity.execution,
            task: self.identity.task,
            root: self.identity.root,
            agent: self.identity.agent.clone(),
            model: self.alias.clone(),
            input_tokens: totals.input_tokens,
            output_tokens: totals.output_tokens,
            cached_tokens: totals.cached_tokens,
            cost_micros,
            complete: self.reader.complete,
        }));
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.finish();
    }
}

fn read_line(reader: &mut UsageReader, api: Api, line: &[u8]) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(data) = line.strip_prefix(b"data:") {
        let data = data.strip_prefix(b" ").unwrap_or(data);
        reader.read_event(api, data);
    }
}

/// The upstream body with a [`Meter`] watching it.
pub(crate) struct Metered<S> {
    inner: S,
    meter: Meter,
}

impl<S> Metered<S> {
    pub(crate) fn new(inner: S, meter: Meter) -> Metered<S> {
        Metered { inner, meter }
    }
}

impl<S, E> Stream for Metered<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    type Item = Result<Bytes, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.meter.feed(&chunk);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                this.meter.finish();
                Poll::Ready(None)
            }
            other => other,
        }
    }
}
