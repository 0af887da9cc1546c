//! The registry actor: its state (profiles, defaults, sign-in attempts, the vault),
//! loading it, committing and reloading after a failed commit, and the handlers of
//! every message that is not part of OAuth (`oauth_flow.rs` has those).
//!
//! A message changes the actor's memory and queues its writes in the same step, so the
//! next message always builds on the newest state and the writer (first in, first
//! out) commits in message order. The answer waits for the commit. A failed commit
//! (the database, not the client) makes the actor stale: it refuses writes and
//! reloads its state from storage (`crate::reload`), so memory never stays ahead of
//! the database. The vault's sealed secrets are in memory too, told about every write
//! as it is queued.

use std::collections::{BTreeMap, HashMap};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use palyra_storage::{Storage, Table, WriteOp, Writer, decode_record};

use super::attempts::{Attempts, AttemptsByState, load_attempts, stale_attempt_ops};
use super::model::{
    AuthCredential, AuthHealthReport, AuthProfile, AuthProfileRecord, AuthProfileScope,
    BearerCredential, CooldownReason, HealthState, NewCredential, NewProfile, ProfileFilter,
    ProfileHealth, ProfilePage, RotationReport, VaultStatus, default_key, generated_profile_id,
    hint_of, vault_ref,
};
use super::rows::RowSync;
use crate::audit::{AuditEntry, AuditKind, AuditLog, AuditOutcome};
use crate::error::{ActorError, stopped};
use crate::metrics::ActorMetrics;
use crate::oauth::OAuthSettings;
use crate::provider::ProviderDirectory;
use crate::refresh_schedule::{ScheduleChange, ScheduleEntry};
use crate::reload::{ReloadState, Reloads, reload};
use crate::secret::SecretString;
use crate::snapshot::Snapshot;
use crate::time::{now_ms, to_datetime};
use crate::vault::{Vault, VaultError};

pub(super) type Profiles = BTreeMap<String, AuthProfileRecord>;
pub(super) type Defaults = HashMap<String, String>;

/// The tables the registry's memory is built from.
pub(super) const REGISTRY_TABLES: [Table; 5] = [
    Table::AuthProfiles,
    Table::AuthDefaults,
    Table::OAuthAttempts,
    Table::Vault,
    Table::VaultMeta,
];

fn load_state(snapshot: &Snapshot) -> Result<(Profiles, Defaults), ActorError> {
    let mut profiles = BTreeMap::new();
    for (_, value) in snapshot.rows(Table::AuthProfiles) {
        let record: AuthProfileRecord = decode_record(value)?;
        profiles.insert(record.profile_id.clone(), record);
    }
    let mut defaults = HashMap::new();
    for (key, value) in snapshot.rows(Table::AuthDefaults) {
        defaults.insert(
            String::from_utf8_lossy(key).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        );
    }
    Ok((profiles, defaults))
}

pub(crate) struct RegistryActor {
    pub(super) writer: Writer,
    /// Told about every change of an OAuth profile's schedule.
    pub(super) refresher: Option<Recipient<ScheduleChange>>,
    /// Sign-in attempts by id, and the attempt id by SHA-256 of its state.
    pub(super) attempts: Attempts,
    pub(super) attempts_by_state: AttemptsByState,
    /// OAuth settings per provider id, for tokens the actor stores.
    pub(super) providers_oauth: HashMap<String, OAuthSettings>,
    pub(super) vault: Vault,
    pub(super) profiles: Profiles,
    /// `provider|scope` -> profile id.
    pub(super) defaults: Defaults,
    /// For reloading after a failed commit.
    pub(super) storage: Storage,
    pub(super) reload: ReloadState,
    /// Old sign-in attempts found at start, deleted once the actor runs.
    pub(super) startup_purge: Vec<WriteOp>,
    /// Refresh outcomes and needs-reauth marks are audited in the same write.
    pub(super) audit: AuditLog,
    pub(super) metrics: ActorMetrics,
    /// What this node last saw of each profile row and its writes in flight per row.
    pub(super) sync: RowSync,
    /// This node's id, for refresh claims.
    pub(super) node_id: String,
}

impl Actor for RegistryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.follow_changes(ctx);
        // Abandoned sign-ins older than a day, and their sealed verifiers, go.
        let ops = std::mem::take(&mut self.startup_purge);
        if !ops.is_empty() {
            ctx.spawn(self.commit(ops).map(|result, _, _| {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "purging old sign-in attempts failed");
                }
            }));
        }
    }
}

impl Reloads for RegistryActor {
    const NAME: &'static str = "registry";
    const TABLES: &'static [Table] = &REGISTRY_TABLES;

    fn reload_state(&mut self) -> &mut ReloadState {
        &mut self.reload
    }

    fn storage(&self) -> &Storage {
        &self.storage
    }

    fn writer(&self) -> &Writer {
        &self.writer
    }

    /// Replaces profiles, defaults, attempts and sealed secrets with what storage
    /// holds, and re-sends every OAuth profile's schedule to the refresher.
    fn apply(&mut self, snapshot: Snapshot) -> Result<(), ActorError> {
        let (profiles, defaults) = load_state(&snapshot)?;
        let (attempts, by_state) = load_attempts(&snapshot)?;
        self.profiles = profiles;
        self.defaults = defaults;
        self.attempts = attempts;
        self.attempts_by_state = by_state;
        self.vault.replace_sealed(&snapshot);
        self.vault.replace_meta(&snapshot);
        self.sync.reset(&snapshot);
        let ids: Vec<String> = self.profiles.keys().cloned().collect();
        for id in ids {
            let record = self.profiles.get(&id).cloned();
            self.notify_refresher(record.as_ref(), &id);
        }
        Ok(())
    }
}

impl RegistryActor {
    /// Loads profiles, defaults and sign-in attempts. The vault must be open (and its
    /// start-up writes committed).
    // Each argument is a separate dependency the handle passes on.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn load(
        storage: &Storage,
        snapshot: &Snapshot,
        writer: Writer,
        vault: Vault,
        providers: &ProviderDirectory,
        audit: AuditLog,
        metrics: ActorMetrics,
        node_id: String,
    ) -> Result<Self, ActorError> {
        let (profiles, defaults) = load_state(snapshot)?;
        let (attempts, attempts_by_state) = load_attempts(snapshot)?;
        let startup_purge = stale_attempt_ops(snapshot)?;
        Ok(Self {
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
            reload: ReloadState::default(),
            startup_purge,
            audit,
            metrics,
            sync: RowSync::load(snapshot),
            node_id,
        })
    }

    pub(super) fn view(&self, record: &AuthProfileRecord) -> AuthProfile {
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

    /// The writes that remove the default pointing at `record`, if memory shows one;
    /// refused if another node pointed it elsewhere meanwhile.
    fn default_ops_removing(&self, record: &AuthProfileRecord) -> Option<(String, Vec<WriteOp>)> {
        let key = default_key(&record.provider, &record.scope);
        (self.defaults.get(&key) == Some(&record.profile_id)).then(|| {
            let ops = vec![
                WriteOp::Expect {
                    table: Table::AuthDefaults,
                    key: key.as_bytes().to_vec(),
                    value: record.profile_id.as_bytes().to_vec(),
                },
                WriteOp::delete(Table::AuthDefaults, key.as_bytes().to_vec()),
            ];
            (key, ops)
        })
    }
}

#[derive(Message)]
#[rtype(result = "Result<AuthProfile, ActorError>")]
pub(super) struct Upsert(pub(super) NewProfile);

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
        let now = to_datetime(now_ms());
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
            cooldown: None,
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
pub(super) type DefaultChanges = Vec<(String, Option<String>)>;

impl RegistryActor {
    /// The writes that create or replace `record` (whose secrets are in `sealed`),
    /// with `extra` in the same transaction: the profile, its secrets, the removal of
    /// secrets the replaced credential held and the new one does not, and the defaults.
    /// Keeps the replaced profile's creation time.
    pub(super) fn profile_write(
        &mut self,
        mut record: AuthProfileRecord,
        sealed: Vec<WriteOp>,
        set_default: bool,
        extra: Vec<WriteOp>,
    ) -> (AuthProfileRecord, Vec<WriteOp>, DefaultChanges) {
        let previous = self.profiles.get(&record.profile_id).cloned();
        if let Some(old) = &previous {
            record.created_at = old.created_at;
        }
        let new_refs: Vec<String> = record
            .credential
            .vault_refs()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let mut ops = vec![self.sync.put_profile(&record)];
        ops.extend(sealed);
        let mut default_changes = Vec::new();
        if let Some(old) = &previous {
            for old_ref in old.credential.vault_refs() {
                if !new_refs.iter().any(|r| r == old_ref) {
                    ops.push(Vault::delete(old_ref));
                }
            }
            let moved = old.provider != record.provider || old.scope != record.scope;
            if moved && let Some((key, removing)) = self.default_ops_removing(old) {
                ops.extend(removing);
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
    pub(super) fn apply_profile(
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

    /// Tells the refresher how an OAuth profile is now scheduled (or that it is gone).
    pub(super) fn notify_refresher(&self, record: Option<&AuthProfileRecord>, profile_id: &str) {
        let Some(refresher) = &self.refresher else {
            return;
        };
        let change = match record.and_then(schedule_entry) {
            Some(entry) => ScheduleChange::Upsert(entry),
            None => ScheduleChange::Remove(profile_id.to_owned()),
        };
        refresher.do_send(change);
    }
}

/// When the refresher should look at a profile: OAuth profiles only.
pub(super) fn schedule_entry(record: &AuthProfileRecord) -> Option<ScheduleEntry> {
    match &record.credential {
        AuthCredential::Oauth {
            expires_at,
            refresh_state,
            refreshable,
            ..
        } => Some(ScheduleEntry {
            profile_id: record.profile_id.clone(),
            provider: record.provider.clone(),
            expires_at: *expires_at,
            refreshable: *refreshable,
            last_success_at: refresh_state.last_success_at,
            next_attempt_at: refresh_state.next_attempt_at,
            needs_reauth: refresh_state.needs_reauth,
            failure_count: refresh_state.failure_count,
        }),
        AuthCredential::ApiKey { .. } => None,
    }
}

#[derive(Message)]
#[rtype(result = "Result<AuthProfile, ActorError>")]
pub(super) struct Get(pub(super) String);

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
pub(super) struct List {
    pub(super) filter: ProfileFilter,
    pub(super) limit: usize,
    pub(super) after: Option<String>,
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
        let (items, next_after) =
            crate::paging::page_of(matching.map(|r| self.view(r)), msg.limit, |p| {
                p.record.profile_id.clone()
            });
        Ok(ProfilePage { items, next_after })
    }
}

#[derive(Message)]
#[rtype(result = "Result<(), ActorError>")]
pub(super) struct Delete(pub(super) String);

impl Handler<Delete> for RegistryActor {
    type Result = ResponseActFuture<Self, Result<(), ActorError>>;

    fn handle(&mut self, Delete(id): Delete, _ctx: &mut Self::Context) -> Self::Result {
        let Some(record) = self.profiles.get(&id).cloned() else {
            return Box::pin(actix::fut::ready(Err(ActorError::NotFound {
                what: "auth profile",
                id,
            })));
        };
        let mut ops = self.sync.delete_profile(&id);
        ops.extend(
            record
                .credential
                .vault_refs()
                .into_iter()
                .map(Vault::delete),
        );
        if let Some((key, removing)) = self.default_ops_removing(&record) {
            ops.extend(removing);
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
pub(super) struct SetDefault(pub(super) String);

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
        // Refused if another node changed or deleted the profile meanwhile.
        let mut ops: Vec<WriteOp> = self.sync.expect_profile(&id).into_iter().collect();
        ops.push(WriteOp::Put {
            table: Table::AuthDefaults,
            key: key.as_bytes().to_vec(),
            value: id.as_bytes().to_vec(),
        });
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
pub(super) struct Health;

impl Handler<Health> for RegistryActor {
    type Result = Result<AuthHealthReport, ActorError>;

    fn handle(&mut self, _msg: Health, _ctx: &mut Self::Context) -> Self::Result {
        let now = to_datetime(now_ms());
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
    let mut advice = None;
    let mut can_refresh = false;
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
            refreshable,
            ..
        } => {
            can_refresh = *refreshable;
            // A token that cannot be refreshed is "expiring" a day ahead, not 15
            // minutes: the operator, not the daemon, has to act.
            let warn_ahead = if *refreshable {
                chrono::Duration::minutes(15)
            } else {
                chrono::Duration::days(1)
            };
            let (state, until) = if !present(access_token_vault_ref)?
                || (*refreshable && !present(refresh_token_vault_ref)?)
            {
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
                    Some(t) if *t - now < warn_ahead => (HealthState::Expiring, None),
                    _ => (HealthState::Ok, None),
                }
            };
            if !*refreshable {
                advice = Some(match expires_at {
                    Some(t) if *t <= now => {
                        "the access token expired and the provider gave no refresh token: sign in again".to_owned()
                    }
                    Some(t) => format!(
                        "the provider gave no refresh token: sign in again before {}",
                        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                    None => "the provider gave no refresh token and no expiry: sign in again when the provider refuses the token".to_owned(),
                });
            }
            (state, until, *expires_at, Some(rs.clone()))
        }
    };
    // A provider-call cooldown outranks every state but a missing or refused
    // credential: resolution skips the profile until it ends.
    let cooldown = record.cooldown.clone().filter(|c| c.until > now);
    let (state, until) = match &cooldown {
        Some(c) if !matches!(state, HealthState::Missing | HealthState::NeedsReauth) => {
            let state = if c.reason == CooldownReason::RateLimited {
                HealthState::RateLimited
            } else {
                HealthState::CoolingDown
            };
            (state, Some(c.until))
        }
        _ => (state, until),
    };
    Ok(ProfileHealth {
        profile_id: record.profile_id.clone(),
        provider: record.provider.clone(),
        scope: record.scope.clone(),
        state,
        until,
        expires_at,
        refresh_state,
        cooldown,
        refreshable: can_refresh,
        advice,
    })
}

#[derive(Message)]
#[rtype(result = "Result<SecretString, ActorError>")]
pub(super) struct OpenApiKey(pub(super) String);

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
pub(super) struct RotateKey;

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
                    let started = started.and_then(|begun| match act.reload.refusal("registry") {
                        Some(refused) => {
                            act.vault.abort_rotation();
                            Err(refused)
                        }
                        None => Ok(begun),
                    });
                    // The vault learns of the re-sealed secrets only once they are durable:
                    // until then the old key opens what memory holds.
                    let durable = started.map(|(ops, count)| (act.writer.submit(ops.clone()), ops, count));
                    async move {
                        match durable {
                            Ok((write, ops, count)) => (write.await.map_err(ActorError::from).map(|()| (ops, count)), previous_key_id, true),
                            Err(e) => (Err(e), previous_key_id, false),
                        }
                    }
                    .into_actor(act)
                })
                .map(move |(result, previous_key_id, began), act, ctx| {
                    let report = match result {
                        Ok((ops, count)) => act.vault.finish_rotation().map_err(ActorError::from).map(|()| {
                            act.vault.note_writes(&ops);
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
                                // The commit's outcome may be unknown (a connection lost
                                // during COMMIT): keep both keys, in memory and in the key
                                // file, so whichever ciphertexts are durable still open;
                                // the next start on redb drops the key no stored secret names
                                // (on PostgreSQL the next rotation does).
                                reload(act, ctx);
                            }
                            Err(e)
                        }
                    };
                    let _ = done.send(report);
                }),
        );
        Box::pin(async move { answer.await.map_err(stopped("registry"))? })
    }
}

#[derive(Message)]
#[rtype(result = "VaultStatus")]
pub(super) struct GetVaultStatus;

impl Handler<GetVaultStatus> for RegistryActor {
    type Result = MessageResult<GetVaultStatus>;

    fn handle(&mut self, _msg: GetVaultStatus, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(VaultStatus {
            key_id: self.vault.active_key_id().to_owned(),
            key_source: self.vault.source(),
        })
    }
}

#[derive(Message)]
#[rtype(result = "Result<BearerCredential, ActorError>")]
pub(super) struct GetBearer(pub(super) String);

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
                expires_at.is_some_and(|t| t <= to_datetime(now_ms())),
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
            oauth: matches!(record.credential, AuthCredential::Oauth { .. }),
        })
    }
}

#[derive(Message)]
#[rtype(result = "Result<(), ActorError>")]
pub(super) struct MarkRejected(pub(super) String);

impl Handler<MarkRejected> for RegistryActor {
    type Result = ResponseActFuture<Self, Result<(), ActorError>>;

    fn handle(&mut self, MarkRejected(id): MarkRejected, _ctx: &mut Self::Context) -> Self::Result {
        let Some(mut record) = self.profiles.get(&id).cloned() else {
            return Box::pin(actix::fut::ready(Err(ActorError::NotFound {
                what: "auth profile",
                id,
            })));
        };
        let now = to_datetime(now_ms());
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
            self.sync.put_profile(&record),
            self.audit.op(AuditEntry::system(
                AuditKind::ProfileNeedsReauth,
                &record.profile_id,
                AuditOutcome::Failure,
                "the provider answered HTTP 401 to the credential",
            )),
            crate::notifications::events::profile_needs_reauth(
                &record.profile_id,
                "the provider answered HTTP 401 to the credential",
            ),
        ];
        tracing::warn!(profile_id = %record.profile_id, "the provider rejected the credential; marked needs_reauth");
        self.apply_profile(record, Vec::new());
        Box::pin(self.commit(ops))
    }
}
