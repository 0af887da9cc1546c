//! The handoffs actor: owns single-use browser handoff tokens.
//!
//! The CLI mints a handoff for a principal; a browser consumes it once within its
//! lifetime and receives a full console session. Tokens are stored only as digests.
//! Consuming takes the handoff's row (delete-returning) in the same transaction that
//! creates the session, so of concurrent consumes, on this node or any other, exactly
//! one creates a session: the database decides, not memory. Memory holds the handoffs
//! this node knows (minted here, or found at start) so a consume usually starts without
//! a read; on a database several nodes share, a handoff it does not know is read from
//! storage, since another node may have minted it.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use palyra_storage::{Storage, StorageError, StoredRecord, Table, WriteOp, Writer, decode_record};
use serde::{Deserialize, Serialize};

use crate::error::ActorError;
use crate::error::stopped;
use crate::secret::{SecretString, random_token, token_digest};
use crate::sessions::{IssuedSession, SessionGrant, SessionsHandle};
use crate::snapshot::Snapshot;
use crate::time::{now_ms, to_datetime};

/// Device id of sessions created by a handoff.
pub const HANDOFF_DEVICE_ID: &str = "browser-handoff";

/// Lifetime of handoff tokens.
#[derive(Debug, Clone)]
pub struct HandoffPolicy {
    pub ttl: Duration,
    /// How often expired handoffs are purged.
    pub tick_interval: Duration,
}

/// A handoff just minted: the token (shown once) and when it expires.
#[derive(Debug)]
pub struct MintedHandoff {
    pub token: SecretString,
    pub expires_at: DateTime<Utc>,
}

/// A consumed handoff: the new session and where to send the browser.
#[derive(Debug)]
pub struct ConsumedHandoff {
    pub issued: IssuedSession,
    pub redirect_path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct HandoffRecord {
    principal: String,
    // The minting caller's role and credential, which the session inherits; absent in
    // handoffs minted before operators existed, which are refused.
    #[serde(default)]
    role: Option<crate::operators::Role>,
    #[serde(default)]
    credential: String,
    redirect_path: String,
    expires_at_ms: i64,
}

impl StoredRecord for HandoffRecord {
    const TABLE: Table = Table::Handoffs;
    const VERSION: u32 = 1;
}

/// Handle to the handoffs actor. Cloning is shallow.
#[derive(Clone)]
pub struct HandoffsHandle {
    addr: Addr<HandoffsActor>,
}

impl std::fmt::Debug for HandoffsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandoffsHandle").finish_non_exhaustive()
    }
}

impl HandoffsHandle {
    /// Loads unexpired handoffs and starts the actor inside the actix System.
    pub fn start(
        storage: &Storage,
        snapshot: &Snapshot,
        writer: Writer,
        sessions: SessionsHandle,
        policy: HandoffPolicy,
    ) -> Result<Self, ActorError> {
        let now = now_ms();
        let mut pending = HashMap::new();
        let mut stale = Vec::new();
        for (key, value) in snapshot.rows(Table::Handoffs).iter().cloned() {
            match (
                <[u8; 32]>::try_from(key.as_slice()),
                decode_record::<HandoffRecord>(&value),
            ) {
                (Ok(digest), Ok(record)) if record.expires_at_ms > now => {
                    pending.insert(digest, record);
                }
                _ => stale.push(key),
            }
        }
        let actor = HandoffsActor {
            writer,
            storage: storage.clone(),
            shared: storage.is_shared(),
            sessions,
            pending,
            policy,
            stale_at_start: stale,
        };
        Ok(Self {
            addr: actor.start(),
        })
    }

    /// Mints a handoff for the session `grant` describes; returns once it is durable.
    pub async fn mint(
        &self,
        grant: SessionGrant,
        redirect_path: String,
    ) -> Result<MintedHandoff, ActorError> {
        validate_redirect_path(&redirect_path)?;
        self.addr
            .send(Mint {
                grant,
                redirect_path,
            })
            .await
            .map_err(stopped("handoffs"))?
    }

    /// Consumes a handoff token once, creating a console session.
    pub async fn consume(&self, token: &str) -> Result<ConsumedHandoff, ActorError> {
        self.addr
            .send(Consume {
                digest: token_digest(token),
            })
            .await
            .map_err(stopped("handoffs"))?
    }

    /// True while the actor runs.
    pub fn is_running(&self) -> bool {
        self.addr.connected()
    }
}

/// A redirect path must stay on this origin: it starts with `/`, not `//`, and holds no
/// backslash, control character or scheme-relative trick.
pub fn validate_redirect_path(path: &str) -> Result<(), ActorError> {
    let reason = if !path.starts_with('/') {
        Some("must start with /")
    } else if path.starts_with("//") {
        Some("must not start with //")
    } else if path.contains('\\') {
        Some("must not contain a backslash")
    } else if path.chars().any(char::is_control) {
        Some("must not contain control characters such as CR or LF")
    } else if path.len() > 2048 {
        Some("must be at most 2048 bytes")
    } else {
        None
    };
    match reason {
        Some(r) => Err(ActorError::invalid("redirect_path", r)),
        None => Ok(()),
    }
}

struct HandoffsActor {
    writer: Writer,
    // Reads of handoffs other nodes minted (shared database).
    storage: Storage,
    // Several nodes share the database: `pending` is not all there is.
    shared: bool,
    sessions: SessionsHandle,
    // The handoffs this node knows, a cache: the row is the authority.
    pending: HashMap<[u8; 32], HandoffRecord>,
    policy: HandoffPolicy,
    stale_at_start: Vec<Vec<u8>>,
}

impl Actor for HandoffsActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.policy.tick_interval, |act, ctx| {
            let now = now_ms();
            let mut ops: Vec<WriteOp> = act
                .stale_at_start
                .drain(..)
                .map(|key| WriteOp::delete(Table::Handoffs, key))
                .collect();
            act.pending.retain(|digest, record| {
                let keep = record.expires_at_ms > now;
                if !keep {
                    ops.push(WriteOp::delete(Table::Handoffs, digest.to_vec()));
                }
                keep
            });
            if !ops.is_empty() {
                let writer = act.writer.clone();
                ctx.spawn(
                    async move {
                        if let Err(e) = writer.write(ops).await {
                            tracing::warn!(error = %e, "purging expired handoffs failed");
                        }
                    }
                    .into_actor(act),
                );
            }
        });
    }
}

#[derive(Message)]
#[rtype(result = "Result<MintedHandoff, ActorError>")]
struct Mint {
    grant: SessionGrant,
    redirect_path: String,
}

impl Handler<Mint> for HandoffsActor {
    type Result = ResponseActFuture<Self, Result<MintedHandoff, ActorError>>;

    fn handle(&mut self, msg: Mint, _ctx: &mut Self::Context) -> Self::Result {
        let token = random_token();
        let digest = token_digest(token.expose());
        let ttl_ms = i64::try_from(self.policy.ttl.as_millis()).unwrap_or(i64::MAX);
        let record = HandoffRecord {
            principal: msg.grant.principal,
            role: Some(msg.grant.role),
            credential: msg.grant.credential,
            redirect_path: msg.redirect_path,
            expires_at_ms: now_ms().saturating_add(ttl_ms),
        };
        let ops = vec![WriteOp::put(digest.to_vec(), &record)];
        let writer = self.writer.clone();
        Box::pin(async move { writer.write(ops).await }.into_actor(self).map(
            move |result, act, _ctx| {
                result?;
                let expires_at = to_datetime(record.expires_at_ms);
                act.pending.insert(digest, record);
                Ok(MintedHandoff { token, expires_at })
            },
        ))
    }
}

#[derive(Message)]
#[rtype(result = "Result<ConsumedHandoff, ActorError>")]
struct Consume {
    digest: [u8; 32],
}

impl Handler<Consume> for HandoffsActor {
    type Result = ResponseActFuture<Self, Result<ConsumedHandoff, ActorError>>;

    fn handle(&mut self, msg: Consume, _ctx: &mut Self::Context) -> Self::Result {
        // Claimed here, before any await, so a concurrent consume on this node usually
        // finds nothing; the take below is what decides.
        let claimed = self.pending.remove(&msg.digest);
        let digest = msg.digest;
        let claimed = match claimed {
            Some(record) if record.expires_at_ms <= now_ms() => {
                self.delete_expired(digest);
                None
            }
            other => other,
        };
        // Not known here: on a shared database another node may have minted it.
        let read_through = (claimed.is_none() && self.shared).then(|| self.storage.clone());
        let sessions = self.sessions.clone();
        Box::pin(
            async move {
                let (record, known) = match (claimed, read_through) {
                    (Some(record), _) => (record, true),
                    (None, Some(storage)) => match read_handoff(&storage, digest).await {
                        Ok(Some(record)) => (record, false),
                        Ok(None) => return (Err(ActorError::HandoffRejected), None),
                        Err(e) => return (Err(e), None),
                    },
                    (None, None) => return (Err(ActorError::HandoffRejected), None),
                };
                let Some(role) = record.role else {
                    return (Err(ActorError::HandoffRejected), None);
                };
                let grant = SessionGrant {
                    principal: record.principal.clone(),
                    role,
                    credential: record.credential.clone(),
                };
                let take = vec![WriteOp::take(Table::Handoffs, digest.to_vec())];
                let created = sessions
                    .create(grant, HANDOFF_DEVICE_ID.to_owned(), take)
                    .await;
                match created {
                    Ok(issued) => (
                        Ok(ConsumedHandoff {
                            issued,
                            redirect_path: record.redirect_path,
                        }),
                        None,
                    ),
                    // The row was gone: consumed by another request, here or elsewhere.
                    Err(ActorError::Storage(StorageError::Refused { .. })) => {
                        (Err(ActorError::HandoffRejected), None)
                    }
                    // Nothing was committed: the handoff is still valid on disk, so it
                    // stays valid in memory too.
                    Err(e) => (Err(e), known.then_some(record)),
                }
            }
            .into_actor(self)
            .map(move |(result, restore), act, _ctx| {
                if let Some(record) = restore {
                    act.pending.insert(digest, record);
                }
                result
            }),
        )
    }
}

impl HandoffsActor {
    /// An expired handoff is gone from memory now, and from disk soon.
    fn delete_expired(&self, digest: [u8; 32]) {
        let expired = self
            .writer
            .submit(vec![WriteOp::delete(Table::Handoffs, digest.to_vec())]);
        actix::spawn(async move {
            if let Err(e) = expired.await {
                tracing::warn!(error = %e, "deleting an expired handoff failed");
            }
        });
    }
}

/// The stored handoff under `digest`, if it is there and unexpired.
async fn read_handoff(
    storage: &Storage,
    digest: [u8; 32],
) -> Result<Option<HandoffRecord>, ActorError> {
    let Some(bytes) = storage.read_row(Table::Handoffs, &digest).await? else {
        return Ok(None);
    };
    // An unreadable or expired row is refused; the tick of a node that knows it, or
    // the next start, deletes it.
    Ok(decode_record::<HandoffRecord>(&bytes)
        .ok()
        .filter(|record| record.expires_at_ms > now_ms()))
}
