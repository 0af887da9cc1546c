//! [`Storage`]: the open database, whichever backend holds it, shared for reads.
//!
//! One read API, `read_*`, async, that both backends implement with the same semantics
//! and the same byte order of keys (redb answers at once; PostgreSQL over its pool).

use std::path::Path;
use std::sync::Arc;

use crate::config::{PostgresConfig, StorageConfig};
use crate::error::StorageError;
use crate::postgres::migrate::POSTGRES_SCHEMA_VERSION;
use crate::postgres::store::PgStore;
use crate::redb_store::RedbStore;
use crate::schema::{Row, SCHEMA_VERSION, Table};
use crate::writer::Writer;

/// An open database. Cloning is shallow; the writer holds one clone.
#[derive(Clone)]
pub struct Storage {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Redb(RedbStore),
    Postgres(Arc<PgStore>),
}

/// What the deployment posture shows about storage; never a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoragePosture {
    /// `redb` or `postgres`.
    pub backend: &'static str,
    /// `host:port/database` for PostgreSQL; empty for redb (the data dir is shown
    /// elsewhere).
    pub target: String,
    /// PostgreSQL's `synchronous_commit` was off at open: acknowledged writes could be
    /// lost in a server crash. Always false for redb.
    pub synchronous_commit_off: bool,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("backend", &self.backend_name())
            .finish_non_exhaustive()
    }
}

impl Storage {
    /// Opens (or creates) the redb database in `data_dir`, creates missing tables and
    /// runs migrations up to [`SCHEMA_VERSION`]. Refuses a database written by a newer
    /// daemon.
    pub fn open_redb(data_dir: &Path) -> Result<Self, StorageError> {
        Self::open_redb_with_cache(data_dir, crate::redb_store::DEFAULT_CACHE_BYTES)
    }

    /// [`Self::open_redb`] with redb's page cache bounded to `cache_bytes`.
    pub fn open_redb_with_cache(data_dir: &Path, cache_bytes: usize) -> Result<Self, StorageError> {
        Ok(Self {
            backend: Backend::Redb(RedbStore::open(data_dir, cache_bytes)?),
        })
    }

    /// [`Self::open_redb`], the name the daemon used before PostgreSQL.
    pub fn open(data_dir: &Path) -> Result<Self, StorageError> {
        Self::open_redb(data_dir)
    }

    /// Connects to PostgreSQL (retrying an unreachable server `connect_retries` times),
    /// applies the migrations under an advisory lock and opens the read pool. Errors
    /// name host, port and database and a classified cause, never the password; a
    /// failure leaves nothing open.
    pub async fn open_postgres(config: &PostgresConfig) -> Result<Self, StorageError> {
        Ok(Self {
            backend: Backend::Postgres(Arc::new(PgStore::open(config).await?)),
        })
    }

    /// Checks a PostgreSQL database without changing it (for `palyrad check-config`):
    /// reachable, the user accepted and allowed what the schema needs, and no schema
    /// newer than this build. Returns the schema version found (0: none yet). One
    /// connection attempt, no retries.
    pub async fn probe_postgres(config: &PostgresConfig) -> Result<u64, StorageError> {
        let connector = crate::postgres::connect::Connector::new(config)?;
        crate::postgres::migrate::probe(&connector).await
    }

    /// Opens whichever backend `config` names.
    pub async fn open_with(config: &StorageConfig) -> Result<Self, StorageError> {
        match config {
            StorageConfig::Redb {
                data_dir,
                cache_bytes,
            } => Self::open_redb_with_cache(data_dir, *cache_bytes),
            StorageConfig::Postgres(pg) => Self::open_postgres(pg).await,
        }
    }

    /// `redb` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Redb(_) => "redb",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// The newest schema version this build writes on this backend.
    pub fn supported_schema_version(&self) -> u64 {
        match &self.backend {
            Backend::Redb(_) => SCHEMA_VERSION,
            Backend::Postgres(_) => POSTGRES_SCHEMA_VERSION,
        }
    }

    /// What the posture shows.
    pub fn posture(&self) -> StoragePosture {
        match &self.backend {
            Backend::Redb(_) => StoragePosture {
                backend: "redb",
                target: String::new(),
                synchronous_commit_off: false,
            },
            Backend::Postgres(pg) => StoragePosture {
                backend: "postgres",
                target: pg.describe(),
                synchronous_commit_off: !pg.synchronous_commit(),
            },
        }
    }

    /// Every row of `table`, in key order.
    pub async fn read_table(&self, table: Table) -> Result<Vec<Row>, StorageError> {
        match &self.backend {
            Backend::Redb(db) => db.load(table),
            Backend::Postgres(pg) => pg.load(table).await,
        }
    }

    /// One row of `table`.
    pub async fn read_row(
        &self,
        table: Table,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StorageError> {
        match &self.backend {
            Backend::Redb(db) => db.get(table, key),
            Backend::Postgres(pg) => pg.get(table, key).await,
        }
    }

    /// The rows of `table` under `keys` (one round trip on PostgreSQL), each key with
    /// its value or `None`, in the order asked.
    pub async fn read_rows(
        &self,
        table: Table,
        keys: &[Vec<u8>],
    ) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        match &self.backend {
            Backend::Redb(db) => keys.iter().map(|k| db.get(table, k)).collect(),
            Backend::Postgres(pg) => pg.get_many(table, keys).await,
        }
    }

    /// Up to `limit` rows whose keys start with `prefix`, highest key first, below
    /// `before` when given.
    pub async fn read_prefix_rev(
        &self,
        table: Table,
        prefix: &[u8],
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Row>, StorageError> {
        match &self.backend {
            Backend::Redb(db) => db.scan_prefix_rev(table, prefix, before, limit),
            Backend::Postgres(pg) => pg.scan_prefix_rev(table, prefix, before, limit).await,
        }
    }

    /// Up to `limit` rows in key order, after `after` when given.
    pub async fn read_forward(
        &self,
        table: Table,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Row>, StorageError> {
        match &self.backend {
            Backend::Redb(db) => db.scan_forward(table, after, limit),
            Backend::Postgres(pg) => pg.scan_forward(table, after, limit).await,
        }
    }

    /// Every run row whose record's `status` is one of `statuses` (say `queued` and
    /// `running`), in key order: how a node finds the runs another left going, however
    /// deep in an objective's history they are. PostgreSQL reads them through the
    /// index on `runs.status`; redb, which one node holds, scans the table.
    pub async fn read_runs_with_status(&self, statuses: &[&str]) -> Result<Vec<Row>, StorageError> {
        match &self.backend {
            Backend::Redb(db) => Ok(db
                .load(Table::Runs)?
                .into_iter()
                .filter(|(_, value)| {
                    record_status(value).is_some_and(|status| statuses.contains(&status.as_str()))
                })
                .collect()),
            Backend::Postgres(pg) => pg.runs_with_status(statuses).await,
        }
    }

    /// How many rows `table` holds.
    pub async fn read_count(&self, table: Table) -> Result<u64, StorageError> {
        match &self.backend {
            Backend::Redb(db) => db.count(table),
            Backend::Postgres(pg) => pg.count(table).await,
        }
    }

    /// The stored schema version.
    pub async fn read_schema_version(&self) -> Result<u64, StorageError> {
        match &self.backend {
            Backend::Redb(db) => db.schema_version(),
            Backend::Postgres(pg) => pg.schema_version().await,
        }
    }

    /// Readiness: Ok when the database answers now (always, for redb); otherwise
    /// [`StorageError::Unavailable`], within the connect and statement timeouts.
    pub async fn check(&self) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Redb(_) => Ok(()),
            Backend::Postgres(pg) => pg.check().await,
        }
    }

    /// Starts the single writer. Call once.
    pub fn start_writer(&self) -> Result<Writer, StorageError> {
        match &self.backend {
            Backend::Redb(db) => db.start_writer(),
            Backend::Postgres(pg) => pg.start_writer(),
        }
    }

    /// What other nodes change in the rows nodes keep in memory. The first call starts
    /// listening, so call it from the daemon's runtime. Silent on redb.
    pub fn changes(&self) -> crate::changes::ChangeFeed {
        match &self.backend {
            Backend::Postgres(pg) => pg.changes(),
            Backend::Redb(_) => {
                static SILENT: std::sync::OnceLock<
                    tokio::sync::broadcast::Sender<crate::changes::Change>,
                > = std::sync::OnceLock::new();
                let tx = SILENT.get_or_init(|| tokio::sync::broadcast::channel(1).0);
                crate::changes::ChangeFeed::new(tx.subscribe())
            }
        }
    }

    pub(crate) fn postgres(&self) -> Option<&PgStore> {
        match &self.backend {
            Backend::Postgres(pg) => Some(pg),
            Backend::Redb(_) => None,
        }
    }

    /// Closes the read pool (PostgreSQL); reads fail afterwards. Stop the writer first.
    pub fn close(&self) {
        if let Backend::Postgres(pg) = &self.backend {
            pg.close();
        }
    }
}

/// The `status` field of a stored record (`{"v": .., "r": {"status": ..}}`).
fn record_status(value: &[u8]) -> Option<String> {
    let envelope: serde_json::Value = serde_json::from_slice(value).ok()?;
    envelope
        .get("r")?
        .get("status")?
        .as_str()
        .map(str::to_owned)
}
