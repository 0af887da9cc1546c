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

use redb::{Database, ReadableDatabase, ReadableTable};

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
    pub fn load(&self, table: Table) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StorageError> {
        let txn = self.db.begin_read().map_err(StorageError::backend)?;
        let t = txn.open_table(table.def()).map_err(StorageError::backend)?;
        let mut rows = Vec::new();
        for entry in t.iter().map_err(StorageError::backend)? {
            let (k, v) = entry.map_err(StorageError::backend)?;
            rows.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(rows)
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
