//! The loop: ask the model, run the tools it calls, send the results back, until it answers
//! without a tool call, the turns run out or the API refuses.

use std::time::Instant;

use domain::Tokens;
use serde_json::{Value, json};

use crate::Error;
use crate::event::{Event, shown_args};
use crate::model::{Call, Model};
use crate::tools::Tools;

/// What the system prompt tells the model about its place.
const SYSTEM: &str = "You are a coding agent working in a git worktree (the workspace). \
Use the tools to read, change and test the code; paths are relative to the workspace, which you \
cannot leave. Your changes are committed for you when you finish, and validators judge them. \
When the work is done, answer with a short summary and no tool call.";

/// The most tool calls of one answer that are run; the rest are answered with an error, so
/// one answer cannot make the loop do unbounded work.
pub const MAX_CALLS_PER_TURN: usize = 64;

/// Runs the calls of one answer in order and returns their `tool_result` blocks, emitting a
/// `tool` event for each. Calls past [`MAX_CALLS_PER_TURN`] are answered without being run.
pub async fn answer_calls(
    tools: &Tools,
    calls: &[Call],
    turn: u32,
    emit: &mut dyn FnMut(&Event),
) -> Vec<Value> {
    let mut results = Vec::new();
    for (index, call) in calls.iter().enumerate() {
        let started = Instant::now();
        let outcome = if index < MAX_CALLS_PER_TURN {
            tools.call(&call.name, &call.input).await
        } else {
            crate::Outcome {
                ok: false,
                text: format!(
                    "not run: an answer may make at most {MAX_CALLS_PER_TURN} tool calls"
                ),
            }
        };
        emit(&Event::Tool {
            turn,
            id: call.id.clone(),
            name: crate::tools::cut_chars(&call.name, 64),
            args: shown_args(&call.input),
            ok: outcome.ok,
            result_bytes: outcome.text.len(),
            duration_ms: started.elapsed().as_millis() as u64,
            error: (!outcome.ok).then(|| crate::tools::cut_chars(&outcome.text, 300)),
        });
        results.push(json!({
            "type": "tool_result",
            "tool_use_id": call.id,
            "content": outcome.text,
            "is_error": !outcome.ok,
        }));
    }
    results
}

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct LoopOptions {
    pub max_turns: u32,
}

impl Default for LoopOptions {
    fn default() -> Self {
        LoopOptions { max_turns: 50 }
    }
}

/// How a clean run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub turns: u32,
    pub text: String,
    pub usage: Tokens,
}

/// Runs the loop on `prompt`, reporting each step to `emit`. On failure the error event has
/// been emitted already; the caller prints the error and exits non-zero.
pub async fn run(
    model: &Model,
    tools: &Tools,
    options: &LoopOptions,
    prompt: &str,
    emit: &mut dyn FnMut(&Event),
) -> Result<Finished, Error> {
    let definitions = crate::tools::definitions();
    let names = definitions
        .as_array()
        .map(|d| {
            d.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    emit(&Event::Start {
        model: model.model().to_string(),
        tools: names,
    });
    let mut messages: Vec<Value> = vec![json!({"role": "user", "content": prompt})];
    let mut usage = Tokens::default();
    let mut turns = 0;
    let result = loop {
        if turns >= options.max_turns {
            break Err(Error::TooManyTurns(options.max_turns));
        }
        turns += 1;
        let reply = match model.send(SYSTEM, &messages, &definitions).await {
            Ok(reply) => reply,
            Err(e) => break Err(e),
        };
        usage.add(&reply.usage);
        emit(&Event::Assistant {
            turn: turns,
            text: reply.text.clone(),
            stop_reason: reply.stop_reason.clone(),
            usage: reply.usage,
        });
        if reply.calls.is_empty() {
            break Ok(Finished {
                turns,
                text: reply.text,
                usage,
            });
        }
        messages.push(json!({"role": "assistant", "content": reply.content}));
        let results = answer_calls(tools, &reply.calls, turns, emit).await;
        messages.push(json!({"role": "user", "content": results}));
    };
    match &result {
        Ok(done) => emit(&Event::Result {
            turns: done.turns,
            text: done.text.clone(),
            usage,
        }),
        Err(e) => emit(&Event::Error {
            turns,
            message: e.to_string(),
            usage,
        }),
    }
    result
}
