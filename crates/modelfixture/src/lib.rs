//! A scripted model server for tests: it speaks the OpenAI Chat Completions, OpenAI Responses,
//! Anthropic Messages and Gemini (`generateContent`, `streamGenerateContent?alt=sse`,
//! `countTokens` under `/v1beta/models/`) wire formats, streaming or not, and answers from a
//! script instead of a model, function calls included.
//!
//! The model gateway, its budgets, its usage accounting and its rate-limit handling are tested
//! end to end against this server instead of a paid API. A [`Script`] is a list of [`Step`]s,
//! one per model request: a reply (text and token counts) or an error status with optional
//! `retry-after` headers, each with an optional delay. Streams are sent event by event in the
//! providers' exact formats, and a step can hold a stream after its first text delta (`gate`)
//! until the test lets it go, which shows that a client downstream saw text before the stream
//! ended without timing anything.
//!
//! The principal types:
//! - [`spawn`] / [`spawn_with`]: start a server on 127.0.0.1 and get a [`Fixture`] handle.
//! - [`Fixture`]: the address, the requests received ([`Recorded`]) and the gate.
//! - [`Script`] and [`Step`]: what to answer.
//!
//! The key design decision: the fixture records every request it receives, headers and body,
//! before deciding anything, so a test can assert what reached the "provider": the real key,
//! and never the agent's own token.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use modelfixture::{Script, Step};
//! let fixture = modelfixture::spawn(Script::new(vec![Step::reply("hello", 12, 1, 0)]))
//!     .await
//!     .unwrap();
//! assert!(fixture.base_url().starts_with("http://127.0.0.1:"));
//! assert!(fixture.requests().is_empty());
//! # });
//! ```
//!
//! The binary `agentgrid-modelfixture --script FILE [--port N] [--api-key-env VAR]` serves a
//! script file for tests that drive the real `agentgrid` binary.

mod error;
mod script;
mod server;
mod wire;

pub use error::Error;
pub use script::{Script, Step, ToolCall};
pub use server::{Fixture, FixtureOptions, Recorded, spawn, spawn_with};
pub use wire::{Api, error_body};
