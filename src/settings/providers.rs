//! `[providers.*]` and `[oauth]`: model providers, their OAuth endpoints, and how the
//! registry sees them.

use serde::Deserialize;

/// Model providers; `custom` holds `[providers.custom.<name>]` tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvidersSettings {
    pub openai: ProviderConfig,
    pub anthropic: ProviderConfig,
    #[serde(default)]
    pub custom: std::collections::BTreeMap<String, ProviderConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Base of the provider's HTTP API; API keys are checked at `{api_base_url}/v1/models`.
    pub api_base_url: String,
    /// The API runs speak: `openai` (chat completions, also any OpenAI-compatible
    /// server) or `anthropic` (the Messages API). Defaults to the provider's own API
    /// for `openai` and `anthropic`, and to `openai` for custom providers.
    #[serde(default)]
    pub api_style: Option<palyra_actors::provider::ApiStyle>,
    /// OAuth: where the operator's browser signs in.
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// OAuth: where codes and refresh tokens are redeemed.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// OAuth: RFC 7009 revocation, called when a profile is deleted.
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    /// OAuth client id; OAuth sign-in is off for the provider until it is set.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `models` checks a new access token with GET {api_base_url}/v1/models; `none` does not.
    #[serde(default = "default_validation")]
    pub validation: Validation,
    /// Backoff of transient refresh failures: first delay and cap.
    #[serde(default = "default_backoff_base_ms")]
    pub backoff_base_ms: u64,
    #[serde(default = "default_backoff_cap_ms")]
    pub backoff_cap_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Validation {
    Models,
    None,
}

fn default_validation() -> Validation {
    Validation::Models
}

fn default_backoff_base_ms() -> u64 {
    15_000
}

fn default_backoff_cap_ms() -> u64 {
    300_000
}

/// OAuth settings that apply to every provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthGlobalSettings {
    /// Refresh OAuth tokens this long before they expire.
    pub refresh_lead_s: u64,
    /// A sign-in attempt must complete within this long.
    pub attempt_ttl_s: u64,
    /// An https base URL the provider redirects to instead of the loopback callback.
    #[serde(default)]
    pub public_base_url: Option<String>,
    /// Most refreshes in flight at once.
    pub max_concurrent_refreshes: usize,
}

impl ProviderConfig {
    fn oauth(&self) -> Option<palyra_actors::oauth::OAuthSettings> {
        Some(palyra_actors::oauth::OAuthSettings {
            authorization_endpoint: self.authorization_endpoint.clone()?,
            token_endpoint: self.token_endpoint.clone()?,
            revocation_endpoint: self.revocation_endpoint.clone(),
            client_id: self.client_id.clone().filter(|c| !c.is_empty())?,
            scopes: self.scopes.clone(),
            validate_with_models: self.validation == Validation::Models,
            backoff_base_ms: self.backoff_base_ms,
            backoff_cap_ms: self.backoff_cap_ms,
        })
    }
}

/// OAuth endpoints must be https, or http on a loopback address.
pub(super) fn check_oauth_endpoint(name: &str, value: &str) -> Result<(), String> {
    let url = url::Url::parse(value).map_err(|e| format!("{name}: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{name} must not carry credentials (user:password@); they would show in errors"
        ));
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!(
            "{name} must be an https URL (http only on a loopback address)"
        )),
    }
}

impl ProvidersSettings {
    /// The providers as the registry sees them, keyed by provider id.
    pub fn directory(&self) -> palyra_actors::provider::ProviderDirectory {
        let mut providers = std::collections::BTreeMap::new();
        use palyra_actors::provider::ApiStyle;
        let entry =
            |c: &ProviderConfig, style: ApiStyle| palyra_actors::provider::ProviderSettings {
                api_base_url: c.api_base_url.trim_end_matches('/').to_owned(),
                api_style: c.api_style.unwrap_or(style),
                oauth: c.oauth(),
            };
        providers.insert("openai".to_owned(), entry(&self.openai, ApiStyle::Openai));
        providers.insert(
            "anthropic".to_owned(),
            entry(&self.anthropic, ApiStyle::Anthropic),
        );
        for (name, config) in &self.custom {
            providers.insert(format!("custom:{name}"), entry(config, ApiStyle::Openai));
        }
        palyra_actors::provider::ProviderDirectory { providers }
    }
}
