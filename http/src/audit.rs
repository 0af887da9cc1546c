//! Recording audit events from handlers: who (the authenticated principal, and the
//! API token it acted with) and from where (the peer address), taken from the request.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use palyra_actors::audit::{AuditEntry, AuditKind, AuditLog, AuditOutcome};

use crate::request::Caller;
use crate::state::AppState;
use crate::throttle::{AuditBudget, BudgetVerdict};

/// The audit log with the request's actor and peer.
#[derive(Debug, Clone)]
pub struct Audit {
    log: AuditLog,
    actor: String,
    peer: Option<String>,
    request_id: Option<String>,
}

impl FromRequestParts<AppState> for Audit {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        Ok(Self::from_parts(&parts.extensions, state))
    }
}

impl Audit {
    pub fn from_parts(extensions: &axum::http::Extensions, state: &AppState) -> Self {
        Self {
            log: state.audit.clone(),
            actor: extensions
                .get::<Caller>()
                .map_or_else(|| "anonymous".to_owned(), Caller::actor),
            peer: extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_canonical().to_string()),
            request_id: extensions
                .get::<crate::request::RequestId>()
                .map(|r| r.0.clone()),
        }
    }

    /// The same request, acted by `actor` (a login names its principal).
    pub fn as_actor(mut self, actor: &str) -> Self {
        self.actor = actor.to_owned();
        self
    }

    /// Queues an event for the writer (see [`AuditLog::submit`]). Called once the
    /// change it reports is durable; a failure to store it is logged, not returned,
    /// because the change stands. `async` so call sites read as the step they are.
    pub async fn record(
        &self,
        kind: AuditKind,
        subject: &str,
        outcome: AuditOutcome,
        detail: impl Into<String>,
    ) {
        self.submit(kind, subject, outcome, detail);
    }

    /// [`Audit::record`] for code that cannot await: a tower service's `call`.
    pub fn submit(
        &self,
        kind: AuditKind,
        subject: &str,
        outcome: AuditOutcome,
        detail: impl Into<String>,
    ) {
        self.log.submit(AuditEntry {
            actor: self.actor.clone(),
            peer: self.peer.clone(),
            kind,
            subject: subject.to_owned(),
            outcome,
            detail: detail.into(),
            request_id: self.request_id.clone(),
        });
    }

    /// Records an unauthenticated failure (a wrong token or password) within the
    /// global budget: beyond it the event is only counted, and the count becomes one
    /// summary event when the window ends.
    pub fn submit_unauthenticated_failure(
        &self,
        budget: &AuditBudget,
        subject: &str,
        detail: impl Into<String>,
    ) {
        match budget.admit() {
            BudgetVerdict::Fold => return,
            BudgetVerdict::Record => {}
            BudgetVerdict::RecordAfterSummary { folded } => {
                self.log.submit(folded_summary(folded, budget));
            }
        }
        self.submit(
            AuditKind::LoginFailed,
            subject,
            AuditOutcome::Failure,
            detail,
        );
    }

    pub async fn success(&self, kind: AuditKind, subject: &str, detail: impl Into<String>) {
        self.record(kind, subject, AuditOutcome::Success, detail)
            .await;
    }

    pub async fn failure(&self, kind: AuditKind, subject: &str, detail: impl Into<String>) {
        self.record(kind, subject, AuditOutcome::Failure, detail)
            .await;
    }
}

/// The one event that stands for `folded` unauthenticated failures of a window.
pub fn folded_summary(folded: usize, budget: &AuditBudget) -> AuditEntry {
    AuditEntry::system(
        AuditKind::LoginFailed,
        "unauthenticated",
        AuditOutcome::Failure,
        format!(
            "{folded} more failed logins within {} s, beyond the audit budget, not recorded one by one",
            budget.window().as_secs()
        ),
    )
}
