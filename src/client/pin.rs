//! Certificate pinning for the CLI (`palyra --tls-pin sha256:...`): the daemon is
//! trusted when the certificate it serves is exactly the one whose SHA-256 fingerprint
//! the operator copied from the daemon's start log (or from `palyrad tls self-signed`),
//! instead of through a CA certificate file (`--ca-cert`).
//!
//! The pinned certificate is the whole trust: its issuer, names and dates are not
//! checked (there is no CA to vouch for them, and the operator vouched for this exact
//! certificate). The handshake's signatures still are, so only the holder of the
//! certificate's key can answer.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use sha2::Digest;

use crate::client::ClientError;

/// A parsed `sha256:<64 hex digits>` pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPin([u8; 32]);

impl TlsPin {
    /// Reads `sha256:<hex>` as the daemon logs it; colons between the bytes (as
    /// `openssl x509 -fingerprint` prints them) and either case are accepted.
    pub fn parse(text: &str) -> Result<Self, ClientError> {
        let malformed = || {
            ClientError::Protocol(
                "--tls-pin must be sha256: and the 64 hex digits of the certificate's SHA-256 \
                 fingerprint, as palyrad logs it at start"
                    .to_owned(),
            )
        };
        let (scheme, hex) = text.trim().split_once(':').ok_or_else(malformed)?;
        if !scheme.eq_ignore_ascii_case("sha256") {
            return Err(malformed());
        }
        let hex: String = hex.chars().filter(|c| *c != ':').collect();
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(malformed());
        }
        let mut digest = [0u8; 32];
        for (i, byte) in digest.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| malformed())?;
        }
        Ok(Self(digest))
    }
}

/// The fingerprint of a certificate as the daemon logs it.
pub fn fingerprint(cert: &[u8]) -> String {
    let digest = sha2::Sha256::digest(cert);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A certificate that is not the pinned one; its fingerprint, for the message.
#[derive(Debug, thiserror::Error)]
#[error("the daemon's certificate ({presented}) is not the one --tls-pin names")]
pub struct PinMismatch {
    pub presented: String,
}

/// Accepts the pinned certificate only, with valid handshake signatures.
#[derive(Debug)]
struct PinnedVerifier {
    pin: TlsPin,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest: [u8; 32] = sha2::Sha256::digest(end_entity.as_ref()).into();
        if digest == self.pin.0 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(PinMismatch {
                    presented: fingerprint(end_entity.as_ref()),
                })),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS configuration that trusts exactly the pinned certificate.
pub fn pinned_config(pin: TlsPin) -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedVerifier {
        pin,
        provider: Arc::clone(&provider),
    });
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Protocol(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_read_as_the_daemon_prints_them() {
        let printed = fingerprint(b"a certificate");
        let pin = TlsPin::parse(&printed).unwrap();
        assert_eq!(
            pin.0,
            <[u8; 32]>::from(sha2::Sha256::digest(b"a certificate"))
        );
        let openssl_style = printed
            .trim_start_matches("sha256:")
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(
            TlsPin::parse(&format!("SHA256:{openssl_style}")).unwrap(),
            pin
        );
        for bad in ["", "sha256:", "sha1:00", "sha256:zz", &printed[..70], "abc"] {
            assert!(TlsPin::parse(bad).is_err(), "{bad:?}");
        }
    }
}
