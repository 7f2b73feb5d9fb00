//! What the agent may not change, and what it may not add, in the tree its validators judge.
//!
//! Validators judge the agent's work with the owner's tests and the owner's runner. Two kinds
//! of change would let the agent judge itself instead, and both fail the iteration before any
//! validator runs, with the reason fed back:
//!
//! - *Protected files* that existed in the task's base commit and were modified or deleted:
//!   the validators' own files (relative paths named in their commands), existing tests and the
//!   test runners' configuration, or whatever `validation.protect` lists instead. New tests are
//!   additions and stay allowed. For `pyproject.toml` only its `[tool.pytest…]` tables count,
//!   so that adding a dependency stays allowed.
//! - *Planted files* the agent added that a runner or the interpreter would execute on its own:
//!   a new `conftest.py`, `sitecustomize.py`/`usercustomize.py`, `.pth` files, compiled
//!   `.pyc` files outside `__pycache__`, a module or package named after a standard-library
//!   module or a runner started with `python -m`, at the top, beside a validator's script or
//!   in a directory that is not a package (it is first on `sys.path` when a script or `-m`
//!   runs from there), package metadata (`*.dist-info`, whose entry points name pytest
//!   plugins), new runner configuration, and anything under `node_modules/`.
//!
//! Everything here is pure: it reads the list of changes and answers.

use workspace::{Change, ChangeKind};

/// A pattern list with the words that say why it is protected.
struct Group {
    why: &'static str,
    globs: &'static [&'static str],
}

/// The default protection when the manifest lists none.
const DEFAULT_GROUPS: &[Group] = &[
    Group {
        why: "existing tests",
        globs: &[
            "tests/**",
            "test/**",
            "**/test_*.py",
            "**/*_test.py",
            "**/*_test.go",
            "**/*.test.*",
            "**/*.spec.*",
            "**/__tests__/**",
            "**/conftest.py",
            "**/tests.py",
        ],
    },
    Group {
        why: "test-runner configuration",
        globs: &[
            "pytest.ini",
            ".pytest.ini",
            "tox.ini",
            "conftest.py",
            "setup.cfg",
            "jest.config.*",
            "vitest.config.*",
            ".mocharc*",
            ".cargo/config*",
        ],
    },
];

/// Runner configuration an agent may not add (an existing one is protected above).
const RUNNER_CONFIG: &[&str] = &[
    "pytest.ini",
    ".pytest.ini",
    "tox.ini",
    "setup.cfg",
    "jest.config.*",
    "vitest.config.*",
    ".mocharc*",
];

/// The protection an agent's validation works under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protection {
    /// Relative paths named in the validators' commands.
    pub validator_files: Vec<String>,
    /// `None`: the default groups (and the pytest tables of `pyproject.toml`); otherwise the
    /// manifest's own globs.
    pub globs: Option<Vec<String>>,
    /// Top-level modules the validators run with `python -m`: the runner itself, which a
    /// module of that name at the top of the tree would replace.
    pub run_modules: Vec<String>,
    /// Whether a validator runs a package manager's scripts (`npm test`): then the `scripts`
    /// of `package.json` and `.npmrc` (which names the shell they run in) are the owner's.
    pub runs_npm: bool,
}

impl Protection {
    pub fn new(validator_argvs: &[Vec<String>], globs: Option<Vec<String>>) -> Protection {
        let mut validator_files: Vec<String> = Vec::new();
        for argv in validator_argvs {
            for word in validator_words(argv) {
                if let Some(path) = path_like(&word)
                    && !validator_files.contains(&path)
                {
                    validator_files.push(path);
                }
            }
        }
        let mut run_modules: Vec<String> = Vec::new();
        for module in validator_argvs.iter().flat_map(|argv| python_modules(argv)) {
            if !run_modules.contains(&module) {
                run_modules.push(module);
            }
        }
        let runs_npm = validator_argvs
            .iter()
            .flat_map(|a| commands_of(a))
            .any(|words| {
                words.iter().find(|w| !before_program(w)).is_some_and(|p| {
                    ["npm", "yarn", "pnpm"].contains(&p.rsplit('/').next().unwrap_or(p))
                })
            });
        Protection {
            validator_files,
            globs,
            run_modules,
            runs_npm,
        }
    }

    /// Adds the modules a runner the validators start imports by itself (pytest's own
    /// libraries), which a module of that name first on `sys.path` would replace as surely as
    /// the runner.
    pub fn add_runner_dependencies(&mut self) {
        if !self.run_modules.iter().any(|m| m == "pytest") {
            return;
        }
        for module in PYTEST_DEPENDENCIES {
            self.add_run_module(module);
        }
    }

    /// Adds a module the validators import from outside the tree (a top-level name of a
    /// `validation.share` path): a new one of that name first on `sys.path` shadows it.
    pub fn add_run_module(&mut self, module: &str) {
        if !module.is_empty() && !self.run_modules.iter().any(|m| m == module) {
            self.run_modules.push(module.to_string());
        }
    }

    /// Adds what a shell script the validators run runs in turn, as the base commit has it
    /// (`ci/check.sh` running `python3 ci/runner.py`): one level deep, read like a command.
    pub fn add_script(&mut self, text: &str) {
        for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
            let argv = ["sh".to_string(), "-c".to_string(), line.to_string()];
            for word in validator_words(&argv) {
                if let Some(path) = path_like(&word)
                    && !self.validator_files.contains(&path)
                {
                    self.validator_files.push(path);
                }
            }
            for module in python_modules(&argv) {
                if !self.run_modules.contains(&module) {
                    self.run_modules.push(module);
                }
            }
        }
    }

    /// Whether Python puts `dir` first on `sys.path` for a validator: the top of the tree, or
    /// the directory of a script one runs.
    pub fn runs_from(&self, dir: &str) -> bool {
        dir.is_empty()
            || self
                .validator_files
                .iter()
                .any(|f| f.ends_with(".py") && f.rsplit_once('/').is_some_and(|(d, _)| d == dir))
    }

    /// Whether nothing at all is protected (`protect: []`).
    pub fn is_off(&self) -> bool {
        self.globs.as_ref().is_some_and(Vec::is_empty)
    }

    /// Whether `pyproject.toml`'s pytest tables are protected: only under the default.
    pub fn covers_pytest_tables(&self) -> bool {
        self.globs.is_none()
    }

    /// Why `path` is protected, or `None` when the agent may change it.
    pub fn why(&self, path: &str) -> Option<&str> {
        if self.is_off() {
            return None;
        }
        if self.validator_files.iter().any(|f| f == path) {
            return Some("a validator runs it");
        }
        if self.runs_npm && (path == ".npmrc" || path.ends_with("/.npmrc")) {
            return Some("the package manager's configuration");
        }
        match &self.globs {
            Some(globs) => globs
                .iter()
                .any(|g| glob_match(g, path))
                .then_some("listed in validation.protect"),
            None => DEFAULT_GROUPS
                .iter()
                .find(|g| g.globs.iter().any(|p| glob_match(p, path)))
                .map(|g| g.why),
        }
    }
}

/// Words that run the command after them: the program is the next word.
const WRAPPERS: &[&str] = &["exec", "command", "env", "nohup", "time"];

/// Whether a word of a simple command comes before its program: an assignment (`CI=1`) or a
/// wrapper.
fn before_program(word: &str) -> bool {
    (word.contains('=') && !word.starts_with('=')) || WRAPPERS.contains(&word)
}

/// Whether the file at `path` holding `text` is a shell script.
pub fn is_shell_script(path: &str, text: &str) -> bool {
    path.ends_with(".sh")
        || text
            .lines()
            .next()
            .is_some_and(|l| l.starts_with("#!") && l.trim_end().ends_with("sh"))
}

/// One reason the tree cannot be judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub path: String,
    pub message: String,
}

/// Protected files that existed at base and were modified, deleted or turned into a link.
pub fn protected_changes(protection: &Protection, changes: &[Change]) -> Vec<Finding> {
    changes
        .iter()
        .filter(|c| c.kind != ChangeKind::Added)
        .filter_map(|c| {
            let why = protection.why(&c.path)?;
            let what = if c.kind == ChangeKind::Deleted {
                "was deleted"
            } else {
                "was changed"
            };
            Some(Finding {
                path: c.path.clone(),
                message: format!(
                    "{} is protected ({why}) and {what}: restore it; the validators judge with the base commit's version",
                    c.path
                ),
            })
        })
        .collect()
}

/// The finding for a `pyproject.toml` whose pytest tables differ from the base commit's.
pub fn pytest_tables_changed(path: &str, base: &str, now: &str) -> Option<Finding> {
    (pytest_tables(base) != pytest_tables(now)).then(|| Finding {
        path: path.to_string(),
        message: format!(
            "the [tool.pytest] section of {path} is protected (test-runner configuration) and was changed: restore it; the rest of the file may change"
        ),
    })
}

/// The finding for a `package.json` whose `scripts` differ from the base commit's (a file
/// that no longer reads as JSON differs too).
pub fn npm_scripts_changed(path: &str, base: &str, now: &str) -> Option<Finding> {
    let scripts = |text: &str| {
        serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .map(|v| v.get("scripts").cloned())
    };
    (scripts(base) != scripts(now)).then(|| Finding {
        path: path.to_string(),
        message: format!(
            "the scripts of {path} are protected (a validator runs them) and were changed: restore them; the rest of the file may change"
        ),
    })
}

/// The finding for a new `pyproject.toml` that configures pytest.
pub fn pytest_tables_added(path: &str, now: &str) -> Option<Finding> {
    (!pytest_tables(now).is_empty()).then(|| Finding {
        path: path.to_string(),
        message: format!(
            "{path} is new and configures pytest ([tool.pytest]): remove that section; the runner's configuration is the owner's"
        ),
    })
}

/// Files the agent added that a runner or the interpreter would run by themselves.
/// `is_package(dir)` says whether the commit has `<dir>/__init__.py` (`dir` is `""` for the top).
/// The modules the validators run with `python -m` are shadowed like the standard library's.
pub fn planted_files(
    changes: &[Change],
    protection: &Protection,
    is_package: impl Fn(&str) -> bool,
) -> Vec<Finding> {
    let run_modules = &protection.run_modules;
    let mut found = Vec::new();
    for change in changes.iter().filter(|c| c.kind == ChangeKind::Added) {
        let path = change.path.as_str();
        let (dir, name) = split_dir(path);
        let shadowed = module_of(dir, name).filter(|(stem, within)| {
            // The top of the tree is on `sys.path` under `python -m`, and so is the directory
            // of a script a validator runs, whether or not it holds an `__init__.py`.
            (STDLIB_MODULES.binary_search(stem).is_ok() || run_modules.iter().any(|m| m == stem))
                && (protection.runs_from(within) || !is_package(within))
        });
        let why = if path.split('/').any(|c| c == "node_modules") {
            Some("node_modules is never committed; the validators get the owner's through validation.share".to_string())
        } else if path
            .split('/')
            .any(|c| c.ends_with(".dist-info") || c.ends_with(".egg-info"))
        {
            Some("package metadata on sys.path registers entry points, and pytest loads the plugins they name (pytest11) by itself".into())
        } else if protection.runs_npm && name == ".npmrc" {
            Some("a new .npmrc can change the shell the package manager runs scripts in".into())
        } else if ["GNUmakefile", "makefile", "Makefile"].contains(&name)
            && protection.validator_files.iter().any(|f| f == path)
        {
            // make reads the first of these it finds, so a new one replaces the owner's.
            Some("a validator runs it, and what the validators run is the owner's".into())
        } else if module_of(dir, name).is_some_and(|(stem, _)| stem == crate::guard::MODULE) {
            Some(format!(
                "{} is the name of agentgrid's own guard for test runners",
                crate::guard::MODULE
            ))
        } else if name == "conftest.py" {
            Some("a new conftest.py runs inside pytest and can change its verdict".into())
        } else if name == "sitecustomize.py" || name == "usercustomize.py" {
            Some(format!("{name} runs at every Python start-up"))
        } else if name.ends_with(".pth") {
            Some("a .pth file runs code at Python start-up".into())
        } else if name.ends_with(".pyc") && !path.split('/').any(|c| c == "__pycache__") {
            Some("a compiled .pyc outside __pycache__ is imported in place of source".into())
        } else if let Some((stem, within)) = shadowed {
            let whose = if STDLIB_MODULES.binary_search(&stem).is_ok() {
                "the standard library's"
            } else {
                "the validators' runner"
            };
            let shown = if name == "__init__.py" {
                format!("the package {dir}/")
            } else {
                name.to_string()
            };
            Some(format!(
                "{shown} shadows {whose} `{stem}` for whatever runs from {}",
                if within.is_empty() {
                    "the top of the repository"
                } else {
                    within
                }
            ))
        } else if RUNNER_CONFIG.iter().any(|g| glob_match(g, path)) {
            Some("new test-runner configuration can change what the tests run".into())
        } else {
            None
        };
        if let Some(why) = why {
            found.push(Finding {
                path: path.to_string(),
                message: format!("{path} may not be added ({why}): remove it"),
            });
        }
    }
    found
}

fn split_dir(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

/// The top-level module a file of `dir` named `name` is imported as, and the directory on
/// `sys.path` it is found from: `json.py` and `json.cpython-311-x86_64-linux-gnu.so` are
/// `json`, and so is the package `json/__init__.py`, found from the directory above.
fn module_of<'a>(dir: &'a str, name: &'a str) -> Option<(&'a str, &'a str)> {
    if name == "__init__.py" {
        if dir.is_empty() {
            return None;
        }
        let (parent, package) = split_dir(dir);
        return Some((package, parent));
    }
    if let Some(stem) = name.strip_suffix(".py") {
        return Some((stem, dir));
    }
    if name.ends_with(".so") {
        return name.split('.').next().map(|stem| (stem, dir));
    }
    None
}

/// The top-level modules `python -m` runs in `argv`'s commands (`pytest` of `python3 -m
/// pytest -q`, `unittest` of `python -m unittest.main`).
fn python_modules(argv: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for words in commands_of(argv) {
        let mut words = words.into_iter().skip_while(|w| before_program(w));
        let Some(program) = words.next() else {
            continue;
        };
        if !program
            .rsplit('/')
            .next()
            .unwrap_or(&program)
            .starts_with("python")
        {
            continue;
        }
        while let Some(word) = words.next() {
            if word == "-c" || !word.starts_with('-') {
                break;
            }
            if word == "-X" || word == "-W" {
                // Their argument is not the script.
                words.next();
                continue;
            }
            if word == "-m" {
                if let Some(module) = words.next() {
                    let top = module.split('.').next().unwrap_or_default().to_string();
                    if !top.is_empty() {
                        found.push(top);
                    }
                }
                break;
            }
        }
    }
    found
}

/// Whether one of `argv`'s commands starts a Python interpreter (`python3 …`, `pytest`).
pub(crate) fn runs_python(argv: &[String]) -> bool {
    commands_of(argv).into_iter().any(|words| {
        let Some(program) = words.into_iter().find(|w| !before_program(w)) else {
            return false;
        };
        let name = program.rsplit('/').next().unwrap_or(&program).to_string();
        name.starts_with("python") || name == "pytest" || name == "py.test"
    })
}

/// The simple commands of a validator's argv: those of its shell line, or the argv itself.
fn commands_of(argv: &[String]) -> Vec<Vec<String>> {
    match argv {
        [sh, flag, line, ..] if (sh == "sh" || sh.ends_with("/sh")) && flag == "-c" => {
            simple_commands(line)
        }
        _ => vec![argv.to_vec()],
    }
}

/// Every line that may configure pytest, trimmed, in order: those of `[tool.pytest…]` tables,
/// and also of whatever else could hold them in TOML: the root table and `[tool]` (dotted
/// keys, `pytest.ini_options.addopts = …`), and a header spelled with escapes
/// (`["\u0074ool"…]`). Other tables (`[project]`, `[tool.ruff]`) may change freely. Headers
/// inside multi-line strings are not headers.
fn pytest_tables(text: &str) -> Vec<String> {
    let mut tables = Vec::new();
    let mut inside = true;
    let mut in_string: Option<&str> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if in_string.is_none() && trimmed.starts_with('[') {
            inside = may_configure_pytest(trimmed);
        }
        for delimiter in ["\"\"\"", "'''"] {
            if in_string.is_none_or(|d| d == delimiter) && line.matches(delimiter).count() % 2 == 1
            {
                in_string = match in_string {
                    Some(_) => None,
                    None => Some(delimiter),
                };
            }
        }
        if inside && !trimmed.is_empty() && !trimmed.starts_with('#') {
            tables.push(trimmed.to_string());
        }
    }
    tables
}

/// Whether the table a header line opens may hold pytest's configuration.
fn may_configure_pytest(header: &str) -> bool {
    let name = header.trim_start_matches('[');
    let name = name.split(']').next().unwrap_or_default();
    if name.contains('\\') {
        return true;
    }
    let mut keys = name
        .split('.')
        .map(|k| k.trim().trim_matches(|c| c == '"' || c == '\''));
    match (keys.next(), keys.next()) {
        (Some("tool"), None) => true,
        (Some("tool"), Some(tool)) => tool.starts_with("pytest"),
        _ => false,
    }
}

/// The files a validator's command runs: for each simple command (of `sh -c <line>`, split at
/// `;`, `&&`, `||`, `|` and parentheses), the program when it is a path (`./scripts/check.sh`,
/// `node_modules/.bin/jest`), or the script an interpreter is given (`python3 run_tests.py`).
/// Files a command only writes (`> report.txt`) are outputs, not the validator's own.
fn validator_words(argv: &[String]) -> Vec<String> {
    let commands = commands_of(argv);
    let mut found = Vec::new();
    for words in commands {
        let mut words = words.into_iter().skip_while(|w| before_program(w));
        let Some(program) = words.next() else {
            continue;
        };
        if program.contains('/') {
            found.push(program.clone());
        }
        let name = program.rsplit('/').next().unwrap_or(&program);
        if name == "make" || name == "gmake" {
            // What make runs is in its makefile: any of the names it looks for, in `-C`'s
            // directory, or the one `-f` names.
            let words: Vec<String> = words.collect();
            let dir = words
                .iter()
                .position(|w| w == "-C")
                .and_then(|i| words.get(i + 1))
                .map(|d| format!("{}/", d.trim_end_matches('/')))
                .unwrap_or_default();
            for makefile in ["GNUmakefile", "makefile", "Makefile"] {
                found.push(format!("{dir}{makefile}"));
            }
            if let Some(file) = words
                .iter()
                .position(|w| w == "-f")
                .and_then(|i| words.get(i + 1))
            {
                found.push(format!("{dir}{file}"));
            }
            continue;
        }
        let interpreter = ["sh", "bash", "dash", "node", "ruby", "perl", "php"].contains(&name)
            || name.starts_with("python");
        if interpreter {
            for word in words {
                // The code is given inline or is a module, not a file.
                let inline = match name {
                    "node" | "ruby" | "perl" | "php" => word == "-e" || word == "-r",
                    _ => word == "-c" || word == "-m",
                };
                if inline {
                    break;
                }
                if !word.starts_with('-') {
                    found.push(word);
                    break;
                }
            }
        }
    }
    found
}

/// The words of each simple command of a shell line, with quotes taken off and redirections
/// (and their targets) left out. A rough reading, enough to find what a validator runs.
fn simple_commands(line: &str) -> Vec<Vec<String>> {
    let mut commands = vec![Vec::new()];
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut redirect = false;
    let mut chars = line.chars().peekable();
    let end_word = |word: &mut String, redirect: &mut bool, commands: &mut Vec<Vec<String>>| {
        if !word.is_empty() {
            if *redirect {
                *redirect = false;
            } else if let Some(current) = commands.last_mut() {
                current.push(std::mem::take(word));
            }
            word.clear();
        }
    };
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => quote = Some(c),
            (None, c) if c.is_whitespace() => end_word(&mut word, &mut redirect, &mut commands),
            (None, '<' | '>') => {
                // A descriptor number before the operator (`2>`) belongs to it.
                if word.chars().all(|d| d.is_ascii_digit()) {
                    word.clear();
                }
                end_word(&mut word, &mut redirect, &mut commands);
                while chars.peek().is_some_and(|n| matches!(n, '<' | '>' | '&')) {
                    chars.next();
                }
                redirect = true;
            }
            (None, ';' | '|' | '&' | '(' | ')' | '`') => {
                end_word(&mut word, &mut redirect, &mut commands);
                commands.push(Vec::new());
            }
            (None, c) => word.push(c),
        }
    }
    end_word(&mut word, &mut redirect, &mut commands);
    commands.retain(|c| !c.is_empty());
    commands
}

/// A word that names a file inside the repository, as a clean relative path.
fn path_like(word: &str) -> Option<String> {
    if word.starts_with('/') || word.contains('$') || word.contains('*') {
        return None;
    }
    let word = word.trim_start_matches("./");
    if word.is_empty()
        || word
            .split('/')
            .any(|c| c == ".." || c.is_empty() || c == ".")
    {
        return None;
    }
    Some(word.to_string())
}

/// Matches `path` against a glob: `*` and `?` within one path component, `**` across any
/// number of them. A glob without `/` matches a file name at any depth, as in `.gitignore`.
pub fn glob_match(glob: &str, path: &str) -> bool {
    let path: Vec<&str> = path.split('/').collect();
    if !glob.contains('/') {
        return path
            .last()
            .is_some_and(|name| component_match(glob.as_bytes(), name.as_bytes()));
    }
    let glob: Vec<&str> = glob.split('/').collect();
    components_match(&glob, &path)
}

fn components_match(glob: &[&str], path: &[&str]) -> bool {
    match glob.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|skip| components_match(rest, &path[skip..])),
        Some((first, rest)) => match path.split_first() {
            Some((name, path_rest)) => {
                component_match(first.as_bytes(), name.as_bytes())
                    && components_match(rest, path_rest)
            }
            None => false,
        },
    }
}

fn component_match(glob: &[u8], name: &[u8]) -> bool {
    match glob.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|skip| component_match(rest, &name[skip..])),
        Some((b'?', rest)) => !name.is_empty() && component_match(rest, &name[1..]),
        Some((c, rest)) => name.first() == Some(c) && component_match(rest, &name[1..]),
    }
}

/// Python 3.11's `sys.stdlib_module_names`, sorted: a top-level module a planted file of the
/// same name would shadow.
/// What pytest imports of its own at start-up, before any test runs.
const PYTEST_DEPENDENCIES: &[&str] = &[
    "_pytest",
    "attr",
    "attrs",
    "colorama",
    "exceptiongroup",
    "iniconfig",
    "packaging",
    "pluggy",
    "py",
    "tomli",
];

const STDLIB_MODULES: &[&str] = &[
    "__future__",
    "_abc",
    "_aix_support",
    "_ast",
    "_asyncio",
    "_bisect",
    "_blake2",
    "_bootsubprocess",
    "_bz2",
    "_codecs",
    "_codecs_cn",
    "_codecs_hk",
    "_codecs_iso2022",
    "_codecs_jp",
    "_codecs_kr",
    "_codecs_tw",
    "_collections",
    "_collections_abc",
    "_compat_pickle",
    "_compression",
    "_contextvars",
    "_crypt",
    "_csv",
    "_ctypes",
    "_curses",
    "_curses_panel",
    "_datetime",
    "_dbm",
    "_decimal",
    "_elementtree",
    "_frozen_importlib",
    "_frozen_importlib_external",
    "_functools",
    "_gdbm",
    "_hashlib",
    "_heapq",
    "_imp",
    "_io",
    "_json",
    "_locale",
    "_lsprof",
    "_lzma",
    "_markupbase",
    "_md5",
    "_msi",
    "_multibytecodec",
    "_multiprocessing",
    "_opcode",
    "_operator",
    "_osx_support",
    "_overlapped",
    "_pickle",
    "_posixshmem",
    "_posixsubprocess",
    "_py_abc",
    "_pydecimal",
    "_pyio",
    "_queue",
    "_random",
    "_scproxy",
    "_sha1",
    "_sha256",
    "_sha3",
    "_sha512",
    "_signal",
    "_sitebuiltins",
    "_socket",
    "_sqlite3",
    "_sre",
    "_ssl",
    "_stat",
    "_statistics",
    "_string",
    "_strptime",
    "_struct",
    "_symtable",
    "_thread",
    "_threading_local",
    "_tkinter",
    "_tokenize",
    "_tracemalloc",
    "_typing",
    "_uuid",
    "_warnings",
    "_weakref",
    "_weakrefset",
    "_winapi",
    "_zoneinfo",
    "abc",
    "aifc",
    "antigravity",
    "argparse",
    "array",
    "ast",
    "asynchat",
    "asyncio",
    "asyncore",
    "atexit",
    "audioop",
    "base64",
    "bdb",
    "binascii",
    "bisect",
    "builtins",
    "bz2",
    "cProfile",
    "calendar",
    "cgi",
    "cgitb",
    "chunk",
    "cmath",
    "cmd",
    "code",
    "codecs",
    "codeop",
    "collections",
    "colorsys",
    "compileall",
    "concurrent",
    "configparser",
    "contextlib",
    "contextvars",
    "copy",
    "copyreg",
    "crypt",
    "csv",
    "ctypes",
    "curses",
    "dataclasses",
    "datetime",
    "dbm",
    "decimal",
    "difflib",
    "dis",
    "distutils",
    "doctest",
    "email",
    "encodings",
    "ensurepip",
    "enum",
    "errno",
    "faulthandler",
    "fcntl",
    "filecmp",
    "fileinput",
    "fnmatch",
    "fractions",
    "ftplib",
    "functools",
    "gc",
    "genericpath",
    "getopt",
    "getpass",
    "gettext",
    "glob",
    "graphlib",
    "grp",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "http",
    "idlelib",
    "imaplib",
    "imghdr",
    "imp",
    "importlib",
    "inspect",
    "io",
    "ipaddress",
    "itertools",
    "json",
    "keyword",
    "lib2to3",
    "linecache",
    "locale",
    "logging",
    "lzma",
    "mailbox",
    "mailcap",
    "marshal",
    "math",
    "mimetypes",
    "mmap",
    "modulefinder",
    "msilib",
    "msvcrt",
    "multiprocessing",
    "netrc",
    "nis",
    "nntplib",
    "nt",
    "ntpath",
    "nturl2path",
    "numbers",
    "opcode",
    "operator",
    "optparse",
    "os",
    "ossaudiodev",
    "pathlib",
    "pdb",
    "pickle",
    "pickletools",
    "pipes",
    "pkgutil",
    "platform",
    "plistlib",
    "poplib",
    "posix",
    "posixpath",
    "pprint",
    "profile",
    "pstats",
    "pty",
    "pwd",
    "py_compile",
    "pyclbr",
    "pydoc",
    "pydoc_data",
    "pyexpat",
    "queue",
    "quopri",
    "random",
    "re",
    "readline",
    "reprlib",
    "resource",
    "rlcompleter",
    "runpy",
    "sched",
    "secrets",
    "select",
    "selectors",
    "shelve",
    "shlex",
    "shutil",
    "signal",
    "site",
    "smtpd",
    "smtplib",
    "sndhdr",
    "socket",
    "socketserver",
    "spwd",
    "sqlite3",
    "sre_compile",
    "sre_constants",
    "sre_parse",
    "ssl",
    "stat",
    "statistics",
    "string",
    "stringprep",
    "struct",
    "subprocess",
    "sunau",
    "symtable",
    "sys",
    "sysconfig",
    "syslog",
    "tabnanny",
    "tarfile",
    "telnetlib",
    "tempfile",
    "termios",
    "textwrap",
    "this",
    "threading",
    "time",
    "timeit",
    "tkinter",
    "token",
    "tokenize",
    "tomllib",
    "trace",
    "traceback",
    "tracemalloc",
    "tty",
    "turtle",
    "turtledemo",
    "types",
    "typing",
    "unicodedata",
    "unittest",
    "urllib",
    "uu",
    "uuid",
    "venv",
    "warnings",
    "wave",
    "weakref",
    "webbrowser",
    "winreg",
    "winsound",
    "wsgiref",
    "xdrlib",
    "xml",
    "xmlrpc",
    "zipapp",
    "zipfile",
    "zipimport",
    "zlib",
    "zoneinfo",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn change(kind: ChangeKind, path: &str) -> Change {
        Change {
            kind,
            path: path.into(),
        }
    }

    fn sh(line: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), line.into()]
    }

    #[test]
    fn the_standard_library_list_is_sorted_for_its_binary_search() {
        assert!(STDLIB_MODULES.windows(2).all(|w| w[0] < w[1]));
        for name in ["unittest", "json", "os", "typing", "_abc"] {
            assert!(STDLIB_MODULES.binary_search(&name).is_ok(), "{name}");
        }
    }

    #[test]
    fn globs_match_components_and_any_depth() {
        assert!(glob_match("tests/**", "tests/test_core.py"));
        assert!(glob_match("tests/**", "tests/unit/deep/x.py"));
        assert!(!glob_match("tests/**", "src/tests.py"));
        assert!(glob_match("**/test_*.py", "test_top.py"));
        assert!(glob_match("**/test_*.py", "a/b/test_x.py"));
        assert!(!glob_match("**/test_*.py", "a/b/mytest_x.py"));
        assert!(glob_match("**/*.spec.*", "web/app.spec.ts"));
        assert!(glob_match("jest.config.*", "jest.config.js"));
        assert!(glob_match("jest.config.*", "packages/ui/jest.config.ts"));
        assert!(glob_match(".cargo/config*", ".cargo/config.toml"));
        assert!(!glob_match(".cargo/config*", "sub/.cargo/config.toml"));
        assert!(glob_match("src/?.rs", "src/a.rs"));
        assert!(!glob_match("src/?.rs", "src/ab.rs"));
    }

    #[test]
    fn the_validators_files_come_from_their_commands() {
        let p = Protection::new(
            &[
                sh("python3 run_tests.py 2>&1"),
                sh("./scripts/check.sh --fast && make lint"),
                vec!["node_modules/.bin/jest".into(), "--ci".into()],
                sh("python3 -m unittest -v"),
                sh("CI=1 bash -e 'ci/run checks.sh' > out.txt; python3 -c 'import x' x.py"),
                sh("echo done >> calc.py | tee log.py"),
            ],
            None,
        );
        assert_eq!(
            p.validator_files,
            [
                "run_tests.py",
                "scripts/check.sh",
                "GNUmakefile",
                "makefile",
                "Makefile",
                "node_modules/.bin/jest",
                "ci/run checks.sh"
            ]
        );
        assert_eq!(
            p.why("calc.py"),
            None,
            "what a validator writes is not its own"
        );
        assert_eq!(p.why("run_tests.py"), Some("a validator runs it"));
        assert_eq!(p.why("scripts/check.sh"), Some("a validator runs it"));
        assert_eq!(p.why("unittest"), None);
    }

    #[test]
    fn existing_tests_and_runner_configuration_are_protected_by_default() {
        let p = Protection::new(&[sh("python3 run_tests.py")], None);
        let changes = [
            change(ChangeKind::Modified, "tests/test_core.py"),
            change(ChangeKind::Deleted, "pkg/test_util.py"),
            change(ChangeKind::Modified, "pytest.ini"),
            change(ChangeKind::Modified, "run_tests.py"),
            change(ChangeKind::TypeChanged, "web/__tests__/a.js"),
            // New tests and ordinary code are the agent's to write.
            change(ChangeKind::Added, "tests/test_new.py"),
            change(ChangeKind::Modified, "src/core.py"),
            change(ChangeKind::Modified, "pyproject.toml"),
        ];
        let found = protected_changes(&p, &changes);
        let paths: Vec<_> = found.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "tests/test_core.py",
                "pkg/test_util.py",
                "pytest.ini",
                "run_tests.py",
                "web/__tests__/a.js"
            ]
        );
        assert_eq!(
            found[0].message,
            "tests/test_core.py is protected (existing tests) and was changed: restore it; the validators judge with the base commit's version"
        );
        assert!(
            found[1].message.contains("was deleted"),
            "{}",
            found[1].message
        );
    }

    #[test]
    fn a_manifest_list_replaces_the_default_and_an_empty_one_turns_it_off() {
        let own = Protection::new(&[], Some(vec!["spec/**".into()]));
        let changes = [
            change(ChangeKind::Modified, "spec/a_spec.rb"),
            change(ChangeKind::Modified, "tests/test_core.py"),
        ];
        let found = protected_changes(&own, &changes);
        assert_eq!(found.len(), 1);
        assert!(found[0].message.contains("listed in validation.protect"));
        assert!(!own.covers_pytest_tables());

        let off = Protection::new(&[sh("python3 run_tests.py")], Some(vec![]));
        assert!(off.is_off());
        let changes = [change(ChangeKind::Modified, "run_tests.py")];
        assert!(protected_changes(&off, &changes).is_empty());
    }

    #[test]
    fn only_the_pytest_tables_of_pyproject_count() {
        let base = "[project]\nname = \"x\"\ndependencies = []\n\n[tool.pytest.ini_options]\naddopts = \"-q\"\n";
        let more_deps = base.replace("dependencies = []", "dependencies = [\"requests\"]");
        assert_eq!(
            pytest_tables_changed("pyproject.toml", base, &more_deps),
            None
        );
        let deselect = base.replace("-q", "-q --deselect tests/test_core.py::test_fails");
        let found = pytest_tables_changed("pyproject.toml", base, &deselect).unwrap();
        assert!(
            found.message.contains("[tool.pytest] section"),
            "{}",
            found.message
        );
        let added =
            "[project]\nname = \"x\"\n[tool.pytest.ini_options]\naddopts = \"-k nothing\"\n";
        assert_eq!(
            pytest_tables_changed("pyproject.toml", "[project]\nname = \"x\"\n", added)
                .map(|f| f.path),
            Some("pyproject.toml".into())
        );
        assert!(pytest_tables_added("pyproject.toml", added).is_some());
        assert!(pytest_tables_added("pyproject.toml", "[project]\nname = \"x\"\n").is_none());
        // Other spellings of the same table count too; other tools' tables do not.
        for spelled in [
            "[tool]\npytest.ini_options.addopts = \"-k nothing\"\n",
            "tool.pytest.ini_options.addopts = \"-k nothing\"\n",
            "[\"\\u0074ool\".pytest.ini_options]\naddopts = \"-k nothing\"\n",
            "[ 'tool' . 'pytest' . ini_options ]\naddopts = \"-k nothing\"\n",
            "[tool.pytest.ini_options]\nx = \"\"\"\n[project]\n\"\"\"\naddopts = \"-k nothing\"\n",
        ] {
            let now = format!("{spelled}[project]\nname = \"x\"\n[tool.ruff]\nline-length = 100\n");
            let then = "[project]\nname = \"x\"\n[tool.ruff]\nline-length = 100\n";
            assert!(
                pytest_tables_added("pyproject.toml", &now).is_some(),
                "{now}"
            );
            let changed = pytest_tables_changed("pyproject.toml", then, &now);
            assert!(changed.is_some(), "{now}");
        }
        let ruff = "[project]\nname = \"x\"\n[tool.ruff]\nline-length = 120\n";
        assert!(pytest_tables_added("pyproject.toml", ruff).is_none());
    }

    #[test]
    fn planted_files_that_run_by_themselves_are_refused() {
        let added = |p: &str| change(ChangeKind::Added, p);
        let changes = [
            added("unittest.py"),
            added("tests/conftest.py"),
            added("sitecustomize.py"),
            added("lib/usercustomize.py"),
            added("venv/evil.pth"),
            added("core.pyc"),
            added("node_modules/.bin/jest"),
            added("pytest.ini"),
            added("web/jest.config.js"),
            added("tests/json.py"),
            // Fine: a new test, a cache, a module of a package, an ordinary module.
            added("tests/test_new.py"),
            added("pkg/__pycache__/core.cpython-311.pyc"),
            added("pkg/json.py"),
            added("textkit/report.py"),
        ];
        let found = planted_files(&changes, &Protection::new(&[], None), |dir| dir == "pkg");
        let paths: Vec<_> = found.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "unittest.py",
                "tests/conftest.py",
                "sitecustomize.py",
                "lib/usercustomize.py",
                "venv/evil.pth",
                "core.pyc",
                "node_modules/.bin/jest",
                "pytest.ini",
                "web/jest.config.js",
                "tests/json.py",
            ]
        );
        assert_eq!(
            found[0].message,
            "unittest.py may not be added (unittest.py shadows the standard library's `unittest` for whatever runs from the top of the repository): remove it"
        );
        // A modified file is the protection's business, not this one's.
        assert!(
            planted_files(
                &[change(ChangeKind::Modified, "conftest.py")],
                &Protection::new(&[], None),
                |_| { false }
            )
            .is_empty()
        );
    }

    #[test]
    fn a_module_named_like_the_guard_is_refused_anywhere() {
        let added = |p: &str| change(ChangeKind::Added, p);
        let changes = [
            added("agentgrid_guard.py"),
            added("pkg/agentgrid_guard.py"),
            added("agentgrid_guard/__init__.py"),
            added("tests/agentgrid_guard_test.py"),
        ];
        let found = planted_files(&changes, &Protection::new(&[], None), |_| true);
        let paths: Vec<_> = found.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "agentgrid_guard.py",
                "pkg/agentgrid_guard.py",
                "agentgrid_guard/__init__.py"
            ]
        );
    }

    #[test]
    fn commands_that_start_python_themselves_are_known() {
        assert!(runs_python(&sh("python3 -m pytest -q")));
        assert!(runs_python(&sh(
            "PYTHONPATH=vendor python3 -m owner_runner"
        )));
        assert!(runs_python(&sh(
            "make lint && /usr/bin/python3.11 run_tests.py"
        )));
        assert!(runs_python(&sh("pytest -q tests")));
        assert!(!runs_python(&sh("tox -e py311")));
        assert!(!runs_python(&sh("npm test")));
    }

    #[test]
    fn what_a_validators_shell_script_runs_is_protected_too() {
        let mut p = Protection::new(&[sh("sh ci/check.sh")], None);
        assert!(is_shell_script(
            "ci/check.sh",
            "exec python3 ci/runner.py\n"
        ));
        assert!(is_shell_script("ci/check", "#!/usr/bin/env bash\n"));
        assert!(!is_shell_script("ci/check.py", "import sys\n"));
        p.add_script("#!/bin/sh\n# python3 ci/old.py\nset -e\nexec python3 ci/runner.py --fast\n./ci/lint && python3 -m pytest\n");
        assert_eq!(
            p.validator_files,
            ["ci/check.sh", "ci/runner.py", "ci/lint"]
        );
        assert_eq!(p.run_modules, ["pytest"]);
        assert_eq!(p.why("ci/runner.py"), Some("a validator runs it"));
    }

    #[test]
    fn npm_scripts_and_npmrc_are_the_owners_when_a_validator_runs_npm() {
        let p = Protection::new(&[sh("CI=1 npm test --silent")], None);
        assert!(p.runs_npm);
        assert!(!Protection::new(&[sh("python3 run_tests.py")], None).runs_npm);
        let base = "{\"name\": \"x\", \"scripts\": {\"test\": \"jest\"}, \"dependencies\": {}}";
        let deps = base.replace("{}}", "{\"left-pad\": \"1\"}}");
        assert!(npm_scripts_changed("package.json", base, &deps).is_none());
        let faked = base.replace("jest", "true");
        assert!(npm_scripts_changed("package.json", base, &faked).is_some());
        assert!(npm_scripts_changed("package.json", base, "{not json").is_some());
        assert_eq!(p.why(".npmrc"), Some("the package manager's configuration"));
        let found = planted_files(&[change(ChangeKind::Added, ".npmrc")], &p, |_| false);
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn make_protects_its_makefiles_and_refuses_one_it_would_read_first() {
        let p = Protection::new(&[sh("make -C sub test && make -f ci.mk check")], None);
        for path in ["sub/Makefile", "sub/GNUmakefile", "ci.mk", "Makefile"] {
            assert_eq!(p.why(path), Some("a validator runs it"), "{path}");
        }
        let found = planted_files(&[change(ChangeKind::Added, "GNUmakefile")], &p, |_| false);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].message.contains("a validator runs it"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn packages_extensions_and_the_runner_itself_are_shadows_too() {
        let added = |p: &str| change(ChangeKind::Added, p);
        let p = Protection::new(
            &[sh(
                "python3 -m pytest -q tests && python3 -X dev -m unittest.main && python3 scripts/check.py",
            )],
            None,
        );
        assert_eq!(p.run_modules, ["pytest", "unittest"]);
        let changes = [
            added("unittest/__init__.py"),
            added("email/__init__.py"),
            added("json.cpython-311-x86_64-linux-gnu.so"),
            added("pytest.py"),
            added("pytest/__init__.py"),
            added("src/pytest.abi3.so"),
            added("scripts/json.py"),
            added("evil-1.0.dist-info/entry_points.txt"),
            added("lib/evil.egg-info/entry_points.txt"),
            // Fine: a package inside a package, an ordinary package, a new `tests` package.
            added("pkg/json/__init__.py"),
            added("textkit/__init__.py"),
            added("tests/__init__.py"),
        ];
        let found = planted_files(&changes, &p, |dir| ["pkg", "", "scripts"].contains(&dir));
        let paths: Vec<_> = found.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "unittest/__init__.py",
                "email/__init__.py",
                "json.cpython-311-x86_64-linux-gnu.so",
                "pytest.py",
                "pytest/__init__.py",
                "src/pytest.abi3.so",
                "scripts/json.py",
                "evil-1.0.dist-info/entry_points.txt",
                "lib/evil.egg-info/entry_points.txt",
            ]
        );
        assert_eq!(
            found[3].message,
            "pytest.py may not be added (pytest.py shadows the validators' runner `pytest` for whatever runs from the top of the repository): remove it"
        );
    }
}
