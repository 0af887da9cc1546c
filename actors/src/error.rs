//! The error type every actor handle returns.

use palyra_storage::StorageError;

use crate::browser::error::BrowserError;
use crate::provider::KeyCheckError;
use crate::vault::VaultError;

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
    /// No such thing.
    #[error("no {what} with id {id:?}")]
    NotFound { what: &'static str, id: String },
    /// The provider did not accept an API key, or could not be asked.
    #[error(transparent)]
    KeyCheck(#[from] KeyCheckError),
    /// The vault refused (wrong key, unreadable secret, rotation not possible).
    #[error(transparent)]
    Vault(VaultError),
    /// An OAuth callback that cannot complete a sign-in (unknown or used state, ...).
    #[error("{0}")]
    SignIn(String),
    /// The refresh was not possible (not an OAuth profile, or it needs a new sign-in).
    #[error("{0}")]
    RefreshRefused(String),
    /// The request conflicts with the current state (an illegal transition, a
    /// referenced agent, a run going).
    #[error("{0}")]
    Conflict(String),
    /// A browser session could not do what was asked.
    #[error(transparent)]
    Browser(#[from] BrowserError),
    /// The actor has stopped (daemon shutting down).
    #[error("the {0} actor is not running")]
    Stopped(&'static str),
}

impl ActorError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }
}

impl From<VaultError> for ActorError {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::Storage(s) => ActorError::Storage(s),
            other => ActorError::Vault(other),
        }
    }
}

/// Maps a failed send to an actor (its mailbox is closed: the daemon is stopping), or
/// a lost answer or task of one, to [`ActorError::Stopped`] naming the actor; every
/// handle uses it with `map_err`.
pub(crate) fn stopped<E>(actor: &'static str) -> impl Fn(E) -> ActorError {
    move |_| ActorError::Stopped(actor)
}
