//! Agent CLIs installed from npm: finding the program a name or a path stands for, and the
//! native binary behind a package whose entry point is only a node wrapper.
//!
//! npm installs a CLI as a link in `node_modules/.bin` to the package's entry point. For most
//! CLIs that is the program (a bundled script run by node, or a binary). Codex's `@openai/codex`
//! is a node script that only finds the binary of an optional per-platform package
//! (`@openai/codex-linux-x64` holds `vendor/x86_64-unknown-linux-musl/bin/codex`) and execs
//! it: run through it, the sandbox would need node only to start the binary, so agentgrid runs
//! the binary itself.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where the program `name` is: `name` itself (against `cwd`) when it holds a `/`, otherwise
/// the first executable file of that name in a directory of `path` (a `PATH` value; empty
/// entries are skipped, as launch does).
pub fn find(name: &str, cwd: &Path, path: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = cwd.join(name);
        return executable(&p).then_some(p);
    }
    path.split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| executable(candidate))
}

fn executable(path: &Path) -> bool {
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The platform part of the names Codex's packages use, for this build's target.
fn codex_platform() -> Option<(&'static str, &'static str)> {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => Some(("@openai/codex-linux-x64", "x86_64-unknown-linux-musl")),
        ("linux", "aarch64") => Some(("@openai/codex-linux-arm64", "aarch64-unknown-linux-musl")),
        ("macos", "x86_64") => Some(("@openai/codex-darwin-x64", "x86_64-apple-darwin")),
        ("macos", "aarch64") => Some(("@openai/codex-darwin-arm64", "aarch64-apple-darwin")),
        _ => None,
    }
}

/// The directory of the npm package `name` that holds `file` (a real path, links followed),
/// when `file` lies in a package of that name: the nearest enclosing directory with a
/// `package.json` must say so.
fn package_of(file: &Path, name: &str) -> Option<PathBuf> {
    let mut dir = file.parent();
    while let Some(d) = dir {
        let manifest = d.join("package.json");
        if manifest.is_file() {
            let text = std::fs::read_to_string(&manifest).ok()?;
            let json: serde_json::Value = serde_json::from_str(&text).ok()?;
            return (json.get("name").and_then(serde_json::Value::as_str) == Some(name))
                .then(|| d.to_path_buf());
        }
        dir = d.parent();
    }
    None
}

/// The installed npm package `program` (a real path) belongs to: the nearest directory above
/// it with a `package.json`, when that lies inside a `node_modules` directory. A CLI bundled
/// as a script loads the rest of its package (chunks, vendored tools) at run time, and the
/// sandbox shows only the program's own file otherwise. A `package.json` outside
/// `node_modules` (a project's own, the main checkout's) is never taken: the sandbox hides
/// those on purpose.
pub fn installed_package(program: &Path) -> Option<PathBuf> {
    let dir = program
        .ancestors()
        .skip(1)
        .find(|d| d.join("package.json").is_file())?;
    dir.components()
        .any(|c| c.as_os_str() == "node_modules")
        .then(|| dir.to_path_buf())
}

/// For Codex's node wrapper at `entry` (a real path): the native binary it would exec, found
/// where node's `require.resolve` finds the platform package (a `node_modules` of the package
/// or of any directory above it), then the package's own `vendor/`. `Ok(None)` when `entry`
/// is not the wrapper (a native binary named directly, a script of the person's own), which
/// then runs as it is; an error saying what to do when it is the wrapper and the binary for
/// this platform is not installed.
pub fn codex_native(entry: &Path) -> Result<Option<PathBuf>, String> {
    let Some(package) = package_of(entry, "@openai/codex") else {
        return Ok(None);
    };
    let Some((platform_package, triple)) = codex_platform() else {
        return Err(format!(
            "{} is Codex's node wrapper, and Codex publishes no native binary for this \
             platform ({} {}): set runtime.command to a Codex binary built for it",
            entry.display(),
            std::env::consts::OS,
            std::env::consts::ARCH
        ));
    };
    let binary = Path::new("vendor").join(triple).join("bin").join("codex");
    let mut candidates: Vec<PathBuf> = package
        .ancestors()
        .filter(|d| d.file_name().is_none_or(|n| n != "node_modules"))
        .map(|d| d.join("node_modules").join(platform_package).join(&binary))
        .collect();
    candidates.push(package.join(&binary));
    if let Some(found) = candidates.iter().find(|c| executable(c)) {
        return Ok(Some(
            std::fs::canonicalize(found).unwrap_or_else(|_| found.clone()),
        ));
    }
    Err(format!(
        "{} is Codex's node wrapper, and the native binary it runs is missing (looked for \
         {platform_package}'s {} beside {}): reinstall Codex with its optional dependencies \
         (`npm install @openai/codex`, without --no-optional), or set runtime.command to the \
         binary",
        entry.display(),
        binary.display(),
        package.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// An npm prefix laid out as `npm install @openai/codex` leaves it: the wrapper, the
    /// `.bin` link, and (when `native`) the platform package beside it.
    fn codex_install(native: bool) -> (tempfile::TempDir, PathBuf) {
        let prefix = tempfile::tempdir().unwrap();
        let modules = prefix.path().join("node_modules");
        let package = modules.join("@openai/codex");
        write(
            &package.join("package.json"),
            r#"{"name":"@openai/codex","bin":{"codex":"bin/codex.js"}}"#,
            0o644,
        );
        write(
            &package.join("bin/codex.js"),
            "#!/usr/bin/env node\n",
            0o755,
        );
        std::fs::create_dir_all(modules.join(".bin")).unwrap();
        std::os::unix::fs::symlink("../@openai/codex/bin/codex.js", modules.join(".bin/codex"))
            .unwrap();
        if native {
            let (platform, triple) = codex_platform().unwrap();
            write(
                &modules
                    .join(platform)
                    .join("vendor")
                    .join(triple)
                    .join("bin/codex"),
                "\x7fELF",
                0o755,
            );
        }
        (prefix, modules.join(".bin"))
    }

    #[test]
    fn the_wrapper_on_the_path_leads_to_the_platform_binary() {
        let (prefix, bin) = codex_install(true);
        // Only the directory given: nothing of the machine's own PATH.
        let found = find("codex", Path::new("/"), &format!("::{}", bin.display())).unwrap();
        let real = std::fs::canonicalize(found).unwrap();
        let native = codex_native(&real).unwrap().unwrap();
        let (platform, triple) = codex_platform().unwrap();
        assert_eq!(
            native,
            std::fs::canonicalize(prefix.path())
                .unwrap()
                .join("node_modules")
                .join(platform)
                .join("vendor")
                .join(triple)
                .join("bin/codex")
        );
        // The binary itself is no wrapper.
        assert_eq!(codex_native(&native).unwrap(), None);
    }

    #[test]
    fn a_wrapper_without_its_binary_says_what_to_do() {
        let (_prefix, bin) = codex_install(false);
        let real = std::fs::canonicalize(bin.join("codex")).unwrap();
        let err = codex_native(&real).unwrap_err();
        assert!(err.contains("native binary it runs is missing"), "{err}");
        assert!(err.contains("reinstall Codex"), "{err}");
    }

    #[test]
    fn the_package_of_an_installed_program_is_shown_and_a_project_is_not() {
        let (prefix, bin) = codex_install(true);
        let real = std::fs::canonicalize(bin.join("codex")).unwrap();
        let package = std::fs::canonicalize(prefix.path())
            .unwrap()
            .join("node_modules/@openai/codex");
        assert_eq!(installed_package(&real), Some(package));
        let project = tempfile::tempdir().unwrap();
        write(&project.path().join("package.json"), "{}", 0o644);
        write(&project.path().join("bin/agent"), "#!/bin/sh\n", 0o755);
        assert_eq!(installed_package(&project.path().join("bin/agent")), None);
    }

    #[test]
    fn a_program_in_no_codex_package_runs_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("codex");
        write(&script, "#!/bin/sh\n", 0o755);
        write(
            &dir.path().join("package.json"),
            r#"{"name":"mine"}"#,
            0o644,
        );
        assert_eq!(codex_native(&script).unwrap(), None);
        assert_eq!(find("codex", Path::new("/"), ""), None);
        assert_eq!(find("codex", Path::new("/"), "/nonexistent-dir"), None);
        assert_eq!(
            find("./codex", dir.path(), ""),
            Some(dir.path().join("./codex"))
        );
    }
}
