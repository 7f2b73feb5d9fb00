//! The git drivers host git may run: the filter, diff and merge drivers the project's config
//! names as trusted (`lfs`, say), with their definitions taken once from the configuration the
//! user's own git reads (global and system), never from the repository's worktrees.
//!
//! Host git reads no global or system configuration (see [`crate::git_env`]), so a driver that
//! `git lfs install` put into `~/.gitconfig` is unknown to it. The engine reads the definitions
//! of the trusted names with `git config --system` and `--global` (which read exactly those
//! files, nothing of any repository) and hands each to every host git command as
//! `-c key=value`. A `.gitattributes` the agent wrote can still only *select* a driver by name;
//! any other globally defined driver stays unknown to host git.

use std::path::Path;
use std::time::Duration;

use launch::LaunchSpec;

use crate::Error;

/// Reading a few configuration files.
const CONFIG_TIMEOUT: Duration = Duration::from_secs(30);
const CONFIG_CAPTURE: usize = 1024 * 1024;
/// The configuration sections that define a driver selected by an attribute.
const SECTIONS: [&str; 3] = ["filter", "diff", "merge"];

/// Where a driver's definition was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverSource {
    /// The user's global git configuration (`~/.gitconfig`, `$XDG_CONFIG_HOME/git/config`).
    Global,
    /// The system's git configuration (`/etc/gitconfig`).
    System,
    /// The repository's own configuration, which host git reads anyway.
    Repository,
}

impl DriverSource {
    pub fn as_str(self) -> &'static str {
        match self {
            DriverSource::Global => "global",
            DriverSource::System => "system",
            DriverSource::Repository => "repository",
        }
    }
}

/// One trusted driver and its definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Driver {
    pub name: String,
    /// The settings host git is given, such as `filter.lfs.process=git-lfs filter-process`
    /// (empty when only the repository defines it).
    pub settings: Vec<(String, String)>,
    /// Where the settings came from, in the order they are applied.
    pub sources: Vec<DriverSource>,
}

/// The trusted drivers, resolved: what every host git command gets on its command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedDrivers {
    pub drivers: Vec<Driver>,
}

impl TrustedDrivers {
    /// `-c key=value` for every setting, in order (a later one wins, as in git).
    pub(crate) fn args(&self) -> Vec<String> {
        self.drivers
            .iter()
            .flat_map(|d| &d.settings)
            .flat_map(|(key, value)| ["-c".to_string(), format!("{key}={value}")])
            .collect()
    }
}

/// Whether `name` can be a driver name inside a configuration key: it becomes the subsection of
/// `filter.<name>.clean`, so nothing that could end it or start another part.
pub fn valid_driver_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Looks up each of `names` in the system and global git configuration, then, for a name
/// neither defines, in the repository of the main checkout at `repo_root`. A name defined
/// nowhere is [`Error::UndefinedDriver`].
pub async fn trusted_drivers(names: &[String], repo_root: &Path) -> Result<TrustedDrivers, Error> {
    let mut drivers = Vec::new();
    if names.is_empty() {
        return Ok(TrustedDrivers { drivers });
    }
    if let Some(bad) = names.iter().find(|n| !valid_driver_name(n)) {
        return Err(Error::UndefinedDriver {
            name: bad.clone(),
            reason: "it is not a driver name (letters, digits, `-` and `_`)".into(),
        });
    }
    let pattern = format!(r"^({})\.({})\.", SECTIONS.join("|"), names.join("|"));
    // System first, so that global settings win, as in git; and only when the user's own git
    // reads it (`git config --system` reads it even then).
    let no_system = std::env::var("GIT_CONFIG_NOSYSTEM").is_ok_and(|v| {
        !matches!(
            v.to_ascii_lowercase().as_str(),
            "" | "0" | "false" | "no" | "off"
        )
    });
    let system = if no_system {
        Vec::new()
    } else {
        user_config(repo_root, "--system", &pattern).await?
    };
    let global = user_config(repo_root, "--global", &pattern).await?;
    let repository = repository_config(repo_root, &pattern).await?;
    for name in names {
        let mut driver = Driver {
            name: name.clone(),
            settings: Vec::new(),
            sources: Vec::new(),
        };
        for (source, found) in [
            (DriverSource::System, &system),
            (DriverSource::Global, &global),
        ] {
            let mine: Vec<&(String, String)> = found
                .iter()
                .filter(|(key, _)| names_driver(key, name))
                .collect();
            if mine.is_empty() {
                continue;
            }
            driver.sources.push(source);
            for (key, value) in mine {
                driver.settings.retain(|(k, _)| k != key);
                driver.settings.push((key.clone(), value.clone()));
            }
        }
        if driver.sources.is_empty() {
            if !repository.iter().any(|(key, _)| names_driver(key, name)) {
                return Err(Error::UndefinedDriver {
                    name: name.clone(),
                    reason: format!(
                        "no `filter.{name}.*`, `diff.{name}.*` or `merge.{name}.*` is set in the \
                         global git configuration (~/.gitconfig), the system one or the \
                         repository's; define it there (for git-lfs, run `git lfs install`) or \
                         remove the name"
                    ),
                });
            }
            driver.sources.push(DriverSource::Repository);
        }
        drivers.push(driver);
    }
    Ok(TrustedDrivers { drivers })
}

/// Whether the configuration key `key` (`filter.lfs.clean`) belongs to the driver `name`.
fn names_driver(key: &str, name: &str) -> bool {
    SECTIONS.iter().any(|section| {
        key.strip_prefix(section)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| rest.strip_prefix(name))
            .is_some_and(|rest| rest.starts_with('.') && !rest[1..].contains('.'))
    })
}

/// The settings matching `pattern` in one of the user's own configuration files (`--global` or
/// `--system`), read with the engine's own environment (its `HOME`, and any `GIT_CONFIG_*` the
/// user set) from `/`, so that no repository is found.
async fn user_config(
    repo_root: &Path,
    scope: &str,
    pattern: &str,
) -> Result<Vec<(String, String)>, Error> {
    let mut env = launch::base_env();
    env.retain(|(key, _)| !key.starts_with("GIT_"));
    for key in [
        "XDG_CONFIG_HOME",
        "GIT_CONFIG_GLOBAL",
        "GIT_CONFIG_SYSTEM",
        "GIT_CONFIG_NOSYSTEM",
    ] {
        if let Ok(value) = std::env::var(key) {
            launch::set_var(&mut env, key.into(), value);
        }
    }
    launch::set_var(&mut env, "GIT_CEILING_DIRECTORIES".into(), "/".into());
    launch::set_var(&mut env, "LC_ALL".into(), "C".into());
    let args = ["config", scope, "--null", "--get-regexp", pattern];
    let spec = LaunchSpec::new("git", "/").args(args).with_env_exactly(env);
    read_settings(spec, repo_root, &args).await
}

/// The settings matching `pattern` in the repository's own configuration, read as host git
/// reads it (the hardened environment, from the main checkout).
async fn repository_config(
    repo_root: &Path,
    pattern: &str,
) -> Result<Vec<(String, String)>, Error> {
    let mut args: Vec<&str> = crate::git::HARDENING.to_vec();
    let asked = ["config", "--local", "--null", "--get-regexp", pattern];
    args.extend(asked);
    let spec = LaunchSpec::new("git", repo_root)
        .args(args)
        .with_env_exactly(crate::git_env());
    read_settings(spec, repo_root, &asked).await
}

async fn read_settings(
    spec: LaunchSpec,
    repo_root: &Path,
    args: &[&str],
) -> Result<Vec<(String, String)>, Error> {
    let out = launch::run(spec, CONFIG_TIMEOUT, CONFIG_CAPTURE).await?;
    match out.code {
        Some(0) => Ok(parse_null_listing(&out.stdout)),
        // Nothing matched, or there is no such file.
        Some(1) => Ok(Vec::new()),
        _ => Err(Error::Git {
            command: format!("git {}", args.join(" ")),
            dir: repo_root.to_path_buf(),
            status: out.describe(),
            output: out.combined(),
        }),
    }
}

/// `git config --null --get-regexp` output: `key\nvalue\0` per setting (`key\0` for a key
/// without a value).
fn parse_null_listing(text: &str) -> Vec<(String, String)> {
    text.split('\0')
        .filter(|entry| !entry.is_empty())
        .map(|entry| match entry.split_once('\n') {
            Some((key, value)) => (key.to_string(), value.to_string()),
            None => (entry.to_string(), "true".to_string()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_belong_to_their_own_driver_only() {
        assert!(names_driver("filter.lfs.clean", "lfs"));
        assert!(names_driver("merge.lfs.driver", "lfs"));
        assert!(!names_driver("filter.lfsx.clean", "lfs"));
        assert!(!names_driver("filter.lfs.x.clean", "lfs"));
        assert!(!names_driver("core.lfs.clean", "lfs"));
    }

    #[test]
    fn listings_keep_values_with_spaces_and_newlines() {
        let text =
            "filter.lfs.clean\ngit-lfs clean -- %f\0filter.lfs.required\0diff.x.textconv\na\nb\0";
        assert_eq!(
            parse_null_listing(text),
            [
                ("filter.lfs.clean".into(), "git-lfs clean -- %f".into()),
                ("filter.lfs.required".into(), "true".into()),
                ("diff.x.textconv".into(), "a\nb".into()),
            ]
        );
    }

    #[test]
    fn driver_names_cannot_reach_into_other_keys() {
        assert!(valid_driver_name("lfs"));
        assert!(valid_driver_name("my-diff_2"));
        for bad in ["", "a.b", "a b", "a=b", "a\nb", "*"] {
            assert!(!valid_driver_name(bad), "{bad:?}");
        }
    }
}
