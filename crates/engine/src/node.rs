//! The node id: the stable name of this engine on this machine, kept in the state directory.
//!
//! Every execution the engine claims records it with its lease, so that engines sharing one
//! store tell their own executions (found dead by a `/proc` scan at start) from other nodes'
//! (left alone while their lease holds). It is made once, from the host name and a random
//! suffix (two machines cloned from one image share a host name), and read back on every
//! start: a restarted engine is the same node and recovers its own executions at once.

use std::io::Write;
use std::path::Path;

use domain::NodeId;

use crate::Error;

/// The file in the state directory (`.agentgrid`) that holds the node id.
pub const NODE_FILE: &str = "node-id";

/// The node id in `state_dir`, or `None` when no engine has chosen one yet. A file that does
/// not hold a valid id is an error naming it.
pub fn read_node_id(state_dir: &Path) -> Result<Option<NodeId>, Error> {
    let path = state_dir.join(NODE_FILE);
    match std::fs::read_to_string(&path) {
        // An empty file is what an engine killed between creating the file and writing it
        // left behind before the file was written whole under another name and then linked:
        // no id was ever read from it, so none is chosen yet.
        Ok(text) if text.is_empty() => Ok(None),
        Ok(text) => parse(&path, &text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Io(format!("cannot read {}: {e}", path.display()))),
    }
}

/// The node id in `state_dir`, chosen and written first if there is none. Two engines starting
/// at once agree on one: the file is created exclusively and the loser reads the winner's.
pub fn node_id(state_dir: &Path) -> Result<NodeId, Error> {
    if let Some(id) = read_node_id(state_dir)? {
        return Ok(id);
    }
    let path = state_dir.join(NODE_FILE);
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
        // See `read_node_id`: an empty file holds no id anybody used.
        let _ = std::fs::remove_file(&path);
    }
    let id = fresh_id(&host_name());
    // Written whole under a name of its own, then linked into place: a kill at any moment
    // leaves either no node file or a complete one, and of two engines starting at once the
    // one whose link fails reads the other's.
    let staged = state_dir.join(format!(".{NODE_FILE}.{}", std::process::id()));
    let written = std::fs::File::create(&staged).and_then(|mut file| {
        file.write_all(format!("{id}\n").as_bytes())?;
        file.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&staged);
        return Err(Error::Io(format!("cannot write {}: {e}", staged.display())));
    }
    let linked = std::fs::hard_link(&staged, &path);
    let _ = std::fs::remove_file(&staged);
    match linked {
        Ok(()) => Ok(id),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_node_id(state_dir)?
            .ok_or_else(|| Error::Io(format!("{} vanished as it was read", path.display()))),
        Err(e) => Err(Error::Io(format!("cannot create {}: {e}", path.display()))),
    }
}

fn parse(path: &Path, text: &str) -> Result<NodeId, Error> {
    text.trim().parse().map_err(|why| {
        Error::Setup(format!(
            "{} does not hold a node id: {why}; delete the file to have a new one chosen \
             (only while no execution of this node runs)",
            path.display()
        ))
    })
}

/// The kernel's host name, or `node` when it cannot be read.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_default()
}

/// `host` with what a node id cannot hold replaced, cut to leave room for a random suffix.
fn fresh_id(host: &str) -> NodeId {
    let mut base: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(NodeId::MAX_LEN - 9)
        .collect();
    if base.is_empty() {
        base = "node".into();
    }
    let suffix = &executor::new_token()[..8];
    format!("{base}-{suffix}")
        .parse()
        .expect("a sanitized host name and a hex suffix make a node id")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_id_is_chosen_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_node_id(dir.path()).unwrap(), None);
        let first = node_id(dir.path()).unwrap();
        assert_eq!(node_id(dir.path()).unwrap(), first);
        assert_eq!(read_node_id(dir.path()).unwrap(), Some(first));
    }

    #[test]
    fn a_host_name_becomes_a_valid_id_with_a_random_suffix() {
        let id = fresh_id("build box/7");
        assert!(id.as_str().starts_with("build-box-7-"), "{id}");
        assert_eq!(id.as_str().len(), "build-box-7-".len() + 8);
        assert_ne!(fresh_id("h"), fresh_id("h"));
        assert!(fresh_id("").as_str().starts_with("node-"));
        assert!(fresh_id(&"x".repeat(200)).as_str().len() <= NodeId::MAX_LEN);
    }

    #[test]
    fn an_empty_node_file_left_by_a_kill_is_replaced_by_a_whole_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(NODE_FILE), "").unwrap();
        assert_eq!(read_node_id(dir.path()).unwrap(), None);
        let id = node_id(dir.path()).unwrap();
        assert_eq!(read_node_id(dir.path()).unwrap(), Some(id.clone()));
        assert_eq!(node_id(dir.path()).unwrap(), id);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            [std::ffi::OsString::from(NODE_FILE)],
            "no staged file is left"
        );
    }

    #[test]
    fn a_broken_node_file_is_named_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(NODE_FILE), "not a node\n").unwrap();
        let err = node_id(dir.path()).unwrap_err().to_string();
        assert!(err.contains("node-id does not hold a node id"), "{err}");
        assert!(err.contains("delete the file"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(NODE_FILE)).unwrap(),
            "not a node\n"
        );
    }
}
