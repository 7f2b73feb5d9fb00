//! Commit messages: the task's own words first, agentgrid's ids in trailers.
//!
//! A commit on a task branch, and the commit that lands the branch on the base branch, are read
//! later by people in `git log`: the subject line is the task's title, and what agentgrid knows
//! about where the commit came from (the task, execution and iteration ids, the agents) goes
//! into git trailers at the end (`Agentgrid-Task: 5`), which `git interpret-trailers` and forges
//! read. Agents are named in `Co-authored-by:` trailers with a fixed address form,
//! [`agent_address`], under the reserved `.invalid` domain, so that no mail ever goes anywhere.

use domain::{ExecutionId, TaskId, WorkflowId};

/// The longest subject line made from a title; git tools show about this much.
const SUBJECT_CHARS: usize = 72;

/// The address an agent is named by in `Co-authored-by:`: `agent-NAME@agentgrid.invalid`.
pub fn agent_address(agent: &str) -> String {
    format!("agent-{agent}@agentgrid.invalid")
}

/// The `Co-authored-by:` trailer naming one agent.
pub fn co_author(agent: &str) -> String {
    format!("Co-authored-by: {agent} <{}>", agent_address(agent))
}

/// A subject line from a task title: one line, without control characters, cut at
/// [`SUBJECT_CHARS`] with an ellipsis. Titles are one line already; this holds for any text.
pub fn subject(title: &str) -> String {
    let clean: String = title
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let clean = clean.split_whitespace().collect::<Vec<_>>().join(" ");
    let clean = if clean.is_empty() {
        "Untitled task".to_string()
    } else {
        clean
    };
    if clean.chars().count() <= SUBJECT_CHARS {
        return clean;
    }
    let cut: String = clean.chars().take(SUBJECT_CHARS - 1).collect();
    format!("{}…", cut.trim_end())
}

/// The message of a commit that records an iteration of the agent's work on its task branch.
pub fn iteration(
    title: &str,
    task: TaskId,
    execution: ExecutionId,
    iteration: u32,
    agent: &str,
) -> String {
    format!(
        "{}\n\nAgentgrid-Task: {task}\nAgentgrid-Execution: {execution}\nAgentgrid-Iteration: {iteration}\nAgentgrid-Agent: {agent}\n",
        subject(title)
    )
}

/// The message of a commit of what an execution that was lost in a crash left in the worktree.
pub fn recovered(title: &str, task: TaskId, execution: ExecutionId) -> String {
    format!(
        "{} (work left by a lost execution)\n\nAgentgrid-Task: {task}\nAgentgrid-Execution: {execution}\n",
        subject(title)
    )
}

/// The message of a commit of what was left in the worktree of a task that had ended.
pub fn left_over(title: &str, task: TaskId) -> String {
    format!(
        "{} (work left in the workspace)\n\nAgentgrid-Task: {task}\n",
        subject(title)
    )
}

/// The message of a commit of what a workflow's command state changed in the worktree: the
/// state and its command in the subject (a `make fmt` state reads as such in `git log`), the
/// whole command and where it came from in the body and trailers.
pub fn workflow_command(task: TaskId, run: WorkflowId, state: &str, argv: &[String]) -> String {
    let command = shell_words(argv);
    format!(
        "{}\n\nWhat the command `{}` of workflow run W{run} changed.\n\nAgentgrid-Task: {task}\nAgentgrid-Workflow-Run: {run}\nAgentgrid-Workflow-State: {}\n",
        subject(&format!("{state}: {command}")),
        one_line(&command),
        one_line(state),
    )
}

/// A command line as a person would type it: words with spaces or quotes in single quotes.
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|word| {
            let plain = !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                word.clone()
            } else {
                format!("'{}'", word.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Text on one line, so that it can never start a trailer or a paragraph of its own.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// What the commit that lands a task on the base branch says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandMessage {
    pub task: TaskId,
    pub title: String,
    pub body: String,
    /// What the agent said it did (its `ctl complete` claim, or its last summary).
    pub summary: Option<String>,
    /// The agents that worked on the task and its sub-tasks, each named once.
    pub agents: Vec<String>,
    /// The strategy's name, kept in a trailer.
    pub strategy: String,
}

impl LandMessage {
    /// Subject, the task's body, the agent's summary, then the trailers.
    pub fn render(&self) -> String {
        let mut out = subject(&self.title);
        out.push_str("\n\n");
        let body = self.body.trim();
        if !body.is_empty() {
            out.push_str(body);
            out.push_str("\n\n");
        }
        if let Some(summary) = self.summary.as_deref().map(str::trim)
            && !summary.is_empty()
        {
            out.push_str("Summary: ");
            out.push_str(summary);
            out.push_str("\n\n");
        }
        out.push_str(&self.trailers());
        out
    }

    /// The trailers alone, for the commits a rebase replays (each keeps its own message).
    pub fn trailers(&self) -> String {
        let mut out = format!(
            "Agentgrid-Task: {}\nAgentgrid-Land: {}\n",
            self.task, self.strategy
        );
        let mut seen = Vec::new();
        for agent in &self.agents {
            if !seen.contains(agent) {
                out.push_str(&co_author(agent));
                out.push('\n');
                seen.push(agent.clone());
            }
        }
        out
    }
}

/// `message` with `trailers` appended to its trailer block (or as a new block).
pub fn with_trailers(message: &str, trailers: &str) -> String {
    let message = message.trim_end();
    let last_paragraph = message.rsplit("\n\n").next().unwrap_or("");
    let is_trailer_block = message.contains("\n\n")
        && !last_paragraph.is_empty()
        && last_paragraph.lines().all(|line| {
            line.split_once(": ")
                .is_some_and(|(key, _)| !key.is_empty() && !key.contains(' '))
        });
    let extra: String = trailers
        .lines()
        .filter(|line| !message.lines().any(|existing| existing == *line))
        .map(|line| format!("{line}\n"))
        .collect();
    if is_trailer_block {
        format!("{message}\n{extra}")
    } else {
        format!("{message}\n\n{extra}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iteration_commits_start_with_the_title_and_keep_the_ids_in_trailers() {
        let text = iteration("Add CSV export", TaskId(5), ExecutionId(9), 2, "coder");
        assert_eq!(
            text,
            "Add CSV export\n\nAgentgrid-Task: 5\nAgentgrid-Execution: 9\nAgentgrid-Iteration: 2\nAgentgrid-Agent: coder\n"
        );
    }

    #[test]
    fn a_workflow_command_commit_names_its_state_and_command() {
        let argv = ["sh", "-c", "echo lint >> side.log"].map(String::from);
        let text = workflow_command(TaskId(3), WorkflowId(7), "lint", &argv);
        assert_eq!(
            text,
            "lint: sh -c 'echo lint >> side.log'\n\nWhat the command `sh -c 'echo lint >> side.log'` \
             of workflow run W7 changed.\n\nAgentgrid-Task: 3\nAgentgrid-Workflow-Run: 7\n\
             Agentgrid-Workflow-State: lint\n"
        );
        // A quote in a word stays readable and the subject stays one bounded line.
        let argv = ["printf", "it's\nfine"].map(String::from);
        let text = workflow_command(TaskId(3), WorkflowId(7), "fmt", &argv);
        assert!(
            text.starts_with("fmt: printf 'it'\\''s fine'\n\n"),
            "{text}"
        );
    }

    #[test]
    fn subjects_are_one_line_and_bounded() {
        assert_eq!(subject("a\nb\tc"), "a b c");
        assert_eq!(subject("   "), "Untitled task");
        let long = "x".repeat(100);
        assert_eq!(subject(&long).chars().count(), SUBJECT_CHARS);
        assert!(subject(&long).ends_with('…'));
    }

    #[test]
    fn land_messages_hold_title_body_summary_and_one_trailer_per_agent() {
        let message = LandMessage {
            task: TaskId(3),
            title: "Add CSV export".into(),
            body: "Export the table as CSV.".into(),
            summary: Some("wrote export.py".into()),
            agents: vec!["coder".into(), "tester".into(), "coder".into()],
            strategy: "squash".into(),
        };
        assert_eq!(
            message.render(),
            "Add CSV export\n\nExport the table as CSV.\n\nSummary: wrote export.py\n\n\
             Agentgrid-Task: 3\nAgentgrid-Land: squash\n\
             Co-authored-by: coder <agent-coder@agentgrid.invalid>\n\
             Co-authored-by: tester <agent-tester@agentgrid.invalid>\n"
        );
    }

    #[test]
    fn trailers_join_an_existing_block_or_start_one() {
        let joined = with_trailers("Title\n\nAgentgrid-Task: 1\n", "Co-authored-by: a <x>\n");
        assert_eq!(
            joined,
            "Title\n\nAgentgrid-Task: 1\nCo-authored-by: a <x>\n"
        );
        let fresh = with_trailers("Title\n\nSome prose here.", "Co-authored-by: a <x>\n");
        assert_eq!(
            fresh,
            "Title\n\nSome prose here.\n\nCo-authored-by: a <x>\n"
        );
        let again = with_trailers(&joined, "Co-authored-by: a <x>\n");
        assert_eq!(again, joined, "a trailer already there is not repeated");
    }
}
