//! The single writer: one thread owns every redb write transaction.
//!
//! Callers queue a list of [`WriteOp`]s and await the acknowledgement. The thread takes
//! everything queued into one transaction (group commit), commits it with
//! `Durability::Immediate`, and only then acknowledges each write. One fsync thus serves
//! every write that arrived while the previous commit was in flight.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use redb::Database;
use tokio::sync::oneshot;

use crate::{StorageError, StoredRecord, Table, encode_record};

/// Most writes folded into one transaction; bounds the latency of the batch.
const MAX_BATCH: usize = 4096;

/// One change to one row.
#[derive(Debug, Clone)]
pub enum WriteOp {
    Put {
        table: Table,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        table: Table,
        key: Vec<u8>,
    },
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
}

struct Request {
    ops: Vec<WriteOp>,
    ack: oneshot::Sender<Result<(), StorageError>>,
}

enum Msg {
    Write(Request),
    Shutdown(oneshot::Sender<()>),
}

struct AliveGuard(Arc<AtomicBool>);

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
}

impl Default for WriterStats {
    fn default() -> Self {
        Self {
            commits: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
        }
    }
}

/// Handle to the writer thread. Cloning is shallow.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Msg>,
    stats: Arc<WriterStats>,
    // Cleared when the thread exits, so readiness reports a dead writer.
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
    pub(crate) fn start(db: Arc<Database>) -> Result<Self, StorageError> {
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(WriterStats::default());
        let alive = Arc::new(AtomicBool::new(true));
        let thread_stats = Arc::clone(&stats);
        let thread_alive = Arc::clone(&alive);
        std::thread::Builder::new()
            .name("palyra-writer".into())
            .spawn(move || {
                // Cleared however the thread ends, a panic included, so readiness and
                // callers see a dead writer.
                let _alive = AliveGuard(thread_alive);
                let stop = run(&db, &rx, &thread_stats);
                drop(_alive);
                // Answer the shutdown only after this thread's database handle is gone.
                drop(db);
                if let Some(done) = stop {
                    let _ = done.send(());
                }
            })
            .map_err(StorageError::backend)?;
        Ok(Self { tx, stats, alive })
    }

    /// Applies `ops` atomically and returns once they are durable on disk.
    pub async fn write(&self, ops: Vec<WriteOp>) -> Result<(), StorageError> {
        self.submit(ops).await
    }

    /// Queues `ops` now, in the caller's order, and returns a future that resolves once
    /// they are durable. Actors use it so that the order of their writes on disk is the
    /// order in which they handled the messages.
    pub fn submit(
        &self,
        ops: Vec<WriteOp>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send + use<> {
        let (ack, done) = oneshot::channel();
        let queued = self.tx.send(Msg::Write(Request { ops, ack })).is_ok();
        async move {
            if !queued {
                return Err(StorageError::WriterStopped);
            }
            done.await.map_err(|_| StorageError::WriterStopped)?
        }
    }

    /// Finishes every queued write, closes the transaction log and stops the thread.
    pub async fn shutdown(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// True until the writer thread has stopped.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Commit and write counters.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }
}

/// The writer loop; returns the pending shutdown acknowledgement, if any.
fn run(
    db: &Database,
    rx: &mpsc::Receiver<Msg>,
    stats: &WriterStats,
) -> Option<oneshot::Sender<()>> {
    let mut batch: Vec<Request> = Vec::new();
    let mut stop: Option<oneshot::Sender<()>> = None;
    while stop.is_none() {
        match rx.recv() {
            Ok(Msg::Write(req)) => batch.push(req),
            Ok(Msg::Shutdown(done)) => stop = Some(done),
            Err(_) => break,
        }
        // Everything that queued up meanwhile joins this transaction.
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Write(req)) => batch.push(req),
                Ok(Msg::Shutdown(done)) => {
                    stop = Some(done);
                    // Writes queued behind a shutdown still get committed.
                }
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            let started = std::time::Instant::now();
            let result = commit(db, &batch);
            if result.is_ok() {
                stats
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                stats.batch_size.observe(batch.len() as f64);
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats
                    .writes
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
            } else if let Err(e) = &result {
                tracing::error!(error = %e, writes = batch.len(), "group commit failed");
            }
            for req in batch.drain(..) {
                let _ = req.ack.send(result.clone());
            }
        }
    }
    stop
}

fn commit(db: &Database, batch: &[Request]) -> Result<(), StorageError> {
    let mut txn = db.begin_write().map_err(StorageError::backend)?;
    // The default, stated: a commit returns only once it is on disk.
    txn.set_durability(redb::Durability::Immediate)
        .map_err(StorageError::backend)?;
    {
        // Each table is opened once per transaction, not once per write.
        let mut open: HashMap<Table, redb::Table<'_, &'static [u8], &'static [u8]>> =
            HashMap::new();
        for op in batch.iter().flat_map(|req| &req.ops) {
            let table = match op {
                WriteOp::Put { table, .. } | WriteOp::Delete { table, .. } => *table,
            };
            let t = match open.entry(table) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(txn.open_table(table.def()).map_err(StorageError::backend)?)
                }
            };
            match op {
                WriteOp::Put { key, value, .. } => {
                    t.insert(key.as_slice(), value.as_slice())
                        .map_err(StorageError::backend)?;
                }
                WriteOp::Delete { key, .. } => {
                    t.remove(key.as_slice()).map_err(StorageError::backend)?;
                }
            }
        }
    }
    txn.commit().map_err(StorageError::backend)
}
