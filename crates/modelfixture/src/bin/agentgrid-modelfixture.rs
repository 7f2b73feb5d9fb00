//! `agentgrid-modelfixture`: serves a model script over HTTP for end-to-end tests.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use modelfixture::{FixtureOptions, Script};

/// Serve the OpenAI and Anthropic wire formats from a script of answers.
#[derive(Parser)]
#[command(name = "agentgrid-modelfixture")]
struct Args {
    /// A JSON file: a list of steps, or {"steps": [...], "repeat": true}.
    #[arg(long)]
    script: PathBuf,
    /// The port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The name of an environment variable holding the key every request must carry.
    #[arg(long)]
    api_key_env: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("agentgrid-modelfixture: {message}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let origin = args.script.display().to_string();
    let text = std::fs::read_to_string(&args.script)
        .map_err(|e| format!("cannot read the script {origin}: {e}"))?;
    let script = Script::from_json(&text, &origin).map_err(|e| e.to_string())?;
    let api_key = match &args.api_key_env {
        Some(var) => Some(std::env::var(var).map_err(|_| {
            format!("--api-key-env names {var}, but that environment variable is not set")
        })?),
        None => None,
    };
    let fixture = modelfixture::spawn_with(
        script,
        FixtureOptions {
            api_key,
            port: args.port,
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    // The first line tells a test harness where to connect.
    println!("listening on {}", fixture.base_url());
    let _ = std::io::stdout().flush();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot watch for SIGTERM: {e}"))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    fixture.shutdown().await;
    Ok(())
}
