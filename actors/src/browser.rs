//! The browser actor: headless Chromium sessions driven through the DevTools protocol.
//!
//! Each session is one Chromium process with its own fresh profile directory, started
//! on demand (never at daemon start, so a host without Chromium still runs the
//! daemon) and ended on close, idle expiry or shutdown: one process per session keeps
//! profiles apart and makes a crash end one session, not all of them.
//!
//! The actor owns the table of live sessions (the limit, idle expiry, shutdown); the
//! DevTools work of one request runs on the caller's task through [`BrowserHandle`],
//! never inside the actor, and one request at a time per session. Every DevTools call
//! is bounded, and a session whose process or connection died answers
//! [`BrowserError::Gone`] at once and leaves the table.
//!
//! Every request the page makes (navigations, redirects, subresources) is paused by
//! the Fetch domain and checked against the [`policy::UrlPolicy`] before it may go on.

mod cdp;
pub mod policy;
mod process;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::time::{now_ms, to_datetime};
use cdp::{Cdp, CdpError, CdpEvent};
pub use policy::UrlPolicy;

/// How long one DevTools command other than a navigation may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long Chromium may take to open its DevTools endpoint.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// After a click, how long to watch for a navigation it may have started.
const CLICK_SETTLE: Duration = Duration::from_millis(400);
/// How often idle and dead sessions are looked for.
const TICK: Duration = Duration::from_millis(500);
/// Bounds of a viewport side, in CSS pixels.
pub const VIEWPORT_MIN: u32 = 100;
pub const VIEWPORT_MAX: u32 = 4096;

/// What the browser actor can answer instead of a result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrowserError {
    /// Browser sessions are turned off in the configuration.
    #[error("browser sessions are disabled (browser.enabled = false)")]
    Disabled,
    /// Chromium could not be started; the message says why (a missing binary, ...).
    #[error("{0}")]
    Unavailable(String),
    /// No live session has this id.
    #[error("no browser session with id {0:?}")]
    SessionNotFound(String),
    /// All allowed sessions are live.
    #[error("all {max} browser sessions are in use; close one or wait for one to expire")]
    SessionLimit { max: usize },
    /// A field of the request is not acceptable.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// A URL that does not parse.
    #[error("{field} is not a valid URL: {message}")]
    InvalidUrl {
        field: &'static str,
        message: String,
    },
    /// A scheme other than http and https.
    #[error("the {scheme}: scheme is refused; only http and https URLs can be opened")]
    SchemeRefused { scheme: String },
    /// A destination the policy refuses (private network, not on the allow-list).
    #[error("{url} is refused: {reason}")]
    DestinationRefused { url: String, reason: String },
    /// The host name resolves to no address.
    #[error("the host {host:?} does not resolve to any address")]
    Unresolvable { host: String },
    /// The selector matches no element.
    #[error("no element matches the selector {0:?}")]
    SelectorNotFound(String),
    /// The selector is not valid CSS.
    #[error("{0:?} is not a valid CSS selector")]
    InvalidSelector(String),
    /// The element exists but cannot take the action.
    #[error("the element matching {selector:?} cannot be {action}: {reason}")]
    NotInteractable {
        selector: String,
        action: &'static str,
        reason: String,
    },
    /// The page did not finish loading within the navigation timeout.
    #[error("the page did not finish loading within {0} s")]
    NavigationTimeout(u64),
    /// The page could not be loaded (connection refused, TLS error, ...).
    #[error("the page could not be loaded: {0}")]
    NavigationFailed(String),
    /// The browser did not answer a command in time (a page stuck in a script).
    #[error("the browser did not answer in time ({0})")]
    Unresponsive(String),
    /// The browser process exited or crashed; the session has been removed.
    #[error("the browser of session {0:?} exited or crashed; the session is closed")]
    Gone(String),
    /// The browser answered something this daemon does not understand.
    #[error("unexpected DevTools answer: {0}")]
    Protocol(String),
    /// The daemon is shutting down.
    #[error("the daemon is shutting down")]
    ShuttingDown,
}

/// Configuration of browser sessions.
#[derive(Debug, Clone)]
pub struct BrowserPolicy {
    pub enabled: bool,
    /// The Chromium executable (a path, or a name looked up in PATH).
    pub chromium_path: PathBuf,
    /// Where session profiles are created (`<data-dir>/browser`).
    pub profiles_root: PathBuf,
    pub urls: UrlPolicy,
    pub max_sessions: usize,
    pub idle_timeout: Duration,
    pub navigation_timeout: Duration,
    /// Most bytes of page text `content` returns.
    pub content_max_bytes: usize,
    pub default_viewport: Viewport,
}

/// Size of the page area, in CSS pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Viewport {
    #[schema(minimum = 100, maximum = 4096)]
    pub width: u32,
    #[schema(minimum = 100, maximum = 4096)]
    pub height: u32,
}

impl Viewport {
    fn validate(self) -> Result<Self, BrowserError> {
        for (field, value) in [
            ("viewport.width", self.width),
            ("viewport.height", self.height),
        ] {
            if !(VIEWPORT_MIN..=VIEWPORT_MAX).contains(&value) {
                return Err(BrowserError::Invalid {
                    field,
                    message: format!("must be between {VIEWPORT_MIN} and {VIEWPORT_MAX}"),
                });
            }
        }
        Ok(self)
    }
}

/// A live session as listed.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BrowserSessionInfo {
    pub session_id: String,
    /// The page's URL.
    pub url: String,
    /// The page's title.
    pub title: String,
    pub viewport: Viewport,
    pub created_at: DateTime<Utc>,
    /// The last request that used the session; it expires after the idle timeout.
    pub last_activity_at: DateTime<Utc>,
}

/// The live sessions.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BrowserSessionList {
    pub sessions: Vec<BrowserSessionInfo>,
    /// The configured limit of live sessions.
    pub max_sessions: usize,
}

/// Where a navigation ended.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NavigationResult {
    pub session_id: String,
    pub url: String,
    pub title: String,
    /// HTTP status of the main document, when it came over HTTP.
    pub status: Option<u16>,
}

/// The page after an action (click, type).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PageState {
    pub session_id: String,
    pub url: String,
    pub title: String,
    /// True when the action started a navigation (it has finished loading).
    pub navigated: bool,
}

/// The text of a page.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PageContent {
    pub session_id: String,
    pub url: String,
    pub title: String,
    /// The page's visible text (`innerText` of the body), at most `content_max_bytes`.
    pub text: String,
    /// True when the text was cut at the limit.
    pub truncated: bool,
}

/// What the event task learns about the page, read by requests.
#[derive(Debug, Default)]
struct PageWatch {
    url: String,
    title: String,
    /// The main frame is loading: from frameRequestedNavigation or frameStartedLoading
    /// to frameStoppedLoading.
    loading: bool,
    /// Counts navigations the main frame started or was asked to start.
    navigations: u64,
    /// HTTP status of main documents by loader id (the last few).
    statuses: Vec<(String, u16)>,
    /// The last main-document request the policy refused, with the reason.
    refused: Option<BrowserError>,
    /// The page's renderer crashed: the session cannot be used any more.
    crashed: bool,
}

/// One live session: its browser process, DevTools connection and page.
struct BrowserSession {
    id: String,
    created_at_ms: i64,
    viewport: Viewport,
    cdp: Cdp,
    /// DevTools session id of the attached page.
    page: String,
    /// Process id of the browser, which leads its own process group.
    pid: u32,
    profile_dir: PathBuf,
    /// True once the browser process has exited (set by its monitor task).
    exited: watch::Receiver<bool>,
    last_activity_ms: AtomicI64,
    /// One request at a time per session.
    busy: tokio::sync::Mutex<()>,
    watch: Arc<Mutex<PageWatch>>,
    /// Set by the first close, so a session is ended once.
    closing: AtomicBool,
}

impl std::fmt::Debug for BrowserSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserSession")
            .field("id", &self.id)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl BrowserSession {
    fn alive(&self) -> bool {
        !*self.exited.borrow() && !self.cdp.is_closed() && !lock(&self.watch).crashed
    }

    fn touch(&self) {
        self.last_activity_ms.store(now_ms(), Ordering::Relaxed);
    }

    fn info(&self) -> BrowserSessionInfo {
        let watch = lock(&self.watch);
        BrowserSessionInfo {
            session_id: self.id.clone(),
            url: watch.url.clone(),
            title: watch.title.clone(),
            viewport: self.viewport,
            created_at: to_datetime(self.created_at_ms),
            last_activity_at: to_datetime(self.last_activity_ms.load(Ordering::Relaxed)),
        }
    }

    /// A DevTools command to the page.
    async fn call(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, BrowserError> {
        self.cdp
            .call(Some(&self.page), method, params, timeout)
            .await
            .map_err(|e| self.cdp_error(e))
    }

    fn cdp_error(&self, e: CdpError) -> BrowserError {
        match e {
            CdpError::Closed => BrowserError::Gone(self.id.clone()),
            CdpError::Timeout { .. } if !self.alive() => BrowserError::Gone(self.id.clone()),
            CdpError::Timeout { method } => BrowserError::Unresponsive(method),
            CdpError::Command { .. } => BrowserError::Protocol(e.to_string()),
        }
    }

    /// Evaluates a script in the page and returns its value.
    async fn eval(&self, expression: &str, timeout: Duration) -> Result<Value, BrowserError> {
        let mut answer = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
                timeout,
            )
            .await?;
        if let Some(details) = answer.get("exceptionDetails") {
            return Err(BrowserError::Protocol(format!(
                "a script failed in the page: {}",
                details["exception"]["description"]
                    .as_str()
                    .or(details["text"].as_str())
                    .unwrap_or("unknown exception")
            )));
        }
        Ok(answer["result"]["value"].take())
    }

    /// The page's URL and title, from the page itself.
    async fn location(&self) -> Result<(String, String), BrowserError> {
        let value = self
            .eval(
                "({url: location.href, title: document.title})",
                COMMAND_TIMEOUT,
            )
            .await?;
        let url = value["url"].as_str().unwrap_or_default().to_owned();
        let title = value["title"].as_str().unwrap_or_default().to_owned();
        let mut watch = lock(&self.watch);
        watch.url.clone_from(&url);
        watch.title.clone_from(&title);
        Ok((url, title))
    }

    /// Waits until the main frame has stopped loading and its document is complete.
    async fn wait_for_load(&self, deadline: Instant, timeout_s: u64) -> Result<(), BrowserError> {
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(BrowserError::NavigationTimeout(timeout_s));
            }
            let state = match self
                .eval("document.readyState", remaining.min(COMMAND_TIMEOUT))
                .await
            {
                Ok(state) => state,
                // The document was replaced between two polls: ask again.
                Err(BrowserError::Protocol(_)) => Value::Null,
                Err(BrowserError::Unresponsive(_)) => {
                    return Err(BrowserError::NavigationTimeout(timeout_s));
                }
                Err(e) => return Err(e),
            };
            if state == "complete" && !lock(&self.watch).loading {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The error of a navigation the browser reported as failed: a refusal of our
    /// policy when it blocked the request, else the browser's own reason.
    fn navigation_error(&self, error_text: &str) -> BrowserError {
        if let Some(refused) = lock(&self.watch).refused.take() {
            return refused;
        }
        BrowserError::NavigationFailed(error_text.to_owned())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Handle to the browser actor. Cloning is shallow.
#[derive(Clone)]
pub struct BrowserHandle {
    addr: Addr<BrowserActor>,
    policy: Arc<BrowserPolicy>,
}

impl std::fmt::Debug for BrowserHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserHandle")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// A new session's options.
#[derive(Debug, Clone, Default)]
pub struct NewBrowserSession {
    pub start_url: Option<String>,
    pub viewport: Option<Viewport>,
}

impl BrowserHandle {
    /// Starts the actor inside the actix System. No browser starts here; browsers a
    /// killed daemon left behind are ended and their profiles removed.
    pub fn start(policy: BrowserPolicy, audit: crate::audit::AuditLog) -> Self {
        process::reap_leftovers(&policy.profiles_root);
        let actor = BrowserActor {
            audit,
            sessions: HashMap::new(),
            starting: 0,
            max_sessions: policy.max_sessions,
            idle_timeout_ms: i64::try_from(policy.idle_timeout.as_millis()).unwrap_or(i64::MAX),
            shutting_down: false,
        };
        Self {
            addr: actor.start(),
            policy: Arc::new(policy),
        }
    }

    /// Starts a browser for a new session and, with a start URL, loads it.
    ///
    /// The work runs in its own task: a caller that goes away half-way must not leave
    /// a browser, a profile or a reserved place behind (the session it creates then
    /// idles out like any other).
    pub async fn create(
        &self,
        request: NewBrowserSession,
    ) -> Result<BrowserSessionInfo, BrowserError> {
        let this = self.clone();
        tokio::spawn(async move { this.create_in_task(request).await })
            .await
            .map_err(|e| BrowserError::Protocol(format!("the session start failed: {e}")))?
    }

    async fn create_in_task(
        &self,
        request: NewBrowserSession,
    ) -> Result<BrowserSessionInfo, BrowserError> {
        if !self.policy.enabled {
            return Err(BrowserError::Disabled);
        }
        let viewport = request
            .viewport
            .unwrap_or(self.policy.default_viewport)
            .validate()?;
        let start_url = match &request.start_url {
            Some(raw) => Some(self.policy.urls.check_input("start_url", raw).await?),
            None => None,
        };
        self.send(Reserve).await??;
        let launched = self.launch(viewport).await;
        let session = match launched {
            Ok(session) => session,
            Err(e) => {
                self.addr.do_send(Release);
                return Err(e);
            }
        };
        if let Err(e) = self
            .send(Insert(Arc::clone(&session)))
            .await
            .and_then(|r| r)
        {
            close_session(session).await;
            return Err(e);
        }
        tracing::info!(session_id = %session.id, pid = session.pid, "browser session started");
        if let Some(url) = start_url {
            let navigated = {
                let _busy = session.busy.lock().await;
                self.navigate_in(&session, url).await
            };
            if let Err(e) = navigated {
                self.discard(&session.id).await;
                return Err(e);
            }
        }
        Ok(session.info())
    }

    /// The live sessions (dead ones are removed first).
    pub async fn list(&self) -> Result<BrowserSessionList, BrowserError> {
        let sessions = self.send(List).await?;
        Ok(BrowserSessionList {
            sessions: sessions.iter().map(|s| s.info()).collect(),
            max_sessions: self.policy.max_sessions,
        })
    }

    /// One session (its URL and title as last seen, its last activity).
    pub async fn get(&self, session_id: &str) -> Result<BrowserSessionInfo, BrowserError> {
        Ok(self.session(session_id).await?.info())
    }

    /// Ends a session: its browser process and its profile directory.
    pub async fn close(&self, session_id: &str) -> Result<(), BrowserError> {
        match self.send(Remove(session_id.to_owned())).await? {
            Some(session) => {
                // In its own task, so the profile is removed even if the caller goes away.
                let _ = tokio::spawn(close_session(session)).await;
                Ok(())
            }
            None => Err(BrowserError::SessionNotFound(session_id.to_owned())),
        }
    }

    /// Loads a URL and waits (bounded) until it has loaded.
    pub async fn navigate(
        &self,
        session_id: &str,
        url: &str,
    ) -> Result<NavigationResult, BrowserError> {
        let session = self.session(session_id).await?;
        let url = self.policy.urls.check_input("url", url).await?;
        let _busy = session.busy.lock().await;
        let result = self.navigate_in(&session, url).await;
        self.settle(&session, result).await
    }

    /// Clicks the first element matching a CSS selector, like a mouse would, and waits
    /// for a navigation it starts.
    pub async fn click(&self, session_id: &str, selector: &str) -> Result<PageState, BrowserError> {
        check_selector(selector)?;
        let session = self.session(session_id).await?;
        let _busy = session.busy.lock().await;
        let result = self.click_in(&session, selector).await;
        self.settle(&session, result).await
    }

    /// Types text into the first element matching a CSS selector.
    pub async fn type_text(
        &self,
        session_id: &str,
        selector: &str,
        text: &str,
    ) -> Result<PageState, BrowserError> {
        check_selector(selector)?;
        let session = self.session(session_id).await?;
        let _busy = session.busy.lock().await;
        let result = async {
            self.element(&session, selector, FOCUS_SCRIPT, "typed into")
                .await?;
            session
                .call("Input.insertText", json!({ "text": text }), COMMAND_TIMEOUT)
                .await?;
            let (url, title) = session.location().await?;
            Ok(PageState {
                session_id: session.id.clone(),
                url,
                title,
                navigated: false,
            })
        }
        .await;
        self.settle(&session, result).await
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self, session_id: &str) -> Result<Vec<u8>, BrowserError> {
        let session = self.session(session_id).await?;
        let _busy = session.busy.lock().await;
        let result = async {
            let answer = session
                .call(
                    "Page.captureScreenshot",
                    json!({ "format": "png" }),
                    COMMAND_TIMEOUT,
                )
                .await?;
            let data = answer["data"]
                .as_str()
                .ok_or_else(|| BrowserError::Protocol("a screenshot without data".into()))?;
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| {
                    BrowserError::Protocol(format!("a screenshot that is not base64: {e}"))
                })
        }
        .await;
        self.settle(&session, result).await
    }

    /// The page's text, cut at `content_max_bytes`.
    pub async fn content(&self, session_id: &str) -> Result<PageContent, BrowserError> {
        let session = self.session(session_id).await?;
        let _busy = session.busy.lock().await;
        let max = self.policy.content_max_bytes;
        let result = async {
            // Cut in the page first, so a huge page never crosses the connection whole.
            let script = format!(
                "(() => {{ const t = document.body ? document.body.innerText : \
                 (document.documentElement ? document.documentElement.textContent : ''); \
                 return {{ text: t.slice(0, {max}), cut: t.length > {max} }}; }})()"
            );
            let value = session.eval(&script, COMMAND_TIMEOUT).await?;
            let mut text = value["text"].as_str().unwrap_or_default().to_owned();
            let mut truncated = value["cut"].as_bool().unwrap_or(false);
            if text.len() > max {
                let mut end = max;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
                truncated = true;
            }
            let (url, title) = session.location().await?;
            Ok(PageContent {
                session_id: session.id.clone(),
                url,
                title,
                text,
                truncated,
            })
        }
        .await;
        self.settle(&session, result).await
    }

    /// Ends every session and refuses new ones (daemon shutdown).
    pub async fn shutdown(&self) {
        let Ok(sessions) = self.send(Drain).await else {
            return;
        };
        let count = sessions.len();
        futures_util::future::join_all(sessions.into_iter().map(close_session)).await;
        if count > 0 {
            tracing::info!(count, "browser sessions closed at shutdown");
        }
    }

    /// True while the actor runs.
    pub fn is_running(&self) -> bool {
        self.addr.connected()
    }

    async fn send<M>(&self, message: M) -> Result<M::Result, BrowserError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        BrowserActor: Handler<M>,
    {
        self.addr
            .send(message)
            .await
            .map_err(|_| BrowserError::ShuttingDown)
    }

    /// A live session by id; a dead one is removed and answers [`BrowserError::Gone`].
    async fn session(&self, session_id: &str) -> Result<Arc<BrowserSession>, BrowserError> {
        let Some(session) = self.send(Get(session_id.to_owned())).await? else {
            return Err(BrowserError::SessionNotFound(session_id.to_owned()));
        };
        if !session.alive() {
            self.discard(session_id).await;
            return Err(BrowserError::Gone(session_id.to_owned()));
        }
        Ok(session)
    }

    /// After a request: a dead browser turns any answer into `Gone` and ends the
    /// session; otherwise the session's idle clock restarts.
    async fn settle<T>(
        &self,
        session: &BrowserSession,
        result: Result<T, BrowserError>,
    ) -> Result<T, BrowserError> {
        if matches!(result, Err(BrowserError::Gone(_))) || !session.alive() {
            self.discard(&session.id).await;
            return Err(BrowserError::Gone(session.id.clone()));
        }
        session.touch();
        result
    }

    async fn discard(&self, session_id: &str) {
        if let Ok(Some(session)) = self.send(Remove(session_id.to_owned())).await {
            let _ = tokio::spawn(close_session(session)).await;
        }
    }

    /// Starts a browser, connects, attaches to its page and sets it up.
    async fn launch(&self, viewport: Viewport) -> Result<Arc<BrowserSession>, BrowserError> {
        let id = new_session_id();
        let profile_dir = self.policy.profiles_root.join(&id);
        let launched = process::launch(
            &self.policy.chromium_path,
            &profile_dir,
            (viewport.width, viewport.height),
            STARTUP_TIMEOUT,
        )
        .await;
        let process::Launched {
            mut child,
            pid,
            ws_url,
        } = match launched {
            Ok(launched) => launched,
            Err(e) => {
                process::remove_profile(profile_dir).await;
                return Err(e);
            }
        };
        let (exited_tx, exited) = watch::channel(false);
        // The monitor owns the child: it reaps it and tells the session at once.
        tokio::spawn(async move {
            let _ = child.wait().await;
            let _ = exited_tx.send(true);
        });
        let attached = attach(&ws_url, viewport, &self.policy.urls).await;
        let (cdp, page, watch) = match attached {
            Ok(attached) => attached,
            Err(e) => {
                process::kill_group(pid);
                process::remove_profile(profile_dir).await;
                return Err(e);
            }
        };
        let now = now_ms();
        Ok(Arc::new(BrowserSession {
            id,
            created_at_ms: now,
            viewport,
            cdp,
            page,
            pid,
            profile_dir,
            exited,
            last_activity_ms: AtomicI64::new(now),
            busy: tokio::sync::Mutex::new(()),
            watch,
            closing: AtomicBool::new(false),
        }))
    }

    async fn navigate_in(
        &self,
        session: &BrowserSession,
        url: url::Url,
    ) -> Result<NavigationResult, BrowserError> {
        let timeout = self.policy.navigation_timeout;
        let deadline = Instant::now() + timeout;
        lock(&session.watch).refused = None;
        let answer = match session
            .call("Page.navigate", json!({ "url": url.as_str() }), timeout)
            .await
        {
            Err(BrowserError::Unresponsive(_)) => {
                return Err(BrowserError::NavigationTimeout(timeout.as_secs()));
            }
            other => other?,
        };
        if let Some(error) = answer["errorText"].as_str().filter(|e| !e.is_empty()) {
            return Err(session.navigation_error(error));
        }
        session.wait_for_load(deadline, timeout.as_secs()).await?;
        let (url, title) = session.location().await?;
        let status = answer["loaderId"].as_str().and_then(|loader| {
            lock(&session.watch)
                .statuses
                .iter()
                .rev()
                .find(|(l, _)| l == loader)
                .map(|(_, s)| *s)
        });
        Ok(NavigationResult {
            session_id: session.id.clone(),
            url,
            title,
            status,
        })
    }

    async fn click_in(
        &self,
        session: &BrowserSession,
        selector: &str,
    ) -> Result<PageState, BrowserError> {
        let point = self
            .element(session, selector, CLICK_SCRIPT, "clicked")
            .await?;
        let (Some(x), Some(y)) = (point["x"].as_f64(), point["y"].as_f64()) else {
            return Err(BrowserError::Protocol("no click position".into()));
        };
        let before = {
            let mut watch = lock(&session.watch);
            watch.refused = None;
            watch.navigations
        };
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            let mut event = json!({ "type": kind, "x": x, "y": y });
            if kind != "mouseMoved" {
                event["button"] = json!("left");
                event["clickCount"] = json!(1);
            }
            session
                .call("Input.dispatchMouseEvent", event, COMMAND_TIMEOUT)
                .await?;
        }
        // A link or a form submission starts its navigation a moment after the click.
        let settle_until = Instant::now() + CLICK_SETTLE;
        let mut navigated = false;
        while Instant::now() < settle_until {
            if lock(&session.watch).navigations != before {
                navigated = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if navigated {
            let timeout = self.policy.navigation_timeout;
            session
                .wait_for_load(Instant::now() + timeout, timeout.as_secs())
                .await?;
        }
        if let Some(refused) = lock(&session.watch).refused.take() {
            return Err(refused);
        }
        let (url, title) = session.location().await?;
        Ok(PageState {
            session_id: session.id.clone(),
            url,
            title,
            navigated,
        })
    }

    /// Runs one of the element scripts on the first match of `selector`; its answer
    /// is an object, or `{error}` saying why the element cannot take the action.
    async fn element(
        &self,
        session: &BrowserSession,
        selector: &str,
        script: &str,
        action: &'static str,
    ) -> Result<Value, BrowserError> {
        // A JSON string is a JavaScript string literal: the selector cannot escape it.
        let literal =
            serde_json::to_string(selector).map_err(|e| BrowserError::Protocol(e.to_string()))?;
        let value = session
            .eval(&format!("({script})({literal})"), COMMAND_TIMEOUT)
            .await?;
        match value["error"].as_str() {
            None => Ok(value),
            Some("invalid") => Err(BrowserError::InvalidSelector(selector.to_owned())),
            Some("missing") => Err(BrowserError::SelectorNotFound(selector.to_owned())),
            Some(reason) => Err(BrowserError::NotInteractable {
                selector: selector.to_owned(),
                action,
                reason: reason.to_owned(),
            }),
        }
    }
}

/// Finds the element, scrolls it into view and answers the point a click lands on,
/// if the element is really there to be clicked.
const CLICK_SCRIPT: &str = r"(sel) => {
  let el;
  try { el = document.querySelector(sel); } catch (e) { return {error: 'invalid'}; }
  if (!el) return {error: 'missing'};
  el.scrollIntoView({block: 'center', inline: 'center'});
  const r = el.getBoundingClientRect();
  if (r.width === 0 || r.height === 0) return {error: 'it is not displayed (it has no size)'};
  const style = getComputedStyle(el);
  if (style.visibility !== 'visible') return {error: 'it is hidden'};
  if (style.pointerEvents === 'none') return {error: 'it ignores the pointer'};
  if (el.disabled) return {error: 'it is disabled'};
  const x = r.left + r.width / 2, y = r.top + r.height / 2;
  const top = document.elementFromPoint(x, y);
  if (!top || !(top === el || el.contains(top))) return {error: 'another element covers it'};
  return {x, y};
}";

/// Finds the element and gives it the focus, if it is a field text can go into.
const FOCUS_SCRIPT: &str = r"(sel) => {
  let el;
  try { el = document.querySelector(sel); } catch (e) { return {error: 'invalid'}; }
  if (!el) return {error: 'missing'};
  const fields = ['text', 'search', 'email', 'url', 'tel', 'password', 'number', ''];
  const editable = el.isContentEditable || el instanceof HTMLTextAreaElement
    || (el instanceof HTMLInputElement && fields.includes(el.getAttribute('type') || ''))
    || (el instanceof HTMLInputElement && fields.includes(el.type));
  if (!editable) return {error: 'it is not a text field'};
  if (el.disabled || el.readOnly) return {error: 'it is disabled or read-only'};
  el.scrollIntoView({block: 'center', inline: 'center'});
  el.focus();
  if (document.activeElement !== el) return {error: 'it does not take the focus'};
  return {focused: true};
}";

fn check_selector(selector: &str) -> Result<(), BrowserError> {
    if selector.trim().is_empty() || selector.len() > 1024 {
        return Err(BrowserError::Invalid {
            field: "selector",
            message: "must be 1 to 1024 bytes and not blank".into(),
        });
    }
    Ok(())
}

fn new_session_id() -> String {
    use rand::Rng;
    let bytes: [u8; 12] = rand::rng().random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("bs_{hex}")
}

type Attached = (Cdp, String, Arc<Mutex<PageWatch>>);

/// Connects to a fresh browser, attaches to its page, and turns on what the session
/// needs: page and network events, request interception, the viewport.
async fn attach(
    ws_url: &str,
    viewport: Viewport,
    urls: &UrlPolicy,
) -> Result<Attached, BrowserError> {
    let (cdp, events) = Cdp::connect(ws_url)
        .await
        .map_err(|e| BrowserError::Unavailable(format!("cannot connect to the browser: {e}")))?;
    let protocol =
        |e: CdpError| BrowserError::Unavailable(format!("the browser did not set up: {e}"));
    let targets = cdp
        .call(None, "Target.getTargets", json!({}), COMMAND_TIMEOUT)
        .await
        .map_err(protocol)?;
    let target_id = targets["targetInfos"]
        .as_array()
        .and_then(|targets| targets.iter().find(|t| t["type"] == "page"))
        .and_then(|t| t["targetId"].as_str())
        .ok_or_else(|| BrowserError::Unavailable("the browser opened no page".into()))?
        .to_owned();
    let attached = cdp
        .call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
            COMMAND_TIMEOUT,
        )
        .await
        .map_err(protocol)?;
    let page = attached["sessionId"]
        .as_str()
        .ok_or_else(|| BrowserError::Unavailable("no DevTools session for the page".into()))?
        .to_owned();
    let watch = Arc::new(Mutex::new(PageWatch {
        url: "about:blank".into(),
        ..PageWatch::default()
    }));
    tokio::spawn(watch_events(
        events,
        cdp.clone(),
        page.clone(),
        target_id.clone(),
        Arc::clone(&watch),
        urls.clone(),
    ));
    let setup = [
        ("Page.enable", json!({})),
        ("Network.enable", json!({})),
        // Every request of the page waits for the policy (see `watch_events`).
        (
            "Fetch.enable",
            json!({ "patterns": [{ "urlPattern": "*", "requestStage": "Request" }] }),
        ),
        (
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": viewport.width, "height": viewport.height,
                    "deviceScaleFactor": 1, "mobile": false }),
        ),
    ];
    for (method, params) in setup {
        cdp.call(Some(&page), method, params, COMMAND_TIMEOUT)
            .await
            .map_err(protocol)?;
    }
    // Browser-level: title and URL changes, and pages opened by the page (closed).
    cdp.call(
        None,
        "Target.setDiscoverTargets",
        json!({ "discover": true }),
        COMMAND_TIMEOUT,
    )
    .await
    .map_err(protocol)?;
    Ok((cdp, page, watch))
}

/// The event task of one session: checks every paused request against the policy,
/// and keeps the page's URL, title, loading state and document statuses.
async fn watch_events(
    mut events: tokio::sync::mpsc::UnboundedReceiver<CdpEvent>,
    cdp: Cdp,
    page: String,
    target_id: String,
    watch: Arc<Mutex<PageWatch>>,
    urls: UrlPolicy,
) {
    while let Some(event) = events.recv().await {
        let params = &event.params;
        let on_page = event.session_id.as_deref() == Some(page.as_str());
        let main_frame = params["frameId"].as_str() == Some(target_id.as_str());
        match event.method.as_str() {
            "Fetch.requestPaused" if on_page => {
                let cdp = cdp.clone();
                let page = page.clone();
                let watch = Arc::clone(&watch);
                let urls = urls.clone();
                let request_id = params["requestId"].as_str().unwrap_or_default().to_owned();
                // A refused document of the page is the answer to the request that led
                // there; a refused image or script is only logged.
                let document = main_frame && params["resourceType"] == "Document";
                let url = params["request"]["url"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                tokio::spawn(async move {
                    let parsed = url::Url::parse(&url);
                    let verdict = match &parsed {
                        Ok(parsed) => urls.check(parsed).await,
                        Err(e) => Err(BrowserError::InvalidUrl {
                            field: "url",
                            message: e.to_string(),
                        }),
                    };
                    // Page URLs can carry tokens in their paths and queries: the log
                    // names the scheme and host only.
                    let origin = parsed
                        .map(|u| format!("{}://{}", u.scheme(), u.host_str().unwrap_or("")))
                        .unwrap_or_default();
                    let (method, params) = match verdict {
                        Ok(()) => ("Fetch.continueRequest", json!({ "requestId": request_id })),
                        Err(refusal) => {
                            tracing::info!(%origin, document, "browser request blocked by the URL policy");
                            if document {
                                lock(&watch).refused = Some(refusal);
                            }
                            (
                                "Fetch.failRequest",
                                json!({ "requestId": request_id, "errorReason": "BlockedByClient" }),
                            )
                        }
                    };
                    let _ = cdp.call(Some(&page), method, params, COMMAND_TIMEOUT).await;
                });
            }
            "Page.frameStartedLoading" if on_page && main_frame => {
                let mut watch = lock(&watch);
                watch.loading = true;
                watch.navigations += 1;
            }
            // Asked for by the page (a link, a form): loading from now on, even before
            // the browser starts the request, so no one reads the old document as the
            // result.
            "Page.frameRequestedNavigation"
                if on_page && main_frame && params["disposition"] == "currentTab" =>
            {
                let mut watch = lock(&watch);
                watch.loading = true;
                watch.navigations += 1;
            }
            // A fragment link: nothing loads.
            "Page.navigatedWithinDocument" if on_page && main_frame => {
                let mut watch = lock(&watch);
                watch.loading = false;
                watch.navigations += 1;
            }
            "Page.frameStoppedLoading" if on_page && main_frame => {
                lock(&watch).loading = false;
            }
            "Network.responseReceived" if on_page && main_frame && params["type"] == "Document" => {
                if let (Some(loader), Some(status)) = (
                    params["loaderId"].as_str(),
                    params["response"]["status"].as_u64(),
                ) {
                    let mut watch = lock(&watch);
                    watch
                        .statuses
                        .push((loader.to_owned(), u16::try_from(status).unwrap_or(0)));
                    let excess = watch.statuses.len().saturating_sub(8);
                    watch.statuses.drain(..excess);
                }
            }
            "Target.targetInfoChanged" if event.session_id.is_none() => {
                let info = &params["targetInfo"];
                if info["targetId"].as_str() == Some(target_id.as_str()) {
                    let mut watch = lock(&watch);
                    watch.url = info["url"].as_str().unwrap_or_default().to_owned();
                    watch.title = info["title"].as_str().unwrap_or_default().to_owned();
                }
            }
            "Target.targetCrashed"
                if event.session_id.is_none()
                    && params["targetId"].as_str() == Some(target_id.as_str()) =>
            {
                tracing::warn!(status = %params["status"], "a browser page crashed");
                lock(&watch).crashed = true;
            }
            "Target.targetCreated" if event.session_id.is_none() => {
                // A page the page opened (a popup, a target=_blank link) is not
                // intercepted: close it.
                let info = &params["targetInfo"];
                if info["type"] == "page" && info["targetId"].as_str() != Some(target_id.as_str()) {
                    let cdp = cdp.clone();
                    let other = info["targetId"].as_str().unwrap_or_default().to_owned();
                    tokio::spawn(async move {
                        let _ = cdp
                            .call(
                                None,
                                "Target.closeTarget",
                                json!({ "targetId": other }),
                                COMMAND_TIMEOUT,
                            )
                            .await;
                    });
                }
            }
            _ => {}
        }
    }
}

/// Ends a session's browser (its whole process group), waits for the exit and
/// removes its profile directory. Runs once per session.
async fn close_session(session: Arc<BrowserSession>) {
    if session.closing.swap(true, Ordering::AcqRel) {
        return;
    }
    process::kill_group(session.pid);
    let mut exited = session.exited.clone();
    let _ = tokio::time::timeout(Duration::from_secs(5), exited.wait_for(|e| *e)).await;
    process::remove_profile(session.profile_dir.clone()).await;
    tracing::info!(session_id = %session.id, "browser session closed");
}

struct BrowserActor {
    /// Sessions the actor ends by itself (idle, crashed) are audited here; those a
    /// request closes are audited by its handler.
    audit: crate::audit::AuditLog,
    sessions: HashMap<String, Arc<BrowserSession>>,
    /// Browsers being started: they count against the limit.
    starting: usize,
    max_sessions: usize,
    idle_timeout_ms: i64,
    shutting_down: bool,
}

impl BrowserActor {
    /// Audits a session the actor ended by itself: idle (`alive`) or crashed.
    fn audit_end(&self, session_id: &str, alive: bool) {
        use crate::audit::{AuditEntry, AuditKind, AuditOutcome};
        let (outcome, detail) = if alive {
            (AuditOutcome::Success, "idle timeout")
        } else {
            (AuditOutcome::Failure, "the browser exited or crashed")
        };
        self.audit.submit(AuditEntry::system(
            AuditKind::BrowserSessionClosed,
            session_id,
            outcome,
            detail,
        ));
    }
}

impl Actor for BrowserActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(TICK, |act, _ctx| {
            let now = now_ms();
            let idle_timeout_ms = act.idle_timeout_ms;
            let ended: Vec<Arc<BrowserSession>> = act
                .sessions
                .values()
                .filter(|s| {
                    let idle = now - s.last_activity_ms.load(Ordering::Relaxed) > idle_timeout_ms;
                    // A request in progress is activity.
                    !s.alive() || (idle && s.busy.try_lock().is_ok())
                })
                .cloned()
                .collect();
            for session in ended {
                act.sessions.remove(&session.id);
                let alive = session.alive();
                if alive {
                    tracing::info!(session_id = %session.id, "browser session idle: closing");
                } else {
                    tracing::warn!(session_id = %session.id, "browser exited or crashed: session closed");
                }
                act.audit_end(&session.id, alive);
                tokio::spawn(close_session(session));
            }
        });
    }
}

#[derive(Message)]
#[rtype(result = "Result<(), BrowserError>")]
struct Reserve;

impl Handler<Reserve> for BrowserActor {
    type Result = Result<(), BrowserError>;

    fn handle(&mut self, _msg: Reserve, _ctx: &mut Self::Context) -> Self::Result {
        if self.shutting_down {
            return Err(BrowserError::ShuttingDown);
        }
        // Dead sessions do not hold a place.
        let live = self.sessions.values().filter(|s| s.alive()).count();
        if live + self.starting >= self.max_sessions {
            return Err(BrowserError::SessionLimit {
                max: self.max_sessions,
            });
        }
        self.starting += 1;
        Ok(())
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Release;

impl Handler<Release> for BrowserActor {
    type Result = ();

    fn handle(&mut self, _msg: Release, _ctx: &mut Self::Context) {
        self.starting = self.starting.saturating_sub(1);
    }
}

#[derive(Message)]
#[rtype(result = "Result<(), BrowserError>")]
struct Insert(Arc<BrowserSession>);

impl Handler<Insert> for BrowserActor {
    type Result = Result<(), BrowserError>;

    fn handle(&mut self, msg: Insert, _ctx: &mut Self::Context) -> Self::Result {
        self.starting = self.starting.saturating_sub(1);
        if self.shutting_down {
            return Err(BrowserError::ShuttingDown);
        }
        self.sessions.insert(msg.0.id.clone(), msg.0);
        Ok(())
    }
}

#[derive(Message)]
#[rtype(result = "Option<Arc<BrowserSession>>")]
struct Get(String);

impl Handler<Get> for BrowserActor {
    type Result = Option<Arc<BrowserSession>>;

    fn handle(&mut self, msg: Get, _ctx: &mut Self::Context) -> Self::Result {
        self.sessions.get(&msg.0).cloned()
    }
}

#[derive(Message)]
#[rtype(result = "Option<Arc<BrowserSession>>")]
struct Remove(String);

impl Handler<Remove> for BrowserActor {
    type Result = Option<Arc<BrowserSession>>;

    fn handle(&mut self, msg: Remove, _ctx: &mut Self::Context) -> Self::Result {
        self.sessions.remove(&msg.0)
    }
}

#[derive(Message)]
#[rtype(result = "Vec<Arc<BrowserSession>>")]
struct List;

impl Handler<List> for BrowserActor {
    type Result = Vec<Arc<BrowserSession>>;

    fn handle(&mut self, _msg: List, _ctx: &mut Self::Context) -> Self::Result {
        let dead: Vec<String> = self
            .sessions
            .values()
            .filter(|s| !s.alive())
            .map(|s| s.id.clone())
            .collect();
        for id in dead {
            if let Some(session) = self.sessions.remove(&id) {
                tracing::warn!(session_id = %id, "browser exited or crashed: session closed");
                self.audit_end(&id, false);
                tokio::spawn(close_session(session));
            }
        }
        let mut live: Vec<_> = self.sessions.values().cloned().collect();
        live.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        live
    }
}

#[derive(Message)]
#[rtype(result = "Vec<Arc<BrowserSession>>")]
struct Drain;

impl Handler<Drain> for BrowserActor {
    type Result = Vec<Arc<BrowserSession>>;

    fn handle(&mut self, _msg: Drain, _ctx: &mut Self::Context) -> Self::Result {
        self.shutting_down = true;
        self.sessions.drain().map(|(_, s)| s).collect()
    }
}
