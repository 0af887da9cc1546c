//! `ControlPlaneClient`: the typed client of the admin API, used by the CLI and tests.

use std::path::Path;

// Operators, tokens and password login, in their own file.
pub mod notifications;
pub mod oauth_client_secret;
pub mod operators;
pub mod pin;
// The usage report.
pub mod usage;

use palyra_actors::audit::AuditPage;
use palyra_actors::browser::{
    BrowserSessionInfo, BrowserSessionList, NavigationResult, PageContent, PageState,
};
use palyra_actors::objectives::{
    AgentPage, AgentRecord, ObjectivePage, ObjectiveRecord, RunPage, RunRecord,
};
use palyra_actors::refresher::RefreshReport;
use palyra_actors::registry::oauth_flow::{SignInOutcome, SignInStarted};
use palyra_actors::registry::{
    AuthHealthReport, AuthProfile, ProfilePage, ResolveAnswer, RotationReport,
};
use palyra_actors::{ConsoleSession, SecretString};
use palyra_http::routes::browser::{
    ClickRequest, CreateBrowserSessionRequest, NavigateRequest, TypeRequest,
};
use palyra_http::routes::console_auth::HandoffResponse;
use palyra_http::routes::deployment::{AuditParams, DeploymentPostureSummary};
use palyra_http::routes::oauth::BootstrapRequest;
use palyra_http::routes::objectives::{LifecycleRequest, ObjectiveQuery, PageQuery, RunQuery};
use palyra_http::routes::profiles::{CreateProfileRequest, ListQuery, ResolveQuery};
use reqwest::{Method, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Default daemon URL.
pub const DEFAULT_URL: &str = "http://127.0.0.1:7142";

/// What a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the daemon at {url}: {source}")]
    Transport { url: String, source: reqwest::Error },
    /// The TLS handshake failed for a reason an operator can act on.
    #[error("TLS with the daemon at {url} failed: {problem}")]
    Tls { url: String, problem: String },
    #[error("the daemon answered {status}: {message} ({code})")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
    },
    #[error("no admin token: set PALYRA_ADMIN_TOKEN or run on the daemon's host (looked for {0})")]
    NoToken(String),
    #[error("unexpected answer from the daemon: {0}")]
    Protocol(String),
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// A console session held by the client: the cookie and the CSRF token.
#[derive(Debug)]
pub struct ClientSession {
    /// The cookie's name: `__Host-` prefixed when the daemon serves TLS.
    pub cookie_name: String,
    pub cookie: SecretString,
    pub session: ConsoleSession,
}

/// Probe answers.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct ProbeStatus {
    pub status: String,
}

/// How the client authenticates its requests. `Debug` shows the kind only.
#[derive(Clone)]
enum Auth {
    /// The admin token as a bearer token (scripts, the CLI).
    Bearer(SecretString),
    /// A console session: the cookie, plus the CSRF token on every request (the daemon
    /// refuses a cookie without it, reads included).
    Session {
        name: String,
        cookie: SecretString,
        csrf: String,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::Bearer(_) => "Bearer([redacted])",
            Auth::Session { .. } => "Session([redacted])",
        })
    }
}

/// Typed client of `/console/v1`: one method per endpoint, request and response types
/// shared with the server, errors decoded into [`ClientError::Api`] with the server's
/// code and message. Authenticates with the admin token as a bearer token, or with a
/// console session after [`ControlPlaneClient::use_session`].
#[derive(Debug, Clone)]
pub struct ControlPlaneClient {
    base_url: String,
    http: reqwest::Client,
    admin_token: Option<SecretString>,
    auth: Option<Auth>,
}

impl ControlPlaneClient {
    pub fn new(base_url: &str, admin_token: Option<SecretString>) -> Self {
        Self::with_http(
            base_url,
            admin_token,
            Self::http_builder().build().unwrap_or_default(),
        )
    }

    /// A client of a daemon serving TLS with a certificate signed by `ca_pem` (a
    /// self-signed certificate is its own CA), besides the system's roots.
    pub fn with_ca_cert(
        base_url: &str,
        admin_token: Option<SecretString>,
        ca_pem: &[u8],
    ) -> Result<Self, ClientError> {
        let cert = reqwest::Certificate::from_pem(ca_pem)
            .map_err(|e| ClientError::Protocol(format!("CA certificate: {e}")))?;
        let http = Self::http_builder()
            .add_root_certificate(cert)
            .build()
            .map_err(|e| ClientError::Protocol(format!("HTTP client: {e}")))?;
        Ok(Self::with_http(base_url, admin_token, http))
    }

    /// A client of a daemon serving TLS that trusts exactly the certificate whose
    /// SHA-256 fingerprint is `pin` (`sha256:...`, as the daemon logs it at start).
    pub fn with_tls_pin(
        base_url: &str,
        admin_token: Option<SecretString>,
        pin: &str,
    ) -> Result<Self, ClientError> {
        let config = pin::pinned_config(pin::TlsPin::parse(pin)?)?;
        let http = Self::http_builder()
            .use_preconfigured_tls(config)
            .build()
            .map_err(|e| ClientError::Protocol(format!("HTTP client: {e}")))?;
        Ok(Self::with_http(base_url, admin_token, http))
    }

    fn http_builder() -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(30))
    }

    fn with_http(base_url: &str, admin_token: Option<SecretString>, http: reqwest::Client) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            http,
            auth: admin_token.clone().map(Auth::Bearer),
            admin_token,
        }
    }

    /// Authenticates later requests with a console session (cookie and CSRF token)
    /// instead of the bearer token.
    pub fn use_session(&mut self, session: &ClientSession) {
        self.auth = Some(Auth::Session {
            name: session.cookie_name.clone(),
            cookie: session.cookie.clone(),
            csrf: session.session.csrf_token.clone(),
        });
    }

    /// Adds this client's authentication to a request.
    fn authed(&self, method: Method, path: &str) -> Result<reqwest::RequestBuilder, ClientError> {
        let req = self.http.request(method, self.url(path));
        Ok(match &self.auth {
            Some(Auth::Bearer(token)) => req.bearer_auth(token.expose()),
            Some(Auth::Session { name, cookie, csrf }) => req
                .header(header::COOKIE, format!("{name}={}", cookie.expose()))
                .header("x-palyra-csrf-token", csrf),
            None => return Err(ClientError::NoToken("no token given".into())),
        })
    }

    /// The admin token from `PALYRA_ADMIN_TOKEN`, else from `<data_dir>/admin.token`.
    pub fn find_admin_token(
        env: Option<String>,
        data_dir: Option<&Path>,
    ) -> Result<SecretString, ClientError> {
        if let Some(token) = env.filter(|t| !t.is_empty()) {
            return Ok(SecretString::new(token));
        }
        let dir = match data_dir {
            Some(d) => d.to_owned(),
            None => crate::application::default_data_dir()
                .map_err(|e| ClientError::NoToken(e.to_string()))?,
        };
        let path = dir.join(crate::application::ADMIN_TOKEN_FILE);
        std::fs::read_to_string(&path)
            .map(|t| SecretString::new(t.trim().to_owned()))
            .map_err(|_| ClientError::NoToken(path.display().to_string()))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    fn token(&self) -> Result<&SecretString, ClientError> {
        self.admin_token
            .as_ref()
            .ok_or_else(|| ClientError::NoToken("no token given".into()))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let response =
            req.send()
                .await
                .map_err(|source| match operators::tls_problem(&source) {
                    Some(problem) => ClientError::Tls {
                        url: self.base_url.clone(),
                        problem,
                    },
                    None => ClientError::Transport {
                        url: self.base_url.clone(),
                        source,
                    },
                })?;
        if response.status().is_success() || response.status().is_redirection() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ErrorEnvelope>(&text) {
            Ok(env) => ClientError::Api {
                status,
                code: env.error.code,
                message: env.error.message,
            },
            Err(_) => ClientError::Api {
                status,
                code: "unknown".into(),
                message: text.chars().take(200).collect(),
            },
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        response: reqwest::Response,
    ) -> Result<T, ClientError> {
        response
            .json()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, ClientError> {
        let mut req = self.authed(method, path)?;
        if let Some(body) = body {
            req = req.json(&body);
        }
        let response = self.send(req).await?;
        self.json(response).await
    }

    async fn call_no_content(&self, method: Method, path: &str) -> Result<(), ClientError> {
        self.send(self.authed(method, path)?).await.map(drop)
    }

    /// `GET /console/v1/auth/session` (needs a session).
    pub async fn session(&self) -> Result<palyra_actors::sessions::SessionView, ClientError> {
        self.call(Method::GET, "/console/v1/auth/session", None)
            .await
    }

    /// `GET /console/v1/auth/profiles`.
    pub async fn list_profiles(&self, query: &ListQuery) -> Result<ProfilePage, ClientError> {
        let qs = serde_urlencoded(query)?;
        self.call(Method::GET, &format!("/console/v1/auth/profiles{qs}"), None)
            .await
    }

    /// `GET /console/v1/auth/profiles/{id}`.
    pub async fn get_profile(&self, profile_id: &str) -> Result<AuthProfile, ClientError> {
        self.call(
            Method::GET,
            &format!("/console/v1/auth/profiles/{}", path_segment(profile_id)),
            None,
        )
        .await
    }

    /// `POST /console/v1/auth/profiles`: create or replace.
    pub async fn create_profile(
        &self,
        request: &CreateProfileRequest,
    ) -> Result<AuthProfile, ClientError> {
        let body =
            serde_json::to_value(request).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.call(Method::POST, "/console/v1/auth/profiles", Some(body))
            .await
    }

    /// `DELETE /console/v1/auth/profiles/{id}`.
    pub async fn delete_profile(&self, profile_id: &str) -> Result<(), ClientError> {
        self.call_no_content(
            Method::DELETE,
            &format!("/console/v1/auth/profiles/{}", path_segment(profile_id)),
        )
        .await
    }

    /// `POST /console/v1/auth/profiles/{id}/default`.
    pub async fn set_default_profile(&self, profile_id: &str) -> Result<AuthProfile, ClientError> {
        self.call(
            Method::POST,
            &format!(
                "/console/v1/auth/profiles/{}/default",
                path_segment(profile_id)
            ),
            None,
        )
        .await
    }

    /// `GET /console/v1/auth/health`.
    pub async fn auth_health(&self) -> Result<AuthHealthReport, ClientError> {
        self.call(Method::GET, "/console/v1/auth/health", None)
            .await
    }

    /// `GET /console/v1/auth/resolve`.
    pub async fn resolve_profile(
        &self,
        query: &ResolveQuery,
    ) -> Result<ResolveAnswer, ClientError> {
        let qs = serde_urlencoded(query)?;
        self.call(Method::GET, &format!("/console/v1/auth/resolve{qs}"), None)
            .await
    }

    /// `POST /console/v1/auth/providers/{provider}/bootstrap`: starts an OAuth sign-in.
    pub async fn bootstrap_sign_in(
        &self,
        provider: &str,
        request: &BootstrapRequest,
    ) -> Result<SignInStarted, ClientError> {
        let body =
            serde_json::to_value(request).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.call(
            Method::POST,
            &format!(
                "/console/v1/auth/providers/{}/bootstrap",
                path_segment(provider)
            ),
            Some(body),
        )
        .await
    }

    /// `POST /console/v1/auth/providers/{provider}/device`: a device sign-in (RFC 8628).
    pub async fn begin_device_sign_in(
        &self,
        provider: &str,
        request: &BootstrapRequest,
    ) -> Result<palyra_actors::registry::oauth_device::DeviceSignInStarted, ClientError> {
        let body =
            serde_json::to_value(request).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.call(
            Method::POST,
            &format!(
                "/console/v1/auth/providers/{}/device",
                path_segment(provider)
            ),
            Some(body),
        )
        .await
    }

    /// `GET /console/v1/auth/providers/{provider}/callback-state`.
    pub async fn sign_in_state(
        &self,
        provider: &str,
        attempt_id: &str,
    ) -> Result<SignInOutcome, ClientError> {
        let qs = serde_urlencoded(&serde_json::json!({ "attempt_id": attempt_id }))?;
        self.call(
            Method::GET,
            &format!(
                "/console/v1/auth/providers/{}/callback-state{qs}",
                path_segment(provider)
            ),
            None,
        )
        .await
    }

    /// `POST /console/v1/auth/providers/{provider}/manual-callback`: completes a
    /// sign-in from the redirect URL the operator pasted.
    pub async fn complete_sign_in_manually(
        &self,
        provider: &str,
        redirect_url: &SecretString,
    ) -> Result<SignInOutcome, ClientError> {
        let body = serde_json::json!({ "redirect_url": redirect_url.expose() });
        self.call(
            Method::POST,
            &format!(
                "/console/v1/auth/providers/{}/manual-callback",
                path_segment(provider)
            ),
            Some(body),
        )
        .await
    }

    /// `POST /console/v1/auth/profiles/{id}/refresh`.
    pub async fn refresh_profile(&self, profile_id: &str) -> Result<RefreshReport, ClientError> {
        self.call(
            Method::POST,
            &format!(
                "/console/v1/auth/profiles/{}/refresh",
                path_segment(profile_id)
            ),
            None,
        )
        .await
    }

    /// `GET /console/v1/agents`.
    pub async fn list_agents(&self, query: &PageQuery) -> Result<AgentPage, ClientError> {
        let qs = serde_urlencoded(query)?;
        self.call(Method::GET, &format!("/console/v1/agents{qs}"), None)
            .await
    }

    /// `GET /console/v1/agents/{id}`.
    pub async fn get_agent(&self, agent_id: &str) -> Result<AgentRecord, ClientError> {
        self.call(
            Method::GET,
            &format!("/console/v1/agents/{}", path_segment(agent_id)),
            None,
        )
        .await
    }

    /// `POST /console/v1/agents`.
    pub async fn create_agent(&self, body: serde_json::Value) -> Result<AgentRecord, ClientError> {
        self.call(Method::POST, "/console/v1/agents", Some(body))
            .await
    }

    /// `PATCH /console/v1/agents/{id}`.
    pub async fn update_agent(
        &self,
        agent_id: &str,
        patch: serde_json::Value,
    ) -> Result<AgentRecord, ClientError> {
        self.call(
            Method::PATCH,
            &format!("/console/v1/agents/{}", path_segment(agent_id)),
            Some(patch),
        )
        .await
    }

    /// `DELETE /console/v1/agents/{id}`.
    pub async fn delete_agent(&self, agent_id: &str) -> Result<(), ClientError> {
        self.call_no_content(
            Method::DELETE,
            &format!("/console/v1/agents/{}", path_segment(agent_id)),
        )
        .await
    }

    /// `GET /console/v1/objectives`.
    pub async fn list_objectives(
        &self,
        query: &ObjectiveQuery,
    ) -> Result<ObjectivePage, ClientError> {
        let qs = serde_urlencoded(query)?;
        self.call(Method::GET, &format!("/console/v1/objectives{qs}"), None)
            .await
    }

    /// `GET /console/v1/objectives/{id}`.
    pub async fn get_objective(&self, objective_id: &str) -> Result<ObjectiveRecord, ClientError> {
        self.call(
            Method::GET,
            &format!("/console/v1/objectives/{}", path_segment(objective_id)),
            None,
        )
        .await
    }

    /// `POST /console/v1/objectives`.
    pub async fn create_objective(
        &self,
        body: serde_json::Value,
    ) -> Result<ObjectiveRecord, ClientError> {
        self.call(Method::POST, "/console/v1/objectives", Some(body))
            .await
    }

    /// `PATCH /console/v1/objectives/{id}`.
    pub async fn update_objective(
        &self,
        objective_id: &str,
        patch: serde_json::Value,
    ) -> Result<ObjectiveRecord, ClientError> {
        self.call(
            Method::PATCH,
            &format!("/console/v1/objectives/{}", path_segment(objective_id)),
            Some(patch),
        )
        .await
    }

    /// `POST /console/v1/objectives/{id}/lifecycle`.
    pub async fn objective_lifecycle(
        &self,
        objective_id: &str,
        request: &LifecycleRequest,
    ) -> Result<ObjectiveRecord, ClientError> {
        let body =
            serde_json::to_value(request).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.call(
            Method::POST,
            &format!(
                "/console/v1/objectives/{}/lifecycle",
                path_segment(objective_id)
            ),
            Some(body),
        )
        .await
    }

    /// `GET /console/v1/objectives/{id}/runs`.
    pub async fn objective_runs(
        &self,
        objective_id: &str,
        query: &RunQuery,
    ) -> Result<RunPage, ClientError> {
        let qs = serde_urlencoded(query)?;
        self.call(
            Method::GET,
            &format!(
                "/console/v1/objectives/{}/runs{qs}",
                path_segment(objective_id)
            ),
            None,
        )
        .await
    }

    /// `POST /console/v1/objectives/{id}/runs/{run_id}/cancel`.
    pub async fn cancel_run(
        &self,
        objective_id: &str,
        run_id: &str,
    ) -> Result<RunRecord, ClientError> {
        self.call(
            Method::POST,
            &format!(
                "/console/v1/objectives/{}/runs/{}/cancel",
                path_segment(objective_id),
                path_segment(run_id)
            ),
            None,
        )
        .await
    }

    /// `POST /console/v1/vault/rotate-key`.
    pub async fn rotate_vault_key(&self) -> Result<RotationReport, ClientError> {
        self.call(Method::POST, "/console/v1/vault/rotate-key", None)
            .await
    }

    /// `GET /console/v1/cluster`.
    pub async fn cluster(&self) -> Result<palyra_actors::cluster::ClusterStatus, ClientError> {
        self.call(Method::GET, "/console/v1/cluster", None).await
    }

    /// `GET /console/v1/deployment/posture`.
    pub async fn posture(&self) -> Result<DeploymentPostureSummary, ClientError> {
        self.call(Method::GET, "/console/v1/deployment/posture", None)
            .await
    }

    /// `GET /console/v1/audit`.
    pub async fn audit(&self, query: &AuditParams) -> Result<AuditPage, ClientError> {
        let qs = serde_urlencoded(query)?;
        self.call(Method::GET, &format!("/console/v1/audit{qs}"), None)
            .await
    }

    /// `GET /metrics`: the OpenMetrics text.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let response = self.send(self.authed(Method::GET, "/metrics")?).await?;
        response
            .text()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// `GET /healthz`.
    pub async fn healthz(&self) -> Result<ProbeStatus, ClientError> {
        let response = self.send(self.http.get(self.url("/healthz"))).await?;
        self.json(response).await
    }

    /// `GET /readyz`; a 503 is an answer, not an error.
    pub async fn readyz(&self) -> Result<ProbeStatus, ClientError> {
        match self.send(self.http.get(self.url("/readyz"))).await {
            Ok(response) => self.json(response).await,
            Err(ClientError::Api { status, .. }) if status == StatusCode::SERVICE_UNAVAILABLE => {
                Ok(ProbeStatus {
                    status: "not_ready".into(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Logs in with the admin token (a `root` session); returns the session cookie and
    /// the session.
    pub async fn login(&self, device_id: Option<&str>) -> Result<ClientSession, ClientError> {
        let body = serde_json::json!({
            "admin_token": self.token()?.expose(),
            "device_id": device_id,
        });
        let response = self
            .send(
                self.http
                    .post(self.url("/console/v1/auth/login"))
                    .json(&body),
            )
            .await?;
        let (cookie_name, cookie) = session_cookie(&response)?;
        let session: ConsoleSession = self.json(response).await?;
        Ok(ClientSession {
            cookie_name,
            cookie,
            session,
        })
    }

    /// Revokes a session obtained by [`Self::login`] (with its cookie and CSRF token).
    pub async fn logout(&self, session: &ClientSession) -> Result<(), ClientError> {
        let req = self
            .http
            .post(self.url("/console/v1/auth/logout"))
            .header(
                header::COOKIE,
                format!("{}={}", session.cookie_name, session.cookie.expose()),
            )
            .header("x-palyra-csrf-token", &session.session.csrf_token);
        self.send(req).await.map(drop)
    }

    /// Mints a browser handoff link.
    pub async fn create_browser_handoff(
        &self,
        redirect_path: Option<&str>,
    ) -> Result<HandoffResponse, ClientError> {
        let body = serde_json::json!({ "redirect_path": redirect_path });
        self.call(Method::POST, "/console/v1/auth/browser-handoff", Some(body))
            .await
    }

    /// Sends a browser request that may wait for a page to load: it may take up to
    /// the daemon's navigation timeout (at most 600 s), longer than other calls.
    async fn browser_call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, ClientError> {
        let mut req = self
            .authed(method, path)?
            .timeout(std::time::Duration::from_secs(630));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let response = self.send(req).await?;
        self.json(response).await
    }

    /// `POST /console/v1/browser/sessions`: starts a headless browser session.
    pub async fn create_browser_session(
        &self,
        request: &CreateBrowserSessionRequest,
    ) -> Result<BrowserSessionInfo, ClientError> {
        let body =
            serde_json::to_value(request).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.browser_call(Method::POST, "/console/v1/browser/sessions", Some(body))
            .await
    }

    /// `GET /console/v1/browser/sessions`.
    pub async fn list_browser_sessions(&self) -> Result<BrowserSessionList, ClientError> {
        self.call(Method::GET, "/console/v1/browser/sessions", None)
            .await
    }

    /// `GET /console/v1/browser/sessions/{id}`.
    pub async fn get_browser_session(
        &self,
        session_id: &str,
    ) -> Result<BrowserSessionInfo, ClientError> {
        self.call(Method::GET, &browser_path(session_id, ""), None)
            .await
    }

    /// `DELETE /console/v1/browser/sessions/{id}`.
    pub async fn close_browser_session(&self, session_id: &str) -> Result<(), ClientError> {
        self.call_no_content(Method::DELETE, &browser_path(session_id, ""))
            .await
    }

    /// `POST /console/v1/browser/sessions/{id}/navigate`: loads a URL.
    pub async fn navigate_browser_session(
        &self,
        session_id: &str,
        url: &str,
    ) -> Result<NavigationResult, ClientError> {
        let body = serde_json::to_value(NavigateRequest {
            url: url.to_owned(),
        })
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.browser_call(
            Method::POST,
            &browser_path(session_id, "/navigate"),
            Some(body),
        )
        .await
    }

    /// `POST /console/v1/browser/sessions/{id}/click`: clicks the first match.
    pub async fn click_browser_session(
        &self,
        session_id: &str,
        selector: &str,
    ) -> Result<PageState, ClientError> {
        let body = serde_json::to_value(ClickRequest {
            selector: selector.to_owned(),
        })
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.browser_call(
            Method::POST,
            &browser_path(session_id, "/click"),
            Some(body),
        )
        .await
    }

    /// `POST /console/v1/browser/sessions/{id}/type`: types into the first match.
    pub async fn type_browser_session(
        &self,
        session_id: &str,
        selector: &str,
        text: &str,
    ) -> Result<PageState, ClientError> {
        let body = serde_json::to_value(TypeRequest {
            selector: selector.to_owned(),
            text: text.to_owned(),
        })
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.browser_call(Method::POST, &browser_path(session_id, "/type"), Some(body))
            .await
    }

    /// `GET /console/v1/browser/sessions/{id}/screenshot`: the viewport as PNG bytes.
    pub async fn browser_screenshot(&self, session_id: &str) -> Result<Vec<u8>, ClientError> {
        let response = self
            .send(self.authed(Method::GET, &browser_path(session_id, "/screenshot"))?)
            .await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(bytes.to_vec())
    }

    /// `GET /console/v1/browser/sessions/{id}/content`: the page's text.
    pub async fn browser_content(&self, session_id: &str) -> Result<PageContent, ClientError> {
        self.call(Method::GET, &browser_path(session_id, "/content"), None)
            .await
    }
}

/// `/console/v1/browser/sessions/{id}{rest}`.
fn browser_path(session_id: &str, rest: &str) -> String {
    format!(
        "/console/v1/browser/sessions/{}{rest}",
        path_segment(session_id)
    )
}

/// The session cookie's name and value from a login answer.
fn session_cookie(response: &reqwest::Response) -> Result<(String, SecretString), ClientError> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| {
            *name == palyra_http::auth::SESSION_COOKIE
                || *name == palyra_http::auth::SECURE_SESSION_COOKIE
        })
        .map(|(name, value)| (name.to_owned(), SecretString::new(value.to_owned())))
        .ok_or_else(|| ClientError::Protocol("login answered without a session cookie".into()))
}

/// `?a=1&b=2` from a query struct (absent fields left out), or the empty string.
pub(crate) fn serde_urlencoded<T: serde::Serialize>(query: &T) -> Result<String, ClientError> {
    let value = serde_json::to_value(query).map_err(|e| ClientError::Protocol(e.to_string()))?;
    let mut url = url::Url::parse("http://x/").map_err(|e| ClientError::Protocol(e.to_string()))?;
    if let serde_json::Value::Object(map) = value {
        let mut pairs = url.query_pairs_mut();
        for (key, value) in map {
            match value {
                serde_json::Value::Null => {}
                serde_json::Value::String(s) => {
                    pairs.append_pair(&key, &s);
                }
                other => {
                    pairs.append_pair(&key, &other.to_string());
                }
            }
        }
    }
    Ok(url
        .query()
        .filter(|q| !q.is_empty())
        .map(|q| format!("?{q}"))
        .unwrap_or_default())
}

/// A path segment, percent-encoded.
fn path_segment(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}
