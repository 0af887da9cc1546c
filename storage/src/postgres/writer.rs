//! The PostgreSQL writer: one thread, one connection, requests in submission order.
//!
//! Everything queued is applied in one transaction (group commit), request after
//! request, so a request sees every earlier one and requests from one [`Writer`] never
//! commit out of order. A group is sent as a few statements of many rows each,
//! planned so that the ops on one row keep their order ([`plan`]), pipelined (all
//! sent before any answer is read), without savepoints (`Conn::plain`). When a conditional request of more
//! than one op is refused, the group starts over with a savepoint per such request,
//! so a refusal undoes only its own ops: the transaction is rolled back to that
//! savepoint and the requests after it are sent again (`Conn::optimistic`). A failed
//! statement aborts the group, which is then replayed one transaction per request, in
//! order, so only the request that failed reports the failure.
//!
//! Another node's commit can land between two statements of a group, each of which
//! sees the rows as committed when it starts (read committed); since a plan orders
//! only the ops on one row, requests on different rows may see such a commit in an
//! order other than theirs. Each request still sees every earlier request of this
//! writer.
//!
//! A lost connection answers every request of the group `Unavailable` (a lost COMMIT is
//! never reported as applied), and requests that arrive while it is being re-established
//! are answered `Unavailable` at once; the writer reconnects with doubling waits.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::future::try_join_all;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use crate::error::StorageError;
use crate::op::{WriteOp, WriteOutcome};
use crate::postgres::connect::{Connector, is_connection_error};
use crate::postgres::tables::{Array, Cell, TableSql, counters, extract};
use crate::schema::Table;
use crate::writer::{Msg, Request, Writer, WriterParts, WriterStats, fill_batch};

/// Starts the writer thread; it connects on its own, so an unreachable server shows
/// as `Unavailable` answers, not as a failure to start.
pub(crate) fn start(connector: Connector) -> Result<Writer, StorageError> {
    let (writer, parts) = Writer::channel();
    std::thread::Builder::new()
        .name("palyra-pg-writer".into())
        .spawn(move || {
            let WriterParts {
                mut rx,
                stats,
                alive,
            } = parts;
            let stop = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(run(&connector, &mut rx, &stats)),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the PostgreSQL writer's runtime");
                    None
                }
            };
            drop(alive);
            if let Some(done) = stop {
                let _ = done.send(());
            }
        })
        .map_err(StorageError::backend)?;
    Ok(writer)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
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
    fn sql(self, sql: TableSql) -> String {
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

/// Most ops applied in one transaction. A group is bounded by one timeout (connect
/// plus statement timeout): a burst of thousands of conditional requests (one
/// boundary's claims at 10,000 objectives) in one transaction ran past it on a loaded
/// machine, and the whole group, every claim in it, failed. Groups of this size
/// commit well within the bound even then (a group of refusals is sent once more
/// than others: the plain pass, then with savepoints), so a busy writer only falls
/// behind.
const MAX_GROUP_OPS: usize = 2048;

/// Most savepoints open at once in a group's transaction (see `Conn::optimistic`).
const MAX_NESTED: usize = 64;

/// The savepoint of a request replayed alone (the pipelined ones are numbered).
const SAVEPOINT_SQL: &str = "SAVEPOINT palyra_request";
const ROLLBACK_SQL: &str = "ROLLBACK TO SAVEPOINT palyra_request";

/// What one op of a conditional request came to.
#[derive(Clone)]
enum Held {
    Yes,
    No,
    Taken(Vec<u8>),
}

/// A fence: the lease row must still name this node at this epoch, unexpired by the
/// server's clock; locked until commit so a takeover waits for this transaction.
const FENCE_SQL: &str = "SELECT 1 FROM cluster_leases WHERE shard = $1 AND owner = $2 \
     AND epoch = $3 AND expires_at > clock_timestamp() FOR SHARE";

/// One op with its statement kind and bound values.
struct BoundOp {
    /// `None` for a fence, which reads the lease table.
    table: Option<Table>,
    kind: Kind,
    /// The row's key (empty for a fence).
    key: Vec<u8>,
    /// The value written, or compared by an expect.
    value: Option<Vec<u8>>,
    /// The typed columns of the value written (empty for an expect).
    cells: Vec<Cell>,
    /// A compare-and-set's expected value.
    expected: Option<Vec<u8>>,
    /// A fence's shard, node and epoch: the same fence twice in one transaction is
    /// read once (`Conn::plain`).
    fence: Option<(i32, String, i64)>,
}

impl BoundOp {
    fn new(op: &WriteOp) -> Result<Self, String> {
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
    fn is_conditional(&self) -> bool {
        !matches!(
            self.kind,
            Kind::Put | Kind::Delete | Kind::Add | Kind::PutIfAny(_)
        )
    }

    /// Its parameters, in the order of its statement's placeholders.
    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
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
    fn row(&self) -> Option<(Table, &[u8])> {
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

/// One op of a pipelined request, boxed so ops of every kind go in one list.
type HeldCall<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Held, tokio_postgres::Error>> + Send + 'a>,
>;

/// One statement of a planned group (see [`plan`]) with the answer of each of its ops.
type BatchCall<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<Held>, tokio_postgres::Error>> + Send + 'a>,
>;

/// A statement of a planned group.
enum Call<'a> {
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
struct Plan<'a> {
    /// In the order they are sent.
    calls: Vec<Call<'a>>,
    /// For each request, where each of its ops' answers is: the call, and the
    /// position among the call's ops.
    at: Vec<Vec<(usize, usize)>>,
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
fn plan<'a>(bound: &'a [Vec<BoundOp>], requests: &[usize]) -> Plan<'a> {
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
fn arrays<'a>(kind: Kind, ops: &[&'a BoundOp]) -> Vec<Array<'a>> {
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

/// The writer's connection and its prepared statements.
struct Conn {
    client: Client,
    statements: HashMap<(Option<Table>, Kind), Statement>,
    /// The batched statements of a planned group (see [`TableSql::batched`]).
    batched: HashMap<(Table, Kind), Statement>,
}

enum Failure {
    /// One statement failed on a healthy connection; the transaction was rolled back.
    Statement(String),
    /// The connection is gone (or its state unknown); the outcome of a COMMIT in
    /// flight is unknown.
    Connection(String),
}

impl Conn {
    async fn prepare(&mut self, ops: &[BoundOp]) -> Result<(), tokio_postgres::Error> {
        for op in ops {
            if !self.statements.contains_key(&(op.table, op.kind)) {
                let text = match op.table {
                    None => FENCE_SQL.to_owned(),
                    Some(table) => op.kind.sql(TableSql::new(table)),
                };
                let statement = self.client.prepare(&text).await?;
                self.statements.insert((op.table, op.kind), statement);
            }
        }
        Ok(())
    }

    async fn prepare_batches(&mut self, plan: &Plan<'_>) -> Result<(), tokio_postgres::Error> {
        for call in &plan.calls {
            let Call::Batch { table, kind, ops } = call else {
                continue;
            };
            if self.batched.contains_key(&(*table, *kind)) {
                continue;
            }
            let types: Vec<&str> = ops
                .first()
                .map(|op| op.cells.iter().map(Cell::array_type).collect())
                .unwrap_or_default();
            let text = kind.sql(TableSql::batched(*table, &types));
            let statement = self.client.prepare(&text).await?;
            self.batched.insert((*table, *kind), statement);
        }
        Ok(())
    }

    fn statement(&self, op: &BoundOp) -> &Statement {
        // Every op is prepared before it runs.
        &self.statements[&(op.table, op.kind)]
    }

    /// Applies a group's requests in one pipeline without savepoints, the common case,
    /// as planned by [`plan`]: a few statements that apply many ops each, all sent
    /// before any answer is read, run by the server in order. A refused single-op
    /// request changed nothing, so what came after it stands. A refused request of
    /// more than one op may have applied its other ops, which only a savepoint could
    /// undo: `None` then, and the caller rolls the transaction back and applies the
    /// group with savepoints, op by op ([`Self::optimistic`]).
    ///
    /// A fence repeated in the group (one shard's lease at one epoch, for many
    /// requests) is read once: its first read holds the lease row locked `FOR SHARE`
    /// until commit, so no takeover can move the lease before this transaction ends
    /// (`storage/src/cluster.rs` takes leases `FOR UPDATE SKIP LOCKED`), and the later
    /// reads could only answer the same.
    async fn plain(
        &self,
        plan: &Plan<'_>,
    ) -> Result<Option<Vec<WriteOutcome>>, tokio_postgres::Error> {
        let calls: Vec<BatchCall<'_>> = plan
            .calls
            .iter()
            .map(|call| match call {
                Call::Fence(op) => {
                    let read = self.held(op);
                    Box::pin(async move { Ok(vec![read.await?]) }) as BatchCall<'_>
                }
                Call::Batch { table, kind, ops } => self.batch(*table, *kind, ops),
            })
            .collect();
        let held = try_join_all(calls).await?;
        let answer = |&(call, i): &(usize, usize)| held.get(call).and_then(|h| h.get(i));
        let mut outcomes = Vec::with_capacity(plan.at.len());
        for at in &plan.at {
            let answers: Vec<Held> = at
                .iter()
                .map(|a| answer(a).cloned().unwrap_or(Held::No))
                .collect();
            match answers.iter().position(|h| matches!(h, Held::No)) {
                Some(_) if at.len() > 1 => return Ok(None),
                Some(op) => outcomes.push(WriteOutcome::Refused { op }),
                None => outcomes.push(WriteOutcome::Applied {
                    taken: taken(answers),
                }),
            }
        }
        Ok(Some(outcomes))
    }

    /// Runs a batch of a plan (see [`TableSql::batched`]) and says whether each op's
    /// condition held: a conditional statement returns the keys of the rows that
    /// held (a take with their values), and its keys are distinct (see [`plan`]).
    fn batch<'a>(&'a self, table: Table, kind: Kind, ops: &'a [&'a BoundOp]) -> BatchCall<'a> {
        Box::pin(async move {
            // Every batch is prepared before it runs.
            let statement = &self.batched[&(table, kind)];
            // The rows in key order (as `usage/rollup.rs` sends its adds), so two
            // nodes' statements over the same rows lock them in the same order.
            let mut rows = ops.to_vec();
            rows.sort_unstable_by(|a, b| a.key.cmp(&b.key));
            let arrays = arrays(kind, &rows);
            let params: Vec<&(dyn ToSql + Sync)> = arrays.iter().map(Array::as_sql).collect();
            Ok(match kind {
                Kind::Put | Kind::Delete | Kind::Add | Kind::PutIfAny(_) => {
                    self.client.execute(statement, &params).await?;
                    vec![Held::Yes; ops.len()]
                }
                Kind::InsertIfAbsent | Kind::CompareAndSet | Kind::Expect => {
                    let rows = self.client.query(statement, &params).await?;
                    let held: HashSet<&[u8]> = rows.iter().map(|row| row.get(0)).collect();
                    ops.iter()
                        .map(|op| match held.contains(op.key.as_slice()) {
                            true => Held::Yes,
                            false => Held::No,
                        })
                        .collect()
                }
                Kind::Take => {
                    let rows = self.client.query(statement, &params).await?;
                    let mut taken: HashMap<&[u8], Vec<u8>> =
                        rows.iter().map(|row| (row.get(0), row.get(1))).collect();
                    ops.iter()
                        .map(|op| {
                            taken
                                .remove(op.key.as_slice())
                                .map_or(Held::No, Held::Taken)
                        })
                        .collect()
                }
                // A plan never batches a fence; were one batched, it would refuse.
                Kind::Fence => vec![Held::No; ops.len()],
            })
        })
    }

    /// Applies a group's requests after [`Self::plain`] met a refused multi-op
    /// request, in pipelines: every statement of a pipeline is sent
    /// before any answer is read, and the server runs them in order. A conditional
    /// request of more than one op runs under its own savepoint (nested in the ones
    /// before it in its pipeline). The answers are read in request order: a refused
    /// single-op request changed nothing, so what came after it stands; a refused
    /// multi-op request is rolled back to its savepoint, which undoes it and everything
    /// sent after it, and those requests are sent again, so each sees exactly the
    /// requests applied before it. The next pipeline first releases the savepoints of
    /// the requests decided, so they never nest deeper than `MAX_NESTED` (PostgreSQL
    /// checks a row written in the transaction against every open level).
    ///
    /// Its first pipeline carries up to `MAX_NESTED` multi-op conditional requests.
    /// After a rollback the next pipeline carries one request and each clean one
    /// doubles that, so a group of refusals (a node's claims after its lease lapsed)
    /// costs the pass of [`Self::plain`], then a round trip per request, and not a
    /// resend of the rest after each one.
    async fn optimistic(
        &self,
        bound: &[Vec<BoundOp>],
        requests: &[usize],
    ) -> Result<Vec<WriteOutcome>, tokio_postgres::Error> {
        let mut outcomes = Vec::with_capacity(requests.len());
        let mut window = requests.len();
        // The earliest savepoint not released yet; releasing it releases the ones
        // nested in it.
        let mut open: Option<usize> = None;
        while outcomes.len() < requests.len() {
            let from = outcomes.len();
            let mut calls: Vec<HeldCall<'_>> = Vec::new();
            if let Some(i) = open.take() {
                calls.push(self.marker(format!("RELEASE SAVEPOINT {}", savepoint_name(i))));
            }
            let markers = calls.len();
            let mut under_savepoint = Vec::new();
            let mut nested = 0;
            for (j, &r) in requests.iter().enumerate().skip(from) {
                if under_savepoint.len() == window || nested == MAX_NESTED {
                    break;
                }
                let ops = &bound[r];
                let savepoint = ops.len() > 1 && ops.iter().any(BoundOp::is_conditional);
                if savepoint {
                    calls.push(self.marker(format!("SAVEPOINT {}", savepoint_name(j))));
                    open.get_or_insert(j);
                    nested += 1;
                }
                under_savepoint.push(savepoint);
                calls.extend(ops.iter().map(|op| self.held(op)));
            }
            let mut held = try_join_all(calls).await?.into_iter().skip(markers);
            window = window.saturating_mul(2);
            for (j, savepoint) in (from..).zip(under_savepoint) {
                if savepoint {
                    held.next();
                }
                let ops: Vec<Held> = held.by_ref().take(bound[requests[j]].len()).collect();
                match ops.iter().position(|h| matches!(h, Held::No)) {
                    Some(op) => {
                        outcomes.push(WriteOutcome::Refused { op });
                        if savepoint {
                            self.client
                                .batch_execute(&format!(
                                    "ROLLBACK TO SAVEPOINT {}",
                                    savepoint_name(j)
                                ))
                                .await?;
                            window = 1;
                            break;
                        }
                    }
                    None => outcomes.push(WriteOutcome::Applied { taken: taken(ops) }),
                }
            }
        }
        Ok(outcomes)
    }

    /// One request alone (a group replayed after a failed statement), statement after
    /// statement, stopping at a refusal, so a statement after it that would fail is
    /// never run; under a savepoint when it is conditional with more than one op.
    async fn one_by_one(&self, ops: &[BoundOp]) -> Result<WriteOutcome, tokio_postgres::Error> {
        let savepoint = ops.len() > 1 && ops.iter().any(BoundOp::is_conditional);
        if savepoint {
            self.client.batch_execute(SAVEPOINT_SQL).await?;
        }
        let mut held = Vec::with_capacity(ops.len());
        for op in ops {
            let h = self.held(op).await?;
            let refused = matches!(h, Held::No);
            held.push(h);
            if refused {
                if savepoint {
                    self.client.batch_execute(ROLLBACK_SQL).await?;
                }
                return Ok(WriteOutcome::Refused { op: held.len() - 1 });
            }
        }
        Ok(WriteOutcome::Applied { taken: taken(held) })
    }

    /// Runs one op and says whether its condition held.
    fn held<'a>(&'a self, op: &'a BoundOp) -> HeldCall<'a> {
        let statement = self.statement(op);
        Box::pin(async move {
            let params = op.refs();
            Ok(match op.kind {
                Kind::Put | Kind::Delete | Kind::Add | Kind::PutIfAny(_) => {
                    self.client.execute(statement, &params).await?;
                    Held::Yes
                }
                Kind::InsertIfAbsent | Kind::CompareAndSet => {
                    if self.client.execute(statement, &params).await? == 1 {
                        Held::Yes
                    } else {
                        Held::No
                    }
                }
                Kind::Expect | Kind::Fence => {
                    match self.client.query_opt(statement, &params).await? {
                        Some(_) => Held::Yes,
                        None => Held::No,
                    }
                }
                Kind::Take => match self.client.query_opt(statement, &params).await? {
                    Some(row) => Held::Taken(row.get::<_, Vec<u8>>(0)),
                    None => Held::No,
                },
            })
        })
    }

    /// A savepoint's statement, as a call of the pipeline.
    fn marker(&self, sql: String) -> HeldCall<'_> {
        Box::pin(async move {
            self.client.batch_execute(&sql).await?;
            Ok(Held::Yes)
        })
    }

    /// Applies `requests` (indexes into `bound`) in one transaction.
    async fn transaction(
        &mut self,
        bound: &[Vec<BoundOp>],
        requests: &[usize],
        connector: &Connector,
    ) -> Result<Vec<WriteOutcome>, Failure> {
        let fail = |e: tokio_postgres::Error| {
            if is_connection_error(&e) {
                Failure::Connection(connector.detail(&e))
            } else {
                Failure::Statement(connector.detail(&e))
            }
        };
        for &r in requests {
            self.prepare(&bound[r]).await.map_err(fail)?;
        }
        // A conditional request alone (a group replayed after a failed statement, or
        // the only request of an idle moment) runs statement by statement.
        let alone = matches!(requests, [one] if bound[*one].iter().any(BoundOp::is_conditional));
        let plan = (!alone).then(|| plan(bound, requests));
        if let Some(plan) = &plan {
            self.prepare_batches(plan).await.map_err(fail)?;
        }
        self.client.batch_execute("BEGIN").await.map_err(fail)?;
        let applied = match &plan {
            None => self.one_by_one(&bound[requests[0]]).await.map(|o| vec![o]),
            Some(plan) => match self.plain(plan).await {
                Ok(Some(outcomes)) => Ok(outcomes),
                // A multi-op request was refused: start over, with savepoints (a
                // failure to start over is handled as any failed statement below).
                Ok(None) => match self.client.batch_execute("ROLLBACK; BEGIN").await {
                    Ok(()) => self.optimistic(bound, requests).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            },
        };
        match applied {
            Ok(outcomes) => {
                // The outcome is known only once COMMIT has answered.
                self.client.batch_execute("COMMIT").await.map_err(fail)?;
                Ok(outcomes)
            }
            Err(e) => {
                let failure = fail(e);
                if let Failure::Statement(_) = failure {
                    self.client.batch_execute("ROLLBACK").await.map_err(fail)?;
                }
                Err(failure)
            }
        }
    }
}

/// The name of the savepoint of the `j`th request of a group.
fn savepoint_name(j: usize) -> String {
    format!("palyra_request_{j}")
}

/// The values a request's takes removed, in op order.
fn taken(held: Vec<Held>) -> Vec<Vec<u8>> {
    held.into_iter()
        .filter_map(|h| match h {
            Held::Taken(value) => Some(value),
            _ => None,
        })
        .collect()
}

async fn run(
    connector: &Connector,
    rx: &mut mpsc::UnboundedReceiver<Msg>,
    stats: &WriterStats,
) -> Option<oneshot::Sender<()>> {
    let config = &connector.config;
    // A whole group is bounded, so a server that stops answering cannot hang callers.
    let bound = config.connect_timeout + config.statement_timeout;
    let mut conn: Option<Conn> = None;
    let mut backoff = config.connect_backoff;
    let mut next_attempt = Instant::now();
    let mut last_error = String::from("not connected yet");
    let mut batch: Vec<Request> = Vec::new();
    loop {
        let first = if conn.is_none() {
            tokio::select! {
                msg = rx.recv() => msg,
                () = tokio::time::sleep_until(next_attempt.into()) => {
                    reconnect(connector, &mut conn, &mut backoff, &mut next_attempt, &mut last_error).await;
                    stats.disconnected.store(conn.is_none(), Ordering::Relaxed);
                    continue;
                }
            }
        } else {
            rx.recv().await
        };
        let first = first?;
        let stop = fill_batch(first, rx, &mut batch);
        if conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            conn = None;
            last_error = "connection closed".into();
        }
        if !batch.is_empty() && conn.is_none() && Instant::now() >= next_attempt {
            reconnect(
                connector,
                &mut conn,
                &mut backoff,
                &mut next_attempt,
                &mut last_error,
            )
            .await;
            stats.disconnected.store(conn.is_none(), Ordering::Relaxed);
        }
        if !batch.is_empty() {
            match conn.as_mut() {
                None => {
                    let e = connector.unavailable(&last_error);
                    for req in batch.drain(..) {
                        let _ = req.ack.send(Err(e.clone()));
                    }
                }
                Some(c) => {
                    let mut lost = None;
                    while !batch.is_empty() && lost.is_none() {
                        let mut group = take_group(&mut batch);
                        lost = write_batch(c, &mut group, connector, stats, bound).await;
                    }
                    if let Some(reason) = lost {
                        // The rest of the batch was queued behind the lost group.
                        let e = connector.unavailable(&reason);
                        for req in batch.drain(..) {
                            let _ = req.ack.send(Err(e.clone()));
                        }
                        tracing::warn!(target_db = %config.describe(), reason = %reason, "lost the PostgreSQL connection; reconnecting");
                        // What was queued behind the lost group may build on a change
                        // that did not commit: it fails too, before a new connection
                        // could commit it.
                        let e = connector.unavailable(&reason);
                        let mut queued_stop = None;
                        while let Ok(msg) = rx.try_recv() {
                            match msg {
                                Msg::Write(req) => {
                                    let _ = req.ack.send(Err(e.clone()));
                                }
                                Msg::Shutdown(done) => queued_stop = Some(done),
                            }
                        }
                        conn = None;
                        stats.disconnected.store(true, Ordering::Relaxed);
                        last_error = reason;
                        // Try again at once: a restarted server is usually back.
                        next_attempt = Instant::now();
                        if queued_stop.is_some() {
                            return stop.or(queued_stop);
                        }
                    }
                }
            }
        }
        if stop.is_some() {
            return stop;
        }
    }
}

async fn reconnect(
    connector: &Connector,
    conn: &mut Option<Conn>,
    backoff: &mut Duration,
    next_attempt: &mut Instant,
    last_error: &mut String,
) {
    let config = &connector.config;
    let ready = match connector.connect().await {
        // Bounded: a server that accepts and then goes silent must not stall the queue.
        Ok(client) => match tokio::time::timeout(
            config.connect_timeout,
            prepare_session(&client, &config.node_id, config.statement_timeout),
        )
        .await
        {
            Ok(Ok(())) => Ok(client),
            Ok(Err(e)) => Err(connector.detail(&e)),
            Err(_) => Err("preparing the writer's session timed out".to_owned()),
        },
        Err(e) => Err(e.to_string()),
    };
    match ready {
        Ok(client) => {
            *conn = Some(Conn {
                client,
                statements: HashMap::new(),
                batched: HashMap::new(),
            });
            *backoff = config.connect_backoff;
        }
        Err(why) => {
            *last_error = why;
            *next_attempt = Instant::now() + *backoff;
            *backoff = (*backoff * 2).min(config.max_backoff);
        }
    }
}

/// Turns `synchronous_commit` on for the writer's session, whatever the server's
/// default, so its commits wait for the WAL flush; tags the session with the node's
/// id, which the change triggers put in every notification (so a node can tell its
/// own writes from another's); and has the server notice a dead writer (its host
/// gone, no FIN) within about 25 s instead of the kernel's two hours, so its locks go.
///
/// A transaction left open by a writer that stopped mid-way (its process paused) is
/// ended by the server after `idle`, so the locks it holds (a lease row's fence) do not
/// keep another node from taking over.
async fn prepare_session(
    client: &Client,
    node_id: &str,
    idle: Duration,
) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "SET synchronous_commit TO on; SET tcp_keepalives_idle TO 10; \
             SET tcp_keepalives_interval TO 5; SET tcp_keepalives_count TO 3; \
             SET idle_in_transaction_session_timeout TO {}",
            idle.as_millis().max(1000)
        ))
        .await?;
    client
        .execute(
            "SELECT set_config('palyra.node_id', $1, false)",
            &[&node_id],
        )
        .await?;
    Ok(())
}

/// Takes the next group off the front of `batch`: requests in order while their ops
/// stay within [`MAX_GROUP_OPS`] (at least one request, however large).
fn take_group(batch: &mut Vec<Request>) -> Vec<Request> {
    let mut ops = 0;
    let count = batch
        .iter()
        .take_while(|req| {
            ops += req.ops.len();
            ops <= MAX_GROUP_OPS
        })
        .count()
        .max(1);
    let rest = batch.split_off(count.min(batch.len()));
    std::mem::replace(batch, rest)
}

/// Applies and answers one batch; returns why the connection was lost, if it was.
async fn write_batch(
    c: &mut Conn,
    batch: &mut Vec<Request>,
    connector: &Connector,
    stats: &WriterStats,
    bound: Duration,
) -> Option<String> {
    let mut answers: Vec<Option<Result<WriteOutcome, StorageError>>> = Vec::new();
    let mut bound_ops: Vec<Vec<BoundOp>> = Vec::with_capacity(batch.len());
    let mut valid = Vec::with_capacity(batch.len());
    for (i, req) in batch.iter().enumerate() {
        match req
            .ops
            .iter()
            .map(BoundOp::new)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(ops) => {
                bound_ops.push(ops);
                answers.push(None);
                valid.push(i);
            }
            Err(reason) => {
                bound_ops.push(Vec::new());
                answers.push(Some(Err(StorageError::Backend(reason))));
            }
        }
    }
    let started = Instant::now();
    let mut lost = None;
    match tokio::time::timeout(bound, c.transaction(&bound_ops, &valid, connector)).await {
        Ok(Ok(outcomes)) => {
            stats.committed(valid.len(), started);
            for (&i, outcome) in valid.iter().zip(outcomes) {
                answers[i] = Some(Ok(outcome));
            }
        }
        Ok(Err(Failure::Statement(reason))) => {
            tracing::warn!(reason = %reason, writes = valid.len(), "a statement failed; replaying the group one request at a time");
            for &i in &valid {
                if lost.is_some() {
                    break;
                }
                let started = Instant::now();
                match tokio::time::timeout(bound, c.transaction(&bound_ops, &[i], connector)).await
                {
                    Ok(Ok(mut outcome)) => {
                        stats.committed(1, started);
                        answers[i] = outcome.pop().map(Ok);
                    }
                    Ok(Err(Failure::Statement(reason))) => {
                        answers[i] = Some(Err(StorageError::Backend(reason)));
                    }
                    Ok(Err(Failure::Connection(reason))) => lost = Some(reason),
                    Err(_) => lost = Some("write timed out".into()),
                }
            }
        }
        Ok(Err(Failure::Connection(reason))) => lost = Some(reason),
        Err(_) => lost = Some("write timed out".into()),
    }
    let unavailable = lost.as_ref().map(|reason| connector.unavailable(reason));
    for (req, answer) in batch.drain(..).zip(answers) {
        let answer = answer.unwrap_or_else(|| {
            Err(unavailable
                .clone()
                .unwrap_or_else(|| connector.unavailable("no outcome")))
        });
        let _ = req.ack.send(answer);
    }
    lost
}
