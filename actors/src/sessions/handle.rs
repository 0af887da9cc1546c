//! `SessionsHandle`: its start, and the checks request handlers make on the published
//! index without an actor hop.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use actix::prelude::*;
use palyra_storage::{Storage, WriteOp, Writer};

use crate::error::{ActorError, stopped};
use crate::secret::token_digest;
use crate::sessions::actor::{Create, Flush, Revoke, SessionsActor};
use crate::sessions::model::{
    Authenticated, Index, IssuedSession, SessionCheck, SessionGrant, SessionPolicy, SessionRecord,
    duration_ms, validate_device_id, validate_principal,
};
use crate::sessions::shared::Reread;
use crate::snapshot::Snapshot;
use crate::time::now_ms;

/// Handle to the sessions actor. Cloning is shallow.
#[derive(Clone)]
pub struct SessionsHandle {
    addr: Addr<SessionsActor>,
    index: Index,
    // Revocations by operator or token read the rows, which every node writes.
    storage: Storage,
    idle_ms: i64,
    // On a shared database the index is a cache another node's write can outdate, so
    // a miss or a stale entry is a question for storage, not a refusal.
    shared: bool,
}

impl std::fmt::Debug for SessionsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionsHandle")
            .field("live", &self.live_count())
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl SessionsHandle {
    /// Loads persisted sessions (dropping expired ones) and starts the actor. Must be
    /// called inside the actix System (and its tokio runtime: on a shared database the
    /// actor follows the change feed).
    pub fn start(
        storage: &Storage,
        snapshot: &Snapshot,
        writer: Writer,
        policy: SessionPolicy,
        audit: crate::audit::AuditLog,
    ) -> Result<Self, ActorError> {
        let idle_ms = duration_ms(policy.idle_timeout);
        let (actor, index) = SessionsActor::load(storage, snapshot, writer, policy, audit);
        Ok(Self {
            addr: actor.start(),
            index,
            storage: storage.clone(),
            idle_ms,
            shared: storage.is_shared(),
        })
    }

    /// Creates a session for `principal` and returns once it is durable. `extra_ops`
    /// commit in the same transaction (a consumed handoff's take, for example); if one
    /// of them is refused, nothing is created and the error is
    /// [`palyra_storage::StorageError::Refused`].
    pub async fn create(
        &self,
        grant: SessionGrant,
        device_id: String,
        extra_ops: Vec<WriteOp>,
    ) -> Result<IssuedSession, ActorError> {
        validate_principal(&grant.principal)?;
        validate_device_id(&device_id)?;
        self.addr
            .send(Create {
                grant,
                device_id,
                extra_ops,
            })
            .await
            .map_err(stopped("sessions"))?
    }

    /// Checks a session cookie against the published index: no actor hop, no storage
    /// read, no disk write. On redb the index is the authority and the answer is final;
    /// on a shared database it may be [`SessionCheck::Reread`]. It does not slide the
    /// idle timeout: call [`SessionsHandle::touch`] once the request is authorized, so
    /// refused requests cannot keep a session alive.
    pub fn check(&self, token: &str) -> SessionCheck {
        let digest = token_digest(token);
        let live = {
            let index = self.index.read().unwrap_or_else(|e| e.into_inner());
            index.get(&digest).map(Arc::clone)
        };
        let Some(live) = live else {
            return match self.shared {
                true => SessionCheck::Reread(digest),
                false => SessionCheck::Refused,
            };
        };
        let now = now_ms();
        if live.is_valid(now, self.idle_ms) && live.is_trusted(now) {
            return SessionCheck::Valid(Authenticated {
                digest,
                session: live.view(self.idle_ms),
                credential: live.record.credential.clone(),
            });
        }
        // Another node may have slid the idle timeout; nothing extends the absolute one.
        if self.shared && now < live.record.expires_at_ms {
            SessionCheck::Reread(digest)
        } else {
            SessionCheck::Refused
        }
    }

    /// Reads a session's row (shared database) and answers from it: `None` if it is
    /// gone or expired. A live one is cached for `cache_ttl`. An error means storage
    /// could not be read: the session can be neither vouched for nor refused.
    pub async fn reread(&self, digest: [u8; 32]) -> Result<Option<Authenticated>, ActorError> {
        self.addr
            .send(Reread { digest })
            .await
            .map_err(stopped("sessions"))?
    }

    /// Validates a session cookie: [`SessionsHandle::check`], then a read of its row
    /// when the index cannot answer alone.
    pub async fn validate(&self, token: &str) -> Result<Option<Authenticated>, ActorError> {
        match self.check(token) {
            SessionCheck::Valid(auth) => Ok(Some(auth)),
            SessionCheck::Refused => Ok(None),
            SessionCheck::Reread(digest) => self.reread(digest).await,
        }
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

    /// Revokes every session whose principal and credential `matches` (an operator
    /// disabled, a token revoked); returns how many. The stored rows decide, not this
    /// node's index, so sessions other nodes created are found too; each revocation is
    /// durable before this returns.
    pub async fn revoke_matching(
        &self,
        matches: impl Fn(&str, &str) -> bool,
    ) -> Result<usize, ActorError> {
        let rows = self
            .storage
            .read_table(palyra_storage::Table::Sessions)
            .await?;
        let mut revoked = 0;
        for (key, value) in rows {
            let Ok(digest) = <[u8; 32]>::try_from(key.as_slice()) else {
                continue;
            };
            let Ok(record) = palyra_storage::decode_record::<SessionRecord>(&value) else {
                continue;
            };
            if !matches(&record.principal, &record.credential) {
                continue;
            }
            match self.revoke(digest).await {
                Ok(()) => revoked += 1,
                Err(ActorError::NoSession) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(revoked)
    }

    /// Persists pending activity and purges expired sessions now (used at shutdown).
    pub async fn flush(&self) -> Result<(), ActorError> {
        self.addr.send(Flush).await.map_err(stopped("sessions"))?
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
