//! The browser actor: the table of live sessions, the limit (with the browsers still
//! starting), idle expiry and crashed browsers (one tick for both), and shutdown. It
//! only keeps the table; DevTools work runs on the requesting task (`handle.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::prelude::*;

use super::error::BrowserError;
use super::model::BrowserPolicy;
use super::session::{BrowserSession, close_session};
use crate::audit::{AuditEntry, AuditKind, AuditLog, AuditOutcome};
use crate::time::now_ms;

/// How often idle and dead sessions are looked for.
const TICK: Duration = Duration::from_millis(500);

pub(super) struct BrowserActor {
    /// Sessions the actor ends by itself (idle, crashed) are audited here; those a
    /// request closes are audited by its handler.
    audit: AuditLog,
    sessions: HashMap<String, Arc<BrowserSession>>,
    /// Browsers being started: they count against the limit.
    starting: usize,
    max_sessions: usize,
    idle_timeout_ms: i64,
    shutting_down: bool,
}

impl BrowserActor {
    /// A table with no session yet; the limit and the idle timeout come from `policy`.
    pub(super) fn new(policy: &BrowserPolicy, audit: AuditLog) -> Self {
        Self {
            audit,
            sessions: HashMap::new(),
            starting: 0,
            max_sessions: policy.max_sessions,
            idle_timeout_ms: i64::try_from(policy.idle_timeout.as_millis()).unwrap_or(i64::MAX),
            shutting_down: false,
        }
    }

    /// Audits a session the actor ended by itself: idle (`alive`) or crashed.
    fn audit_end(&self, session_id: &str, alive: bool) {
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
pub(super) struct Reserve;

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
pub(super) struct Release;

impl Handler<Release> for BrowserActor {
    type Result = ();

    fn handle(&mut self, _msg: Release, _ctx: &mut Self::Context) {
        self.starting = self.starting.saturating_sub(1);
    }
}

#[derive(Message)]
#[rtype(result = "Result<(), BrowserError>")]
pub(super) struct Insert(pub(super) Arc<BrowserSession>);

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
pub(super) struct Get(pub(super) String);

impl Handler<Get> for BrowserActor {
    type Result = Option<Arc<BrowserSession>>;

    fn handle(&mut self, msg: Get, _ctx: &mut Self::Context) -> Self::Result {
        self.sessions.get(&msg.0).cloned()
    }
}

#[derive(Message)]
#[rtype(result = "Option<Arc<BrowserSession>>")]
pub(super) struct Remove(pub(super) String);

impl Handler<Remove> for BrowserActor {
    type Result = Option<Arc<BrowserSession>>;

    fn handle(&mut self, msg: Remove, _ctx: &mut Self::Context) -> Self::Result {
        self.sessions.remove(&msg.0)
    }
}

#[derive(Message)]
#[rtype(result = "Vec<Arc<BrowserSession>>")]
pub(super) struct List;

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
pub(super) struct Drain;

impl Handler<Drain> for BrowserActor {
    type Result = Vec<Arc<BrowserSession>>;

    fn handle(&mut self, _msg: Drain, _ctx: &mut Self::Context) -> Self::Result {
        self.shutting_down = true;
        self.sessions.drain().map(|(_, s)| s).collect()
    }
}
