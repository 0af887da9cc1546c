//! The browser tools: `browser_open {url}`, `browser_click {selector}`,
//! `browser_type {selector, text}`, `browser_read {}` on one browser session owned by
//! the run, through the browser actor's handle, so the session is isolated and its
//! egress checked like any other and counts against `browser.max_sessions`.
//! The session is opened by the first `browser_open` and closed when the run ends
//! (its tool box is dropped: finished, failed, past its deadline or cancelled).

use crate::browser::{BrowserHandle, NewBrowserSession};

/// The run's one browser session, if it opened one.
#[derive(Debug)]
pub struct RunBrowser {
    handle: BrowserHandle,
    session_id: Option<String>,
}

impl RunBrowser {
    pub fn new(handle: BrowserHandle) -> Self {
        Self {
            handle,
            session_id: None,
        }
    }

    fn session(&self) -> Result<&str, String> {
        self.session_id
            .as_deref()
            .ok_or_else(|| "no page is open: call browser_open first".to_owned())
    }

    /// Opens the run's session on `url`, or loads `url` in it.
    pub async fn open(&mut self, url: &str) -> Result<String, String> {
        let (url, title) = match &self.session_id {
            None => {
                let info = self
                    .handle
                    .create(NewBrowserSession {
                        start_url: Some(url.to_owned()),
                        viewport: None,
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                self.session_id = Some(info.session_id.clone());
                (info.url, info.title)
            }
            Some(id) => {
                let r = self
                    .handle
                    .navigate(id, url)
                    .await
                    .map_err(|e| e.to_string())?;
                (r.url, r.title)
            }
        };
        Ok(format!("opened {url} ({title})"))
    }

    pub async fn click(&self, selector: &str) -> Result<String, String> {
        let s = self
            .handle
            .click(self.session()?, selector)
            .await
            .map_err(|e| e.to_string())?;
        Ok(format!("clicked; now at {} ({})", s.url, s.title))
    }

    pub async fn type_text(&self, selector: &str, text: &str) -> Result<String, String> {
        let s = self
            .handle
            .type_text(self.session()?, selector, text)
            .await
            .map_err(|e| e.to_string())?;
        Ok(format!("typed; now at {} ({})", s.url, s.title))
    }

    /// The page's text.
    pub async fn read(&self) -> Result<String, String> {
        let c = self
            .handle
            .content(self.session()?)
            .await
            .map_err(|e| e.to_string())?;
        let cut = if c.truncated { "\n[cut]" } else { "" };
        Ok(format!("{} ({})\n\n{}{cut}", c.url, c.title, c.text))
    }
}

impl Drop for RunBrowser {
    fn drop(&mut self) {
        // The run is over however it ended: its session goes with it.
        if let Some(id) = self.session_id.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let handle = self.handle.clone();
            runtime.spawn(async move {
                if let Err(e) = handle.close(&id).await {
                    tracing::debug!(session_id = %id, error = %e, "closing a run's browser session");
                }
            });
        }
    }
}
