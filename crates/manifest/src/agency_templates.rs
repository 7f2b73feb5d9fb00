//! The seed agencies (Code, QA, DevOps, Security, Docs) that `agentgrid init --agencies` and
//! `agentgrid agency add` write: for each, the agency manifest, its agents (a coordinator and
//! specialists with their roles, prompts, capabilities and validators) and a context file of
//! standards its prompts show.
//!
//! A template is text, written once and then the user's to edit; it is made for one runtime
//! (the built-in agent, Claude Code, Codex, or a command to fill in), and for the agencies it
//! may hand off to, so that it validates as written.

/// A runtime a template's agents are written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateRuntime {
    Builtin,
    Claude,
    Codex,
    /// A `command` runtime whose command says what to edit.
    Command,
}

impl TemplateRuntime {
    pub const NAMES: &[(&str, TemplateRuntime)] = &[
        ("builtin", TemplateRuntime::Builtin),
        ("claude", TemplateRuntime::Claude),
        ("codex", TemplateRuntime::Codex),
        ("command", TemplateRuntime::Command),
    ];

    pub fn parse(name: &str) -> Option<TemplateRuntime> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, r)| *r)
    }

    fn runtime_yaml(self, agent: &str) -> String {
        match self {
            TemplateRuntime::Builtin => "    type: builtin\n".into(),
            TemplateRuntime::Claude => "    type: claude\n".into(),
            TemplateRuntime::Codex => "    type: codex\n".into(),
            TemplateRuntime::Command => format!(
                "    type: command\n    command: [\"sh\", \"-c\", \"echo 'edit .agentgrid/agents/{agent}.yaml: \
                 set runtime.command to your agent CLI' >&2; exit 1\"]\n"
            ),
        }
    }

    fn network(self) -> &'static str {
        match self {
            TemplateRuntime::Command => "none",
            _ => "gateway",
        }
    }
}

/// One seed agency.
#[derive(Debug, Clone, Copy)]
pub struct AgencyTemplate {
    pub name: &'static str,
    pub description: &'static str,
    labels: &'static [&'static str],
    capabilities: &'static [&'static str],
    /// (role, what the specialist does, its capabilities).
    specialists: &'static [(&'static str, &'static str, &'static [&'static str])],
    /// The agencies (by template name) its roles may hand off to.
    hands_to: &'static [&'static str],
    /// The validator every agent of the agency runs: (name, shell line).
    validator: (&'static str, &'static str),
    standards: &'static str,
}

const TESTS: &str = "if [ -x scripts/test ]; then scripts/test; elif [ -f Cargo.toml ]; then cargo test 2>&1; elif [ -f package.json ]; then npm test 2>&1; elif [ -f go.mod ]; then go test ./... 2>&1; elif [ -f pyproject.toml ] || [ -f setup.py ]; then python3 -m pytest 2>&1; elif [ -f Makefile ]; then make test 2>&1; else echo 'no test runner found: edit this validator to run the tests' >&2; exit 1; fi";

/// Every seed agency, in the order `init --agencies` lists them.
pub const AGENCY_TEMPLATES: &[AgencyTemplate] = &[
    AgencyTemplate {
        name: "code",
        description: "Writes features and fixes bugs.",
        labels: &["code", "feature", "bug", "refactor"],
        capabilities: &["code"],
        specialists: &[
            ("developer", "implements features with tests", &["feature"]),
            (
                "bugfixer",
                "reproduces a bug with a test, then fixes it",
                &["bug"],
            ),
        ],
        hands_to: &["qa", "security", "docs"],
        validator: ("tests", TESTS),
        standards: "Every change comes with a test that fails without it.\nKeep changes small and focused on the task.\nFollow the style of the code around you.\n",
    },
    AgencyTemplate {
        name: "qa",
        description: "Tests the work of others and reports the bugs it finds.",
        labels: &["qa", "test", "review"],
        capabilities: &["testing"],
        specialists: &[(
            "tester",
            "writes tests that try to break the change",
            &["test"],
        )],
        hands_to: &["code"],
        validator: ("tests", TESTS),
        standards: "A bug report names the steps, what happened and what was expected.\nTests cover the edges: empty input, large input, bad input.\n",
    },
    AgencyTemplate {
        name: "devops",
        description: "Builds, CI, packaging and deployment.",
        labels: &["devops", "ci", "deploy", "infra"],
        capabilities: &["ci", "docker", "shell"],
        specialists: &[(
            "engineer",
            "changes build, CI and deployment files",
            &["ci"],
        )],
        hands_to: &["security", "code"],
        validator: (
            "scripts",
            "git ls-files '*.sh' | while read -r f; do sh -n \"$f\" || exit 1; done",
        ),
        standards: "Scripts are POSIX sh and pass `sh -n`.\nNo secret is written into a file; name the variable that holds it.\n",
    },
    AgencyTemplate {
        name: "security",
        description: "Reviews changes for vulnerabilities and leaked secrets.",
        labels: &["security", "audit", "vulnerability"],
        capabilities: &["security-review"],
        specialists: &[(
            "auditor",
            "reviews code for vulnerabilities and fixes them",
            &["audit"],
        )],
        hands_to: &["code", "devops"],
        validator: (
            "no-secrets",
            "! git grep -nIE '(AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY-----|xox[baprs]-[0-9A-Za-z-]{10,})'",
        ),
        standards: "Input from outside is validated where it enters.\nSecrets never appear in code, logs or test fixtures.\n",
    },
    AgencyTemplate {
        name: "docs",
        description: "Writes and updates the documentation.",
        labels: &["docs", "documentation"],
        capabilities: &["writing"],
        specialists: &[(
            "writer",
            "writes READMEs, guides and reference pages",
            &["writing"],
        )],
        hands_to: &["code"],
        validator: (
            "markdown",
            "git ls-files '*.md' | while read -r f; do [ -s \"$f\" ] || { echo \"$f is empty\"; exit 1; }; done",
        ),
        standards: "Documentation says what is true now, with an example a reader can run.\nShort sentences; one idea per paragraph.\n",
    },
];

/// The seed agency named `template`.
pub fn agency_template(template: &str) -> Option<&'static AgencyTemplate> {
    AGENCY_TEMPLATES.iter().find(|t| t.name == template)
}

/// The names of the seed agencies, for messages.
pub fn agency_template_names() -> Vec<&'static str> {
    AGENCY_TEMPLATES.iter().map(|t| t.name).collect()
}

/// One file a template writes, relative to the `.agentgrid` directory.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateFile {
    pub path: String,
    pub text: String,
}

const PROMPT_TAIL: &str = r#"{% if agency %}
You are the {{ agency.role }} of the {{ agency.name }} agency.
{{ agency.context }}{% endif %}{% if parent %}
This is a sub-task of #{{ parent.id }}: {{ parent.title }}
{% endif %}{% if children %}
Sub-tasks so far:
{% for c in children %}- #{{ c.id }} [{{ c.state }}] {{ c.title }}{% if c.summary %}: {{ c.summary }}{% endif %}
{% endfor %}{% endif %}{% if answer %}
A person answered your question:
{{ answer }}
{% endif %}{% if handoff %}
This part of the task was handed to you:
{{ handoff }}
{% endif %}{% if feedback %}
Your previous attempt did not pass validation. Fix this:
{{ feedback }}
{% endif %}
When you are done, run `agentgrid ctl complete --summary "<what you did>"`.
If another agency should take it from here (your agency's policies say which), run
`agentgrid ctl handoff --to AGENCY --summary "<what they should do>" --artifact PATH` and exit.
If you cannot go on without a person, run `agentgrid ctl block --reason "<question>"`.
Your changes are committed for you when you exit.
"#;

impl AgencyTemplate {
    /// The files of this template as agency `name` (its agents are `NAME-lead` and
    /// `NAME-ROLE`), for `runtime`, handing off only to the agencies in `present`.
    pub fn files(
        &self,
        name: &str,
        runtime: TemplateRuntime,
        present: &[&str],
    ) -> Vec<TemplateFile> {
        let lead = format!("{name}-lead");
        let mut files = Vec::new();
        let context = format!("context/{name}.md");
        files.push(TemplateFile {
            path: context.clone(),
            text: format!(
                "# Standards of the {name} agency\n\nEdit this file: every agent of the agency \
                 sees it in its prompt.\n\n{}",
                self.standards
            ),
        });
        let roles = std::iter::once(("coordinator", lead.clone())).chain(
            self.specialists
                .iter()
                .map(|(role, ..)| (*role, format!("{name}-{role}"))),
        );
        let mut specialists = String::new();
        for (role, what, caps) in self.specialists {
            specialists.push_str(&format!(
                "    - {{agent: {name}-{role}, role: {role}, capabilities: [{}]}}   # {what}\n",
                caps.join(", ")
            ));
        }
        let targets: Vec<&str> = self
            .hands_to
            .iter()
            .copied()
            .filter(|t| present.contains(t) && *t != name)
            .collect();
        let mut policies = String::from(
            "  policies:\n    approval: false    # true: its done top-level work waits for a person\n",
        );
        if !targets.is_empty() {
            policies.push_str("    handoffs:\n");
            for (role, _) in roles.clone() {
                policies.push_str(&format!(
                    "      - {{from: {role}, to: [{}]}}\n",
                    targets.join(", ")
                ));
            }
        }
        let labels = if name == self.name {
            self.labels.join(", ")
        } else {
            name.to_string()
        };
        files.push(TemplateFile {
            path: format!("agencies/{name}.yaml"),
            text: format!(
                r#"apiVersion: agentgrid.dev/v1
kind: Agency
metadata:
  name: {name}
spec:
  description: "{description}"
  coordinator: {lead}      # takes what no specialist fits, and plans big tasks
  specialists:
{specialists}  labels: [{labels}]          # tasks with one of these labels come here
  capabilities: [{capabilities}]    # and tasks whose every `needs:X` is listed here
  context: [.agentgrid/{context}]    # shown to every agent of the agency as {{{{ agency.context }}}}
  limits:
    concurrency: 2        # executions of the agency's agents at once
  routing: rule           # rule | contract-net (bids by cost and confidence)
{policies}"#,
                description = self.description,
                capabilities = self.capabilities.join(", "),
            ),
        });
        for (role, agent) in roles {
            let (what, caps): (String, &[&str]) = if role == "coordinator" {
                (
                    format!(
                        "You lead the {name} agency. A task small enough for one sitting you do \
                         yourself. A bigger one you split: run `agentgrid ctl subtask create \
                         \"<title>\" --body \"<details>\" --label {name}` once per piece (add \
                         `--label role:<role>` to pick a specialist), then stop; you are woken \
                         when they end."
                    ),
                    self.capabilities,
                )
            } else {
                let (_, what, caps) = self
                    .specialists
                    .iter()
                    .find(|(r, ..)| *r == role)
                    .expect("a role of the template");
                (format!("You are a specialist who {what}."), caps)
            };
            files.push(TemplateFile {
                path: format!("agents/{agent}.yaml"),
                text: self.agent_yaml(name, &agent, role, &what, caps, runtime),
            });
        }
        files
    }

    fn agent_yaml(
        &self,
        agency: &str,
        agent: &str,
        role: &str,
        what: &str,
        caps: &[&str],
        runtime: TemplateRuntime,
    ) -> String {
        let prompt = format!(
            "Task #{{{{ task.id }}}}: {{{{ task.title }}}}\n\n{{{{ task.body }}}}\n\n{what}\n{PROMPT_TAIL}"
        );
        let prompt: String = prompt
            .lines()
            .map(|l| {
                if l.is_empty() {
                    "\n".to_string()
                } else {
                    format!("    {l}\n")
                }
            })
            .collect();
        let (validator, line) = self.validator;
        format!(
            r#"apiVersion: agentgrid.dev/v1
kind: Agent
metadata:
  name: {agent}
spec:
  description: "The {role} of the {agency} agency."
  agency: {agency}
  role: {role}
  runtime:
{runtime}  prompt: |
{prompt}  routing:
    capabilities: [{caps}]
  sandbox:
    network: {network}
  limits:
    timeout: 30m
    max_attempts: 2
  validation:
    threshold: 1.0
    validators:
      - name: {validator}
        run: {line}
"#,
            runtime = runtime.runtime_yaml(agent),
            caps = caps.join(", "),
            network = runtime.network(),
            line = serde_json::to_string(line).expect("a string"),
        )
    }
}
