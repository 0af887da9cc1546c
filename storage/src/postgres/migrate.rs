//! PostgreSQL's versioned migrations, applied at open in one transaction under an
//! advisory lock, so two nodes starting at once apply each step exactly once.

use tokio_postgres::Client;

use crate::error::StorageError;
use crate::postgres::connect::{Connector, classify_setup};

/// Every migration, in order; version `i + 1` is `MIGRATIONS[i]`.
const MIGRATIONS: &[&str] = &[include_str!("migrations/0001_init.sql")];

/// The newest PostgreSQL schema this build knows.
pub const POSTGRES_SCHEMA_VERSION: u64 = MIGRATIONS.len() as u64;

/// The advisory lock every node takes while it migrates ("palyra" in ASCII).
const MIGRATION_LOCK: i64 = 0x7061_6c79_7261;

/// Brings the schema to [`POSTGRES_SCHEMA_VERSION`]; refuses a newer one. Returns the
/// version found before migrating.
pub(crate) async fn migrate(
    client: &mut Client,
    connector: &Connector,
) -> Result<u64, StorageError> {
    let setup = |e: tokio_postgres::Error| StorageError::Connect {
        target: connector.config.describe(),
        failure: classify_setup(&e),
        detail: connector.detail(&e),
    };
    let txn = client.transaction().await.map_err(setup)?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(setup)?;
    txn.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version bigint PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(setup)?;
    let found: i64 = txn
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
        .await
        .map_err(setup)?
        .get(0);
    let found = u64::try_from(found).unwrap_or(0);
    if found > POSTGRES_SCHEMA_VERSION {
        return Err(StorageError::SchemaTooNew {
            found,
            supported: POSTGRES_SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = i as i64 + 1;
        txn.batch_execute(sql).await.map_err(setup)?;
        txn.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(setup)?;
        tracing::info!(version, "applied PostgreSQL migration");
    }
    txn.commit().await.map_err(setup)?;
    Ok(found)
}

/// The stored schema version.
pub(crate) async fn stored_version(client: &Client) -> Result<u64, tokio_postgres::Error> {
    let v: i64 = client
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
        .await?
        .get(0);
    Ok(u64::try_from(v).unwrap_or(0))
}
