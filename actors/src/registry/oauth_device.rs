//! Device sign-in (RFC 8628) on the registry: how a headless daemon signs in. The
//! daemon gets a user code from the provider's device authorization endpoint, stores
//! a sign-in attempt (the device code sealed in the vault, as a browser sign-in's PKCE
//! verifier is), and polls the token endpoint in the background at the provider's
//! interval (5 s longer after each `slow_down`) until the operator approves, refuses
//! or the code expires. Success stores the profile exactly as the browser flow does;
//! `callback-state` reports where the attempt stands.
//!
//! The polling lives in this daemon's memory: after a restart the attempt stays
//! pending until it expires (and `callback-state` then says so), and the operator
//! starts again.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::attempts::{AttemptRecord, AttemptStatus, state_digest};
use super::handle::RegistryHandle;
use super::model::{
    generated_profile_id, validate_profile_name, validate_provider, validate_scope,
};
use super::oauth_flow::{FinishAttempt, SignInRequest, StartAttempt, validate_scopes};
use crate::error::{ActorError, stopped};
use crate::ids::validate_profile_id;
use crate::oauth::device::{DevicePoll, poll_device_token, start_device_authorization};
use crate::oauth::{TokenSet, generate_attempt_id, generate_state};
use crate::provider::check_api_key;
use crate::secret::SecretString;
use crate::time::{now_ms, to_datetime};

/// What a device sign-in answers: the code the operator enters, and where.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeviceSignInStarted {
    pub attempt_id: String,
    /// Enter this at `verification_uri`.
    pub user_code: String,
    pub verification_uri: String,
    /// `verification_uri` with the code in it, when the provider gives one.
    pub verification_uri_complete: Option<String>,
    pub expires_at: DateTime<Utc>,
    /// Seconds between the daemon's polls of the provider, as the provider asked.
    pub interval_s: u64,
}

impl RegistryHandle {
    /// Starts a device sign-in and its polling; `ttl` bounds it as it bounds a
    /// browser sign-in (the provider's own expiry may be shorter).
    pub async fn begin_device_sign_in(
        &self,
        req: SignInRequest,
        ttl: std::time::Duration,
    ) -> Result<DeviceSignInStarted, ActorError> {
        validate_provider(&req.provider)?;
        if let Some(id) = &req.profile_id {
            validate_profile_id(id)?;
        }
        validate_profile_name(&req.profile_name)?;
        validate_scope(&req.scope)?;
        let (_, oauth) = self.oauth_client(&req.provider).await?;
        self.require_client_secret(&req.provider, &oauth).await?;
        let Some(endpoint) = oauth.device_authorization_endpoint.clone() else {
            return Err(ActorError::invalid(
                "provider",
                format!(
                    "provider {} has no device_authorization_endpoint: sign in with the browser (or --manual)",
                    req.provider
                ),
            ));
        };
        let scopes = req.scopes.unwrap_or_else(|| oauth.scopes.clone());
        validate_scopes(&scopes)?;
        let device = start_device_authorization(self.http(), &oauth, &endpoint, &scopes)
            .await
            .map_err(|e| ActorError::SignIn(format!("device authorization failed: {e}")))?;
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let device_ms = i64::try_from(device.expires_in.saturating_mul(1000)).unwrap_or(i64::MAX);
        let attempt_id = generate_attempt_id();
        let record = AttemptRecord {
            attempt_id: attempt_id.clone(),
            profile_id: req
                .profile_id
                .unwrap_or_else(|| generated_profile_id(&req.provider)),
            provider: req.provider.clone(),
            profile_name: req.profile_name,
            scope: req.scope,
            scopes,
            set_default: req.set_default,
            // No callback can complete a device sign-in: its state is never shown.
            state_digest: state_digest(generate_state().expose()),
            redirect_uri: String::new(),
            expires_at_ms: now_ms().saturating_add(ttl_ms.min(device_ms)),
            status: AttemptStatus::Pending,
        };
        let expires_at_ms = record.expires_at_ms;
        self.addr()
            .send(StartAttempt {
                record,
                verifier: device.device_code.clone(),
            })
            .await
            .map_err(stopped("registry"))??;
        let poller = self.clone();
        let (id, provider, interval) = (attempt_id.clone(), req.provider, device.interval);
        let device_code = device.device_code;
        tokio::spawn(async move {
            let result = poller
                .poll_device(&provider, &device_code, interval, expires_at_ms)
                .await;
            drop(device_code);
            let finished = poller
                .addr()
                .send(FinishAttempt {
                    attempt_id: id.clone(),
                    result,
                })
                .await;
            if !matches!(finished, Ok(Ok(_))) {
                tracing::error!(attempt_id = %id, "the device sign-in's outcome could not be stored");
            }
        });
        Ok(DeviceSignInStarted {
            attempt_id,
            user_code: device.user_code,
            verification_uri: device.verification_uri,
            verification_uri_complete: device.verification_uri_complete,
            expires_at: to_datetime(expires_at_ms),
            interval_s: interval,
        })
    }

    /// Polls until tokens, a refusal or the expiry. The interval grows by 5 s after
    /// every `slow_down` (RFC 8628 section 3.5) and after an unreachable endpoint.
    async fn poll_device(
        &self,
        provider: &str,
        device_code: &SecretString,
        mut interval_s: u64,
        expires_at_ms: i64,
    ) -> Result<TokenSet, String> {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(interval_s)).await;
            if now_ms() >= expires_at_ms {
                return Err("the device code expired before the sign-in completed".into());
            }
            // The client secret is opened for each poll and zeroized after it.
            let (settings, oauth) = self
                .oauth_client(provider)
                .await
                .map_err(|e| e.to_string())?;
            match poll_device_token(self.http(), &oauth, device_code).await {
                DevicePoll::Pending => {}
                DevicePoll::SlowDown => interval_s = (interval_s + 5).min(120),
                DevicePoll::Unreachable(reason) => {
                    tracing::warn!(%provider, %reason, "device sign-in poll failed; polling slower");
                    interval_s = (interval_s + 5).min(120);
                }
                DevicePoll::Failed(reason) => return Err(reason),
                DevicePoll::Tokens(tokens) => {
                    if oauth.validate_with_models {
                        check_api_key(self.http(), "openai", settings, &tokens.access_token)
                            .await
                            .map_err(|e| format!("the new access token did not validate: {e}"))?;
                    }
                    return Ok(tokens);
                }
            }
        }
    }
}
