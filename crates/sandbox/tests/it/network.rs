//! What the program can reach over the network and over host sockets.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::time::Duration;

use sandbox::{GatewayRelay, NetworkMode};

use crate::support::*;

/// A perl one-liner that connects to 127.0.0.1:`port`, sends a line and prints the reply, or
/// prints why it could not connect.
fn connect(port: u16) -> String {
    format!(
        "perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(PeerAddr => \"127.0.0.1:{port}\", Timeout => 3) \
         or do {{ print \"refused: $!\\n\"; exit 1 }}; print $s \"ping\\n\"; $r = <$s>; print \"reply: $r\"'"
    )
}

fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

#[test]
fn network_none_allows_no_ip_socket_at_all() {
    let ws = scratch();
    let (host, port) = listener();
    let spec = spec(ws.path());
    let run = run(&spec, &connect(port), &[]);
    assert!(
        run.stdout.contains("refused: Operation not permitted"),
        "{run:#?}"
    );
    assert!(
        host.accept().is_err(),
        "nothing reached the host's listener"
    );
}

#[test]
fn network_host_reaches_the_host_loopback() {
    // The positive control for the test above: the same attempt works with `host`.
    let ws = scratch();
    let (host, port) = listener();
    host.set_nonblocking(false).unwrap();
    let server = std::thread::spawn(move || {
        let (conn, _) = host.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&conn).read_line(&mut line).unwrap();
        (&conn).write_all(b"pong\n").unwrap();
        line
    });
    let mut spec = spec(ws.path());
    spec.network = NetworkMode::Host;
    let run = run(&spec, &connect(port), &[]);
    assert!(run.stdout.contains("reply: pong"), "{run:#?}");
    assert_eq!(server.join().unwrap(), "ping\n");
}

#[test]
fn network_gateway_reaches_the_gateway_and_nothing_else() {
    let ws = scratch();
    let dir = scratch();
    let socket = canonical(dir.path()).join("gateway.sock");
    let gateway = UnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || {
        let (conn, _) = gateway.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&conn).read_line(&mut line).unwrap();
        (&conn).write_all(b"from the gateway\n").unwrap();
        line
    });
    let (host, host_port) = listener();
    let mut spec = spec(ws.path());
    spec.network = NetworkMode::Gateway;
    spec.gateway = Some(GatewayRelay {
        socket: socket.clone(),
        port: 18_080,
    });
    let script = format!("{}; {}", connect(18_080), connect(host_port));
    let run = run(&spec, &script, &[]);
    assert!(run.stdout.contains("reply: from the gateway"), "{run:#?}");
    assert!(
        run.stdout.contains("refused: Connection refused"),
        "{run:#?}"
    );
    assert_eq!(server.join().unwrap(), "ping\n");
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        host.accept().is_err(),
        "the host's loopback is out of reach"
    );
}

#[test]
fn unix_sockets_outside_the_workspace_are_out_of_reach() {
    let ws = scratch();
    let hidden = scratch();
    let in_tmp = tempfile::tempdir().unwrap();
    let paths = [
        canonical(hidden.path()).join("engine.sock"),
        canonical(in_tmp.path()).join("other.sock"),
    ];
    let listeners: Vec<UnixListener> = paths
        .iter()
        .map(|p| {
            let l = UnixListener::bind(p).unwrap();
            l.set_nonblocking(true).unwrap();
            l
        })
        .collect();
    let mut spec = spec(ws.path());
    spec.hide = vec![canonical(hidden.path())];
    let script = paths
        .iter()
        .map(|p| {
            format!(
                "perl -MIO::Socket::UNIX -e 'IO::Socket::UNIX->new(Peer => \"{}\") and print \"CONNECTED\\n\"'",
                p.display()
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let run = run(&spec, &script, &[]);
    assert!(!run.stdout.contains("CONNECTED"), "{run:#?}");
    for l in &listeners {
        assert!(l.accept().is_err());
    }
}
