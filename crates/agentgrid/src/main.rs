//! `agentgrid`: the command line. Parses arguments, runs one command, maps errors to an exit
//! code and one clear line.

mod cli;
mod commands;
mod output;
mod project;

use std::process::ExitCode;

use clap::Parser;

/// Exit codes a script can rely on.
pub mod exit {
    /// The command did what was asked.
    pub const OK: u8 = 0;
    /// It ran but the outcome is a failure (a task failed, a manifest is invalid).
    pub const FAILED: u8 = 1;
    /// The request itself was wrong: bad arguments, unknown ids, no project. Nothing changed.
    pub const USAGE: u8 = 2;
}

/// An error that carries its exit code; anything else exits with [`exit::FAILED`].
#[derive(Debug)]
pub struct UserError(pub String);

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

/// Shorthand for a usage error with a message.
pub fn user_error(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UserError(message.into()))
}

fn main() -> ExitCode {
    // `agentgrid __sandbox` is the sandbox helper the launch crate starts in an agent's place.
    // It must run before anything else starts a thread (the async runtime, logging), since
    // only a single-threaded process may create the sandbox's user namespace.
    if launch::sandbox::is_helper_invocation() {
        launch::sandbox::helper_main();
    }
    // The inside half of the sandbox's self-test (see `agentgrid doctor`).
    if launch::sandbox::is_selftest_invocation() {
        launch::sandbox::selftest_main();
    }
    let args = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AGENTGRID_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    match runtime.block_on(commands::run(args)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let code = if err.downcast_ref::<UserError>().is_some() {
                exit::USAGE
            } else {
                exit::FAILED
            };
            eprintln!("error: {err:#}");
            ExitCode::from(code)
        }
    }
}
