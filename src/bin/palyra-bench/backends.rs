//! The storage backend each in-process daemon runs on: redb in its data dir, or a fresh
//! database on the one PostgreSQL server the bench starts for the run (the test kit's
//! throwaway server, on this machine); and the pairing of a scenario's two rows.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use clap::ValueEnum;
use palyra::settings::{Settings, StorageBackend};
use palyra::testkit::postgres::{OwnServer, with_database};
use palyra_actors::SecretString;
use serde::Serialize;

use crate::driver::BoxError;

/// `--backend`: which backends each chosen scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Redb,
    Postgres,
    /// redb, then PostgreSQL, one row each.
    Both,
}

impl BackendArg {
    pub fn backends(self) -> &'static [Backend] {
        match self {
            BackendArg::Redb => &[Backend::Redb],
            BackendArg::Postgres => &[Backend::Postgres],
            BackendArg::Both => &[Backend::Redb, Backend::Postgres],
        }
    }

    pub fn uses_postgres(self) -> bool {
        self != BackendArg::Redb
    }
}

/// The backend of one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Redb,
    Postgres,
}

impl Backend {
    /// What a row's name gets: nothing on redb, so earlier runs' names keep their
    /// meaning.
    pub fn suffix(self) -> &'static str {
        match self {
            Backend::Redb => "",
            Backend::Postgres => "-pg",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Backend::Redb => "redb",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// The PostgreSQL server of a run: started once, a fresh database per daemon.
#[derive(Debug)]
pub struct PgServer {
    server: OwnServer,
    next: AtomicU32,
    /// What `SHOW` says of the settings that weigh on durable writes.
    pub settings: String,
}

/// The settings the report states, in this order.
const SHOWN: [&str; 8] = [
    "server_version",
    "fsync",
    "synchronous_commit",
    "wal_sync_method",
    "full_page_writes",
    "shared_buffers",
    "max_connections",
    "data_directory",
];

impl PgServer {
    /// initdb and start (a few seconds), off the async workers; the test kit panics
    /// on failure, which is turned into an error here.
    pub async fn start() -> Result<Self, BoxError> {
        let server = tokio::task::spawn_blocking(OwnServer::start)
            .await
            .map_err(|_| "cannot start PostgreSQL with scripts/postgres (see above)")?;
        let columns: Vec<String> = SHOWN
            .iter()
            .map(|name| format!("current_setting('{name}')"))
            .collect();
        let values = psql(&server.url, &format!("SELECT {}", columns.join(", ")))?;
        let settings = SHOWN
            .iter()
            .zip(values.trim().split('|'))
            .map(|(name, value)| format!("{name} {value}"))
            .collect::<Vec<_>>()
            .join(", ");
        Ok(Self {
            server,
            next: AtomicU32::new(1),
            settings,
        })
    }

    /// A new empty database and a guard that drops it, so a finished scenario's tables
    /// (and their autovacuum) do not weigh on the next scenario.
    pub fn fresh_database(&self) -> Result<PgDatabase, BoxError> {
        let name = format!("bench_{}", self.next.fetch_add(1, Ordering::Relaxed));
        psql(&self.server.url, &format!("CREATE DATABASE {name}"))?;
        Ok(PgDatabase {
            server_url: self.server.url.clone(),
            url: with_database(&self.server.url, &name),
            name,
        })
    }
}

/// One scenario's database on the run's server; dropped with `DROP DATABASE` when
/// the guard goes.
#[derive(Debug)]
pub struct PgDatabase {
    server_url: String,
    url: String,
    name: String,
}

impl PgDatabase {
    /// The database's URL (a trusted loopback user, no password): what `cluster`'s
    /// child nodes get in their environment.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Points the daemon's storage at this database.
    pub fn configure(&self, settings: &mut Settings) {
        settings.storage.backend = StorageBackend::Postgres;
        settings.storage.url = Some(SecretString::new(self.url.clone()));
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = psql(&self.server_url, &sql) {
            eprintln!("  {e}");
        }
    }
}

/// One SQL statement with psql; its unaligned, tuples-only output. The URL names a
/// trusted loopback user with no password, and is never printed.
fn psql(url: &str, sql: &str) -> Result<String, BoxError> {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql])
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if !out.status.success() {
        return Err(format!("psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
