//! The state every handler and layer shares: [`AppState`] (the actor handles and
//! settings behind one `Arc`), [`HttpConfig`] and what the posture report is built from.
//!
//! Handlers, the pipeline and the auth middleware import it from here, and it imports
//! only leaf modules, so it closes no import cycle.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use palyra_actors::refresher::RefresherHandle;
use palyra_actors::{HandoffsHandle, RegistryHandle, SessionsHandle};
use palyra_storage::Writer;
use serde::{Deserialize, Serialize};

use crate::metrics::HttpMetrics;
use crate::request::{SECURE_SESSION_COOKIE, SESSION_COOKIE};
use crate::throttle::{AuthThrottle, RateLimits};

/// Settings the HTTP layer needs.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// TLS is on: cookies carry `Secure` and the `__Host-` prefix, responses HSTS.
    pub cookie_secure: bool,
    /// The host names (without port) requests may name in `Host`: loopback names,
    /// the bound address, `server.public_hosts`. Anything else is refused with 421
    /// before authentication (DNS rebinding of the daemon itself).
    pub allowed_hosts: Vec<String>,
    /// The daemon listens on an unspecified address: any IP literal is one of its
    /// addresses (names still must be listed).
    pub any_ip_host: bool,
    /// `http(s)://127.0.0.1:<port>`: where handoff links point without a public URL.
    pub loopback_base_url: String,
    /// `server.public_base_url` (no trailing `/`): where remote operators reach the
    /// daemon; handoff links point there when it is set.
    pub public_base_url: Option<String>,
    /// Base of OAuth redirect URIs: the configured https public URL, else the loopback
    /// URL when the daemon listens on loopback; none when it listens only elsewhere.
    pub oauth_redirect_base: Option<String>,
    /// Lifetime of a sign-in attempt.
    pub oauth_attempt_ttl: std::time::Duration,
    /// What the posture report states about the deployment.
    pub posture: PostureConfig,
}

impl HttpConfig {
    /// The session cookie's name: `__Host-` prefixed under TLS, so a browser accepts
    /// it only from this origin, over https, for the whole path.
    pub fn session_cookie_name(&self) -> &'static str {
        if self.cookie_secure {
            SECURE_SESSION_COOKIE
        } else {
            SESSION_COOKIE
        }
    }
}

/// Everything handlers need. axum clones the state several times per request, so it
/// is one `Arc`: a clone is one reference-count increment however many handles it
/// holds (an actix `Addr` clone alone costs allocations).
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl AppState {
    pub fn new(inner: AppStateInner) -> Self {
        Self(Arc::new(inner))
    }

    /// The credential root sessions are created with: a fingerprint of the admin
    /// token (a digest of its digest, so it tells nothing about the token). A session
    /// made under another admin token carries another one and is refused.
    pub fn root_credential(&self) -> String {
        use sha2::Digest;
        let fingerprint = sha2::Sha256::digest(self.admin_token_digest);
        let hex: String = fingerprint[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("root:{hex}")
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// The handles and settings behind [`AppState`].
pub struct AppStateInner {
    pub sessions: SessionsHandle,
    /// Operators and API tokens.
    pub operators: palyra_actors::operators::OperatorsHandle,
    pub handoffs: HandoffsHandle,
    pub registry: RegistryHandle,
    pub refresher: RefresherHandle,
    pub objectives: palyra_actors::objectives::ObjectivesHandle,
    pub browser: palyra_actors::browser::BrowserHandle,
    /// Notification channels and deliveries.
    pub notifications: palyra_actors::notifications::NotificationsHandle,
    /// The usage rollup's reports.
    pub usage: palyra_actors::usage::UsageHandle,
    /// This node's leases; `GET /cluster`.
    pub cluster: palyra_actors::cluster::ClusterHandle,
    /// For readiness.
    pub writer: Writer,
    /// For readiness (does the database answer?) and the posture (which one).
    pub storage: palyra_storage::Storage,
    /// SHA-256 of the admin token; the token itself is not kept here.
    pub admin_token_digest: [u8; 32],
    pub auth_throttle: Arc<AuthThrottle>,
    /// The global budget of audit events for unauthenticated failures.
    pub auth_audit_budget: Arc<crate::throttle::AuditBudget>,
    /// Failed password logins per operator id (the per-peer throttle alone would let
    /// many addresses guess one operator's password).
    pub operator_throttle: Arc<crate::throttle::KeyedThrottle<String>>,
    /// Request rates per peer; `None` when turned off.
    pub rate_limits: Option<Arc<RateLimits>>,
    pub audit: palyra_actors::audit::AuditLog,
    pub metrics: Arc<HttpMetrics>,
    /// The last admin request from a non-loopback peer, for the posture report.
    pub last_remote_access: std::sync::Mutex<Option<RemoteAccess>>,
    pub config: Arc<HttpConfig>,
}

impl std::fmt::Debug for AppStateInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What the daemon knows about its own exposure, fixed at start.
#[derive(Debug, Clone)]
pub struct PostureConfig {
    pub bind_addresses: Vec<String>,
    pub tls_enabled: bool,
    pub cert_not_after: Option<DateTime<Utc>>,
    /// `env`, `config` or `generated`.
    pub admin_token_source: &'static str,
    /// `env` or `file`.
    pub vault_key_source: &'static str,
    pub session_idle_timeout_s: u64,
    pub session_absolute_timeout_s: u64,
    pub rate_limits_enabled: bool,
    /// The separate, unauthenticated metrics listener, if any.
    pub metrics_bind: Option<String>,
    /// The data dir is readable by group or others.
    pub data_dir_open: bool,
}

/// The last admin request from a non-loopback peer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RemoteAccess {
    pub at: DateTime<Utc>,
    pub peer: String,
    pub method: String,
    pub path: String,
    pub status: u16,
}
