//! One model turn of a run over the agent's candidates: a candidate that cannot be
//! used now is passed over, a retryable failure fails over to the next one, a bad
//! request ends the run; each call is recorded and its outcome told to the registry
//! (cooldowns, `needs_reauth`), with one refresh and retry on an OAuth 401.
//! Shared by the runner and the tool loop, so failover works per turn.

use std::time::{Duration, Instant};

use super::model::{AttemptOutcome, RunAttempt};
use crate::adapter::{self, CallFailure, CallRequest, Completion, FailureClass, ToolSpec, Turn};
use crate::refresher::RefresherHandle;
use crate::registry::cooldown::CallNote;
use crate::registry::handle::RegistryHandle;
use crate::registry::model::{CooldownReason, ResolveSkip, SkipReason};

/// What a run needs to call providers.
pub(super) struct Caller<'a> {
    pub(super) registry: &'a RegistryHandle,
    pub(super) refresher: &'a RefresherHandle,
    pub(super) client: &'a reqwest::Client,
    pub(super) run_id: &'a str,
    pub(super) timeout: Duration,
}

pub(super) fn skipped(skip: &ResolveSkip, model: &str) -> RunAttempt {
    RunAttempt {
        profile_id: skip.profile_id.clone(),
        model: model.to_owned(),
        outcome: AttemptOutcome::Skipped,
        latency_ms: 0,
        detail: Some(skip.detail.clone()),
        provider: None,
        prompt_tokens: 0,
        completion_tokens: 0,
    }
}

/// The earliest end among `skips`' cooldowns.
pub(super) fn earliest_end(skips: &[ResolveSkip]) -> Option<chrono::DateTime<chrono::Utc>> {
    skips.iter().filter_map(|s| s.until).min()
}

/// A skip that ends by itself (a cooldown), so the run may succeed later.
pub(super) fn transient_skip(skip: &ResolveSkip) -> bool {
    matches!(
        skip.reason,
        SkipReason::RateLimited | SkipReason::CoolingDown
    )
}

fn outcome_of(class: FailureClass) -> AttemptOutcome {
    match class {
        FailureClass::RateLimited => AttemptOutcome::RateLimited,
        FailureClass::Unavailable => AttemptOutcome::Unavailable,
        FailureClass::Auth => AttemptOutcome::Auth,
        FailureClass::Billing => AttemptOutcome::Billing,
        FailureClass::BadRequest => AttemptOutcome::BadRequest,
    }
}

/// One model turn (the prompt, the turns after it, the tools offered) over the
/// candidates in order. Answers the completion, or the run's error and whether every
/// candidate failed for a reason that passes.
pub(super) async fn step(
    caller: &Caller<'_>,
    candidates: &[(String, String)],
    prompt: &str,
    turns: &[Turn],
    tools: &[ToolSpec],
    attempts: &mut Vec<RunAttempt>,
) -> Result<Completion, (String, bool)> {
    let ids = candidates.iter().map(|(id, _)| id.clone()).collect();
    let usable = match caller.registry.check_usable(ids).await {
        Ok(usable) => usable,
        Err(e) => return Err((e.to_string(), false)),
    };
    let mut failures = Vec::new();
    let mut all_transient = true;
    for ((profile_id, model), skip) in candidates.iter().zip(usable) {
        if let Some(skip) = skip {
            all_transient &= transient_skip(&skip);
            failures.push(format!("{profile_id} skipped: {}", skip.detail));
            attempts.push(skipped(&skip, model));
            continue;
        }
        match attempt(caller, profile_id, model, (prompt, turns, tools), attempts).await {
            Ok(completion) => return Ok(completion),
            Err(failure) => {
                if failure.class == FailureClass::BadRequest {
                    // The request itself is wrong: another candidate would be asked the same.
                    return Err((failure.message, false));
                }
                all_transient &= matches!(
                    failure.class,
                    FailureClass::RateLimited | FailureClass::Unavailable
                );
                failures.push(format!("{profile_id} ({model}): {}", failure.message));
            }
        }
    }
    let error = match failures.as_slice() {
        [] => "the agent has no candidate to run with".to_owned(),
        [only] => only.clone(),
        many => format!("every candidate failed: {}", many.join("; ")),
    };
    Err((error, all_transient && !failures.is_empty()))
}

/// One candidate: the call (after a refresh when the OAuth token has expired), and
/// once more after a refresh when an OAuth token is answered 401. Records each call
/// and tells the registry what it came to.
async fn attempt(
    caller: &Caller<'_>,
    profile_id: &str,
    model: &str,
    (prompt, turns, tools): (&str, &[Turn], &[ToolSpec]),
    attempts: &mut Vec<RunAttempt>,
) -> Result<Completion, CallFailure> {
    let registry = caller.registry;
    let not_called = |detail: String, attempts: &mut Vec<RunAttempt>| {
        attempts.push(RunAttempt {
            profile_id: profile_id.to_owned(),
            model: model.to_owned(),
            outcome: AttemptOutcome::Skipped,
            latency_ms: 0,
            detail: Some(detail.clone()),
            provider: None,
            prompt_tokens: 0,
            completion_tokens: 0,
        });
        // Not the provider's answer: no cooldown, and not worth a retry of the run.
        CallFailure::new(FailureClass::Auth, detail)
    };
    let mut refreshed = false;
    loop {
        let mut credential = match registry.bearer(profile_id).await {
            Ok(c) => c,
            Err(e) => return Err(not_called(e.to_string(), attempts)),
        };
        if credential.expired && !refreshed {
            // An expired OAuth token is refreshed first (joining a refresh in flight).
            refreshed = true;
            if let Err(e) = caller.refresher.refresh_now(profile_id).await {
                return Err(not_called(
                    format!("the credential has expired and could not be refreshed: {e}"),
                    attempts,
                ));
            }
            credential = match registry.bearer(profile_id).await {
                Ok(c) => c,
                Err(e) => return Err(not_called(e.to_string(), attempts)),
            };
        }
        let Some(settings) = registry.providers().get(&credential.provider) else {
            return Err(not_called(
                format!("provider {} is not configured", credential.provider),
                attempts,
            ));
        };
        let request = CallRequest {
            base_url: &settings.api_base_url,
            model,
            prompt,
            turns,
            tools,
            run_id: caller.run_id,
            timeout: caller.timeout,
        };
        let started = Instant::now();
        let result = adapter::complete(
            settings.api_style,
            caller.client,
            &credential.secret,
            &request,
        )
        .await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let oauth = credential.oauth;
        let credential_provider = credential.provider.clone();
        drop(credential);
        let mut record = RunAttempt {
            profile_id: profile_id.to_owned(),
            model: model.to_owned(),
            outcome: AttemptOutcome::Ok,
            latency_ms,
            detail: None,
            provider: None,
            prompt_tokens: 0,
            completion_tokens: 0,
        };
        let failure = match result {
            Ok(completion) => {
                // What the usage rollup charges this call to (`crate::usage`).
                record.provider = Some(credential_provider);
                record.prompt_tokens = completion.prompt_tokens;
                record.completion_tokens = completion.completion_tokens;
                attempts.push(record);
                if let Err(e) = registry.note_call(profile_id, CallNote::Succeeded).await {
                    tracing::warn!(profile_id, error = %e, "clearing a cooldown failed");
                }
                return Ok(completion);
            }
            Err(failure) => failure,
        };
        record.outcome = outcome_of(failure.class);
        record.detail = Some(failure.message.clone());
        let reason = match failure.class {
            FailureClass::RateLimited => Some(CooldownReason::RateLimited),
            FailureClass::Unavailable => Some(CooldownReason::Unavailable),
            FailureClass::Billing => Some(CooldownReason::Billing),
            FailureClass::Auth | FailureClass::BadRequest => None,
        };
        if let Some(reason) = reason {
            attempts.push(record);
            let note = CallNote::Failed {
                reason,
                retry_after: failure.retry_after,
                message: failure.message.clone(),
            };
            if let Err(e) = registry.note_call(profile_id, note).await {
                tracing::warn!(profile_id, error = %e, "recording a cooldown failed");
            }
            return Err(failure);
        }
        if failure.class == FailureClass::BadRequest {
            attempts.push(record);
            return Err(failure);
        }
        if oauth && !refreshed {
            // An access token refused before its expiry may have been revoked or
            // rotated elsewhere: refresh once and try again before giving it up.
            refreshed = true;
            record.detail = Some(format!(
                "{}; refreshing the token and retrying",
                failure.message
            ));
            attempts.push(record);
            if let Err(e) = caller.refresher.refresh_now(profile_id).await {
                return Err(CallFailure::new(
                    FailureClass::Auth,
                    format!(
                        "{} and the token could not be refreshed: {e}",
                        failure.message
                    ),
                ));
            }
            continue;
        }
        attempts.push(record);
        if let Err(e) = registry.mark_rejected(profile_id).await {
            tracing::warn!(profile_id, error = %e, "marking a credential needs_reauth failed");
        }
        return Err(CallFailure::new(
            FailureClass::Auth,
            format!(
                "{}: credential {profile_id} was rejected and is marked needs_reauth",
                failure.message
            ),
        ));
    }
}
