//! A kill path under descriptor exhaustion. A binary of its own, because it uses up every
//! descriptor of the process, which would break whatever else ran beside it.

use std::time::Duration;

#[tokio::test(flavor = "current_thread")]
async fn a_group_whose_liveness_cannot_be_read_is_taken_for_alive_and_killed() {
    let dir = tempfile::tempdir().unwrap();
    let spec = launch::LaunchSpec::new("sleep", dir.path()).args(["1000"]);
    let process = launch::spawn(spec, launch::OutputSpec::default()).unwrap();
    let pgid = process.pgid();
    assert!(launch::group_alive(pgid), "{:?}", process.tail());
    // Use up every descriptor, as a flood of connections would.
    let mut held = Vec::new();
    while let Ok(file) = std::fs::File::open("/dev/null") {
        held.push(file);
    }
    assert!(
        launch::group_alive(pgid),
        "a group /proc cannot be read for is not taken for gone"
    );
    // Killing it still works: the signal needs no descriptor, and once the child is reaped
    // the kernel itself says the group is gone.
    let gone = launch::terminate_group(pgid, Duration::from_secs(5)).await;
    assert!(gone, "the group was ended");
    drop(held);
    let exit = tokio::time::timeout(Duration::from_secs(10), process.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.signal, Some(15), "{exit:?}");
    assert!(!launch::group_alive(pgid));
}
