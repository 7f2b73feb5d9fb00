//! `cargo xtask layers`: the crates' dependencies against the layering table of
//! ARCHITECTURE.md ("## Code map").
//!
//! The rule, as ARCHITECTURE.md states it beside the table: the table lists every crate once,
//! in order, top row first and left to right within a row. A crate may depend (normal and build
//! dependencies) only on crates listed before it: in a row above, or earlier in its own row.
//! Dev-dependencies follow the same rule, except that any crate may dev-depend on the crates of
//! the `test fixtures` row. Every workspace crate must be in the table, and the table may name
//! no crate the workspace lacks.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use anyhow::{Context, bail};

/// The row whose crates any crate may use in its tests only.
const FIXTURES: &str = "test fixtures";

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub name: String,
    pub crates: Vec<String>,
}

/// How a crate depends on another, as `cargo metadata` says (`kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepKind {
    Normal,
    Build,
    Dev,
}

/// A workspace crate and the workspace crates it depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub deps: Vec<(String, DepKind)>,
}

/// Runs the check on this workspace; prints each broken rule and returns whether none was.
pub fn run() -> anyhow::Result<bool> {
    let root = crate::bench::workspace_root();
    let doc = root.join("ARCHITECTURE.md");
    let text =
        std::fs::read_to_string(&doc).with_context(|| format!("cannot read {}", doc.display()))?;
    let layers = parse_table(&text).with_context(|| format!("{}", doc.display()))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(&root)
        .output()
        .context("cannot run cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("cargo metadata printed no JSON")?;
    let packages = packages(&metadata)?;
    let problems = check(&layers, &packages);
    for problem in &problems {
        eprintln!("layers: {problem}");
    }
    if problems.is_empty() {
        println!(
            "layers: {} crates in {} layers, every dependency allowed",
            packages.len(),
            layers.len()
        );
    } else {
        eprintln!(
            "layers: fix the dependency or, if the shape really changed, the table in \
             ARCHITECTURE.md (\"## Code map\") and the rule beside it"
        );
    }
    Ok(problems.is_empty())
}

/// The `| layer | crates |` rows of the table under "## Code map"; crates are the
/// backquoted names in the second cell.
pub fn parse_table(markdown: &str) -> anyhow::Result<Vec<Layer>> {
    let section = markdown
        .split("\n## ")
        .find(|s| s.starts_with("Code map"))
        .context("no \"## Code map\" section")?;
    let mut layers = Vec::new();
    let mut rows = section
        .lines()
        .skip_while(|l| !l.trim_start().starts_with('|'))
        .take_while(|l| l.trim_start().starts_with('|'));
    match rows.next().map(cells) {
        Some(header) if header.first().is_some_and(|h| h == "layer") => {}
        _ => bail!("the \"## Code map\" section has no table headed `| layer | crates |`"),
    }
    for row in rows {
        let cells = cells(row);
        if cells
            .iter()
            .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
        {
            continue;
        }
        let [name, crates, ..] = cells.as_slice() else {
            bail!("the layering row `{row}` has no crates cell");
        };
        let crates: Vec<String> = crates
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        if crates.is_empty() {
            bail!("the layering row `{row}` names no crate in backquotes");
        }
        layers.push(Layer {
            name: name.clone(),
            crates,
        });
    }
    if layers.is_empty() {
        bail!("the layering table has no rows");
    }
    Ok(layers)
}

fn cells(row: &str) -> Vec<String> {
    let row = row.trim().trim_start_matches('|').trim_end_matches('|');
    row.split('|').map(|c| c.trim().to_string()).collect()
}

/// The workspace's crates from `cargo metadata --no-deps`, each with its dependencies on other
/// workspace crates.
pub fn packages(metadata: &serde_json::Value) -> anyhow::Result<Vec<Package>> {
    let list = metadata["packages"]
        .as_array()
        .context("cargo metadata has no `packages` list")?;
    let names: BTreeSet<&str> = list.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut packages = Vec::new();
    for p in list {
        let name = p["name"].as_str().context("a package without a name")?;
        let mut deps = Vec::new();
        for d in p["dependencies"].as_array().into_iter().flatten() {
            let Some(dep) = d["name"].as_str() else {
                continue;
            };
            // A workspace crate is a path dependency; a registry crate of the same name is not.
            if !names.contains(dep) || d["path"].is_null() {
                continue;
            }
            let kind = match d["kind"].as_str() {
                None => DepKind::Normal,
                Some("build") => DepKind::Build,
                Some("dev") => DepKind::Dev,
                Some(other) => bail!("{name}: dependency {dep} has an unknown kind `{other}`"),
            };
            deps.push((dep.to_string(), kind));
        }
        packages.push(Package {
            name: name.to_string(),
            deps,
        });
    }
    Ok(packages)
}

/// Every dependency the table does not allow, and every crate missing from either side.
pub fn check(layers: &[Layer], packages: &[Package]) -> Vec<String> {
    let mut problems = Vec::new();
    // Where each crate stands: its row, and its place in the row.
    let mut place: HashMap<&str, (usize, usize)> = HashMap::new();
    for (row, layer) in layers.iter().enumerate() {
        for (col, name) in layer.crates.iter().enumerate() {
            if place.insert(name, (row, col)).is_some() {
                problems.push(format!("`{name}` appears twice in the layering table"));
            }
        }
    }
    let in_workspace: BTreeSet<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    for name in place.keys().filter(|n| !in_workspace.contains(*n)) {
        problems.push(format!(
            "the layering table names `{name}`, which is not a crate of the workspace"
        ));
    }
    for package in packages {
        let Some(&from) = place.get(package.name.as_str()) else {
            problems.push(format!(
                "`{}` is not in the layering table: add it to the row of its layer",
                package.name
            ));
            continue;
        };
        for (dep, kind) in &package.deps {
            let Some(&to) = place.get(dep.as_str()) else {
                // Reported above as missing from the table.
                continue;
            };
            let fixture = layers[to.0].name == FIXTURES;
            if to < from || (*kind == DepKind::Dev && fixture) {
                continue;
            }
            let kind = match kind {
                DepKind::Normal => "depends",
                DepKind::Build => "build-depends",
                DepKind::Dev => "dev-depends",
            };
            let why = if to.0 == from.0 {
                format!("comes after it in the {} layer", layers[to.0].name)
            } else if fixture {
                "is a test fixture, for dev-dependencies only".to_string()
            } else {
                format!(
                    "is in the {} layer, below {}",
                    layers[to.0].name, layers[from.0].name
                )
            };
            problems.push(format!("`{}` {kind} on `{dep}`, which {why}", package.name));
        }
    }
    problems.sort();
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "# Architecture\n\n## Code map\n\nThe crates are layered.\n\n\
        | layer | crates |\n| --- | --- |\n\
        | pure | `domain`, `scheduler` |\n\
        | IO | `store`, `launch` (processes) |\n\
        | faces | `cli` |\n\
        | test fixtures | `fixture` |\n\n\
        ### `crates/domain`\n\n## Invariants\n| not | `this` |\n";

    fn metadata(edges: &[(&str, &str, Option<&str>)]) -> serde_json::Value {
        let names = ["domain", "scheduler", "store", "launch", "cli", "fixture"];
        let packages: Vec<serde_json::Value> = names
            .iter()
            .map(|name| {
                let deps: Vec<serde_json::Value> = edges
                    .iter()
                    .filter(|(from, _, _)| from == name)
                    .map(|(_, to, kind)| {
                        serde_json::json!({"name": to, "kind": kind, "path": format!("/w/{to}")})
                    })
                    .chain([serde_json::json!({"name": "serde", "kind": null})])
                    .collect();
                serde_json::json!({"name": name, "dependencies": deps})
            })
            .collect();
        serde_json::json!({ "packages": packages })
    }

    fn problems(edges: &[(&str, &str, Option<&str>)]) -> Vec<String> {
        let layers = parse_table(DOC).unwrap();
        check(&layers, &packages(&metadata(edges)).unwrap())
    }

    #[test]
    fn the_table_is_read_row_by_row() {
        let layers = parse_table(DOC).unwrap();
        let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["pure", "IO", "faces", "test fixtures"]);
        assert_eq!(layers[1].crates, ["store", "launch"]);
        assert!(parse_table("# nothing here\n").is_err());
    }

    #[test]
    fn allowed_edges_pass() {
        let allowed = [
            ("scheduler", "domain", None),
            ("launch", "store", None),
            ("cli", "launch", None),
            ("cli", "fixture", Some("dev")),
            ("fixture", "launch", Some("dev")),
            ("store", "domain", Some("build")),
        ];
        assert_eq!(problems(&allowed), Vec::<String>::new());
    }

    #[test]
    fn each_bad_edge_is_named() {
        assert_eq!(
            problems(&[("domain", "store", None)]),
            ["`domain` depends on `store`, which is in the IO layer, below pure"]
        );
        assert_eq!(
            problems(&[("store", "launch", None)]),
            ["`store` depends on `launch`, which comes after it in the IO layer"]
        );
        assert_eq!(
            problems(&[("cli", "fixture", None)]),
            ["`cli` depends on `fixture`, which is a test fixture, for dev-dependencies only"]
        );
        assert_eq!(
            problems(&[("domain", "cli", Some("dev"))]),
            ["`domain` dev-depends on `cli`, which is in the faces layer, below pure"]
        );
    }

    #[test]
    fn crates_missing_from_either_side_are_named() {
        let layers = parse_table(DOC).unwrap();
        let mut packages = packages(&metadata(&[])).unwrap();
        packages.retain(|p| p.name != "fixture");
        packages.push(Package {
            name: "newcomer".into(),
            deps: Vec::new(),
        });
        assert_eq!(
            check(&layers, &packages),
            [
                "`newcomer` is not in the layering table: add it to the row of its layer",
                "the layering table names `fixture`, which is not a crate of the workspace",
            ]
        );
    }
}
