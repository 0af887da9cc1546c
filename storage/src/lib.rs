//! Durable state for palyrad: one redb file, its schema, and the single writer.
//!
//! Layout:
//! - [`schema`]: every table the daemon keeps, the schema version and its migrations.
//! - [`writer`]: the one thread that opens write transactions and group-commits them.
//! - [`record`]: the versioned serde envelope every stored value is wrapped in.
//!
//! Reads are served from a shared [`Storage`] (redb allows readers beside the writer);
//! writes go only through [`Writer`], which acknowledges a write after it is durable.

mod error;
pub mod record;
pub mod schema;
pub mod writer;

pub use error::StorageError;
pub use record::{StoredRecord, decode_record, encode_record};
pub use schema::{SCHEMA_VERSION, Table};
pub use writer::{WriteOp, Writer, WriterStats};

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

/// A stored row: key and value bytes.
pub type Row = (Vec<u8>, Vec<u8>);

/// File name of the database inside the data dir.
pub const DB_FILE: &str = "palyra.redb";

/// An open database. Cloning is shallow; the writer holds one clone.
#[derive(Clone)]
pub struct Storage {
    db: Arc<Database>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").finish_non_exhaustive()
    }
}

impl Storage {
    /// Opens (or creates) the database in `data_dir`, creates missing tables and runs
    /// migrations up to [`SCHEMA_VERSION`]. Refuses a database written by a newer daemon.
    pub fn open(data_dir: &Path) -> Result<Self, StorageError> {
        let db = Database::create(data_dir.join(DB_FILE)).map_err(StorageError::backend)?;
        schema::prepare(&db)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Every row of `table`, in key order. Used by actors to load their state at start.
    pub fn load(&self, table: Table) -> Result<Vec<Row>, StorageError> {
        let txn = self.db.begin_read().map_err(StorageError::backend)?;
        let t = txn.open_table(table.def()).map_err(StorageError::backend)?;
        let mut rows = Vec::new();
        for entry in t.iter().map_err(StorageError::backend)? {
            let (k, v) = entry.map_err(StorageError::backend)?;
            rows.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(rows)
    }

    /// Up to `limit` rows of `table` whose keys start with `prefix`, newest (highest
    /// key) first, starting below `before` when given.
    pub fn scan_prefix_rev(
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

    /// Up to `limit` rows of `table` in key order (oldest first for time-ordered keys),
    /// starting after `after` when given.
    pub fn scan_forward(
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

    /// How many rows `table` holds.
    pub fn count(&self, table: Table) -> Result<u64, StorageError> {
        let txn = self.db.begin_read().map_err(StorageError::backend)?;
        let t = txn.open_table(table.def()).map_err(StorageError::backend)?;
        t.len().map_err(StorageError::backend)
    }

    /// One row of `table`.
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let txn = self.db.begin_read().map_err(StorageError::backend)?;
        let t = txn.open_table(table.def()).map_err(StorageError::backend)?;
        Ok(t.get(key)
            .map_err(StorageError::backend)?
            .map(|v| v.value().to_vec()))
    }

    /// The stored schema version.
    pub fn schema_version(&self) -> Result<u64, StorageError> {
        schema::stored_version(&self.db)
    }

    /// Starts the single writer thread. Call once.
    pub fn start_writer(&self) -> Result<Writer, StorageError> {
        Writer::start(Arc::clone(&self.db))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: u32) -> WriteOp {
        WriteOp::Put {
            table: Table::Sessions,
            key: key.to_be_bytes().to_vec(),
            value: format!("value-{key}").into_bytes(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_commits_and_are_durable() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let writer = storage.start_writer().unwrap();
        let tasks: Vec<_> = (0..200u32)
            .map(|i| {
                let w = writer.clone();
                tokio::spawn(async move { w.write(vec![put(i)]).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let stats = writer.stats();
        let commits = stats.commits.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(stats.writes.load(std::sync::atomic::Ordering::Relaxed), 200);
        assert!(
            commits < 200,
            "group commit folded writes: {commits} commits"
        );
        writer
            .write(vec![WriteOp::delete(Table::Sessions, 7u32.to_be_bytes().to_vec())])
            .await
            .unwrap();
        writer.shutdown().await;
        assert!(!writer.is_alive());
        assert!(matches!(
            writer.write(vec![put(1)]).await,
            Err(StorageError::WriterStopped)
        ));
        drop(storage);

        let reopened = Storage::open(dir.path()).unwrap();
        let rows = reopened.load(Table::Sessions).unwrap();
        assert_eq!(rows.len(), 199);
        assert_eq!(
            reopened.get(Table::Sessions, &3u32.to_be_bytes()).unwrap(),
            Some(b"value-3".to_vec())
        );
        assert_eq!(
            reopened.get(Table::Sessions, &7u32.to_be_bytes()).unwrap(),
            None
        );
        assert_eq!(reopened.schema_version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = redb::Database::create(dir.path().join(DB_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut meta = txn
                    .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
                    .unwrap();
                meta.insert("schema_version", SCHEMA_VERSION + 1).unwrap();
            }
            txn.commit().unwrap();
        }
        let err = Storage::open(dir.path()).unwrap_err();
        assert!(matches!(err, StorageError::SchemaTooNew { .. }), "{err}");
    }

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Demo {
        name: String,
    }

    impl StoredRecord for Demo {
        const TABLE: Table = Table::Sessions;
        const VERSION: u32 = 2;
    }

    #[test]
    fn records_carry_their_version() {
        let bytes = encode_record(&Demo { name: "a".into() });
        assert_eq!(bytes, br#"{"v":2,"r":{"name":"a"}}"#);
        assert_eq!(
            decode_record::<Demo>(&bytes).unwrap(),
            Demo { name: "a".into() }
        );
        let newer = br#"{"v":3,"r":{"name":"a"}}"#;
        assert!(decode_record::<Demo>(newer).is_err());
    }
}
