//! OAuth 2.0 primitives: PKCE (RFC 7636), the authorization URL, the code exchange,
//! the refresh grant with its outcome classification, and the backoff policy.
//!
//! Nothing here keeps state; the registry actor owns sign-in attempts and tokens, the
//! refresher actor decides when to refresh.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::{Rng, RngCore};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::outbound::OAUTH_TIMEOUT;
use crate::secret::SecretString;

/// OAuth settings of one provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthSettings {
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub revocation_endpoint: Option<String>,
    pub client_id: String,
    pub scopes: Vec<String>,
    /// Check a new access token with `GET {api_base_url}/v1/models`.
    pub validate_with_models: bool,
    /// Backoff of transient refresh failures.
    pub backoff_base_ms: u64,
    pub backoff_cap_ms: u64,
}

/// A fresh PKCE code verifier: 32 random bytes, base64url (43 unreserved characters).
pub fn generate_pkce_verifier() -> SecretString {
    crate::secret::random_token()
}

/// The S256 challenge of a verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A random `state` of 256 bits.
pub fn generate_state() -> SecretString {
    crate::secret::random_token()
}

/// The URL the operator's browser opens to sign in.
pub fn build_authorization_url(
    settings: &OAuthSettings,
    redirect_uri: &str,
    scopes: &[String],
    state: &str,
    challenge: &str,
) -> Result<String, OAuthError> {
    let mut url = url::Url::parse(&settings.authorization_endpoint)
        .map_err(|e| OAuthError::Config(format!("authorization_endpoint: {e}")))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &settings.client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", &scopes.join(" "))
        .append_pair("state", state)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256");
    Ok(url.into())
}

/// Tokens from a token endpoint.
#[derive(Debug)]
pub struct TokenSet {
    pub access_token: SecretString,
    /// Absent when the provider does not rotate refresh tokens on refresh.
    pub refresh_token: Option<SecretString>,
    /// Seconds from now.
    pub expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: SecretString,
    refresh_token: Option<SecretString>,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
}

/// Why an OAuth step failed. Messages never carry tokens, codes or verifiers.
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
}

fn network_error(e: reqwest::Error) -> OAuthError {
    OAuthError::Network(if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        e.without_url().to_string()
    })
}

/// Reads an error body's `error` field (`invalid_grant`, ...), sanitized to a short
/// token of safe characters so nothing echoed by a provider reaches a log.
async fn error_code(response: reqwest::Response) -> Option<String> {
    let text = response.text().await.ok()?;
    let parsed: ErrorResponse = serde_json::from_str(&text).ok()?;
    let clean: String = parsed
        .error
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(64)
        .collect();
    (!clean.is_empty()).then_some(clean)
}

/// Every OAuth request goes through here: on the daemon's one outbound client (which
/// follows no redirect), bounded by [`OAUTH_TIMEOUT`].
async fn post_form(
    http: &reqwest::Client,
    endpoint: &str,
    form: &[(&str, &str)],
) -> Result<reqwest::Response, OAuthError> {
    http.post(endpoint)
        .timeout(OAUTH_TIMEOUT)
        .header(reqwest::header::ACCEPT, "application/json")
        .form(form)
        .send()
        .await
        .map_err(network_error)
}

/// Exchanges an authorization code (form POST with the PKCE verifier). Requires both
/// an access and a refresh token.
pub async fn exchange_authorization_code(
    http: &reqwest::Client,
    settings: &OAuthSettings,
    code: &str,
    redirect_uri: &str,
    verifier: &SecretString,
) -> Result<TokenSet, OAuthError> {
    let response = post_form(
        http,
        &settings.token_endpoint,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", &settings.client_id),
            ("code_verifier", verifier.expose()),
        ],
    )
    .await?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(OAuthError::Rejected {
            status,
            error: error_code(response).await,
        });
    }
    let tokens: TokenResponse = response
        .json()
        .await
        .map_err(|_| OAuthError::Incomplete("a JSON token response"))?;
    if tokens.access_token.is_empty() {
        return Err(OAuthError::Incomplete("an access token"));
    }
    if tokens
        .refresh_token
        .as_ref()
        .is_none_or(SecretString::is_empty)
    {
        return Err(OAuthError::Incomplete("a refresh token"));
    }
    Ok(TokenSet {
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        expires_in: tokens.expires_in,
    })
}

/// What one refresh attempt came to (`OAuthRefreshOutcome`).
#[derive(Debug)]
pub enum OAuthRefreshOutcome {
    Success(TokenSet),
    /// Network failure, 5xx, 429: try again later (no sooner than `retry_after_s`).
    TransientFailure {
        reason: String,
        retry_after_s: Option<u64>,
    },
    /// invalid_grant, revoked, or another refusal: the operator must sign in again.
    PermanentFailure {
        reason: String,
    },
}

/// A provider's refresh grant. One adapter per provider; the standard one speaks
/// RFC 6749 section 6.
pub trait OAuthRefreshAdapter: Send + Sync {
    fn refresh<'a>(
        &'a self,
        settings: &'a OAuthSettings,
        refresh_token: &'a SecretString,
    ) -> std::pin::Pin<Box<dyn Future<Output = OAuthRefreshOutcome> + Send + 'a>>;
}

/// RFC 6749 refresh: `grant_type=refresh_token`, `refresh_token`, `client_id`.
#[derive(Debug, Clone)]
pub struct StandardRefreshAdapter {
    /// The daemon's one outbound client, so refreshes reuse its connections.
    http: reqwest::Client,
}

impl StandardRefreshAdapter {
    pub fn new(http: reqwest::Client) -> Self {
        Self { http }
    }
}

impl OAuthRefreshAdapter for StandardRefreshAdapter {
    fn refresh<'a>(
        &'a self,
        settings: &'a OAuthSettings,
        refresh_token: &'a SecretString,
    ) -> std::pin::Pin<Box<dyn Future<Output = OAuthRefreshOutcome> + Send + 'a>> {
        Box::pin(async move {
            let response = match post_form(
                &self.http,
                &settings.token_endpoint,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token.expose()),
                    ("client_id", &settings.client_id),
                ],
            )
            .await
            {
                Ok(r) => r,
                Err(e) => {
                    return OAuthRefreshOutcome::TransientFailure {
                        reason: e.to_string(),
                        retry_after_s: None,
                    };
                }
            };
            let status = response.status().as_u16();
            if (200..300).contains(&status) {
                return match response.json::<TokenResponse>().await {
                    Ok(t) if !t.access_token.is_empty() => OAuthRefreshOutcome::Success(TokenSet {
                        access_token: t.access_token,
                        // An empty rotated token is no rotation.
                        refresh_token: t.refresh_token.filter(|r| !r.is_empty()),
                        expires_in: t.expires_in,
                    }),
                    Ok(_) | Err(_) => OAuthRefreshOutcome::TransientFailure {
                        reason: "the token endpoint answered without an access token".into(),
                        retry_after_s: None,
                    },
                };
            }
            let retry_after_s = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let error = error_code(response).await;
            let reason = OAuthError::Rejected { status, error }.to_string();
            if status == 429 || status >= 500 || status == 408 {
                OAuthRefreshOutcome::TransientFailure {
                    reason,
                    retry_after_s,
                }
            } else {
                OAuthRefreshOutcome::PermanentFailure { reason }
            }
        })
    }
}

/// Revokes a token at the provider (RFC 7009); best effort.
pub async fn revoke_token(
    http: &reqwest::Client,
    endpoint: &str,
    client_id: &str,
    token: &SecretString,
) -> Result<(), OAuthError> {
    let response = post_form(
        http,
        endpoint,
        &[
            ("token", token.expose()),
            ("token_type_hint", "refresh_token"),
            ("client_id", client_id),
        ],
    )
    .await?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(OAuthError::Rejected {
            status,
            error: error_code(response).await,
        })
    }
}

/// Delay before retry `attempt` (1-based): exponential from the provider's base,
/// capped, with jitter in [50%, 100%] so many profiles do not retry in step.
pub fn compute_backoff_ms(settings: &OAuthSettings, attempt: u32) -> u64 {
    let exp = attempt.saturating_sub(1).min(32);
    let raw = settings
        .backoff_base_ms
        .saturating_mul(1u64 << exp)
        .min(settings.backoff_cap_ms);
    let low = raw / 2;
    if raw == low {
        return raw;
    }
    rand::rng().random_range(low..=raw)
}

/// A random id for sign-in attempts (not the state).
pub fn generate_attempt_id() -> String {
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    format!("att-{}", URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> OAuthSettings {
        OAuthSettings {
            authorization_endpoint: "https://auth.example/authorize".into(),
            token_endpoint: "https://auth.example/token".into(),
            revocation_endpoint: None,
            client_id: "client-1".into(),
            scopes: vec!["openid".into(), "offline_access".into()],
            validate_with_models: false,
            backoff_base_ms: 15_000,
            backoff_cap_ms: 300_000,
        }
    }

    #[test]
    fn pkce_matches_rfc_7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let verifier = generate_pkce_verifier();
        assert!(verifier.len() >= 43);
        assert!(
            verifier
                .expose()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        );
    }

    #[test]
    fn the_authorization_url_carries_pkce_and_state() {
        let url = build_authorization_url(
            &settings(),
            "http://127.0.0.1:1/cb",
            &settings().scopes,
            "st",
            "ch",
        )
        .unwrap();
        let parsed = url::Url::parse(&url).unwrap();
        let q: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["code_challenge"], "ch");
        assert_eq!(q["state"], "st");
        assert_eq!(q["scope"], "openid offline_access");
        assert_eq!(q["redirect_uri"], "http://127.0.0.1:1/cb");
    }

    #[test]
    fn backoff_grows_exponentially_with_jitter_up_to_the_cap() {
        let s = settings();
        for _ in 0..50 {
            let first = compute_backoff_ms(&s, 1);
            assert!((7_500..=15_000).contains(&first), "{first}");
            let third = compute_backoff_ms(&s, 3);
            assert!((30_000..=60_000).contains(&third), "{third}");
            let late = compute_backoff_ms(&s, 40);
            assert!((150_000..=300_000).contains(&late), "{late}");
        }
    }
}
