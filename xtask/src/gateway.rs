//! The model gateway's added latency: runs the gateway crate's `gateway_latency` example and
//! reads the JSON object it prints last.
//!
//! The example sends the same requests to a scripted model server directly and through the
//! gateway, interleaved, and reports the p50 and p99 of both for two kinds of request (a chat
//! completion, and a streamed Messages call), each through the gateway both as an execution
//! with budgets (every request reserved and settled) and as one without. "Added" is the
//! gateway's percentile minus the direct one; the target counts the runs with budgets.

use std::process::{Command, Stdio};

use anyhow::{Context, ensure};
use serde_json::Value;

/// The gateway passes when it adds less than this at p99, for every kind of request.
pub const TARGET_P99_US: u64 = 1000;

/// One kind of request, in microseconds.
pub struct Percentiles {
    pub direct_p50: u64,
    pub direct_p99: u64,
    pub gateway_p50: u64,
    pub gateway_p99: u64,
    pub added_p50: u64,
    pub added_p99: u64,
    /// Through the gateway over direct, at p99.
    pub ratio_p99: f64,
}

impl Percentiles {
    fn read(value: &Value, what: &str) -> anyhow::Result<Percentiles> {
        let field = |name: &str| {
            value[name]
                .as_u64()
                .with_context(|| format!("the latency report has no `{what}.{name}`"))
        };
        Ok(Percentiles {
            direct_p50: field("direct_p50_us")?,
            direct_p99: field("direct_p99_us")?,
            gateway_p50: field("gateway_p50_us")?,
            gateway_p99: field("gateway_p99_us")?,
            added_p50: field("added_p50_us")?,
            added_p99: field("added_p99_us")?,
            ratio_p99: value["ratio_p99"].as_f64().unwrap_or(0.0),
        })
    }
}

/// What one run of the example measured.
pub struct Latency {
    pub requests: u64,
    /// `(name, percentiles)` per kind of request, with budgets: what the target counts.
    pub kinds: Vec<(&'static str, Percentiles)>,
    /// The same kinds from an execution without budgets, for comparison, when measured.
    pub unbudgeted: Vec<(&'static str, Percentiles)>,
}

impl Latency {
    pub fn met(&self) -> bool {
        self.kinds.iter().all(|(_, p)| p.added_p99 < TARGET_P99_US)
    }

    pub fn worst_added_p99(&self) -> u64 {
        self.kinds
            .iter()
            .map(|(_, p)| p.added_p99)
            .max()
            .unwrap_or(0)
    }
}

/// Builds and runs the example with `requests` measured requests of each kind and side.
pub fn measure(requests: usize) -> anyhow::Result<Latency> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    println!("gateway latency: building and running the gateway_latency example…");
    let out = Command::new(&cargo)
        .args([
            "run",
            "--quiet",
            "--release",
            "--package",
            "gateway",
            "--example",
            "gateway_latency",
            "--",
            "--requests",
            &requests.to_string(),
        ])
        .current_dir(crate::bench::workspace_root())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    ensure!(
        out.status.success(),
        "the gateway_latency example failed ({}, see above)",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    let last = lines
        .pop()
        .context("the gateway_latency example printed nothing")?;
    for line in lines {
        println!("  {line}");
    }
    parse(last)
}

fn parse(line: &str) -> anyhow::Result<Latency> {
    let report: Value = serde_json::from_str(line)
        .with_context(|| format!("the last line of gateway_latency is not JSON: {line}"))?;
    let mut unbudgeted = Vec::new();
    for (name, field) in [
        ("chat completion, no budget", "chat_completions_no_budget"),
        ("messages, streamed, no budget", "messages_stream_no_budget"),
    ] {
        if report.get(field).is_some() {
            unbudgeted.push((name, Percentiles::read(&report[field], field)?));
        }
    }
    Ok(Latency {
        requests: report["requests"].as_u64().unwrap_or(0),
        kinds: vec![
            (
                "chat completion, budgets",
                Percentiles::read(&report["chat_completions"], "chat_completions")?,
            ),
            (
                "messages, streamed, budgets",
                Percentiles::read(&report["messages_stream"], "messages_stream")?,
            ),
        ],
        unbudgeted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_examples_last_line() {
        let side = |added| {
            format!(
                r#"{{"direct_p50_us":400,"direct_p99_us":900,"gateway_p50_us":600,"gateway_p99_us":{},"added_p50_us":200,"added_p99_us":{added}}}"#,
                900 + added
            )
        };
        let line = format!(
            r#"{{"bench":"gateway_latency","requests":10,"chat_completions":{},"messages_stream":{},"target_met":true}}"#,
            side(300),
            side(1200)
        );
        let latency = parse(&line).unwrap();
        assert_eq!(latency.requests, 10);
        assert_eq!(latency.kinds[0].1.added_p99, 300);
        assert_eq!(latency.kinds[1].1.gateway_p99, 2100);
        assert_eq!(latency.worst_added_p99(), 1200);
        assert!(latency.unbudgeted.is_empty());
        assert!(!latency.met(), "1.2 ms added at p99 misses the target");
        assert!(parse(r#"{"requests":10}"#).is_err());
    }
}
