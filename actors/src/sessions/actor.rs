//! The sessions actor: its state, the load at start, and the handlers that create,
//! revoke and persist sessions (the tick that purges and flushes activity).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use actix::prelude::*;
use palyra_storage::{Storage, Table, WriteOp, WriteOutcome, Writer, decode_record, encode_record};

use crate::error::ActorError;
use crate::secret::{random_token, token_digest};
use crate::sessions::model::{
    ALWAYS, Index, IssuedSession, LiveSession, SessionPolicy, SessionRecord, duration_ms,
};
use crate::snapshot::Snapshot;
use crate::time::now_ms;

pub(crate) struct SessionsActor {
    pub(super) writer: Writer,
    // Reads of rows the index does not know or may not vouch for (shared database).
    pub(super) storage: Storage,
    // Several nodes share the database: the index is a cache (see `shared.rs`).
    pub(super) shared: bool,
    /// Evictions at the cap are audited in the same write as the deletion.
    pub(super) audit: crate::audit::AuditLog,
    pub(super) index: Index,
    // Live sessions by issue time, so the oldest is found for eviction without a scan.
    pub(super) by_issue: BTreeSet<(i64, [u8; 32])>,
    // Creations waiting for their commit; they count against the cap.
    pub(super) in_flight: usize,
    pub(super) policy: SessionPolicy,
    pub(super) idle_ms: i64,
    // Rows found expired or unreadable at start (key and bytes), deleted on the first
    // tick.
    pub(super) stale_at_start: Vec<(Vec<u8>, Vec<u8>)>,
    // Shared database: counts every event after which a read already under way may be
    // outdated (a change of a sessions row, a revocation here, a lost or renewed feed);
    // a read that saw it move is answered but not trusted.
    pub(super) generation: u64,
    // Shared database: false from a lost change feed until it listens again; while it
    // is down nothing read is trusted, so every check reads its row.
    pub(super) feed_up: bool,
}

/// One write request of a tick, and on a shared database the activity it flushes.
pub(super) struct TickWrite {
    pub(super) ops: Vec<WriteOp>,
    pub(super) flushed: Option<Flushed>,
}

/// A compare-and-set of a session's `last_seen_ms`, to settle once its outcome is known.
pub(super) struct Flushed {
    pub(super) digest: [u8; 32],
    pub(super) live: Arc<LiveSession>,
    pub(super) seen: i64,
    pub(super) bytes: Vec<u8>,
}

impl SessionsActor {
    /// The actor over the sessions of `snapshot` that are still valid, and the index it
    /// publishes.
    pub(super) fn load(
        storage: &Storage,
        snapshot: &Snapshot,
        writer: Writer,
        policy: SessionPolicy,
        audit: crate::audit::AuditLog,
    ) -> (Self, Index) {
        let shared = storage.is_shared();
        let idle_ms = duration_ms(policy.idle_timeout);
        let now = now_ms();
        // What was read at start is as fresh as a read now.
        let trusted_until = match shared {
            true => now.saturating_add(duration_ms(policy.cache_ttl)),
            false => ALWAYS,
        };
        let mut map = HashMap::new();
        let mut by_issue = BTreeSet::new();
        let mut stale = Vec::new();
        for (key, value) in snapshot.rows(Table::Sessions).iter().cloned() {
            let Ok(digest) = <[u8; 32]>::try_from(key.as_slice()) else {
                stale.push((key, value));
                continue;
            };
            let record: SessionRecord = match decode_record(&value) {
                Ok(record) => record,
                Err(e) => {
                    tracing::warn!(error = %e, "dropping an unreadable session record");
                    stale.push((key, value));
                    continue;
                }
            };
            let live = LiveSession::new(record, value.clone(), trusted_until);
            if live.is_valid(now, idle_ms) {
                by_issue.insert((live.record.issued_at_ms, digest));
                map.insert(digest, Arc::new(live));
            } else {
                stale.push((key, value));
            }
        }
        let index: Index = Arc::new(RwLock::new(map));
        let actor = SessionsActor {
            writer,
            storage: storage.clone(),
            shared,
            audit,
            index: Arc::clone(&index),
            by_issue,
            in_flight: 0,
            policy,
            idle_ms,
            stale_at_start: stale,
            generation: 0,
            feed_up: true,
        };
        (actor, index)
    }
}

impl Actor for SessionsActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.shared {
            // Other nodes' changes of sessions rows (see `shared.rs`).
            let feed = self.storage.changes();
            ctx.add_stream(futures_util::stream::unfold(feed, |mut feed| async move {
                feed.next().await.map(|change| (change, feed))
            }));
        }
        ctx.run_interval(self.policy.tick_interval, |act, ctx| {
            let writes = act.tick_writes();
            if !writes.is_empty() {
                ctx.spawn(act.commit_tick(writes).map(|_, _, _| ()));
            }
        });
    }
}

impl SessionsActor {
    pub(super) fn publish_insert(&self, digest: [u8; 32], live: Arc<LiveSession>) {
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        index.insert(digest, live);
    }

    pub(super) fn publish_remove(&self, digest: &[u8; 32]) -> Option<Arc<LiveSession>> {
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        index.remove(digest)
    }

    /// Trust in a stored session begins at `from` (a read's start, a write's commit)
    /// and lasts `cache_ttl` on a shared database; on redb it does not end.
    pub(super) fn trusted_from(&self, from: i64) -> i64 {
        match self.shared {
            true => from.saturating_add(duration_ms(self.policy.cache_ttl)),
            false => ALWAYS,
        }
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
            self.generation += 1;
            let durable = self.writer.submit(ops);
            actix::spawn(async move {
                if let Err(e) = durable.await {
                    tracing::warn!(error = %e, "evicting surplus sessions failed");
                }
            });
        }
    }

    /// Removes expired sessions from memory and returns the write requests that delete
    /// them and persist advanced activity times. On redb that is one request of plain
    /// writes, as the index is the authority; on a shared database every row gets its
    /// own conditional request (see `shared.rs`).
    pub(super) fn tick_writes(&mut self) -> Vec<TickWrite> {
        if self.shared {
            return self.shared_tick_writes();
        }
        let now = now_ms();
        let mut ops: Vec<WriteOp> = self
            .stale_at_start
            .drain(..)
            .map(|(key, _)| WriteOp::delete(Table::Sessions, key))
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
        match ops.is_empty() {
            true => Vec::new(),
            false => vec![TickWrite { ops, flushed: None }],
        }
    }

    /// Queues a tick's requests now, in order, and settles each outcome: a flushed
    /// activity time becomes the new expected row, a refused flush makes the entry read
    /// its row again. The error is the first failure of any request.
    pub(super) fn commit_tick(
        &self,
        writes: Vec<TickWrite>,
    ) -> impl ActorFuture<Self, Output = Result<(), ActorError>> + use<> {
        let acks: Vec<_> = writes
            .into_iter()
            .map(|w| (self.writer.submit_checked(w.ops), w.flushed))
            .collect();
        async move {
            let mut outcomes = Vec::with_capacity(acks.len());
            for (ack, flushed) in acks {
                outcomes.push((ack.await, flushed));
            }
            outcomes
        }
        .into_actor(self)
        .map(|outcomes, act, ctx| {
            let mut failed = None;
            for (outcome, flushed) in outcomes {
                match (outcome, flushed) {
                    (Ok(WriteOutcome::Applied { .. }), Some(f)) => {
                        *f.live.stored.lock().unwrap_or_else(|e| e.into_inner()) = f.bytes;
                        f.live.persisted_ms.fetch_max(f.seen, Ordering::Relaxed);
                    }
                    // Another node changed the row (or removed it): read it again.
                    (Ok(WriteOutcome::Refused { .. }), Some(f)) => {
                        f.live.distrust();
                        act.reread_in_background(f.digest, ctx);
                    }
                    (Ok(_), None) => {}
                    (Err(e), _) => {
                        tracing::warn!(error = %e, "persisting session activity failed");
                        failed.get_or_insert(e);
                    }
                }
            }
            failed.map_or(Ok(()), |e| Err(ActorError::from(e)))
        })
    }
}

#[derive(Message)]
#[rtype(result = "Result<IssuedSession, ActorError>")]
pub(crate) struct Create {
    pub(crate) grant: crate::sessions::model::SessionGrant,
    pub(crate) device_id: String,
    pub(crate) extra_ops: Vec<WriteOp>,
}

impl Handler<Create> for SessionsActor {
    type Result = ResponseActFuture<Self, Result<IssuedSession, ActorError>>;

    fn handle(&mut self, msg: Create, _ctx: &mut Self::Context) -> Self::Result {
        let token = random_token();
        let digest = token_digest(token.expose());
        let now = now_ms();
        let record = SessionRecord {
            principal: msg.grant.principal,
            role: Some(msg.grant.role),
            credential: msg.grant.credential,
            device_id: msg.device_id,
            csrf_token: random_token().expose().to_owned(),
            issued_at_ms: now,
            expires_at_ms: now.saturating_add(duration_ms(self.policy.absolute_timeout)),
            last_seen_ms: now,
        };
        let stored = encode_record(&record);
        let mut ops = vec![WriteOp::Put {
            table: Table::Sessions,
            key: digest.to_vec(),
            value: stored.clone(),
        }];
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
                if !evicted.is_empty() {
                    act.generation += 1;
                }
                for oldest in &evicted {
                    act.publish_remove(&oldest.1);
                }
                act.by_issue.insert((record.issued_at_ms, digest));
                let trusted_until = act.trusted_from(now_ms());
                let live = LiveSession::new(record, stored, trusted_until);
                let session = live.view(act.idle_ms);
                act.publish_insert(digest, Arc::new(live));
                act.enforce_cap();
                Ok(IssuedSession { token, session })
            },
        ))
    }
}

#[derive(Message)]
#[rtype(result = "Result<(), ActorError>")]
pub(crate) struct Revoke {
    pub(crate) digest: [u8; 32],
}

impl Handler<Revoke> for SessionsActor {
    type Result = ResponseActFuture<Self, Result<(), ActorError>>;

    fn handle(&mut self, msg: Revoke, _ctx: &mut Self::Context) -> Self::Result {
        // Invalid at once for every reader; the answer waits for durability. A read of
        // the row already under way must not bring it back into the index as trusted.
        let removed = self.publish_remove(&msg.digest);
        self.generation += 1;
        if let Some(live) = &removed {
            self.by_issue
                .remove(&(live.record.issued_at_ms, msg.digest));
        }
        // On a shared database the row, not this node's index, says whether there was
        // a session to revoke: a take reports it.
        let op = match self.shared {
            true => WriteOp::take(Table::Sessions, msg.digest.to_vec()),
            false => WriteOp::delete(Table::Sessions, msg.digest.to_vec()),
        };
        let shared = self.shared;
        let written = self.writer.submit_checked(vec![op]);
        Box::pin(
            written
                .into_actor(self)
                .map(move |result, act, _ctx| match result {
                    Ok(WriteOutcome::Applied { .. }) if shared || removed.is_some() => Ok(()),
                    Ok(_) => Err(ActorError::NoSession),
                    Err(e) => {
                        // Not durable: the session still exists, so keep serving it.
                        if let Some(live) = removed {
                            act.by_issue.insert((live.record.issued_at_ms, msg.digest));
                            act.publish_insert(msg.digest, live);
                        }
                        Err(ActorError::from(e))
                    }
                }),
        )
    }
}

#[derive(Message)]
#[rtype(result = "Result<(), ActorError>")]
pub(crate) struct Flush;

impl Handler<Flush> for SessionsActor {
    type Result = ResponseActFuture<Self, Result<(), ActorError>>;

    fn handle(&mut self, _msg: Flush, _ctx: &mut Self::Context) -> Self::Result {
        let writes = self.tick_writes();
        Box::pin(self.commit_tick(writes))
    }
}
