//! The accept loop's per-peer limits over real sockets: a peer's connection cap (other
//! peers unaffected, the slot back once a connection closes) and the body read timeout
//! (a trickled body is answered 408 and its connection closed). Tests reach the daemon
//! from loopback addresses only, so they set the loopback cap; a remote peer's cap and
//! the reserve kept for loopback take the same path (`src/serve/limits.rs` tests them
//! with remote addresses).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::{ADMIN_TOKEN, spawn_app_with};

/// Longest any read here waits before the test fails: not a speed assertion, a bound
/// so that a daemon that never answers fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(15);

/// A connection to `addr` from the loopback address `from`.
async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// One HTTP/1.1 response read off `stream`: its status, headers (lowercased) and body;
/// `None` when the daemon closed the connection without answering.
async fn read_response(stream: &mut TcpStream) -> Option<(u16, String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match tokio::time::timeout(PATIENCE, stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("the daemon neither answered nor closed the connection"),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while buf.len() < head_end + length {
        match tokio::time::timeout(PATIENCE, stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("the daemon stopped sending a response's body"),
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
    Some((status, head, body))
}

/// `GET /healthz` on an open connection (kept alive); the status, `None` if closed.
async fn health(stream: &mut TcpStream, addr: SocketAddr) -> Option<u16> {
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    read_response(stream).await.map(|(status, _, _)| status)
}

/// A new connection from `from` is served, retried while the daemon has not yet
/// noticed a closed one (it frees the slot when it reads the close).
async fn served_soon(from: &str, addr: SocketAddr) -> bool {
    for _ in 0..50 {
        let mut stream = connect_from(from, addr).await;
        if health(&mut stream, addr).await == Some(200) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn one_peer_holds_at_most_its_cap_of_connections() {
    let app = spawn_app_with(|s| s.server.max_connections_per_loopback_peer = 3).await;
    let addr = app.addr;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = connect_from("127.0.0.1", addr).await;
        assert_eq!(health(&mut stream, addr).await, Some(200));
        held.push(stream);
    }
    // A fourth connection from the same peer is closed unanswered...
    let mut fourth = connect_from("127.0.0.1", addr).await;
    assert_eq!(health(&mut fourth, addr).await, None, "over the cap");
    // ...while another peer is served, and the three held ones still are.
    let mut other = connect_from("127.0.0.2", addr).await;
    assert_eq!(health(&mut other, addr).await, Some(200), "another peer");
    for stream in &mut held {
        assert_eq!(health(stream, addr).await, Some(200));
    }
    // One closed: the peer gets its slot back.
    drop(held.pop());
    assert!(served_soon("127.0.0.1", addr).await, "the slot came back");
}

#[tokio::test]
async fn a_trickled_body_is_cut_off_and_frees_its_slot() {
    let app = spawn_app_with(|s| {
        s.server.max_connections_per_loopback_peer = 2;
        s.server.body_read_timeout_s = 1;
    })
    .await;
    let addr = app.addr;

    // A body in two parts, well within the deadline, is read as usual.
    let body = format!(r#"{{"admin_token": "{ADMIN_TOKEN}"}}"#);
    let mut stream = connect_from("127.0.0.1", addr).await;
    let head = format!(
        "POST /console/v1/auth/login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body.as_bytes()[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.write_all(&body.as_bytes()[5..]).await.unwrap();
    let (status, _, _) = read_response(&mut stream).await.expect("an answer");
    assert_eq!(status, 200);
    // Kept open: the peer's other slot is the trickled connection's.
    let _held = stream;

    // A body trickled a byte every 100 ms (it would take 20 s) is answered 408 at its
    // deadline, while the client is still sending, and the connection is closed.
    let mut stream = connect_from("127.0.0.1", addr).await;
    let head = format!(
        "POST /console/v1/auth/login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = stream.split();
    let trickle = async {
        for _ in 0..199 {
            if writer.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let answer = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match tokio::time::timeout(PATIENCE, reader.read(&mut chunk)).await {
                Ok(Ok(0) | Err(_)) => return buf,
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                Err(_) => panic!("a trickled body held its connection"),
            }
        }
    };
    let answer = tokio::select! {
        answer = answer => answer,
        () = trickle => panic!("the whole trickled body was read"),
    };
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(answer.starts_with("http/1.1 408"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    drop(stream);
    // Its slot is free again: with the first connection still held, the peer's second
    // is served.
    assert!(served_soon("127.0.0.1", addr).await, "the slot came back");
}

/// The limits are settings with defaults that configuration loading (and so
/// `palyrad check-config`) validates.
#[test]
fn the_limits_are_validated() {
    let s = palyra::settings::Settings::defaults();
    assert_eq!(s.server.max_connections_per_peer, 64);
    assert_eq!(s.server.max_connections_per_loopback_peer, 1024);
    assert_eq!(s.server.loopback_reserved_connections, 256);
    assert_eq!(s.server.body_read_timeout_s, 30);
    let load = |key: &str, value: &str| {
        palyra::settings::Settings::load(
            None,
            [(format!("PALYRA_SERVER__{key}"), value.to_owned())],
            &palyra::settings::Overrides::default(),
        )
    };
    for (key, bad) in [
        ("MAX_CONNECTIONS_PER_PEER", "0"),
        ("MAX_CONNECTIONS_PER_PEER", "5000"),
        ("MAX_CONNECTIONS_PER_LOOPBACK_PEER", "0"),
        ("LOOPBACK_RESERVED_CONNECTIONS", "4096"),
        ("BODY_READ_TIMEOUT_S", "0"),
    ] {
        let error = load(key, bad).unwrap_err().to_string();
        assert!(error.contains(&key.to_lowercase()), "{key}={bad}: {error}");
    }
    let good = load("BODY_READ_TIMEOUT_S", "5").unwrap();
    assert_eq!(good.server.body_read_timeout_s, 5);
}
