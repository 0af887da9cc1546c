//! Durable state for palyrad: redb or PostgreSQL behind one interface, the schema,
//! and the single writer.
//!
//! Layout:
//! - [`storage`]: [`Storage`], the open database of either backend, shared for reads
//!   (synchronous reads for redb, `read_*` async reads for both), and its posture.
//! - [`writer`]: [`Writer`], the handle to the one writer; requests are applied in
//!   submission order and group-committed, and acknowledged once durable.
//! - [`op`]: [`WriteOp`] (put, delete, insert-if-absent, compare-and-set, take) and
//!   [`WriteOutcome`], what each request reports.
//! - [`schema`]: every table the daemon keeps, the schema version and redb's migrations.
//! - [`record`]: the versioned serde envelope every stored value is wrapped in.
//! - [`config`]: [`StorageConfig`] and [`PostgresConfig`] (the password redacted).
//! - [`copy`](mod@copy): copying every table between two databases, verified.
//! - `redb_store.rs`: the redb backend: the file, its reads, the writer thread.
//! - `postgres/`: the PostgreSQL backend: connection and TLS, versioned SQL migrations,
//!   the typed columns of each table, the read pool and the ordered writer.
//! - [`error`](mod@error): [`StorageError`].

pub mod changes;
pub mod cluster;
pub mod config;
pub mod copy;
pub mod error;
pub mod op;
mod postgres;
pub mod record;
mod redb_store;
pub mod schema;
pub mod storage;
pub mod writer;

pub use changes::{Change, ChangeFeed};
pub use cluster::{ClusterView, LeaseRow, NodeRow};
pub use config::{Password, PostgresConfig, SslMode, StorageConfig};
pub use copy::{CopyReport, copy};
pub use error::{ConnectFailure, StorageError};
pub use op::{Fence, WriteOp, WriteOutcome};
pub use postgres::migrate::POSTGRES_SCHEMA_VERSION;
pub use record::{StoredRecord, decode_record, encode_record};
pub use redb_store::DB_FILE;
pub use schema::{Row, SCHEMA_VERSION, Table};
pub use storage::{Storage, StoragePosture};
pub use writer::{Writer, WriterStats};

#[cfg(test)]
mod tests {
    use crate::record::{StoredRecord, decode_record, encode_record};
    use crate::redb_store::DB_FILE;
    use crate::{SCHEMA_VERSION, Storage, StorageError, Table, WriteOp};

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
            .write(vec![WriteOp::delete(
                Table::Sessions,
                7u32.to_be_bytes().to_vec(),
            )])
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
        let rows = reopened.read_table(Table::Sessions).await.unwrap();
        assert_eq!(rows.len(), 199);
        assert_eq!(
            reopened
                .read_row(Table::Sessions, &3u32.to_be_bytes())
                .await
                .unwrap(),
            Some(b"value-3".to_vec())
        );
        assert_eq!(
            reopened
                .read_row(Table::Sessions, &7u32.to_be_bytes())
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            reopened.read_schema_version().await.unwrap(),
            SCHEMA_VERSION
        );
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
