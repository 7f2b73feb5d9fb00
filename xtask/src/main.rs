//! Developer automation for the agentgrid workspace, run as `cargo xtask <command>`.
//!
//! It is a program rather than shell scripts so that it runs the same everywhere cargo does.
//! Commands:
//! - `bench`: times agentgrid's dispatch of no-op executions, plain, in git worktrees and in the
//!   default sandbox, against the same commands run by `xargs -P2`, and measures the latency
//!   the model gateway adds, restart after `kill -9` with live sandboxes, the engine's
//!   memory, and what `status` and `task list --limit` cost on a store of 100,000 tasks
//!   (see `bench.rs`, `restart.rs`, `views.rs` and BENCHMARKS.md).
//! - `layers`: checks the crates' dependencies against the layering table of ARCHITECTURE.md
//!   (see `layers.rs`).

// xtask is development automation outside the product: it builds agentgrid and drives it,
// git and xargs as a user would, so it starts processes directly instead of through the
// launch crate.
#![allow(clippy::disallowed_methods)]

mod bench;
mod gateway;
mod layers;
mod leases;
mod restart;
mod sandboxed;
mod views;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  bench [options]   time agentgrid against the same commands run by `xargs -P2`, and the
                    latency the model gateway adds
      --quick         fewer tasks and requests and one run, for a smoke test
      --runs N        runs of each side per scenario; the median counts (default 3)
      --only LIST     run only these parts, comma-separated: a, b, c, gateway, restart,
                      memory, views (default all)
      --requests N    measured requests per kind in the gateway part (default 2000)
      --dir DIR       make the temporary projects under DIR (default: the system temp dir)
      --check         exit with 1 when a target (scenario A, scenario C, gateway) is missed
      --agentgrid BIN measure this binary instead of building the workspace's
      --before BIN    in the views part, time this older build side by side
  layers            check that every crate depends only on crates the layering table of
                    ARCHITECTURE.md allows
  help              print this text";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("bench") => bench::Options::parse(&args[1..]).and_then(bench::run),
        Some("layers") => layers::run(),
        Some("help" | "--help" | "-h") | None => {
            println!("{USAGE}");
            Ok(true)
        }
        Some(other) => Err(anyhow::anyhow!("unknown command `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
