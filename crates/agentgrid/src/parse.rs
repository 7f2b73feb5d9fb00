//! Turning the command line into a [`Cli`], with two things the derived grammar cannot say by
//! itself: clap's own messages (a typo in a flag, `--help`) follow `--color` and `NO_COLOR` like
//! everything else agentgrid prints, and every command that has `--json` also takes `--fields`.
//!
//! Decision: `--fields` is added to the grammar here, to each command that has a `json`
//! argument, rather than written into every command's arguments: a command that gains `--json`
//! gains `--fields` with it, and the selection is applied where JSON is printed
//! ([`crate::output::json`]), so no command has to remember it.

use clap::{Arg, ArgMatches, CommandFactory, FromArgMatches};

use crate::cli::Cli;
use crate::fields::Selection;
use crate::output::ColorChoice;

/// The grammar as the binary parses it (and as completions and man pages describe it).
pub fn command() -> clap::Command {
    with_fields(Cli::command())
}

/// Parses the process's arguments; a parse error (or `--help`, `--version`) is printed in
/// clap's words, coloured as `--color` and the environment say, and ends the process.
pub fn parse() -> (Cli, Option<Selection>) {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let colour = clap_color(color_flag(&args));
    let matches = command()
        .color(colour)
        .try_get_matches_from(&args)
        .unwrap_or_else(|e| e.exit());
    let (path, leaf) = leaf_of(&matches);
    let fields = leaf
        .try_get_one::<String>("fields")
        .ok()
        .flatten()
        .map(|list| Selection::parse(&path, list));
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match fields {
        None => (cli, None),
        Some(Ok(selection)) => (cli, Some(selection)),
        Some(Err(message)) => {
            // Said before the command runs, so that nothing has changed.
            crate::output::init_color(cli.color);
            eprintln!("{} {message}", crate::output::error_prefix());
            std::process::exit(i32::from(crate::exit::USAGE));
        }
    }
}

/// Adds `--fields` next to every `--json`, in every command at any depth.
fn with_fields(mut command: clap::Command) -> clap::Command {
    if command.get_arguments().any(|a| a.get_id() == "json") {
        command = command.arg(
            Arg::new("fields")
                .long("fields")
                .value_name("A,B,C")
                .requires("json")
                .help("With --json, print only these fields (comma-separated; a dotted path such as usage.cost reaches inside an object); docs/json.md lists them"),
        );
    }
    let names: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        command = command.mut_subcommand(name, with_fields);
    }
    command
}

/// The names of the subcommands chosen (`["task", "list"]`) and the matches of the last one.
fn leaf_of(matches: &ArgMatches) -> (Vec<String>, &ArgMatches) {
    let mut path = Vec::new();
    let mut leaf = matches;
    while let Some((name, sub)) = leaf.subcommand() {
        path.push(name.to_string());
        leaf = sub;
    }
    (path, leaf)
}

/// The `--color` flag as given before any `--`, read ahead of parsing because clap needs its
/// colour before it can report that the rest does not parse. An unknown value is left to the
/// parser to refuse.
fn color_flag(args: &[std::ffi::OsString]) -> ColorChoice {
    let mut choice = ColorChoice::Auto;
    let mut words = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(word) = words.next() {
        let value = if word == "--" {
            break;
        } else if word == "--color" {
            words.next().map(|w| w.into_owned())
        } else {
            word.strip_prefix("--color=").map(str::to_string)
        };
        match value.as_deref() {
            Some("always") => choice = ColorChoice::Always,
            Some("never") => choice = ColorChoice::Never,
            Some("auto") => choice = ColorChoice::Auto,
            _ => {}
        }
    }
    choice
}

/// clap's colour for its messages on standard error, decided by the same rule as ours.
fn clap_color(choice: ColorChoice) -> clap::ColorChoice {
    use std::io::IsTerminal;
    let on = crate::output::wants_color(
        choice,
        std::env::var("NO_COLOR").ok().as_deref(),
        std::env::var("CLICOLOR_FORCE").ok().as_deref(),
        std::io::stderr().is_terminal(),
    );
    if on {
        clap::ColorChoice::Always
    } else {
        clap::ColorChoice::Never
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(args: &[&str]) -> ColorChoice {
        let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        color_flag(&args)
    }

    #[test]
    fn the_colour_flag_is_read_in_both_spellings_and_not_after_a_double_dash() {
        assert_eq!(flag(&["ag", "status"]), ColorChoice::Auto);
        assert_eq!(flag(&["ag", "--color", "never", "x"]), ColorChoice::Never);
        assert_eq!(flag(&["ag", "x", "--color=always"]), ColorChoice::Always);
        assert_eq!(
            flag(&["ag", "task", "add", "--", "--color=always"]),
            ColorChoice::Auto
        );
    }

    #[test]
    fn every_command_with_json_takes_fields() {
        fn walk(command: &clap::Command, path: &str, seen: &mut usize) {
            let has = |id: &str| command.get_arguments().any(|a| a.get_id() == id);
            assert_eq!(has("json"), has("fields"), "{path}");
            *seen += usize::from(has("fields"));
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), seen);
            }
        }
        let mut seen = 0;
        walk(&command(), "agentgrid", &mut seen);
        assert!(seen >= 15, "only {seen} commands take --fields");
    }
}
