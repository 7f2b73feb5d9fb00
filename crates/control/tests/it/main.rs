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
    // The engine's reason reaches the agent as the refusal of the call it made.
    assert_eq!(
        engine_says_no.to_string(),
        "`agentgrid ctl nudge` was refused: task #404 does not exist; nothing was nudged; \
         `agentgrid ctl status` shows your task, its parent and its sub-tasks with their ids"
    );

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

/// A hub with `limits`, and an engine stand-in.
fn hub_with(limits: control::Limits) -> (tempfile::TempDir, ControlHub) {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = mpsc::channel(8);
    echo_engine(rx);
    let hub = ControlHub::bind_with(dir.path(), tx, limits).unwrap();
    (dir, hub)
}

/// One connection speaking the wire format line by line.
struct Conn {
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::net::unix::OwnedReadHalf>>,
    write: tokio::net::unix::OwnedWriteHalf,
}

impl Conn {
    async fn open(path: &std::path::Path) -> Conn {
        use tokio::io::AsyncBufReadExt;
        let (read, write) = tokio::net::UnixStream::connect(path)
            .await
            .unwrap()
            .into_split();
        Conn {
            lines: tokio::io::BufReader::new(read).lines(),
            write,
        }
    }

    async fn send(&mut self, line: &[u8]) -> control::Response {
        use tokio::io::AsyncWriteExt;
        self.write.write_all(line).await.unwrap();
        self.write.write_all(b"\n").await.unwrap();
        let line = tokio::time::timeout(DEADLINE, self.lines.next_line())
            .await
            .expect("an answer in time")
            .unwrap()
            .expect("an answer, not the end");
        serde_json::from_str(&line).unwrap()
    }

    async fn call(&mut self, token: &str, op: Op) -> control::Response {
        let request = control::Request {
            token: token.into(),
            op,
        };
        self.send(&serde_json::to_vec(&request).unwrap()).await
    }

    /// Whether the server closed the connection within the deadline.
    async fn closed(&mut self) -> bool {
        matches!(
            tokio::time::timeout(DEADLINE, self.lines.next_line()).await,
            Ok(Ok(None) | Err(_))
        )
    }
}

const DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

fn comment(text: &str) -> Op {
    Op::Comment {
        text: text.into(),
        key: None,
    }
}

#[tokio::test]
async fn silent_connections_make_room_and_an_agent_still_gets_through() {
    let (_dir, hub) = hub_with(control::Limits {
        max_connections: 8,
        first_request_timeout: std::time::Duration::from_secs(600),
        ..control::Limits::default()
    });
    let endpoint = hub.open(ExecutionId(1), "t".into()).unwrap();
    let mut flood = Vec::new();
    for _ in 0..50 {
        flood.push(Conn::open(endpoint.path()).await);
        // Let the server take each one as it comes.
        tokio::task::yield_now().await;
    }
    let mut agent = Conn::open(endpoint.path()).await;
    assert!(agent.call("t", Op::Status).await.ok);
    // The oldest were closed to make room, and with them their descriptors.
    for (i, conn) in flood[..42].iter_mut().enumerate() {
        assert!(
            conn.closed().await,
            "connection {i} of the flood is still open"
        );
    }
    // The agent's connection, which said whose it is, stays.
    assert!(agent.call("t", Op::Status).await.ok);
}

#[tokio::test]
async fn a_connection_silent_past_its_timeout_is_closed() {
    let (_dir, hub) = hub_with(control::Limits {
        first_request_timeout: std::time::Duration::from_millis(50),
        ..control::Limits::default()
    });
    let endpoint = hub.open(ExecutionId(1), "t".into()).unwrap();
    let mut silent = Conn::open(endpoint.path()).await;
    assert!(silent.closed().await);
}

#[tokio::test]
async fn an_execution_holds_at_most_its_share_of_connections() {
    let (_dir, hub) = hub_with(control::Limits {
        max_connections_per_execution: 2,
        ..control::Limits::default()
    });
    let endpoint = hub.open(ExecutionId(3), "t".into()).unwrap();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut conn = Conn::open(endpoint.path()).await;
        assert!(conn.call("t", Op::Status).await.ok);
        held.push(conn);
    }
    let mut third = Conn::open(endpoint.path()).await;
    let refused = third.call("t", Op::Status).await;
    let error = refused.error.unwrap();
    assert!(
        error.contains("already holds 2 control connections"),
        "{error}"
    );
    drop(held.pop());
    // The server sees the end of the dropped one soon, not at once: try until it did.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let mut again = Conn::open(endpoint.path()).await;
        if again.call("t", Op::Status).await.ok {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "a place was freed");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn calls_past_an_executions_limits_are_refused_with_the_limit() {
    let (_dir, hub) = hub_with(control::Limits {
        max_comments_per_execution: 3,
        max_calls_per_execution: 10,
        ..control::Limits::default()
    });
    let endpoint = hub.open(ExecutionId(5), "t".into()).unwrap();
    let mut conn = Conn::open(endpoint.path()).await;
    for i in 0..3 {
        assert!(conn.call("t", comment(&format!("c{i}"))).await.ok);
    }
    let refused = conn.call("t", comment("one more")).await.error.unwrap();
    assert!(refused.contains("3 comments per execution"), "{refused}");
    let big = conn
        .call("t", comment(&"x".repeat(17 * 1024)))
        .await
        .error
        .unwrap();
    assert!(big.contains("16 KiB"), "{big}");
    let title = Op::SubtaskCreate {
        title: "a\u{1b}]0;owned\u{7}".into(),
        body: String::new(),
        labels: vec![],
        blocked_by: vec![],
        priority: None,
        key: None,
        areas: vec![],
        lease_ttl_ms: None,
    };
    let forged = conn.call("t", title).await.error.unwrap();
    assert!(forged.contains("control character"), "{forged}");
    // Every call counts toward the total, refused or not: 6 so far.
    for _ in 0..4 {
        assert!(conn.call("t", Op::Status).await.ok);
    }
    let over = conn.call("t", Op::Status).await.error.unwrap();
    assert!(over.contains("10 control calls"), "{over}");
    // Another execution's counts are its own.
    let other = hub.open(ExecutionId(6), "u".into()).unwrap();
    let mut conn = Conn::open(other.path()).await;
    assert!(conn.call("u", comment("mine")).await.ok);
}

#[tokio::test]
async fn calls_past_the_burst_are_paced_not_refused() {
    let (_dir, hub) = hub_with(control::Limits {
        calls_per_second: 20,
        call_burst: 5,
        ..control::Limits::default()
    });
    let endpoint = hub.open(ExecutionId(1), "t".into()).unwrap();
    let mut conn = Conn::open(endpoint.path()).await;
    let started = std::time::Instant::now();
    for _ in 0..5 {
        assert!(conn.call("t", Op::Status).await.ok);
    }
    let burst = started.elapsed();
    for _ in 0..10 {
        assert!(conn.call("t", Op::Status).await.ok);
    }
    // Ten calls past the burst at twenty a second take at least about half a second.
    let paced = started.elapsed() - burst;
    assert!(
        paced >= std::time::Duration::from_millis(400),
        "{paced:?} for ten paced calls"
    );
}

#[tokio::test]
async fn an_oversized_request_is_refused_and_the_connection_goes_on() {
    let (_dir, hub) = hub();
    let endpoint = hub.open(ExecutionId(1), "t".into()).unwrap();
    let mut conn = Conn::open(endpoint.path()).await;
    let huge = format!(
        "{{\"token\":\"t\",\"op\":\"comment\",\"text\":\"{}\"}}",
        "x".repeat(control::MAX_REQUEST_BYTES)
    );
    let refused = conn.send(huge.as_bytes()).await.error.unwrap();
    assert!(refused.contains("larger than 256 KiB"), "{refused}");
    assert!(conn.call("t", comment("short")).await.ok);
}

/// An engine stand-in that answers a sub-task created under the key `seen` as one that
/// existed, and every other as new.
fn keyed_engine(mut calls: mpsc::Receiver<control::ControlCall>) {
    tokio::spawn(async move {
        while let Some(call) = calls.recv().await {
            let existed = matches!(&call.op, Op::SubtaskCreate { key: Some(k), .. } if k == "seen");
            let _ = call
                .reply
                .send(Ok(serde_json::json!({"id": 1, "existed": existed})));
        }
    });
}

#[tokio::test]
async fn a_create_that_found_its_sub_task_takes_nothing_from_the_allowance() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = mpsc::channel(8);
    keyed_engine(rx);
    let limits = control::Limits {
        max_subtasks_per_execution: 1,
        ..control::Limits::default()
    };
    let hub = ControlHub::bind_with(dir.path(), tx, limits).unwrap();
    let endpoint = hub.open(ExecutionId(1), "t".into()).unwrap();
    let mut conn = Conn::open(endpoint.path()).await;
    let create = |key: &str| Op::SubtaskCreate {
        title: "a part".into(),
        body: String::new(),
        labels: vec![],
        blocked_by: vec![],
        priority: None,
        key: Some(key.into()),
        areas: vec![],
        lease_ttl_ms: None,
    };
    for _ in 0..3 {
        assert!(conn.call("t", create("seen")).await.ok);
    }
    assert!(conn.call("t", create("new")).await.ok, "the one allowed");
    let refused = conn.call("t", create("newer")).await;
    assert!(
        refused.error.unwrap().contains("the most allowed"),
        "a second new sub-task is over the limit"
    );
    let bad = conn.call("t", create("two\nlines")).await;
    assert!(bad.error.unwrap().contains("control character"));
}
