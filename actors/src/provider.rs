//! Model providers: their settings and the API-key check against `GET /v1/models`.

use std::collections::BTreeMap;

use crate::outbound::KEY_CHECK_TIMEOUT;
use crate::secret::SecretString;

/// Settings of one provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSettings {
    /// Base of the provider's API, for example `https://api.openai.com`.
    pub api_base_url: String,
    /// Which API runs speak to it (`crate::adapter`).
    pub api_style: ApiStyle,
    /// OAuth sign-in and refresh, when the provider is configured for it.
    pub oauth: Option<crate::oauth::OAuthSettings>,
}

/// The API a provider serves for runs: `openai` for OpenAI and every
/// OpenAI-compatible server, `anthropic` for the Anthropic Messages API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiStyle {
    Openai,
    Anthropic,
}

/// The providers the daemon knows, keyed by provider id (`openai`, `anthropic`,
/// `custom:<name>`).
#[derive(Debug, Clone, Default)]
pub struct ProviderDirectory {
    pub providers: BTreeMap<String, ProviderSettings>,
}

impl ProviderDirectory {
    pub fn get(&self, provider: &str) -> Option<&ProviderSettings> {
        self.providers.get(provider)
    }
}

/// Why an API key was not accepted by its provider, or could not be checked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyCheckError {
    /// The provider answered 401 or 403.
    #[error("the provider rejected the API key (HTTP {status})")]
    Rejected { status: u16 },
    /// The provider answered 429.
    #[error(
        "the provider rate-limited the validation call; try again later or pass \"validate\": false"
    )]
    RateLimited { retry_after_s: Option<u64> },
    /// Network failure, timeout, or an unexpected status.
    #[error("the provider could not be reached to validate the key: {0}")]
    Unavailable(String),
    /// The provider has no configured API base URL.
    #[error(
        "provider {0} has no api_base_url configured; configure [providers] or pass \"validate\": false"
    )]
    NotConfigured(String),
}

/// Checks `api_key` by calling `GET {api_base_url}/v1/models` with it, on the
/// daemon's one outbound client (so connections to a provider are reused), bounded by
/// [`KEY_CHECK_TIMEOUT`].
pub async fn check_api_key(
    http: &reqwest::Client,
    provider: &str,
    settings: &ProviderSettings,
    api_key: &SecretString,
) -> Result<(), KeyCheckError> {
    let url = format!("{}/v1/models", settings.api_base_url.trim_end_matches('/'));
    let request = http.get(&url).timeout(KEY_CHECK_TIMEOUT);
    let request = if provider == "anthropic" {
        request
            .header("x-api-key", api_key.expose())
            .header("anthropic-version", "2023-06-01")
    } else {
        request.bearer_auth(api_key.expose())
    };
    let response = request.send().await.map_err(|e| {
        // reqwest's messages name the URL, never the headers.
        KeyCheckError::Unavailable(if e.is_timeout() {
            "timed out".to_owned()
        } else if e.is_connect() {
            format!("cannot connect to {}", settings.api_base_url)
        } else {
            e.without_url().to_string()
        })
    })?;
    match response.status().as_u16() {
        200..=299 => Ok(()),
        status @ (401 | 403) => Err(KeyCheckError::Rejected { status }),
        429 => Err(KeyCheckError::RateLimited {
            retry_after_s: response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
        }),
        status => Err(KeyCheckError::Unavailable(format!(
            "the provider answered HTTP {status}"
        ))),
    }
}
