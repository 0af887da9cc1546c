//! What the registry knows of each row it shares with other nodes: the bytes it last
//! saw of each profile row (the expected value of its next compare-and-set) and its
//! own writes in flight per row.
//!
//! Memory changes as a write is queued, so a row with a write of ours in flight must
//! not be overwritten by a reread of an older copy; a change heard meanwhile marks the
//! row dirty and it is reread once the write has resolved.

use std::collections::{HashMap, HashSet};

use palyra_storage::{Table, WriteOp, encode_record};

use super::model::AuthProfileRecord;
use crate::error::ActorError;
use crate::snapshot::Snapshot;

/// The answer of a write another node's write got in the way of. The row was reread
/// before it is given, so the handle retries once; a second one reaches the client as
/// a 409.
pub(crate) const CHANGED_ELSEWHERE: &str = "changed on another node; retry";

pub(super) fn changed_elsewhere() -> ActorError {
    ActorError::Conflict(CHANGED_ELSEWHERE.into())
}

pub(super) fn is_changed_elsewhere<T>(result: &Result<T, ActorError>) -> bool {
    matches!(result, Err(ActorError::Conflict(m)) if m == CHANGED_ELSEWHERE)
}

/// The tables other nodes change under the registry's memory.
pub(super) const FOLLOWED: [Table; 5] = [
    Table::AuthProfiles,
    Table::AuthDefaults,
    Table::Vault,
    Table::VaultMeta,
    Table::OAuthAttempts,
];

pub(super) type RowId = (Table, Vec<u8>);

#[derive(Debug, Default)]
struct Busy {
    /// Writes of ours to the row queued and not yet resolved.
    writes: u32,
    /// A reread of the row is under way.
    reading: bool,
    /// Changed (by another node, or by a write of ours during a reread) since memory
    /// was last known to match: reread when nothing else is going on.
    dirty: bool,
    /// A write of ours began during the reread under way: what it returns may be
    /// older than memory, so it is not applied.
    raced: bool,
}

/// What to do with a reread that came back.
pub(super) enum ReadDone {
    Apply,
    /// Apply, then read again: another change was heard during the read.
    ApplyAndAgain,
    Again,
    Skip,
}

#[derive(Debug, Default)]
pub(super) struct RowSync {
    /// Profile id -> the stored bytes this node last saw or queued.
    seen: HashMap<Vec<u8>, Vec<u8>>,
    busy: HashMap<RowId, Busy>,
    /// Rows written while a whole-table resync read was under way: its copy of them
    /// may be older than memory.
    pub(super) resync_touched: Option<HashSet<RowId>>,
    /// A resync was asked for while one ran.
    pub(super) resync_again: bool,
}

impl RowSync {
    pub(super) fn load(snapshot: &Snapshot) -> Self {
        let mut sync = Self::default();
        sync.reset(snapshot);
        sync
    }

    /// What storage holds, after a reload.
    pub(super) fn reset(&mut self, snapshot: &Snapshot) {
        self.seen = snapshot.rows(Table::AuthProfiles).iter().cloned().collect();
    }

    /// The write that stores `record`, conditional on the row still holding what this
    /// node last saw of it (no row, for a new profile).
    pub(super) fn put_profile(&mut self, record: &AuthProfileRecord) -> WriteOp {
        let key = record.profile_id.as_bytes().to_vec();
        let value = encode_record(record);
        let expected = self.seen.insert(key.clone(), value.clone());
        WriteOp::CompareAndSet {
            table: Table::AuthProfiles,
            key,
            expected,
            value,
        }
    }

    /// The writes that delete a profile row, conditional like [`Self::put_profile`].
    pub(super) fn delete_profile(&mut self, profile_id: &str) -> Vec<WriteOp> {
        let key = profile_id.as_bytes().to_vec();
        let mut ops = Vec::with_capacity(2);
        if let Some(value) = self.seen.remove(&key) {
            ops.push(WriteOp::Expect {
                table: Table::AuthProfiles,
                key: key.clone(),
                value,
            });
        }
        ops.push(WriteOp::delete(Table::AuthProfiles, key));
        ops
    }

    /// Refuses a write unless the profile row still holds what this node last saw.
    pub(super) fn expect_profile(&self, profile_id: &str) -> Option<WriteOp> {
        let key = profile_id.as_bytes();
        self.seen.get(key).map(|value| WriteOp::Expect {
            table: Table::AuthProfiles,
            key: key.to_vec(),
            value: value.clone(),
        })
    }

    /// The stored bytes of a profile row as just read.
    pub(super) fn saw(&mut self, key: &[u8], value: Option<&[u8]>) {
        match value {
            Some(v) => self.seen.insert(key.to_vec(), v.to_vec()),
            None => self.seen.remove(key),
        };
    }

    /// The followed rows `ops` touch, each once.
    pub(super) fn rows_of(&self, ops: &[WriteOp]) -> Vec<RowId> {
        let mut rows: Vec<RowId> = Vec::new();
        for (table, key) in ops.iter().filter_map(|op| op.row()) {
            if FOLLOWED.contains(&table) && !rows.iter().any(|(t, k)| *t == table && k == key) {
                rows.push((table, key.to_vec()));
            }
        }
        rows
    }

    pub(super) fn begin(&mut self, ops: &[WriteOp]) -> Vec<RowId> {
        let rows = self.rows_of(ops);
        for row in &rows {
            let busy = self.busy.entry(row.clone()).or_default();
            busy.writes += 1;
            if busy.reading {
                busy.raced = true;
            }
            if let Some(touched) = &mut self.resync_touched {
                touched.insert(row.clone());
            }
        }
        rows
    }

    /// A write resolved; the rows to reread now.
    pub(super) fn end(&mut self, rows: &[RowId]) -> Vec<RowId> {
        let mut reread = Vec::new();
        for row in rows {
            let Some(busy) = self.busy.get_mut(row) else {
                continue;
            };
            busy.writes = busy.writes.saturating_sub(1);
            if busy.writes == 0 && busy.dirty && !busy.reading {
                busy.dirty = false;
                busy.reading = true;
                reread.push(row.clone());
            }
            self.tidy(row);
        }
        reread
    }

    /// Another node changed `row`: true if it is to be reread now.
    pub(super) fn changed(&mut self, row: &RowId) -> bool {
        let busy = self.busy.entry(row.clone()).or_default();
        if busy.writes > 0 || busy.reading {
            busy.dirty = true;
            false
        } else {
            busy.reading = true;
            true
        }
    }

    pub(super) fn read_done(&mut self, row: &RowId) -> ReadDone {
        let Some(busy) = self.busy.get_mut(row) else {
            return ReadDone::Apply;
        };
        busy.reading = false;
        let raced = std::mem::take(&mut busy.raced);
        let done = if busy.writes > 0 {
            busy.dirty = true;
            ReadDone::Skip
        } else if raced {
            busy.dirty = false;
            busy.reading = true;
            ReadDone::Again
        } else if busy.dirty {
            busy.dirty = false;
            busy.reading = true;
            ReadDone::ApplyAndAgain
        } else {
            ReadDone::Apply
        };
        self.tidy(row);
        done
    }

    /// A read of `row` starts now (whatever else is going on).
    pub(super) fn start_read(&mut self, row: &RowId) {
        self.busy.entry(row.clone()).or_default().reading = true;
    }

    /// A whole-table read starts now: rows with a write of ours in flight may commit
    /// before it reads them, so they count as touched like those written during it.
    pub(super) fn start_resync(&mut self) {
        let in_flight = self
            .busy
            .iter()
            .filter(|(_, b)| b.writes > 0)
            .map(|(row, _)| row.clone())
            .collect();
        self.resync_touched = Some(in_flight);
    }

    /// True while a write of ours to `row` is in flight.
    pub(super) fn writing(&self, row: &RowId) -> bool {
        self.busy.get(row).is_some_and(|b| b.writes > 0)
    }

    pub(super) fn idle(&self, row: &RowId) -> bool {
        self.busy
            .get(row)
            .is_none_or(|b| b.writes == 0 && !b.reading)
    }

    fn tidy(&mut self, row: &RowId) {
        if self
            .busy
            .get(row)
            .is_some_and(|b| b.writes == 0 && !b.reading && !b.dirty && !b.raced)
        {
            self.busy.remove(row);
        }
    }
}
