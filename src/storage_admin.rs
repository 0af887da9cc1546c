//! The storage commands of `palyrad`: `storage copy` between a redb data dir and a
//! PostgreSQL database (either way), and the database check of `check-config`.

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use palyra_storage::{
    CopyReport, Password, PostgresConfig, SslMode, Storage, StorageConfig, StorageError,
};

use crate::settings::{Settings, StorageBackend};

/// One side of a copy: a redb data dir (a path) or a PostgreSQL URL.
#[derive(Debug)]
pub enum Endpoint {
    Redb(PathBuf),
    Postgres(PostgresConfig),
}

impl Endpoint {
    /// `postgres://...` (or `postgresql://`) is a database, anything else a data dir.
    /// `password` (from a file) wins over one in the URL. Errors never repeat the URL.
    pub fn parse(text: &str, password: Option<Password>) -> Result<Self, String> {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            let mut config = PostgresConfig::from_url(text, password).map_err(|e| e.to_string())?;
            if !text.contains("sslmode=") && !crate::settings::is_loopback_host(&config.host) {
                config.ssl_mode = SslMode::VerifyFull;
            }
            config.connect_retries = 0;
            Ok(Endpoint::Postgres(config))
        } else {
            Ok(Endpoint::Redb(PathBuf::from(text)))
        }
    }

    /// What logs and errors may name: the data dir, or host, port and database.
    pub fn describe(&self) -> String {
        match self {
            Endpoint::Redb(dir) => format!("redb in {}", dir.display()),
            Endpoint::Postgres(config) => format!("PostgreSQL {}", config.describe()),
        }
    }

    async fn open(&self, create: bool) -> Result<Storage, String> {
        match self {
            Endpoint::Redb(dir) => {
                let file = dir.join(palyra_storage::DB_FILE);
                if !create && !file.exists() {
                    return Err(format!(
                        "{} holds no database ({})",
                        dir.display(),
                        file.display()
                    ));
                }
                if create {
                    DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(dir)
                        .map_err(|e| format!("{}: {e}", dir.display()))?;
                }
                let storage = Storage::open_redb(dir).map_err(|e| match e {
                    // redb locks its file: the daemon is running on it.
                    StorageError::Backend(m)
                        if m.contains("lock") || m.contains("already open") =>
                    {
                        format!(
                            "{}: the database is in use (stop palyrad first)",
                            dir.display()
                        )
                    }
                    other => format!("{}: {other}", dir.display()),
                })?;
                restrict(&file)?;
                Ok(storage)
            }
            Endpoint::Postgres(config) => Storage::open_postgres(config)
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

/// The database holds session records: owner-only, as the daemon keeps it.
fn restrict(file: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", file.display()))
}

/// Copies every table from `from` to `to` and verifies the row counts. Refuses a
/// target that holds rows unless `overwrite`. The vault key is not part of it: it
/// stays in the data dir (or `PALYRA_VAULT_KEY`), and the daemon on the target needs
/// the same key to open the copied secrets.
pub async fn copy(from: &Endpoint, to: &Endpoint, overwrite: bool) -> Result<CopyReport, String> {
    let source = from.open(false).await?;
    let target = to.open(true).await?;
    let result = palyra_storage::copy(&source, &target, overwrite)
        .await
        .map_err(|e| e.to_string());
    source.close();
    target.close();
    result
}

/// `check-config`'s look at the database: PostgreSQL is reached (once, without the
/// start's retries) and checked without being changed; redb needs nothing beyond the
/// data dir, which the daemon creates.
pub async fn check_database(settings: &Settings) -> Vec<String> {
    if settings.storage.backend != StorageBackend::Postgres {
        return Vec::new();
    }
    // The data dir only matters to redb; any path does here.
    let config = match settings.storage.storage_config(Path::new(".")) {
        Ok(StorageConfig::Postgres(config)) => config,
        Ok(StorageConfig::Redb { .. }) => return Vec::new(),
        Err(e) => return vec![format!("storage: {e}")],
    };
    match Storage::probe_postgres(&config).await {
        Ok(_) => Vec::new(),
        Err(e) => vec![format!("storage: {e}")],
    }
}
