//! The browser's public data: its configuration, viewports, and what sessions and
//! page operations answer.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::BrowserError;
use super::policy::UrlPolicy;

/// Bounds of a viewport side, in CSS pixels.
pub const VIEWPORT_MIN: u32 = 100;
pub const VIEWPORT_MAX: u32 = 4096;

/// Configuration of browser sessions.
#[derive(Debug, Clone)]
pub struct BrowserPolicy {
    pub enabled: bool,
    /// The Chromium executable (a path, or a name looked up in PATH).
    pub chromium_path: PathBuf,
    /// Where session profiles are created: outside the data dir, which the browser's
    /// user must not reach.
    pub profiles_root: PathBuf,
    /// The user browsers run as when the daemon runs as root.
    pub user: String,
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
    pub(super) fn validate(self) -> Result<Self, BrowserError> {
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

/// A new session's options.
#[derive(Debug, Clone, Default)]
pub struct NewBrowserSession {
    pub start_url: Option<String>,
    pub viewport: Option<Viewport>,
}
