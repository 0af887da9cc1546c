//! Following the other nodes: the change feed, rereads of the rows it names, resyncs,
//! and the commit of every registry write, which rereads the rows of a write another
//! node's write got in the way of (the bookkeeping is `rows.rs`).

use std::collections::{BTreeSet, HashMap};

use actix::fut::LocalBoxActorFuture;
use actix::prelude::*;
use palyra_storage::{Change, Table, WriteOp, WriteOutcome, decode_record};

use super::actor::RegistryActor;
use super::attempts::{AttemptRecord, AttemptStatus};
use super::model::AuthProfileRecord;
use super::rows::{FOLLOWED, ReadDone, RowId, changed_elsewhere};
use crate::error::ActorError;
use crate::reload::reload;
use crate::snapshot::Snapshot;

/// A change on the feed, forwarded to the actor.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Changed(pub(super) Change);

impl Handler<Changed> for RegistryActor {
    type Result = ();

    fn handle(&mut self, Changed(change): Changed, ctx: &mut Self::Context) {
        match change {
            Change::Row { table, key } if FOLLOWED.contains(&table) => {
                let row = (table, key);
                if self.sync.changed(&row) {
                    self.reread(row, ctx);
                }
            }
            Change::Row { .. } => {}
            // Nothing the registry keeps is a revocation to honour at once; the
            // resync that follows a new connection rereads everything.
            Change::Lost => {}
            Change::Resync => self.resync(ctx),
        }
    }
}

impl RegistryActor {
    /// Follows the change feed (PostgreSQL only: on redb there is no other node).
    pub(super) fn follow_changes(&mut self, ctx: &mut Context<Self>) {
        if !self.storage.is_shared() {
            return;
        }
        let mut feed = self.storage.changes();
        // What changed between the start-up snapshot and this subscription was heard
        // by nobody here (another actor may have started the listener, and its first
        // resync, before): read it all once now that changes are followed.
        self.resync(ctx);
        // A weak address: the feed outlives no actor.
        let me = ctx.address().downgrade();
        tokio::spawn(async move {
            while let Some(change) = feed.next().await {
                let Some(addr) = me.upgrade() else { break };
                if addr.send(Changed(change)).await.is_err() {
                    break;
                }
            }
        });
    }

    /// Queues `ops` (memory already shows their effect) and returns their commit.
    /// Refused (another node changed a row first): the rows are reread into memory,
    /// then [`CHANGED_ELSEWHERE`] is answered. Failed (the database): the actor turns
    /// stale and reloads (`crate::reload`); while stale every write is refused before
    /// it reaches storage.
    pub(super) fn commit(
        &mut self,
        mut ops: Vec<WriteOp>,
    ) -> LocalBoxActorFuture<Self, Result<(), ActorError>> {
        if let Some(refused) = self.reload.refusal("registry") {
            return actix::fut::ready(Err(refused)).boxed_local();
        }
        match self.vault.guard(&mut ops) {
            Ok(true) => {}
            // Sealed under a key another node just rotated away from: the handle's
            // retry seals again under the new one.
            // Memory already shows the write (a new profile, its secret): reread its
            // rows first, so the retry builds on what is stored, not on that.
            Ok(false) => {
                let rows = self.sync.rows_of(&ops);
                return self.reread_now(rows, changed_elsewhere());
            }
            // Not sealed at all (this node lacks the vault's current key): memory
            // already shows the write here too, so it is reread the same way before
            // the refusal is answered.
            Err(e) => {
                let rows = self.sync.rows_of(&ops);
                return self.reread_now(rows, e.into());
            }
        }
        self.vault.note_writes(&ops);
        let rows = self.sync.begin(&ops);
        let write = self.writer.submit_checked(ops);
        write
            .into_actor(self)
            .then(move |outcome, act, ctx| {
                let again = act.sync.end(&rows);
                for row in again {
                    act.reread(row, ctx);
                }
                match outcome {
                    Ok(WriteOutcome::Applied { .. }) => actix::fut::ready(Ok(())).boxed_local(),
                    Ok(WriteOutcome::Refused { op }) => {
                        tracing::info!(op, "a registry write lost to another node's; rereading its rows");
                        act.reread_now(rows, changed_elsewhere())
                    }
                    Err(e) => {
                        tracing::error!(actor = "registry", error = %e, "commit failed; reloading state from storage");
                        reload(act, ctx);
                        actix::fut::ready(Err(e.into())).boxed_local()
                    }
                }
            })
            .boxed_local()
    }

    /// Rereads the rows of a write that was refused or never sent and answers
    /// `answer` (for a refusal [`CHANGED_ELSEWHERE`]) once memory shows them (rows
    /// with a later write of ours in flight are reread after it).
    fn reread_now(
        &mut self,
        rows: Vec<RowId>,
        answer: ActorError,
    ) -> LocalBoxActorFuture<Self, Result<(), ActorError>> {
        for row in &rows {
            self.sync.start_read(row);
        }
        let storage = self.storage.clone();
        async move {
            let mut read = Vec::with_capacity(rows.len());
            for (table, key) in rows {
                let value = storage.read_row(table, &key).await;
                read.push(((table, key), value));
            }
            read
        }
        .into_actor(self)
        .map(|read, act, ctx| {
            let mut failed = None;
            for (row, value) in read {
                // This read began after the refused write resolved, so it is at
                // least as new as memory unless a write of ours is in flight now; the
                // verdict of other reads sharing the row's flags only adds a reread.
                let done = act.sync.read_done(&row);
                let writing = act.sync.writing(&row);
                match value {
                    Ok(value) => {
                        if !writing {
                            act.apply_row(row.0, &row.1, value);
                        }
                        if matches!(done, ReadDone::Again | ReadDone::ApplyAndAgain) {
                            act.reread(row, ctx);
                        }
                    }
                    Err(e) => failed = Some(e),
                }
            }
            match failed {
                Some(e) => {
                    tracing::warn!(error = %e, "rereading a row failed; reloading");
                    reload(act, ctx);
                    Err(e.into())
                }
                None => Err(answer),
            }
        })
        .boxed_local()
    }

    /// Rereads one row another node changed and applies it unless a write of ours
    /// to it went out meanwhile.
    fn reread(&mut self, row: RowId, ctx: &mut Context<Self>) {
        let storage = self.storage.clone();
        let (table, key) = row.clone();
        ctx.spawn(
            async move { storage.read_row(table, &key).await }
                .into_actor(self)
                .map(move |read, act, ctx| match read {
                    Ok(value) => match act.sync.read_done(&row) {
                        ReadDone::Apply => act.apply_row(row.0, &row.1, value),
                        ReadDone::ApplyAndAgain => {
                            act.apply_row(row.0, &row.1, value);
                            act.reread(row, ctx);
                        }
                        ReadDone::Again => act.reread(row, ctx),
                        ReadDone::Skip => {}
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "rereading a changed row failed; retrying");
                        act.sync.read_done(&row);
                        ctx.run_later(std::time::Duration::from_secs(1), move |act, ctx| {
                            if act.sync.changed(&row) {
                                act.reread(row, ctx);
                            }
                        });
                    }
                }),
        );
    }

    /// Rereads every followed table (the feed reconnected or fell behind) and applies
    /// each row that no write of ours touched meanwhile; those are reread one by one.
    fn resync(&mut self, ctx: &mut Context<Self>) {
        if self.sync.resync_touched.is_some() {
            self.sync.resync_again = true;
            return;
        }
        self.sync.start_resync();
        let storage = self.storage.clone();
        ctx.spawn(
            async move { Snapshot::read(&storage, &FOLLOWED).await }
                .into_actor(self)
                .map(|read, act, ctx| {
                    let touched = act.sync.resync_touched.take().unwrap_or_default();
                    match read {
                        Ok(snapshot) => {
                            for table in FOLLOWED {
                                let stored: HashMap<&[u8], &[u8]> = snapshot
                                    .rows(table)
                                    .iter()
                                    .map(|(k, v)| (k.as_slice(), v.as_slice()))
                                    .collect();
                                let mut keys: BTreeSet<Vec<u8>> =
                                    stored.keys().map(|k| k.to_vec()).collect();
                                keys.extend(act.memory_keys(table));
                                for key in keys {
                                    let row = (table, key);
                                    if touched.contains(&row) || !act.sync.idle(&row) {
                                        if act.sync.changed(&row) {
                                            act.reread(row, ctx);
                                        }
                                        continue;
                                    }
                                    let value = stored.get(row.1.as_slice()).map(|v| v.to_vec());
                                    act.apply_row(table, &row.1, value);
                                }
                            }
                            tracing::info!("registry resynced with the database");
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "registry resync failed; retrying");
                            act.sync.resync_again = true;
                        }
                    }
                    if std::mem::take(&mut act.sync.resync_again) {
                        ctx.run_later(std::time::Duration::from_millis(500), |act, ctx| {
                            act.resync(ctx)
                        });
                    }
                }),
        );
    }

    /// The keys memory holds of a followed table.
    fn memory_keys(&self, table: Table) -> Vec<Vec<u8>> {
        match table {
            Table::AuthProfiles => self
                .profiles
                .keys()
                .map(|k| k.as_bytes().to_vec())
                .collect(),
            Table::AuthDefaults => self
                .defaults
                .keys()
                .map(|k| k.as_bytes().to_vec())
                .collect(),
            Table::Vault => self.vault.refs(),
            Table::OAuthAttempts => self
                .attempts
                .keys()
                .map(|k| k.as_bytes().to_vec())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Makes memory show a row as storage holds it (`None`: no row).
    pub(super) fn apply_row(&mut self, table: Table, key: &[u8], value: Option<Vec<u8>>) {
        let text = String::from_utf8_lossy(key).into_owned();
        match table {
            Table::AuthProfiles => match value {
                Some(bytes) => match decode_record::<AuthProfileRecord>(&bytes) {
                    Ok(record) => {
                        self.sync.saw(key, Some(&bytes));
                        self.notify_refresher(Some(&record), &text);
                        self.profiles.insert(text, record);
                    }
                    Err(e) => tracing::warn!(error = %e, "a changed profile row does not decode"),
                },
                None => {
                    self.sync.saw(key, None);
                    if self.profiles.remove(&text).is_some() {
                        self.notify_refresher(None, &text);
                    }
                }
            },
            Table::AuthDefaults => match value {
                Some(id) => {
                    self.defaults
                        .insert(text, String::from_utf8_lossy(&id).into_owned());
                }
                None => {
                    self.defaults.remove(&text);
                }
            },
            Table::Vault => self.vault.note_row(&text, value),
            Table::VaultMeta => self.vault.note_meta(&text, value),
            Table::OAuthAttempts => {
                if let Some(old) = self.attempts.remove(&text) {
                    self.attempts_by_state.remove(&old.state_digest);
                }
                if let Some(record) = value.and_then(|v| decode_record::<AttemptRecord>(&v).ok()) {
                    if record.status == AttemptStatus::Pending {
                        self.attempts_by_state
                            .insert(record.state_digest.clone(), text.clone());
                    }
                    self.attempts.insert(text, record);
                }
            }
            _ => {}
        }
    }
}

impl RegistryActor {
    /// A row just read from the database by a handle: memory takes it unless a write
    /// of ours to it is in flight (a reread under way brings the same or newer).
    pub(super) fn observe_row(&mut self, table: Table, key: &[u8], bytes: Vec<u8>) {
        let row = (table, key.to_vec());
        if !self.sync.writing(&row) {
            self.apply_row(table, key, Some(bytes));
        }
    }
}
