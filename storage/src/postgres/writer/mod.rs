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
//!
//! Its parts: `op` (an op as bound), `plan` (a group as batched statements), `conn`
//! (the connection and the transaction of a group).

mod conn;
mod op;
mod plan;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Client;

use crate::error::StorageError;
use crate::op::WriteOutcome;
use crate::postgres::connect::Connector;
use crate::writer::{Msg, Request, Writer, WriterParts, WriterStats, fill_batch};

use conn::{Conn, Failure};
use op::BoundOp;

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

/// Most ops applied in one transaction. A group is bounded by one timeout (connect
/// plus statement timeout): a burst of thousands of conditional requests (one
/// boundary's claims at 10,000 objectives) in one transaction ran past it on a loaded
/// machine, and the whole group, every claim in it, failed. Groups of this size
/// commit well within the bound even then (a group of refusals is sent once more
/// than others: the plain pass, then with savepoints), so a busy writer only falls
/// behind.
const MAX_GROUP_OPS: usize = 2048;

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
        if conn.as_ref().is_some_and(|c| c.is_closed()) {
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
            *conn = Some(Conn::new(client));
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
