//! Loading a project's manifests from its `.agentgrid` directory.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::agency::{Agency, AgencyDocument, AgentRefs, agencies_from, check_agencies};
use crate::agent::{AgentDocument, AgentManifest, AgentSpec, decode_agent};
use crate::config::{ConfigSpec, decode_config};
use crate::decode::Cx;
use crate::workflow::{Workflow, WorkflowDocument, check_workflows, workflows_from};
use crate::yaml::parse_documents;
use crate::{Diagnostic, Diagnostics};

/// Everything the manifests of one project say.
#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    /// The settings from `config.yaml`, or the defaults when there is none.
    pub config: ConfigSpec,
    /// Every agent, ordered by file name and then by position in the file.
    pub agents: Vec<Agent>,
    /// Every workflow of `workflows/*.yaml`, ordered the same way.
    pub workflows: Vec<Workflow>,
    /// Every agency of `agencies/*.yaml`, ordered the same way.
    pub agencies: Vec<Agency>,
    /// The `.agentgrid` directory.
    pub root: PathBuf,
}

impl Project {
    pub fn agent(&self, name: &str) -> Option<&Agent> {
        self.agents.iter().find(|a| a.name == name)
    }

    pub fn workflow(&self, name: &str) -> Option<&Workflow> {
        self.workflows.iter().find(|w| w.name == name)
    }

    pub fn agency(&self, name: &str) -> Option<&Agency> {
        self.agencies.iter().find(|a| a.name == name)
    }

    /// The agency that lists `agent` (as coordinator or specialist), with its role there.
    pub fn agency_of(&self, agent: &str) -> Option<(&Agency, &str)> {
        self.agencies
            .iter()
            .find_map(|a| a.role_of(agent).map(|role| (a, role)))
    }

    /// The repository the project lives in: the parent of the `.agentgrid` directory.
    pub fn repo_root(&self) -> &Path {
        self.root.parent().unwrap_or(Path::new("."))
    }

    /// `workspace.root` from the config, resolved against the repository root.
    pub fn workspace_root(&self) -> PathBuf {
        self.repo_root().join(&self.config.workspace.root)
    }
}

/// One agent and the file it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub name: String,
    pub source: PathBuf,
    pub manifest: AgentManifest,
}

impl Agent {
    pub fn spec(&self) -> &AgentSpec {
        &self.manifest.spec
    }
}

/// Reads `config.yaml` and `agents/*.yaml` (and `*.yml`) under `agentgrid_dir`, checks all of
/// them, and returns the project or every problem found in any file.
///
/// A missing `config.yaml` means the defaults; a missing or empty `agents` directory means a
/// project without agents, which loads fine (the caller decides whether that is a problem).
pub fn load_project(agentgrid_dir: &Path) -> Result<Project, Diagnostics> {
    let mut diagnostics = Vec::new();
    if !agentgrid_dir.is_dir() {
        return Err(Diagnostics(vec![Diagnostic::whole_file(
            agentgrid_dir,
            "no such directory; run `agentgrid init` in the repository to create it",
        )]));
    }

    let config_file = agentgrid_dir.join("config.yaml");
    let config = match std::fs::read_to_string(&config_file) {
        Ok(source) => config_from(&source, &config_file, &mut diagnostics),
        Err(err) if err.kind() == ErrorKind::NotFound => ConfigSpec::default(),
        Err(err) => {
            diagnostics.push(Diagnostic::whole_file(
                &config_file,
                format!("cannot read the file: {err}"),
            ));
            ConfigSpec::default()
        }
    };

    let mut documents = Vec::new();
    for file in agent_files(&agentgrid_dir.join("agents"), &mut diagnostics) {
        match std::fs::read_to_string(&file) {
            Ok(source) => {
                let docs = agents_from(&source, &file, &mut diagnostics);
                documents.extend(docs.into_iter().map(|d| (file.clone(), d)));
            }
            Err(err) => {
                diagnostics.push(Diagnostic::whole_file(
                    &file,
                    format!("cannot read the file: {err}"),
                ));
            }
        }
    }
    check_unique_names(&documents, &mut diagnostics);
    check_builtin_models(&documents, &config, &mut diagnostics);
    let workflows = read_workflows(&agentgrid_dir.join("workflows"), &mut diagnostics);
    let agent_names = documents
        .iter()
        .filter_map(|(_, d)| d.name.as_ref().map(|n| n.0.clone()))
        .collect();
    check_workflows(&workflows, agent_names, &mut diagnostics);
    crate::workflow::check_policy_lands(&workflows, &config.approvals, &mut diagnostics);
    let agencies = read_agencies(&agentgrid_dir.join("agencies"), &mut diagnostics);
    let refs: Vec<AgentRefs> = documents
        .iter()
        .filter_map(|(file, doc)| AgentRefs::of(file, doc))
        .collect();
    check_agencies(&agencies, &refs, &mut diagnostics);

    if !diagnostics.is_empty() {
        return Err(Diagnostics::sorted(diagnostics));
    }
    let agents = documents
        .into_iter()
        .filter_map(|(source, doc)| {
            let manifest = doc.manifest?;
            Some(Agent {
                name: manifest.metadata.name.clone(),
                source,
                manifest,
            })
        })
        .collect();
    Ok(Project {
        config,
        agents,
        workflows: workflows.into_iter().filter_map(|d| d.workflow).collect(),
        agencies: agencies.into_iter().filter_map(|d| d.agency).collect(),
        root: agentgrid_dir.to_path_buf(),
    })
}

fn read_agencies(dir: &Path, diagnostics: &mut Vec<Diagnostic>) -> Vec<AgencyDocument> {
    let mut out = Vec::new();
    for file in agent_files(dir, diagnostics) {
        match std::fs::read_to_string(&file) {
            Ok(source) => out.extend(agencies_from(&source, &file, diagnostics)),
            Err(err) => diagnostics.push(Diagnostic::whole_file(
                &file,
                format!("cannot read the file: {err}"),
            )),
        }
    }
    out
}

fn read_workflows(dir: &Path, diagnostics: &mut Vec<Diagnostic>) -> Vec<WorkflowDocument> {
    let mut out = Vec::new();
    for file in agent_files(dir, diagnostics) {
        match std::fs::read_to_string(&file) {
            Ok(source) => out.extend(workflows_from(&source, &file, diagnostics)),
            Err(err) => diagnostics.push(Diagnostic::whole_file(
                &file,
                format!("cannot read the file: {err}"),
            )),
        }
    }
    out
}

/// Checks the text of one workflow file against the agents named in `agents`; `file` is used
/// in the diagnostics. A sub-workflow may only name a workflow of the same file.
pub fn parse_workflows(
    source: &str,
    file: &Path,
    agents: &[&str],
) -> Result<Vec<Workflow>, Diagnostics> {
    let mut diagnostics = Vec::new();
    let documents = workflows_from(source, file, &mut diagnostics);
    let agents = agents.iter().map(|a| a.to_string()).collect();
    check_workflows(&documents, agents, &mut diagnostics);
    if !diagnostics.is_empty() {
        return Err(Diagnostics::sorted(diagnostics));
    }
    Ok(documents.into_iter().filter_map(|d| d.workflow).collect())
}

/// Checks the text of a config file; `file` is only used in the diagnostics. An empty text
/// gives the defaults.
pub fn parse_config(source: &str, file: &Path) -> Result<ConfigSpec, Diagnostics> {
    let mut diagnostics = Vec::new();
    let config = config_from(source, file, &mut diagnostics);
    if diagnostics.is_empty() {
        Ok(config)
    } else {
        Err(Diagnostics::sorted(diagnostics))
    }
}

/// Checks the text of one agent file (one or more `---`-separated documents); `file` is used in
/// the diagnostics and as each agent's `source`.
pub fn parse_agents(source: &str, file: &Path) -> Result<Vec<Agent>, Diagnostics> {
    let mut diagnostics = Vec::new();
    let documents: Vec<_> = agents_from(source, file, &mut diagnostics)
        .into_iter()
        .map(|d| (file.to_path_buf(), d))
        .collect();
    check_unique_names(&documents, &mut diagnostics);
    if !diagnostics.is_empty() {
        return Err(Diagnostics::sorted(diagnostics));
    }
    Ok(documents
        .into_iter()
        .filter_map(|(source, doc)| {
            let manifest = doc.manifest?;
            Some(Agent {
                name: manifest.metadata.name.clone(),
                source,
                manifest,
            })
        })
        .collect())
}

fn config_from(source: &str, file: &Path, diagnostics: &mut Vec<Diagnostic>) -> ConfigSpec {
    let Some(docs) = crate::decode::documents(source, file, diagnostics) else {
        return ConfigSpec::default();
    };
    let Some(first) = docs.first() else {
        return ConfigSpec::default();
    };
    let mut cx = Cx::new(file, source);
    let manifest = decode_config(&mut cx, first);
    for extra in &docs[1..] {
        cx.error(
            extra,
            "",
            "config.yaml holds a single document (`kind: Config`); remove this extra one",
        );
    }
    diagnostics.extend(cx.diagnostics);
    manifest.spec
}

fn agents_from(source: &str, file: &Path, diagnostics: &mut Vec<Diagnostic>) -> Vec<AgentDocument> {
    crate::decode::each_document(source, file, diagnostics, decode_agent)
}

/// The YAML files of a manifest directory (`agents`, `workflows`), sorted by name.
fn agent_files(dir: &Path, diagnostics: &mut Vec<Diagnostic>) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == ErrorKind::NotFound => return Vec::new(),
        Err(err) => {
            diagnostics.push(Diagnostic::whole_file(
                dir,
                format!("cannot list the directory: {err}"),
            ));
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

/// Agent names are unique across the project; each repeat is reported where it appears, with
/// the place of the first.
/// A built-in agent speaks Anthropic Messages to the gateway (which reaches every kind of
/// provider with them, translating where the provider speaks another API), so the alias it
/// asks for must exist; without an alias, the node must have one.
/// Otherwise every request would fail at run time with a model error.
fn check_builtin_models(
    documents: &[(PathBuf, AgentDocument)],
    config: &ConfigSpec,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let aliases = &config.models.aliases;
    for (file, doc) in documents {
        let Some(manifest) = &doc.manifest else {
            continue;
        };
        let runtime = &manifest.spec.runtime;
        if runtime.kind != crate::RuntimeKind::Builtin {
            continue;
        }
        let (line, column) = doc.model_at.or(doc.runtime_at).unwrap_or((1, 1));
        let known = aliases.keys().cloned().collect::<Vec<_>>().join(", ");
        // Without a model the gateway takes the alias `default`, else the only alias.
        let chosen = match &runtime.model {
            Some(alias) => Ok(alias.clone()),
            None if aliases.contains_key("default") => Ok("default".to_string()),
            None if aliases.len() == 1 => Ok(known.clone()),
            None if aliases.is_empty() => Err(
                "spec.runtime: the built-in agent needs a model: add a `models:` section with an \
                 alias to config.yaml"
                    .to_string(),
            ),
            None => Err(format!(
                "spec.runtime: the built-in agent needs `model:` to name one of the aliases \
                 ({known}), since none is called `default`"
            )),
        };
        let problem = match chosen {
            Err(problem) => Some(problem),
            Ok(alias) => (!aliases.contains_key(&alias)).then(|| {
                format!(
                    "spec.runtime.model: `{alias}` is not an alias of `models.aliases` in \
                     config.yaml (aliases: {})",
                    if known.is_empty() { "none" } else { &known }
                )
            }),
        };
        if let Some(problem) = problem {
            diagnostics.push(Diagnostic::new(file, line, column, problem));
        }
    }
}

fn check_unique_names(documents: &[(PathBuf, AgentDocument)], diagnostics: &mut Vec<Diagnostic>) {
    let mut seen: Vec<(&str, &Path, usize, usize)> = Vec::new();
    for (file, doc) in documents {
        let Some((name, line, column)) = &doc.name else {
            continue;
        };
        if let Some((_, first_file, first_line, first_column)) =
            seen.iter().find(|(n, ..)| n == name)
        {
            diagnostics.push(Diagnostic::new(
                file,
                *line,
                *column,
                format!(
                    "metadata.name: the agent name `{name}` is already used at {}:{first_line}:{first_column}; agent names must be unique across the project",
                    first_file.display()
                ),
            ));
        } else {
            seen.push((name, file, *line, *column));
        }
    }
}

/// Where the setting at `path` (keys from the document's top, such as `["spec", "runtime",
/// "command"]`) is written in `file`: in its only document, or, with `agent`, in the document
/// of the agent of that name. For problems found only after loading (a command the host does
/// not have), so they point at the line to change. `None` when the file cannot be read or the
/// setting is not written there (a default).
pub fn locate(file: &Path, agent: Option<&str>, path: &[&str]) -> Option<crate::Place> {
    let source = std::fs::read_to_string(file).ok()?;
    let docs = parse_documents(&source).ok()?;
    let doc = match agent {
        None => docs.first()?,
        Some(name) => docs.iter().find(|d| {
            child(d, "metadata")
                .and_then(|m| child(m, "name"))
                .is_some_and(|n| matches!(&n.value, crate::yaml::Value::Str(s) if s == name))
        })?,
    };
    let mut node = doc;
    for key in path {
        node = child(node, key)?;
    }
    Some(crate::Place {
        file: file.to_path_buf(),
        line: node.line,
        column: node.column,
    })
}

/// The value under `key` of a mapping node, or the element at index `key` of a sequence.
fn child<'a>(node: &'a crate::yaml::Node, key: &str) -> Option<&'a crate::yaml::Node> {
    match &node.value {
        crate::yaml::Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| matches!(&k.value, crate::yaml::Value::Str(s) if s == key))
            .map(|(_, v)| v),
        crate::yaml::Value::Seq(items) => items.get(key.parse::<usize>().ok()?),
        _ => None,
    }
}
