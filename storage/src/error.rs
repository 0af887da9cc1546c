//! The storage crate's error type.

/// Why a connection to the database server could not be made or used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// No answer: refused, unresolvable, timed out, or the server is starting or stopping.
    Unreachable,
    /// The server refused the user name or password.
    AuthenticationFailed,
    /// Connected, but the user may not create or use the schema's tables.
    MissingPrivileges,
    /// The TLS handshake failed or the server does not offer TLS.
    Tls,
    /// The named database does not exist.
    UnknownDatabase,
    /// Anything else the server answered.
    Other,
}

impl std::fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConnectFailure::Unreachable => "unreachable",
            ConnectFailure::AuthenticationFailed => "authentication failed",
            ConnectFailure::MissingPrivileges => "missing privileges",
            ConnectFailure::Tls => "TLS failure",
            ConnectFailure::UnknownDatabase => "unknown database",
            ConnectFailure::Other => "connection failed",
        })
    }
}

/// What can go wrong below the actors. `Clone` because one failed group commit is
/// reported to every write that was part of it.
///
/// No variant ever carries a password: database targets are `host:port/database`
/// (see [`crate::config::PostgresConfig::describe`]) and server messages are scrubbed
/// of the password before they are kept.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// redb, the file system or the database server failed; the message is theirs
    /// (it never holds record data).
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
    /// The database server cannot be reached right now (connection lost, or not yet
    /// re-established). Nothing of the request was applied, or its commit's outcome is
    /// unknown; the caller may retry later.
    #[error("storage unavailable ({target}): {reason}")]
    Unavailable { target: String, reason: String },
    /// Opening the database failed: the server is unreachable, refused us, or lacks
    /// what the schema needs.
    #[error("cannot use the database at {target}: {failure}: {detail}")]
    Connect {
        target: String,
        failure: ConnectFailure,
        detail: String,
    },
    /// The storage settings are invalid (a bad URL, an unreadable CA file).
    #[error("invalid storage configuration: {0}")]
    Config(String),
    /// A conditional op (insert-if-absent, compare-and-set, take) of a request sent
    /// through [`crate::writer::Writer::submit`] did not hold; nothing of that request was
    /// written. `submit_checked` reports this as an outcome instead.
    #[error("conditional write refused at op {op}")]
    Refused { op: usize },
    /// `copy` found rows in the target and was not told to overwrite them.
    #[error("the target database is not empty: table {table} holds {rows} rows")]
    TargetNotEmpty { table: &'static str, rows: u64 },
    /// After a copy the row counts of a table differ.
    #[error(
        "copy of table {table} did not verify: {source_rows} rows in the source, {target_rows} in the target"
    )]
    CopyMismatch {
        table: &'static str,
        source_rows: u64,
        target_rows: u64,
    },
}

impl StorageError {
    pub(crate) fn backend(e: impl std::fmt::Display) -> Self {
        Self::Backend(e.to_string())
    }

    /// True when the database could not be reached; readiness and retries use it.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StorageError::Unavailable { .. })
            || matches!(
                self,
                StorageError::Connect {
                    failure: ConnectFailure::Unreachable,
                    ..
                }
            )
    }
}
