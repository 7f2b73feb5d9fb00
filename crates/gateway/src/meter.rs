//! Metering a response as it passes through: the body goes on to the agent chunk by chunk,
//! untouched, while usage is read from it on the way. The request's reservation is settled
//! once: to the provider's own figures when they arrive, and conservatively (the reservation,
//! or what was counted, whichever is more) when they never do.

use std::sync::Arc;

use domain::Tokens;

use crate::config::Prices;
use crate::notice::{Notice, UsageRecord};
use crate::registry::{Identity, ModelUsage, Reservation};
use crate::server::Shared;
use crate::wire::{Api, UsageReader, estimate_input_tokens};

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
    reservation: Reservation,
    /// Body bytes seen, for an output estimate when neither usage nor a cap is known.
    bytes: usize,
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
        reservation: Reservation,
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
            reservation,
            bytes: 0,
            finished: false,
        }
    }

    /// Whether the reservation has been settled already.
    pub(crate) fn settled(&self) -> bool {
        self.finished
    }

    /// Whether the provider's final usage report has been read.
    pub(crate) fn complete(&self) -> bool {
        self.reader.complete
    }

    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        let api = self.api;
        self.bytes = self.bytes.saturating_add(chunk.len());
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

    /// Settles the reservation, once. `cut` says why the response ended before its end, if it
    /// did; then, unless the provider's final usage had already arrived, the charge is the
    /// larger of what was counted and what was reserved (output estimated from the body's size
    /// when the request had no cap).
    pub(crate) fn finish(&mut self, cut: Option<&str>) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        match &mut self.mode {
            Mode::Json { body, overflow } => {
                if !*overflow && cut.is_none() {
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
        let counted = self.reader.counts().unwrap_or_default();
        let complete = self.reader.complete && self.reader.counts().is_some();
        let (input, output) = if complete {
            (counted.input, counted.output)
        } else {
            let output_guess = self
                .reservation
                .output_tokens
                .unwrap_or_else(|| estimate_input_tokens(self.bytes));
            tracing::warn!(
                execution = %self.identity.execution,
                model = %self.alias,
                why = cut.unwrap_or("the response reported no usage"),
                "a model response ended without its final usage; it is charged conservatively"
            );
            (
                counted.input.max(self.reservation.input_tokens),
                counted.output.max(output_guess),
            )
        };
        let tokens = Tokens {
            input,
            output,
            cached: counted.cached.min(input),
        };
        let cost_micros = self.prices.cost_micros(input, output, tokens.cached);
        let totals = ModelUsage::of_request(tokens, cost_micros);
        // The engine hears of the usage before the settlement wakes anyone waiting for it, so
        // that an engine waiting for the last settlements before it stops finds the notice.
        self.shared.notify(Notice::Usage(UsageRecord {
            execution: self.identity.execution,
            task: self.identity.task,
            root: self.identity.root,
            agent: self.identity.agent.clone(),
            model: self.alias.clone(),
            tokens,
            cost_micros,
            complete,
        }));
        self.shared.registry.settle(&mut self.reservation, &totals);
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        // Dropped before the end (the gateway is stopping): what was not read is charged.
        self.finish(Some("the gateway stopped reading the response"));
    }
}

fn read_line(reader: &mut UsageReader, api: Api, line: &[u8]) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(data) = line.strip_prefix(b"data:") {
        let data = data.strip_prefix(b" ").unwrap_or(data);
        reader.read_event(api, data);
    }
}
