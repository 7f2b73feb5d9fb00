//! The control channel end to end over a real Unix socket.

use std::path::PathBuf;

use control::{ControlServer, Op};
use domain::{ExecutionId, TaskId};
use tokio::sync::mpsc;

fn socket() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctl.sock");
    (dir, path)
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
    let (_dir, path) = socket();
    let (tx, rx) = mpsc::channel(8);
    echo_engine(rx);
    let server = ControlServer::bind(&path, ExecutionId(7), "secret".into(), tx).unwrap();

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

    server.close();
    assert!(!path.exists(), "closing removes the socket file");
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
async fn malformed_requests_get_a_clear_error_and_the_connection_survives() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (_dir, path) = socket();
    let (tx, rx) = mpsc::channel(8);
    echo_engine(rx);
    let _server = ControlServer::bind(&path, ExecutionId(1), "t".into(), tx).unwrap();
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
async fn a_socket_left_by_a_dead_engine_is_replaced_and_a_missing_directory_made() {
    let dir = tempfile::tempdir().unwrap();
    // A socket file nobody listens on any more, as a killed engine leaves it.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let (tx, rx) = mpsc::channel(8);
    echo_engine(rx);
    let _server = ControlServer::bind(&stale, ExecutionId(3), "t".into(), tx.clone()).unwrap();
    let answer = blocking_call(stale.clone(), "t", Op::Status).await.unwrap();
    assert_eq!(answer["execution"], 3);

    let nested = dir.path().join("run/gone/ctl.sock");
    let _server = ControlServer::bind(&nested, ExecutionId(4), "u".into(), tx).unwrap();
    let answer = blocking_call(nested, "u", Op::Status).await.unwrap();
    assert_eq!(answer["execution"], 4);
}
