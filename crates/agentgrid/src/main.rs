//! `agentgrid`: the command line. Parses arguments, runs one command, maps errors to an exit
//! code and one clear line.

// Output goes through `output`, which ends quietly when its reader has gone.
#![deny(clippy::print_stdout)]

// First, so that its macros are known in the modules below.
#[macro_use]
mod output;
mod checks;
mod cli;
mod commands;
mod error;
mod fields;
mod parse;
mod project;
mod toolchains;
mod when;

use std::process::ExitCode;

/// Exit codes a script can rely on.
pub mod exit {
    /// The command did what was asked.
    pub const OK: u8 = 0;
    /// It ran but the outcome is a failure (a task failed, a manifest is invalid).
    pub const FAILED: u8 = 1;
    /// The request itself was wrong: bad arguments, unknown ids, no project, another engine
    /// already running. Nothing changed.
    pub const USAGE: u8 = 2;
    /// Nothing changed, for a reason outside the request: the database was locked by another
    /// process, or the host refused a write. The same request may succeed later (`EX_TEMPFAIL`).
    pub const TRY_AGAIN: u8 = 75;
    /// `run` was stopped by force (a second Ctrl-C): its executions were killed and nothing
    /// more was written; the next `run` recovers them (128 + SIGINT, as shells report it).
    pub const FORCED: u8 = 130;
}

pub use error::{UserError, user_error};

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
    let (args, fields) = parse::parse();
    output::init_color(args.color);
    if let Some(selection) = fields {
        output::select_fields(selection);
    }
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
    let result = runtime.block_on(commands::run(args));
    // Output cut short by anything but a reader that left makes an incomplete answer.
    if let Some(failure) = output::finish() {
        eprintln!("{} {failure}", output::error_prefix());
        return ExitCode::from(exit::FAILED);
    }
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("{} {}", output::error_prefix(), error::describe(&err));
            ExitCode::from(error::exit_code(&err))
        }
    }
}
