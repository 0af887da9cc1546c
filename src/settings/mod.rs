//! Layered configuration: built-in defaults (config/default.toml), then an optional
//! TOML file, then `PALYRA_*` environment variables, then command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use palyra_actors::SecretString;
use serde::Deserialize;

mod cluster;
mod connections;
mod notifications;
mod providers;
mod storage;
mod usage;

pub use cluster::ClusterSettings;
pub use notifications::NotificationSettings;
use providers::check_oauth_endpoint;
pub use providers::{
    ClientAuth, OAuthGlobalSettings, ProviderConfig, ProvidersSettings, TokenRequestFormat,
    Validation,
};
pub(crate) use storage::is_loopback_host;
pub use storage::{StorageBackend, StorageSettings};
pub use usage::UsageSettings;

/// The compiled-in defaults.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/default.toml");

/// Environment variables that name a key directly. Any other key is reachable as
/// `PALYRA_<SECTION>__<KEY>`, for example `PALYRA_SESSIONS__IDLE_TIMEOUT_S=600`.
const ENV_ALIASES: &[(&str, &str, &str)] = &[
    ("PALYRA_BIND", "server", "bind"),
    ("PALYRA_DATA_DIR", "storage", "data_dir"),
    ("PALYRA_LOG_FORMAT", "log", "format"),
];

/// Variables with a meaning of their own, not config keys.
const ENV_RESERVED: &[&str] = &[
    "PALYRA_CONFIG",
    "PALYRA_ADMIN_TOKEN",
    "PALYRA_URL",
    "PALYRA_VAULT_KEY",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub storage: StorageSettings,
    pub sessions: SessionSettings,
    pub handoff: HandoffSettings,
    pub auth: AuthSettings,
    pub log: LogSettings,
    pub providers: ProvidersSettings,
    pub oauth: OAuthGlobalSettings,
    pub objectives: ObjectivesSettings,
    pub cluster: ClusterSettings,
    pub tls: TlsSettings,
    pub rate_limit: RateLimitSettings,
    pub audit: AuditSettings,
    pub metrics: MetricsSettings,
    pub browser: BrowserSettings,
    #[serde(default)]
    pub notifications: NotificationSettings,
    /// The config file these settings were read from, if any: runs' tools never
    /// reach it (`crate::tools_policy`).
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
    /// Prices per model for cost estimates; absent from the defaults.
    #[serde(default)]
    pub usage: UsageSettings,
}

/// HTTPS: both paths or neither.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    #[serde(default)]
    pub cert_path: Option<PathBuf>,
    #[serde(default)]
    pub key_path: Option<PathBuf>,
}

impl TlsSettings {
    /// The certificate and key paths when TLS is on.
    pub fn paths(&self) -> Option<(&Path, &Path)> {
        Some((self.cert_path.as_deref()?, self.key_path.as_deref()?))
    }
}

/// Per-peer request rates for the admin API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    pub enabled: bool,
    pub remote_per_s: u32,
    pub remote_burst: u32,
    pub loopback_per_s: u32,
    pub loopback_burst: u32,
}

/// Retention of the audit log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    pub max_events: u64,
    /// 0: no age limit.
    pub max_age_days: u64,
    pub prune_interval_s: u64,
}

/// Where `/metrics` is served.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// A separate, unauthenticated listener for `/metrics`.
    #[serde(default)]
    pub bind: Option<String>,
}

/// Headless Chromium sessions (`/console/v1/browser/...`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrowserSettings {
    /// Off: creating a session answers 503 `browser_disabled`.
    pub enabled: bool,
    /// The Chromium executable; started on the first session, not at daemon start.
    pub chromium_path: PathBuf,
    /// Lets sessions load private, link-local and loopback destinations.
    pub allow_private_networks: bool,
    /// When not empty, the only hosts sessions may load (names or IP addresses).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// The DNS servers (`address:port`) the egress proxy asks; empty: the system's.
    #[serde(default)]
    pub dns_servers: Vec<String>,
    /// When the daemon runs as root, Chromium runs as this user.
    pub user: String,
    /// Where session profiles are made; empty: derived from the data dir, in the
    /// system's temporary directory (see `profiles_root`).
    #[serde(default)]
    pub profiles_dir: PathBuf,
    /// Most live sessions; one more answers 429.
    pub max_sessions: usize,
    /// A session unused this long is closed.
    pub idle_timeout_s: u64,
    /// How long a navigation may take to load.
    pub navigation_timeout_s: u64,
    /// Most bytes of page text the content endpoint returns.
    pub content_max_bytes: usize,
    /// The viewport of sessions that name none.
    pub viewport_width: u32,
    pub viewport_height: u32,
}

impl BrowserSettings {
    /// Where session profiles live: `profiles_dir`, or a directory of the system's
    /// temporary directory named after the data dir, so a restarted daemon finds the
    /// browsers its predecessor left and two daemons never share one.
    pub fn profiles_root(&self, data_dir: &Path) -> PathBuf {
        if !self.profiles_dir.as_os_str().is_empty() {
            return self.profiles_dir.clone();
        }
        use sha2::Digest;
        let absolute = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_owned());
        let digest = sha2::Sha256::digest(absolute.as_os_str().as_encoded_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        std::env::temp_dir().join(format!("palyra-browser-{hex}"))
    }

    /// The browser actor's policy.
    pub fn policy(&self, data_dir: &Path) -> palyra_actors::browser::BrowserPolicy {
        palyra_actors::browser::BrowserPolicy {
            enabled: self.enabled,
            chromium_path: self.chromium_path.clone(),
            profiles_root: self.profiles_root(data_dir),
            user: self.user.clone(),
            urls: palyra_actors::browser::UrlPolicy {
                allow_private_networks: self.allow_private_networks,
                allowed_hosts: self
                    .allowed_hosts
                    .iter()
                    .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
                    .collect(),
                // Checked by `validate`.
                resolver: palyra_actors::browser::Resolver::new(
                    self.dns_servers
                        .iter()
                        .filter_map(|s| s.parse().ok())
                        .collect(),
                ),
            },
            max_sessions: self.max_sessions,
            idle_timeout: Duration::from_secs(self.idle_timeout_s),
            navigation_timeout: Duration::from_secs(self.navigation_timeout_s),
            content_max_bytes: self.content_max_bytes,
            default_viewport: palyra_actors::browser::Viewport {
                width: self.viewport_width,
                height: self.viewport_height,
            },
        }
    }

    fn validate(&self, max_s: u64, data_dir: Option<&Path>) -> Result<(), String> {
        use palyra_actors::browser::{VIEWPORT_MAX, VIEWPORT_MIN};
        if self.chromium_path.as_os_str().is_empty() {
            return Err("browser.chromium_path must not be empty".into());
        }
        if !(1..=64).contains(&self.max_sessions) {
            return Err("browser.max_sessions must be between 1 and 64".into());
        }
        if self.idle_timeout_s == 0 || self.idle_timeout_s > max_s {
            return Err(format!(
                "browser.idle_timeout_s must be between 1 and {max_s}"
            ));
        }
        if !(1..=600).contains(&self.navigation_timeout_s) {
            return Err("browser.navigation_timeout_s must be between 1 and 600".into());
        }
        if !(1024..=16 << 20).contains(&self.content_max_bytes) {
            return Err("browser.content_max_bytes must be between 1024 and 16777216".into());
        }
        for (name, value) in [
            ("browser.viewport_width", self.viewport_width),
            ("browser.viewport_height", self.viewport_height),
        ] {
            if !(VIEWPORT_MIN..=VIEWPORT_MAX).contains(&value) {
                return Err(format!(
                    "{name} must be between {VIEWPORT_MIN} and {VIEWPORT_MAX}"
                ));
            }
        }
        if self.allowed_hosts.iter().any(|h| h.trim().is_empty()) {
            return Err("browser.allowed_hosts must not hold empty names".into());
        }
        for server in &self.dns_servers {
            if server.parse::<SocketAddr>().is_err() {
                return Err(format!(
                    "browser.dns_servers: {server:?} is not an address:port (e.g. \"192.0.2.53:53\")"
                ));
            }
        }
        if self.user.trim().is_empty() {
            return Err("browser.user must not be empty".into());
        }
        if let Some(data_dir) = data_dir
            && !self.profiles_dir.as_os_str().is_empty()
        {
            let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
            if absolute(&self.profiles_dir).starts_with(absolute(data_dir)) {
                return Err(
                    "browser.profiles_dir must not be inside the data dir (the browser's user must not reach it)"
                        .into(),
                );
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectivesSettings {
    /// Runs kept per objective; the oldest are pruned.
    pub run_retention: u64,
    /// Timeout of one provider call of a run.
    pub provider_timeout_s: u64,
    /// Runs going at once on this node, at most; firings over it wait as `queued`
    /// runs, in firing order, and start as runs finish.
    pub max_concurrent_runs: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// `host:port`; `localhost` resolves to loopback.
    pub bind: String,
    pub body_limit_bytes: usize,
    pub shutdown_grace_s: u64,
    /// The admin token from the config file; `PALYRA_ADMIN_TOKEN` wins over it.
    #[serde(default)]
    pub admin_token: Option<SecretString>,
    /// The operator's acknowledgement that a non-loopback bind is intended.
    pub allow_remote: bool,
    /// The https URL operators reach the daemon at (behind a proxy or on another
    /// host): handoff links and the OAuth redirect use it instead of the bind address.
    #[serde(default)]
    pub public_base_url: Option<String>,
    /// Host names (besides loopback names and the bound address) that requests may
    /// name in `Host`; any other is refused with 421 (DNS rebinding).
    #[serde(default)]
    pub public_hosts: Vec<String>,
    /// Most connections one remote peer (an IPv4 address, an IPv6 /64) may hold open.
    pub max_connections_per_peer: usize,
    /// The same for one loopback address (the CLI, a local browser, benchmarks).
    pub max_connections_per_loopback_peer: usize,
    /// Connection slots of a listener only loopback peers may take.
    pub loopback_reserved_connections: usize,
    /// Longest a request's body may take to arrive after its headers (then 408).
    pub body_read_timeout_s: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    pub idle_timeout_s: u64,
    pub absolute_timeout_s: u64,
    pub max_live: usize,
    pub tick_interval_s: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoffSettings {
    pub ttl_s: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub max_failures: usize,
    pub failure_window_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

/// Values given on the command line; each wins over every other layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub bind: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
    /// `--allow-remote`.
    pub allow_remote: bool,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration in {origin}: {message}")]
    Invalid { origin: String, message: String },
}

impl Settings {
    /// The built-in defaults alone.
    pub fn defaults() -> Self {
        // The defaults are compiled in and covered by a unit test.
        Self::from_table(default_table(), "built-in defaults").unwrap_or_else(|e| panic!("{e}"))
    }

    /// All four layers. `env` is the process environment (passed in for tests).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut table = default_table();
        let mut origin = "built-in defaults".to_owned();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            let file_table: toml::Table =
                toml::from_str(&text).map_err(|e| ConfigError::Invalid {
                    origin: path.display().to_string(),
                    message: e.message().to_owned(),
                })?;
            merge(&mut table, file_table);
            origin = path.display().to_string();
        }
        for (name, value) in env {
            if let Some(path) = env_key(&name) {
                // Aliases name string keys (an address, a path, a format).
                let value = if ENV_ALIASES.iter().any(|(n, _, _)| *n == name) {
                    toml::Value::String(value)
                } else {
                    parse_env_value(&value)
                };
                set_path(&mut table, &path, value);
                origin = format!("{origin} and PALYRA_* environment variables");
            }
        }
        if let Some(bind) = &overrides.bind {
            set(
                &mut table,
                "server",
                "bind",
                toml::Value::String(bind.clone()),
            );
        }
        if let Some(dir) = &overrides.data_dir {
            set(
                &mut table,
                "storage",
                "data_dir",
                toml::Value::String(dir.display().to_string()),
            );
        }
        if overrides.allow_remote {
            set(
                &mut table,
                "server",
                "allow_remote",
                toml::Value::Boolean(true),
            );
        }
        if let Some(format) = overrides.log_format {
            let name = match format {
                LogFormat::Human => "human",
                LogFormat::Json => "json",
            };
            set(
                &mut table,
                "log",
                "format",
                toml::Value::String(name.into()),
            );
        }
        let mut settings = Self::from_table(table, &origin)?;
        settings.config_file = file.map(Path::to_owned);
        Ok(settings)
    }

    fn from_table(table: toml::Table, origin: &str) -> Result<Self, ConfigError> {
        let settings: Settings =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    origin: origin.to_owned(),
                    message: e.message().to_owned(),
                })?;
        settings
            .validate()
            .map_err(|message| ConfigError::Invalid {
                origin: origin.to_owned(),
                message,
            })?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), String> {
        let positive = [
            ("sessions.idle_timeout_s", self.sessions.idle_timeout_s),
            (
                "sessions.absolute_timeout_s",
                self.sessions.absolute_timeout_s,
            ),
            ("sessions.tick_interval_s", self.sessions.tick_interval_s),
            ("handoff.ttl_s", self.handoff.ttl_s),
            ("auth.failure_window_s", self.auth.failure_window_s),
        ];
        // Ten years bounds every duration, so time arithmetic cannot overflow.
        const MAX_S: u64 = 10 * 365 * 24 * 3600;
        for (name, value) in positive {
            if value == 0 || value > MAX_S {
                return Err(format!("{name} must be between 1 and {MAX_S}"));
            }
        }
        if self.oauth.attempt_ttl_s == 0
            || self.oauth.attempt_ttl_s > MAX_S
            || self.oauth.refresh_lead_s > MAX_S
            || self.oauth.max_concurrent_refreshes == 0
            || self.oauth.refresh_without_expiry_s == 0
            || self.oauth.refresh_without_expiry_s > MAX_S
        {
            return Err(
                "oauth: attempt_ttl_s, refresh_without_expiry_s and max_concurrent_refreshes must be at least 1".into(),
            );
        }
        for (name, base) in [
            ("oauth.public_base_url", &self.oauth.public_base_url),
            ("server.public_base_url", &self.server.public_base_url),
        ] {
            let ok = base.as_ref().is_none_or(|base| {
                url::Url::parse(base).is_ok_and(|u| {
                    u.scheme() == "https"
                        && u.host().is_some()
                        && u.username().is_empty()
                        && u.password().is_none()
                        && u.query().is_none()
                })
            });
            if !ok {
                return Err(format!(
                    "{name} must be an https URL without user:password@ or a query"
                ));
            }
        }
        if self.objectives.run_retention == 0 || self.objectives.provider_timeout_s == 0 {
            return Err(
                "objectives.run_retention and provider_timeout_s must be at least 1".into(),
            );
        }
        if !(1..=100_000).contains(&self.objectives.max_concurrent_runs) {
            return Err("objectives.max_concurrent_runs must be 1 to 100000".into());
        }
        self.browser
            .validate(MAX_S, self.storage.data_dir.as_deref())?;
        validate_public_hosts(&self.server.public_hosts)?;
        connections::validate(&self.server)?;
        self.storage.validate()?;
        self.cluster.validate()?;
        self.notifications.validate()?;
        self.usage.validate()?;
        if self.server.shutdown_grace_s > 3600 {
            return Err("server.shutdown_grace_s must be at most 3600".into());
        }
        if self.sessions.max_live == 0 || self.auth.max_failures == 0 {
            return Err("sessions.max_live and auth.max_failures must be at least 1".into());
        }
        if self.server.body_limit_bytes < 1024 {
            return Err("server.body_limit_bytes must be at least 1024".into());
        }
        if let Some(token) = &self.server.admin_token {
            check_admin_token(token)?;
        }
        if self.tls.cert_path.is_some() != self.tls.key_path.is_some() {
            return Err("tls: set both cert_path and key_path, or neither".into());
        }
        let rl = &self.rate_limit;
        if rl.remote_per_s == 0
            || rl.remote_burst == 0
            || rl.loopback_per_s == 0
            || rl.loopback_burst == 0
        {
            return Err(
                "rate_limit: rates and bursts must be at least 1 (set enabled = false to turn the limits off)"
                    .into(),
            );
        }
        if self.audit.max_events == 0
            || self.audit.prune_interval_s == 0
            || self.audit.max_age_days > 36_500
        {
            return Err(
                "audit: max_events and prune_interval_s must be at least 1, max_age_days at most 36500"
                    .into(),
            );
        }
        if let Some(bind) = &self.metrics.bind {
            resolve_addr(bind).map_err(|m| format!("metrics.bind: {m}"))?;
        }
        let mut providers = vec![
            ("openai".to_owned(), &self.providers.openai),
            ("anthropic".to_owned(), &self.providers.anthropic),
        ];
        for (name, config) in &self.providers.custom {
            palyra_actors::registry::validate_provider(&format!("custom:{name}"))
                .map_err(|_| format!("providers.custom.{name}: use 1 to 64 of a-z 0-9 . _ -"))?;
            providers.push((format!("custom.{name}"), config));
        }
        for (name, config) in providers {
            // No user:password@: the URL appears in errors and audit details.
            let ok = url::Url::parse(&config.api_base_url).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.username().is_empty()
                    && u.password().is_none()
            });
            if !ok {
                return Err(format!(
                    "providers.{name}.api_base_url must be an http or https URL without user:password@"
                ));
            }
            for (field, value) in [
                ("authorization_endpoint", &config.authorization_endpoint),
                ("token_endpoint", &config.token_endpoint),
                ("revocation_endpoint", &config.revocation_endpoint),
                (
                    "device_authorization_endpoint",
                    &config.device_authorization_endpoint,
                ),
            ] {
                if let Some(value) = value {
                    check_oauth_endpoint(&format!("providers.{name}.{field}"), value)?;
                }
            }
            config.validate_oauth(&name)?;
            if config.backoff_base_ms == 0 || config.backoff_cap_ms < config.backoff_base_ms {
                return Err(format!(
                    "providers.{name}: backoff_base_ms must be at least 1 and at most backoff_cap_ms"
                ));
            }
        }
        Ok(())
    }

    /// The bind address, resolved (`localhost` becomes a loopback address).
    pub fn bind_addr(&self) -> Result<SocketAddr, ConfigError> {
        resolve_addr(&self.server.bind).map_err(|message| ConfigError::Invalid {
            origin: "server.bind".into(),
            message,
        })
    }

    /// The separate metrics listener's address, if one is configured.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        self.metrics
            .bind
            .as_deref()
            .map(resolve_addr)
            .transpose()
            .map_err(|message| ConfigError::Invalid {
                origin: "metrics.bind".into(),
                message,
            })
    }

    pub fn session_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.sessions.idle_timeout_s)
    }
}

/// Resolves `host:port`; `localhost` becomes a loopback address (IPv4 first: handoff
/// links promise 127.0.0.1).
fn resolve_addr(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {text:?}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("{text:?} resolves to no address"))
}

/// An admin token must be at least 32 characters.
/// Checks `server.public_hosts`: plain DNS names or IP addresses, no port or scheme.
fn validate_public_hosts(hosts: &[String]) -> Result<(), String> {
    for host in hosts {
        let plain = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !plain && host.parse::<std::net::IpAddr>().is_err() {
            return Err(format!(
                "server.public_hosts: {host:?} is not a host name or IP address (no port, no scheme)"
            ));
        }
    }
    Ok(())
}

pub fn check_admin_token(token: &SecretString) -> Result<(), String> {
    if token.len() < 32 {
        return Err(format!(
            "the admin token must be at least 32 characters (it has {})",
            token.len()
        ));
    }
    Ok(())
}

fn default_table() -> toml::Table {
    toml::from_str(DEFAULT_CONFIG).unwrap_or_default()
}

/// Deep-merges `over` into `base`.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn set(table: &mut toml::Table, section: &str, key: &str, value: toml::Value) {
    set_path(table, &[section.to_owned(), key.to_owned()], value);
}

/// Sets `value` at a dotted path of tables, creating the tables on the way.
fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = table;
    for name in parents {
        let entry = current
            .entry(name.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else {
            return;
        };
        current = next;
    }
    current.insert(last.clone(), value);
}

/// Maps an environment variable to a path of config keys, if it is one:
/// `PALYRA_PROVIDERS__OPENAI__API_BASE_URL` is `providers.openai.api_base_url`.
fn env_key(name: &str) -> Option<Vec<String>> {
    if ENV_RESERVED.contains(&name) {
        return None;
    }
    if let Some((_, section, key)) = ENV_ALIASES.iter().find(|(n, _, _)| *n == name) {
        return Some(vec![(*section).to_owned(), (*key).to_owned()]);
    }
    let rest = name.strip_prefix("PALYRA_")?;
    let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    (path.len() >= 2 && path.iter().all(|p| !p.is_empty())).then_some(path)
}

/// Numbers and booleans keep their type, and so does a TOML list (`["a", "b"]`, for
/// keys such as `browser.allowed_hosts`); anything else is a string.
fn parse_env_value(value: &str) -> toml::Value {
    if let Ok(i) = value.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if value.trim_start().starts_with('[')
        && let Ok(mut table) = toml::from_str::<toml::Table>(&format!("v = {value}"))
        && let Some(list @ toml::Value::Array(_)) = table.remove("v")
    {
        return list;
    }
    match value {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(value.to_owned()),
    }
}

#[cfg(test)]
mod tests;
