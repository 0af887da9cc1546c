//! The `[storage]` settings: which backend, and how to reach PostgreSQL.

use std::path::{Path, PathBuf};
use std::time::Duration;

use palyra_actors::SecretString;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    /// Where the redb database, the admin token file and the vault key file live.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// `redb` (embedded, the default) or `postgres`.
    pub backend: StorageBackend,
    /// PostgreSQL: `postgres://user[:password]@host[:port]/database`; never logged.
    #[serde(default)]
    pub url: Option<SecretString>,
    /// PostgreSQL: a file holding the password (wins over one in the URL).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PostgreSQL: connections kept for reads (the writer has its own).
    pub pool_size: usize,
    /// PostgreSQL: `disable`, `require` or `verify-full`; unset: `disable` when the
    /// host is a loopback address, `verify-full` otherwise.
    #[serde(default)]
    pub sslmode: Option<String>,
    /// PostgreSQL: CA certificates (PEM) that `verify-full` trusts.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PostgreSQL: further connection attempts at start before giving up.
    pub connect_retries: u32,
    /// PostgreSQL: bound on one connection attempt.
    pub connect_timeout_s: u64,
    /// PostgreSQL: bound on one statement.
    pub statement_timeout_s: u64,
    /// redb: the page cache (reads and the write buffer together), in MiB.
    pub cache_mib: usize,
}

/// `localhost` or a loopback address.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Which database holds the daemon's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    Redb,
    Postgres,
}

impl StorageSettings {
    /// Where the daemon keeps its state: the redb file in `data_dir`, or the
    /// PostgreSQL database of `url` (the password read from `password_file` here).
    /// Errors never repeat the URL, which may hold the password.
    pub fn storage_config(&self, data_dir: &Path) -> Result<palyra_storage::StorageConfig, String> {
        use palyra_storage::{Password, PostgresConfig, SslMode, StorageConfig};
        let url = match (self.backend, &self.url) {
            (StorageBackend::Redb, _) => {
                return Ok(StorageConfig::Redb {
                    data_dir: data_dir.to_owned(),
                    cache_bytes: self.cache_mib.saturating_mul(1024 * 1024),
                });
            }
            (StorageBackend::Postgres, Some(url)) => url,
            (StorageBackend::Postgres, None) => return Err("storage.url is not set".into()),
        };
        let password = match &self.password_file {
            Some(path) => {
                let contents = std::fs::read_to_string(path)
                    .map_err(|e| format!("storage.password_file {}: {e}", path.display()))?;
                Some(Password::from_file_contents(
                    contents.lines().next().unwrap_or_default(),
                ))
            }
            None => None,
        };
        let mut config =
            PostgresConfig::from_url(url.expose(), password).map_err(|e| e.to_string())?;
        config.pool_size = self.pool_size;
        config.ssl_mode = match self.sslmode.as_deref() {
            Some(mode) => SslMode::parse(mode).map_err(|e| e.to_string())?,
            None if is_loopback_host(&config.host) => SslMode::Disable,
            None => SslMode::VerifyFull,
        };
        if self.ca_file.is_some() {
            config.ca_file = self.ca_file.clone();
        }
        config.connect_retries = self.connect_retries;
        config.connect_timeout = Duration::from_secs(self.connect_timeout_s);
        config.statement_timeout = Duration::from_secs(self.statement_timeout_s);
        Ok(StorageConfig::Postgres(config))
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        match self.backend {
            StorageBackend::Redb => {
                if self.url.is_some() || self.password_file.is_some() {
                    return Err(
                        "storage.url and storage.password_file need storage.backend = \"postgres\""
                            .into(),
                    );
                }
            }
            StorageBackend::Postgres => {
                let Some(url) = &self.url else {
                    return Err(
                        "storage.backend = \"postgres\" needs storage.url (or PALYRA_STORAGE__URL)"
                            .into(),
                    );
                };
                let url = url.expose();
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    // Never repeat the URL: it may hold the password.
                    return Err("storage.url must start with postgres://".into());
                }
            }
        }
        if !(1..=256).contains(&self.pool_size) {
            return Err("storage.pool_size must be between 1 and 256".into());
        }
        if let Some(mode) = &self.sslmode
            && !matches!(mode.as_str(), "disable" | "require" | "verify-full")
        {
            return Err("storage.sslmode must be disable, require or verify-full".into());
        }
        if !(4..=65536).contains(&self.cache_mib) {
            return Err("storage.cache_mib must be between 4 and 65536".into());
        }
        if self.connect_retries > 1000 {
            return Err("storage.connect_retries must be at most 1000".into());
        }
        for (name, value) in [
            ("storage.connect_timeout_s", self.connect_timeout_s),
            ("storage.statement_timeout_s", self.statement_timeout_s),
        ] {
            if !(1..=600).contains(&value) {
                return Err(format!("{name} must be between 1 and 600"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::Settings;

    #[test]
    fn the_redb_cache_is_bounded_by_cache_mib() {
        let mut settings = Settings::defaults();
        let dir = std::path::Path::new("/var/lib/palyra");
        match settings.storage.storage_config(dir) {
            Ok(palyra_storage::StorageConfig::Redb { cache_bytes, .. }) => {
                assert_eq!(cache_bytes, 32 * 1024 * 1024);
            }
            other => panic!("{other:?}"),
        }
        settings.storage.cache_mib = 2;
        let refused = settings.storage.validate().unwrap_err();
        assert!(refused.contains("storage.cache_mib"), "{refused}");
    }
}
