//! A group's requests planned as a few statements of many rows each, and the array
//! parameters of such a statement.

use std::collections::HashMap;

use crate::postgres::tables::Array;
use crate::schema::Table;

use super::op::{BoundOp, Kind};

/// A statement of a planned group.
pub(super) enum Call<'a> {
    /// A fence, read once for every request of the group that carries it.
    Fence(&'a BoundOp),
    /// Ops of one kind on one table, each on its own row, in one statement.
    Batch {
        table: Table,
        kind: Kind,
        ops: Vec<&'a BoundOp>,
    },
}

/// A group's requests as a few statements instead of one per op.
pub(super) struct Plan<'a> {
    /// In the order they are sent.
    pub(super) calls: Vec<Call<'a>>,
    /// For each request, where each of its ops' answers is: the call, and the
    /// position among the call's ops.
    pub(super) at: Vec<Vec<(usize, usize)>>,
}

/// Plans `requests` (indexes into `bound`) as statements that apply many ops each.
///
/// Every op goes to the earliest layer after every earlier op of the group it
/// conflicts with (the same row, see [`BoundOp::row`]; for a put-if-any, any op on
/// its guard table, and the other way round); within a layer the ops of one kind on
/// one table are one statement. So each op sees exactly the rows it would see if the
/// ops ran one after another in request order, and only the order of ops on
/// different rows changes, which no op can observe. The fences come first: they read
/// the lease table, which no op writes.
pub(super) fn plan<'a>(bound: &'a [Vec<BoundOp>], requests: &[usize]) -> Plan<'a> {
    enum Place {
        Fence(usize),
        Batch(usize, usize, usize),
    }
    type Layer<'a> = Vec<(Table, Kind, Vec<&'a BoundOp>)>;
    let after = |layer: Option<&usize>| layer.map_or(0, |l| l + 1);
    let mut fences: Vec<&BoundOp> = Vec::new();
    // Keyed by the fence (`BoundOp::new` builds no op without a row or a fence).
    let mut fence_at: HashMap<Option<&(i32, String, i64)>, usize> = HashMap::new();
    let mut layers: Vec<Layer<'a>> = Vec::new();
    let mut row_last: HashMap<(Table, &[u8]), usize> = HashMap::new();
    let mut table_last: HashMap<Table, usize> = HashMap::new();
    let mut guard_last: HashMap<Table, usize> = HashMap::new();
    let mut places: Vec<Vec<Place>> = Vec::with_capacity(requests.len());
    for &r in requests {
        let mut at = Vec::with_capacity(bound[r].len());
        for op in &bound[r] {
            let Some((table, row)) = op.row() else {
                let i = *fence_at.entry(op.fence.as_ref()).or_insert_with(|| {
                    fences.push(op);
                    fences.len() - 1
                });
                at.push(Place::Fence(i));
                continue;
            };
            let mut layer = after(row_last.get(&(table, row))).max(after(guard_last.get(&table)));
            if let Kind::PutIfAny(guard) = op.kind {
                layer = layer.max(after(table_last.get(&guard)));
                let read = guard_last.entry(guard).or_insert(layer);
                *read = (*read).max(layer);
            }
            row_last.insert((table, row), layer);
            let last = table_last.entry(table).or_insert(layer);
            *last = (*last).max(layer);
            if layers.len() <= layer {
                layers.resize_with(layer + 1, Vec::new);
            }
            let batches = &mut layers[layer];
            let b = match batches
                .iter()
                .position(|(t, k, _)| *t == table && *k == op.kind)
            {
                Some(b) => b,
                None => {
                    batches.push((table, op.kind, Vec::new()));
                    batches.len() - 1
                }
            };
            at.push(Place::Batch(layer, b, batches[b].2.len()));
            batches[b].2.push(op);
        }
        places.push(at);
    }
    let mut first_of_layer = Vec::with_capacity(layers.len());
    let mut next = fences.len();
    for layer in &layers {
        first_of_layer.push(next);
        next += layer.len();
    }
    let at = places
        .into_iter()
        .map(|ops| {
            ops.into_iter()
                .map(|place| match place {
                    Place::Fence(i) => (i, 0),
                    Place::Batch(layer, b, i) => (first_of_layer[layer] + b, i),
                })
                .collect()
        })
        .collect();
    let mut calls: Vec<Call<'a>> = fences.into_iter().map(Call::Fence).collect();
    calls.extend(
        layers
            .into_iter()
            .flatten()
            .map(|(table, kind, ops)| Call::Batch { table, kind, ops }),
    );
    Plan { calls, at }
}

/// The array parameters of a batch of `kind` (see [`TableSql::batched`]).
pub(super) fn arrays<'a>(kind: Kind, ops: &[&'a BoundOp]) -> Vec<Array<'a>> {
    let mut arrays = vec![Array::Bytes(
        ops.iter().map(|op| op.key.as_slice()).collect(),
    )];
    if !matches!(kind, Kind::Delete | Kind::Take) {
        arrays.push(Array::Bytes(
            ops.iter()
                .map(|op| op.value.as_deref().unwrap_or_default())
                .collect(),
        ));
    }
    if let Some(first) = ops.first() {
        for (j, cell) in first.cells.iter().enumerate() {
            arrays.push(Array::column(cell, ops.iter().map(|op| op.cells.get(j))));
        }
    }
    if kind == Kind::CompareAndSet {
        arrays.push(Array::Bytes(
            ops.iter()
                .map(|op| op.expected.as_deref().unwrap_or_default())
                .collect(),
        ));
    }
    arrays
}
