//! What keeps every browser apart from the daemon: the user it runs as, whether its
//! own sandbox could start on this host (probed once, by the first browser), and the
//! count of requests the egress proxy refused; and how the posture reports them.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// The unprivileged user browsers run as when the daemon runs as root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BrowserUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Whether Chromium's own sandbox is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SandboxState {
    /// No browser has started yet: the first one tries with the sandbox.
    Unknown,
    /// Browsers start with their sandbox.
    On,
    /// A browser could not start with its sandbox on this host (no user namespaces
    /// and no setuid helper); browsers start with `--no-sandbox`.
    Unavailable,
}

/// The browser's isolation, as the posture reports it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BrowserIsolation {
    pub enabled: bool,
    /// The user browsers run as: `browser.user` when the daemon is root, else the
    /// daemon's own user (never root).
    pub user: String,
    pub sandbox: SandboxState,
    /// Always `pipe`: DevTools is spoken over fds 3 and 4, never a TCP port.
    pub devtools: String,
    /// Always `proxy`: every request of every frame, worker and socket goes through
    /// the daemon's egress proxy, which checks the address it connects to.
    pub egress: String,
    /// Requests the egress proxy refused since the daemon started.
    pub refused_requests: u64,
}

const UNKNOWN: u8 = 0;
const ON: u8 = 1;
const UNAVAILABLE: u8 = 2;

/// Shared by every session of the daemon.
#[derive(Debug)]
pub(crate) struct Isolation {
    /// `None`: the daemon is not root, and the browser runs as the daemon's user.
    /// `Some(Err)`: the daemon is root and `browser.user` is unusable; no browser
    /// starts (it would run as root).
    pub user: Option<Result<BrowserUser, String>>,
    /// The name reported when the browser runs as the daemon's user.
    own_user: String,
    sandbox: AtomicU8,
    refused: AtomicU64,
}

impl Isolation {
    /// Looks up `browser.user` when the daemon runs as root.
    pub(crate) fn new(user_name: &str) -> Self {
        let euid = nix::unistd::geteuid();
        let user = euid.is_root().then(|| lookup_user(user_name));
        let own_user = nix::unistd::User::from_uid(euid)
            .ok()
            .flatten()
            .map_or_else(|| euid.to_string(), |u| u.name);
        Self {
            user,
            own_user,
            sandbox: AtomicU8::new(UNKNOWN),
            refused: AtomicU64::new(0),
        }
    }

    pub(crate) fn sandbox(&self) -> SandboxState {
        match self.sandbox.load(Ordering::Acquire) {
            ON => SandboxState::On,
            UNAVAILABLE => SandboxState::Unavailable,
            _ => SandboxState::Unknown,
        }
    }

    pub(crate) fn set_sandbox(&self, state: SandboxState) {
        let value = match state {
            SandboxState::Unknown => UNKNOWN,
            SandboxState::On => ON,
            SandboxState::Unavailable => UNAVAILABLE,
        };
        self.sandbox.store(value, Ordering::Release);
    }

    pub(crate) fn count_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn report(&self, enabled: bool) -> BrowserIsolation {
        let user = match &self.user {
            None => self.own_user.clone(),
            Some(Ok(user)) => user.name.clone(),
            Some(Err(_)) => "unusable".to_owned(),
        };
        BrowserIsolation {
            enabled,
            user,
            sandbox: self.sandbox(),
            devtools: "pipe".into(),
            egress: "proxy".into(),
            refused_requests: self.refused.load(Ordering::Relaxed),
        }
    }
}

fn lookup_user(name: &str) -> Result<BrowserUser, String> {
    match nix::unistd::User::from_name(name) {
        Ok(Some(user)) if user.uid.is_root() => Err(format!(
            "browser.user {name:?} is root; the browser never runs as root"
        )),
        Ok(Some(user)) => Ok(BrowserUser {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        }),
        Ok(None) => Err(format!(
            "browser.user {name:?} does not exist; the daemon runs as root and the browser never does"
        )),
        Err(e) => Err(format!("cannot look up browser.user {name:?}: {e}")),
    }
}
