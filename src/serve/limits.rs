//! What one peer may hold of a listener: a cap on its open connections, capacity kept
//! for loopback peers, and a deadline for each request's body.
//!
//! The listener's own cap ([`super::MAX_CONNECTIONS`]) keeps the daemon's memory
//! bounded, but alone it lets one remote address take every slot (connections opened
//! and left idle, or bodies sent a byte at a time) so that nobody else, not even the
//! CLI on the host, gets in. So each peer (an IPv4 address, an IPv6 /64 as the throttle
//! counts it) may hold at most `server.max_connections_per_peer` connections (a
//! loopback address `server.max_connections_per_loopback_peer`, more: the CLI, a local
//! browser and benchmarks are the host's own), remote peers together never take the
//! last `server.loopback_reserved_connections` slots,
//! and a request's body must arrive whole within `server.body_read_timeout_s` of its
//! headers, else 408 and the connection closes.

use std::collections::HashMap;
use std::future::Future as _;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use palyra_http::extract::BodyReadTimeout;
use palyra_http::request::peer_key;

use crate::settings::ServerSettings;

/// The per-peer limits of a listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most connections one remote peer may hold open at once.
    pub per_peer: usize,
    /// The same for one loopback address.
    pub per_loopback_peer: usize,
    /// Slots of the listener only loopback peers may take.
    pub loopback_reserved: usize,
    /// Longest a request's body may take to arrive after its headers.
    pub body_read_timeout: Duration,
}

impl Limits {
    pub fn from_settings(server: &ServerSettings) -> Self {
        Self {
            per_peer: server.max_connections_per_peer,
            per_loopback_peer: server.max_connections_per_loopback_peer,
            loopback_reserved: server.loopback_reserved_connections,
            body_read_timeout: Duration::from_secs(server.body_read_timeout_s),
        }
    }
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The peer already holds its cap of connections.
    PeerFull,
    /// No slot this peer may take: only loopback's reserve is left (a remote peer), or
    /// none at all.
    NoRoom,
}

/// The connections open on one listener, by peer.
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    /// Most connections of the listener.
    max: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_peer: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it frees its slots.
#[derive(Debug)]
pub struct Admitted {
    admission: Arc<Admission>,
    key: IpAddr,
}

impl Admission {
    pub fn new(limits: Limits, max: usize) -> Arc<Self> {
        Arc::new(Self {
            limits,
            max,
            open: Mutex::new(Open::default()),
        })
    }

    /// Admits a connection from `peer`, or says why not.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admitted, Refusal> {
        let key = peer_key(peer);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let (room, cap) = if peer.is_loopback() {
            (self.max, self.limits.per_loopback_peer)
        } else {
            (
                self.max.saturating_sub(self.limits.loopback_reserved),
                self.limits.per_peer,
            )
        };
        if open.total >= room {
            return Err(Refusal::NoRoom);
        }
        let held = open.by_peer.entry(key).or_default();
        if *held >= cap {
            return Err(Refusal::PeerFull);
        }
        *held += 1;
        open.total += 1;
        Ok(Admitted {
            admission: Arc::clone(self),
            key,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self
            .admission
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(held) = open.by_peer.get_mut(&self.key) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                open.by_peer.remove(&self.key);
            }
        }
    }
}

/// A request body that fails with [`BodyReadTimeout`] once its deadline passes: the
/// whole body, not each chunk, so a body trickled a byte at a time is cut off too.
#[derive(Debug)]
pub struct TimedBody<B> {
    inner: B,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timed_out: bool,
}

impl<B> TimedBody<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timed_out: false,
        }
    }
}

/// The error of a [`TimedBody`]: its inner body's, or the deadline's.
pub type TimedBodyError = Box<dyn std::error::Error + Send + Sync>;

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<TimedBodyError>,
{
    type Data = Bytes;
    type Error = TimedBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.timed_out {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.timed_out = true;
                    Poll::Ready(Some(Err(Box::new(BodyReadTimeout))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.timed_out || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(per_peer: usize, reserved: usize, max: usize) -> Arc<Admission> {
        Admission::new(
            Limits {
                per_peer,
                per_loopback_peer: 2,
                loopback_reserved: reserved,
                body_read_timeout: Duration::from_secs(1),
            },
            max,
        )
    }

    #[test]
    fn a_peer_holds_at_most_its_cap_and_gets_a_slot_back_when_one_closes() {
        let admission = admission(2, 0, 100);
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        let a = admission.admit(peer).unwrap();
        let _b = admission.admit(peer).unwrap();
        assert_eq!(admission.admit(peer).unwrap_err(), Refusal::PeerFull);
        assert!(admission.admit("192.0.2.2".parse().unwrap()).is_ok());
        drop(a);
        assert!(admission.admit(peer).is_ok());
    }

    #[test]
    fn a_loopback_address_has_its_own_cap() {
        let admission = admission(1, 0, 100);
        let remote: IpAddr = "192.0.2.1".parse().unwrap();
        let _r = admission.admit(remote).unwrap();
        assert_eq!(admission.admit(remote).unwrap_err(), Refusal::PeerFull);
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let _l1 = admission.admit(loopback).unwrap();
        let _l2 = admission.admit(loopback).unwrap();
        assert_eq!(admission.admit(loopback).unwrap_err(), Refusal::PeerFull);
    }

    #[test]
    fn an_ipv6_host_counts_as_its_64() {
        let admission = admission(1, 0, 100);
        let _a = admission.admit("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert_eq!(
            admission
                .admit("2001:db8:1:2::ffff".parse().unwrap())
                .unwrap_err(),
            Refusal::PeerFull
        );
        assert!(admission.admit("2001:db8:1:3::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn remote_peers_leave_the_reserve_to_loopback() {
        let admission = admission(100, 2, 4);
        let _held: Vec<_> = (1..=2)
            .map(|i| {
                admission
                    .admit(format!("192.0.2.{i}").parse().unwrap())
                    .unwrap()
            })
            .collect();
        assert_eq!(
            admission.admit("192.0.2.9".parse().unwrap()).unwrap_err(),
            Refusal::NoRoom
        );
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let _l1 = admission.admit(loopback).unwrap();
        let _l2 = admission.admit(loopback).unwrap();
        assert_eq!(
            admission.admit(loopback).unwrap_err(),
            Refusal::NoRoom,
            "the listener is full"
        );
    }
}
