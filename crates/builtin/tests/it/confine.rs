//! Paths the model names: what is refused and what is allowed.

use std::os::unix::fs::symlink;

use builtin::{PathError, Workspace};

fn workspace() -> (tempfile::TempDir, tempfile::TempDir, Workspace) {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/lib.rs"), "").unwrap();
    symlink(outside.path(), dir.path().join("out")).unwrap();
    symlink("src", dir.path().join("inner")).unwrap();
    symlink(outside.path().join("missing"), dir.path().join("dangling")).unwrap();
    let ws = Workspace::open(dir.path()).unwrap();
    (dir, outside, ws)
}

#[test]
fn paths_inside_resolve_and_escapes_are_refused_with_the_reason() {
    let (dir, outside, ws) = workspace();
    let root = dir.path().canonicalize().unwrap();
    let check = |given: &str, expected: Result<std::path::PathBuf, PathError>| {
        assert_eq!(ws.resolve(given), expected, "{given}");
    };
    check("src/lib.rs", Ok(root.join("src/lib.rs")));
    check("./src/./new.rs", Ok(root.join("src/new.rs")));
    check("new/dir/file.txt", Ok(root.join("new/dir/file.txt")));
    check(
        root.join("src/lib.rs").to_str().unwrap(),
        Ok(root.join("src/lib.rs")),
    );
    // A link that stays inside is a path like any other.
    check("inner/lib.rs", Ok(root.join("inner/lib.rs")));
    check("", Err(PathError::Empty));
    check("../x", Err(PathError::Parent("../x".into())));
    check("src/../../x", Err(PathError::Parent("src/../../x".into())));
    check("/etc/passwd", Err(PathError::Outside("/etc/passwd".into())));
    let abs = outside.path().join("f").display().to_string();
    check(&abs, Err(PathError::Outside(abs.clone())));
    check("out/f", Err(PathError::LinkOut("out/f".into())));
    check("out", Err(PathError::LinkOut("out".into())));
    check("dangling", Err(PathError::LinkOut("dangling".into())));
    assert!(matches!(ws.resolve("a\0b"), Err(PathError::Outside(_))));
}
