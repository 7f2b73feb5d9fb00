//! Reading, checking and describing agentgrid's YAML manifests, and rendering prompt templates.
//!
//! A project keeps its manifests in `.agentgrid/`: an optional `config.yaml` (kind `Config`, the
//! project settings) and one or more `agents/*.yaml` files (kind `Agent`, possibly several
//! `---`-separated documents per file). [`load_project`] reads them all into a [`Project`]: the
//! [`ConfigSpec`] and a list of [`Agent`]s, each holding its [`AgentManifest`] with every default
//! filled in. Templates in an agent (its prompt, command arguments and environment values) are
//! rendered with [`render_prompt`] and [`render_arg`] against a [`PromptContext`].
//! [`json_schema`] describes the manifest kinds for editors. `workflows/*.yaml` hold `kind:
//! Workflow` documents, decoded into the [`Workflow`]s of the project (see the `workflow` crate);
//! `agencies/*.yaml` hold `kind: Agency` documents, the [`Agency`]s: a coordinator agent and its
//! specialists, checked against the agents' own `agency:` and `role:`.
//!
//! The key decision is that a manifest is never deserialized straight into its Rust types. The
//! YAML is parsed into a tree of nodes that know their line and column, and hand-written decoders
//! walk that tree, recording each problem and carrying on with a default. So one run reports
//! every mistake in every file, each as a [`Diagnostic`] `path:line:col: message`, instead of
//! stopping at the first one the way serde would. The same walk runs the checks serde cannot
//! express: names, ranges, regular expressions, reserved variables, and templates, which are
//! rendered against sample contexts with minijinja's strict undefined behaviour so that a
//! misspelt `{{ task.titel }}` is caught when the manifest loads rather than when an agent runs.
//!
//! ```
//! use std::path::Path;
//! let yaml = r#"
//! apiVersion: agentgrid.dev/v1
//! kind: Agent
//! metadata: {name: worker}
//! spec:
//!   runtime: {command: ["my-agent", "--task", "{{ task.id }}"]}
//!   prompt: "Work on #{{ task.id }}: {{ task.title }}"
//! "#;
//! let agents = manifest::parse_agents(yaml, Path::new("worker.yaml")).unwrap();
//! let ctx = manifest::PromptContext::sample();
//! let prompt = manifest::render_prompt(&agents[0].spec().prompt, &ctx).unwrap();
//! assert_eq!(prompt, "Work on #42: Add CSV export");
//! assert_eq!(manifest::render_arg("{{ task.id }}", &ctx, &prompt).unwrap(), "42");
//!
//! let broken = yaml.replace("task.title", "task.titel");
//! let errors = manifest::parse_agents(&broken, Path::new("worker.yaml")).unwrap_err();
//! assert!(errors.to_string().starts_with("worker.yaml:7:11: spec.prompt: the template uses `task.titel`"));
//! ```

mod agency;
mod agency_templates;
mod agent;
mod config;
mod decode;
mod diagnostic;
mod error;
mod models;
mod project;
mod sandbox;
mod schema;
mod template;
mod workflow;
mod yaml;

pub use agency::{
    Agency, AgencyBudgets, AgencyLimits, AgencyManifest, AgencyMetadata, AgencyRouting, AgencySpec,
    COORDINATOR_ROLE, HandoffRule, Policies, Specialist,
};
pub use agency_templates::{
    AGENCY_TEMPLATES, AgencyTemplate, TemplateFile, TemplateRuntime, agency_template,
    agency_template_names,
};
pub use agent::{
    API_VERSION, AgentManifest, AgentMetadata, AgentSpec, Completion, DEFAULT_PROMPT, Limits,
    Routing, Runtime, RuntimeKind, ScoreMethod, StdinMode, Validation, Validator,
};
pub use config::{
    Approvals, Concurrency, ConfigManifest, ConfigMetadata, ConfigSpec, Continuation, GitDriver,
    Guards, Hook, HookCommand, Hooks, Land, Resume, Retry, WorkspaceConfig, WorkspaceGit,
    WorkspaceQuota,
};
pub use diagnostic::{Diagnostic, Diagnostics, Place};
pub use error::Error;
pub use models::{
    Budget, Budgets, ModelAlias, ModelLimits, ModelRetry, Models, Prices, Provider, ProviderKind,
};
pub use project::{
    Agent, Project, load_project, locate, parse_agents, parse_config, parse_workflows,
};
pub use sandbox::{FilesystemMode, NetworkMode, ResourceLimits, SandboxProfile};
pub use schema::json_schema;
pub use template::{
    AgencyView, CONTEXT_NAMES, EXECUTION_FIELDS, ExecutionView, PromptContext, TASK_FIELDS,
    TaskView, WORKFLOW_FIELDS, WorkflowView, render_arg, render_prompt,
};
pub use workflow::{EXAMPLE_WORKFLOW, Workflow};
