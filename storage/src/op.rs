//! What a write request is made of ([`WriteOp`]) and what it reports ([`WriteOutcome`]).
//!
//! Both backends give the ops the same meaning: the ops of one request apply in order
//! and all or nothing; a conditional op that does not hold refuses the whole request,
//! which then writes nothing and leaves the other requests of its group commit alone.

use crate::record::{StoredRecord, encode_record};
use crate::schema::Table;

/// One change to one row.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Stores `value` under `key`, replacing any value.
    Put {
        table: Table,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Removes the row under `key`, if any.
    Delete { table: Table, key: Vec<u8> },
    /// Stores `value` only if no row has `key`; refused otherwise.
    InsertIfAbsent {
        table: Table,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Stores `value` only if the row's current value is byte for byte `expected`
    /// (`None`: there must be no row); refused otherwise. The value itself is the
    /// version: both backends keep values byte-exact, so a value read earlier is the
    /// token to pass here.
    CompareAndSet {
        table: Table,
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    },
    /// Deletes the row and returns its value (consume once); refused if there is none.
    /// Of concurrent takes of one row, exactly one is applied.
    Take { table: Table, key: Vec<u8> },
    /// Writes nothing; refused unless the row's current value is byte for byte
    /// `value`. On PostgreSQL the row stays locked (`FOR SHARE`) until the request's
    /// transaction commits, so no other node changes it in between.
    Expect {
        table: Table,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Writes nothing; refused unless `fence.node_id` still holds the lease of
    /// `fence.shard` at `fence.epoch`, unexpired by the database's clock when the
    /// request's transaction first reads that fence (the PostgreSQL writer reads a
    /// fence repeated in one group once). The lease row stays locked until the
    /// request commits, so a takeover (which bumps the epoch) waits for it and then
    /// sees everything it wrote. Only PostgreSQL keeps leases; redb refuses every
    /// fence.
    Fence(Fence),
    /// Adds the integer fields of `value`'s record to those of the row under `key`
    /// (stores `value` when there is none); other fields keep the stored row's values.
    /// Unconditional, and additive on both backends: redb's one writer reads and
    /// writes the row inside its transaction, PostgreSQL does it in one
    /// `INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n`, so increments from
    /// several nodes at once are never lost. Only tables with counter columns
    /// (`postgres/tables.rs`, `counters`) take it.
    Add {
        table: Table,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Stores `value` under `key` (replacing any value) only if `guard` has at least
    /// one row, as the request's own transaction sees it; otherwise writes nothing.
    /// Never refuses. PostgreSQL decides it in the statement (`INSERT ... SELECT ...
    /// WHERE EXISTS`), so under read committed every guard row committed before the
    /// statement counts; redb's one writer checks the guard table in its transaction.
    /// Used for rows only some other table's rows can want (a notification event
    /// while no channel exists).
    PutIfAny {
        guard: Table,
        table: Table,
        key: Vec<u8>,
        value: Vec<u8>,
    },
}

/// A shard lease as its holder last proved it: the fencing token of a cluster write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub shard: u32,
    pub node_id: String,
    pub epoch: u64,
}

impl WriteOp {
    /// Stores `record` under `key` in its type's table, inside its versioned envelope.
    pub fn put<T: StoredRecord>(key: impl Into<Vec<u8>>, record: &T) -> Self {
        WriteOp::Put {
            table: T::TABLE,
            key: key.into(),
            value: encode_record(record),
        }
    }

    /// Deletes the row under `key` of `table`.
    pub fn delete(table: Table, key: impl Into<Vec<u8>>) -> Self {
        WriteOp::Delete {
            table,
            key: key.into(),
        }
    }

    /// Inserts `record` under `key` unless a row is there.
    pub fn insert_if_absent<T: StoredRecord>(key: impl Into<Vec<u8>>, record: &T) -> Self {
        WriteOp::InsertIfAbsent {
            table: T::TABLE,
            key: key.into(),
            value: encode_record(record),
        }
    }

    /// Takes (deletes and returns) the row under `key` of `table`.
    pub fn take(table: Table, key: impl Into<Vec<u8>>) -> Self {
        WriteOp::Take {
            table,
            key: key.into(),
        }
    }

    /// Expects the row under `key` to hold `record` exactly as encoded.
    pub fn expect<T: StoredRecord>(key: impl Into<Vec<u8>>, record: &T) -> Self {
        WriteOp::Expect {
            table: T::TABLE,
            key: key.into(),
            value: encode_record(record),
        }
    }

    /// Stores `record` under `key` in its type's table if `guard` has any row.
    pub fn put_if_any<T: StoredRecord>(guard: Table, key: impl Into<Vec<u8>>, record: &T) -> Self {
        WriteOp::PutIfAny {
            guard,
            table: T::TABLE,
            key: key.into(),
            value: encode_record(record),
        }
    }

    /// Adds `record`'s integer fields to the row under `key` in its type's table.
    pub fn add<T: StoredRecord>(key: impl Into<Vec<u8>>, record: &T) -> Self {
        WriteOp::Add {
            table: T::TABLE,
            key: key.into(),
            value: encode_record(record),
        }
    }

    /// The table and key of the row the op reads or changes; `None` for a fence.
    pub fn row(&self) -> Option<(Table, &[u8])> {
        match self {
            WriteOp::Put { table, key, .. }
            | WriteOp::Delete { table, key }
            | WriteOp::InsertIfAbsent { table, key, .. }
            | WriteOp::CompareAndSet { table, key, .. }
            | WriteOp::Take { table, key }
            | WriteOp::Expect { table, key, .. }
            | WriteOp::Add { table, key, .. }
            | WriteOp::PutIfAny { table, key, .. } => Some((*table, key)),
            WriteOp::Fence(_) => None,
        }
    }

    /// Every table the op reads or changes: its row's and, for
    /// [`WriteOp::PutIfAny`], the guard.
    pub fn tables(&self) -> impl Iterator<Item = Table> + use<> {
        let guard = match self {
            WriteOp::PutIfAny { guard, .. } => Some(*guard),
            _ => None,
        };
        self.row().map(|(table, _)| table).into_iter().chain(guard)
    }

    /// True for the ops that can refuse their request.
    pub fn is_conditional(&self) -> bool {
        !matches!(
            self,
            WriteOp::Put { .. }
                | WriteOp::Delete { .. }
                | WriteOp::Add { .. }
                | WriteOp::PutIfAny { .. }
        )
    }
}

/// What became of one write request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Every op applied and is durable; `taken` holds the values of its
    /// [`WriteOp::Take`]s, in op order.
    Applied { taken: Vec<Vec<u8>> },
    /// The conditional op at index `op` did not hold; nothing of the request was written.
    Refused { op: usize },
}
