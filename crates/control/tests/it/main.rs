//! The control channel end to end over a real Unix socket.

use std::path::PathBuf;

use control::{ControlHub, Op};
use domain::{ExecutionId, TaskId};
use tokio::sync::mpsc;

/// A hub listening in a fresh directory, with an engine stand-in answering its calls.
fn hub() -> (tempfile::TempDir, ControlHub) {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = mpsc::channel(8);
    echo_engine(rx);
    let hub = ControlHub::bind(dir.path(), tx).unwrap();
    (dir, hub)
}

/// An engine stand-in that answers every call by echoing its op name and execution.
fn echo_engine(mut calls: mpsc::Receiver<control::ControlCall>) {
    tokio::spawn(async move {
        while let Some(call) = calls.recv().await {
            let answer = match &call.op {
                Op::Nudge { task } if task.0 == 404 => Err(format!("task #{task} does not exist")),
                op => Ok(serde_json::json!({"op": op.name(), "execution": call.execution.0})),
            };
            let _ = call.reply.send(answer);
        }
    });
}

async fn blocking_call(
    path: PathBuf,
    token: &str,
    op: Op,
) -> Result<serde_json::Value, control::Error> {
    let token = token.to_string();
    tokio::task::spawn_blocking(move || control::call(&path, &token, &op))
        .await
        .unwrap()
}

#[tokio::test]
async fn calls_with_the_right_token_reach_the_engine_and_others_do_not() {
    let (_dir, hub) = hub();
    let endpoint = hub.open(ExecutionId(7), "secret".into()).unwrap();
    let path = endpoint.path().to_path_buf();
    assert_eq!(path, hub.path().with_file_name("7.sock"));

    let ok = blocking_call(path.clone(), "secret", Op::Status)
        .await
        .unwrap();
    assert_eq!(ok, serde_json::json!({"op": "status", "execution": 7}));

    let refused = blocking_call(path.clone(), "guess", Op::Status)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("token is not valid"),
        "{refused}"
    );

    let engine_says_no = blocking_call(path.clone(), "secret", Op::Nudge { task: TaskId(404) })
        .await
        .unwrap_err();
    assert_eq!(engine_says_no.to_string(), "task #404 does not exist");

    endpoint.close();
    assert!(!path.exists(), "closing removes the execution's path");
    let gone = blocking_call(path.clone(), "secret", Op::Status)
        .await
        .unwrap_err();
    assert!(
        gone.to_string()
            .contains("works only inside a running execution"),
        "{gone}"
    );
}

#[tokio::test]
async fn a_call_counts_for_the_execution_of_its_token_and_an_ended_token_opens_nothing() {
    let (_dir, hub) = hub();
    let first = hub.open(ExecutionId(7), "seven".into()).unwrap();
    let second = hub.open(ExecutionId(8), "eight".into()).unwrap();
    let (seven, eight) = (first.path().to_path_buf(), second.path().to_path_buf());
    for (path, token, execution) in [
        (&seven, "seven", 7),
        (&eight, "eight", 8),
        (&eight, "seven", 7),
    ] {
        let answer = blocking_call(path.clone(), token, Op::Status)
            .await
            .unwrap();
        assert_eq!(
            answer["execution"],
            execution,
            "{token} through {}",
            path.display()
        );
    }
    // Execution 7 ends: its token is refused through any path still open.
    drop(first);
    let refused = blocking_call(eight.clone(), "seven", Op::Status)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("token is not valid"),
        "{refused}"
    );
    let answer = blocking_call(eight, "eight", Op::Status).await.unwrap();
    assert_eq!(answer["execution"], 8);
    hub.close();
    assert!(!hub.path().exists(), "closing the hub removes its socket");
}

#[tokio::test]
async fn malformed_requests_get_a_clear_error_and_the_connection_survives() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (_dir, hub) = hub();
    let endpoint = hub.open(ExecutionId(1), "t".into()).unwrap();
    let path = endpoint.path();
    let stream = tokio::net::UnixStream::connect(&path).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"not json\n").await.unwrap();
    let first: control::Response =
        serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert!(!first.ok);
    assert!(first.error.unwrap().contains("invalid request"));
    write
        .write_all(b"{\"token\":\"t\",\"op\":\"explode\"}\n")
        .await
        .unwrap();
    let second: control::Response =
        serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert!(second.error.unwrap().contains("unknown variant"));
    write
        .write_all(b"{\"token\":\"t\",\"op\":\"comment\",\"text\":\"hi\"}\n")
        .await
        .unwrap();
    let third: control::Response =
        serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert!(third.ok, "{third:?}");
}

#[tokio::test]
async fn files_left_by_a_dead_engine_are_replaced_and_a_missing_directory_made() {
    let dir = tempfile::tempdir().unwrap();
    // A socket file nobody listens on any more, as a killed engine leaves it, where the hub
    // goes and where an execution's path goes.
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    drop(std::os::unix::net::UnixListener::bind(run.join("control.sock")).unwrap());
    std::fs::hard_link(run.join("control.sock"), run.join("3.sock")).unwrap();
    let (tx, rx) = mpsc::channel(8);
    echo_engine(rx);
    let hub = ControlHub::bind(&run, tx.clone()).unwrap();
    let endpoint = hub.open(ExecutionId(3), "t".into()).unwrap();
    let answer = blocking_call(endpoint.path().to_path_buf(), "t", Op::Status)
        .await
        .unwrap();
    assert_eq!(answer["execution"], 3);

    // The directory is removed under the running hub (a runtime directory cleaned up at
    // logout): the next execution's channel works all the same.
    std::fs::remove_dir_all(&run).unwrap();
    let endpoint = hub.open(ExecutionId(4), "u".into()).unwrap();
    let answer = blocking_call(endpoint.path().to_path_buf(), "u", Op::Status)
        .await
        .unwrap();
    assert_eq!(answer["execution"], 4);

    let nested = dir.path().join("gone/twice");
    let hub = ControlHub::bind(&nested, tx).unwrap();
    let endpoint = hub.open(ExecutionId(5), "v".into()).unwrap();
    let answer = blocking_call(endpoint.path().to_path_buf(), "v", Op::Status)
        .await
        .unwrap();
    assert_eq!(answer["execution"], 5);
}

#[tokio::test]
async fn a_directory_too_deep_for_a_socket_path_falls_back_to_the_temporary_directory() {
    let dir = tempfile::tempdir().unwrap();
    let deep = dir.path().join("d".repeat(60)).join("e".repeat(60));
    let (tx, rx) = mpsc::channel(8);
    echo_engine(rx);
    let hub = ControlHub::bind(&deep, tx).unwrap();
    assert!(
        hub.path().as_os_str().len() < 108,
        "{}",
        hub.path().display()
    );
    let endpoint = hub.open(ExecutionId(9), "w".into()).unwrap();
    let answer = blocking_call(endpoint.path().to_path_buf(), "w", Op::Status)
        .await
        .unwrap();
    assert_eq!(answer["execution"], 9);
    let place = hub.path().to_path_buf();
    drop(endpoint);
    drop(hub);
    assert!(!place.exists(), "the socket goes with the hub");
    assert!(
        !place.parent().unwrap().exists(),
        "and so does its own directory"
    );
}

#[tokio::test]
async fn a_hub_closed_early_and_dropped_late_leaves_a_new_socket_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = mpsc::channel(8);
    echo_engine(rx);
    let old = ControlHub::bind(dir.path(), tx.clone()).unwrap();
    old.close();
    let new = ControlHub::bind(dir.path(), tx).unwrap();
    drop(old);
    assert!(new.path().exists(), "the new hub's socket is still there");
    let endpoint = new.open(ExecutionId(1), "x".into()).unwrap();
    let answer = blocking_call(endpoint.path().to_path_buf(), "x", Op::Status)
        .await
        .unwrap();
    assert_eq!(answer["execution"], 1);
}
