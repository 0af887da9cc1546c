//! The typed client's operator, token and password-login calls
//! (`/console/v1/operators`, `/console/v1/tokens`, `/console/v1/auth/login`), and the
//! plain naming of TLS failures (reqwest says only "error sending request").

use palyra_actors::SecretString;
use palyra_actors::operators::{ApiToken, Operator};
use reqwest::Method;
use serde::Deserialize;

use super::{ClientError, ClientSession, ControlPlaneClient, path_segment, session_cookie};

/// `GET /console/v1/operators`.
#[derive(Debug, Deserialize)]
pub struct OperatorList {
    pub operators: Vec<Operator>,
}

/// `GET /console/v1/tokens`.
#[derive(Debug, Deserialize)]
pub struct TokenList {
    pub tokens: Vec<ApiToken>,
}

/// A token just minted: the secret, shown once, and its record.
#[derive(Deserialize)]
pub struct MintedToken {
    pub token: SecretString,
    #[serde(flatten)]
    pub view: ApiToken,
}

impl std::fmt::Debug for MintedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedToken")
            .field("token", &self.token)
            .field("view", &self.view)
            .finish()
    }
}

/// What `revoke-sessions` ended.
#[derive(Debug, Deserialize, serde::Serialize)]
pub struct Revoked {
    pub sessions_revoked: usize,
    pub tokens_revoked: usize,
}

impl ControlPlaneClient {
    /// Logs in as an operator with their password; returns the cookie and session.
    pub async fn login_operator(
        &self,
        operator_id: &str,
        password: &SecretString,
        device_id: Option<&str>,
    ) -> Result<ClientSession, ClientError> {
        let body = serde_json::json!({
            "operator_id": operator_id,
            "password": password.expose(),
            "device_id": device_id,
        });
        let response = self
            .send(
                self.http
                    .post(self.url("/console/v1/auth/login"))
                    .json(&body),
            )
            .await?;
        let (cookie_name, cookie) = session_cookie(&response)?;
        let session = self.json(response).await?;
        Ok(ClientSession {
            cookie_name,
            cookie,
            session,
        })
    }

    /// `GET /console/v1/operators`.
    pub async fn list_operators(&self) -> Result<OperatorList, ClientError> {
        self.call(Method::GET, "/console/v1/operators", None).await
    }

    /// `GET /console/v1/operators/{id}`.
    pub async fn get_operator(&self, id: &str) -> Result<Operator, ClientError> {
        let path = format!("/console/v1/operators/{}", path_segment(id));
        self.call(Method::GET, &path, None).await
    }

    /// `POST /console/v1/operators`.
    pub async fn create_operator(&self, body: serde_json::Value) -> Result<Operator, ClientError> {
        self.call(Method::POST, "/console/v1/operators", Some(body))
            .await
    }

    /// `PATCH /console/v1/operators/{id}`.
    pub async fn update_operator(
        &self,
        id: &str,
        patch: serde_json::Value,
    ) -> Result<Operator, ClientError> {
        let path = format!("/console/v1/operators/{}", path_segment(id));
        self.call(Method::PATCH, &path, Some(patch)).await
    }

    /// `DELETE /console/v1/operators/{id}`.
    pub async fn delete_operator(&self, id: &str) -> Result<(), ClientError> {
        let path = format!("/console/v1/operators/{}", path_segment(id));
        self.call_no_content(Method::DELETE, &path).await
    }

    /// `POST /console/v1/operators/{id}/revoke-sessions`.
    pub async fn revoke_operator_sessions(&self, id: &str) -> Result<Revoked, ClientError> {
        let path = format!("/console/v1/operators/{}/revoke-sessions", path_segment(id));
        self.call(Method::POST, &path, None).await
    }

    /// `POST /console/v1/operators/{id}/tokens`.
    pub async fn create_token(
        &self,
        operator_id: &str,
        body: serde_json::Value,
    ) -> Result<MintedToken, ClientError> {
        let path = format!("/console/v1/operators/{}/tokens", path_segment(operator_id));
        self.call(Method::POST, &path, Some(body)).await
    }

    /// `GET /console/v1/tokens`.
    pub async fn list_tokens(&self, operator_id: Option<&str>) -> Result<TokenList, ClientError> {
        let path = match operator_id {
            Some(id) => format!("/console/v1/tokens?operator_id={}", path_segment(id)),
            None => "/console/v1/tokens".to_owned(),
        };
        self.call(Method::GET, &path, None).await
    }

    /// `DELETE /console/v1/tokens/{id}`.
    pub async fn revoke_token(&self, token_id: &str) -> Result<(), ClientError> {
        let path = format!("/console/v1/tokens/{}", path_segment(token_id));
        self.call_no_content(Method::DELETE, &path).await
    }
}

/// What went wrong in a TLS handshake, in an operator's words, when the cause of a
/// transport error is a certificate the client refused.
pub(super) fn tls_problem(error: &reqwest::Error) -> Option<String> {
    use rustls::CertificateError as C;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        let rustls_error = e.downcast_ref::<rustls::Error>();
        if let Some(rustls::Error::InvalidCertificate(cert)) = rustls_error {
            return Some(match cert {
                C::UnknownIssuer => "the daemon's certificate is not trusted (unknown issuer): \
                    pass it, or the CA that signed it, with --ca-cert, or pin it with \
                    --tls-pin sha256:... (palyrad logs the fingerprint at start)"
                    .to_owned(),
                C::Expired | C::ExpiredContext { .. } => {
                    "the daemon's certificate has expired".to_owned()
                }
                C::NotValidYet | C::NotValidYetContext { .. } => {
                    "the daemon's certificate is not valid yet (check both clocks)".to_owned()
                }
                C::NotValidForName | C::NotValidForNameContext { .. } => {
                    "the daemon's certificate is not valid for the host name in --url \
                     (its subject alternative names do not include it)"
                        .to_owned()
                }
                C::Other(other) if other.0.downcast_ref::<super::pin::PinMismatch>().is_some() => {
                    other.0.to_string()
                }
                other if format!("{other:?}").contains("CaUsedAsEndEntity") => {
                    "the daemon serves a CA certificate (CA:TRUE) as its own, which TLS \
                     clients like this one refuse: make one with `palyrad tls self-signed` \
                     (see the README's Deployment section)"
                        .to_owned()
                }
                other => format!("the daemon's certificate was refused: {other:?}"),
            });
        }
        // An io::Error's `source` skips the error it wraps: step into it instead.
        cause = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}
