//! The storage crate's error type.

/// What can go wrong below the actors. `Clone` because one failed group commit is
/// reported to every write that was part of it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// redb or the file system failed; the message is redb's (it never holds record data).
    #[error("storage failure: {0}")]
    Backend(String),
    /// The database was written by a newer palyrad.
    #[error("database schema version {found} is newer than this palyrad supports ({supported})")]
    SchemaTooNew { found: u64, supported: u64 },
    /// A stored record could not be decoded.
    #[error("corrupt record in table {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
    /// The writer has stopped (daemon shutting down).
    #[error("the storage writer has stopped")]
    WriterStopped,
}

impl StorageError {
    pub(crate) fn backend(e: impl std::fmt::Display) -> Self {
        Self::Backend(e.to_string())
    }
}
