//! What a session is: the API's view, the stored record, the published index's entries,
//! the policy and the checks of what clients send.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use palyra_storage::{StoredRecord, Table};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::error::ActorError;
use crate::operators::Role;
use crate::secret::SecretString;
use crate::time::to_datetime;

/// The session as the API shows it (`ConsoleSession` of the admin API). Its `Debug`
/// output leaves out the CSRF token.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConsoleSession {
    /// Who logged in: `root` (the admin token) or `operator:<operator id>`.
    pub principal: String,
    /// What the session may do.
    pub role: Role,
    /// The device the operator named at login.
    pub device_id: String,
    /// Send this in `x-palyra-csrf-token` on every request made with the session's
    /// cookie, reads included. Answered only here (login and handoff redemption): a
    /// request made with the cookie never gets it back.
    pub csrf_token: String,
    pub issued_at: DateTime<Utc>,
    /// Absolute end of the session.
    pub expires_at: DateTime<Utc>,
    /// End of the session unless it is used before then (sliding).
    pub idle_expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for ConsoleSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleSession")
            .field("principal", &self.principal)
            .field("role", &self.role)
            .field("device_id", &self.device_id)
            .field("csrf_token", &"[redacted]")
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .field("idle_expires_at", &self.idle_expires_at)
            .finish()
    }
}

/// The current session as a request made with its cookie sees it
/// (`GET /console/v1/auth/session`): a [`ConsoleSession`] without its CSRF token, which
/// only login and handoff redemption answer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionView {
    /// Who logged in: `root` (the admin token) or `operator:<operator id>`.
    pub principal: String,
    /// What the session may do.
    pub role: Role,
    /// The device the operator named at login.
    pub device_id: String,
    pub issued_at: DateTime<Utc>,
    /// Absolute end of the session.
    pub expires_at: DateTime<Utc>,
    /// End of the session unless it is used before then (sliding).
    pub idle_expires_at: DateTime<Utc>,
}

impl From<ConsoleSession> for SessionView {
    fn from(session: ConsoleSession) -> Self {
        Self {
            principal: session.principal,
            role: session.role,
            device_id: session.device_id,
            issued_at: session.issued_at,
            expires_at: session.expires_at,
            idle_expires_at: session.idle_expires_at,
        }
    }
}

/// A session just created: the cookie value (returned once, stored only as a digest)
/// and its view.
#[derive(Debug)]
pub struct IssuedSession {
    pub token: SecretString,
    pub session: ConsoleSession,
}

/// A request authenticated by a session cookie.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// Digest of the cookie, the session's key.
    pub digest: [u8; 32],
    pub session: ConsoleSession,
    /// The credential the session was created with (see [`SessionGrant::credential`]).
    pub credential: String,
}

/// Who a new session is for, with which role, and which credential vouched for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionGrant {
    /// `root` or `operator:<operator id>`.
    pub principal: String,
    pub role: Role,
    /// `root:<fingerprint of the admin token>`, `password:<operator id>` or
    /// `token:<token id>`: the auth middleware refuses a root session whose admin
    /// token is no longer the daemon's, and revocations find sessions by it.
    pub credential: String,
}

impl Authenticated {
    /// Constant-time check of a presented CSRF token.
    pub fn csrf_matches(&self, presented: &str) -> bool {
        self.session
            .csrf_token
            .as_bytes()
            .ct_eq(presented.as_bytes())
            .into()
    }
}

/// What the published index can tell about a cookie without reading storage.
#[derive(Debug)]
pub enum SessionCheck {
    /// A live session the index may vouch for now.
    Valid(Authenticated),
    /// No such live session.
    Refused,
    /// Shared database only: the index does not know the session, or may no longer
    /// vouch for it (another node may have changed its row); ask
    /// `SessionsHandle::reread` with this digest.
    Reread([u8; 32]),
}

/// Timeouts and limits for sessions.
#[derive(Debug, Clone)]
pub struct SessionPolicy {
    /// A session unused this long expires (sliding).
    pub idle_timeout: Duration,
    /// A session expires this long after login whatever its use.
    pub absolute_timeout: Duration,
    /// Most live sessions; the oldest is evicted to make room.
    pub max_live: usize,
    /// How often expired sessions are purged and activity is persisted.
    pub tick_interval: Duration,
    /// Shared database only: the longest a session read from storage is trusted before
    /// its row is read again (`[cluster] session_cache_ms`), so a revocation on any node
    /// is honoured here within it even if its notification never arrives.
    pub cache_ttl: Duration,
}

/// What is stored per session, keyed by the token digest. No `Debug`: it holds the
/// CSRF token.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct SessionRecord {
    pub(crate) principal: String,
    // Both absent in sessions created before operators existed: such a session has no
    // credential that can be checked, and is refused.
    #[serde(default)]
    pub(crate) role: Option<Role>,
    #[serde(default)]
    pub(crate) credential: String,
    pub(crate) device_id: String,
    pub(crate) csrf_token: String,
    pub(crate) issued_at_ms: i64,
    pub(crate) expires_at_ms: i64,
    pub(crate) last_seen_ms: i64,
}

impl StoredRecord for SessionRecord {
    const TABLE: Table = Table::Sessions;
    const VERSION: u32 = 1;
}

/// Trust without end: on redb the index is the authority (one node writes).
pub(crate) const ALWAYS: i64 = i64::MAX;
/// Trust that has ended: the row must be read again before the entry is believed.
pub(crate) const NEVER: i64 = i64::MIN;

/// One entry of the published index.
pub(crate) struct LiveSession {
    pub(crate) record: SessionRecord,
    // Advanced by readers on every authenticated request.
    pub(crate) last_seen_ms: AtomicI64,
    // The `last_seen_ms` that is durable; the tick persists anything newer.
    pub(crate) persisted_ms: AtomicI64,
    // Until when the entry is believed without reading its row: `ALWAYS` on redb; on a
    // shared database `cache_ttl` after the read (or this node's write) that confirmed
    // it, and `NEVER` once the change feed says the row changed or may have.
    pub(crate) trusted_until_ms: AtomicI64,
    // Shared database only: the row's bytes as this node last read or wrote them, the
    // expected value of the next activity flush (a compare-and-set), so a flush never
    // re-creates a revoked row nor overwrites another node's change.
    pub(crate) stored: Mutex<Vec<u8>>,
}

impl LiveSession {
    pub(crate) fn new(record: SessionRecord, stored: Vec<u8>, trusted_until_ms: i64) -> Self {
        Self {
            last_seen_ms: AtomicI64::new(record.last_seen_ms),
            persisted_ms: AtomicI64::new(record.last_seen_ms),
            trusted_until_ms: AtomicI64::new(trusted_until_ms),
            stored: Mutex::new(stored),
            record,
        }
    }

    pub(crate) fn is_valid(&self, now: i64, idle_ms: i64) -> bool {
        self.record.role.is_some()
            && now < self.record.expires_at_ms
            && now
                < self
                    .last_seen_ms
                    .load(Ordering::Relaxed)
                    .saturating_add(idle_ms)
    }

    pub(crate) fn is_trusted(&self, now: i64) -> bool {
        now < self.trusted_until_ms.load(Ordering::Relaxed)
    }

    pub(crate) fn distrust(&self) {
        self.trusted_until_ms.store(NEVER, Ordering::Relaxed);
    }

    pub(crate) fn stored(&self) -> Vec<u8> {
        self.stored
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn view(&self, idle_ms: i64) -> ConsoleSession {
        let last_seen = self.last_seen_ms.load(Ordering::Relaxed);
        ConsoleSession {
            principal: self.record.principal.clone(),
            role: self.record.role.unwrap_or(Role::Viewer),
            device_id: self.record.device_id.clone(),
            csrf_token: self.record.csrf_token.clone(),
            issued_at: to_datetime(self.record.issued_at_ms),
            expires_at: to_datetime(self.record.expires_at_ms),
            idle_expires_at: to_datetime((last_seen + idle_ms).min(self.record.expires_at_ms)),
        }
    }
}

/// The published index: live sessions by token digest.
pub(crate) type Index = Arc<RwLock<HashMap<[u8; 32], Arc<LiveSession>>>>;

/// The principal of the admin token.
pub const ROOT_PRINCIPAL: &str = "root";
/// The prefix of an operator's principal.
pub const OPERATOR_PREFIX: &str = "operator:";

/// Principals are `root` or `operator:` followed by an operator id.
pub fn validate_principal(principal: &str) -> Result<(), ActorError> {
    if principal == ROOT_PRINCIPAL {
        return Ok(());
    }
    let Some(id) = principal.strip_prefix(OPERATOR_PREFIX) else {
        return Err(ActorError::invalid(
            "principal",
            "must be \"root\" or start with \"operator:\"",
        ));
    };
    crate::operators::validate_operator_id(id)
        .map_err(|_| ActorError::invalid("principal", "after \"operator:\" comes an operator id"))
}

/// Device ids are 1 to 128 of `[A-Za-z0-9._:-]`.
pub fn validate_device_id(device_id: &str) -> Result<(), ActorError> {
    if device_id.is_empty()
        || device_id.len() > 128
        || !device_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    {
        return Err(ActorError::invalid(
            "device_id",
            "use 1 to 128 of A-Z a-z 0-9 . _ : -",
        ));
    }
    Ok(())
}

pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
