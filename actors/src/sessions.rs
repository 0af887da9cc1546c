//! The sessions actor: owns console sessions, their persistence, expiry and eviction.
//!
//! State lives in the actor; a read-only index of live sessions is published behind a
//! lock so request handlers validate a cookie with one hash lookup and no actor hop.
//! The actor is the only writer of that index. Sliding the idle timeout is an atomic
//! store into the live entry; the actor persists advanced `last_seen` times on its
//! periodic tick and at shutdown, so activity never costs a disk write per request.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use palyra_storage::{StoredRecord, Table, WriteOp, Writer, decode_record};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::error::stopped;
use crate::secret::{SecretString, random_token, token_digest};
use crate::time::{now_ms, to_datetime};
use crate::{ActorError, Storage};

/// The session as the API shows it (`ConsoleSession` of the admin API). Its `Debug`
/// output leaves out the CSRF token.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConsoleSession {
    /// Who logged in, for example `admin:local`.
    pub principal: String,
    /// The device the operator named at login.
    pub device_id: String,
    /// Send this in `x-palyra-csrf-token` on every state-changing request.
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
            .field("device_id", &self.device_id)
            .field("csrf_token", &"[redacted]")
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .field("idle_expires_at", &self.idle_expires_at)
            .finish()
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
}

/// What is stored per session, keyed by the token digest. No `Debug`: it holds the
/// CSRF token.
#[derive(Clone, Serialize, Deserialize)]
struct SessionRecord {
    principal: String,
    device_id: String,
    csrf_token: String,
    issued_at_ms: i64,
    expires_at_ms: i64,
    last_seen_ms: i64,
}

impl StoredRecord for SessionRecord {
    const TABLE: Table = Table::Sessions;
    const VERSION: u32 = 1;
}

/// One entry of the published index.
struct LiveSession {
    record: SessionRecord,
    // Advanced by readers on every authenticated request.
    last_seen_ms: AtomicI64,
    // The `last_seen_ms` that is durable; the tick persists anything newer.
    persisted_ms: AtomicI64,
}

impl LiveSession {
    fn new(record: SessionRecord) -> Self {
        Self {
            last_seen_ms: AtomicI64::new(record.last_seen_ms),
            persisted_ms: AtomicI64::new(record.last_seen_ms),
            record,
        }
    }
}

impl LiveSession {
    fn is_valid(&self, now: i64, idle_ms: i64) -> bool {
        now < self.record.expires_at_ms
            && now
                < self
                    .last_seen_ms
                    .load(Ordering::Relaxed)
                    .saturating_add(idle_ms)
    }

    fn view(&self, idle_ms: i64) -> ConsoleSession {
        let last_seen = self.last_seen_ms.load(Ordering::Relaxed);
        ConsoleSession {
            principal: self.record.principal.clone(),
            device_id: self.record.device_id.clone(),
            csrf_token: self.record.csrf_token.clone(),
            issued_at: to_datetime(self.record.issued_at_ms),
            expires_at: to_datetime(self.record.expires_at_ms),
            idle_expires_at: to_datetime((last_seen + idle_ms).min(self.record.expires_at_ms)),
        }
    }
}

type Index = Arc<RwLock<HashMap<[u8; 32], Arc<LiveSession>>>>;

/// Handle to the sessions actor. Cloning is shallow.
#[derive(Clone)]
pub struct SessionsHandle {
    addr: Addr<SessionsActor>,
    index: Index,
    idle_ms: i64,
}

impl std::fmt::Debug for SessionsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionsHandle")
            .field("live", &self.live_count())
            .finish_non_exhaustive()
    }
}

impl SessionsHandle {
    /// Loads persisted sessions (dropping expired ones) and starts the actor. Must be
    /// called inside the actix System.
    pub fn start(
        storage: &Storage,
        writer: Writer,
        policy: SessionPolicy,
        audit: crate::audit::AuditLog,
    ) -> Result<Self, ActorError> {
        let idle_ms = duration_ms(policy.idle_timeout);
        let now = now_ms();
        let mut map = HashMap::new();
        let mut by_issue = BTreeSet::new();
        let mut stale = Vec::new();
        for (key, value) in storage.load(Table::Sessions)? {
            let Ok(digest) = <[u8; 32]>::try_from(key.as_slice()) else {
                stale.push(key);
                continue;
            };
            let record: SessionRecord = match decode_record(&value) {
                Ok(record) => record,
                Err(e) => {
                    tracing::warn!(error = %e, "dropping an unreadable session record");
                    stale.push(key);
                    continue;
                }
            };
            let live = LiveSession::new(record);
            if live.is_valid(now, idle_ms) {
                by_issue.insert((live.record.issued_at_ms, digest));
                map.insert(digest, Arc::new(live));
            } else {
                stale.push(key);
            }
        }
        let index: Index = Arc::new(RwLock::new(map));
        let actor = SessionsActor {
            writer,
            audit,
            index: Arc::clone(&index),
            by_issue,
            in_flight: 0,
            policy,
            idle_ms,
            stale_at_start: stale,
        };
        Ok(Self {
            addr: actor.start(),
            index,
            idle_ms,
        })
    }

    /// Creates a session for `principal` and returns once it is durable. `extra_ops`
    /// commit in the same transaction (a consumed handoff's deletion, for example).
    pub async fn create(
        &self,
        principal: String,
        device_id: String,
        extra_ops: Vec<WriteOp>,
    ) -> Result<IssuedSession, ActorError> {
        validate_principal(&principal)?;
        validate_device_id(&device_id)?;
        self.addr
            .send(Create {
                principal,
                device_id,
                extra_ops,
            })
            .await
            .map_err(stopped("sessions"))?
    }

    /// Validates a session cookie. Reads the published index: no actor hop, no disk
    /// write. It does not slide the idle timeout: call [`SessionsHandle::touch`] once
    /// the request is authorized, so refused requests cannot keep a session alive.
    pub fn validate(&self, token: &str) -> Option<Authenticated> {
        let digest = token_digest(token);
        let live = {
            let index = self.index.read().unwrap_or_else(|e| e.into_inner());
            Arc::clone(index.get(&digest)?)
        };
        let now = now_ms();
        if !live.is_valid(now, self.idle_ms) {
            return None;
        }
        Some(Authenticated {
            digest,
            session: live.view(self.idle_ms),
        })
    }

    /// Slides the idle timeout of an authorized session: an atomic store.
    pub fn touch(&self, auth: &Authenticated) {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = index.get(&auth.digest) {
            live.last_seen_ms.fetch_max(now_ms(), Ordering::Relaxed);
        }
    }

    /// Revokes a session; returns once the revocation is durable.
    pub async fn revoke(&self, digest: [u8; 32]) -> Result<(), ActorError> {
        self.addr
            .send(Revoke { digest })
            .await
            .map_err(stopped("sessions"))?
    }

    /// Persists pending activity and purges expired sessions now (used at shutdown).
    pub async fn flush(&self) -> Result<(), ActorError> {
        self.addr
            .send(Flush)
            .await
            .map_err(stopped("sessions"))?
    }

    /// Number of sessions in the published index.
    pub fn live_count(&self) -> usize {
        self.index.read().map(|i| i.len()).unwrap_or(0)
    }

    /// True while the actor runs.
    pub fn is_running(&self) -> bool {
        self.addr.connected()
    }
}

/// Principals are `admin:` followed by 1 to 64 of `[A-Za-z0-9._@-]`.
pub fn validate_principal(principal: &str) -> Result<(), ActorError> {
    let Some(name) = principal.strip_prefix("admin:") else {
        return Err(ActorError::invalid(
            "principal",
            "must start with \"admin:\"",
        ));
    };
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
    {
        return Err(ActorError::invalid(
            "principal",
            "after \"admin:\" use 1 to 64 of A-Z a-z 0-9 . _ @ -",
        ));
    }
    Ok(())
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

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

struct SessionsActor {
    writer: Writer,
    /// Evictions at the cap are audited in the same write as the deletion.
    audit: crate::audit::AuditLog,
    index: Index,
    // Live sessions by issue time, so the oldest is found for eviction without a scan.
    by_issue: BTreeSet<(i64, [u8; 32])>,
    // Creations waiting for their commit; they count against the cap.
    in_flight: usize,
    policy: SessionPolicy,
    idle_ms: i64,
    // Keys of sessions found expired or unreadable at start, deleted on the first tick.
    stale_at_start: Vec<Vec<u8>>,
}

impl Actor for SessionsActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.policy.tick_interval, |act, ctx| {
            let ops = act.tick_ops();
            if !ops.is_empty() {
                let writer = act.writer.clone();
                ctx.spawn(
                    async move {
                        if let Err(e) = writer.write(ops).await {
                            tracing::warn!(error = %e, "persisting session activity failed");
                        }
                    }
                    .into_actor(act),
                );
            }
        });
    }
}

impl SessionsActor {
    fn publish_insert(&self, digest: [u8; 32], live: LiveSession) {
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        index.insert(digest, Arc::new(live));
    }

    fn publish_remove(&self, digest: &[u8; 32]) -> Option<Arc<LiveSession>> {
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        index.remove(digest)
    }

    /// The audit write of evicting a session to make room.
    fn eviction_audit(&self, digest: &[u8; 32]) -> WriteOp {
        let principal = self
            .index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(digest)
            .map(|s| s.record.principal.clone())
            .unwrap_or_else(|| "unknown".to_owned());
        self.audit.op(crate::audit::AuditEntry::system(
            crate::audit::AuditKind::SessionRevoked,
            principal,
            crate::audit::AuditOutcome::Success,
            format!(
                "evicted: sessions.max_live ({}) reached",
                self.policy.max_live
            ),
        ))
    }

    /// Concurrent logins can each find room before any of them commits; evict the
    /// surplus once they have.
    fn enforce_cap(&mut self) {
        let mut ops = Vec::new();
        while self.by_issue.len() > self.policy.max_live.max(1) {
            let Some(oldest) = self.by_issue.pop_first() else {
                break;
            };
            ops.push(self.eviction_audit(&oldest.1));
            self.publish_remove(&oldest.1);
            ops.push(WriteOp::delete(Table::Sessions, oldest.1.to_vec()));
        }
        if !ops.is_empty() {
            let durable = self.writer.submit(ops);
            actix::spawn(async move {
                if let Err(e) = durable.await {
                    tracing::warn!(error = %e, "evicting surplus sessions failed");
                }
            });
        }
    }

    /// Removes expired sessions from memory and returns the writes that delete them
    /// and persist advanced activity times.
    fn tick_ops(&mut self) -> Vec<WriteOp> {
        let now = now_ms();
        let mut ops: Vec<WriteOp> = self
            .stale_at_start
            .drain(..)
            .map(|key| WriteOp::delete(Table::Sessions, key))
            .collect();
        let mut expired = Vec::new();
        {
            let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
            let by_issue = &self.by_issue;
            index.retain(|digest, live| {
                if !live.is_valid(now, self.idle_ms) {
                    expired.push((live.record.issued_at_ms, *digest));
                    return false;
                }
                if !by_issue.contains(&(live.record.issued_at_ms, *digest)) {
                    // Being evicted or revoked: its deletion is queued, never re-put it.
                    return true;
                }
                let seen = live.last_seen_ms.load(Ordering::Relaxed);
                if seen > live.persisted_ms.load(Ordering::Relaxed) {
                    let mut record = live.record.clone();
                    record.last_seen_ms = seen;
                    ops.push(WriteOp::put(digest.to_vec(), &record));
                    live.persisted_ms.store(seen, Ordering::Relaxed);
                }
                true
            });
        }
        for key in expired {
            self.by_issue.remove(&key);
            ops.push(WriteOp::delete(Table::Sessions, key.1.to_vec()));
        }
        ops
    }
}

#[derive(Message)]
#[rtype(result = "Result<IssuedSession, ActorError>")]
struct Create {
    principal: String,
    device_id: String,
    extra_ops: Vec<WriteOp>,
}

impl Handler<Create> for SessionsActor {
    type Result = ResponseActFuture<Self, Result<IssuedSession, ActorError>>;

    fn handle(&mut self, msg: Create, _ctx: &mut Self::Context) -> Self::Result {
        let token = random_token();
        let digest = token_digest(token.expose());
        let now = now_ms();
        let record = SessionRecord {
            principal: msg.principal,
            device_id: msg.device_id,
            csrf_token: random_token().expose().to_owned(),
            issued_at_ms: now,
            expires_at_ms: now.saturating_add(duration_ms(self.policy.absolute_timeout)),
            last_seen_ms: now,
        };
        let mut ops = vec![WriteOp::put(digest.to_vec(), &record)];
        ops.extend(msg.extra_ops);
        // Make room: the oldest sessions go in the same transaction as the new one.
        let mut evicted = Vec::new();
        while self.by_issue.len() + self.in_flight >= self.policy.max_live.max(1) {
            let Some(oldest) = self.by_issue.pop_first() else {
                break;
            };
            ops.push(WriteOp::delete(Table::Sessions, oldest.1.to_vec()));
            ops.push(self.eviction_audit(&oldest.1));
            evicted.push(oldest);
        }
        self.in_flight += 1;
        let writer = self.writer.clone();
        Box::pin(async move { writer.write(ops).await }.into_actor(self).map(
            move |result, act, _ctx| {
                act.in_flight -= 1;
                if let Err(e) = result {
                    // Nothing was deleted: the evicted sessions that still live stay.
                    let index = act.index.read().unwrap_or_else(|e| e.into_inner());
                    let live: Vec<_> = evicted
                        .into_iter()
                        .filter(|k| index.contains_key(&k.1))
                        .collect();
                    drop(index);
                    act.by_issue.extend(live);
                    return Err(ActorError::from(e));
                }
                for oldest in &evicted {
                    act.publish_remove(&oldest.1);
                }
                act.by_issue.insert((record.issued_at_ms, digest));
                let live = LiveSession::new(record);
                let session = live.view(act.idle_ms);
                act.publish_insert(digest, live);
                act.enforce_cap();
                Ok(IssuedSession { token, session })
            },
        ))
    }
}

#[derive(Message)]
#[rtype(result = "Result<(), ActorError>")]
struct Revoke {
    digest: [u8; 32],
}

impl Handler<Revoke> for SessionsActor {
    type Result = ResponseActFuture<Self, Result<(), ActorError>>;

    fn handle(&mut self, msg: Revoke, _ctx: &mut Self::Context) -> Self::Result {
        // Invalid at once for every reader; the answer waits for durability.
        let removed = self.publish_remove(&msg.digest);
        if let Some(live) = &removed {
            self.by_issue
                .remove(&(live.record.issued_at_ms, msg.digest));
        }
        let writer = self.writer.clone();
        let ops = vec![WriteOp::delete(Table::Sessions, msg.digest.to_vec())];
        Box::pin(async move { writer.write(ops).await }.into_actor(self).map(
            move |result, act, _ctx| match result {
                Ok(()) if removed.is_some() => Ok(()),
                Ok(()) => Err(ActorError::NoSession),
                Err(e) => {
                    // Not durable: the session still exists, so keep serving it.
                    if let Some(live) = removed {
                        act.by_issue.insert((live.record.issued_at_ms, msg.digest));
                        let mut index = act.index.write().unwrap_or_else(|e| e.into_inner());
                        index.insert(msg.digest, live);
                    }
                    Err(ActorError::from(e))
                }
            },
        ))
    }
}

#[derive(Message)]
#[rtype(result = "Result<(), ActorError>")]
struct Flush;

impl Handler<Flush> for SessionsActor {
    type Result = ResponseFuture<Result<(), ActorError>>;

    fn handle(&mut self, _msg: Flush, _ctx: &mut Self::Context) -> Self::Result {
        let ops = self.tick_ops();
        let writer = self.writer.clone();
        Box::pin(async move {
            if !ops.is_empty() {
                writer.write(ops).await?;
            }
            Ok(())
        })
    }
}
