//! Connecting to PostgreSQL: the client configuration, TLS (rustls with ring), and the
//! classification of what went wrong, in messages that never hold the password.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{PostgresConfig, SslMode};
use crate::error::{ConnectFailure, StorageError};

/// Everything needed to open a connection, shared by the pool and the writer.
#[derive(Clone)]
pub(crate) struct Connector {
    pub(crate) config: Arc<PostgresConfig>,
    pub(crate) pg: tokio_postgres::Config,
    pub(crate) tls: MakeRustlsConnect,
}

/// `palyrad/<node id>`, cut to PostgreSQL's 63 bytes.
fn application_name(node_id: &str) -> String {
    let mut name = if node_id.is_empty() {
        "palyrad".to_owned()
    } else {
        format!("palyrad/{node_id}")
    };
    while name.len() > 63 {
        name.pop();
    }
    name
}

impl Connector {
    pub(crate) fn new(config: &PostgresConfig) -> Result<Self, StorageError> {
        let mut pg = tokio_postgres::Config::new();
        pg.host(&config.host)
            .port(config.port)
            .dbname(&config.database)
            .user(&config.user)
            .application_name(application_name(&config.node_id))
            .connect_timeout(config.connect_timeout)
            // A server that vanished without closing the socket is noticed.
            .keepalives_idle(std::time::Duration::from_secs(10))
            .options(format!(
                "-c statement_timeout={} -c lock_timeout={}",
                config.statement_timeout.as_millis(),
                config.statement_timeout.as_millis()
            ));
        if let Some(password) = &config.password {
            pg.password(password.expose());
        }
        pg.ssl_mode(match config.ssl_mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Require | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
        });
        let tls = MakeRustlsConnect::new(tls_config(config)?);
        Ok(Self {
            config: Arc::new(config.clone()),
            pg,
            tls,
        })
    }

    /// One connection attempt, bounded by `connect_timeout`. The connection's task
    /// runs on the caller's runtime.
    pub(crate) async fn connect(&self) -> Result<Client, StorageError> {
        let attempt = self.pg.connect(self.tls.clone());
        let (client, connection) =
            match tokio::time::timeout(self.config.connect_timeout, attempt).await {
                Ok(Ok(pair)) => pair,
                Ok(Err(e)) => return Err(self.connect_error(&e)),
                Err(_) => {
                    return Err(StorageError::Connect {
                        target: self.config.describe(),
                        failure: ConnectFailure::Unreachable,
                        detail: "connection attempt timed out".into(),
                    });
                }
            };
        tokio::spawn(async move {
            // Errors surface on the client's next call as a closed connection.
            let _ = connection.await;
        });
        Ok(client)
    }

    /// A failure to connect, classified, naming host, port and database only.
    pub(crate) fn connect_error(&self, e: &tokio_postgres::Error) -> StorageError {
        StorageError::Connect {
            target: self.config.describe(),
            failure: classify(e),
            detail: self.detail(e),
        }
    }

    /// A failure while connected: the connection is gone or the server is going away.
    pub(crate) fn unavailable(&self, reason: impl std::fmt::Display) -> StorageError {
        StorageError::Unavailable {
            target: self.config.describe(),
            reason: self.config.scrub(reason.to_string()),
        }
    }

    /// The error's text and its causes, without the password.
    pub(crate) fn detail(&self, e: &tokio_postgres::Error) -> String {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            let more = s.to_string();
            if !text.contains(&more) {
                text.push_str(": ");
                text.push_str(&more);
            }
            source = s.source();
        }
        self.config.scrub(text)
    }
}

/// True when `e` means the database cannot serve us right now, as opposed to one
/// statement failing on a healthy server: the connection is dropped (and made again),
/// and callers get `Unavailable` (503), never a 500.
pub(crate) fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // Class 08 (connection exception), 57P01-57P03 (shutdown, crash, starting up),
        // 57014 (a statement timed out: the server stalls), 25006 (read-only: a replica
        // after a failover), class 53 (out of resources), 40001/40P01 (serialization
        // failure, deadlock: retry later).
        Some(code) => {
            let c = code.code();
            c.starts_with("08")
                || c.starts_with("53")
                || matches!(
                    c,
                    "57P01" | "57P02" | "57P03" | "57014" | "25006" | "40001" | "40P01"
                )
        }
        // No server answer at all: an I/O error on the socket.
        None => true,
    }
}

fn classify(e: &tokio_postgres::Error) -> ConnectFailure {
    if let Some(code) = e.code() {
        return if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            ConnectFailure::AuthenticationFailed
        } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            ConnectFailure::MissingPrivileges
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            ConnectFailure::UnknownDatabase
        } else if code.code().starts_with("08") || code.code().starts_with("57P") {
            ConnectFailure::Unreachable
        } else {
            ConnectFailure::Other
        };
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<rustls::Error>().is_some() {
            return ConnectFailure::Tls;
        }
        source = s.source();
    }
    if e.to_string().to_ascii_lowercase().contains("tls") {
        return ConnectFailure::Tls;
    }
    ConnectFailure::Unreachable
}

/// The classification of an error met while preparing the schema (privileges).
pub(crate) fn classify_setup(e: &tokio_postgres::Error) -> ConnectFailure {
    classify(e)
}

fn tls_config(config: &PostgresConfig) -> Result<rustls::ClientConfig, StorageError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| StorageError::Config(format!("TLS: {e}")))?;
    Ok(match config.ssl_mode {
        // Never used with sslmode disable (tokio-postgres does not start TLS), but the
        // connector type is the same for every mode.
        SslMode::Disable | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
        SslMode::VerifyFull => {
            let path = config.ca_file.as_ref().ok_or_else(|| {
                StorageError::Config("sslmode verify-full needs a ca_file".into())
            })?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| StorageError::Config(format!("ca_file {}: {e}", path.display())))?
            {
                let cert = cert.map_err(|e| {
                    StorageError::Config(format!("ca_file {}: {e}", path.display()))
                })?;
                roots.add(cert).map_err(|e| {
                    StorageError::Config(format!("ca_file {}: {e}", path.display()))
                })?;
            }
            if roots.is_empty() {
                return Err(StorageError::Config(format!(
                    "ca_file {} holds no certificate",
                    path.display()
                )));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    })
}

/// `sslmode=require`: encrypt, but accept any certificate, as libpq does. The
/// handshake's signatures are still checked, so the session key is the server's.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
