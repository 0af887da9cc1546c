//! Page operations on one session: navigate, click, type, screenshot, content, and
//! the page reads they share (a script's value, the location, waiting for a load).
//! Each runs on the requesting task, with the session's `busy` lock held by the
//! caller.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use super::cdp::COMMAND_TIMEOUT;
use super::error::BrowserError;
use super::interceptor::lock;
use super::model::{NavigationResult, PageContent, PageState};
use super::session::BrowserSession;

/// After a click, how long to watch for a navigation it may have started.
const CLICK_SETTLE: Duration = Duration::from_millis(400);

impl BrowserSession {
    /// Evaluates a script in the page and returns its value.
    pub(super) async fn eval(
        &self,
        expression: &str,
        timeout: Duration,
    ) -> Result<Value, BrowserError> {
        let mut answer = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
                timeout,
            )
            .await?;
        if let Some(details) = answer.get("exceptionDetails") {
            // The page's own scripts can make ours throw (a page that replaces
            // document.querySelector): the page's fault, told as such, never a 500.
            let exception = details["exception"]["description"]
                .as_str()
                .or(details["text"].as_str())
                .unwrap_or("unknown exception");
            // The page chose the text: a bounded piece of it.
            let cut: String = exception.chars().take(500).collect();
            return Err(BrowserError::PageScript(cut));
        }
        Ok(answer["result"]["value"].take())
    }

    /// The page's URL and title, from the page itself.
    pub(super) async fn location(&self) -> Result<(String, String), BrowserError> {
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
                Err(BrowserError::Protocol(_) | BrowserError::PageScript(_)) => Value::Null,
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
        if let Some(refused) = lock(&self.watch).take_refusal() {
            return refused;
        }
        BrowserError::NavigationFailed(error_text.to_owned())
    }

    /// Loads a URL (already checked) and waits, up to `timeout`, until it has loaded.
    pub(super) async fn navigate(
        &self,
        url: url::Url,
        timeout: Duration,
    ) -> Result<NavigationResult, BrowserError> {
        let deadline = Instant::now() + timeout;
        lock(&self.watch).clear_refusals();
        let answer = match self
            .call("Page.navigate", json!({ "url": url.as_str() }), timeout)
            .await
        {
            Err(BrowserError::Unresponsive(_)) => {
                return Err(BrowserError::NavigationTimeout(timeout.as_secs()));
            }
            other => other?,
        };
        if let Some(error) = answer["errorText"].as_str().filter(|e| !e.is_empty()) {
            return Err(self.navigation_error(error));
        }
        self.wait_for_load(deadline, timeout.as_secs()).await?;
        let (url, title) = self.location().await?;
        let status = answer["loaderId"].as_str().and_then(|loader| {
            lock(&self.watch)
                .statuses
                .iter()
                .rev()
                .find(|(l, _)| l == loader)
                .map(|(_, s)| *s)
        });
        Ok(NavigationResult {
            session_id: self.id.clone(),
            url,
            title,
            status,
        })
    }

    /// Clicks the first element matching `selector`, like a mouse would, and waits
    /// (up to `navigation_timeout`) for a navigation it starts.
    pub(super) async fn click(
        &self,
        selector: &str,
        navigation_timeout: Duration,
    ) -> Result<PageState, BrowserError> {
        let point = self.element(selector, CLICK_SCRIPT, "clicked").await?;
        let (Some(x), Some(y)) = (point["x"].as_f64(), point["y"].as_f64()) else {
            return Err(BrowserError::Protocol("no click position".into()));
        };
        let before = {
            let mut watch = lock(&self.watch);
            watch.clear_refusals();
            watch.navigations
        };
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            let mut event = json!({ "type": kind, "x": x, "y": y });
            if kind != "mouseMoved" {
                event["button"] = json!("left");
                event["clickCount"] = json!(1);
            }
            self.call("Input.dispatchMouseEvent", event, COMMAND_TIMEOUT)
                .await?;
        }
        // A link or a form submission starts its navigation a moment after the click.
        let settle_until = Instant::now() + CLICK_SETTLE;
        let mut navigated = false;
        while Instant::now() < settle_until {
            if lock(&self.watch).navigations != before {
                navigated = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if navigated {
            self.wait_for_load(
                Instant::now() + navigation_timeout,
                navigation_timeout.as_secs(),
            )
            .await?;
        }
        if let Some(refused) = lock(&self.watch).take_refusal() {
            return Err(refused);
        }
        let (url, title) = self.location().await?;
        Ok(PageState {
            session_id: self.id.clone(),
            url,
            title,
            navigated,
        })
    }

    /// Runs one of the element scripts on the first match of `selector`; its answer
    /// is an object, or `{error}` saying why the element cannot take the action.
    async fn element(
        &self,
        selector: &str,
        script: &str,
        action: &'static str,
    ) -> Result<Value, BrowserError> {
        // A JSON string is a JavaScript string literal: the selector cannot escape it.
        let literal =
            serde_json::to_string(selector).map_err(|e| BrowserError::Protocol(e.to_string()))?;
        let value = self
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

    /// Types text into the first element matching `selector`.
    pub(super) async fn type_text(
        &self,
        selector: &str,
        text: &str,
    ) -> Result<PageState, BrowserError> {
        self.element(selector, FOCUS_SCRIPT, "typed into").await?;
        self.call("Input.insertText", json!({ "text": text }), COMMAND_TIMEOUT)
            .await?;
        let (url, title) = self.location().await?;
        Ok(PageState {
            session_id: self.id.clone(),
            url,
            title,
            navigated: false,
        })
    }

    /// A PNG of the viewport.
    pub(super) async fn screenshot(&self) -> Result<Vec<u8>, BrowserError> {
        let answer = self
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
            .map_err(|e| BrowserError::Protocol(format!("a screenshot that is not base64: {e}")))
    }

    /// The page's text, cut at `max` bytes.
    pub(super) async fn content(&self, max: usize) -> Result<PageContent, BrowserError> {
        // Cut in the page first, so a huge page never crosses the connection whole.
        let script = format!(
            "(() => {{ const t = document.body ? document.body.innerText : \
             (document.documentElement ? document.documentElement.textContent : ''); \
             return {{ text: t.slice(0, {max}), cut: t.length > {max} }}; }})()"
        );
        let value = self.eval(&script, COMMAND_TIMEOUT).await?;
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
        let (url, title) = self.location().await?;
        Ok(PageContent {
            session_id: self.id.clone(),
            url,
            title,
            text,
            truncated,
        })
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

pub(super) fn check_selector(selector: &str) -> Result<(), BrowserError> {
    if selector.trim().is_empty() || selector.len() > 1024 {
        return Err(BrowserError::Invalid {
            field: "selector",
            message: "must be 1 to 1024 bytes and not blank".into(),
        });
    }
    Ok(())
}
