//! One live browser session: its Chromium process, DevTools connection and page;
//! starting one (process, connection, page set-up) and ending it (process group,
//! profile directory).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use serde_json::json;

use super::cdp::{Cdp, CdpError, CdpEvent};
use super::error::BrowserError;
use super::interceptor::{PageWatch, attach, lock};
use super::isolation::{Isolation, SandboxState};
use super::model::{BrowserPolicy, BrowserSessionInfo, Viewport};
use super::process::{self, LaunchSpec};
use super::proxy::{self, EgressProxy};
use crate::time::{now_ms, to_datetime};

/// How long Chromium may take to answer its first DevTools command.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// One live session: its browser process, DevTools connection and page.
pub(super) struct BrowserSession {
    pub(super) id: String,
    pub(super) created_at_ms: i64,
    pub(super) viewport: Viewport,
    pub(super) cdp: Cdp,
    /// DevTools session id of the attached page.
    pub(super) page: String,
    /// Process id of the browser, which leads its own process group.
    pub(super) pid: u32,
    pub(super) profile_dir: PathBuf,
    /// True once the browser process has exited (set by its monitor task).
    pub(super) exited: watch::Receiver<bool>,
    pub(super) last_activity_ms: AtomicI64,
    /// One request at a time per session.
    pub(super) busy: tokio::sync::Mutex<()>,
    pub(super) watch: Arc<Mutex<PageWatch>>,
    /// Set by the first close, so a session is ended once.
    pub(super) closing: AtomicBool,
    /// The browser's only way out; it ends with the session.
    pub(super) _proxy: EgressProxy,
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
    pub(super) fn alive(&self) -> bool {
        !*self.exited.borrow() && !self.cdp.is_closed() && !lock(&self.watch).crashed
    }

    pub(super) fn touch(&self) {
        self.last_activity_ms.store(now_ms(), Ordering::Relaxed);
    }

    pub(super) fn info(&self) -> BrowserSessionInfo {
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
    pub(super) async fn call(
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

    pub(super) fn cdp_error(&self, e: CdpError) -> BrowserError {
        match e {
            CdpError::Closed => BrowserError::Gone(self.id.clone()),
            CdpError::Timeout { .. } if !self.alive() => BrowserError::Gone(self.id.clone()),
            CdpError::Timeout { method } => BrowserError::Unresponsive(method),
            CdpError::Command { .. } => BrowserError::Protocol(e.to_string()),
        }
    }
}

/// Starts a browser (with its proxy), attaches to its page and sets it up. The
/// first browser of the daemon tries with Chromium's sandbox; only if that cannot
/// start does it, and every later one, go without.
pub(super) async fn launch(
    policy: &BrowserPolicy,
    isolation: &Arc<Isolation>,
    viewport: Viewport,
) -> Result<Arc<BrowserSession>, BrowserError> {
    let user = match &isolation.user {
        None => None,
        Some(Ok(user)) => Some(user),
        Some(Err(why)) => return Err(BrowserError::Unavailable(why.clone())),
    };
    process::prepare_root(&policy.profiles_root)?;
    let id = new_session_id();
    let profile_dir = policy.profiles_root.join(&id);
    let watch = Arc::new(Mutex::new(PageWatch::default()));
    let proxy = proxy::start(
        policy.urls.clone(),
        Arc::clone(&watch),
        Arc::clone(isolation),
    )
    .await?;
    let mut sandbox = isolation.sandbox() != SandboxState::Unavailable;
    let started = loop {
        let spec = LaunchSpec {
            chromium: &policy.chromium_path,
            profile_dir: &profile_dir,
            window: (viewport.width, viewport.height),
            proxy_port: proxy.port,
            user,
            sandbox,
        };
        match start_browser(&spec, &proxy).await {
            Ok(started) => break started,
            // Only the first try on a host can find the sandbox missing.
            Err(Startup::Exited(status))
                if sandbox && isolation.sandbox() == SandboxState::Unknown =>
            {
                tracing::warn!(%status, "Chromium did not start with its sandbox; starting it without (the posture warns)");
                isolation.set_sandbox(SandboxState::Unavailable);
                sandbox = false;
                process::remove_profile(profile_dir.clone()).await;
            }
            Err(e) => {
                process::remove_profile(profile_dir).await;
                return Err(e.into_error(&policy.chromium_path));
            }
        }
    };
    if sandbox {
        isolation.set_sandbox(SandboxState::On);
    }
    let Started {
        pid,
        exited,
        cdp,
        events,
    } = started;
    let attached = attach(cdp, events, viewport, &policy.urls, Arc::clone(&watch)).await;
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
        _proxy: proxy,
    }))
}

/// A browser that answered its first DevTools command.
struct Started {
    pid: u32,
    exited: watch::Receiver<bool>,
    cdp: Cdp,
    events: tokio::sync::mpsc::UnboundedReceiver<CdpEvent>,
}

/// Why a browser did not come up.
enum Startup {
    Failed(BrowserError),
    /// It exited before it answered (with a sandbox it cannot have, for one).
    Exited(String),
    TimedOut,
}

impl Startup {
    fn into_error(self, chromium: &std::path::Path) -> BrowserError {
        match self {
            Startup::Failed(e) => e,
            Startup::Exited(status) => BrowserError::Unavailable(format!(
                "{} exited at start ({status})",
                chromium.display()
            )),
            Startup::TimedOut => BrowserError::Unavailable(format!(
                "{} did not answer on its DevTools pipe within {} s",
                chromium.display(),
                STARTUP_TIMEOUT.as_secs()
            )),
        }
    }
}

/// Starts Chromium and waits until it answers on its pipe (or exits, or the startup
/// timeout passes; then its group is ended).
async fn start_browser(spec: &LaunchSpec<'_>, proxy: &EgressProxy) -> Result<Started, Startup> {
    let process::Launched {
        mut child,
        pid,
        commands,
        answers,
    } = process::launch(spec).map_err(Startup::Failed)?;
    proxy.serve_browser(pid);
    let (exited_tx, exited) = watch::channel(false);
    let (status_tx, status_rx) = tokio::sync::oneshot::channel();
    // The monitor owns the child: it reaps it and tells the session at once.
    tokio::spawn(async move {
        let status = child.wait().await;
        let _ = exited_tx.send(true);
        let _ = status_tx.send(status.map_or_else(|e| e.to_string(), |s| s.to_string()));
    });
    let (cdp, events) = Cdp::over_pipe(commands, answers);
    let mut exit = exited.clone();
    let first = cdp.call(None, "Browser.getVersion", json!({}), STARTUP_TIMEOUT);
    tokio::select! {
        answer = first => match answer {
            Ok(_) => Ok(Started { pid, exited, cdp, events }),
            Err(CdpError::Timeout { .. }) => {
                process::kill_group(pid);
                Err(Startup::TimedOut)
            }
            Err(_) => {
                process::kill_group(pid);
                let status = status_rx.await.unwrap_or_else(|_| "gone".into());
                Err(Startup::Exited(status))
            }
        },
        _ = async { exit.wait_for(|e| *e).await.map(drop) } => {
            let status = status_rx.await.unwrap_or_else(|_| "gone".into());
            process::kill_group(pid);
            Err(Startup::Exited(status))
        }
    }
}

fn new_session_id() -> String {
    use rand::Rng;
    let bytes: [u8; 12] = rand::rng().random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("bs_{hex}")
}

/// Ends a session's browser (its whole process group), waits for the exit and
/// removes its profile directory. Runs once per session.
pub(super) async fn close_session(session: Arc<BrowserSession>) {
    if session.closing.swap(true, Ordering::AcqRel) {
        return;
    }
    process::kill_group(session.pid);
    let mut exited = session.exited.clone();
    let _ = tokio::time::timeout(Duration::from_secs(5), exited.wait_for(|e| *e)).await;
    process::remove_profile(session.profile_dir.clone()).await;
    tracing::info!(session_id = %session.id, "browser session closed");
}
