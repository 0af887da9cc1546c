//! The sessions actor: owns console sessions, their persistence, expiry and eviction.
//!
//! State lives in the actor; a read-only index of live sessions is published behind a
//! lock so request handlers validate a cookie with one hash lookup and no actor hop.
//! The actor is the only writer of that index. Sliding the idle timeout is an atomic
//! store into the live entry; the actor persists advanced `last_seen` times on its
//! periodic tick and at shutdown, so activity never costs a disk write per request.
//! On redb the index is the authority. On a database several nodes share it is a cache
//! of rows with a bounded lifetime, emptied of trust by the change feed, and a miss is a
//! read of the row (`shared.rs`).
//!
//! Layout:
//! - `model.rs`: the API's view, the stored record, the index's entries, the policy
//!   and the checks of what clients send.
//! - `handle.rs`: [`SessionsHandle`], its start and the checks on the index.
//! - `actor.rs`: the actor's state and load, create, revoke, the tick and the flush.
//! - `shared.rs`: the shared database: rows read through, the change feed, conditional
//!   flushes and deletions.
//!
//! Inside the crate, import from the defining file, not through the re-exports below.

mod actor;
pub(crate) mod handle;
pub(crate) mod model;
mod shared;

pub use handle::SessionsHandle;
pub use model::{
    Authenticated, ConsoleSession, IssuedSession, OPERATOR_PREFIX, ROOT_PRINCIPAL, SessionCheck,
    SessionGrant, SessionPolicy, SessionView, validate_device_id, validate_principal,
};
