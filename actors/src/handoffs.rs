//! The handoffs actor: owns single-use browser handoff tokens.
//!
//! The CLI mints a handoff for a principal; a browser consumes it once within its
//! lifetime and receives a full console session. Tokens are stored only as digests.
//! Consuming removes the handoff from memory at once (a second consume loses the race)
//! and deletes it durably in the same transaction that creates the session.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use palyra_storage::{StoredRecord, Table, WriteOp, Writer, decode_record};
use serde::{Deserialize, Serialize};

use crate::error::stopped;
use crate::secret::{SecretString, random_token, token_digest};
use crate::sessions::{IssuedSession, SessionsHandle};
use crate::time::{now_ms, to_datetime};
use crate::{ActorError, Storage};

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
        writer: Writer,
        sessions: SessionsHandle,
        policy: HandoffPolicy,
    ) -> Result<Self, ActorError> {
        let now = now_ms();
        let mut pending = HashMap::new();
        let mut stale = Vec::new();
        for (key, value) in storage.load(Table::Handoffs)? {
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
            sessions,
            pending,
            policy,
            stale_at_start: stale,
        };
        Ok(Self {
            addr: actor.start(),
        })
    }

    /// Mints a handoff for `principal`; returns once it is durable.
    pub async fn mint(
        &self,
        principal: String,
        redirect_path: String,
    ) -> Result<MintedHandoff, ActorError> {
        validate_redirect_path(&redirect_path)?;
        self.addr
            .send(Mint {
                principal,
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
    sessions: SessionsHandle,
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
    principal: String,
    redirect_path: String,
}

impl Handler<Mint> for HandoffsActor {
    type Result = ResponseActFuture<Self, Result<MintedHandoff, ActorError>>;

    fn handle(&mut self, msg: Mint, _ctx: &mut Self::Context) -> Self::Result {
        let token = random_token();
        let digest = token_digest(token.expose());
        let ttl_ms = i64::try_from(self.policy.ttl.as_millis()).unwrap_or(i64::MAX);
        let record = HandoffRecord {
            principal: msg.principal,
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
        // Claimed here, before any await: a concurrent second consume finds nothing.
        let claimed = self.pending.remove(&msg.digest);
        let digest = msg.digest;
        let claimed = match claimed {
            Some(record) if record.expires_at_ms <= now_ms() => {
                // Expired: gone from memory now, and from disk soon.
                let expired = self.writer.submit(vec![WriteOp::delete(Table::Handoffs, digest.to_vec())]);
                actix::spawn(async move {
                    if let Err(e) = expired.await {
                        tracing::warn!(error = %e, "deleting an expired handoff failed");
                    }
                });
                None
            }
            other => other,
        };
        let sessions = self.sessions.clone();
        Box::pin(
            async move {
                let Some(record) = claimed else {
                    return (Err(ActorError::HandoffRejected), None);
                };
                let delete = vec![WriteOp::delete(Table::Handoffs, digest.to_vec())];
                let created = sessions
                    .create(
                        record.principal.clone(),
                        HANDOFF_DEVICE_ID.to_owned(),
                        delete,
                    )
                    .await;
                match created {
                    Ok(issued) => (
                        Ok(ConsumedHandoff {
                            issued,
                            redirect_path: record.redirect_path,
                        }),
                        None,
                    ),
                    // Nothing was committed: the handoff is still valid on disk, so it
                    // stays valid in memory too.
                    Err(e) => (Err(e), Some(record)),
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
