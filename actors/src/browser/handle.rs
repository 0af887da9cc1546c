//! `BrowserHandle`: how the daemon reaches the browser actor. Each request takes its
//! session from the actor's table and does its DevTools work here, on the caller's
//! task, one request at a time per session; a dead browser turns any answer into
//! [`BrowserError::Gone`] and ends the session.

use std::sync::Arc;

use actix::prelude::*;

use super::actor::{BrowserActor, Drain, Get, Insert, List, Release, Remove, Reserve};
use super::error::BrowserError;
use super::isolation::{BrowserIsolation, Isolation};
use super::model::{
    BrowserPolicy, BrowserSessionInfo, BrowserSessionList, NavigationResult, NewBrowserSession,
    PageContent, PageState,
};
use super::page::check_selector;
use super::process;
use super::session::{BrowserSession, close_session, launch};
use crate::audit::AuditLog;

/// Handle to the browser actor. Cloning is shallow.
#[derive(Clone)]
pub struct BrowserHandle {
    addr: Addr<BrowserActor>,
    policy: Arc<BrowserPolicy>,
    isolation: Arc<Isolation>,
}

impl std::fmt::Debug for BrowserHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserHandle")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl BrowserHandle {
    /// Starts the actor inside the actix System. No browser starts here; browsers a
    /// killed daemon left behind are ended and their profiles removed.
    pub fn start(policy: BrowserPolicy, audit: AuditLog) -> Self {
        process::reap_leftovers(&policy.profiles_root);
        let isolation = Arc::new(Isolation::new(&policy.user));
        if let Some(Err(why)) = &isolation.user {
            tracing::warn!(%why, "browser sessions cannot start");
        }
        let actor = BrowserActor::new(&policy, audit);
        Self {
            addr: actor.start(),
            policy: Arc::new(policy),
            isolation,
        }
    }

    /// How browsers are kept apart from the daemon, for the posture.
    /// The sessions' egress policy and its resolver, for runs' `http_fetch` (one
    /// policy, one resolver for the daemon).
    pub fn url_policy(&self) -> super::UrlPolicy {
        self.policy.urls.clone()
    }

    pub fn isolation(&self) -> BrowserIsolation {
        self.isolation.report(self.policy.enabled)
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
        let launched = launch(&self.policy, &self.isolation, viewport).await;
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
                session.navigate(url, self.policy.navigation_timeout).await
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
        let result = session.navigate(url, self.policy.navigation_timeout).await;
        self.settle(&session, result).await
    }

    /// Clicks the first element matching a CSS selector, like a mouse would, and waits
    /// for a navigation it starts.
    pub async fn click(&self, session_id: &str, selector: &str) -> Result<PageState, BrowserError> {
        check_selector(selector)?;
        let session = self.session(session_id).await?;
        let _busy = session.busy.lock().await;
        let result = session
            .click(selector, self.policy.navigation_timeout)
            .await;
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
        let result = session.type_text(selector, text).await;
        self.settle(&session, result).await
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self, session_id: &str) -> Result<Vec<u8>, BrowserError> {
        let session = self.session(session_id).await?;
        let _busy = session.busy.lock().await;
        let result = session.screenshot().await;
        self.settle(&session, result).await
    }

    /// The page's text, cut at `content_max_bytes`.
    pub async fn content(&self, session_id: &str) -> Result<PageContent, BrowserError> {
        let session = self.session(session_id).await?;
        let _busy = session.busy.lock().await;
        let result = session.content(self.policy.content_max_bytes).await;
        self.settle(&session, result).await
    }

    /// Ends every session and refuses new ones (daemon shutdown).
    pub async fn shutdown(&self) {
        let Ok(sessions) = self.send(Drain).await else {
            return;
        };
        let count = sessions.len();
        futures_util::future::join_all(sessions.into_iter().map(close_session)).await;
        // The root sits in a shared temporary directory: leave nothing there. Only an
        // empty directory is removed (a profile that could not be deleted stays).
        let _ = std::fs::remove_dir(&self.policy.profiles_root);
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
}
