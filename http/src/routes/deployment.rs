//! The deployment's posture and the audit log.

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use chrono::{DateTime, Utc};
use palyra_actors::audit::{AuditKind, AuditPage, AuditQuery};
use palyra_actors::browser::{BrowserIsolation, SandboxState};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ErrorBody, SecuredRead};
use crate::extract::ApiQuery;
use crate::route::{Access, RouteSpec, route};
use crate::state::AppState;

// The posture's inputs live with the state that holds them (the state must not import
// this module); they are named here too, where the posture is reported.
pub use crate::state::{PostureConfig, RemoteAccess};

/// A certificate expiring sooner than this is a warning.
const CERT_WARNING_DAYS: i64 = 14;

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TlsPosture {
    pub enabled: bool,
    /// When the served certificate expires.
    pub cert_not_after: Option<DateTime<Utc>>,
}

/// Where the daemon keeps its state.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoragePostureSummary {
    /// `redb` or `postgres`.
    pub backend: String,
    /// PostgreSQL: `host:port/database` (never the user or password).
    pub target: Option<String>,
    /// `single` (redb: this node alone) or `cluster` (PostgreSQL: one of the nodes
    /// sharing the database; see `GET /console/v1/cluster`).
    pub cluster_mode: String,
    /// This node's id.
    pub node_id: String,
}

/// A snapshot of the daemon's security state.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeploymentPostureSummary {
    pub bind_addresses: Vec<String>,
    pub loopback_only: bool,
    pub remote_bind_detected: bool,
    pub tls: TlsPosture,
    pub cookie_secure: bool,
    /// `env`, `config` or `generated`.
    pub admin_token_source: String,
    /// `env` or `file`.
    pub vault_key_source: String,
    pub session_idle_timeout_s: u64,
    pub session_absolute_timeout_s: u64,
    pub storage: StoragePostureSummary,
    pub last_remote_admin_access: Option<RemoteAccess>,
    /// How browser sessions are kept apart from the daemon: the user Chromium runs
    /// as, its sandbox, DevTools over a pipe, the egress proxy and what it refused.
    pub browser: BrowserIsolation,
    /// Concrete risks, one sentence each.
    pub warnings: Vec<String>,
}

fn is_loopback(addr: &str) -> bool {
    addr.parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback())
}

/// The posture at `now`.
pub fn summary(state: &AppState, now: DateTime<Utc>) -> DeploymentPostureSummary {
    let p = &state.config.posture;
    let loopback_only = p.bind_addresses.iter().all(|a| is_loopback(a));
    let mut warnings = Vec::new();
    for addr in p
        .bind_addresses
        .iter()
        .filter(|a| !is_loopback(a) && Some(a.as_str()) != p.metrics_bind.as_deref())
    {
        if !p.tls_enabled {
            warnings.push(format!(
                "{addr} is not loopback and is served without TLS: tokens and cookies cross the network in clear text"
            ));
        }
    }
    if let Some(not_after) = p.cert_not_after {
        let left = not_after - now;
        if left <= chrono::Duration::zero() {
            warnings.push(format!(
                "the TLS certificate expired at {}",
                not_after.to_rfc3339()
            ));
        } else if left < chrono::Duration::days(CERT_WARNING_DAYS) {
            warnings.push(format!(
                "the TLS certificate expires within {CERT_WARNING_DAYS} days, at {}",
                not_after.to_rfc3339()
            ));
        }
    }
    if !loopback_only && p.vault_key_source == "file" {
        warnings.push(
            "the vault key is a file in the data dir, beside the sealed secrets: a copy of the data dir opens them (set PALYRA_VAULT_KEY from a secret store)"
                .into(),
        );
    }
    if !loopback_only && !p.rate_limits_enabled {
        warnings.push("request rate limits are off while the API is reachable remotely".into());
    }
    if let Some(metrics) = p.metrics_bind.as_deref().filter(|a| !is_loopback(a)) {
        warnings.push(format!(
            "/metrics is served on {metrics}, which is not loopback, in clear text and without authentication"
        ));
    }
    if p.data_dir_open {
        warnings.push("the data dir is accessible by group or others; chmod 700 it".into());
    }
    if p.session_idle_timeout_s > 24 * 3600 {
        warnings.push(
            "console sessions stay valid unused for more than a day (sessions.idle_timeout_s)"
                .into(),
        );
    }
    let storage = state.storage.posture();
    if storage.synchronous_commit_off {
        warnings.push(
            "the PostgreSQL server's default synchronous_commit is off: palyrad's writer turns it on for its own commits, but other clients of the server may lose commits in a crash"
                .into(),
        );
    }
    let browser = state.browser.isolation();
    if browser.enabled && browser.sandbox == SandboxState::Unavailable {
        warnings.push(
            "Chromium's sandbox cannot start on this host (no user namespaces and no setuid helper): browsers run with --no-sandbox, isolated only by the user they run as and the egress proxy"
                .into(),
        );
    }
    if browser.enabled && browser.user == "unusable" {
        warnings.push(
            "browser sessions cannot start: the daemon runs as root and browser.user does not name a usable unprivileged user"
                .into(),
        );
    }
    DeploymentPostureSummary {
        bind_addresses: p.bind_addresses.clone(),
        loopback_only,
        remote_bind_detected: !loopback_only,
        tls: TlsPosture {
            enabled: p.tls_enabled,
            cert_not_after: p.cert_not_after,
        },
        cookie_secure: state.config.cookie_secure,
        admin_token_source: p.admin_token_source.to_owned(),
        vault_key_source: p.vault_key_source.to_owned(),
        session_idle_timeout_s: p.session_idle_timeout_s,
        session_absolute_timeout_s: p.session_absolute_timeout_s,
        storage: StoragePostureSummary {
            backend: storage.backend.to_owned(),
            target: (!storage.target.is_empty()).then_some(storage.target),
            cluster_mode: if state.cluster.is_clustered() {
                "cluster".into()
            } else {
                "single".into()
            },
            node_id: state.cluster.node_id().to_owned(),
        },
        last_remote_admin_access: state
            .last_remote_access
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        browser,
        warnings,
    }
}

/// The daemon's exposure: binds, TLS, token and key sources, warnings.
#[utoipa::path(get, path = "/console/v1/deployment/posture", tag = "deployment",
    responses(
        SecuredRead,
        (status = 200, description = "The posture", body = DeploymentPostureSummary)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn posture(State(state): State<AppState>) -> Json<DeploymentPostureSummary> {
    Json(summary(&state, Utc::now()))
}

#[derive(Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Only events of this kind.
    pub kind: Option<AuditKind>,
    /// Only events at or after this instant (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Only events at or before this instant (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/console/v1/audit", tag = "deployment",
    params(AuditParams),
    responses(
        SecuredRead,
        (status = 200, description = "A page of events", body = AuditPage),
        (status = 400, description = "Malformed query", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn audit(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Json<AuditPage>, ApiError> {
    let query = AuditQuery {
        kind: params.kind,
        since: params.since,
        until: params.until,
        limit: params.limit.unwrap_or(100),
        cursor: params.cursor,
    };
    // Events of actions already answered may still sit in the writer's queue.
    state.audit.settle().await?;
    let page = state.audit.query(&query).await?;
    Ok(Json(page))
}

/// The routes of this resource, for the route table.
pub(crate) fn routes() -> Vec<RouteSpec> {
    use Access::Viewer;
    vec![
        route(
            Method::GET,
            "/console/v1/deployment/posture",
            Viewer,
            posture,
        ),
        route(Method::GET, "/console/v1/audit", Viewer, audit),
    ]
}
