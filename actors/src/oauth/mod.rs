//! OAuth 2.0 primitives: PKCE (RFC 7636), the authorization URL (with OpenID Connect's
//! `prompt=consent` for `offline_access`), the code exchange, the refresh grant with
//! its outcome classification, revocation, and the backoff policy. How requests are
//! authenticated and encoded is in `token_request.rs`; the device grant in `device.rs`.
//!
//! Nothing here keeps state; the registry actor owns sign-in attempts and tokens, the
//! refresher actor decides when to refresh.

pub mod device;
pub mod token_request;
mod types;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::{Rng, RngCore};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::secret::SecretString;
pub use token_request::parse_retry_after;
use token_request::{Answer, Param};
pub use types::{
    ClientAuth, OAuthError, OAuthSettings, RESERVED_AUTHORIZATION_PARAMS, TOKEN_ANSWER_CAP_BYTES,
    TokenRequestFormat,
};

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

/// The URL the operator's browser opens to sign in. With `offline_access` among the
/// scopes it carries `prompt=consent`, without which OpenID Connect Core (section 11)
/// has the provider ignore `offline_access` and issue no refresh token; a `prompt`
/// in the provider's `authorization_params` is taken instead.
pub fn build_authorization_url(
    settings: &OAuthSettings,
    redirect_uri: &str,
    scopes: &[String],
    state: &str,
    challenge: &str,
) -> Result<String, OAuthError> {
    let mut url = url::Url::parse(&settings.authorization_endpoint)
        .map_err(|e| OAuthError::Config(format!("authorization_endpoint: {e}")))?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &settings.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &scopes.join(" "))
            .append_pair("state", state)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        let own_prompt = settings
            .authorization_params
            .iter()
            .any(|(k, _)| k == "prompt");
        if scopes.iter().any(|s| s == "offline_access") && !own_prompt {
            q.append_pair("prompt", "consent");
        }
        if let Some(audience) = &settings.audience {
            q.append_pair("audience", audience);
        }
        if let Some(resource) = &settings.resource {
            q.append_pair("resource", resource);
        }
        for (key, value) in &settings.authorization_params {
            q.append_pair(key, value);
        }
    }
    Ok(url.into())
}

/// Tokens from a token endpoint.
#[derive(Debug)]
pub struct TokenSet {
    pub access_token: SecretString,
    /// Absent when the provider issues none (no `offline_access`, or a provider that
    /// never does) or, on a refresh, does not rotate it.
    pub refresh_token: Option<SecretString>,
    /// Seconds from now; absent when the provider does not say.
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

/// A short token of safe characters from a provider's text, so nothing a provider
/// echoes reaches a log or a page unfiltered.
pub fn sanitize_code(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(64)
        .collect()
}

/// A provider's human-readable `error_description`: printable ASCII only, at most
/// 300 characters (RFC 6749 allows only printable ASCII there anyway).
pub fn sanitize_description(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(300)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Reads an error body's `error` field (`invalid_grant`, ...), sanitized.
fn error_code(body: &[u8]) -> Option<String> {
    let parsed: ErrorResponse = serde_json::from_slice(body).ok()?;
    let clean = sanitize_code(&parsed.error);
    (!clean.is_empty()).then_some(clean)
}

/// The tokens of a successful answer; an empty refresh token is none.
fn token_set(answer: &Answer) -> Result<TokenSet, OAuthError> {
    let tokens: TokenResponse = serde_json::from_slice(&answer.body)
        .map_err(|_| OAuthError::Incomplete("a JSON token response"))?;
    if tokens.access_token.is_empty() {
        return Err(OAuthError::Incomplete("an access token"));
    }
    Ok(TokenSet {
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token.filter(|r| !r.is_empty()),
        expires_in: tokens.expires_in,
    })
}

fn rejected(answer: &Answer) -> OAuthError {
    OAuthError::Rejected {
        status: answer.status,
        error: error_code(&answer.body),
    }
}

/// A token request in the provider's body format, with `resource` when configured
/// (RFC 8707 asks for it at the token endpoint too).
async fn token_request(
    http: &reqwest::Client,
    settings: &OAuthSettings,
    mut params: Vec<Param<'_>>,
) -> Result<Answer, OAuthError> {
    let resource = settings.resource.clone().unwrap_or_default();
    if !resource.is_empty() {
        params.push(Param::Plain("resource", &resource));
    }
    token_request::send(
        http,
        settings,
        &settings.token_endpoint,
        settings.token_request_format,
        &params,
    )
    .await
}

/// Exchanges an authorization code (with the PKCE verifier). A refresh token is
/// taken when the provider issues one; without it the profile is not refreshable.
pub async fn exchange_authorization_code(
    http: &reqwest::Client,
    settings: &OAuthSettings,
    code: &SecretString,
    redirect_uri: &str,
    verifier: &SecretString,
) -> Result<TokenSet, OAuthError> {
    let answer = token_request(
        http,
        settings,
        vec![
            Param::Plain("grant_type", "authorization_code"),
            Param::Secret("code", code),
            Param::Plain("redirect_uri", redirect_uri),
            Param::Secret("code_verifier", verifier),
        ],
    )
    .await?;
    if !(200..300).contains(&answer.status) {
        return Err(rejected(&answer));
    }
    token_set(&answer)
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
            let answer = match token_request(
                &self.http,
                settings,
                vec![
                    Param::Plain("grant_type", "refresh_token"),
                    Param::Secret("refresh_token", refresh_token),
                ],
            )
            .await
            {
                Ok(a) => a,
                Err(e @ OAuthError::Config(_)) => {
                    return OAuthRefreshOutcome::PermanentFailure {
                        reason: e.to_string(),
                    };
                }
                Err(e) => {
                    return OAuthRefreshOutcome::TransientFailure {
                        reason: e.to_string(),
                        retry_after_s: None,
                    };
                }
            };
            let status = answer.status;
            if (200..300).contains(&status) {
                return match token_set(&answer) {
                    Ok(tokens) => OAuthRefreshOutcome::Success(tokens),
                    Err(_) => OAuthRefreshOutcome::TransientFailure {
                        reason: "the token endpoint answered without an access token".into(),
                        retry_after_s: None,
                    },
                };
            }
            let reason = rejected(&answer).to_string();
            if status == 429 || status >= 500 || status == 408 {
                OAuthRefreshOutcome::TransientFailure {
                    reason,
                    retry_after_s: answer.retry_after_s,
                }
            } else {
                OAuthRefreshOutcome::PermanentFailure { reason }
            }
        })
    }
}

/// Revokes a token at the provider (RFC 7009, always a form); best effort.
pub async fn revoke_token(
    http: &reqwest::Client,
    settings: &OAuthSettings,
    endpoint: &str,
    token: &SecretString,
) -> Result<(), OAuthError> {
    let answer = token_request::send(
        http,
        settings,
        endpoint,
        TokenRequestFormat::Form,
        &[
            Param::Secret("token", token),
            Param::Plain("token_type_hint", "refresh_token"),
        ],
    )
    .await?;
    if (200..300).contains(&answer.status) {
        Ok(())
    } else {
        Err(rejected(&answer))
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
            device_authorization_endpoint: None,
            client_id: "client-1".into(),
            client_auth: ClientAuth::None,
            client_secret: None,
            client_secret_from_config: false,
            token_request_format: TokenRequestFormat::Form,
            scopes: vec!["openid".into(), "offline_access".into()],
            authorization_params: Vec::new(),
            audience: None,
            resource: None,
            issuer: "https://auth.example".into(),
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
        assert_eq!(
            q["prompt"], "consent",
            "offline_access needs prompt=consent"
        );
        assert!(!q.contains_key("audience") && !q.contains_key("resource"));
    }

    #[test]
    fn authorization_params_audience_and_resource_are_added() {
        let mut s = settings();
        s.authorization_params = vec![("access_type".into(), "offline".into())];
        s.audience = Some("https://api.example".into());
        s.resource = Some("https://api.example/v1".into());
        let url =
            build_authorization_url(&s, "http://127.0.0.1:1/cb", &s.scopes, "st", "ch").unwrap();
        let parsed = url::Url::parse(&url).unwrap();
        let q: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
        assert_eq!(q["access_type"], "offline");
        assert_eq!(q["audience"], "https://api.example");
        assert_eq!(q["resource"], "https://api.example/v1");
        assert_eq!(q["prompt"], "consent");
        // Without offline_access no prompt is forced; the operator's own prompt wins.
        let url =
            build_authorization_url(&s, "http://127.0.0.1:1/cb", &["openid".into()], "st", "ch")
                .unwrap();
        assert!(!url.contains("prompt="), "{url}");
        s.authorization_params
            .push(("prompt".into(), "login consent".into()));
        let url =
            build_authorization_url(&s, "http://127.0.0.1:1/cb", &s.scopes, "st", "ch").unwrap();
        let parsed = url::Url::parse(&url).unwrap();
        let prompts: Vec<_> = parsed
            .query_pairs()
            .filter(|(k, _)| k == "prompt")
            .map(|(_, v)| v.into_owned())
            .collect();
        assert_eq!(prompts, ["login consent"]);
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
