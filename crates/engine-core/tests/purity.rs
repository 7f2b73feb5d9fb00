//! The core reads no clock, does no IO and keeps nothing in an order that changes between runs:
//! checked on its sources, since a single `Instant::now()` would make a simulation seed replay
//! differently.

use std::path::Path;

/// What the core's sources must not name, and why.
const BANNED: &[(&str, &str)] = &[
    ("Instant", "a clock read: time comes in with each input"),
    ("SystemTime", "a clock read: time comes in with each input"),
    ("std::fs", "file IO: the runner performs effects"),
    ("std::net", "network IO: the runner performs effects"),
    ("std::thread", "threads: the core is one state machine"),
    ("std::process", "processes: the runner starts them"),
    (
        "std::env",
        "the environment: options come in at construction",
    ),
    ("tokio", "async IO: the runner is async, the core is not"),
    (
        "rand",
        "randomness: the same inputs must give the same effects",
    ),
    (
        "HashMap",
        "a hash map's order differs from run to run, which breaks replay",
    ),
    (
        "HashSet",
        "a hash set's order differs from run to run, which breaks replay",
    ),
];

#[test]
fn the_core_reads_no_clock_and_does_no_io() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut checked = 0;
    for entry in std::fs::read_dir(&src).expect("the core's sources") {
        let path = entry.expect("a source file").path();
        let text = std::fs::read_to_string(&path).expect("a readable source");
        for (word, why) in BANNED {
            let found = text.lines().enumerate().find(|(_, line)| {
                line.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .any(|path| match word.contains("::") {
                        true => path.contains(word),
                        false => path.split("::").any(|segment| segment == *word),
                    })
            });
            if let Some((n, line)) = found {
                panic!(
                    "{}:{}: `{word}` in the core: {why}\n{line}",
                    path.display(),
                    n + 1
                );
            }
        }
        checked += 1;
    }
    assert!(
        checked >= 5,
        "only {checked} source files found in {}",
        src.display()
    );
}
