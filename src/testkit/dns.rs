//! A tiny DNS server on a loopback UDP port: it answers A queries for one name from a
//! script (the first answer to the first query, the second to the next, the last one
//! from then on, each with TTL 0), answers every other question with no record, and
//! counts the A queries it got. Enough to play a rebinding domain to the daemon's
//! resolver (`browser.dns_servers`).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A running server; it stops when dropped.
#[derive(Debug)]
pub struct FakeDns {
    pub addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeDns {
    /// Serves `name` (lowercase, without the final dot) with `script` in turn.
    pub async fn start(name: &str, script: Vec<Ipv4Addr>) -> Self {
        assert!(!script.is_empty(), "a script of at least one answer");
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("a UDP port on loopback");
        let addr = socket.local_addr().expect("its address");
        let queries = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&queries);
        let name = name.to_ascii_lowercase();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                let Some(query) = parse_query(&buf[..len]) else {
                    continue;
                };
                let answer = if query.qtype == 1 && query.name == name {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    Some(script[n.min(script.len() - 1)])
                } else {
                    None
                };
                let reply = build_reply(&buf[..len], &query, answer);
                let _ = socket.send_to(&reply, peer).await;
            }
        });
        Self {
            addr,
            queries,
            task,
        }
    }

    /// A queries for the scripted name so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

struct Query {
    name: String,
    qtype: u16,
    /// Where the question ends in the message.
    question_end: usize,
}

fn parse_query(message: &[u8]) -> Option<Query> {
    if message.len() < 12 || u16::from_be_bytes([message[4], message[5]]) != 1 {
        return None;
    }
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*message.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(message.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*message.get(at)?, *message.get(at + 1)?]);
    Some(Query {
        name: labels.join("."),
        qtype,
        question_end: at + 4,
    })
}

fn build_reply(message: &[u8], query: &Query, answer: Option<Ipv4Addr>) -> Vec<u8> {
    let mut reply = Vec::with_capacity(query.question_end + 16);
    reply.extend_from_slice(&message[..2]);
    // A response, recursion desired and available, no error.
    reply.extend_from_slice(&[0x81, 0x80]);
    reply.extend_from_slice(&1u16.to_be_bytes());
    reply.extend_from_slice(&u16::from(answer.is_some()).to_be_bytes());
    reply.extend_from_slice(&[0, 0, 0, 0]);
    reply.extend_from_slice(&message[12..query.question_end]);
    if let Some(ip) = answer {
        // The name as a pointer to the question's, type A, class IN, TTL 0.
        reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
        reply.extend_from_slice(&ip.octets());
    }
    reply
}
