//! What a person reviews before deciding on a task's work: the differences between the commit
//! its branch started from and the branch as it stands, as counts per file and as a patch.
//!
//! Read with the same hardened host git as every other step (no external diff driver, no
//! textconv: the agent's `.gitattributes` can name one, but nothing it names runs here).

use domain::TaskId;

use crate::git::git_ok;
use crate::{Error, Workspaces};

/// One file's lines added and removed; `None` for a binary file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStat {
    pub path: String,
    pub added: Option<u64>,
    pub removed: Option<u64>,
}

/// A task's work as a diff against where its branch started.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Review {
    /// The commit compared against: the merge base of the branch and the configured base.
    pub base: String,
    /// The branch's commit.
    pub head: String,
    pub files: Vec<FileStat>,
    /// The patch, at most the bytes asked for; `truncated` says whether more was cut.
    pub patch: String,
    pub truncated: bool,
}

impl Review {
    /// Lines added and removed in all text files.
    pub fn totals(&self) -> (u64, u64) {
        self.files.iter().fold((0, 0), |(a, r), f| {
            (a + f.added.unwrap_or(0), r + f.removed.unwrap_or(0))
        })
    }
}

impl Workspaces {
    /// The differences the task's branch brings over the configured base, with the patch cut
    /// at `max_patch_bytes` (0: counts only).
    pub async fn review(&self, task: TaskId, max_patch_bytes: usize) -> Result<Review, Error> {
        let head = self.branch_commit(task).await?;
        let base = self.fork_point(task, None).await?;
        let repository = self.repository().await?;
        let target = repository.target(&self.config().repo_root);
        let diff = |extra: &'static [&'static str]| {
            let mut args = vec!["diff", "--no-ext-diff", "--no-textconv", "--no-color"];
            args.extend_from_slice(extra);
            args.extend(["--end-of-options", base.as_str(), head.as_str()]);
            args.into_iter().map(str::to_owned).collect::<Vec<String>>()
        };
        let numstat_args = diff(&["--numstat", "-z", "--no-renames"]);
        let numstat_refs: Vec<&str> = numstat_args.iter().map(String::as_str).collect();
        let numstat = git_ok(target, &numstat_refs).await?;
        let files = parse_numstat(&numstat);
        let (patch, truncated) = if max_patch_bytes == 0 {
            (String::new(), false)
        } else {
            let patch_args = diff(&["--no-renames"]);
            let patch_refs: Vec<&str> = patch_args.iter().map(String::as_str).collect();
            let mut patch = git_ok(target, &patch_refs).await?;
            let truncated = patch.len() > max_patch_bytes;
            if truncated {
                let mut cut = max_patch_bytes;
                while !patch.is_char_boundary(cut) {
                    cut -= 1;
                }
                patch.truncate(cut);
            }
            (patch, truncated)
        };
        Ok(Review {
            base,
            head,
            files,
            patch,
            truncated,
        })
    }
}

/// Parses `git diff --numstat -z` without renames: `added\tremoved\tpath\0` per file, `-` for
/// the counts of a binary file.
fn parse_numstat(out: &str) -> Vec<FileStat> {
    out.split('\0')
        .filter(|entry| !entry.is_empty())
        .filter_map(|entry| {
            let mut parts = entry.splitn(3, '\t');
            let added = parts.next()?.parse().ok();
            let removed = parts.next()?.parse().ok();
            let path = parts.next()?.to_owned();
            Some(FileStat {
                path,
                added,
                removed,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numstat_reads_text_and_binary_files() {
        let files = parse_numstat("3\t1\tsrc/a.rs\0-\t-\tlogo.png\0");
        assert_eq!(
            files,
            vec![
                FileStat {
                    path: "src/a.rs".into(),
                    added: Some(3),
                    removed: Some(1)
                },
                FileStat {
                    path: "logo.png".into(),
                    added: None,
                    removed: None
                },
            ]
        );
        let review = Review {
            files,
            ..Review::default()
        };
        assert_eq!(review.totals(), (3, 1));
    }
}
