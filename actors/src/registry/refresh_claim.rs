//! A refresh token redeemed by one node at a time, enforced by the database.
//!
//! - Claim: the profile is written with `refresh_state.claim` = {this node, until},
//!   conditional on the bytes this node last saw of it; the token endpoint is called
//!   only once that write applied. `until` is [`CLAIM_TTL`] ahead, longer than the
//!   refresh's own deadline, so a live claimer never loses the claim mid-call.
//! - Commit (`oauth_refresh.rs`, `RecordRefresh`): the new tokens and the profile with
//!   the next generation and no claim, in one write conditional on the claimed bytes; a
//!   claim taken over meanwhile stores nothing. A commit the database did not take (its
//!   connection lost, the server restarting) is tried again (`refresher.rs`,
//!   `store_outcome`), each try conditional on the claimed bytes again: the provider
//!   may have rotated the token already, so what the call got is the only copy of the
//!   profile's credential.
//! - Join: a refresh another node claimed is waited for by polling the row until the
//!   generation moves or the claim ends; a claim past its `until` may be taken over.

use std::time::Duration;

use actix::prelude::*;
use palyra_storage::{Table, WriteOp, decode_record};

use super::actor::RegistryActor;
use super::handle::RegistryHandle;
use super::model::{AuthCredential, AuthProfile, AuthProfileRecord, RefreshClaim};
use super::oauth_refresh::RefreshInput;
use crate::error::{ActorError, stopped};
use crate::outbound::OAUTH_TIMEOUT;
use crate::time::now_ms;

/// How long a refresh claim holds: the token request's own deadline plus room for the
/// claim and commit writes around it.
pub(crate) const CLAIM_TTL: Duration = Duration::from_secs(OAUTH_TIMEOUT.as_secs() + 10);

/// How often a joined refresh polls the profile row.
const JOIN_POLL: Duration = Duration::from_millis(100);

/// What a claim attempt found.
#[derive(Debug)]
pub(crate) enum ClaimAnswer {
    /// This node holds the claim: redeem the token, then commit.
    Claimed(Box<Claimed>),
    /// A live claim holds the profile at `generation`: wait for its outcome.
    InFlight { generation: u64 },
}

/// A refresh claim this node holds, and what the refresh needs.
#[derive(Debug)]
pub(crate) struct Claimed {
    pub(crate) input: RefreshInput,
    /// The token generation claimed.
    pub(crate) generation: u64,
    /// When other nodes may take the claim over (Unix ms).
    pub(crate) until_ms: i64,
}

/// How a refresh this node waited for ended.
#[derive(Debug)]
pub(crate) struct Joined {
    pub(crate) profile: AuthProfile,
    /// The generation moved: new tokens were stored.
    pub(crate) succeeded: bool,
}

impl RegistryHandle {
    /// Claims the refresh of a profile for this node, or reports the live claim that
    /// holds it. `fence` (a background refresh) makes the claim conditional on this
    /// node still holding the profile's shard.
    pub(crate) async fn claim_refresh(
        &self,
        profile_id: &str,
        fence: Option<WriteOp>,
    ) -> Result<ClaimAnswer, ActorError> {
        self.retrying(|| ClaimRefresh {
            profile_id: profile_id.to_owned(),
            fence: fence.clone(),
        })
        .await
    }

    /// Waits for the refresh claimed at `generation` to end, reading the row from the
    /// database (not memory, which follows the feed and may lag); `None` when its
    /// claim expired unfinished and may be taken over.
    pub(crate) async fn await_refresh(
        &self,
        profile_id: &str,
        generation: u64,
    ) -> Result<Option<Joined>, ActorError> {
        loop {
            let bytes = self
                .storage()
                .read_row(Table::AuthProfiles, profile_id.as_bytes())
                .await?
                .ok_or_else(|| ActorError::NotFound {
                    what: "auth profile",
                    id: profile_id.to_owned(),
                })?;
            let record: AuthProfileRecord = decode_record(&bytes)?;
            let AuthCredential::Oauth { refresh_state, .. } = &record.credential else {
                return Err(ActorError::invalid("profile_id", "not an OAuth profile"));
            };
            let moved = refresh_state.generation != generation;
            let live = refresh_state.claim.as_ref().map(|c| c.until_ms);
            if moved || live.is_none() {
                let profile = self
                    .addr()
                    .send(Observed {
                        bytes,
                        record: record.clone(),
                    })
                    .await
                    .map_err(stopped("registry"))?;
                return Ok(Some(Joined {
                    profile,
                    succeeded: moved,
                }));
            }
            if live.is_some_and(|until| until <= now_ms()) {
                return Ok(None);
            }
            tokio::time::sleep(JOIN_POLL).await;
        }
    }
}

#[derive(Message)]
#[rtype(result = "Result<ClaimAnswer, ActorError>")]
struct ClaimRefresh {
    profile_id: String,
    fence: Option<WriteOp>,
}

impl Handler<ClaimRefresh> for RegistryActor {
    type Result = ResponseActFuture<Self, Result<ClaimAnswer, ActorError>>;

    fn handle(&mut self, msg: ClaimRefresh, _ctx: &mut Self::Context) -> Self::Result {
        let claimed = self.claim_refresh(&msg.profile_id);
        let (record, claimed) = match claimed {
            Ok(Ok(claimed)) => claimed,
            Ok(Err(in_flight)) => return Box::pin(actix::fut::ready(Ok(in_flight))),
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        // The refresh token opened from memory must be the stored one: a node whose
        // copy lags (the feed brought the profile but not yet its secret) would
        // present a token already rotated away, which the provider takes as reuse.
        let token_ref = match &record.credential {
            AuthCredential::Oauth {
                refresh_token_vault_ref,
                ..
            } => self.vault.expect_sealed(refresh_token_vault_ref),
            AuthCredential::ApiKey { .. } => None,
        };
        let mut ops = vec![self.sync.put_profile(&record)];
        ops.extend(token_ref);
        ops.extend(msg.fence);
        self.apply_profile(record, Vec::new());
        Box::pin(self.commit(ops).map(move |result, _act, _| {
            result?;
            Ok(ClaimAnswer::Claimed(Box::new(claimed)))
        }))
    }
}

impl RegistryActor {
    /// The claimed record and the claim; or the live claim that holds the profile.
    fn claim_refresh(
        &self,
        id: &str,
    ) -> Result<Result<(AuthProfileRecord, Claimed), ClaimAnswer>, ActorError> {
        let mut record = self
            .profiles
            .get(id)
            .cloned()
            .ok_or_else(|| ActorError::NotFound {
                what: "auth profile",
                id: id.to_owned(),
            })?;
        let provider = record.provider.clone();
        let AuthCredential::Oauth {
            refresh_token_vault_ref,
            expires_at,
            refresh_state,
            refreshable,
            ..
        } = &mut record.credential
        else {
            return Err(ActorError::invalid("profile_id", "not an OAuth profile"));
        };
        if !*refreshable {
            return Err(ActorError::RefreshRefused(
                "the provider gave this profile no refresh token: sign in again before the access token expires".into(),
            ));
        }
        if refresh_state.needs_reauth {
            return Err(ActorError::RefreshRefused(
                "the profile needs a new sign-in; refresh stopped after a permanent failure".into(),
            ));
        }
        let now = now_ms();
        if refresh_state
            .claim
            .as_ref()
            .is_some_and(|c| c.until_ms > now)
        {
            return Ok(Err(ClaimAnswer::InFlight {
                generation: refresh_state.generation,
            }));
        }
        let refresh_token =
            self.vault
                .open_secret(refresh_token_vault_ref)?
                .ok_or(ActorError::NotFound {
                    what: "refresh token of auth profile",
                    id: id.to_owned(),
                })?;
        let input = RefreshInput {
            provider,
            refresh_token,
            expires_at: *expires_at,
            refresh_state: refresh_state.clone(),
        };
        let until_ms = now + i64::try_from(CLAIM_TTL.as_millis()).unwrap_or(i64::MAX / 2);
        refresh_state.claim = Some(RefreshClaim {
            node_id: self.node_id.clone(),
            until_ms,
        });
        let generation = refresh_state.generation;
        Ok(Ok((
            record,
            Claimed {
                input,
                generation,
                until_ms,
            },
        )))
    }
}

/// A profile row read from the database while joining a refresh: memory takes it (if
/// no write of ours to it is in flight) and the view is answered.
#[derive(Message)]
#[rtype(result = "AuthProfile")]
struct Observed {
    bytes: Vec<u8>,
    record: AuthProfileRecord,
}

impl Handler<Observed> for RegistryActor {
    type Result = MessageResult<Observed>;

    fn handle(&mut self, msg: Observed, _ctx: &mut Self::Context) -> Self::Result {
        let key = msg.record.profile_id.as_bytes().to_vec();
        self.observe_row(Table::AuthProfiles, &key, msg.bytes);
        MessageResult(self.view(&msg.record))
    }
}
