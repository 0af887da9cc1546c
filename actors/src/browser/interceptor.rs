//! The DevTools side of one session's page: attaching to it, and its event task,
//! which holds every request the page makes (the Fetch domain pauses them) until
//! [`UrlPolicy`] has checked its scheme and host name, and keeps what requests read
//! about the page (URL, title, loading state, document statuses, a crash). The
//! addresses are checked by the egress proxy (`proxy.rs`), which every request of
//! every frame, worker and socket goes through; the interception is what gives a
//! refused navigation its answer.

use std::sync::{Arc, Mutex};

use serde_json::json;

use super::cdp::{COMMAND_TIMEOUT, Cdp, CdpError, CdpEvent};
use super::error::BrowserError;
use super::model::Viewport;
use super::policy::UrlPolicy;

/// What the event task learns about the page, read by requests.
#[derive(Debug, Default)]
pub(super) struct PageWatch {
    pub(super) url: String,
    pub(super) title: String,
    /// The main frame is loading: from frameRequestedNavigation or frameStartedLoading
    /// to frameStoppedLoading.
    pub(super) loading: bool,
    /// Counts navigations the main frame started or was asked to start.
    pub(super) navigations: u64,
    /// HTTP status of main documents by loader id (the last few).
    pub(super) statuses: Vec<(String, u16)>,
    /// The last main-document request the policy refused, with the reason.
    pub(super) refused: Option<BrowserError>,
    /// The page's renderer crashed: the session cannot be used any more.
    pub(super) crashed: bool,
    /// The host and port of the main frame's last document request.
    pub(super) document_origin: Option<(String, u16)>,
    /// The last request the egress proxy refused.
    pub(super) proxy_refused: Option<ProxyRefusal>,
}

/// A request the egress proxy refused: where it went, and why.
#[derive(Debug)]
pub(super) struct ProxyRefusal {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) error: BrowserError,
}

impl PageWatch {
    /// Why the main document failed, when a policy refused it: the interceptor's
    /// refusal, or the proxy's for the document's host and port.
    pub(super) fn take_refusal(&mut self) -> Option<BrowserError> {
        if let Some(refused) = self.refused.take() {
            return Some(refused);
        }
        let origin = self.document_origin.as_ref()?;
        let matches = self
            .proxy_refused
            .as_ref()
            .is_some_and(|r| (&r.host, r.port) == (&origin.0, origin.1));
        if matches {
            return self.proxy_refused.take().map(|r| r.error);
        }
        None
    }

    /// Forgets refusals before a new navigation or click.
    pub(super) fn clear_refusals(&mut self) {
        self.refused = None;
        self.proxy_refused = None;
    }
}

/// Locks the page watch. Its fields are each written in one step, so a lock poisoned
/// by a panic still guards a usable state and is taken as it is.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(super) type Attached = (Cdp, String, Arc<Mutex<PageWatch>>);

/// Attaches to a fresh browser's page (once the browser lists it), and turns on what
/// the session needs: page and network events, request interception, the viewport.
pub(super) async fn attach(
    cdp: Cdp,
    events: tokio::sync::mpsc::UnboundedReceiver<CdpEvent>,
    viewport: Viewport,
    urls: &UrlPolicy,
    watch: Arc<Mutex<PageWatch>>,
) -> Result<Attached, BrowserError> {
    let protocol =
        |e: CdpError| BrowserError::Unavailable(format!("the browser did not set up: {e}"));
    // The first page may be listed a moment after the browser answers.
    let mut tries = 0;
    let targets = loop {
        let targets = cdp
            .call(None, "Target.getTargets", json!({}), COMMAND_TIMEOUT)
            .await
            .map_err(protocol)?;
        let has_page = targets["targetInfos"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["type"] == "page"));
        tries += 1;
        if has_page || tries >= 50 {
            break targets;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
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
    lock(&watch).url = "about:blank".into();
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
                if document && let Ok(parsed) = url::Url::parse(&url) {
                    lock(&watch).document_origin = parsed.host_str().map(|h| {
                        (
                            h.trim_matches(['[', ']']).to_owned(),
                            parsed.port_or_known_default().unwrap_or(0),
                        )
                    });
                }
                tokio::spawn(async move {
                    let parsed = url::Url::parse(&url);
                    let verdict = match &parsed {
                        Ok(parsed) => urls.check_name(parsed),
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
