//! HTTPS: the certificate and key from `[tls]`, and the accept loop that serves the
//! router over rustls (HTTP/1.1), with the same graceful shutdown as plain HTTP.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use chrono::{DateTime, Utc};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::Service;

/// Most TLS connections open at once (each is a task and a TLS state).
const MAX_CONNECTIONS: usize = 4096;

/// A loaded certificate chain and key.
#[derive(Clone)]
pub struct TlsMaterial {
    pub acceptor: TlsAcceptor,
    /// When the leaf certificate expires.
    pub not_after: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Reads a PEM certificate chain and private key. The error names the file and the
/// problem, never key material.
pub fn load(cert_path: &Path, key_path: &Path) -> Result<TlsMaterial, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| format!("tls.cert_path {}: {e}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.cert_path {}: {e}", cert_path.display()))?;
    let Some(leaf) = certs.first() else {
        return Err(format!(
            "tls.cert_path {}: no certificate in the file",
            cert_path.display()
        ));
    };
    let not_after = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| format!("tls.cert_path {}: {e}", cert_path.display()))?
        .1
        .validity()
        .not_after
        .timestamp();
    let not_after = DateTime::from_timestamp(not_after, 0);
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
        format!(
            "tls.key_path {}: no usable private key ({e})",
            key_path.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls: the certificate and key do not fit together: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsMaterial {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        not_after,
    })
}

/// Serves `router` over TLS on `listener` until `stop` resolves, then waits for open
/// connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    stop: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let mut make_service = router.into_make_service_with_connect_info::<SocketAddr>();
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(stop);
    loop {
        // At the cap, the next connection waits in the kernel's backlog, not in memory.
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
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(service) = make_service.call(peer).await;
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            // A handshake that stalls must not hold a task forever.
            let handshake =
                tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(stream))
                    .await;
            let stream = match handshake {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
