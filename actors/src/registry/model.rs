//! The registry's records: auth profiles, their scopes and credentials, the defaults
//! per provider and scope, the answers the registry gives, and the checks of every
//! field a client sends.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use palyra_storage::{StoredRecord, Table};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::error::ActorError;
use crate::ids::{valid_id, validate_agent_id};
use crate::secret::SecretString;
use crate::vault::VaultKeySource;

/// Where a profile applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthProfileScope {
    /// Every agent.
    Global,
    /// One agent; overrides global profiles for it.
    Agent {
        #[schema(pattern = r"^[a-z0-9._-]{1,128}$")]
        agent_id: String,
    },
}

impl AuthProfileScope {
    fn key(&self) -> String {
        match self {
            AuthProfileScope::Global => "global".to_owned(),
            AuthProfileScope::Agent { agent_id } => format!("agent:{agent_id}"),
        }
    }
}

/// Progress of background refreshes of an OAuth credential.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RefreshState {
    pub failure_count: u32,
    /// Sanitized: never holds a token.
    pub last_error: Option<String>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// A permanent failure: the operator must sign in again.
    pub needs_reauth: bool,
    pub rate_limited_until: Option<DateTime<Utc>>,
    pub cooling_down_until: Option<DateTime<Utc>>,
    /// Grows by one with every stored token set (a refresh, a new sign-in): the
    /// version a refresh claims and commits against, on whichever node.
    #[serde(default)]
    pub generation: u64,
    /// The node redeeming the refresh token now. Written (conditionally) before the
    /// token endpoint is called and cleared when the outcome is stored, so nodes take
    /// turns; a claim past its `until_ms` may be taken over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<RefreshClaim>,
}

/// Who redeems a profile's refresh token now, and until when the claim holds: longer
/// than the refresh's own deadline, so a live claimer never loses it mid-call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RefreshClaim {
    pub node_id: String,
    pub until_ms: i64,
}

/// A credential as stored: vault refs and metadata, never the secret.
// The OAuth variant carries the refresh state (claim included); records are few and
// live in one map, so boxing it would buy nothing but indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuthCredential {
    ApiKey {
        api_key_vault_ref: String,
        /// The last 4 characters of a key of 16 or more; empty for shorter keys.
        hint: String,
        /// When the provider last answered 401 to this key: it needs replacing.
        #[serde(default)]
        rejected_at: Option<DateTime<Utc>>,
    },
    Oauth {
        access_token_vault_ref: String,
        refresh_token_vault_ref: String,
        token_endpoint: String,
        client_id: String,
        scopes: Vec<String>,
        expires_at: Option<DateTime<Utc>>,
        refresh_state: RefreshState,
        /// False when the provider issued no refresh token: the access token is used
        /// until it expires, nothing refreshes it, and the operator signs in again.
        #[serde(default = "refreshable_by_default")]
        refreshable: bool,
    },
}

/// Profiles stored before `refreshable` existed all had a refresh token.
fn refreshable_by_default() -> bool {
    true
}

impl AuthCredential {
    pub(crate) fn vault_refs(&self) -> Vec<&str> {
        match self {
            AuthCredential::ApiKey {
                api_key_vault_ref, ..
            } => vec![api_key_vault_ref],
            AuthCredential::Oauth {
                access_token_vault_ref,
                refresh_token_vault_ref,
                refreshable,
                ..
            } => {
                if *refreshable {
                    vec![access_token_vault_ref, refresh_token_vault_ref]
                } else {
                    vec![access_token_vault_ref]
                }
            }
        }
    }
}

/// An auth profile as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuthProfileRecord {
    pub profile_id: String,
    /// `openai`, `anthropic` or `custom:<name>`.
    pub provider: String,
    pub profile_name: String,
    pub scope: AuthProfileScope,
    pub credential: AuthCredential,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set by a run's failed call (rate limit, outage, billing): resolution and
    /// failover skip the profile until `until`; the next success clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Cooldown>,
}

/// Why a profile cools down after a provider call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CooldownReason {
    /// 429: until Retry-After, or 30 s, 1 min, 5 min without one.
    RateLimited,
    /// 5xx, 529, network, timeout: 30 s, 1 min, 5 min.
    Unavailable,
    /// 402 or a quota error: 5 h doubling to 24 h.
    Billing,
}

/// A profile's cooldown, persisted in its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Cooldown {
    pub reason: CooldownReason,
    pub until: DateTime<Utc>,
    /// Failures of this kind in a row, each after the previous cooldown ended: the
    /// step of the ladder (1 is the first).
    pub step: u32,
    /// When the failure that set it happened.
    pub since: DateTime<Utc>,
    /// What the provider answered; a sentence, never a secret.
    pub last_error: String,
}

impl StoredRecord for AuthProfileRecord {
    const TABLE: Table = Table::AuthProfiles;
    const VERSION: u32 = 1;
}

/// A profile as the API shows it: the record and whether it is its scope's default.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuthProfile {
    #[serde(flatten)]
    pub record: AuthProfileRecord,
    /// The default for its provider and scope.
    pub is_default: bool,
}

/// A new credential, as it arrives once. `Serialize` exists for the typed client that
/// sends it; no response type contains it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum NewCredential {
    ApiKey {
        /// The API key; stored only sealed in the vault and never returned.
        #[schema(value_type = String, min_length = 1, max_length = 4096, pattern = r"^[\x21-\x7e]+$")]
        #[serde(serialize_with = "crate::secret::serialize_exposed")]
        api_key: SecretString,
    },
}

/// A request to create or replace a profile.
#[derive(Debug, Clone)]
pub struct NewProfile {
    pub profile_id: Option<String>,
    pub provider: String,
    pub profile_name: String,
    pub scope: AuthProfileScope,
    pub credential: NewCredential,
    pub set_default: bool,
    pub validate: bool,
}

/// Filters of the profile list.
#[derive(Debug, Clone, Default)]
pub struct ProfileFilter {
    pub provider: Option<String>,
    /// `global` or `agent`.
    pub scope_kind: Option<String>,
    pub agent_id: Option<String>,
}

/// One page of profiles.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProfilePage {
    pub items: Vec<AuthProfile>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<String>,
}

/// Health of one credential.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    Static,
    Ok,
    Expiring,
    Expired,
    Missing,
    NeedsReauth,
    RateLimited,
    CoolingDown,
}

impl HealthState {
    pub const ALL: [HealthState; 8] = [
        HealthState::Static,
        HealthState::Ok,
        HealthState::Expiring,
        HealthState::Expired,
        HealthState::Missing,
        HealthState::NeedsReauth,
        HealthState::RateLimited,
        HealthState::CoolingDown,
    ];
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProfileHealth {
    pub profile_id: String,
    pub provider: String,
    pub scope: AuthProfileScope,
    pub state: HealthState,
    /// End of a rate limit or cool-down.
    pub until: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub refresh_state: Option<RefreshState>,
    /// The provider-call cooldown, while it lasts.
    #[serde(default)]
    pub cooldown: Option<Cooldown>,
    /// An OAuth profile with a refresh token: the daemon keeps it fresh. False for API
    /// keys and for OAuth profiles the provider gave no refresh token.
    pub refreshable: bool,
    /// What the operator should do, when something is due (sign in again before a
    /// token that cannot be refreshed expires).
    pub advice: Option<String>,
}

/// `AuthHealthReport`: every profile's health and the count per state.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuthHealthReport {
    pub profiles: Vec<ProfileHealth>,
    pub counts: BTreeMap<HealthState, usize>,
}

/// Why a profile was (or was not) chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResolveReason {
    /// The agent has its own profile (its default, or its only one).
    AgentOverride,
    /// The provider's global default.
    ExplicitDefault,
    /// The provider's only global profile.
    OnlyCandidate,
    /// The scope's default was skipped (`skipped` says why); the next usable
    /// profile of that scope, in id order.
    Fallback,
    /// The agent's first usable candidate (`model_profiles`).
    Candidate,
    /// Nothing usable; `detail` says why.
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResolveAnswer {
    pub provider: String,
    pub agent_id: Option<String>,
    pub profile_id: Option<String>,
    /// The chosen candidate's model (resolution of an agent's candidates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub reason: ResolveReason,
    pub detail: String,
    /// Profiles passed over on the way, in order, each with why.
    #[serde(default)]
    pub skipped: Vec<ResolveSkip>,
}

/// Why resolution or a run's failover passed over a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// No such profile, or its secret is gone from the vault.
    Missing,
    /// The provider refused the credential; the operator must replace or sign in again.
    NeedsReauth,
    /// A 429's cooldown is running.
    RateLimited,
    /// An outage's or billing failure's cooldown is running.
    CoolingDown,
}

/// One profile passed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResolveSkip {
    pub profile_id: String,
    pub reason: SkipReason,
    /// End of the cooldown, for `rate_limited` and `cooling_down`.
    pub until: Option<DateTime<Utc>>,
    /// A sentence: what happened to the profile.
    pub detail: String,
}

/// Result of a key rotation.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RotationReport {
    pub key_id: String,
    pub previous_key_id: String,
    pub secrets_resealed: usize,
}

/// The vault's state for posture reports.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VaultStatus {
    pub key_id: String,
    pub key_source: VaultKeySource,
}

pub const DEFAULT_PAGE: usize = 100;

/// A credential ready for a provider call.
#[derive(Debug)]
pub struct BearerCredential {
    pub provider: String,
    pub secret: SecretString,
    /// An OAuth access token past its expiry.
    pub expired: bool,
    /// An OAuth access token (a 401 is answered by one refresh and a retry).
    pub oauth: bool,
}

pub fn validate_provider(provider: &str) -> Result<(), ActorError> {
    let ok = match provider {
        "openai" | "anthropic" => true,
        other => other
            .strip_prefix("custom:")
            .is_some_and(|name| valid_id(name, 64)),
    };
    if ok {
        Ok(())
    } else {
        Err(ActorError::invalid(
            "provider",
            "must be openai, anthropic or custom:<name> (name: 1 to 64 of a-z 0-9 . _ -)",
        ))
    }
}

pub(crate) fn validate_profile_name(name: &str) -> Result<(), ActorError> {
    if name.trim().is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(ActorError::invalid(
            "profile_name",
            "must be 1 to 128 characters without control characters",
        ));
    }
    Ok(())
}

pub(crate) fn validate_scope(scope: &AuthProfileScope) -> Result<(), ActorError> {
    match scope {
        AuthProfileScope::Global => Ok(()),
        AuthProfileScope::Agent { agent_id } => validate_agent_id(agent_id),
    }
}

pub(super) fn validate_api_key(key: &SecretString) -> Result<(), ActorError> {
    let text = key.expose();
    if text.is_empty() || text.len() > 4096 || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ActorError::invalid(
            "credential.api_key",
            "must be 1 to 4096 printable ASCII characters without spaces",
        ));
    }
    Ok(())
}

/// The last 4 characters of a key long enough that they reveal nothing useful.
pub(super) fn hint_of(key: &SecretString) -> String {
    let text = key.expose();
    if text.len() >= 16 {
        format!("…{}", &text[text.len() - 4..])
    } else {
        String::new()
    }
}

pub(crate) fn vault_ref(scope: &AuthProfileScope, profile_id: &str, field: &str) -> String {
    match scope {
        AuthProfileScope::Global => format!("vault://global/auth.{profile_id}.{field}"),
        AuthProfileScope::Agent { agent_id } => {
            format!("vault://agent:{agent_id}/auth.{profile_id}.{field}")
        }
    }
}

pub(crate) fn default_key(provider: &str, scope: &AuthProfileScope) -> String {
    format!("{provider}|{}", scope.key())
}

/// A fresh id: the provider and 64 random bits. Callers inside the actor check that it
/// is free, since a create with an existing id replaces that profile.
pub(crate) fn generated_profile_id(provider: &str) -> String {
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    let stem = provider.replace(':', "-");
    format!("{stem}.{:016x}", u64::from_be_bytes(bytes))
}
