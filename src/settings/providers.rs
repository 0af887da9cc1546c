//! `[providers.*]` and `[oauth]`: model providers, their OAuth endpoints, and how the
//! registry sees them.

use palyra_actors::SecretString;
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
    /// OAuth: RFC 8628 device authorization, for `palyra auth login --device`.
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
    /// OAuth client id; OAuth sign-in is off for the provider until it is set.
    #[serde(default)]
    pub client_id: Option<String>,
    /// OAuth client authentication at the token and revocation endpoints: `none` (a
    /// public client), `client_secret_basic` or `client_secret_post`.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// The environment variable holding the client secret, read at start.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// A file holding the client secret (surrounding whitespace ignored), read at start.
    #[serde(default)]
    pub client_secret_file: Option<std::path::PathBuf>,
    /// `form` (RFC 6749) or `json` token request bodies.
    #[serde(default)]
    pub token_request_format: TokenRequestFormat,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Extra parameters of the authorization request (Google: `access_type = "offline"`).
    #[serde(default)]
    pub authorization_params: std::collections::BTreeMap<String, String>,
    /// `audience` of the authorization request.
    #[serde(default)]
    pub audience: Option<String>,
    /// RFC 8707 `resource`, sent to the authorization and token endpoints.
    #[serde(default)]
    pub resource: Option<String>,
    /// The issuer the callback's `iss` must name (RFC 9207); default: the origin of
    /// `authorization_endpoint`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// `models` checks a new access token with GET {api_base_url}/v1/models; `none` does not.
    #[serde(default = "default_validation")]
    pub validation: Validation,
    /// Backoff of transient refresh failures: first delay and cap.
    #[serde(default = "default_backoff_base_ms")]
    pub backoff_base_ms: u64,
    #[serde(default = "default_backoff_cap_ms")]
    pub backoff_cap_ms: u64,
}

pub use palyra_actors::oauth::{ClientAuth, TokenRequestFormat};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Validation {
    #[default]
    Models,
    None,
}

fn default_validation() -> Validation {
    Validation::Models
}

/// A provider with only the defaults (and no API base URL), for code that builds
/// one: `ProviderConfig { api_base_url, ..ProviderConfig::default() }`.
impl Default for ProviderConfig {
    fn default() -> Self {
        Self {
            api_base_url: String::new(),
            api_style: None,
            authorization_endpoint: None,
            token_endpoint: None,
            revocation_endpoint: None,
            device_authorization_endpoint: None,
            client_id: None,
            client_auth: ClientAuth::None,
            client_secret_env: None,
            client_secret_file: None,
            token_request_format: TokenRequestFormat::Form,
            scopes: Vec::new(),
            authorization_params: std::collections::BTreeMap::new(),
            audience: None,
            resource: None,
            issuer: None,
            validation: default_validation(),
            backoff_base_ms: default_backoff_base_ms(),
            backoff_cap_ms: default_backoff_cap_ms(),
        }
    }
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
    /// A token that came without `expires_in` is refreshed this long after its last
    /// refresh, when it has a refresh token (8 days, as Codex does).
    #[serde(default = "default_refresh_without_expiry_s")]
    pub refresh_without_expiry_s: u64,
}

fn default_refresh_without_expiry_s() -> u64 {
    8 * 24 * 3600
}

impl ProviderConfig {
    /// The client secret from `client_secret_env` or `client_secret_file`, if either is
    /// set. The error names where it looked, never what it found.
    pub fn client_secret(&self) -> Result<Option<SecretString>, String> {
        let value = match (&self.client_secret_env, &self.client_secret_file) {
            (Some(_), Some(_)) => {
                return Err("set client_secret_env or client_secret_file, not both".into());
            }
            (Some(var), None) => std::env::var(var)
                .map_err(|_| format!("client_secret_env: the environment has no {var}"))?,
            (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
                format!(
                    "client_secret_file: cannot read {}: {}",
                    path.display(),
                    e.kind()
                )
            })?,
            (None, None) => return Ok(None),
        };
        let secret = SecretString::new(value.trim().to_owned());
        if secret.is_empty() {
            return Err("the client secret is empty".into());
        }
        Ok(Some(secret))
    }

    /// The checks `--check-config` runs on the OAuth fields of one provider.
    pub(super) fn validate_oauth(&self, name: &str) -> Result<(), String> {
        for key in self.authorization_params.keys() {
            if palyra_actors::oauth::RESERVED_AUTHORIZATION_PARAMS.contains(&key.as_str()) {
                return Err(format!(
                    "providers.{name}.authorization_params: {key} is set by the daemon (use audience / resource / scopes)"
                ));
            }
        }
        let secret = self
            .client_secret()
            .map_err(|e| format!("providers.{name}: {e}"))?;
        // A confidential client without client_secret_env / _file is fine: its secret
        // is set in the vault through the API (`palyra auth client-secret set`).
        if self.client_auth == ClientAuth::None && secret.is_some() {
            return Err(format!(
                "providers.{name}: a client secret is given but client_auth is none; set client_secret_basic or client_secret_post"
            ));
        }
        Ok(())
    }

    fn oauth(&self) -> Option<palyra_actors::oauth::OAuthSettings> {
        let authorization_endpoint = self.authorization_endpoint.clone()?;
        Some(palyra_actors::oauth::OAuthSettings {
            issuer: self.issuer.clone().unwrap_or_else(|| {
                palyra_actors::oauth::OAuthSettings::default_issuer(&authorization_endpoint)
            }),
            authorization_endpoint,
            token_endpoint: self.token_endpoint.clone()?,
            revocation_endpoint: self.revocation_endpoint.clone(),
            device_authorization_endpoint: self.device_authorization_endpoint.clone(),
            client_id: self.client_id.clone().filter(|c| !c.is_empty())?,
            client_auth: self.client_auth,
            // Never here: a secret from the environment or a file is sealed into the
            // vault at start (`ProvidersSettings::configured_client_secrets`).
            client_secret: None,
            client_secret_from_config: self.client_secret_env.is_some()
                || self.client_secret_file.is_some(),
            token_request_format: self.token_request_format,
            scopes: self.scopes.clone(),
            authorization_params: self
                .authorization_params
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            audience: self.audience.clone(),
            resource: self.resource.clone(),
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
    /// Every provider's configuration, keyed by provider id.
    fn by_id(&self) -> Vec<(String, &ProviderConfig)> {
        let mut all = vec![
            ("openai".to_owned(), &self.openai),
            ("anthropic".to_owned(), &self.anthropic),
        ];
        for (name, config) in &self.custom {
            all.push((format!("custom:{name}"), config));
        }
        all
    }

    /// The client secrets the config gives by `client_secret_env` or
    /// `client_secret_file`, by provider id, read now: the daemon seals them into the
    /// vault at start and forgets them. The error names the provider and where it
    /// looked, never what it found.
    pub fn configured_client_secrets(&self) -> Result<Vec<(String, SecretString)>, String> {
        let mut secrets = Vec::new();
        for (id, config) in self.by_id() {
            if config.authorization_endpoint.is_none() {
                continue;
            }
            let secret = config
                .client_secret()
                .map_err(|e| format!("providers.{id}: {e}"))?;
            if let Some(secret) = secret {
                secrets.push((id, secret));
            }
        }
        Ok(secrets)
    }

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
