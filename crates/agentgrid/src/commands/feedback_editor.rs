//! The feedback of a rejection, written in the person's own editor (`$VISUAL`, else
//! `$EDITOR`), as git takes a commit message: a temporary file holding a commented template,
//! the editor run on it, and what is left once the comment lines are dropped. An empty text
//! cancels the rejection, so quitting the editor without writing changes nothing.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use domain::{ApprovalId, TaskId};

/// The person's editor: `$VISUAL`, else `$EDITOR`; `None` when neither is set.
pub(super) fn chosen() -> Option<String> {
    ["VISUAL", "EDITOR"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|value| !value.trim().is_empty())
}

/// What the rejection is about, for the template's comment.
pub(super) struct About<'a> {
    pub approval: ApprovalId,
    pub task: TaskId,
    pub title: &'a str,
}

/// Runs `editor` on a template and returns the feedback written; `None` when it is empty.
/// Blocks while the person writes, so call it off the async threads.
pub(super) fn write_feedback(editor: &str, about: &About<'_>) -> anyhow::Result<Option<String>> {
    let file = TempFile::create(about.approval)?;
    let title = domain::text::one_line(about.title);
    let template = format!(
        "\n# Feedback for the next execution of task #{} \"{title}\" (rejecting approval #{}).\n\
         # Say what must change. Lines starting with '#' are dropped; an empty text cancels the\n\
         # rejection and changes nothing.\n",
        about.task, about.approval
    );
    file.write(&template)?;
    // Through the shell, as git does, so that an editor given with arguments (`code -w`)
    // works; the file name is passed as an argument, never spliced into the command.
    let cwd = std::env::current_dir()?;
    let spec = launch::LaunchSpec::new("sh", cwd)
        .with_env_exactly(editor_env())
        .args([
            "-c".to_string(),
            format!("{editor} \"$@\""),
            editor.to_string(),
            file.path().display().to_string(),
        ]);
    let status = launch::run_interactive(&spec)
        .map_err(|e| anyhow::anyhow!("cannot run the editor `{editor}`: {e}"))?;
    if !status.success() {
        return Err(crate::user_error(format!(
            "the editor `{editor}` ended with {status}; nothing was decided"
        )));
    }
    let text = std::fs::read_to_string(file.path())?;
    Ok(without_comments(&text))
}

/// The text without its comment lines and surrounding blank space; `None` when nothing is left.
fn without_comments(text: &str) -> Option<String> {
    let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let kept = kept.join("\n");
    let kept = kept.trim();
    (!kept.is_empty()).then(|| kept.to_string())
}

/// What the editor runs with: the safe variables every child gets, plus what editors need to
/// find their own settings and the display.
fn editor_env() -> Vec<(String, String)> {
    let mut env = launch::base_env();
    for name in [
        "VISUAL",
        "EDITOR",
        "DISPLAY",
        "WAYLAND_DISPLAY",
        "XDG_CONFIG_HOME",
        "COLORTERM",
    ] {
        if let Ok(value) = std::env::var(name) {
            launch::set_var(&mut env, name.to_string(), value);
        }
    }
    env
}

/// The template's file, only the person's to read, removed when the feedback was read.
struct TempFile(PathBuf);

impl TempFile {
    fn create(approval: ApprovalId) -> anyhow::Result<TempFile> {
        let dir = std::env::temp_dir();
        let pid = std::process::id();
        for n in 0..100u32 {
            let path = dir.join(format!("agentgrid-feedback-{approval}-{pid}-{n}.txt"));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(_) => return Ok(TempFile(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(anyhow::anyhow!(
                        "cannot make the feedback file in {}: {e}",
                        dir.display()
                    ));
                }
            }
        }
        Err(anyhow::anyhow!(
            "cannot make the feedback file in {}: every name is taken",
            dir.display()
        ))
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn write(&self, text: &str) -> anyhow::Result<()> {
        let mut file = std::fs::OpenOptions::new().write(true).open(&self.0)?;
        file.write_all(text.as_bytes())?;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::without_comments;

    #[test]
    fn comment_lines_and_blank_space_are_dropped() {
        assert_eq!(
            without_comments("\n# about\nquote fields\n  with commas\n\n# end\n"),
            Some("quote fields\n  with commas".to_string())
        );
        assert_eq!(without_comments("\n# only the template\n\n"), None);
        // Only a line that starts with '#' is a comment.
        assert_eq!(without_comments(" # keep\n"), Some("# keep".to_string()));
    }
}
