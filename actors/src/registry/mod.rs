//! The registry: auth profiles, the default profile per provider and scope, and the
//! vault that holds their secrets, owned by one actor behind [`RegistryHandle`].
//!
//! Layout:
//! - `model.rs`: the records (profiles, scopes, credentials, defaults), the answers,
//!   and the checks of every field a client sends.
//! - `handle.rs`: [`RegistryHandle`] and its start.
//! - `actor.rs`: the actor's state, loading, commit and reload, and the handlers that
//!   are not OAuth.
//! - `attempts.rs`: sign-in attempts as stored.
//! - `rows.rs`: what the registry knows of each shared row (the bytes last seen of
//!   each profile, its writes in flight); `sync.rs`: following other nodes (the
//!   change feed, rereads, resyncs) and the commit of every write.
//! - `cooldown.rs`: provider-call cooldowns (the ladders, whether a profile is
//!   usable now, the note a run sends after each call).
//! - `resolve.rs`: which profile an agent uses for a provider, skipping unusable ones.
//! - `refresh_claim.rs`: a refresh token redeemed by one node at a time, claimed and
//!   committed against the profile's token generation.
//! - `token_check.rs`: the check of a new access token at sign-in (refreshed once
//!   when refused).
//! - [`oauth_flow`]: OAuth sign-in; [`oauth_device`]: device sign-in (RFC 8628);
//!   `oauth_refresh.rs`: the durable side of refreshes; [`oauth_client_secret`]: a
//!   provider's client secret, sealed in the vault.
//!
//! Inside the crate, import from the defining file (`registry::handle`,
//! `registry::model`), not through the re-exports below, so no chain of imports
//! leads back into this folder.

mod actor;
mod attempts;
pub(crate) mod cooldown;
pub(crate) mod handle;
pub(crate) mod model;
pub mod oauth_client_secret;
pub mod oauth_device;
pub mod oauth_flow;
pub(crate) mod oauth_refresh;
pub(crate) mod refresh_claim;
mod resolve;
mod rows;
mod sealing;
mod sync;
mod token_check;

pub use crate::ids::{validate_agent_id, validate_profile_id};
pub use cooldown::CallNote;
pub use handle::RegistryHandle;
pub(crate) use model::generated_profile_id;
pub use model::{
    AuthCredential, AuthHealthReport, AuthProfile, AuthProfileRecord, AuthProfileScope,
    BearerCredential, Cooldown, CooldownReason, DEFAULT_PAGE, HealthState, NewCredential,
    NewProfile, ProfileFilter, ProfileHealth, ProfilePage, RefreshClaim, RefreshState,
    ResolveAnswer, ResolveReason, ResolveSkip, RotationReport, SkipReason, VaultStatus,
    validate_provider,
};
