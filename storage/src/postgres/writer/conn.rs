//! The writer's connection: its prepared statements and how it applies a group in one
//! transaction (planned and batched, with savepoints after a refusal, or one request
//! statement by statement).

use std::collections::{HashMap, HashSet};

use futures_util::future::try_join_all;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use crate::op::WriteOutcome;
use crate::postgres::connect::{Connector, is_connection_error};
use crate::postgres::tables::{Array, Cell, TableSql};
use crate::schema::Table;

use super::op::{BoundOp, Held, Kind, taken};
use super::plan::{Call, Plan, arrays, plan};

/// Most savepoints open at once in a group's transaction (see `Conn::optimistic`).
const MAX_NESTED: usize = 64;

/// The savepoint of a request replayed alone (the pipelined ones are numbered).
const SAVEPOINT_SQL: &str = "SAVEPOINT palyra_request";
const ROLLBACK_SQL: &str = "ROLLBACK TO SAVEPOINT palyra_request";

/// A fence: the lease row must still name this node at this epoch, unexpired by the
/// server's clock; locked until commit so a takeover waits for this transaction.
const FENCE_SQL: &str = "SELECT 1 FROM cluster_leases WHERE shard = $1 AND owner = $2 \
     AND epoch = $3 AND expires_at > clock_timestamp() FOR SHARE";

/// One op of a pipelined request, boxed so ops of every kind go in one list.
type HeldCall<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Held, tokio_postgres::Error>> + Send + 'a>,
>;

/// One statement of a planned group (see [`plan`]) with the answer of each of its ops.
type BatchCall<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<Held>, tokio_postgres::Error>> + Send + 'a>,
>;
/// The writer's connection and its prepared statements.
pub(super) struct Conn {
    client: Client,
    statements: HashMap<(Option<Table>, Kind), Statement>,
    /// The batched statements of a planned group (see [`TableSql::batched`]).
    batched: HashMap<(Table, Kind), Statement>,
}

pub(super) enum Failure {
    /// One statement failed on a healthy connection; the transaction was rolled back.
    Statement(String),
    /// The connection is gone (or its state unknown); the outcome of a COMMIT in
    /// flight is unknown.
    Connection(String),
}

impl Conn {
    /// A connection ready for the writer (its session prepared), nothing prepared yet.
    pub(super) fn new(client: Client) -> Self {
        Self {
            client,
            statements: HashMap::new(),
            batched: HashMap::new(),
        }
    }

    /// Whether the server or the network ended the connection.
    pub(super) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

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
    pub(super) async fn transaction(
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
