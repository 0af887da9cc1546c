//! Sessions on a database several nodes share: the index becomes a cache of rows.
//!
//! A session created on another node is read from its row on first use and cached; a
//! cached one is believed for at most `cache_ttl` after the read that confirmed it,
//! and not at all once the change feed reports a change of its row (it is then read
//! again at once) or while the feed is down. So a revocation on any node reaches this
//! one through the notification within milliseconds, and through the cache's
//! lifetime even when the notification is lost.
//! Activity is flushed with a compare-and-set on the bytes last seen, and expired rows
//! are deleted only if unchanged, because another node may have revoked, slid or
//! flushed the session since: a flush never re-creates a deleted row, and no node
//! deletes a session another node has just kept alive.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use actix::prelude::*;
use palyra_storage::{Change, Table, WriteOp, decode_record, encode_record};

use crate::error::ActorError;
use crate::sessions::actor::{Flushed, SessionsActor, TickWrite};
use crate::sessions::model::{Authenticated, LiveSession, NEVER, SessionRecord};
use crate::time::now_ms;

/// Reads a session's row and answers from it (the handle's `reread`).
#[derive(Message)]
#[rtype(result = "Result<Option<Authenticated>, ActorError>")]
pub(crate) struct Reread {
    pub(crate) digest: [u8; 32],
}

impl Handler<Reread> for SessionsActor {
    type Result = ResponseActFuture<Self, Result<Option<Authenticated>, ActorError>>;

    fn handle(&mut self, msg: Reread, _ctx: &mut Self::Context) -> Self::Result {
        let (generation, started) = (self.generation, now_ms());
        let storage = self.storage.clone();
        let digest = msg.digest;
        Box::pin(
            async move { storage.read_row(Table::Sessions, &digest).await }
                .into_actor(self)
                .map(move |read, act, _ctx| {
                    let row = read.map_err(ActorError::from)?;
                    Ok(act.settle_reread(digest, row, started, generation))
                }),
        )
    }
}

impl StreamHandler<Change> for SessionsActor {
    fn handle(&mut self, change: Change, ctx: &mut Self::Context) {
        match change {
            Change::Row {
                table: Table::Sessions,
                key,
            } => {
                self.generation += 1;
                let Ok(digest) = <[u8; 32]>::try_from(key.as_slice()) else {
                    return;
                };
                let cached = self
                    .index
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&digest)
                    .map(Arc::clone);
                if let Some(live) = cached {
                    // Revoked, slid or flushed elsewhere: believed again only once read.
                    live.distrust();
                    self.reread_in_background(digest, ctx);
                }
            }
            Change::Row { .. } => {}
            Change::Lost => {
                // Another node's revocation may now go unheard: until the feed listens
                // again, every check reads its row.
                tracing::warn!("change feed lost: every session check reads storage");
                self.feed_up = false;
                self.generation += 1;
                self.distrust_all();
            }
            Change::Resync => {
                // Anything may have changed while nobody listened.
                self.feed_up = true;
                self.generation += 1;
                self.distrust_all();
            }
        }
    }

    /// The feed ends when the database closes; the actor goes on (and stops with the
    /// System), so a shutdown's last flush still reaches it.
    fn finished(&mut self, _ctx: &mut Self::Context) {}
}

impl SessionsActor {
    /// Nothing cached is believed until its row is read again. The entries stay, so the
    /// activity they gathered is kept and the cap still counts them.
    fn distrust_all(&self) {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        for live in index.values() {
            live.distrust();
        }
    }

    /// Removes a session from the index and the eviction order.
    fn forget(&mut self, digest: &[u8; 32]) {
        if let Some(live) = self.publish_remove(digest) {
            self.by_issue.remove(&(live.record.issued_at_ms, *digest));
        }
    }

    /// Reads a cached session's row again without a request waiting for it.
    pub(super) fn reread_in_background(&self, digest: [u8; 32], ctx: &mut Context<Self>) {
        let (generation, started) = (self.generation, now_ms());
        let storage = self.storage.clone();
        ctx.spawn(
            async move { storage.read_row(Table::Sessions, &digest).await }
                .into_actor(self)
                .map(move |read, act, _ctx| match read {
                    Ok(row) => {
                        act.settle_reread(digest, row, started, generation);
                    }
                    // Still distrusted: the next check reads the row itself.
                    Err(e) => tracing::debug!(error = %e, "rereading a session failed"),
                }),
        );
    }

    /// The answer of a read of a session's row that began at `started`, when the
    /// actor's generation was `generation`; the index learns from it. A live session is
    /// cached, trusted for `cache_ttl` from `started` unless something happened during
    /// the read that it may not have seen (then it is answered, but not cached).
    pub(super) fn settle_reread(
        &mut self,
        digest: [u8; 32],
        row: Option<Vec<u8>>,
        started: i64,
        generation: u64,
    ) -> Option<Authenticated> {
        let decoded = row
            .as_deref()
            .map(|bytes| decode_record::<SessionRecord>(bytes).ok());
        let (Some(bytes), Some(Some(record))) = (row, decoded) else {
            // Gone (revoked, evicted, expired) or unreadable.
            self.forget(&digest);
            return None;
        };
        let prior = self
            .index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&digest)
            .map(Arc::clone);
        let unseen = generation != self.generation;
        let trusted_until = match self.feed_up && !unseen {
            true => self.trusted_from(started),
            false => NEVER,
        };
        let live = LiveSession::new(record, bytes.clone(), trusted_until);
        if let Some(prior) = &prior {
            // Activity this node saw and has not flushed yet still counts.
            live.last_seen_ms.fetch_max(
                prior.last_seen_ms.load(Ordering::Relaxed),
                Ordering::Relaxed,
            );
        }
        if !live.is_valid(now_ms(), self.idle_ms) {
            self.forget(&digest);
            // Expired by its stored activity: deleted unless another node changes it
            // first.
            let delete = self.writer.submit(unchanged_delete(digest, bytes));
            actix::spawn(async move {
                if let Err(e) = delete.await {
                    tracing::debug!(error = %e, "an expired session stays for another node");
                }
            });
            return None;
        }
        let session = live.view(self.idle_ms);
        let credential = live.record.credential.clone();
        if !unseen {
            self.by_issue.insert((live.record.issued_at_ms, digest));
            self.publish_insert(digest, Arc::new(live));
        }
        Some(Authenticated {
            digest,
            session,
            credential,
        })
    }

    /// The tick on a shared database: every expired row and every activity flush is its
    /// own conditional request, so one that another node outdated is refused alone.
    pub(super) fn shared_tick_writes(&mut self) -> Vec<TickWrite> {
        let now = now_ms();
        let mut writes: Vec<TickWrite> = self
            .stale_at_start
            .drain(..)
            .map(|(key, value)| {
                let ops = match <[u8; 32]>::try_from(key.as_slice()) {
                    Ok(digest) => unchanged_delete(digest, value),
                    Err(_) => vec![WriteOp::delete(Table::Sessions, key)],
                };
                TickWrite { ops, flushed: None }
            })
            .collect();
        let mut expired = Vec::new();
        {
            let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
            let by_issue = &self.by_issue;
            index.retain(|digest, live| {
                if !live.is_valid(now, self.idle_ms) {
                    expired.push((live.record.issued_at_ms, *digest, live.stored()));
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
                    let bytes = encode_record(&record);
                    writes.push(TickWrite {
                        ops: vec![WriteOp::CompareAndSet {
                            table: Table::Sessions,
                            key: digest.to_vec(),
                            expected: Some(live.stored()),
                            value: bytes.clone(),
                        }],
                        flushed: Some(Flushed {
                            digest: *digest,
                            live: Arc::clone(live),
                            seen,
                            bytes,
                        }),
                    });
                }
                true
            });
        }
        for (issued_at_ms, digest, stored) in expired {
            self.by_issue.remove(&(issued_at_ms, digest));
            writes.push(TickWrite {
                ops: unchanged_delete(digest, stored),
                flushed: None,
            });
        }
        writes
    }
}

/// Deletes a session's row only if it still holds `stored`: expired by what this node
/// knows, it may have been slid by another node since.
fn unchanged_delete(digest: [u8; 32], stored: Vec<u8>) -> Vec<WriteOp> {
    vec![
        WriteOp::Expect {
            table: Table::Sessions,
            key: digest.to_vec(),
            value: stored,
        },
        WriteOp::delete(Table::Sessions, digest.to_vec()),
    ]
}
