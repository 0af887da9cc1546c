//! One op of a group as the writer binds it: its statement kind, its key, value,
//! typed columns and condition, and what its statement answered.

use tokio_postgres::types::ToSql;

use crate::op::WriteOp;
use crate::postgres::tables::{Cell, TableSql, counters, extract};
use crate::schema::Table;

/// Which statement an op runs (one per kind and table, prepared once per connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    Put,
    InsertIfAbsent,
    CompareAndSet,
    Delete,
    Take,
    Expect,
    Fence,
    Add,
    /// A put that happens only if the guard table has a row.
    PutIfAny(Table),
}

impl Kind {
    /// This kind's statement among a table's (a fence reads the lease table instead).
    pub(super) fn sql(self, sql: TableSql) -> String {
        match self {
            Kind::Put => sql.put,
            Kind::InsertIfAbsent => sql.insert_if_absent,
            Kind::CompareAndSet => sql.compare_and_set,
            Kind::Delete => sql.delete,
            Kind::Take => sql.take,
            Kind::Expect | Kind::Fence => sql.expect,
            Kind::Add => sql.add,
            Kind::PutIfAny(guard) => sql.put_if_any(guard),
        }
    }
}

/// What one op of a conditional request came to.
#[derive(Clone)]
pub(super) enum Held {
    Yes,
    No,
    Taken(Vec<u8>),
}

/// One op with its statement kind and bound values.
pub(super) struct BoundOp {
    /// `None` for a fence, which reads the lease table.
    pub(super) table: Option<Table>,
    pub(super) kind: Kind,
    /// The row's key (empty for a fence).
    pub(super) key: Vec<u8>,
    /// The value written, or compared by an expect.
    pub(super) value: Option<Vec<u8>>,
    /// The typed columns of the value written (empty for an expect).
    pub(super) cells: Vec<Cell>,
    /// A compare-and-set's expected value.
    pub(super) expected: Option<Vec<u8>>,
    /// A fence's shard, node and epoch: the same fence twice in one transaction is
    /// read once (`Conn::plain`).
    pub(super) fence: Option<(i32, String, i64)>,
}

impl BoundOp {
    pub(super) fn new(op: &WriteOp) -> Result<Self, String> {
        let Some((table, _)) = op.row() else {
            let WriteOp::Fence(fence) = op else {
                return Err("an op without a row".into());
            };
            let shard = i32::try_from(fence.shard).map_err(|_| "shard out of range")?;
            let epoch = i64::try_from(fence.epoch).map_err(|_| "epoch out of range")?;
            return Ok(Self {
                table: None,
                kind: Kind::Fence,
                key: Vec::new(),
                value: None,
                cells: Vec::new(),
                expected: None,
                fence: Some((shard, fence.node_id.clone(), epoch)),
            });
        };
        let bound = |kind, key: &[u8], value: Option<&[u8]>, expected: Option<&Vec<u8>>| {
            let cells = match (kind, value) {
                (Kind::Expect, _) | (_, None) => Vec::new(),
                (_, Some(value)) => extract(table, key, value)?,
            };
            Ok::<_, String>(Self {
                table: Some(table),
                kind,
                key: key.to_vec(),
                value: value.map(<[u8]>::to_vec),
                cells,
                expected: expected.cloned(),
                fence: None,
            })
        };
        match op {
            WriteOp::Put { key, value, .. } => bound(Kind::Put, key, Some(value), None),
            WriteOp::InsertIfAbsent { key, value, .. }
            | WriteOp::CompareAndSet {
                key,
                value,
                expected: None,
                ..
            } => bound(Kind::InsertIfAbsent, key, Some(value), None),
            WriteOp::CompareAndSet {
                key,
                value,
                expected: Some(expected),
                ..
            } => bound(Kind::CompareAndSet, key, Some(value), Some(expected)),
            WriteOp::Delete { key, .. } => bound(Kind::Delete, key, None, None),
            WriteOp::Take { key, .. } => bound(Kind::Take, key, None, None),
            WriteOp::Expect { key, value, .. } => bound(Kind::Expect, key, Some(value), None),
            WriteOp::Add { key, value, .. } => {
                if counters(table).is_empty() {
                    return Err(format!("table {} has no counters to add to", table.name()));
                }
                bound(Kind::Add, key, Some(value), None)
            }
            WriteOp::PutIfAny {
                guard, key, value, ..
            } => bound(Kind::PutIfAny(*guard), key, Some(value), None),
            WriteOp::Fence(_) => unreachable!("a fence has no row"),
        }
    }

    /// Whether its condition may fail (everything but a put, a delete and an add).
    pub(super) fn is_conditional(&self) -> bool {
        !matches!(
            self.kind,
            Kind::Put | Kind::Delete | Kind::Add | Kind::PutIfAny(_)
        )
    }

    /// Its parameters, in the order of its statement's placeholders.
    pub(super) fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        if let Some((shard, node, epoch)) = &self.fence {
            return vec![shard, node, epoch];
        }
        let mut refs: Vec<&(dyn ToSql + Sync)> = vec![&self.key];
        if let Some(value) = &self.value {
            refs.push(value);
        }
        refs.extend(self.cells.iter().map(Cell::as_sql));
        if let Some(expected) = &self.expected {
            refs.push(expected);
        }
        refs
    }

    /// What it conflicts on: ops on one row keep their order. A run conflicts with
    /// every run of its objective (the key up to its NUL), because the runs table has
    /// a second unique key, (objective_id, scheduled_for), within one objective.
    pub(super) fn row(&self) -> Option<(Table, &[u8])> {
        let table = self.table?;
        let key = match table {
            Table::Runs => self
                .key
                .split(|&b| b == 0)
                .next()
                .unwrap_or(self.key.as_slice()),
            _ => self.key.as_slice(),
        };
        Some((table, key))
    }
}
/// The values a request's takes removed, in op order.
pub(super) fn taken(held: Vec<Held>) -> Vec<Vec<u8>> {
    held.into_iter()
        .filter_map(|h| match h {
            Held::Taken(value) => Some(value),
            _ => None,
        })
        .collect()
}
