//! The accept loop of every listener (the API, over TLS or not, and the metrics
//! listener): HTTP/1.1 through hyper, with limits that `axum::serve` does not set.
//!
//! - At most [`MAX_CONNECTIONS`] connections at once; beyond that, new ones wait in
//!   the kernel's backlog instead of costing memory.
//! - Per peer, at most `server.max_connections_per_peer` of them, and remote peers
//!   never take the last `server.loopback_reserved_connections` ([`limits`]).
//! - A TLS handshake must finish within [`HANDSHAKE_TIMEOUT`], a request's headers
//!   must arrive within [`HEADER_TIMEOUT`], and its body within
//!   `server.body_read_timeout_s` (408), so slow clients cannot hold connections.
//! - On `stop` the listener closes, idle keep-alive connections close, and requests
//!   in flight finish (the caller bounds the wait).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::{Service, ServiceExt};

pub mod limits;

pub use limits::Limits;

/// Most connections open at once on one listener.
pub const MAX_CONNECTIONS: usize = 4096;
/// Longest a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the headers of a request may take to arrive.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// A bound socket and the per-peer limits it is served with.
#[derive(Debug)]
pub struct Listener {
    socket: TcpListener,
    limits: Limits,
}

impl Listener {
    pub fn new(socket: TcpListener, limits: Limits) -> Self {
        Self { socket, limits }
    }
}

/// Serves `router` on `listener` (over TLS when `tls` is given) until `stop`
/// resolves, then waits for the connections' requests in flight.
pub async fn serve(
    listener: Listener,
    tls: Option<TlsAcceptor>,
    router: Router,
    stop: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let Listener {
        socket: listener,
        limits,
    } = listener;
    let mut make_service = router.into_make_service_with_connect_info::<SocketAddr>();
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let admission = limits::Admission::new(limits, MAX_CONNECTIONS);
    tokio::pin!(stop);
    loop {
        let slot = tokio::select! {
            () = &mut stop => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the others.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let admitted = match admission.admit(peer.ip()) {
            Ok(admitted) => admitted,
            Err(why) => {
                // Closed at once: the peer holds its share, or only loopback's is left.
                tracing::debug!(%peer, ?why, "connection refused");
                continue;
            }
        };
        let Ok(service) = make_service.call(peer).await;
        let timeout = limits.body_read_timeout;
        let service = TowerToHyperService::new(service.map_request(
            move |req: hyper::Request<hyper::body::Incoming>| {
                req.map(|body| axum::body::Body::new(limits::TimedBody::new(body, timeout)))
            },
        ));
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slots = (slot, admitted);
            match tls {
                None => connection(stream, service, watcher, peer).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => connection(stream, service, watcher, peer).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// One connection, until the client closes it or the server stops.
async fn connection<I, S>(io: I, service: S, watcher: Watcher, peer: SocketAddr)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    tracing::trace!(%peer, "connection open");
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), service);
    match watcher.watch(conn).await {
        Ok(()) => tracing::trace!(%peer, "connection closed"),
        Err(e) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
    }
}
