//! The redb backend: one file in the data dir, its reads, and the writer thread that
//! owns every write transaction.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use tokio::sync::oneshot;

use crate::error::StorageError;
use crate::op::{WriteOp, WriteOutcome};
use crate::schema::{self, Row, Table};
use crate::writer::{Request, Writer, WriterParts, fill_batch};

/// File name of the database inside the data dir.
pub const DB_FILE: &str = "palyra.redb";

/// redb's page cache when nothing else is configured (`storage.cache_mib`): redb's own
/// default is 1 GiB, which a daemon whose state lives in its actors never needs.
pub const DEFAULT_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// An open redb database. Cloning is shallow; the writer thread holds one clone.
#[derive(Clone)]
pub(crate) struct RedbStore {
    db: Arc<Database>,
}

impl RedbStore {
    /// Opens (or creates) the database in `data_dir`, creates missing tables and runs
    /// migrations up to [`schema::SCHEMA_VERSION`]; refuses a newer database.
    pub(crate) fn open(data_dir: &Path, cache_bytes: usize) -> Result<Self, StorageError> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(data_dir.join(DB_FILE))
            .map_err(StorageError::backend)?;
        schema::prepare(&db)?;
        Ok(Self { db: Arc::new(db) })
    }

    pub(crate) fn load(&self, table: Table) -> Result<Vec<Row>, StorageError> {
        let txn = self.db.begin_read().map_err(StorageError::backend)?;
        let t = txn.open_table(table.def()).map_err(StorageError::backend)?;
        let mut rows = Vec::new();
        for entry in t.iter().map_err(StorageError::backend)? {
            let (k, v) = entry.map_err(StorageError::backend)?;
            rows.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(rows)
    }

    pub(crate) fn scan_prefix_rev(
        &self,
        table: Table,
        prefix: &[u8],
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Row>, StorageError> {
        let txn = self.db.begin_read().map_err(StorageError::backend)?;
        let t = txn.open_table(table.def()).map_err(StorageError::backend)?;
        let mut end = prefix.to_vec();
        end.push(0xff);
        let upper: &[u8] = before.unwrap_or(&end);
        let mut rows = Vec::new();
        if limit == 0 || upper <= prefix {
            return Ok(rows);
        }
        for entry in t
            .range::<&[u8]>(prefix..upper)
            .map_err(StorageError::backend)?
            .rev()
        {
            let (k, v) = entry.map_err(StorageError::backend)?;
            if !k.value().starts_with(prefix) {
                continue;
            }
            rows.push((k.value().to_vec(), v.value().to_vec()));
            if rows.len() >= limit {
                break;
            }
        }
        Ok(rows)
    }

    pub(crate) fn scan_forward(
        &self,
        table: Table,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Row>, StorageError> {
        use std::ops::Bound;
        let txn = self.db.begin_read().map_err(StorageError::backend)?;
        let t = txn.open_table(table.def()).map_err(StorageError::backend)?;
        let lower = match after {
            Some(key) => Bound::Excluded(key),
            None => Bound::Unbounded,
        };
        let mut rows = Vec::new();
        for entry in t
            .range::<&[u8]>((lower, Bound::Unbounded))
            .map_err(StorageError::backend)?
            .take(limit)
        {
            let (k, v) = entry.map_err(StorageError::backend)?;
            rows.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(rows)
    }

    pub(crate) fn count(&self, table: Table) -> Result<u64, StorageError> {
        let txn = self.db.begin_read().map_err(StorageError::backend)?;
        let t = txn.open_table(table.def()).map_err(StorageError::backend)?;
        t.len().map_err(StorageError::backend)
    }

    pub(crate) fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let txn = self.db.begin_read().map_err(StorageError::backend)?;
        let t = txn.open_table(table.def()).map_err(StorageError::backend)?;
        Ok(t.get(key)
            .map_err(StorageError::backend)?
            .map(|v| v.value().to_vec()))
    }

    pub(crate) fn schema_version(&self) -> Result<u64, StorageError> {
        schema::stored_version(&self.db)
    }

    /// Starts the writer thread.
    pub(crate) fn start_writer(&self) -> Result<Writer, StorageError> {
        let (writer, parts) = Writer::channel();
        let db = Arc::clone(&self.db);
        std::thread::Builder::new()
            .name("palyra-writer".into())
            .spawn(move || {
                let WriterParts {
                    mut rx,
                    stats,
                    alive,
                } = parts;
                let stop = run(&db, &mut rx, &stats);
                drop(alive);
                // Answer the shutdown only after this thread's database handle is gone.
                drop(db);
                if let Some(done) = stop {
                    let _ = done.send(());
                }
            })
            .map_err(StorageError::backend)?;
        Ok(writer)
    }
}

/// The writer loop; returns the pending shutdown acknowledgement, if any.
fn run(
    db: &Database,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<crate::writer::Msg>,
    stats: &crate::writer::WriterStats,
) -> Option<oneshot::Sender<()>> {
    let mut batch: Vec<Request> = Vec::new();
    loop {
        let first = rx.blocking_recv()?;
        let stop = fill_batch(first, rx, &mut batch);
        if !batch.is_empty() {
            let started = std::time::Instant::now();
            match commit(db, &batch) {
                Ok(outcomes) => {
                    stats.committed(batch.len(), started);
                    for (req, outcome) in batch.drain(..).zip(outcomes) {
                        let _ = req.ack.send(Ok(outcome));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, writes = batch.len(), "group commit failed");
                    for req in batch.drain(..) {
                        let _ = req.ack.send(Err(e.clone()));
                    }
                }
            }
        }
        if stop.is_some() {
            return stop;
        }
    }
}

type OpenTables<'t> = HashMap<Table, redb::Table<'t, &'static [u8], &'static [u8]>>;

/// One transaction for the whole batch; each request's conditions are checked at its
/// turn, so a request sees every earlier request of the batch.
fn commit(db: &Database, batch: &[Request]) -> Result<Vec<WriteOutcome>, StorageError> {
    let mut txn = db.begin_write().map_err(StorageError::backend)?;
    // The default, stated: a commit returns only once it is on disk.
    txn.set_durability(redb::Durability::Immediate)
        .map_err(StorageError::backend)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    {
        // Each table is opened once per transaction, not once per write.
        let mut open: OpenTables<'_> = HashMap::new();
        for table in batch
            .iter()
            .flat_map(|req| &req.ops)
            .flat_map(WriteOp::tables)
        {
            if let std::collections::hash_map::Entry::Vacant(e) = open.entry(table) {
                e.insert(txn.open_table(table.def()).map_err(StorageError::backend)?);
            }
        }
        for req in batch {
            outcomes.push(apply(&mut open, &req.ops)?);
        }
    }
    txn.commit().map_err(StorageError::backend)?;
    Ok(outcomes)
}

/// Applies one request, or nothing of it when a condition fails.
fn apply(open: &mut OpenTables<'_>, ops: &[WriteOp]) -> Result<WriteOutcome, StorageError> {
    let mut taken = Vec::new();
    if ops.iter().any(WriteOp::is_conditional) {
        // Check every condition first, against the rows as the earlier ops of this
        // request would leave them, so a refusal needs nothing undone.
        let mut overlay: HashMap<(Table, &[u8]), Option<&[u8]>> = HashMap::new();
        let mut stored: HashMap<(Table, &[u8]), Option<Vec<u8>>> = HashMap::new();
        for (i, op) in ops.iter().enumerate() {
            // An embedded database has no cluster, so no lease to prove.
            let Some(slot) = op.row() else {
                return Ok(WriteOutcome::Refused { op: i });
            };
            if !overlay.contains_key(&slot) && !stored.contains_key(&slot) {
                let t = &open[&slot.0];
                let v = t
                    .get(slot.1)
                    .map_err(StorageError::backend)?
                    .map(|v| v.value().to_vec());
                stored.insert(slot, v);
            }
            let current: Option<&[u8]> = match overlay.get(&slot) {
                Some(v) => *v,
                None => stored[&slot].as_deref(),
            };
            let next = match op {
                WriteOp::Put { value, .. } => Some(value.as_slice()),
                WriteOp::Delete { .. } => None,
                WriteOp::InsertIfAbsent { value, .. } => {
                    if current.is_some() {
                        return Ok(WriteOutcome::Refused { op: i });
                    }
                    Some(value.as_slice())
                }
                WriteOp::CompareAndSet {
                    expected, value, ..
                } => {
                    if current != expected.as_deref() {
                        return Ok(WriteOutcome::Refused { op: i });
                    }
                    Some(value.as_slice())
                }
                WriteOp::Take { .. } => match current {
                    Some(v) => {
                        taken.push(v.to_vec());
                        None
                    }
                    None => return Ok(WriteOutcome::Refused { op: i }),
                },
                WriteOp::Expect { value, .. } => {
                    if current != Some(value.as_slice()) {
                        return Ok(WriteOutcome::Refused { op: i });
                    }
                    Some(value.as_slice())
                }
                WriteOp::Fence(_) => return Ok(WriteOutcome::Refused { op: i }),
                // Unconditional; the row exists afterwards, which is all a later
                // condition of the same request may ask of a counter row (its bytes
                // are the sum, known only when it is written).
                WriteOp::Add { value, .. } => Some(value.as_slice()),
                WriteOp::PutIfAny { guard, value, .. } => {
                    if !guarded(open, *guard)? {
                        // Writes nothing: the row stays as it is.
                        continue;
                    }
                    Some(value.as_slice())
                }
            };
            overlay.insert(slot, next);
        }
    }
    for op in ops {
        let Some((table, _)) = op.row() else {
            continue;
        };
        if let WriteOp::PutIfAny { guard, .. } = op
            && !guarded(open, *guard)?
        {
            continue;
        }
        let t = open
            .get_mut(&table)
            .ok_or_else(|| StorageError::Backend("table not open".into()))?;
        match op {
            WriteOp::Put { key, value, .. }
            | WriteOp::InsertIfAbsent { key, value, .. }
            | WriteOp::CompareAndSet { key, value, .. }
            | WriteOp::PutIfAny { key, value, .. } => {
                t.insert(key.as_slice(), value.as_slice())
                    .map_err(StorageError::backend)?;
            }
            WriteOp::Delete { key, .. } | WriteOp::Take { key, .. } => {
                t.remove(key.as_slice()).map_err(StorageError::backend)?;
            }
            WriteOp::Add { key, value, .. } => {
                // The one writer thread reads and writes the row inside this
                // transaction, so no increment is lost between the two.
                let current = t
                    .get(key.as_slice())
                    .map_err(StorageError::backend)?
                    .map(|v| v.value().to_vec());
                let sum = crate::record::add_counts(current.as_deref(), value);
                t.insert(key.as_slice(), sum.as_slice())
                    .map_err(StorageError::backend)?;
            }
            WriteOp::Expect { .. } | WriteOp::Fence(_) => {}
        }
    }
    Ok(WriteOutcome::Applied { taken })
}

/// Whether `guard` has a row, as this transaction sees it ([`WriteOp::PutIfAny`]).
fn guarded(open: &OpenTables<'_>, guard: Table) -> Result<bool, StorageError> {
    let t = open
        .get(&guard)
        .ok_or_else(|| StorageError::Backend("table not open".into()))?;
    Ok(t.first().map_err(StorageError::backend)?.is_some())
}
