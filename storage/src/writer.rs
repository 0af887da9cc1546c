//! The single writer's handle: one queue, in submission order, to the backend's writer.
//!
//! Callers queue a list of [`WriteOp`]s and await the acknowledgement. The backend's
//! writer (a thread for redb, `redb_store.rs`; a thread with one connection for
//! PostgreSQL, `postgres/writer.rs`) takes everything queued into one transaction (group
//! commit), commits it durably, and only then acknowledges each request. Requests are
//! applied in the order they were queued, so an actor's writes land in the order it
//! handled its messages.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::sync::{mpsc, oneshot};

use crate::error::StorageError;
use crate::op::{WriteOp, WriteOutcome};

/// Most requests folded into one transaction; bounds the latency of the batch.
pub(crate) const MAX_BATCH: usize = 4096;

pub(crate) struct Request {
    pub(crate) ops: Vec<WriteOp>,
    pub(crate) ack: oneshot::Sender<Result<WriteOutcome, StorageError>>,
}

pub(crate) enum Msg {
    Write(Request),
    Shutdown(oneshot::Sender<()>),
}

/// Clears the writer's liveness flag however its thread ends, a panic included.
pub(crate) struct AliveGuard(pub(crate) Arc<AtomicBool>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Counters and histograms the bench tool, readiness and `/metrics` read.
#[derive(Debug)]
pub struct WriterStats {
    /// Durable transactions committed.
    pub commits: AtomicU64,
    /// Writes (requests) acknowledged as durable.
    pub writes: AtomicU64,
    /// Writes folded into each commit.
    pub batch_size: Histogram,
    /// Seconds from opening a transaction to its durable commit.
    pub commit_seconds: Histogram,
    /// Set while the writer cannot write (PostgreSQL: no connection), so readiness
    /// reports it; redb's writer never sets it.
    pub disconnected: AtomicBool,
}

impl Default for WriterStats {
    fn default() -> Self {
        Self {
            commits: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            disconnected: AtomicBool::new(false),
        }
    }
}

impl WriterStats {
    pub(crate) fn committed(&self, requests: usize, started: std::time::Instant) {
        self.commit_seconds.observe(started.elapsed().as_secs_f64());
        self.batch_size.observe(requests as f64);
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(requests as u64, Ordering::Relaxed);
    }
}

/// What a backend's writer loop receives from [`Writer::channel`].
pub(crate) struct WriterParts {
    pub(crate) rx: mpsc::UnboundedReceiver<Msg>,
    pub(crate) stats: Arc<WriterStats>,
    pub(crate) alive: AliveGuard,
}

/// Handle to the writer. Cloning is shallow.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::UnboundedSender<Msg>,
    stats: Arc<WriterStats>,
    // Cleared when the writer's thread exits, so readiness reports a dead writer.
    alive: Arc<AtomicBool>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("alive", &self.is_alive())
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// A handle and the parts its backend's loop runs on.
    pub(crate) fn channel() -> (Self, WriterParts) {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(WriterStats::default());
        let alive = Arc::new(AtomicBool::new(true));
        let parts = WriterParts {
            rx,
            stats: Arc::clone(&stats),
            alive: AliveGuard(Arc::clone(&alive)),
        };
        (Self { tx, stats, alive }, parts)
    }

    /// True while the writer runs and can write now (readiness).
    pub fn can_write(&self) -> bool {
        self.is_alive() && !self.stats.disconnected.load(Ordering::Relaxed)
    }

    /// Applies `ops` atomically and returns once they are durable.
    pub async fn write(&self, ops: Vec<WriteOp>) -> Result<(), StorageError> {
        self.submit(ops).await
    }

    /// Queues `ops` now, in the caller's order, and returns a future that resolves once
    /// they are durable. Actors use it so that the order of their writes on disk is the
    /// order in which they handled the messages. A refused conditional op is the error
    /// [`StorageError::Refused`]; use [`Self::submit_checked`] to get it as an outcome.
    pub fn submit(
        &self,
        ops: Vec<WriteOp>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send + use<> {
        let checked = self.submit_checked(ops);
        async move {
            match checked.await? {
                WriteOutcome::Applied { .. } => Ok(()),
                WriteOutcome::Refused { op } => Err(StorageError::Refused { op }),
            }
        }
    }

    /// Like [`Self::submit`] (queued now, applied in order), but reports what became of
    /// the request: applied (with the values its takes removed) or refused at an op.
    /// An error means nothing of it was applied, or, for
    /// [`StorageError::Unavailable`], that its commit's outcome is unknown.
    pub fn submit_checked(
        &self,
        ops: Vec<WriteOp>,
    ) -> impl Future<Output = Result<WriteOutcome, StorageError>> + Send + use<> {
        let (ack, done) = oneshot::channel();
        let queued = self.tx.send(Msg::Write(Request { ops, ack })).is_ok();
        async move {
            if !queued {
                return Err(StorageError::WriterStopped);
            }
            done.await.map_err(|_| StorageError::WriterStopped)?
        }
    }

    /// Finishes every queued write, closes the backend's connection or transaction log
    /// and stops the writer.
    pub async fn shutdown(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// True until the writer has stopped.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Commit and write counters.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }
}

/// Takes the next batch: waits for one message, then everything queued behind it.
/// Returns the batch and, when a shutdown was among them, its acknowledgement; writes
/// queued behind a shutdown still join the batch. `None` when every handle is gone.
pub(crate) fn fill_batch(
    first: Msg,
    rx: &mut mpsc::UnboundedReceiver<Msg>,
    batch: &mut Vec<Request>,
) -> Option<oneshot::Sender<()>> {
    let mut stop = None;
    match first {
        Msg::Write(req) => batch.push(req),
        Msg::Shutdown(done) => stop = Some(done),
    }
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(Msg::Write(req)) => batch.push(req),
            Ok(Msg::Shutdown(done)) => stop = Some(done),
            Err(_) => break,
        }
    }
    stop
}
