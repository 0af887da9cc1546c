//! Starts the real daemon on 127.0.0.1:0 with a temporary data dir, on its own thread
//! under its own actix System, and gives tests a ready HTTP client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use palyra::settings::Settings;
use reqwest::header::{COOKIE, HeaderMap, SET_COOKIE};
use serde_json::Value;
use tempfile::TempDir;

/// The admin token every test daemon uses.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdefghijklmnop";

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub dir: Arc<TempDir>,
    pub settings: Settings,
    /// No cookie store, no redirects: tests see exactly what the daemon sends.
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), palyra::StartError>>>,
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

pub fn test_settings(dir: &TempDir) -> Settings {
    let mut s = Settings::defaults();
    s.server.bind = "127.0.0.1:0".into();
    s.server.admin_token = Some(palyra_actors::SecretString::new(ADMIN_TOKEN.into()));
    s.server.shutdown_grace_s = 5;
    s.storage.data_dir = Some(dir.path().join("data"));
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
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon_settings = settings.clone();
    let thread = std::thread::spawn(move || {
        palyra::run_daemon(
            daemon_settings,
            secrets,
            move |app| {
                let _ = ready_tx.send(app.local_addr());
            },
            async move {
                let _ = stop_rx.await;
            },
        )
    });
    let addr = match ready_rx.await {
        Ok(addr) => addr,
        Err(_) => {
            let result = tokio::task::spawn_blocking(move || thread.join())
                .await
                .expect("join");
            return Err(result
                .expect("daemon thread panicked")
                .expect_err("daemon stopped before ready"));
        }
    };
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Ok(TestApp {
        addr,
        base: format!("http://{addr}"),
        dir,
        settings,
        http,
        stop: Some(stop_tx),
        thread: Some(thread),
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
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .expect("join")
                .expect("daemon thread panicked")
                .expect("daemon exits cleanly");
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
        Login {
            cookie,
            csrf: body["csrf_token"].as_str().unwrap().to_owned(),
            body,
            request_id,
        }
    }

    /// GET /console/v1/auth/session with a cookie; returns the status.
    pub async fn session_status(&self, cookie: &str) -> u16 {
        self.http
            .get(self.url("/console/v1/auth/session"))
            .header(COOKIE, format!("palyra_console_session={cookie}"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
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

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
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

/// palyrad as a child process (for kills, signals and log inspection).
pub struct ChildDaemon {
    pub child: tokio::process::Child,
    pub base: String,
    /// Everything the daemon wrote to stderr so far.
    pub log: Arc<std::sync::Mutex<String>>,
}

/// Starts the palyrad binary on `data_dir` with JSON logs, waits until it listens.
pub async fn start_child(data_dir: &std::path::Path, env: &[(&str, &str)]) -> ChildDaemon {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_palyrad"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--bind", "127.0.0.1:0", "--log-format", "json"])
        .env("PALYRA_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("palyrad starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let log = Arc::new(std::sync::Mutex::new(String::new()));
    let addr = loop {
        let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
            .await
            .expect("palyrad logs within 30 s")
            .unwrap()
            .expect("palyrad exited before listening");
        log.lock().unwrap().push_str(&line);
        log.lock().unwrap().push('\n');
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if event["fields"]["message"] == "palyrad listening" {
            break event["fields"]["addr"].as_str().unwrap().to_owned();
        }
    };
    // Keep draining the log so the daemon never blocks on a full pipe.
    let sink = Arc::clone(&log);
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    ChildDaemon {
        child,
        base: format!("http://{addr}"),
        log,
    }
}

impl ChildDaemon {
    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(std::time::Duration::from_secs(30), self.child.wait())
            .await
            .expect("palyrad exits within 30 s of SIGTERM")
            .unwrap();
        // Let the drain task take the last lines.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let log = self.log.lock().unwrap().clone();
        (exit, log)
    }
}
