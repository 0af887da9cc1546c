//! The HTTP admin API of palyrad: router, extractors, authentication and the error table.
//!
//! Layout:
//! - [`routes`]: one module per resource; handlers forward requests to actor handles.
//! - [`console`]: the web console's page and assets, embedded and served at `/`.
//! - [`auth`]: the one middleware that authenticates protected routes and enforces CSRF.
//! - [`extract`]: JSON and query extractors that answer our JSON errors.
//! - [`error`]: the one table from every error to a status.
//! - [`openapi`]: the generated OpenAPI document.
//! - [`throttle`]: per-peer throttling of failed authentication, and request rates.
//! - [`middleware`]: request ids and spans, metrics, rate limits, security headers.
//! - [`metrics`]: the metric registry and `/metrics`.

pub mod audit;
pub mod auth;
pub mod console;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod routes;
pub mod throttle;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::Method;
use axum::routing::{MethodRouter, delete, get, patch, post};
use palyra_actors::refresher::RefresherHandle;
use palyra_actors::{HandoffsHandle, RegistryHandle, SessionsHandle};
use palyra_storage::Writer;

pub use error::ApiError;
pub use throttle::AuthThrottle;

use crate::routes::{browser, console_auth, deployment, oauth, objectives, ops, profiles};

/// Settings the HTTP layer needs.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// TLS is on: cookies carry `Secure` and the `__Host-` prefix, responses HSTS.
    pub cookie_secure: bool,
    /// `http(s)://127.0.0.1:<port>`: where handoff links point.
    pub loopback_base_url: String,
    /// Base of OAuth redirect URIs: the configured https public URL, else the loopback
    /// URL when the daemon listens on loopback; none when it listens only elsewhere.
    pub oauth_redirect_base: Option<String>,
    /// Lifetime of a sign-in attempt.
    pub oauth_attempt_ttl: std::time::Duration,
    /// What the posture report states about the deployment.
    pub posture: routes::deployment::PostureConfig,
}

impl HttpConfig {
    /// The session cookie's name: `__Host-` prefixed under TLS, so a browser accepts
    /// it only from this origin, over https, for the whole path.
    pub fn session_cookie_name(&self) -> &'static str {
        if self.cookie_secure {
            auth::SECURE_SESSION_COOKIE
        } else {
            auth::SESSION_COOKIE
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
    pub handoffs: HandoffsHandle,
    pub registry: RegistryHandle,
    pub refresher: RefresherHandle,
    pub objectives: palyra_actors::objectives::ObjectivesHandle,
    pub browser: palyra_actors::browser::BrowserHandle,
    /// For readiness.
    pub writer: Writer,
    /// SHA-256 of the admin token; the token itself is not kept here.
    pub admin_token_digest: [u8; 32],
    pub auth_throttle: Arc<AuthThrottle>,
    /// Request rates per peer; `None` when turned off.
    pub rate_limits: Option<Arc<throttle::RateLimits>>,
    pub audit: palyra_actors::audit::AuditLog,
    pub metrics: Arc<metrics::HttpMetrics>,
    /// The last admin request from a non-loopback peer, for the posture report.
    pub last_remote_access: std::sync::Mutex<Option<routes::deployment::RemoteAccess>>,
    pub config: Arc<HttpConfig>,
}

impl std::fmt::Debug for AppStateInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No authentication (login, handoff consumption, probes, the API document).
    Public,
    /// Session cookie (plus CSRF on mutations) or admin bearer token.
    Authenticated,
}

/// One route of the API, as listed by [`route_table`].
#[derive(Debug, Clone)]
pub struct RouteInfo {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

/// The routes: the router is built from this list and tests enumerate it.
fn routes() -> Vec<(RouteInfo, MethodRouter<AppState>)> {
    use Access::{Authenticated, Public};
    let r = |method: Method, path, access, handler| {
        (
            RouteInfo {
                method,
                path,
                access,
            },
            handler,
        )
    };
    vec![
        r(Method::GET, "/healthz", Public, get(ops::healthz)),
        r(Method::GET, "/readyz", Public, get(ops::readyz)),
        r(
            Method::GET,
            "/console/v1/openapi.json",
            Public,
            get(openapi::openapi_json),
        ),
        r(
            Method::POST,
            "/console/v1/auth/login",
            Public,
            post(console_auth::login),
        ),
        r(
            Method::GET,
            "/console/v1/auth/session",
            Authenticated,
            get(console_auth::session),
        ),
        r(
            Method::POST,
            "/console/v1/auth/logout",
            Authenticated,
            post(console_auth::logout),
        ),
        r(
            Method::POST,
            "/console/v1/auth/browser-handoff",
            Authenticated,
            post(console_auth::mint_handoff),
        ),
        r(
            Method::GET,
            "/console/v1/auth/browser-handoff/consume",
            Public,
            get(console_auth::consume_handoff),
        ),
        r(
            Method::POST,
            "/console/v1/auth/browser-handoff/session",
            Public,
            post(console_auth::handoff_session),
        ),
        r(
            Method::GET,
            "/console/v1/auth/profiles",
            Authenticated,
            get(profiles::list_profiles),
        ),
        r(
            Method::POST,
            "/console/v1/auth/profiles",
            Authenticated,
            post(profiles::create_profile),
        ),
        r(
            Method::GET,
            "/console/v1/auth/profiles/{profile_id}",
            Authenticated,
            get(profiles::get_profile),
        ),
        r(
            Method::DELETE,
            "/console/v1/auth/profiles/{profile_id}",
            Authenticated,
            delete(profiles::delete_profile),
        ),
        r(
            Method::POST,
            "/console/v1/auth/profiles/{profile_id}/default",
            Authenticated,
            post(profiles::set_default),
        ),
        r(
            Method::GET,
            "/console/v1/auth/health",
            Authenticated,
            get(profiles::health),
        ),
        r(
            Method::GET,
            "/console/v1/auth/resolve",
            Authenticated,
            get(profiles::resolve),
        ),
        r(
            Method::POST,
            "/console/v1/vault/rotate-key",
            Authenticated,
            post(profiles::rotate_key),
        ),
        r(
            Method::POST,
            "/console/v1/auth/providers/{provider}/bootstrap",
            Authenticated,
            post(oauth::bootstrap),
        ),
        r(
            Method::GET,
            "/console/v1/auth/providers/{provider}/callback",
            Public,
            get(oauth::callback),
        ),
        r(
            Method::GET,
            "/console/v1/auth/providers/{provider}/callback-state",
            Authenticated,
            get(oauth::callback_state),
        ),
        r(
            Method::POST,
            "/console/v1/auth/providers/{provider}/manual-callback",
            Authenticated,
            post(oauth::manual_callback),
        ),
        r(
            Method::POST,
            "/console/v1/auth/profiles/{profile_id}/refresh",
            Authenticated,
            post(oauth::refresh),
        ),
        r(
            Method::GET,
            "/console/v1/agents",
            Authenticated,
            get(objectives::list_agents),
        ),
        r(
            Method::POST,
            "/console/v1/agents",
            Authenticated,
            post(objectives::create_agent),
        ),
        r(
            Method::GET,
            "/console/v1/agents/{agent_id}",
            Authenticated,
            get(objectives::get_agent),
        ),
        r(
            Method::PATCH,
            "/console/v1/agents/{agent_id}",
            Authenticated,
            patch(objectives::update_agent),
        ),
        r(
            Method::DELETE,
            "/console/v1/agents/{agent_id}",
            Authenticated,
            delete(objectives::delete_agent),
        ),
        r(
            Method::GET,
            "/console/v1/objectives",
            Authenticated,
            get(objectives::list_objectives),
        ),
        r(
            Method::POST,
            "/console/v1/objectives",
            Authenticated,
            post(objectives::create_objective),
        ),
        r(
            Method::GET,
            "/console/v1/objectives/{objective_id}",
            Authenticated,
            get(objectives::get_objective),
        ),
        r(
            Method::PATCH,
            "/console/v1/objectives/{objective_id}",
            Authenticated,
            patch(objectives::update_objective),
        ),
        r(
            Method::POST,
            "/console/v1/objectives/{objective_id}/lifecycle",
            Authenticated,
            post(objectives::lifecycle),
        ),
        r(
            Method::GET,
            "/console/v1/objectives/{objective_id}/runs",
            Authenticated,
            get(objectives::runs),
        ),
        r(
            Method::GET,
            "/console/v1/deployment/posture",
            Authenticated,
            get(deployment::posture),
        ),
        r(
            Method::GET,
            "/console/v1/audit",
            Authenticated,
            get(deployment::audit),
        ),
        r(
            Method::GET,
            "/metrics",
            Authenticated,
            get(metrics::metrics),
        ),
        r(
            Method::GET,
            "/console/v1/browser/sessions",
            Authenticated,
            get(browser::list_sessions),
        ),
        r(
            Method::POST,
            "/console/v1/browser/sessions",
            Authenticated,
            post(browser::create_session),
        ),
        r(
            Method::GET,
            "/console/v1/browser/sessions/{session_id}",
            Authenticated,
            get(browser::get_session),
        ),
        r(
            Method::DELETE,
            "/console/v1/browser/sessions/{session_id}",
            Authenticated,
            delete(browser::close_session),
        ),
        r(
            Method::POST,
            "/console/v1/browser/sessions/{session_id}/navigate",
            Authenticated,
            post(browser::navigate),
        ),
        r(
            Method::POST,
            "/console/v1/browser/sessions/{session_id}/click",
            Authenticated,
            post(browser::click),
        ),
        r(
            Method::POST,
            "/console/v1/browser/sessions/{session_id}/type",
            Authenticated,
            post(browser::type_text),
        ),
        r(
            Method::GET,
            "/console/v1/browser/sessions/{session_id}/screenshot",
            Authenticated,
            get(browser::screenshot),
        ),
        r(
            Method::GET,
            "/console/v1/browser/sessions/{session_id}/content",
            Authenticated,
            get(browser::content),
        ),
    ]
}

/// Every route with its method and access.
pub fn route_table() -> Vec<RouteInfo> {
    routes().into_iter().map(|(info, _)| info).collect()
}

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let mut public = Router::new();
    let mut protected = Router::new();
    for (info, handler) in routes() {
        match info.access {
            Access::Public => public = public.route(info.path, handler),
            Access::Authenticated => protected = protected.route(info.path, handler),
        }
    }
    let protected = protected.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::authenticate,
    ));
    Router::new()
        .merge(public)
        .merge(protected)
        .merge(console::router())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn(middleware::run_to_completion))
        .layer(DefaultBodyLimit::max(state.config.body_limit_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::rate_limit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::security_headers,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::request_context,
        ))
        .with_state(state)
}

/// The router of the separate metrics listener: `GET /metrics` without
/// authentication (a scraper on a private address), nothing else.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(state): State<AppState>| async move { metrics::render(&state).await }),
        )
        .fallback(|| async { ApiError::NotFound })
        .with_state(state)
}
