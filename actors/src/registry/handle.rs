//! `RegistryHandle`: how the rest of the daemon reaches the registry actor, and its
//! start. Checks that need no state (field validation, the API-key check with the
//! provider) run here, on the caller's task, before anything reaches the actor.

use actix::prelude::*;
use palyra_storage::{Storage, Writer};

use super::actor::{
    Delete, Get, GetBearer, GetVaultStatus, Health, List, MarkRejected, OpenApiKey, RegistryActor,
    RotateKey, SetDefault, Upsert,
};
use super::cooldown::{CallNote, CheckUsable, NoteCall};
use super::model::{
    AuthHealthReport, AuthProfile, BearerCredential, Cooldown, DEFAULT_PAGE, NewCredential,
    NewProfile, ProfileFilter, ProfilePage, ResolveAnswer, ResolveSkip, RotationReport,
    VaultStatus, validate_api_key, validate_profile_name, validate_provider, validate_scope,
};
use super::resolve::{Resolve, ResolveCandidates};
use super::rows::is_changed_elsewhere;
use crate::audit::AuditLog;
use crate::cluster::ClusterHandle;
use crate::error::{ActorError, stopped};
use crate::ids::{validate_agent_id, validate_profile_id};
use crate::metrics::ActorMetrics;
use crate::provider::{KeyCheckError, ProviderDirectory, check_api_key};
use crate::secret::SecretString;
use crate::snapshot::Snapshot;
use crate::vault::Vault;

/// Handle to the registry actor. Cloning is shallow.
#[derive(Clone)]
pub struct RegistryHandle {
    addr: Addr<RegistryActor>,
    /// For following a refresh another node redeems (`refresh_claim.rs`).
    storage: Storage,
    providers: ProviderDirectory,
    /// The daemon's one outbound client, for API-key checks and OAuth requests.
    http: reqwest::Client,
}

impl RegistryHandle {
    /// The actor's address, for the OAuth half of the handle (`oauth_flow.rs`).
    pub(crate) fn addr(&self) -> &Addr<RegistryActor> {
        &self.addr
    }

    /// The provider settings the registry was started with.
    pub fn providers(&self) -> &ProviderDirectory {
        &self.providers
    }

    /// The outbound HTTP client the registry was started with.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub(crate) fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Sends what `message` builds; once more if another node's write got in the way
    /// (the actor has reread the row by then, so the second try builds on it).
    pub(crate) async fn retrying<M, T>(&self, message: impl Fn() -> M) -> Result<T, ActorError>
    where
        M: Message<Result = Result<T, ActorError>> + Send + 'static,
        T: Send + 'static,
        RegistryActor: Handler<M>,
    {
        let first = self
            .addr
            .send(message())
            .await
            .map_err(stopped("registry"))?;
        if !is_changed_elsewhere(&first) {
            return first;
        }
        self.addr
            .send(message())
            .await
            .map_err(stopped("registry"))?
    }
}

impl std::fmt::Debug for RegistryHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryHandle").finish_non_exhaustive()
    }
}

impl RegistryHandle {
    /// Loads profiles and defaults and starts the actor inside the actix System. The
    /// vault must be open (and its start-up writes committed); `http` is the daemon's
    /// one outbound client.
    // Each argument is a separate dependency the daemon wires in; a struct of them
    // would only rename the list.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        storage: &Storage,
        snapshot: &Snapshot,
        writer: Writer,
        vault: Vault,
        providers: ProviderDirectory,
        audit: AuditLog,
        metrics: ActorMetrics,
        http: reqwest::Client,
        cluster: &ClusterHandle,
    ) -> Result<Self, ActorError> {
        let actor = RegistryActor::load(
            storage,
            snapshot,
            writer,
            vault,
            &providers,
            audit,
            metrics,
            cluster.node_id().to_owned(),
        )?;
        Ok(Self {
            addr: actor.start(),
            storage: storage.clone(),
            providers,
            http,
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
            check_api_key(&self.http, &req.provider, settings, api_key).await?;
        }
        self.retrying(|| Upsert(req.clone())).await
    }

    pub async fn get(&self, profile_id: &str) -> Result<AuthProfile, ActorError> {
        self.addr
            .send(Get(profile_id.to_owned()))
            .await
            .map_err(stopped("registry"))?
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
        crate::paging::check_page_limit(limit)?;
        self.addr
            .send(List {
                filter,
                limit,
                after,
            })
            .await
            .map_err(stopped("registry"))?
    }

    /// Deletes a profile, its vault secrets and any default pointing at it. An OAuth
    /// profile's refresh token is first revoked at the provider when it has a
    /// revocation endpoint (best effort).
    pub async fn delete(&self, profile_id: &str) -> Result<(), ActorError> {
        self.revoke_before_delete(profile_id).await;
        self.retrying(|| Delete(profile_id.to_owned())).await
    }

    /// Makes a profile the default of its provider and scope.
    pub async fn set_default(&self, profile_id: &str) -> Result<AuthProfile, ActorError> {
        self.retrying(|| SetDefault(profile_id.to_owned())).await
    }

    /// Health of every credential; a pure read.
    pub async fn health(&self) -> Result<AuthHealthReport, ActorError> {
        self.addr.send(Health).await.map_err(stopped("registry"))?
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
            .map_err(stopped("registry"))?
    }

    /// Which of an agent's candidates (profile id, model; in order) a run would try
    /// first now, and why each one before it is passed over.
    pub async fn resolve_candidates(
        &self,
        agent_id: String,
        candidates: Vec<(String, String)>,
    ) -> Result<ResolveAnswer, ActorError> {
        validate_agent_id(&agent_id)?;
        self.addr
            .send(ResolveCandidates {
                agent_id,
                candidates,
            })
            .await
            .map_err(stopped("registry"))
    }

    /// The plaintext API key of a profile, for a provider call. Never for responses.
    pub async fn api_key(&self, profile_id: &str) -> Result<SecretString, ActorError> {
        self.addr
            .send(OpenApiKey(profile_id.to_owned()))
            .await
            .map_err(stopped("registry"))?
    }

    /// The bearer secret of a profile for a provider call: the API key, or the OAuth
    /// access token (with whether it has expired). Never for responses.
    pub async fn bearer(&self, profile_id: &str) -> Result<BearerCredential, ActorError> {
        self.addr
            .send(GetBearer(profile_id.to_owned()))
            .await
            .map_err(stopped("registry"))?
    }

    /// Records that the provider answered 401 to a profile's credential: its health
    /// becomes `needs_reauth`.
    pub async fn mark_rejected(&self, profile_id: &str) -> Result<(), ActorError> {
        self.retrying(|| MarkRejected(profile_id.to_owned())).await
    }

    /// Whether each profile can be used now: `None`, or why it is passed over.
    pub async fn check_usable(
        &self,
        profile_ids: Vec<String>,
    ) -> Result<Vec<Option<ResolveSkip>>, ActorError> {
        self.addr
            .send(CheckUsable(profile_ids))
            .await
            .map_err(stopped("registry"))
    }

    /// Records what a run's call to a profile came to: a success clears its cooldown
    /// (no write when there is none), a failure sets or extends it durably. Answers
    /// the cooldown now in force.
    pub async fn note_call(
        &self,
        profile_id: &str,
        note: CallNote,
    ) -> Result<Option<Cooldown>, ActorError> {
        self.retrying(|| NoteCall(profile_id.to_owned(), note.clone()))
            .await
    }

    /// Re-seals every secret under a new master key.
    pub async fn rotate_key(&self) -> Result<RotationReport, ActorError> {
        self.addr
            .send(RotateKey)
            .await
            .map_err(stopped("registry"))?
    }

    pub async fn vault_status(&self) -> Result<VaultStatus, ActorError> {
        self.addr
            .send(GetVaultStatus)
            .await
            .map_err(stopped("registry"))
    }

    /// True while the actor runs.
    pub fn is_running(&self) -> bool {
        self.addr.connected()
    }
}
