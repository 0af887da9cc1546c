//! OAuth sign-in on the registry actor: attempts (PKCE, persisted, single use), the
//! callback's checks, and the profile a successful sign-in stores. The durable side of
//! refreshes is in `oauth_refresh.rs`.
//!
//! Network calls (code exchange, token validation, refresh, revocation) run in the
//! handle or the refresher, never inside the actor; the actor only claims attempts,
//! seals tokens and commits.

use actix::prelude::*;
use chrono::{DateTime, Utc};
use palyra_storage::{Table, WriteOp, decode_record, encode_record};
use serde::{Deserialize, Serialize};

use super::actor::RegistryActor;
pub use super::attempts::AttemptStatus;
use super::attempts::{AttemptRecord, state_digest, verifier_ref};
use super::handle::RegistryHandle;
use super::model::{
    AuthCredential, AuthProfileRecord, AuthProfileScope, RefreshState, generated_profile_id,
    validate_profile_name, validate_provider, validate_scope, vault_ref,
};
use super::rows::is_changed_elsewhere;
use crate::audit::{AuditEntry, AuditKind, AuditOutcome};
use crate::error::{ActorError, stopped};
use crate::ids::validate_profile_id;
use crate::oauth::{
    OAuthSettings, TokenSet, build_authorization_url, exchange_authorization_code,
    generate_attempt_id, generate_pkce_verifier, generate_state, pkce_challenge, sanitize_code,
    sanitize_description,
};
use crate::provider::ProviderSettings;
use crate::secret::SecretString;
use crate::time::{now_ms, to_datetime};
use crate::vault::Vault;

/// A sign-in request (`bootstrap`).
#[derive(Debug, Clone)]
pub struct SignInRequest {
    pub provider: String,
    pub profile_id: Option<String>,
    pub profile_name: String,
    pub scope: AuthProfileScope,
    pub scopes: Option<Vec<String>>,
    pub set_default: bool,
}

/// What `bootstrap` answers. Its `Debug` leaves out the URL, which carries the state.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SignInStarted {
    pub attempt_id: String,
    /// Open this in a browser to sign in.
    pub authorization_url: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for SignInStarted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInStarted")
            .field("attempt_id", &self.attempt_id)
            .field("authorization_url", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The query of the provider's redirect to the callback.
#[derive(Debug, Default)]
pub struct CallbackParams {
    pub code: Option<SecretString>,
    pub state: Option<SecretString>,
    pub error: Option<String>,
    /// The provider's explanation of `error`, shown to the operator (sanitized).
    pub error_description: Option<String>,
    /// RFC 9207: the issuer of the answer, checked against the provider's.
    pub iss: Option<String>,
}

/// The outcome of a callback: the attempt and where it now stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignInOutcome {
    pub attempt_id: String,
    pub provider: String,
    #[serde(flatten)]
    pub status: AttemptStatus,
}

/// The schema of [`SignInOutcome`] as what goes on the wire: one flat object. The
/// derived one (an object `allOf` a `oneOf` of the flattened status) is refused by
/// client generators ("Cannot take allOf a non-object").
impl utoipa::PartialSchema for SignInOutcome {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let string = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(description))
        };
        ObjectBuilder::new()
            .description(Some("Where a sign-in attempt stands."))
            .property("attempt_id", string("The attempt."))
            .required("attempt_id")
            .property("provider", string("The provider signed in to."))
            .required("provider")
            .property(
                "state",
                string("pending, succeeded (with profile_id) or failed (with reason).")
                    .enum_values(Some(["pending", "succeeded", "failed"])),
            )
            .required("state")
            .property(
                "profile_id",
                string("With succeeded: the profile the sign-in stored."),
            )
            .property("reason", string("With failed: why."))
            .into()
    }
}

impl utoipa::ToSchema for SignInOutcome {}

pub(super) fn oauth_settings<'a>(
    handle: &'a RegistryHandle,
    provider: &str,
) -> Result<(&'a ProviderSettings, &'a OAuthSettings), ActorError> {
    let settings = handle.providers().get(provider).ok_or_else(|| {
        ActorError::invalid("provider", format!("provider {provider} is not configured"))
    })?;
    let oauth = settings.oauth.as_ref().ok_or_else(|| {
        ActorError::invalid(
            "provider",
            format!(
                "provider {provider} is not configured for OAuth: set authorization_endpoint, token_endpoint and client_id in [providers]"
            ),
        )
    })?;
    Ok((settings, oauth))
}

pub(super) fn validate_scopes(scopes: &[String]) -> Result<(), ActorError> {
    let ok = scopes.len() <= 64
        && scopes
            .iter()
            .all(|s| !s.is_empty() && s.len() <= 256 && s.bytes().all(|b| b.is_ascii_graphic()));
    if ok {
        Ok(())
    } else {
        Err(ActorError::invalid(
            "scopes",
            "at most 64 scopes of 1 to 256 printable characters without spaces",
        ))
    }
}

impl RegistryHandle {
    /// Starts a sign-in: PKCE verifier and state, persisted attempt, authorization URL.
    /// `redirect_uri` is the daemon's callback for this provider.
    pub async fn begin_sign_in(
        &self,
        req: SignInRequest,
        redirect_uri: String,
        ttl: std::time::Duration,
    ) -> Result<SignInStarted, ActorError> {
        validate_provider(&req.provider)?;
        if let Some(id) = &req.profile_id {
            validate_profile_id(id)?;
        }
        validate_profile_name(&req.profile_name)?;
        validate_scope(&req.scope)?;
        let (_, oauth) = oauth_settings(self, &req.provider)?;
        self.require_client_secret(&req.provider, oauth).await?;
        let scopes = req.scopes.unwrap_or_else(|| oauth.scopes.clone());
        validate_scopes(&scopes)?;
        let verifier = generate_pkce_verifier();
        let state = generate_state();
        let attempt_id = generate_attempt_id();
        let authorization_url = build_authorization_url(
            oauth,
            &redirect_uri,
            &scopes,
            state.expose(),
            &pkce_challenge(verifier.expose()),
        )
        .map_err(|e| ActorError::invalid("provider", e.to_string()))?;
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let record = AttemptRecord {
            attempt_id: attempt_id.clone(),
            profile_id: req
                .profile_id
                .unwrap_or_else(|| generated_profile_id(&req.provider)),
            provider: req.provider,
            profile_name: req.profile_name,
            scope: req.scope,
            scopes,
            set_default: req.set_default,
            state_digest: state_digest(state.expose()),
            redirect_uri,
            expires_at_ms: now_ms().saturating_add(ttl_ms),
            status: AttemptStatus::Pending,
        };
        let expires_at = to_datetime(record.expires_at_ms);
        self.addr()
            .send(StartAttempt { record, verifier })
            .await
            .map_err(stopped("registry"))??;
        Ok(SignInStarted {
            attempt_id,
            authorization_url,
            expires_at,
        })
    }

    /// Completes a sign-in from the provider's redirect: claims the attempt by its
    /// state (once), exchanges the code, validates the access token, and stores the
    /// tokens and the profile in one durable transaction.
    pub async fn complete_sign_in(
        &self,
        provider: &str,
        params: CallbackParams,
    ) -> Result<SignInOutcome, ActorError> {
        let Some(state) = params.state.filter(|s| !s.is_empty()) else {
            return Err(ActorError::SignIn("the callback carries no state".into()));
        };
        let digest = state_digest(state.expose());
        let claim = || ClaimAttempt {
            provider: provider.to_owned(),
            state_digest: digest.clone(),
        };
        let mut claimed = self
            .addr()
            .send(claim())
            .await
            .map_err(stopped("registry"))?;
        if matches!(claimed, Err(ActorError::SignIn(_))) && self.read_through_state(&digest).await {
            // Started on another node a moment ago: its row is in memory now.
            claimed = self
                .addr()
                .send(claim())
                .await
                .map_err(stopped("registry"))?;
        }
        let (record, verifier) = claimed?;
        let attempt_id = record.attempt_id.clone();
        let issuer = oauth_settings(self, provider).map(|(_, o)| o.issuer.clone());
        let result = match (params.iss, params.error, params.code) {
            // A mix-up attack (RFC 9207): the answer comes from another authorization
            // server than the one this attempt went to. The attempt is used up.
            (Some(iss), _, _) if issuer.as_ref().is_ok_and(|i| *i != iss) => Err(format!(
                "the callback's iss {:?} is not the provider's issuer {:?}; set issuer in the provider's config if the provider's is right",
                sanitize_description(&iss),
                issuer.unwrap_or_default()
            )),
            (_, Some(error), _) => {
                let description = params
                    .error_description
                    .as_deref()
                    .map(sanitize_description)
                    .filter(|d| !d.is_empty())
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default();
                Err(format!(
                    "the provider refused the sign-in: {}{description}",
                    sanitize_code(&error)
                ))
            }
            (_, None, None) => Err("the provider sent neither a code nor an error".into()),
            (_, None, Some(code)) => self.exchange(&record, &code, &verifier).await,
        };
        drop(verifier);
        let status = self
            .addr()
            .send(FinishAttempt {
                attempt_id: attempt_id.clone(),
                result,
            })
            .await
            .map_err(stopped("registry"))??;
        Ok(SignInOutcome {
            attempt_id,
            provider: provider.to_owned(),
            status,
        })
    }

    async fn exchange(
        &self,
        record: &AttemptRecord,
        code: &SecretString,
        verifier: &SecretString,
    ) -> Result<TokenSet, String> {
        // With the client secret opened from the vault; dropped (zeroized) on return.
        let (settings, oauth) = self
            .oauth_client(&record.provider)
            .await
            .map_err(|e| e.to_string())?;
        let tokens =
            exchange_authorization_code(self.http(), &oauth, code, &record.redirect_uri, verifier)
                .await
                .map_err(|e| format!("code exchange failed: {e}"))?;
        super::token_check::checked(self.http(), settings, &oauth, tokens).await
    }

    /// Where a sign-in attempt stands.
    pub async fn sign_in_state(&self, attempt_id: &str) -> Result<SignInOutcome, ActorError> {
        let ask = || AttemptState(attempt_id.to_owned());
        let answer = self.addr().send(ask()).await.map_err(stopped("registry"))?;
        if !matches!(answer, Err(ActorError::NotFound { .. })) || !self.storage().is_shared() {
            return answer;
        }
        // Started on another node a moment ago, before its change reached this one.
        let row = self
            .storage()
            .read_row(Table::OAuthAttempts, attempt_id.as_bytes())
            .await?;
        let Some(bytes) = row else { return answer };
        self.addr()
            .send(ObservedAttempt(vec![(
                Table::OAuthAttempts,
                attempt_id.as_bytes().to_vec(),
                bytes,
            )]))
            .await
            .map_err(stopped("registry"))?;
        self.addr().send(ask()).await.map_err(stopped("registry"))?
    }

    /// On several nodes, a state this node does not know may belong to an attempt
    /// another node started a moment ago: finds it in storage and hands it to memory.
    /// True if found.
    async fn read_through_state(&self, digest: &str) -> bool {
        if !self.storage().is_shared() {
            return false;
        }
        let Ok(rows) = self.storage().read_table(Table::OAuthAttempts).await else {
            return false;
        };
        for (key, bytes) in rows {
            let matches = decode_record::<AttemptRecord>(&bytes)
                .is_ok_and(|r| r.state_digest == digest && r.status == AttemptStatus::Pending);
            if matches {
                // Its sealed verifier too, written in the same transaction.
                let id = String::from_utf8_lossy(&key).into_owned();
                let verifier = verifier_ref(&id);
                let Ok(Some(sealed)) = self
                    .storage()
                    .read_row(Table::Vault, verifier.as_bytes())
                    .await
                else {
                    return false;
                };
                let observed = self
                    .addr()
                    .send(ObservedAttempt(vec![
                        (Table::Vault, verifier.into_bytes(), sealed),
                        (Table::OAuthAttempts, key, bytes),
                    ]))
                    .await;
                return observed.is_ok();
            }
        }
        false
    }
}

impl RegistryActor {
    /// Takes a pending attempt by its state, once: the state leaves the index and the
    /// stored attempt is marked as interrupted until the exchange finishes.
    fn claim(
        &mut self,
        msg: &ClaimAttempt,
    ) -> Result<(AttemptRecord, SecretString, Vec<WriteOp>), ActorError> {
        let rejected =
            || ActorError::SignIn("unknown, expired or already used sign-in state".into());
        let attempt_id = self
            .attempts_by_state
            .get(&msg.state_digest)
            .cloned()
            .ok_or_else(rejected)?;
        let record = self
            .attempts
            .get(&attempt_id)
            .cloned()
            .ok_or_else(rejected)?;
        if record.provider != msg.provider || record.status != AttemptStatus::Pending {
            return Err(rejected());
        }
        self.attempts_by_state.remove(&msg.state_digest);
        if record.expires_at_ms <= now_ms() {
            return Err(ActorError::SignIn(
                "the sign-in attempt has expired; start again".into(),
            ));
        }
        let verifier = self
            .vault
            .open_secret(&verifier_ref(&attempt_id))?
            .ok_or_else(rejected)?;
        let mut interrupted = record.clone();
        interrupted.status = AttemptStatus::Failed {
            reason: "the daemon stopped during the code exchange; start again".into(),
        };
        // Conditional on the attempt still pending as stored: of two nodes that get the
        // same callback, one claims it.
        let ops = vec![WriteOp::CompareAndSet {
            table: Table::OAuthAttempts,
            key: attempt_id.as_bytes().to_vec(),
            expected: Some(encode_record(&record)),
            value: encode_record(&interrupted),
        }];
        self.attempts.insert(attempt_id, interrupted);
        Ok((record, verifier, ops))
    }
}

#[derive(Message)]
#[rtype(result = "Result<(), ActorError>")]
pub(super) struct StartAttempt {
    pub(super) record: AttemptRecord,
    /// The PKCE verifier, or a device grant's device code: sealed with the attempt.
    pub(super) verifier: SecretString,
}

impl Handler<StartAttempt> for RegistryActor {
    type Result = ResponseActFuture<Self, Result<(), ActorError>>;

    fn handle(&mut self, msg: StartAttempt, _ctx: &mut Self::Context) -> Self::Result {
        let record = msg.record;
        let ops = vec![
            self.vault
                .seal(&verifier_ref(&record.attempt_id), &msg.verifier),
            WriteOp::put(record.attempt_id.as_bytes().to_vec(), &record),
        ];
        drop(msg.verifier);
        // Finished or expired attempts are kept a day for `callback-state`, then
        // forgotten (their rows go at the next start).
        let horizon = now_ms() - 24 * 3600 * 1000;
        self.attempts.retain(|_, a| a.expires_at_ms >= horizon);
        tracing::info!(attempt_id = %record.attempt_id, provider = %record.provider, "OAuth sign-in started");
        self.attempts_by_state
            .insert(record.state_digest.clone(), record.attempt_id.clone());
        self.attempts.insert(record.attempt_id.clone(), record);
        Box::pin(self.commit(ops))
    }
}

#[derive(Message)]
#[rtype(result = "Result<(AttemptRecord, SecretString), ActorError>")]
struct ClaimAttempt {
    provider: String,
    state_digest: String,
}

impl Handler<ClaimAttempt> for RegistryActor {
    type Result = ResponseActFuture<Self, Result<(AttemptRecord, SecretString), ActorError>>;

    fn handle(&mut self, msg: ClaimAttempt, _ctx: &mut Self::Context) -> Self::Result {
        let claimed = self.claim(&msg);
        let (record, verifier, ops) = match claimed {
            Ok(x) => x,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        // The claim is durable before the code is redeemed: after a crash during the
        // exchange, the same callback cannot be accepted a second time.
        Box::pin(self.commit(ops).map(move |result, _act, _| {
            if is_changed_elsewhere(&result) {
                return Err(ActorError::SignIn(
                    "the sign-in attempt was already completed on another node".into(),
                ));
            }
            result?;
            Ok((record, verifier))
        }))
    }
}

#[derive(Message)]
#[rtype(result = "Result<AttemptStatus, ActorError>")]
pub(super) struct FinishAttempt {
    pub(super) attempt_id: String,
    pub(super) result: Result<TokenSet, String>,
}

impl Handler<FinishAttempt> for RegistryActor {
    type Result = ResponseActFuture<Self, Result<AttemptStatus, ActorError>>;

    fn handle(&mut self, msg: FinishAttempt, _ctx: &mut Self::Context) -> Self::Result {
        let Some(mut attempt) = self.attempts.get(&msg.attempt_id).cloned() else {
            return Box::pin(actix::fut::ready(Err(ActorError::NotFound {
                what: "sign-in attempt",
                id: msg.attempt_id,
            })));
        };
        let mut extra = vec![Vault::delete(&verifier_ref(&attempt.attempt_id))];
        let mut profile = None;
        attempt.status = match msg.result {
            Err(reason) => AttemptStatus::Failed { reason },
            Ok(tokens) => {
                let Some(settings) = self.providers_oauth.get(&attempt.provider).cloned() else {
                    return Box::pin(actix::fut::ready(Err(ActorError::invalid(
                        "provider",
                        "no longer configured for OAuth",
                    ))));
                };
                let id = attempt.profile_id.clone();
                let access_ref = vault_ref(&attempt.scope, &id, "access_token");
                let refresh_ref = vault_ref(&attempt.scope, &id, "refresh_token");
                let now = to_datetime(now_ms());
                // The generation goes on from the profile this sign-in replaces, so a
                // refresh claimed on the old tokens cannot commit over the new ones.
                let generation = match self.profiles.get(&id).map(|p| &p.credential) {
                    Some(AuthCredential::Oauth { refresh_state, .. }) => {
                        refresh_state.generation + 1
                    }
                    _ => 0,
                };
                let mut sealed = vec![self.vault.seal(&access_ref, &tokens.access_token)];
                let refreshable = tokens.refresh_token.is_some();
                match &tokens.refresh_token {
                    Some(refresh) => sealed.push(self.vault.seal(&refresh_ref, refresh)),
                    // A refresh token of the profile this sign-in replaces must not
                    // stay behind to be redeemed for the new one.
                    None => {
                        sealed.push(Vault::delete(&refresh_ref));
                        tracing::warn!(profile_id = %id, "the provider issued no refresh token: the profile works until its access token expires, then needs a new sign-in");
                    }
                }
                let record = AuthProfileRecord {
                    profile_id: id.clone(),
                    provider: attempt.provider.clone(),
                    profile_name: attempt.profile_name.clone(),
                    scope: attempt.scope.clone(),
                    credential: AuthCredential::Oauth {
                        access_token_vault_ref: access_ref,
                        refresh_token_vault_ref: refresh_ref,
                        token_endpoint: settings.token_endpoint.clone(),
                        client_id: settings.client_id,
                        scopes: attempt.scopes.clone(),
                        expires_at: tokens.expires_in.map(|s| {
                            now + chrono::Duration::seconds(
                                i64::try_from(s)
                                    .unwrap_or(i64::MAX / 2_000)
                                    .min(10 * 365 * 86_400),
                            )
                        }),
                        refresh_state: RefreshState {
                            last_success_at: Some(now),
                            generation,
                            ..RefreshState::default()
                        },
                        refreshable,
                    },
                    created_at: now,
                    updated_at: now,
                    // A new sign-in starts without the old credential's cooldown.
                    cooldown: None,
                };
                profile = Some((record, sealed, attempt.set_default));
                AttemptStatus::Succeeded { profile_id: id }
            }
        };
        extra.push(WriteOp::put(
            attempt.attempt_id.as_bytes().to_vec(),
            &attempt,
        ));
        // A device sign-in ends in the background, not in a request the HTTP layer
        // audits: its end is audited here, in the same transaction.
        if attempt.redirect_uri.is_empty() {
            let (kind, outcome, detail) = match &attempt.status {
                AttemptStatus::Succeeded { profile_id } => (
                    AuditKind::SigninCompleted,
                    AuditOutcome::Success,
                    format!(
                        "provider {}, profile {profile_id}, device",
                        attempt.provider
                    ),
                ),
                AttemptStatus::Failed { reason } => (
                    AuditKind::SigninFailed,
                    AuditOutcome::Failure,
                    format!("provider {}, device: {reason}", attempt.provider),
                ),
                AttemptStatus::Pending => (
                    AuditKind::SigninFailed,
                    AuditOutcome::Failure,
                    String::new(),
                ),
            };
            extra.push(self.audit.op(AuditEntry::system(
                kind,
                &attempt.attempt_id,
                outcome,
                detail,
            )));
        }
        let (ops, applied) = match profile {
            Some((record, sealed, set_default)) => {
                let (record, ops, defaults) =
                    self.profile_write(record, sealed, set_default, extra);
                (ops, Some((record, defaults)))
            }
            None => (extra, None),
        };
        if let Some((record, defaults)) = applied {
            tracing::info!(profile_id = %record.profile_id, provider = %record.provider, "OAuth profile saved");
            self.apply_profile(record, defaults);
        }
        if let AttemptStatus::Failed { reason } = &attempt.status {
            tracing::warn!(attempt_id = %attempt.attempt_id, %reason, "OAuth sign-in failed");
        }
        let status = attempt.status.clone();
        self.attempts.insert(attempt.attempt_id.clone(), attempt);
        Box::pin(self.commit(ops).map(move |result, _act, _| {
            result?;
            Ok(status)
        }))
    }
}

/// An attempt row read from storage by the handle (read-through): memory takes it.
#[derive(Message)]
#[rtype(result = "()")]
struct ObservedAttempt(Vec<(Table, Vec<u8>, Vec<u8>)>);

impl Handler<ObservedAttempt> for RegistryActor {
    type Result = ();

    fn handle(&mut self, ObservedAttempt(rows): ObservedAttempt, _ctx: &mut Self::Context) {
        for (table, key, bytes) in rows {
            self.observe_row(table, &key, bytes);
        }
    }
}

#[derive(Message)]
#[rtype(result = "Result<SignInOutcome, ActorError>")]
struct AttemptState(String);

impl Handler<AttemptState> for RegistryActor {
    type Result = Result<SignInOutcome, ActorError>;

    fn handle(&mut self, AttemptState(id): AttemptState, _ctx: &mut Self::Context) -> Self::Result {
        let record = self.attempts.get(&id).ok_or_else(|| ActorError::NotFound {
            what: "sign-in attempt",
            id: id.clone(),
        })?;
        let status = match &record.status {
            AttemptStatus::Pending if record.expires_at_ms <= now_ms() => AttemptStatus::Failed {
                reason: "the sign-in attempt expired".into(),
            },
            other => other.clone(),
        };
        Ok(SignInOutcome {
            attempt_id: id,
            provider: record.provider.clone(),
            status,
        })
    }
}
