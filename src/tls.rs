//! HTTPS: the certificate and key from `[tls]` (served by [`crate::serve`]).

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// A loaded certificate chain and key.
#[derive(Clone)]
pub struct TlsMaterial {
    pub acceptor: TlsAcceptor,
    /// When the leaf certificate expires.
    pub not_after: Option<DateTime<Utc>>,
    /// `sha256:<hex>` of the leaf certificate (DER), logged at start so an operator
    /// can check or pin what clients will see.
    pub fingerprint: String,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("not_after", &self.not_after)
            .field("fingerprint", &self.fingerprint)
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
    let fingerprint = {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(leaf.as_ref());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    };
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
    tracing::info!(%fingerprint, cert = %cert_path.display(), "TLS certificate loaded");
    Ok(TlsMaterial {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        not_after,
        fingerprint,
    })
}
