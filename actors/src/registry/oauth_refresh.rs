//! The durable side of OAuth refreshes on the registry: the refresh token and state
//! the refresher needs, the result of a refresh made durable (rotated tokens, refresh
//! state, audit), the schedule the refresher follows, and revocation before a delete.

use actix::prelude::*;
use chrono::{DateTime, Utc};

use super::actor::{RegistryActor, schedule_entry};
use super::handle::RegistryHandle;
use super::model::{AuthCredential, AuthProfile, RefreshState};
use crate::audit::{AuditEntry, AuditKind, AuditOutcome};
use crate::error::{ActorError, stopped};
use crate::oauth::revoke_token;
use crate::refresh_schedule::{ScheduleChange, ScheduleEntry};
use crate::secret::SecretString;
use crate::time::{now_ms, to_datetime};

/// What the refresher needs for one refresh.
#[derive(Debug)]
pub struct RefreshInput {
    pub provider: String,
    pub refresh_token: SecretString,
    pub expires_at: Option<DateTime<Utc>>,
    pub refresh_state: RefreshState,
}

/// The result of one refresh attempt, to be made durable.
#[derive(Debug, Clone)]
pub enum RefreshResult {
    Success {
        access_token: SecretString,
        refresh_token: Option<SecretString>,
        expires_at: Option<DateTime<Utc>>,
    },
    Transient {
        reason: String,
        next_attempt_at: DateTime<Utc>,
        rate_limited_until: Option<DateTime<Utc>>,
    },
    Permanent {
        reason: String,
    },
}

impl RegistryHandle {
    /// The refresh token and state of an OAuth profile, for the refresher.
    pub async fn refresh_input(&self, profile_id: &str) -> Result<RefreshInput, ActorError> {
        self.addr()
            .send(GetRefreshInput(profile_id.to_owned()))
            .await
            .map_err(stopped("registry"))?
    }

    /// Makes a refresh's result durable, if this node still holds the claim at
    /// `generation` (`refresh_claim.rs`). A failure of an attempt that started before
    /// a newer success is ignored.
    pub(crate) async fn record_refresh(
        &self,
        profile_id: &str,
        started_at: DateTime<Utc>,
        generation: u64,
        result: RefreshResult,
    ) -> Result<AuthProfile, ActorError> {
        self.retrying(|| RecordRefresh {
            profile_id: profile_id.to_owned(),
            started_at,
            generation,
            result: result.clone(),
        })
        .await
    }

    /// Every OAuth profile's schedule, for the refresher at start.
    pub async fn oauth_schedule(&self) -> Result<Vec<ScheduleEntry>, ActorError> {
        self.addr()
            .send(OAuthSchedule)
            .await
            .map_err(stopped("registry"))
    }

    /// Connects the refresher: the registry tells it about every schedule change.
    /// Crate-private: the recipient is an actix type.
    pub(crate) async fn attach_refresher(
        &self,
        recipient: Recipient<ScheduleChange>,
    ) -> Result<(), ActorError> {
        self.addr()
            .send(AttachRefresher(recipient))
            .await
            .map_err(stopped("registry"))
    }

    /// Revokes an OAuth profile's refresh token at the provider, if the provider has a
    /// revocation endpoint (best effort, two tries), before the profile is deleted.
    pub(crate) async fn revoke_before_delete(&self, profile_id: &str) {
        let Ok(input) = self.refresh_input(profile_id).await else {
            return;
        };
        let Ok((_, oauth)) = self.oauth_client(&input.provider).await else {
            return;
        };
        let Some(endpoint) = &oauth.revocation_endpoint else {
            return;
        };
        // Bounded (two tries of at most 5 s) so a slow provider cannot hold up the
        // delete past the client's timeout.
        for attempt in 1..=2u64 {
            let call = revoke_token(self.http(), &oauth, endpoint, &input.refresh_token);
            match tokio::time::timeout(std::time::Duration::from_secs(5), call).await {
                Ok(Ok(())) => {
                    tracing::info!(%profile_id, "refresh token revoked at the provider");
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(%profile_id, attempt, error = %e, "token revocation failed");
                }
                Err(_) => tracing::warn!(%profile_id, attempt, "token revocation timed out"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}

#[derive(Message)]
#[rtype(result = "Result<RefreshInput, ActorError>")]
struct GetRefreshInput(String);

impl Handler<GetRefreshInput> for RegistryActor {
    type Result = Result<RefreshInput, ActorError>;

    fn handle(
        &mut self,
        GetRefreshInput(id): GetRefreshInput,
        _ctx: &mut Self::Context,
    ) -> Self::Result {
        let record = self.profiles.get(&id).ok_or_else(|| ActorError::NotFound {
            what: "auth profile",
            id: id.clone(),
        })?;
        let AuthCredential::Oauth {
            refresh_token_vault_ref,
            expires_at,
            refresh_state,
            refreshable,
            ..
        } = &record.credential
        else {
            return Err(ActorError::invalid("profile_id", "not an OAuth profile"));
        };
        if !refreshable {
            return Err(ActorError::RefreshRefused(
                "the provider gave this profile no refresh token".into(),
            ));
        }
        let refresh_token =
            self.vault
                .open_secret(refresh_token_vault_ref)?
                .ok_or(ActorError::NotFound {
                    what: "refresh token of auth profile",
                    id,
                })?;
        Ok(RefreshInput {
            provider: record.provider.clone(),
            refresh_token,
            expires_at: *expires_at,
            refresh_state: refresh_state.clone(),
        })
    }
}

#[derive(Message)]
#[rtype(result = "Result<AuthProfile, ActorError>")]
struct RecordRefresh {
    profile_id: String,
    started_at: DateTime<Utc>,
    /// The generation this node claimed the refresh at.
    generation: u64,
    result: RefreshResult,
}

impl Handler<RecordRefresh> for RegistryActor {
    type Result = ResponseActFuture<Self, Result<AuthProfile, ActorError>>;

    fn handle(&mut self, msg: RecordRefresh, _ctx: &mut Self::Context) -> Self::Result {
        // After a failed write memory still shows it until the reload: the checks
        // below would take that unstored outcome for one that stands.
        if let Some(refused) = self.reload.refusal("registry") {
            return Box::pin(actix::fut::ready(Err(refused)));
        }
        let Some(mut record) = self.profiles.get(&msg.profile_id).cloned() else {
            return Box::pin(actix::fut::ready(Err(ActorError::NotFound {
                what: "auth profile",
                id: msg.profile_id,
            })));
        };
        let now = to_datetime(now_ms());
        let mut sealed = Vec::new();
        let audit;
        let counted;
        {
            let AuthCredential::Oauth {
                access_token_vault_ref,
                refresh_token_vault_ref,
                expires_at,
                refresh_state,
                ..
            } = &mut record.credential
            else {
                return Box::pin(actix::fut::ready(Err(ActorError::invalid(
                    "profile_id",
                    "not an OAuth profile",
                ))));
            };
            let superseded = refresh_state
                .last_success_at
                .is_some_and(|success| success > msg.started_at);
            if superseded {
                // A newer success (a refresh or a new sign-in) already stands; the result
                // of an attempt that started before it changes nothing.
                let view = self.view(&record);
                return Box::pin(actix::fut::ready(Ok(view)));
            }
            // This attempt's own outcome, stored by an earlier try whose answer was
            // lost with the connection (`refresher.rs` tries again): nothing to add.
            let stored_before = refresh_state.claim.is_none()
                && refresh_state.last_attempt_at == Some(msg.started_at)
                && (refresh_state.generation == msg.generation
                    || refresh_state.generation == msg.generation + 1);
            if stored_before {
                let view = self.view(&record);
                return Box::pin(actix::fut::ready(Ok(view)));
            }
            let ours = refresh_state.generation == msg.generation
                && refresh_state
                    .claim
                    .as_ref()
                    .is_some_and(|c| c.node_id == self.node_id);
            if !ours {
                // The claim expired and another node took the refresh over (or a new
                // sign-in replaced the tokens): what this attempt got is not stored.
                tracing::error!(profile_id = %msg.profile_id, "the refresh claim was lost before its result was stored; the tokens it got are dropped");
                return Box::pin(actix::fut::ready(Err(ActorError::Conflict(
                    "the refresh claim was taken over by another node before its result was stored"
                        .into(),
                ))));
            }
            refresh_state.claim = None;
            let next_generation = refresh_state.generation + 1;
            refresh_state.last_attempt_at = Some(msg.started_at);
            let (kind, outcome, detail, outcome_label) = match &msg.result {
                RefreshResult::Success { .. } => (
                    AuditKind::ProfileRefreshed,
                    AuditOutcome::Success,
                    String::new(),
                    "success",
                ),
                RefreshResult::Transient { reason, .. } => (
                    AuditKind::ProfileRefreshed,
                    AuditOutcome::Failure,
                    format!("transient: {reason}"),
                    "transient",
                ),
                RefreshResult::Permanent { reason } => (
                    AuditKind::ProfileNeedsReauth,
                    AuditOutcome::Failure,
                    format!("permanent: {reason}"),
                    "permanent",
                ),
            };
            counted = outcome_label;
            audit = Some(
                self.audit
                    .op(AuditEntry::system(kind, &msg.profile_id, outcome, detail)),
            );
            match msg.result {
                RefreshResult::Success {
                    access_token,
                    refresh_token,
                    expires_at: new_expiry,
                } => {
                    sealed.push(self.vault.seal(access_token_vault_ref, &access_token));
                    if let Some(rotated) = &refresh_token {
                        sealed.push(self.vault.seal(refresh_token_vault_ref, rotated));
                    }
                    *expires_at = new_expiry;
                    *refresh_state = RefreshState {
                        last_attempt_at: Some(msg.started_at),
                        last_success_at: Some(now),
                        generation: next_generation,
                        ..RefreshState::default()
                    };
                }
                RefreshResult::Transient {
                    reason,
                    next_attempt_at,
                    rate_limited_until,
                } => {
                    refresh_state.failure_count = refresh_state.failure_count.saturating_add(1);
                    refresh_state.last_error = Some(reason);
                    refresh_state.next_attempt_at = Some(next_attempt_at);
                    refresh_state.cooling_down_until = Some(next_attempt_at);
                    refresh_state.rate_limited_until = rate_limited_until;
                }
                RefreshResult::Permanent { reason } => {
                    refresh_state.failure_count = refresh_state.failure_count.saturating_add(1);
                    refresh_state.last_error = Some(reason);
                    refresh_state.needs_reauth = true;
                    refresh_state.next_attempt_at = None;
                    refresh_state.cooling_down_until = None;
                }
            }
        }
        record.updated_at = now;
        let mut ops = vec![self.sync.put_profile(&record)];
        ops.extend(sealed);
        ops.extend(audit);
        ops.extend(crate::notifications::events::refresh_recorded(&record));
        self.apply_profile(record.clone(), Vec::new());
        Box::pin(self.commit(ops).map(move |result, act, _| {
            result?;
            // Counted once stored: a try that failed and is sent again counts once.
            act.metrics.count_refresh(counted);
            Ok(act.view(&record))
        }))
    }
}

#[derive(Message)]
#[rtype(result = "Vec<ScheduleEntry>")]
struct OAuthSchedule;

impl Handler<OAuthSchedule> for RegistryActor {
    type Result = MessageResult<OAuthSchedule>;

    fn handle(&mut self, _msg: OAuthSchedule, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.profiles.values().filter_map(schedule_entry).collect())
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct AttachRefresher(Recipient<ScheduleChange>);

impl Handler<AttachRefresher> for RegistryActor {
    type Result = ();

    fn handle(&mut self, msg: AttachRefresher, _ctx: &mut Self::Context) {
        self.refresher = Some(msg.0);
    }
}
