//! Prompt and argument templates: the context they see, rendering, and the load-time check.
//!
//! Templates are minijinja with strict undefined behaviour: a name that is not in the context is
//! an error, never an empty string, so a typo such as `{{ task.titel }}` cannot silently produce
//! a prompt with a hole in it. `none` values (no parent, no feedback) print as nothing.

use std::collections::BTreeSet;

use domain::{Execution, ExecutionId, ExecutionKind, Task, TaskId, TaskState};
use minijinja::value::Serde;
use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};
use serde::Serialize;

use crate::Error;

/// What a template knows about a task.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct TaskView {
    pub id: TaskId,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    pub priority: i32,
    pub state: TaskState,
    pub branch: Option<String>,
    pub summary: Option<String>,
    /// Why the work of some done sub-tasks could not be merged into this task's branch.
    pub merge_failed: Option<String>,
}

impl From<&Task> for TaskView {
    fn from(task: &Task) -> Self {
        TaskView {
            id: task.id,
            title: task.title.clone(),
            body: task.body.clone(),
            labels: task.labels.clone(),
            priority: task.priority,
            state: task.state,
            branch: task.branch.clone(),
            summary: task.summary.clone(),
            merge_failed: task.merge_failed.clone(),
        }
    }
}

/// What a template knows about the execution it runs in.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ExecutionView {
    pub id: ExecutionId,
    /// `work` or `resume`.
    pub kind: ExecutionKind,
}

impl From<&Execution> for ExecutionView {
    fn from(execution: &Execution) -> Self {
        ExecutionView {
            id: execution.id,
            kind: execution.kind,
        }
    }
}

/// What a template knows about the agency of the agent that runs.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct AgencyView {
    pub name: String,
    /// The agent's role in it (`coordinator` for its coordinator).
    pub role: String,
    /// The text of the agency's context files (standards, memory), each under a line naming it.
    pub context: String,
}

/// What a template knows about the workflow run whose agent state started the execution.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct WorkflowView {
    /// The run's id (`W1` is 1).
    pub run: u64,
    /// The workflow's name (`metadata.name`).
    pub name: String,
    /// The state whose agent runs now, and its visit (the number of the state entry).
    pub state: String,
    pub visit: u32,
    /// The blackboard's values when the execution started, one `key = value` a line (strings
    /// quoted): what the states before wrote (QA's bugs, say). Empty until something is
    /// written; read the latest with `agentgrid ctl blackboard list`.
    pub blackboard: Option<String>,
}

/// Everything a prompt template can use. Argument and environment templates see the same names
/// plus `prompt`, the rendered prompt text.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PromptContext {
    pub task: TaskView,
    pub parent: Option<TaskView>,
    pub children: Vec<TaskView>,
    /// Which attempt at the task this execution is (1-based).
    pub attempt: u32,
    /// Which generate → validate pass runs now (1-based).
    pub iteration: u32,
    /// What the execution should do differently: a person's feedback given with a reopen
    /// (labelled with who gave it and when) and, from the second iteration on, what the
    /// validators said about the previous one when it failed.
    pub feedback: Option<String>,
    /// The comments on the task since the agent's last execution started, one per line with
    /// author and time; agents' own comments are left out.
    pub comments: Option<String>,
    /// A person's answer to the question the task's agent last asked with `ctl block`.
    pub answer: Option<String>,
    /// The open messages for this execution when it started, one a line, most urgent first
    /// (`M3 QUESTION from agent:planner#2: {"text": …}`); each is recorded as delivered and
    /// is acknowledged with `agentgrid ctl msg ack M3`.
    pub inbox: Option<String>,
    /// The handoff that opened this part of the task (`ctl handoff`): who handed it over, the
    /// summary and the artifacts (paths in the branch); `None` when no handoff did.
    pub handoff: Option<String>,
    pub execution: ExecutionView,
    /// The name of the agent that runs.
    pub agent: String,
    /// The agent's agency, when it is in one.
    pub agency: Option<AgencyView>,
    /// The workflow run, when a workflow's agent state started this execution.
    pub workflow: Option<WorkflowView>,
}

/// The top-level names of [`PromptContext`], as templates see them.
pub const CONTEXT_NAMES: [&str; 14] = [
    "task",
    "parent",
    "children",
    "attempt",
    "iteration",
    "feedback",
    "comments",
    "answer",
    "inbox",
    "handoff",
    "execution",
    "agent",
    "agency",
    "workflow",
];
/// The fields of a [`TaskView`].
pub const TASK_FIELDS: [&str; 9] = [
    "id",
    "title",
    "body",
    "labels",
    "priority",
    "state",
    "branch",
    "summary",
    "merge_failed",
];
/// The fields of a [`WorkflowView`].
pub const WORKFLOW_FIELDS: [&str; 5] = ["run", "name", "state", "visit", "blackboard"];
/// The fields of an [`ExecutionView`].
pub const EXECUTION_FIELDS: [&str; 2] = ["id", "kind"];

impl PromptContext {
    /// A context with every optional part filled in: a parent, a finished child, feedback from a
    /// failed iteration. Used to check templates and to preview prompts.
    pub fn sample() -> PromptContext {
        let task = |id: i64, title: &str, state: TaskState| TaskView {
            id: TaskId(id),
            title: title.into(),
            body: format!("The details of \"{title}\"."),
            labels: vec!["backend".into()],
            priority: 2,
            state,
            branch: Some(format!("agentgrid/{id}")),
            summary: Some(format!("Finished \"{title}\".")),
            merge_failed: None,
        };
        PromptContext {
            task: task(42, "Add CSV export", TaskState::Running),
            parent: Some(task(7, "Reporting", TaskState::Waiting)),
            children: vec![task(43, "Write the CSV writer", TaskState::Done)],
            attempt: 1,
            iteration: 2,
            feedback: Some("tests: 1 of 3 failed".into()),
            comments: Some("ada at 2026-01-02T03:04:05Z: keep the old format too".into()),
            answer: Some("use the standard library's csv module".into()),
            inbox: Some(
                r#"M3 QUESTION from agent:reviewer#9: {"text":"keep the header row?"}"#.into(),
            ),
            handoff: Some(
                "Handed off by code/developer (agent coder, execution #4) to qa:\nThe export \
                 is written; test it.\nArtifacts (paths in the branch): NOTES.md"
                    .into(),
            ),
            execution: ExecutionView {
                id: ExecutionId(5),
                kind: ExecutionKind::Work,
            },
            agent: "worker".into(),
            agency: Some(AgencyView {
                name: "code".into(),
                role: "developer".into(),
                context: "## docs/standards.md\nEvery change comes with a test.\n".into(),
            }),
            workflow: Some(WorkflowView {
                run: 1,
                name: "review".into(),
                state: "code".into(),
                visit: 3,
                blackboard: Some("bugs = 1".into()),
            }),
        }
    }

    /// The other extreme: a first attempt at a top-level task with no sub-tasks, no feedback and
    /// no branch yet. A template that works on both samples works on every task.
    fn sparse_sample() -> PromptContext {
        let mut ctx = PromptContext::sample();
        ctx.task.branch = None;
        ctx.task.summary = None;
        ctx.task.labels.clear();
        ctx.parent = None;
        ctx.children.clear();
        ctx.iteration = 1;
        ctx.feedback = None;
        ctx.comments = None;
        ctx.answer = None;
        ctx.agency = None;
        ctx.inbox = None;
        ctx.workflow = None;
        ctx.handoff = None;
        ctx
    }
}

/// Renders a prompt template.
pub fn render_prompt(template: &str, ctx: &PromptContext) -> Result<String, Error> {
    render(template, Value::from(Serde(ctx)), Names::Prompt)
}

/// Renders one argument or environment value of the agent's command. It sees the prompt context
/// and `prompt`, the rendered prompt.
pub fn render_arg(template: &str, ctx: &PromptContext, prompt: &str) -> Result<String, Error> {
    render(template, arg_context(ctx, prompt), Names::Arg)
}

fn arg_context(ctx: &PromptContext, prompt: &str) -> Value {
    minijinja::context! { prompt => prompt, ..Value::from(Serde(ctx)) }
}

/// Which names a template may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Names {
    /// The prompt itself: the [`PromptContext`].
    Prompt,
    /// A command argument or environment value: the context plus `prompt`.
    Arg,
}

impl Names {
    fn top_level(self) -> Vec<&'static str> {
        let mut names = CONTEXT_NAMES.to_vec();
        if self == Names::Arg {
            names.push("prompt");
        }
        names
    }

    /// Whether `path` (as minijinja reports it: `task.title`, `feedback`) names something in the
    /// context. Only the fields of the task and execution views are checked below the top level;
    /// anything deeper is left to the sample renders.
    fn knows(self, path: &str) -> bool {
        let mut parts = path.split('.');
        let top = parts.next().unwrap_or_default();
        if !self.top_level().contains(&top) {
            return false;
        }
        match (top, parts.next()) {
            ("task" | "parent", Some(field)) => TASK_FIELDS.contains(&field),
            ("execution", Some(field)) => EXECUTION_FIELDS.contains(&field),
            ("workflow", Some(field)) => WORKFLOW_FIELDS.contains(&field),
            _ => true,
        }
    }

    /// What to tell someone who used `path`: the names that do exist there.
    fn hint(self, path: &str) -> String {
        let top = path.split('.').next().unwrap_or_default();
        match top {
            "task" | "parent" if path.contains('.') => {
                format!("`{top}` has {}", TASK_FIELDS.join(", "))
            }
            "execution" if path.contains('.') => {
                format!("`execution` has {}", EXECUTION_FIELDS.join(", "))
            }
            "workflow" if path.contains('.') => {
                format!("`workflow` has {}", WORKFLOW_FIELDS.join(", "))
            }
            // A field of something the template made itself, most often a loop variable over
            // `children`, which holds tasks.
            _ if path.contains('.') => {
                format!(
                    "check the field name (a task has {})",
                    TASK_FIELDS.join(", ")
                )
            }
            _ => format!("the template can use {}", self.top_level().join(", ")),
        }
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Keep the text exactly as written: a prompt block's final newline is part of the prompt.
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    // An absent parent or feedback prints as nothing rather than the word "none".
    env.set_formatter(|out, state, value| {
        if value.is_none() {
            Ok(())
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env
}

fn render(template: &str, ctx: Value, names: Names) -> Result<String, Error> {
    // Most command arguments are plain words; they need no template engine at all.
    if !template.contains("{{") && !template.contains("{%") && !template.contains("{#") {
        return Ok(template.to_string());
    }
    let env = compiled(template).map_err(|err| convert(&err, names))?;
    let result = env.get_template(CACHED_NAME).and_then(|t| t.render(ctx));
    result.map_err(|err| convert(&err, names))
}

const CACHED_NAME: &str = "template";

/// An environment holding `template` compiled, kept for the life of the process: the engine
/// renders the same few templates for every execution, and compiling them each time was a
/// measurable part of starting one.
fn compiled(template: &str) -> Result<std::sync::Arc<Environment<'static>>, minijinja::Error> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock, PoisonError};
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Environment<'static>>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(env) = cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(template)
    {
        return Ok(env.clone());
    }
    let mut env = environment();
    env.add_template_owned(CACHED_NAME, template.to_string())?;
    let env = Arc::new(env);
    let mut map = cache.lock().unwrap_or_else(PoisonError::into_inner);
    // Templates come from manifests, so the set is small; the bound only guards a process that
    // reloads manifests for a very long time.
    if map.len() >= 256 {
        map.clear();
    }
    map.insert(template.to_string(), env.clone());
    Ok(env)
}

fn convert(err: &minijinja::Error, names: Names) -> Error {
    let line = err.line().unwrap_or(1);
    let detail = err
        .detail()
        .map(str::to_string)
        .unwrap_or_else(|| err.kind().to_string());
    match err.kind() {
        ErrorKind::SyntaxError => Error::TemplateSyntax { line, detail },
        ErrorKind::UndefinedError => match backticked(&detail) {
            Some(name) => Error::UndefinedVariable {
                hint: names.hint(&name),
                name,
                line,
            },
            None => Error::Render { line, detail },
        },
        _ => Error::Render {
            line,
            detail: format!("{}: {detail}", err.kind()),
        },
    }
}

/// The first `quoted` word of a minijinja message, which names the culprit.
fn backticked(detail: &str) -> Option<String> {
    let start = detail.find('`')? + 1;
    let len = detail[start..].find('`')?;
    Some(detail[start..start + len].to_string())
}

/// One problem with a template found at load time; `line` counts from the template's first line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub line: usize,
    pub message: String,
}

/// Checks a template the way it will be used: it must parse, use only names of the context, and
/// render against both a full and a sparse sample context. Returns every problem found.
pub(crate) fn check_template(source: &str, names: Names) -> Vec<Problem> {
    let env = environment();
    let template = match env.template_from_str(source) {
        Ok(t) => t,
        Err(err) => return vec![problem(&convert(&err, names))],
    };

    let globals: BTreeSet<&str> = env.globals().map(|(name, _)| name).collect();
    let mut reported = BTreeSet::new();
    let mut problems = Vec::new();
    let used: BTreeSet<String> = template.undeclared_variables(true).into_iter().collect();
    for name in used {
        let top = name.split('.').next().unwrap_or_default();
        if globals.contains(top) || names.knows(&name) {
            continue;
        }
        problems.push(problem(&Error::UndefinedVariable {
            line: line_of(source, &name),
            hint: names.hint(&name),
            name: name.clone(),
        }));
        reported.insert(name);
    }

    // Rendering stops at the first failure, so each sample can add at most one problem.
    for (ctx, sparse) in [
        (PromptContext::sample(), false),
        (PromptContext::sparse_sample(), true),
    ] {
        let value = match names {
            Names::Prompt => Value::from(Serde(&ctx)),
            Names::Arg => arg_context(&ctx, "the rendered prompt"),
        };
        let Err(err) = template.render(value) else {
            continue;
        };
        let p = match convert(&err, names) {
            Error::UndefinedVariable { name, line, .. } if sparse => {
                if !reported.insert(name.clone()) {
                    continue;
                }
                Problem {
                    line,
                    message: format!(
                        "the template uses `{name}`, which is empty when the task has no parent, \
                         sub-tasks, feedback or branch; guard it with {{% if … %}}"
                    ),
                }
            }
            Error::UndefinedVariable { name, .. } if !reported.insert(name.clone()) => continue,
            // An undefined attribute (`task.nope`) fails the render without a name; the names
            // found above already say which one it is.
            Error::Render { .. }
                if err.kind() == minijinja::ErrorKind::UndefinedError && !reported.is_empty() =>
            {
                continue;
            }
            other => problem(&other),
        };
        if !problems.contains(&p) {
            problems.push(p);
        }
    }
    problems
}

fn problem(err: &Error) -> Problem {
    let (line, message) = match err {
        Error::TemplateSyntax { line, detail } => {
            (*line, format!("template syntax error: {detail}"))
        }
        Error::UndefinedVariable { name, hint, line } => (
            *line,
            format!("the template uses `{name}`, which is not defined; {hint}"),
        ),
        Error::Render { line, detail } => {
            (*line, format!("the template fails to render: {detail}"))
        }
    };
    Problem { line, message }
}

/// The 1-based line of the first mention of the name `needle` (not part of a longer name), or 1.
fn line_of(source: &str, needle: &str) -> usize {
    let is_name_char = |c: char| c.is_alphanumeric() || c == '_' || c == '.';
    source
        .match_indices(needle)
        .find(|(at, _)| {
            let before = source[..*at].chars().next_back();
            let after = source[at + needle.len()..].chars().next();
            !before.is_some_and(is_name_char)
                && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
        .map(|(at, _)| source[..at].matches('\n').count() + 1)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_lists_match_the_serialized_context() {
        let json = serde_json::to_value(PromptContext::sample()).unwrap();
        let keys = |v: &serde_json::Value| -> BTreeSet<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        let set =
            |names: &[&str]| -> BTreeSet<String> { names.iter().map(|s| s.to_string()).collect() };
        assert_eq!(keys(&json), set(&CONTEXT_NAMES));
        assert_eq!(keys(&json["task"]), set(&TASK_FIELDS));
        assert_eq!(keys(&json["execution"]), set(&EXECUTION_FIELDS));
    }

    #[test]
    fn names_know_the_context_and_its_fields() {
        assert!(Names::Prompt.knows("task.title"));
        assert!(Names::Prompt.knows("children"));
        assert!(!Names::Prompt.knows("task.titel"));
        assert!(!Names::Prompt.knows("prompt"));
        assert!(Names::Arg.knows("prompt"));
        assert!(!Names::Arg.knows("execution.pid"));
    }

    #[test]
    fn backticked_names_are_extracted() {
        assert_eq!(
            backticked("`task.titel` is undefined").as_deref(),
            Some("task.titel")
        );
        assert_eq!(backticked("nothing quoted"), None);
    }

    #[test]
    fn line_of_counts_from_one() {
        assert_eq!(line_of("a\nb {{ x }}\n", "x"), 2);
        assert_eq!(line_of("{{ task.title }}\n{{ title }}", "title"), 2);
        assert_eq!(line_of("abc", "zzz"), 1);
    }
}
