//! Starts the real daemon (the test kit's in-process or child daemon) on 127.0.0.1:0
//! with a temporary data dir, and gives tests a ready HTTP client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};

use palyra::settings::Settings;
use palyra::testkit::child::ChildDaemon;
use palyra::testkit::daemon::{DaemonError, InProcessDaemon};
use reqwest::header::{COOKIE, HeaderMap, SET_COOKIE};
use serde_json::Value;
use tempfile::TempDir;

/// The admin token every test daemon uses.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdefghijklmnop";

pub struct TestApp {
    /// First, so that it is dropped (stopped, its thread joined) before `dir`.
    daemon: Option<InProcessDaemon>,
    pub addr: SocketAddr,
    pub base: String,
    pub dir: Arc<TempDir>,
    pub settings: Settings,
    /// No cookie store, no redirects: tests see exactly what the daemon sends.
    pub http: reqwest::Client,
}

/// A logged-in console session as a browser would hold it.
#[derive(Debug, Clone)]
pub struct Login {
    pub cookie: String,
    pub csrf: String,
    pub body: Value,
    /// The login response's `x-request-id`.
    pub request_id: String,
}

impl Login {
    pub fn cookie_header(&self) -> String {
        format!("palyra_console_session={}", self.cookie)
    }
}

/// The CSRF token of every session a test obtained (login, handoff), by cookie value:
/// the daemon refuses a cookie without its token on every request, reads included, and
/// the test kit's cookie requests send it by themselves, as the console does from
/// sessionStorage. Process-wide, as cookies are random and nodes of a cluster share
/// their sessions.
static CSRF_BY_COOKIE: LazyLock<Mutex<HashMap<String, String>>> = LazyLock::new(Default::default);

/// Remembers the CSRF token of a session's cookie.
pub fn remember_csrf(cookie: &str, csrf: &str) {
    CSRF_BY_COOKIE
        .lock()
        .unwrap()
        .insert(cookie.to_owned(), csrf.to_owned());
}

/// The CSRF token remembered for a cookie.
pub fn csrf_for(cookie: &str) -> Option<String> {
    CSRF_BY_COOKIE.lock().unwrap().get(cookie).cloned()
}

/// Adds a session's cookie and, if remembered, its CSRF token to a request.
pub fn with_cookie(request: reqwest::RequestBuilder, cookie: &str) -> reqwest::RequestBuilder {
    let request = request.header(COOKIE, format!("palyra_console_session={cookie}"));
    match csrf_for(cookie) {
        Some(csrf) => request.header("x-palyra-csrf-token", csrf),
        None => request,
    }
}

pub fn test_settings(dir: &TempDir) -> Settings {
    let mut s = Settings::defaults();
    s.server.bind = "127.0.0.1:0".into();
    s.server.admin_token = Some(palyra_actors::SecretString::new(ADMIN_TOKEN.into()));
    s.server.shutdown_grace_s = 5;
    s.storage.data_dir = Some(dir.path().join("data"));
    if palyra::testkit::postgres::enabled() {
        // A fresh database for every test, found again when the test restarts the
        // daemon on the same data dir.
        s.storage.backend = palyra::settings::StorageBackend::Postgres;
        s.storage.url = Some(palyra_actors::SecretString::new(
            palyra::testkit::postgres::database_for(&dir.path().join("data")),
        ));
    }
    s.sessions.tick_interval_s = 1;
    s
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let mut settings = test_settings(&dir);
    tweak(&mut settings);
    start(dir, settings).await.expect("daemon starts")
}

pub async fn start(dir: Arc<TempDir>, settings: Settings) -> Result<TestApp, palyra::StartError> {
    start_with(dir, settings, palyra::application::EnvSecrets::default()).await
}

/// Starts a daemon with secrets as if from the environment (`PALYRA_VAULT_KEY`, ...).
pub async fn start_with(
    dir: Arc<TempDir>,
    settings: Settings,
    secrets: palyra::application::EnvSecrets,
) -> Result<TestApp, palyra::StartError> {
    let daemon = match InProcessDaemon::start(settings.clone(), secrets).await {
        Ok(daemon) => daemon,
        Err(DaemonError::Failed(e)) => return Err(e),
        Err(e) => panic!("the daemon did not start: {e}"),
    };
    let addr = daemon.addr();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Ok(TestApp {
        daemon: Some(daemon),
        addr,
        base: format!("http://{addr}"),
        dir,
        settings,
        http,
    })
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the daemon gracefully and waits until its database is closed.
    pub async fn stop(mut self) -> (Arc<TempDir>, Settings) {
        self.shutdown().await;
        (Arc::clone(&self.dir), self.settings.clone())
    }

    async fn shutdown(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            daemon.stop().await.expect("daemon exits cleanly");
        }
    }

    /// Stops the daemon and starts a new one on the same data dir and settings.
    pub async fn restart(self) -> TestApp {
        let (dir, settings) = self.stop().await;
        start(dir, settings).await.expect("daemon restarts")
    }

    pub async fn login(&self) -> Login {
        let response = self
            .http
            .post(self.url("/console/v1/auth/login"))
            .json(&serde_json::json!({ "admin_token": ADMIN_TOKEN }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "login");
        let cookie = session_cookie(response.headers()).expect("session cookie");
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body: Value = response.json().await.unwrap();
        let csrf = body["csrf_token"].as_str().unwrap().to_owned();
        remember_csrf(&cookie, &csrf);
        Login {
            cookie,
            csrf,
            body,
            request_id,
        }
    }

    /// GET /console/v1/auth/session with a cookie (and its CSRF token, if known);
    /// returns the status.
    pub async fn session_status(&self, cookie: &str) -> u16 {
        with_cookie(self.http.get(self.url("/console/v1/auth/session")), cookie)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Creates the runs' usual credential and agent: the default OpenAI API-key profile
    /// `p1` (not validated) and the agent `a1` on it with model `m`, with `agent`'s
    /// fields over those (a model, tools, caps, a budget).
    pub async fn seed_agent(&self, agent: Value) {
        let profile = self
            .bearer_post(
                "/console/v1/auth/profiles",
                serde_json::json!({ "profile_id": "p1", "provider": "openai", "profile_name": "P",
                        "credential": { "type": "api_key", "api_key": "good-model-key-1234" },
                        "validate": false, "set_default": true }),
            )
            .await;
        assert_eq!(profile.status(), 200, "{:?}", profile.text().await);
        let mut body =
            serde_json::json!({ "agent_id": "a1", "default_model_profile": "p1", "model": "m" });
        if let (Some(base), Some(over)) = (body.as_object_mut(), agent.as_object()) {
            base.extend(over.clone());
        }
        let created = self.bearer_post("/console/v1/agents", body).await;
        assert_eq!(created.status(), 200, "{:?}", created.text().await);
    }

    /// POSTs JSON with the admin bearer token.
    pub async fn bearer_post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// GETs with the admin bearer token, expects 200, returns the JSON body.
    pub async fn bearer_get_json(&self, path: &str) -> Value {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    /// Mints a handoff with the bearer token; returns the JSON body.
    pub async fn mint_handoff(&self, body: Value) -> reqwest::Response {
        self.http
            .post(self.url("/console/v1/auth/browser-handoff"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

/// The session cookie's value from a response's Set-Cookie headers.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|p| p.split_once('='))
        .find(|(n, _)| *n == "palyra_console_session")
        .map(|(_, v)| v.to_owned())
}

/// The error code of a JSON error body.
pub async fn error_code(response: reqwest::Response) -> String {
    let body: Value = response.json().await.expect("JSON error body");
    body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_owned()
}

/// Starts the palyrad binary on `data_dir` with the test admin token, JSON logs at
/// info and `env` on top, and waits until it listens.
pub async fn start_child(data_dir: &std::path::Path, env: &[(&str, &str)]) -> ChildDaemon {
    let mut all = vec![("PALYRA_ADMIN_TOKEN", ADMIN_TOKEN), ("RUST_LOG", "info")];
    let database;
    if palyra::testkit::postgres::enabled() {
        database = palyra::testkit::postgres::database_for(data_dir);
        all.push(("PALYRA_STORAGE__BACKEND", "postgres"));
        all.push(("PALYRA_STORAGE__URL", &database));
    }
    all.extend_from_slice(env);
    let palyrad = std::path::Path::new(env!("CARGO_BIN_EXE_palyrad"));
    ChildDaemon::start(palyrad, data_dir, &all, false)
        .await
        .unwrap_or_else(|e| panic!("palyrad starts: {e}"))
}

/// Every byte the daemon on `data_dir` stored: the redb file, or a dump of its
/// PostgreSQL database, to search for secrets in plaintext.
pub fn stored_bytes(data_dir: &std::path::Path) -> Vec<u8> {
    if palyra::testkit::postgres::enabled() {
        palyra::testkit::postgres::dump(&palyra::testkit::postgres::database_for(data_dir))
    } else {
        std::fs::read(data_dir.join(palyra_storage::DB_FILE)).expect("the database file")
    }
}

/// A handoff link redeemed as its page's button does it.
#[derive(Debug)]
pub struct Redeemed {
    pub status: u16,
    pub headers: HeaderMap,
    /// The session cookie, if one was set.
    pub cookie: Option<String>,
    /// The CSRF token the page hands the console, if any (remembered for the cookie).
    pub csrf: Option<String>,
    pub page: String,
}

/// Redeems a handoff link (`.../consume?token=...`) as a browser does after the link's
/// page: a form POST of the token to the same path, from the same origin.
pub async fn redeem_link(http: &reqwest::Client, url: &str) -> Redeemed {
    let (action, token) = url.split_once("?token=").expect("a handoff link");
    let response = http
        .post(action)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let cookie = session_cookie(&headers);
    let page = response.text().await.unwrap();
    let csrf = meta_content(&page, "palyra-csrf");
    if let (Some(cookie), Some(csrf)) = (&cookie, &csrf) {
        remember_csrf(cookie, csrf);
    }
    Redeemed {
        status,
        headers,
        cookie,
        csrf,
        page,
    }
}

/// The `content` of `<meta name="NAME" content="...">` in a page.
pub fn meta_content(page: &str, name: &str) -> Option<String> {
    let start = page.find(&format!("<meta name=\"{name}\" content=\""))?;
    let rest = &page[start..];
    let value = rest.split_once("content=\"")?.1;
    Some(value.split_once('"')?.0.to_owned())
}
