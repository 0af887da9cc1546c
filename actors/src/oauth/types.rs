//! The types of OAuth that the other files of `oauth/` share: a provider's OAuth
//! settings, its client authentication and token body format, and the error of a
//! step. A file of their own, so the request code and the flows import them without
//! importing each other.

use serde::Deserialize;

use crate::secret::SecretString;

/// The most a token endpoint's answer may hold. Real answers are a few kilobytes (an
/// ID token included); a larger one is refused rather than read into memory.
pub const TOKEN_ANSWER_CAP_BYTES: usize = 256 * 1024;

/// How the daemon authenticates itself at the token and revocation endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// A public client: `client_id` in the body, no secret (RFC 6749 section 2.1).
    #[default]
    None,
    /// HTTP Basic with the form-encoded id and secret (RFC 6749 section 2.3.1).
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the body.
    ClientSecretPost,
}

/// The body of a token request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenRequestFormat {
    /// `application/x-www-form-urlencoded` (RFC 6749).
    #[default]
    Form,
    /// `application/json`, for providers that take nothing else.
    Json,
}

/// Parameters of the authorization request the daemon sets itself; a provider's
/// `authorization_params` may not override them.
pub const RESERVED_AUTHORIZATION_PARAMS: [&str; 9] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "audience",
    "resource",
];

/// OAuth settings of one provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthSettings {
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub revocation_endpoint: Option<String>,
    /// RFC 8628 device authorization, for sign-in without a browser on this host.
    pub device_authorization_endpoint: Option<String>,
    pub client_id: String,
    /// How the daemon authenticates at the token and revocation endpoints.
    pub client_auth: ClientAuth,
    /// The client secret (`client_secret_basic` / `client_secret_post`). Always `None`
    /// in the provider directory: the secret lives only in the vault, and is filled in
    /// on the copy one request is made with (`RegistryHandle::oauth_client`), which
    /// zeroizes it when dropped. Its `Debug` is redacted; it is never logged.
    pub client_secret: Option<SecretString>,
    /// The config names `client_secret_env` or `client_secret_file`: the secret is
    /// sealed from there at start, so that is where it changes (the route refuses).
    pub client_secret_from_config: bool,
    /// Form (RFC 6749) or JSON token request bodies.
    pub token_request_format: TokenRequestFormat,
    pub scopes: Vec<String>,
    /// Extra authorization request parameters (`access_type = "offline"`, ...).
    pub authorization_params: Vec<(String, String)>,
    /// `audience` of the authorization request (Auth0 and others).
    pub audience: Option<String>,
    /// RFC 8707 `resource`, at the authorization and token endpoints.
    pub resource: Option<String>,
    /// The `iss` the callback must carry when the provider sends one (RFC 9207).
    pub issuer: String,
    /// Check a new access token with `GET {api_base_url}/v1/models`.
    pub validate_with_models: bool,
    /// Backoff of transient refresh failures.
    pub backoff_base_ms: u64,
    pub backoff_cap_ms: u64,
}

impl OAuthSettings {
    /// The issuer a provider's callback must name when it names one: the configured
    /// `issuer`, or else the origin of the authorization endpoint (which is the issuer
    /// of most providers).
    pub fn default_issuer(authorization_endpoint: &str) -> String {
        url::Url::parse(authorization_endpoint)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default()
    }
}

/// Why an OAuth step failed. Messages never carry tokens, codes, verifiers or secrets.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OAuthError {
    #[error("OAuth configuration: {0}")]
    Config(String),
    #[error("the token endpoint could not be reached: {0}")]
    Network(String),
    #[error("the token endpoint answered HTTP {status}{}", error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default())]
    Rejected { status: u16, error: Option<String> },
    #[error("the token endpoint answered without {0}")]
    Incomplete(&'static str),
    #[error("the token endpoint's answer is larger than {} KiB", TOKEN_ANSWER_CAP_BYTES / 1024)]
    TooLarge,
    /// The provider's client authentication needs a secret and the vault holds none:
    /// nothing was sent. A refresh waits for it rather than giving the tokens up.
    #[error(
        "the provider's client authentication needs a client secret and none is set (palyra auth client-secret set PROVIDER, or client_secret_env)"
    )]
    NoClientSecret,
}
