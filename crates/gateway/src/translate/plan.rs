//! How a request reaches its provider: passed through when the provider speaks the caller's
//! API, else in at most two hops through Chat Completions, the pivot every API translates to
//! and from: inbound (the caller's API → Chat), outbound (Chat → the provider's API). The
//! answer goes back through the same hops in reverse, each a chunk-by-chunk state machine, so
//! two of them compose and a stream stays a stream.
//!
//! Architecture invariant: a request whose provider speaks the caller's API is never parsed
//! beyond its top level here; [`Plan::passes_through`] sends it down the byte-copying path.

use serde_json::{Value, json};

use super::anthropic::{self, MessagesToChat};
use super::gemini_out::{self, GeminiToChat};
use super::messages::{self, ChatToMessages};
use super::responses::{self, ChatToResponses};
use super::{ChatToGemini, chat_request, gemini_body};
use crate::config::ProviderKind;
use crate::wire::Api;

/// The hop from the caller's API into Chat Completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inbound {
    /// Gemini `generateContent` / `streamGenerateContent` (and `countTokens`, answered by the
    /// gateway's estimate).
    Gemini,
    /// Anthropic Messages (and `count_tokens`, answered by the gateway's estimate).
    Messages,
    /// OpenAI Responses.
    Responses,
}

/// The hop from Chat Completions to the provider's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outbound {
    /// Anthropic Messages.
    Anthropic,
    /// Gemini `generateContent` / `streamGenerateContent?alt=sse`.
    Gemini,
}

/// The way from the caller's API to the provider's and back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The API the caller speaks, whose shape the answer and every error take.
    pub(crate) caller: Api,
    /// The API the provider is called with: what the meter reads the answer as.
    pub(crate) provider: Api,
    inbound: Option<Inbound>,
    outbound: Option<Outbound>,
}

/// Whether `kind` speaks `api` itself; `responses` is an OpenAI-compatible provider's word
/// that it serves the Responses API too.
fn speaks(kind: ProviderKind, responses: bool, api: Api) -> bool {
    match kind {
        ProviderKind::Anthropic => matches!(api, Api::Messages | Api::CountTokens),
        ProviderKind::OpenAi => matches!(api, Api::Chat | Api::Responses),
        // Many local servers (Ollama, llama.cpp) serve Chat Completions only.
        ProviderKind::OpenAiCompatible => api == Api::Chat || (api == Api::Responses && responses),
        ProviderKind::Gemini => matches!(
            api,
            Api::Generate | Api::StreamGenerate | Api::GeminiCountTokens
        ),
    }
}

impl Plan {
    /// The plan for a request on `caller` to a provider of `kind`, or `None` when no way
    /// leads there.
    pub(crate) fn new(
        kind: ProviderKind,
        responses: bool,
        caller: Api,
        stream: bool,
    ) -> Option<Plan> {
        if speaks(kind, responses, caller) {
            return Some(Plan {
                caller,
                provider: caller,
                inbound: None,
                outbound: None,
            });
        }
        let inbound = match caller {
            Api::Chat => None,
            Api::Generate | Api::StreamGenerate | Api::GeminiCountTokens => Some(Inbound::Gemini),
            Api::Messages | Api::CountTokens => Some(Inbound::Messages),
            Api::Responses => Some(Inbound::Responses),
        };
        let (provider, outbound) = match kind {
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => (Api::Chat, None),
            ProviderKind::Anthropic => (Api::Messages, Some(Outbound::Anthropic)),
            ProviderKind::Gemini if stream => (Api::StreamGenerate, Some(Outbound::Gemini)),
            ProviderKind::Gemini => (Api::Generate, Some(Outbound::Gemini)),
        };
        Some(Plan {
            caller,
            provider,
            inbound,
            outbound,
        })
    }

    /// Whether the request goes as it came, on the byte-copying path.
    pub(crate) fn passes_through(&self) -> bool {
        self.inbound.is_none() && self.outbound.is_none()
    }

    /// The provider's request body for a translated request. `cap` is the budget's output
    /// cap when one is set; `openai` picks OpenAI's own Chat cap field; `default_cap` is the
    /// cap for a provider that needs one when no other is named.
    pub(crate) fn request(
        &self,
        body: &[u8],
        upstream_model: &str,
        stream: bool,
        cap: Option<u64>,
        openai: bool,
        default_cap: u64,
    ) -> Result<Vec<u8>, String> {
        let chat = match self.inbound {
            None => body.to_vec(),
            Some(Inbound::Gemini) => chat_request(body, upstream_model, stream, cap, openai)?,
            Some(Inbound::Messages) => {
                messages::chat_request(body, upstream_model, stream, cap, openai)?
            }
            Some(Inbound::Responses) => {
                responses::chat_request(body, upstream_model, stream, cap, openai)?
            }
        };
        match self.outbound {
            None => Ok(chat),
            Some(Outbound::Anthropic) => {
                anthropic::messages_request(&chat, upstream_model, stream, cap, default_cap)
            }
            Some(Outbound::Gemini) => gemini_out::generate_request(&chat, cap),
        }
    }

    /// A whole answer body, or an error body, from the provider's shape into the caller's.
    pub(crate) fn body(&self, status: u16, body: &[u8], model: &str) -> Vec<u8> {
        let chat = match self.outbound {
            None => body.to_vec(),
            Some(Outbound::Anthropic) => anthropic::chat_body(status, body, model),
            Some(Outbound::Gemini) => gemini_out::chat_body(status, body, model),
        };
        match self.inbound {
            None => chat,
            Some(Inbound::Gemini) => gemini_body(status, &chat, model),
            Some(Inbound::Messages) => messages::messages_body(status, &chat, model),
            Some(Inbound::Responses) => responses::responses_body(status, &chat, model),
        }
    }

    /// The translator of the answer's body, for an answer that is a stream of events or one
    /// JSON document; `model` is the alias the caller asked for.
    pub(crate) fn answer(&self, events: bool, model: &str) -> Answer {
        let mut hops = Vec::new();
        if events {
            match self.outbound {
                None => {}
                Some(Outbound::Anthropic) => {
                    hops.push(Hop::MessagesToChat(MessagesToChat::new(model)))
                }
                Some(Outbound::Gemini) => hops.push(Hop::GeminiToChat(GeminiToChat::new(model))),
            }
            match self.inbound {
                None => {}
                Some(Inbound::Gemini) => hops.push(Hop::ChatToGemini(ChatToGemini::new(model))),
                Some(Inbound::Messages) => {
                    hops.push(Hop::ChatToMessages(ChatToMessages::new(model)))
                }
                Some(Inbound::Responses) => {
                    hops.push(Hop::ChatToResponses(ChatToResponses::new(model)))
                }
            }
        }
        Answer {
            plan: *self,
            events,
            model: model.to_owned(),
            hops,
            whole: Vec::new(),
        }
    }
}

/// One answer hop of a stream.
enum Hop {
    MessagesToChat(MessagesToChat),
    GeminiToChat(GeminiToChat),
    ChatToGemini(ChatToGemini),
    ChatToMessages(ChatToMessages),
    ChatToResponses(ChatToResponses),
}

impl Hop {
    fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        match self {
            Hop::MessagesToChat(t) => t.push(chunk),
            Hop::GeminiToChat(t) => t.push(chunk),
            Hop::ChatToGemini(t) => t.push(chunk),
            Hop::ChatToMessages(t) => t.push(chunk),
            Hop::ChatToResponses(t) => t.push(chunk),
        }
    }

    fn finish(&mut self) -> Vec<u8> {
        match self {
            Hop::MessagesToChat(t) => t.finish(),
            Hop::GeminiToChat(t) => t.finish(),
            Hop::ChatToGemini(t) => t.finish(),
            Hop::ChatToMessages(t) => t.finish(),
            Hop::ChatToResponses(t) => t.finish(),
        }
    }
}

/// An answer on its way from the provider's API to the caller's: a stream goes through the
/// hops piece by piece, a JSON body is gathered and translated whole when it ends.
pub(crate) struct Answer {
    plan: Plan,
    events: bool,
    model: String,
    hops: Vec<Hop>,
    whole: Vec<u8>,
}

impl Answer {
    /// What the caller gets for the next piece of the provider's body (often nothing yet).
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if !self.events {
            self.whole.extend_from_slice(chunk);
            return Vec::new();
        }
        let mut bytes = chunk.to_vec();
        for hop in &mut self.hops {
            if bytes.is_empty() {
                break;
            }
            bytes = hop.push(&bytes);
        }
        bytes
    }

    /// What the caller is still owed when the provider's body has ended.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        if !self.events {
            return self.plan.body(200, &self.whole, &self.model);
        }
        let mut carried = Vec::new();
        for hop in &mut self.hops {
            let mut out = if carried.is_empty() {
                Vec::new()
            } else {
                hop.push(&carried)
            };
            out.extend(hop.finish());
            carried = out;
        }
        carried
    }
}

/// Splits a stream into complete lines as pieces arrive.
#[derive(Default)]
pub(crate) struct Lines {
    line: Vec<u8>,
}

impl Lines {
    /// The lines the piece completes, without their newline.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        let mut rest = chunk;
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&rest[..at]);
            rest = &rest[at + 1..];
            lines.push(std::mem::take(&mut self.line));
        }
        self.line.extend_from_slice(rest);
        lines
    }
}

/// The data of an event stream's `data:` line.
pub(crate) fn data_of(line: &[u8]) -> Option<&[u8]> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let data = line.strip_prefix(b"data:")?;
    Some(data.strip_prefix(b" ").unwrap_or(data))
}

/// Writes one Chat Completions stream event.
pub(crate) fn emit_chat(out: &mut Vec<u8>, value: &Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(value.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// OpenAI's error body.
pub(crate) fn chat_error(message: &str, kind: &str, code: Value) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

/// The media type and base64 data of a `data:` URL, if it is one.
pub(crate) fn data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (head, data) = rest.split_once(',')?;
    let media_type = head.strip_suffix(";base64")?;
    Some((media_type, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_that_speaks_the_callers_api_gets_it_untouched() {
        for (kind, responses, api) in [
            (ProviderKind::OpenAi, false, Api::Chat),
            (ProviderKind::OpenAi, false, Api::Responses),
            (ProviderKind::OpenAiCompatible, true, Api::Responses),
            (ProviderKind::Anthropic, false, Api::Messages),
            (ProviderKind::Gemini, false, Api::StreamGenerate),
        ] {
            let plan = Plan::new(kind, responses, api, true).unwrap();
            assert!(plan.passes_through(), "{kind:?} {api:?}");
            assert_eq!(plan.provider, api);
        }
    }

    #[test]
    fn other_pairs_go_through_chat_in_at_most_two_hops() {
        let plan = |kind, api, stream| Plan::new(kind, false, api, stream).unwrap();
        assert_eq!(
            plan(ProviderKind::Anthropic, Api::Chat, true).provider,
            Api::Messages
        );
        assert_eq!(
            plan(ProviderKind::Gemini, Api::Chat, true).provider,
            Api::StreamGenerate
        );
        assert_eq!(
            plan(ProviderKind::Gemini, Api::Chat, false).provider,
            Api::Generate
        );
        let two = plan(ProviderKind::Anthropic, Api::StreamGenerate, true);
        assert_eq!(
            (two.inbound, two.outbound),
            (Some(Inbound::Gemini), Some(Outbound::Anthropic))
        );
        assert_eq!(
            plan(ProviderKind::OpenAi, Api::Generate, false).provider,
            Api::Chat
        );
        // Codex with only an Anthropic key, Claude Code with only a Gemini one, and Codex
        // against a local server that serves Chat Completions only.
        let codex = plan(ProviderKind::Anthropic, Api::Responses, true);
        assert_eq!(
            (codex.inbound, codex.outbound, codex.provider),
            (
                Some(Inbound::Responses),
                Some(Outbound::Anthropic),
                Api::Messages
            )
        );
        let claude = plan(ProviderKind::Gemini, Api::Messages, true);
        assert_eq!(
            (claude.inbound, claude.outbound, claude.provider),
            (
                Some(Inbound::Messages),
                Some(Outbound::Gemini),
                Api::StreamGenerate
            )
        );
        let local = plan(ProviderKind::OpenAiCompatible, Api::Responses, true);
        assert_eq!(
            (local.inbound, local.outbound),
            (Some(Inbound::Responses), None)
        );
        assert!(
            [
                ProviderKind::OpenAi,
                ProviderKind::OpenAiCompatible,
                ProviderKind::Anthropic,
                ProviderKind::Gemini
            ]
            .into_iter()
            .all(|kind| [
                Api::Chat,
                Api::Responses,
                Api::Messages,
                Api::CountTokens,
                Api::Generate,
                Api::StreamGenerate,
                Api::GeminiCountTokens
            ]
            .into_iter()
            .all(|api| Plan::new(kind, false, api, true).is_some())),
            "every caller reaches every provider"
        );
    }

    #[test]
    fn two_hops_compose_a_messages_stream_into_a_gemini_stream() {
        let plan = Plan::new(ProviderKind::Anthropic, false, Api::StreamGenerate, true).unwrap();
        let mut answer = plan.answer(true, "sonnet");
        let stream = [
            r#"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":7,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"w","input":{}}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"1}"}}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":4}}"#,
        ];
        let mut out = Vec::new();
        for data in stream {
            out.extend(answer.push(format!("event: x\ndata: {data}\n\n").as_bytes()));
        }
        // The provider's stream breaks off after its stop reason: the rest is made up.
        out.extend(answer.finish());
        let text = String::from_utf8(out).unwrap();
        let chunks: Vec<Value> = text
            .split("\r\n\r\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let last = chunks.last().unwrap();
        assert_eq!(
            last["candidates"][0]["content"]["parts"][0]["functionCall"],
            json!({"name": "w", "args": {"a": 1}}),
            "{text}"
        );
        assert_eq!(last["usageMetadata"]["promptTokenCount"], 7);
        assert_eq!(last["usageMetadata"]["candidatesTokenCount"], 4);
    }
}
