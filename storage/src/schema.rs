//! The schema at a glance: every table, the schema version and redb's migrations.
//!
//! PostgreSQL's typed tables for the same [`Table`]s are in `postgres/tables.rs` and
//! its migrations in `postgres/migrations/`.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::StorageError;

/// A stored row: key and value bytes.
pub type Row = (Vec<u8>, Vec<u8>);

/// Version of the layout below. Bump it and add a step to [`migrate`] when a table
/// changes shape.
pub const SCHEMA_VERSION: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SCHEMA_KEY: &str = "schema_version";

/// Every data table. Keys and values are bytes; values are [`crate::record`] envelopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// Console sessions, keyed by the SHA-256 of the session token.
    Sessions,
    /// Browser handoffs, keyed by the SHA-256 of the handoff token.
    Handoffs,
    /// Sealed secrets, keyed by vault ref (`vault://global/...`).
    Vault,
    /// The vault's check value, sealed under the active key.
    VaultMeta,
    /// Auth profiles, keyed by profile id.
    AuthProfiles,
    /// Default profile per provider and scope, keyed by `provider|scope`.
    AuthDefaults,
    /// OAuth sign-in attempts, keyed by attempt id.
    OAuthAttempts,
    /// Agents, keyed by agent id.
    Agents,
    /// Objectives, keyed by objective id.
    Objectives,
    /// Runs, keyed by objective id, a NUL byte and the run's sequence number
    /// (big-endian), so one objective's runs are one ordered range.
    Runs,
    /// The audit log, keyed by the event's Unix milliseconds and a sequence number
    /// (both big-endian), so the log is one ordered range, oldest first.
    Audit,
    /// Operators (named people who sign in), keyed by operator id.
    Operators,
    /// API tokens, keyed by token id; the secret is kept only as its SHA-256.
    ApiTokens,
    /// Notification channels (webhooks), keyed by channel id; the signing secret is
    /// in the vault.
    NotificationChannels,
    /// The outbox of notification events not yet fanned out to channels, keyed by
    /// event id (its hex Unix milliseconds first, so the table is oldest first).
    NotificationEvents,
    /// One delivery of one event to one channel, keyed by `<event id>.<channel id>`.
    NotificationDeliveries,
    /// Tokens used, summed per 15-minute UTC bucket and per agent, objective, profile,
    /// provider and model; keyed by the bucket's start (Unix milliseconds, big-endian)
    /// then those five names, NUL-separated, so a time window is one key range. Rows
    /// only grow, by [`crate::WriteOp::Add`]; run-history pruning never touches them.
    UsageRollup,
}

impl Table {
    /// Every table, so start-up can create them all.
    pub const ALL: [Table; 17] = [
        Table::Sessions,
        Table::Handoffs,
        Table::Vault,
        Table::VaultMeta,
        Table::AuthProfiles,
        Table::AuthDefaults,
        Table::OAuthAttempts,
        Table::Agents,
        Table::Objectives,
        Table::Runs,
        Table::Audit,
        Table::Operators,
        Table::ApiTokens,
        Table::NotificationChannels,
        Table::NotificationEvents,
        Table::NotificationDeliveries,
        Table::UsageRollup,
    ];

    /// The table named `name` (as [`Self::name`] gives it).
    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The table's name, in redb and in PostgreSQL.
    pub fn name(self) -> &'static str {
        match self {
            Table::Sessions => "sessions",
            Table::Handoffs => "handoffs",
            Table::Vault => "vault",
            Table::VaultMeta => "vault_meta",
            Table::AuthProfiles => "auth_profiles",
            Table::AuthDefaults => "auth_defaults",
            Table::OAuthAttempts => "oauth_attempts",
            Table::Agents => "agents",
            Table::Objectives => "objectives",
            Table::Runs => "runs",
            Table::Audit => "audit",
            Table::Operators => "operators",
            Table::ApiTokens => "api_tokens",
            Table::NotificationChannels => "notification_channels",
            Table::NotificationEvents => "notification_events",
            Table::NotificationDeliveries => "notification_deliveries",
            Table::UsageRollup => "usage_rollup",
        }
    }

    pub(crate) fn def(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        TableDefinition::new(self.name())
    }
}

/// Creates missing tables and brings the schema to [`SCHEMA_VERSION`] in one transaction.
pub(crate) fn prepare(db: &Database) -> Result<(), StorageError> {
    let txn = db.begin_write().map_err(StorageError::backend)?;
    {
        let mut meta = txn.open_table(META).map_err(StorageError::backend)?;
        let found = meta
            .get(SCHEMA_KEY)
            .map_err(StorageError::backend)?
            .map(|v| v.value());
        match found {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StorageError::SchemaTooNew {
                    found: v,
                    supported: SCHEMA_VERSION,
                });
            }
            Some(v) => migrate(&txn, v)?,
            None => {}
        }
        meta.insert(SCHEMA_KEY, SCHEMA_VERSION)
            .map_err(StorageError::backend)?;
    }
    for table in Table::ALL {
        txn.open_table(table.def()).map_err(StorageError::backend)?;
    }
    txn.commit().map_err(StorageError::backend)?;
    Ok(())
}

/// The migration hook: upgrades a database at version `from` step by step.
fn migrate(_txn: &redb::WriteTransaction, from: u64) -> Result<(), StorageError> {
    let mut version = from;
    while version < SCHEMA_VERSION {
        // Each arm turns `version` into `version + 1`; version 1 is the first layout.
        #[allow(clippy::match_single_binding)]
        match version {
            _ => {}
        }
        version += 1;
    }
    Ok(())
}

pub(crate) fn stored_version(db: &Database) -> Result<u64, StorageError> {
    let txn = db.begin_read().map_err(StorageError::backend)?;
    let meta = txn.open_table(META).map_err(StorageError::backend)?;
    Ok(meta
        .get(SCHEMA_KEY)
        .map_err(StorageError::backend)?
        .map(|v| v.value())
        .unwrap_or(0))
}
