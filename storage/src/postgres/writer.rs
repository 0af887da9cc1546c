//! The PostgreSQL writer: one thread, one connection, requests in submission order.
//!
//! Everything queued is applied in one transaction (group commit), request after
//! request, so a request sees every earlier one and requests from one [`Writer`] never
//! commit out of order. A group's statements are pipelined (all sent before any answer
//! is read), without savepoints (`Conn::plain`). When a conditional request of more
//! than one op is refused, the group starts over with a savepoint per such request,
//! so a refusal undoes only its own ops: the transaction is rolled back to that
//! savepoint and the requests after it are sent again (`Conn::optimistic`). A failed
//! statement aborts the group, which is then replayed one transaction per request, in
//! order, so only the request that failed reports the failure.
//!
//! A lost connection answers every request of the group `Unavailable` (a lost COMMIT is
//! never reported as applied), and requests that arrive while it is being re-established
//! are answered `Unavailable` at once; the writer reconnects with doubling waits.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::future::try_join_all;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use crate::error::StorageError;
use crate::op::{WriteOp, WriteOutcome};
use crate::postgres::connect::{Connector, is_connection_error};
use crate::postgres::tables::{Param, TableSql, counters, extract};
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

/// One op with its statement kind and bound parameters.
struct BoundOp {
    /// `None` for a fence, which reads the lease table.
    table: Option<Table>,
    kind: Kind,
    params: Vec<Param>,
    /// A fence's shard, node and epoch: the same fence twice in one transaction is
    /// read once (`Conn::plain`).
    fence: Option<(u32, String, u64)>,
}

impl BoundOp {
    fn new(op: &WriteOp) -> Result<Self, String> {
        let row = |table: Table, key: &[u8], value: &[u8]| -> Result<Vec<Param>, String> {
            let mut params: Vec<Param> = vec![Box::new(key.to_vec()), Box::new(value.to_vec())];
            params.extend(extract(table, key, value)?);
            Ok(params)
        };
        let Some((table, _)) = op.row() else {
            let WriteOp::Fence(fence) = op else {
                return Err("an op without a row".into());
            };
            let epoch = i64::try_from(fence.epoch).map_err(|_| "epoch out of range")?;
            let params: Vec<Param> = vec![
                Box::new(i32::try_from(fence.shard).map_err(|_| "shard out of range")?),
                Box::new(fence.node_id.clone()),
                Box::new(epoch),
            ];
            return Ok(Self {
                table: None,
                kind: Kind::Fence,
                params,
                fence: Some((fence.shard, fence.node_id.clone(), fence.epoch)),
            });
        };
        let (kind, params) = match op {
            WriteOp::Put { key, value, .. } => (Kind::Put, row(table, key, value)?),
            WriteOp::InsertIfAbsent { key, value, .. }
            | WriteOp::CompareAndSet {
                key,
                value,
                expected: None,
                ..
            } => (Kind::InsertIfAbsent, row(table, key, value)?),
            WriteOp::CompareAndSet {
                key,
                value,
                expected: Some(expected),
                ..
            } => {
                let mut params = row(table, key, value)?;
                params.push(Box::new(expected.clone()));
                (Kind::CompareAndSet, params)
            }
            WriteOp::Delete { key, .. } => (Kind::Delete, vec![Box::new(key.clone()) as Param]),
            WriteOp::Take { key, .. } => (Kind::Take, vec![Box::new(key.clone()) as Param]),
            WriteOp::Expect { key, value, .. } => (
                Kind::Expect,
                vec![Box::new(key.clone()) as Param, Box::new(value.clone())],
            ),
            WriteOp::Add { key, value, .. } => {
                if counters(table).is_empty() {
                    return Err(format!("table {} has no counters to add to", table.name()));
                }
                (Kind::Add, row(table, key, value)?)
            }
            WriteOp::PutIfAny {
                guard, key, value, ..
            } => (Kind::PutIfAny(*guard), row(table, key, value)?),
            WriteOp::Fence(_) => unreachable!("a fence has no row"),
        };
        Ok(Self {
            table: Some(table),
            kind,
            params,
            fence: None,
        })
    }

    /// Whether its condition may fail (everything but a put, a delete and an add).
    fn is_conditional(&self) -> bool {
        !matches!(
            self.kind,
            Kind::Put | Kind::Delete | Kind::Add | Kind::PutIfAny(_)
        )
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// One op of a pipelined request, boxed so ops of every kind go in one list.
type HeldCall<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Held, tokio_postgres::Error>> + Send + 'a>,
>;

/// The writer's connection and its prepared statements.
struct Conn {
    client: Client,
    statements: HashMap<(Option<Table>, Kind), Statement>,
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
                    Some(table) => {
                        let sql = TableSql::new(table);
                        match op.kind {
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
                };
                let statement = self.client.prepare(&text).await?;
                self.statements.insert((op.table, op.kind), statement);
            }
        }
        Ok(())
    }

    fn statement(&self, op: &BoundOp) -> &Statement {
        // Every op is prepared before it runs.
        &self.statements[&(op.table, op.kind)]
    }

    /// Applies a group's requests in one pipeline without savepoints, the common case:
    /// every statement is sent before any answer is read, and the server runs them in
    /// order. A refused single-op request changed nothing, so what came after it
    /// stands. A refused request of more than one op may have applied its other ops,
    /// which only a savepoint could undo: `None` then, and the caller rolls the
    /// transaction back and applies the group with savepoints
    /// ([`Self::optimistic`]).
    ///
    /// A fence repeated in the group (one shard's lease at one epoch, for many
    /// requests) is read once: its first read holds the lease row locked `FOR SHARE`
    /// until commit, so no takeover can move the lease before this transaction ends
    /// (`storage/src/cluster.rs` takes leases `FOR UPDATE SKIP LOCKED`), and the later
    /// reads could only answer the same.
    async fn plain(
        &self,
        bound: &[Vec<BoundOp>],
        requests: &[usize],
    ) -> Result<Option<Vec<WriteOutcome>>, tokio_postgres::Error> {
        let mut calls: Vec<HeldCall<'_>> = Vec::new();
        // For each request, where each of its ops' answers is in `calls`.
        let mut answers: Vec<Vec<usize>> = Vec::with_capacity(requests.len());
        let mut fences: HashMap<&(u32, String, u64), usize> = HashMap::new();
        for &r in requests {
            let mut at = Vec::with_capacity(bound[r].len());
            for op in &bound[r] {
                if let Some(fence) = &op.fence {
                    if let Some(&read) = fences.get(fence) {
                        at.push(read);
                        continue;
                    }
                    fences.insert(fence, calls.len());
                }
                at.push(calls.len());
                calls.push(self.held(op));
            }
            answers.push(at);
        }
        let held = try_join_all(calls).await?;
        let mut outcomes = Vec::with_capacity(requests.len());
        for at in answers {
            match at.iter().position(|&i| matches!(held[i], Held::No)) {
                Some(_) if at.len() > 1 => return Ok(None),
                Some(op) => outcomes.push(WriteOutcome::Refused { op }),
                None => outcomes.push(WriteOutcome::Applied {
                    taken: taken(at.iter().map(|&i| held[i].clone()).collect()),
                }),
            }
        }
        Ok(Some(outcomes))
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
        self.client.batch_execute("BEGIN").await.map_err(fail)?;
        // A conditional request alone (a group replayed after a failed statement, or
        // the only request of an idle moment) runs statement by statement.
        let applied = match requests {
            [one] if bound[*one].iter().any(BoundOp::is_conditional) => {
                self.one_by_one(&bound[*one]).await.map(|o| vec![o])
            }
            _ => match self.plain(bound, requests).await {
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
