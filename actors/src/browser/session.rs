//! One live browser session: its Chromium process, DevTools connection and page;
//! starting one (process, connection, page set-up) and ending it (process group,
//! profile directory).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use super::cdp::{Cdp, CdpError};
use super::error::BrowserError;
use super::interceptor::{PageWatch, attach, lock};
use super::model::{BrowserPolicy, BrowserSessionInfo, Viewport};
use super::process;
use crate::time::{now_ms, to_datetime};

/// How long Chromium may take to open its DevTools endpoint.
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

/// Starts a browser, connects, attaches to its page and sets it up.
pub(super) async fn launch(
    policy: &BrowserPolicy,
    viewport: Viewport,
) -> Result<Arc<BrowserSession>, BrowserError> {
    let id = new_session_id();
    let profile_dir = policy.profiles_root.join(&id);
    let launched = process::launch(
        &policy.chromium_path,
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
    let attached = attach(&ws_url, viewport, &policy.urls).await;
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
