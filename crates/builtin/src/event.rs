//! The lines the loop prints on stdout, one JSON object per step.
//!
//! The format (every line has `type`):
//! - `{"type":"start","model":M,"tools":[…]}` once;
//! - `{"type":"assistant","turn":N,"text":T,"stop_reason":R,"usage":{"input_tokens":I,"output_tokens":O,"cached_tokens":C}}`
//!   for each answer of the model;
//! - `{"type":"tool","turn":N,"id":ID,"name":NAME,"args":{…},"ok":B,"result_bytes":S,"duration_ms":D}`
//!   for each tool call (long string arguments are cut to 200 characters; `error` holds the
//!   start of a failed call's message);
//! - `{"type":"result","turns":N,"text":T,"usage":{…}}` at a clean end;
//! - `{"type":"error","turns":N,"message":M,"usage":{…}}` when the run fails (the same message
//!   goes to stderr and the exit status is 1).

use domain::Tokens;
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Start {
        model: String,
        tools: Vec<String>,
    },
    Assistant {
        turn: u32,
        text: String,
        stop_reason: String,
        usage: Tokens,
    },
    Tool {
        turn: u32,
        id: String,
        name: String,
        args: Value,
        ok: bool,
        result_bytes: usize,
        duration_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    Result {
        turns: u32,
        text: String,
        usage: Tokens,
    },
    Error {
        turns: u32,
        message: String,
        usage: Tokens,
    },
}

/// The arguments as shown in an event: strings longer than 200 characters cut, so a whole
/// file written is not printed twice.
pub fn shown_args(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(crate::tools::cut_chars(s, 200)),
        Value::Array(items) => Value::Array(items.iter().map(shown_args).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (crate::tools::cut_chars(k, 64), shown_args(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}
