//! The error type every actor handle returns.

use palyra_storage::StorageError;

/// What an actor can answer instead of a result. The HTTP layer maps each variant to a
/// status in one table.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ActorError {
    /// Durable storage failed; nothing was acknowledged.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A field of the request is not acceptable.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// No valid session (unknown, expired or revoked).
    #[error("no valid session")]
    NoSession,
    /// The handoff token is unknown, expired or already used.
    #[error("the handoff token is unknown, expired or already used")]
    HandoffRejected,
    /// The actor has stopped (daemon shutting down).
    #[error("the {0} actor is not running")]
    Stopped(&'static str),
}

impl ActorError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }
}
