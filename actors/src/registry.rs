//! The registry actor: owns auth profiles, the default profile per provider and scope,
//! and the vault that holds their secrets.
//!
//! A message changes the actor's memory and queues its writes in the same step, so the
//! next message always builds on the newest state and the writer (first in, first
//! out) commits in message order. The answer waits for the commit. A failed commit
//! (the disk, not the client) makes the actor reload its state from redb, so memory
//! never stays ahead of the disk.

use std::collections::{BTreeMap, HashMap};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use palyra_storage::{Storage, StoredRecord, Table, WriteOp, Writer, decode_record};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::ActorError;
use crate::ids::valid_id;
pub use crate::ids::{validate_agent_id, validate_profile_id};

pub mod oauth_flow;
use crate::provider::{KeyCheckError, ProviderDirectory, check_api_key};
use crate::secret::SecretString;
use crate::time::now_ms;
use crate::vault::{Vault, VaultError, VaultKeySource};

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
}

/// A credential as stored: vault refs and metadata, never the secret.
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
    },
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
                ..
            } => vec![access_token_vault_ref, refresh_token_vault_ref],
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
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug)]
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
    /// Nothing usable; `detail` says why.
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResolveAnswer {
    pub provider: String,
    pub agent_id: Option<String>,
    pub profile_id: Option<String>,
    pub reason: ResolveReason,
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

/// Handle to the registry actor. Cloning is shallow.
#[derive(Clone)]
pub struct RegistryHandle {
    addr: Addr<RegistryActor>,
    providers: ProviderDirectory,
}

impl RegistryHandle {
    pub(crate) fn addr(&self) -> &Addr<RegistryActor> {
        &self.addr
    }

    /// The provider settings the registry was started with.
    pub fn providers(&self) -> &ProviderDirectory {
        &self.providers
    }
}

impl std::fmt::Debug for RegistryHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryHandle").finish_non_exhaustive()
    }
}

type Profiles = BTreeMap<String, AuthProfileRecord>;
type Defaults = HashMap<String, String>;

fn load_state(storage: &Storage) -> Result<(Profiles, Defaults), ActorError> {
    let mut profiles = BTreeMap::new();
    for (_, value) in storage.load(Table::AuthProfiles)? {
        let record: AuthProfileRecord = decode_record(&value)?;
        profiles.insert(record.profile_id.clone(), record);
    }
    let mut defaults = HashMap::new();
    for (key, value) in storage.load(Table::AuthDefaults)? {
        defaults.insert(
            String::from_utf8_lossy(&key).into_owned(),
            String::from_utf8_lossy(&value).into_owned(),
        );
    }
    Ok((profiles, defaults))
}

pub(crate) fn stopped(_: MailboxError) -> ActorError {
    ActorError::Stopped("registry")
}

impl RegistryHandle {
    /// Loads profiles and defaults and starts the actor inside the actix System. The
    /// vault must be open (and its start-up writes committed).
    pub fn start(
        storage: &Storage,
        writer: Writer,
        vault: Vault,
        providers: ProviderDirectory,
        audit: crate::audit::AuditLog,
        metrics: crate::metrics::ActorMetrics,
    ) -> Result<Self, ActorError> {
        let (profiles, defaults) = load_state(storage)?;
        let (attempts, attempts_by_state) = oauth_flow::load_attempts(storage)?;
        let actor = RegistryActor {
            writer,
            refresher: None,
            attempts,
            attempts_by_state,
            providers_oauth: providers
                .providers
                .iter()
                .filter_map(|(id, p)| Some((id.clone(), p.oauth.clone()?)))
                .collect(),
            vault,
            profiles,
            defaults,
            storage: storage.clone(),
            audit,
            metrics,
        };
        Ok(Self {
            addr: actor.start(),
            providers,
        })
    }

    /// Creates or replaces a profile. Validates every field, then (unless
    /// `validate` is false) the API key with its provider; stores nothing on failure.
    pub async fn create(&self, req: NewProfile) -> Result<AuthProfile, ActorError> {
        if let Some(id) = &req.profile_id {
            validate_profile_id(id)?;
        }
        validate_provider(&req.provider)?;
        validate_profile_name(&req.profile_name)?;
        validate_scope(&req.scope)?;
        let NewCredential::ApiKey { api_key } = &req.credential;
        validate_api_key(api_key)?;
        if req.validate {
            let settings = self
                .providers
                .get(&req.provider)
                .ok_or_else(|| KeyCheckError::NotConfigured(req.provider.clone()))?;
            check_api_key(&req.provider, settings, api_key).await?;
        }
        self.addr.send(Upsert(req)).await.map_err(stopped)?
    }

    pub async fn get(&self, profile_id: &str) -> Result<AuthProfile, ActorError> {
        self.addr
            .send(Get(profile_id.to_owned()))
            .await
            .map_err(stopped)?
    }

    pub async fn list(
        &self,
        filter: ProfileFilter,
        limit: Option<usize>,
        after: Option<String>,
    ) -> Result<ProfilePage, ActorError> {
        if let Some(kind) = &filter.scope_kind
            && kind != "global"
            && kind != "agent"
        {
            return Err(ActorError::invalid("scope", "must be global or agent"));
        }
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        crate::check_page_limit(limit)?;
        self.addr
            .send(List {
                filter,
                limit,
                after,
            })
            .await
            .map_err(stopped)?
    }

    /// Deletes a profile, its vault secrets and any default pointing at it. An OAuth
    /// profile's refresh token is first revoked at the provider when it has a
    /// revocation endpoint (best effort).
    pub async fn delete(&self, profile_id: &str) -> Result<(), ActorError> {
        self.revoke_before_delete(profile_id).await;
        self.addr
            .send(Delete(profile_id.to_owned()))
            .await
            .map_err(stopped)?
    }

    /// Makes a profile the default of its provider and scope.
    pub async fn set_default(&self, profile_id: &str) -> Result<AuthProfile, ActorError> {
        self.addr
            .send(SetDefault(profile_id.to_owned()))
            .await
            .map_err(stopped)?
    }

    /// Health of every credential; a pure read.
    pub async fn health(&self) -> Result<AuthHealthReport, ActorError> {
        self.addr.send(Health).await.map_err(stopped)?
    }

    /// Which profile an agent (or the global scope) would use for a provider, and why.
    pub async fn resolve(
        &self,
        provider: String,
        agent_id: Option<String>,
    ) -> Result<ResolveAnswer, ActorError> {
        validate_provider(&provider)?;
        if let Some(agent) = &agent_id {
            validate_agent_id(agent)?;
        }
        self.addr
            .send(Resolve { provider, agent_id })
            .await
            .map_err(stopped)?
    }

    /// The plaintext API key of a profile, for a provider call. Never for responses.
    pub async fn api_key(&self, profile_id: &str) -> Result<SecretString, ActorError> {
        self.addr
            .send(OpenApiKey(profile_id.to_owned()))
            .await
            .map_err(stopped)?
    }

    /// The bearer secret of a profile for a provider call: the API key, or the OAuth
    /// access token (with whether it has expired). Never for responses.
    pub async fn bearer(&self, profile_id: &str) -> Result<BearerCredential, ActorError> {
        self.addr
            .send(GetBearer(profile_id.to_owned()))
            .await
            .map_err(stopped)?
    }

    /// Records that the provider answered 401 to a profile's credential: its health
    /// becomes `needs_reauth`.
    pub async fn mark_rejected(&self, profile_id: &str) -> Result<(), ActorError> {
        self.addr
            .send(MarkRejected(profile_id.to_owned()))
            .await
            .map_err(stopped)?
    }

    /// Re-seals every secret under a new master key.
    pub async fn rotate_key(&self) -> Result<RotationReport, ActorError> {
        self.addr.send(RotateKey).await.map_err(stopped)?
    }

    pub async fn vault_status(&self) -> Result<VaultStatus, ActorError> {
        self.addr.send(GetVaultStatus).await.map_err(stopped)
    }

    /// True while the actor runs.
    pub fn is_running(&self) -> bool {
        self.addr.connected()
    }
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

fn validate_api_key(key: &SecretString) -> Result<(), ActorError> {
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
fn hint_of(key: &SecretString) -> String {
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

pub(crate) struct RegistryActor {
    writer: Writer,
    /// Told about every change of an OAuth profile's schedule.
    refresher: Option<Recipient<crate::refresher::ScheduleChange>>,
    /// Sign-in attempts by id, and the attempt id by SHA-256 of its state.
    attempts: HashMap<String, oauth_flow::AttemptRecord>,
    attempts_by_state: HashMap<String, String>,
    /// OAuth settings per provider id, for tokens the actor stores.
    providers_oauth: HashMap<String, crate::oauth::OAuthSettings>,
    vault: Vault,
    profiles: BTreeMap<String, AuthProfileRecord>,
    /// `provider|scope` -> profile id.
    defaults: HashMap<String, String>,
    /// Sequence number of the last write handled.
    /// For reloading after a failed commit.
    storage: Storage,
    /// Refresh outcomes and needs-reauth marks are audited in the same write.
    pub(crate) audit: crate::audit::AuditLog,
    pub(crate) metrics: crate::metrics::ActorMetrics,
}

impl Actor for RegistryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Abandoned sign-ins older than a day, and their sealed verifiers, go.
        match oauth_flow::stale_attempt_ops(&self.storage) {
            Ok(ops) if !ops.is_empty() => {
                ctx.spawn(self.commit(ops).map(|result, _, _| {
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "purging old sign-in attempts failed");
                    }
                }));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reading old sign-in attempts failed"),
        }
    }
}

impl RegistryActor {
    pub(crate) fn view(&self, record: &AuthProfileRecord) -> AuthProfile {
        let is_default = self
            .defaults
            .get(&default_key(&record.provider, &record.scope))
            .is_some_and(|id| *id == record.profile_id);
        AuthProfile {
            record: record.clone(),
            is_default,
        }
    }

    fn apply_default(&mut self, key: String, value: Option<String>) {
        match value {
            Some(id) => self.defaults.insert(key, id),
            None => self.defaults.remove(&key),
        };
    }

    /// Queues `ops` (memory already shows their effect) and returns their commit. If
    /// the commit fails, memory is reloaded from redb before the error is answered.
    pub(crate) fn commit(
        &mut self,
        ops: Vec<WriteOp>,
    ) -> impl ActorFuture<Self, Output = Result<(), ActorError>> + use<> {
        self.writer
            .submit(ops)
            .into_actor(self)
            .map(|result, act: &mut Self, _| {
                result.map_err(|e| {
                    tracing::error!(error = %e, "registry commit failed; reloading state from storage");
                    act.reload();
                    ActorError::from(e)
                })
            })
    }

    /// Replaces memory with what redb holds (after a failed commit).
    fn reload(&mut self) {
        match load_state(&self.storage) {
            Ok((profiles, defaults)) => {
                self.profiles = profiles;
                self.defaults = defaults;
                if let Ok((attempts, by_state)) = oauth_flow::load_attempts(&self.storage) {
                    self.attempts = attempts;
                    self.attempts_by_state = by_state;
                }
                let ids: Vec<String> = self.profiles.keys().cloned().collect();
                for id in ids {
                    let record = self.profiles.get(&id).cloned();
                    self.notify_refresher(record.as_ref(), &id);
                }
            }
            Err(e) => tracing::error!(error = %e, "reloading the registry failed"),
        }
    }

    fn default_ops_removing(&self, record: &AuthProfileRecord) -> Option<(String, WriteOp)> {
        let key = default_key(&record.provider, &record.scope);
        (self.defaults.get(&key) == Some(&record.profile_id)).then(|| {
            let op = WriteOp::delete(Table::AuthDefaults, key.as_bytes().to_vec());
            (key, op)
        })
    }
}

#[derive(Message)]
#[rtype(result = "Result<AuthProfile, ActorError>")]
struct Upsert(NewProfile);

impl Handler<Upsert> for RegistryActor {
    type Result = ResponseActFuture<Self, Result<AuthProfile, ActorError>>;

    fn handle(&mut self, Upsert(req): Upsert, _ctx: &mut Self::Context) -> Self::Result {
        let profile_id = req.profile_id.unwrap_or_else(|| {
            loop {
                let id = generated_profile_id(&req.provider);
                if !self.profiles.contains_key(&id) {
                    break id;
                }
            }
        });
        let now = crate::time::to_datetime(now_ms());
        let NewCredential::ApiKey { api_key } = req.credential;
        let secret_ref = vault_ref(&req.scope, &profile_id, "api_key");
        let record = AuthProfileRecord {
            profile_id,
            provider: req.provider,
            profile_name: req.profile_name,
            scope: req.scope,
            credential: AuthCredential::ApiKey {
                api_key_vault_ref: secret_ref.clone(),
                hint: hint_of(&api_key),
                rejected_at: None,
            },
            created_at: now,
            updated_at: now,
        };
        let sealed = vec![self.vault.seal(&secret_ref, &api_key)];
        drop(api_key);
        let (record, ops, default_changes) =
            self.profile_write(record, sealed, req.set_default, Vec::new());
        self.apply_profile(record.clone(), default_changes);
        Box::pin(self.commit(ops).map(move |result, act, _| {
            result?;
            tracing::info!(profile_id = %record.profile_id, provider = %record.provider, "auth profile saved");
            let current = act.profiles.get(&record.profile_id).unwrap_or(&record);
            Ok(act.view(current))
        }))
    }
}

/// Changes of defaults a write makes: `provider|scope` -> new profile id or none.
pub(crate) type DefaultChanges = Vec<(String, Option<String>)>;

impl RegistryActor {
    /// The writes that create or replace `record` (whose secrets are in `sealed`),
    /// with `extra` in the same transaction: the profile, its secrets, the removal of
    /// secrets the replaced credential held and the new one does not, and the defaults.
    /// Keeps the replaced profile's creation time.
    pub(crate) fn profile_write(
        &self,
        mut record: AuthProfileRecord,
        sealed: Vec<WriteOp>,
        set_default: bool,
        extra: Vec<WriteOp>,
    ) -> (AuthProfileRecord, Vec<WriteOp>, DefaultChanges) {
        let previous = self.profiles.get(&record.profile_id);
        if let Some(old) = previous {
            record.created_at = old.created_at;
        }
        let new_refs: Vec<String> = record
            .credential
            .vault_refs()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let mut ops = vec![WriteOp::put(record.profile_id.as_bytes().to_vec(), &record)];
        ops.extend(sealed);
        let mut default_changes = Vec::new();
        if let Some(old) = previous {
            for old_ref in old.credential.vault_refs() {
                if !new_refs.iter().any(|r| r == old_ref) {
                    ops.push(Vault::delete(old_ref));
                }
            }
            let moved = old.provider != record.provider || old.scope != record.scope;
            if moved && let Some((key, op)) = self.default_ops_removing(old) {
                ops.push(op);
                default_changes.push((key, None));
            }
        }
        if set_default {
            let key = default_key(&record.provider, &record.scope);
            ops.push(WriteOp::Put {
                table: Table::AuthDefaults,
                key: key.as_bytes().to_vec(),
                value: record.profile_id.as_bytes().to_vec(),
            });
            default_changes.push((key, Some(record.profile_id.clone())));
        }
        ops.extend(extra);
        (record, ops, default_changes)
    }

    /// Applies a profile write to memory (as it is queued) and tells the refresher.
    pub(crate) fn apply_profile(
        &mut self,
        record: AuthProfileRecord,
        default_changes: DefaultChanges,
    ) {
        let id = record.profile_id.clone();
        self.notify_refresher(Some(&record), &id);
        self.profiles.insert(id, record);
        for (key, value) in default_changes {
            self.apply_default(key, value);
        }
    }
}

#[derive(Message)]
#[rtype(result = "Result<AuthProfile, ActorError>")]
struct Get(String);

impl Handler<Get> for RegistryActor {
    type Result = Result<AuthProfile, ActorError>;

    fn handle(&mut self, Get(id): Get, _ctx: &mut Self::Context) -> Self::Result {
        self.profiles
            .get(&id)
            .map(|r| self.view(r))
            .ok_or(ActorError::NotFound {
                what: "auth profile",
                id,
            })
    }
}

#[derive(Message)]
#[rtype(result = "Result<ProfilePage, ActorError>")]
struct List {
    filter: ProfileFilter,
    limit: usize,
    after: Option<String>,
}

impl Handler<List> for RegistryActor {
    type Result = Result<ProfilePage, ActorError>;

    fn handle(&mut self, msg: List, _ctx: &mut Self::Context) -> Self::Result {
        use std::ops::Bound;
        let start = match &msg.after {
            Some(after) => Bound::Excluded(after.clone()),
            None => Bound::Unbounded,
        };
        let f = &msg.filter;
        let matching = self
            .profiles
            .range((start, Bound::Unbounded))
            .map(|(_, r)| r)
            .filter(|r| f.provider.as_ref().is_none_or(|p| *p == r.provider))
            .filter(|r| {
                matches!(
                    (f.scope_kind.as_deref(), &r.scope),
                    (None, _)
                        | (Some("global"), AuthProfileScope::Global)
                        | (Some("agent"), AuthProfileScope::Agent { .. })
                )
            })
            .filter(|r| match (&f.agent_id, &r.scope) {
                (None, _) => true,
                (Some(a), AuthProfileScope::Agent { agent_id }) => a == agent_id,
                (Some(_), AuthProfileScope::Global) => false,
            });
        let (items, next_after) = crate::page_of(matching.map(|r| self.view(r)), msg.limit, |p| {
            p.record.profile_id.clone()
        });
        Ok(ProfilePage { items, next_after })
    }
}

#[derive(Message)]
#[rtype(result = "Result<(), ActorError>")]
struct Delete(String);

impl Handler<Delete> for RegistryActor {
    type Result = ResponseActFuture<Self, Result<(), ActorError>>;

    fn handle(&mut self, Delete(id): Delete, _ctx: &mut Self::Context) -> Self::Result {
        let Some(record) = self.profiles.get(&id).cloned() else {
            return Box::pin(actix::fut::ready(Err(ActorError::NotFound {
                what: "auth profile",
                id,
            })));
        };
        let mut ops = vec![WriteOp::delete(Table::AuthProfiles, id.as_bytes().to_vec())];
        ops.extend(
            record
                .credential
                .vault_refs()
                .into_iter()
                .map(Vault::delete),
        );
        if let Some((key, op)) = self.default_ops_removing(&record) {
            ops.push(op);
            self.apply_default(key, None);
        }
        self.profiles.remove(&id);
        self.notify_refresher(None, &id);
        Box::pin(self.commit(ops).map(move |result, _act, _| {
            result?;
            tracing::info!(profile_id = %id, "auth profile deleted");
            Ok(())
        }))
    }
}

#[derive(Message)]
#[rtype(result = "Result<AuthProfile, ActorError>")]
struct SetDefault(String);

impl Handler<SetDefault> for RegistryActor {
    type Result = ResponseActFuture<Self, Result<AuthProfile, ActorError>>;

    fn handle(&mut self, SetDefault(id): SetDefault, _ctx: &mut Self::Context) -> Self::Result {
        let Some(record) = self.profiles.get(&id).cloned() else {
            return Box::pin(actix::fut::ready(Err(ActorError::NotFound {
                what: "auth profile",
                id,
            })));
        };
        let key = default_key(&record.provider, &record.scope);
        let ops = vec![WriteOp::Put {
            table: Table::AuthDefaults,
            key: key.as_bytes().to_vec(),
            value: id.as_bytes().to_vec(),
        }];
        self.apply_default(key, Some(id.clone()));
        Box::pin(self.commit(ops).map(move |result, act, _| {
            result?;
            let current = act.profiles.get(&id).cloned().unwrap_or(record);
            Ok(act.view(&current))
        }))
    }
}

#[derive(Message)]
#[rtype(result = "Result<AuthHealthReport, ActorError>")]
struct Health;

impl Handler<Health> for RegistryActor {
    type Result = Result<AuthHealthReport, ActorError>;

    fn handle(&mut self, _msg: Health, _ctx: &mut Self::Context) -> Self::Result {
        let now = crate::time::to_datetime(now_ms());
        let mut counts: BTreeMap<HealthState, usize> =
            HealthState::ALL.iter().map(|s| (*s, 0)).collect();
        let mut profiles = Vec::with_capacity(self.profiles.len());
        for record in self.profiles.values() {
            let health = health_of(record, &self.vault, now)?;
            *counts.entry(health.state).or_default() += 1;
            profiles.push(health);
        }
        Ok(AuthHealthReport { profiles, counts })
    }
}

/// The health of one profile at `now`; reads the vault's index, never a provider.
fn health_of(
    record: &AuthProfileRecord,
    vault: &Vault,
    now: DateTime<Utc>,
) -> Result<ProfileHealth, VaultError> {
    let present = |r: &str| vault.contains(r);
    let (state, until, expires_at, refresh_state) = match &record.credential {
        AuthCredential::ApiKey {
            api_key_vault_ref,
            rejected_at,
            ..
        } => {
            let state = if !present(api_key_vault_ref)? {
                HealthState::Missing
            } else if rejected_at.is_some() {
                HealthState::NeedsReauth
            } else {
                HealthState::Static
            };
            (state, None, None, None)
        }
        AuthCredential::Oauth {
            access_token_vault_ref,
            refresh_token_vault_ref,
            expires_at,
            refresh_state: rs,
            ..
        } => {
            let (state, until) =
                if !present(access_token_vault_ref)? || !present(refresh_token_vault_ref)? {
                    (HealthState::Missing, None)
                } else if rs.needs_reauth {
                    (HealthState::NeedsReauth, None)
                } else if let Some(t) = rs.rate_limited_until.filter(|t| *t > now) {
                    (HealthState::RateLimited, Some(t))
                } else if let Some(t) = rs.cooling_down_until.filter(|t| *t > now) {
                    (HealthState::CoolingDown, Some(t))
                } else {
                    match expires_at {
                        Some(t) if *t <= now => (HealthState::Expired, None),
                        Some(t) if *t - now < chrono::Duration::minutes(15) => {
                            (HealthState::Expiring, None)
                        }
                        _ => (HealthState::Ok, None),
                    }
                };
            (state, until, *expires_at, Some(rs.clone()))
        }
    };
    Ok(ProfileHealth {
        profile_id: record.profile_id.clone(),
        provider: record.provider.clone(),
        scope: record.scope.clone(),
        state,
        until,
        expires_at,
        refresh_state,
    })
}

#[derive(Message)]
#[rtype(result = "Result<ResolveAnswer, ActorError>")]
struct Resolve {
    provider: String,
    agent_id: Option<String>,
}

impl Handler<Resolve> for RegistryActor {
    type Result = Result<ResolveAnswer, ActorError>;

    fn handle(&mut self, msg: Resolve, _ctx: &mut Self::Context) -> Self::Result {
        let answer = |profile_id: Option<&str>, reason, detail: String| ResolveAnswer {
            provider: msg.provider.clone(),
            agent_id: msg.agent_id.clone(),
            profile_id: profile_id.map(str::to_owned),
            reason,
            detail,
        };
        let candidates = |scope: &AuthProfileScope| -> Vec<&AuthProfileRecord> {
            self.profiles
                .values()
                .filter(|r| r.provider == msg.provider && r.scope == *scope)
                .collect()
        };
        if let Some(agent_id) = &msg.agent_id {
            let scope = AuthProfileScope::Agent {
                agent_id: agent_id.clone(),
            };
            if let Some(id) = self.defaults.get(&default_key(&msg.provider, &scope)) {
                return Ok(answer(
                    Some(id),
                    ResolveReason::AgentOverride,
                    format!("the agent's default {} profile", msg.provider),
                ));
            }
            let agent_profiles = candidates(&scope);
            match agent_profiles.as_slice() {
                [only] => {
                    return Ok(answer(
                        Some(&only.profile_id),
                        ResolveReason::AgentOverride,
                        format!("the agent's only {} profile", msg.provider),
                    ));
                }
                [] => {}
                many => {
                    return Ok(answer(
                        None,
                        ResolveReason::None,
                        format!(
                            "the agent has {} {} profiles and none is its default; set one",
                            many.len(),
                            msg.provider
                        ),
                    ));
                }
            }
        }
        let global = AuthProfileScope::Global;
        if let Some(id) = self.defaults.get(&default_key(&msg.provider, &global)) {
            return Ok(answer(
                Some(id),
                ResolveReason::ExplicitDefault,
                format!("the global default {} profile", msg.provider),
            ));
        }
        Ok(match candidates(&global).as_slice() {
            [only] => answer(
                Some(&only.profile_id),
                ResolveReason::OnlyCandidate,
                format!("the only global {} profile", msg.provider),
            ),
            [] => answer(
                None,
                ResolveReason::None,
                format!("no {} profile exists for this scope", msg.provider),
            ),
            many => answer(
                None,
                ResolveReason::None,
                format!(
                    "{} global {} profiles and none is the default; set one",
                    many.len(),
                    msg.provider
                ),
            ),
        })
    }
}

#[derive(Message)]
#[rtype(result = "Result<SecretString, ActorError>")]
struct OpenApiKey(String);

impl Handler<OpenApiKey> for RegistryActor {
    type Result = Result<SecretString, ActorError>;

    fn handle(&mut self, OpenApiKey(id): OpenApiKey, _ctx: &mut Self::Context) -> Self::Result {
        let record = self.profiles.get(&id).ok_or_else(|| ActorError::NotFound {
            what: "auth profile",
            id: id.clone(),
        })?;
        let AuthCredential::ApiKey {
            api_key_vault_ref, ..
        } = &record.credential
        else {
            return Err(ActorError::invalid(
                "profile_id",
                "the profile holds no API key",
            ));
        };
        self.vault
            .open_secret(api_key_vault_ref)?
            .ok_or(ActorError::NotFound {
                what: "secret of auth profile",
                id,
            })
    }
}

#[derive(Message)]
#[rtype(result = "Result<RotationReport, ActorError>")]
struct RotateKey;

impl Handler<RotateKey> for RegistryActor {
    type Result = ResponseFuture<Result<RotationReport, ActorError>>;

    fn handle(&mut self, _msg: RotateKey, ctx: &mut Self::Context) -> Self::Result {
        let (done, answer) = tokio::sync::oneshot::channel();
        // An empty write is acknowledged after every write queued before it: the
        // rotation then sees every secret sealed so far. `ctx.wait` holds back every
        // other message until the rotation has committed, so nothing is sealed under
        // the old key after its secrets were collected.
        let barrier = self.writer.submit(Vec::new());
        ctx.wait(
            barrier
                .into_actor(self)
                .then(|barrier, act, _| {
                    let previous_key_id = act.vault.active_key_id().to_owned();
                    let started = barrier
                        .map_err(ActorError::from)
                        .and_then(|()| act.vault.begin_rotation().map_err(ActorError::from));
                    let durable = started.map(|(ops, count)| (act.writer.submit(ops), count));
                    async move {
                        match durable {
                            Ok((write, count)) => (write.await.map_err(ActorError::from).map(|()| count), previous_key_id, true),
                            Err(e) => (Err(e), previous_key_id, false),
                        }
                    }
                    .into_actor(act)
                })
                .map(move |(result, previous_key_id, began), act, _| {
                    let report = match result {
                        Ok(count) => act.vault.finish_rotation().map_err(ActorError::from).map(|()| {
                            let key_id = act.vault.active_key_id().to_owned();
                            tracing::info!(%key_id, %previous_key_id, secrets = count, "vault key rotated");
                            RotationReport {
                                key_id,
                                previous_key_id,
                                secrets_resealed: count,
                            }
                        }),
                        Err(e) => {
                            if began {
                                act.vault.abort_rotation();
                            }
                            Err(e)
                        }
                    };
                    let _ = done.send(report);
                }),
        );
        Box::pin(async move { answer.await.unwrap_or(Err(ActorError::Stopped("registry"))) })
    }
}

#[derive(Message)]
#[rtype(result = "VaultStatus")]
struct GetVaultStatus;

impl Handler<GetVaultStatus> for RegistryActor {
    type Result = MessageResult<GetVaultStatus>;

    fn handle(&mut self, _msg: GetVaultStatus, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(VaultStatus {
            key_id: self.vault.active_key_id().to_owned(),
            key_source: self.vault.source(),
        })
    }
}

/// A credential ready for a provider call.
#[derive(Debug)]
pub struct BearerCredential {
    pub provider: String,
    pub secret: SecretString,
    /// An OAuth access token past its expiry.
    pub expired: bool,
}

#[derive(Message)]
#[rtype(result = "Result<BearerCredential, ActorError>")]
struct GetBearer(String);

impl Handler<GetBearer> for RegistryActor {
    type Result = Result<BearerCredential, ActorError>;

    fn handle(&mut self, GetBearer(id): GetBearer, _ctx: &mut Self::Context) -> Self::Result {
        let record = self.profiles.get(&id).ok_or_else(|| ActorError::NotFound {
            what: "auth profile",
            id: id.clone(),
        })?;
        let (vault_ref, expired) = match &record.credential {
            AuthCredential::ApiKey {
                api_key_vault_ref, ..
            } => (api_key_vault_ref, false),
            AuthCredential::Oauth {
                access_token_vault_ref,
                expires_at,
                ..
            } => (
                access_token_vault_ref,
                expires_at.is_some_and(|t| t <= crate::time::to_datetime(now_ms())),
            ),
        };
        let secret = self
            .vault
            .open_secret(vault_ref)?
            .ok_or(ActorError::NotFound {
                what: "secret of auth profile",
                id,
            })?;
        Ok(BearerCredential {
            provider: record.provider.clone(),
            secret,
            expired,
        })
    }
}

#[derive(Message)]
#[rtype(result = "Result<(), ActorError>")]
struct MarkRejected(String);

impl Handler<MarkRejected> for RegistryActor {
    type Result = ResponseActFuture<Self, Result<(), ActorError>>;

    fn handle(&mut self, MarkRejected(id): MarkRejected, _ctx: &mut Self::Context) -> Self::Result {
        let Some(mut record) = self.profiles.get(&id).cloned() else {
            return Box::pin(actix::fut::ready(Err(ActorError::NotFound {
                what: "auth profile",
                id,
            })));
        };
        let now = crate::time::to_datetime(now_ms());
        match &mut record.credential {
            AuthCredential::ApiKey { rejected_at, .. } => *rejected_at = Some(now),
            AuthCredential::Oauth { refresh_state, .. } => {
                refresh_state.needs_reauth = true;
                refresh_state.last_error =
                    Some("the provider answered HTTP 401 to the access token".into());
            }
        }
        record.updated_at = now;
        let ops = vec![
            WriteOp::put(record.profile_id.as_bytes().to_vec(), &record),
            self.audit.op(crate::audit::AuditEntry::system(
                crate::audit::AuditKind::ProfileNeedsReauth,
                &record.profile_id,
                crate::audit::AuditOutcome::Failure,
                "the provider answered HTTP 401 to the credential",
            )),
        ];
        tracing::warn!(profile_id = %record.profile_id, "the provider rejected the credential; marked needs_reauth");
        self.apply_profile(record, Vec::new());
        Box::pin(self.commit(ops))
    }
}
