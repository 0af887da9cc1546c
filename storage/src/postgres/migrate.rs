//! PostgreSQL's versioned migrations, applied at open in one transaction under an
//! advisory lock, so two nodes starting at once apply each step exactly once.

use tokio_postgres::Client;

use crate::error::StorageError;
use crate::postgres::connect::{Connector, classify_setup};

/// Every migration, in order; version `i + 1` is `MIGRATIONS[i]`.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_cluster.sql"),
    include_str!("migrations/0003_operators.sql"),
    include_str!("migrations/0004_notifications.sql"),
    include_str!("migrations/0005_usage.sql"),
];

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

/// What `palyrad check-config` learns of a database without changing it: one connection
/// attempt, the schema version it holds (refused when newer than this build), and
/// whether the user may create the schema's tables when there are none yet, or read
/// and write them when there are.
pub(crate) async fn probe(connector: &Connector) -> Result<u64, StorageError> {
    let client = connector.connect().await?;
    let setup = |e: tokio_postgres::Error| StorageError::Connect {
        target: connector.config.describe(),
        failure: classify_setup(&e),
        detail: connector.detail(&e),
    };
    let has_schema: bool = client
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
        .await
        .map_err(setup)?
        .get(0);
    let privileges_missing = |what: &str| StorageError::Connect {
        target: connector.config.describe(),
        failure: crate::error::ConnectFailure::MissingPrivileges,
        detail: format!("the user may not {what}"),
    };
    if !has_schema {
        let may_create: bool = client
            .query_one(
                "SELECT has_schema_privilege(current_user, current_schema(), 'CREATE')",
                &[],
            )
            .await
            .map_err(setup)?
            .get(0);
        if !may_create {
            return Err(privileges_missing("create the schema's tables"));
        }
        return Ok(0);
    }
    let found = stored_version(&client).await.map_err(setup)?;
    if found > POSTGRES_SCHEMA_VERSION {
        return Err(StorageError::SchemaTooNew {
            found,
            supported: POSTGRES_SCHEMA_VERSION,
        });
    }
    let may_write: bool = client
        .query_one(
            "SELECT bool_and(has_table_privilege(current_user, c.oid, 'SELECT, INSERT, UPDATE, DELETE'))
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relkind = 'r'",
            &[],
        )
        .await
        .map_err(setup)?
        .get::<_, Option<bool>>(0)
        .unwrap_or(true);
    if !may_write {
        return Err(privileges_missing(
            "read and write every table of the schema",
        ));
    }
    Ok(found)
}
