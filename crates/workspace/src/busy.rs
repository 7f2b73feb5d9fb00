//! Finding the processes that still use a directory, so a workspace is never pulled from under
//! a running program.

use std::path::{Path, PathBuf};

/// The pids of processes whose working directory, root, executable or any open file lies inside
/// `dir`. Processes whose /proc entries cannot be read (another user's, without privileges) are
/// not seen; every agentgrid child runs as the same user, so its own children always are.
pub fn processes_using(dir: &Path) -> Vec<i32> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| uses(pid, &dir))
        .collect();
    pids.sort_unstable();
    pids
}

fn uses(pid: i32, dir: &Path) -> bool {
    let base = PathBuf::from(format!("/proc/{pid}"));
    let inside = |link: &Path| std::fs::read_link(link).is_ok_and(|target| target.starts_with(dir));
    if ["cwd", "root", "exe"]
        .iter()
        .any(|name| inside(&base.join(name)))
    {
        return true;
    }
    let Ok(fds) = std::fs::read_dir(base.join("fd")) else {
        return false;
    };
    fds.filter_map(Result::ok).any(|fd| inside(&fd.path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_file_marks_this_process_as_a_user() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id() as i32;
        assert!(!processes_using(dir.path()).contains(&me));
        let file = std::fs::File::create(dir.path().join("held")).unwrap();
        assert!(processes_using(dir.path()).contains(&me));
        drop(file);
        assert!(!processes_using(dir.path()).contains(&me));
    }
}
