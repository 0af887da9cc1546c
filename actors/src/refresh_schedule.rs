//! The schedule events the registry sends the refresher: when an OAuth profile should
//! next be refreshed. A file of their own, so that neither the registry nor the
//! refresher imports the other for them.

use actix::Message;
use chrono::{DateTime, Utc};

/// When an OAuth profile should next be refreshed, as the registry sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleEntry {
    pub profile_id: String,
    pub provider: String,
    pub expires_at: Option<DateTime<Utc>>,
    /// False without a refresh token: never scheduled.
    pub refreshable: bool,
    /// The last refresh (or the sign-in): a token without expiry is refreshed a
    /// configured interval after it.
    pub last_success_at: Option<DateTime<Utc>>,
    /// Set after a transient failure: the backoff's next try.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub needs_reauth: bool,
    pub failure_count: u32,
}

/// A change the registry tells the refresher about.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) enum ScheduleChange {
    Upsert(ScheduleEntry),
    Remove(String),
}
