//! One run of an objective: the agent's candidates (`model_profiles`, or the one
//! element `default_model_profile` + `model`) tried in order for each prompt; a
//! candidate that cannot be used now is passed over, a retryable failure fails over to
//! the next one, a bad request ends the run. Every attempt is recorded, each call's
//! outcome goes to the registry (cooldowns, `needs_reauth`), and tokens are counted as
//! input and output. Runs on a tokio worker; never inside an actor.
//! Provider calls go through the daemon's one outbound client
//! (`crate::outbound::client`), which the objectives actor was started with, and the
//! adapter of the profile's provider (`crate::adapter`).

use std::time::{Duration, Instant};

use super::model::{
    AgentRecord, AttemptOutcome, MAX_OUTPUT_BYTES, ObjectiveKind, ObjectiveRecord, RunAttempt,
};
use crate::adapter::{self, CallFailure, CallRequest, Completion, FailureClass};
use crate::refresher::RefresherHandle;
use crate::registry::cooldown::CallNote;
use crate::registry::handle::RegistryHandle;
use crate::registry::model::{CooldownReason, ResolveSkip, SkipReason};

/// What a run came to.
#[derive(Debug, Default)]
pub(super) struct RunOutcome {
    /// Total tokens: `prompt_tokens + completion_tokens`.
    pub tokens: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub output: Option<String>,
    /// Set when the run failed; a sentence, never a secret.
    pub error: Option<String>,
    /// Every candidate tried or passed over, in order.
    pub attempts: Vec<RunAttempt>,
    /// The run failed, and on every candidate for a reason that may pass (a rate
    /// limit, an outage, a cooldown): trying the run again later can succeed.
    pub retryable: bool,
    /// When `retryable` and no candidate is usable now: the earliest end of their
    /// cooldowns (a retry before then would only be passed over).
    pub usable_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn failed(error: impl Into<String>) -> RunOutcome {
    RunOutcome {
        error: Some(error.into()),
        ..RunOutcome::default()
    }
}

fn cap(mut text: String) -> String {
    if text.len() > MAX_OUTPUT_BYTES {
        let mut end = MAX_OUTPUT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// What a run needs to call providers.
struct Caller<'a> {
    registry: &'a RegistryHandle,
    refresher: &'a RefresherHandle,
    client: &'a reqwest::Client,
    run_id: &'a str,
    timeout: Duration,
}

/// Runs `objective` for `agent`.
pub(super) async fn execute(
    registry: &RegistryHandle,
    refresher: &RefresherHandle,
    client: &reqwest::Client,
    agent: Option<AgentRecord>,
    objective: &ObjectiveRecord,
    run_id: &str,
    timeout: Duration,
) -> RunOutcome {
    let Some(agent) = agent else {
        return failed(format!("agent {} does not exist", objective.agent_id));
    };
    let mut outcome = RunOutcome::default();
    let mut candidates = Vec::new();
    for (profile, model) in agent.candidates() {
        match profile {
            Some(id) => candidates.push((id, model)),
            None => match registry
                .resolve("openai".into(), Some(agent.agent_id.clone()))
                .await
            {
                Ok(answer) => {
                    for skip in &answer.skipped {
                        outcome.attempts.push(skipped(skip, &model));
                    }
                    match answer.profile_id {
                        Some(id) => candidates.push((id, model)),
                        None => {
                            outcome.retryable = !answer.skipped.is_empty()
                                && answer.skipped.iter().all(transient_skip);
                            outcome.usable_at = earliest_end(&answer.skipped);
                            outcome.error =
                                Some(format!("no credential for the agent: {}", answer.detail));
                            return outcome;
                        }
                    }
                }
                Err(e) => return failed(e.to_string()),
            },
        }
    }
    let prompts: Vec<String> = match objective.kind {
        ObjectiveKind::Program => objective
            .steps
            .iter()
            .filter(|s| !s.trim().is_empty())
            .cloned()
            .collect(),
        _ if objective.prompt.trim().is_empty() => Vec::new(),
        _ => vec![objective.prompt.clone()],
    };
    if prompts.is_empty() {
        // A heartbeat without a prompt records liveness and the first candidate's health.
        let profile_id = candidates
            .first()
            .map(|(id, _)| id.clone())
            .unwrap_or_default();
        return match registry.health().await {
            Ok(report) => {
                let state = report
                    .profiles
                    .iter()
                    .find(|p| p.profile_id == profile_id)
                    .map(|p| crate::wire::wire_name(p.state))
                    .unwrap_or_else(|| "missing".into());
                RunOutcome {
                    output: Some(format!("alive; credential {profile_id}: {state}")),
                    ..outcome
                }
            }
            Err(e) => failed(e.to_string()),
        };
    }
    let caller = Caller {
        registry,
        refresher,
        client,
        run_id,
        timeout,
    };
    let mut outputs = Vec::new();
    for prompt in prompts {
        match step(&caller, &candidates, &prompt, &mut outcome.attempts).await {
            Ok(completion) => {
                outcome.prompt_tokens = outcome
                    .prompt_tokens
                    .saturating_add(completion.prompt_tokens);
                outcome.completion_tokens = outcome
                    .completion_tokens
                    .saturating_add(completion.completion_tokens);
                outcome.tokens = outcome.tokens.saturating_add(completion.total_tokens());
                outputs.push(completion.text);
            }
            Err((error, retryable)) => {
                outcome.error = Some(error);
                outcome.retryable = retryable;
                if retryable {
                    // The calls that failed have set their profiles' cooldowns by now.
                    let ids = candidates.iter().map(|(id, _)| id.clone()).collect();
                    if let Ok(usable) = registry.check_usable(ids).await
                        && usable.iter().all(Option::is_some)
                    {
                        let skips: Vec<ResolveSkip> = usable.into_iter().flatten().collect();
                        outcome.usable_at = earliest_end(&skips);
                    }
                }
                break;
            }
        }
    }
    if !outputs.is_empty() {
        outcome.output = Some(cap(outputs.join("\n\n")));
    }
    outcome
}

fn skipped(skip: &ResolveSkip, model: &str) -> RunAttempt {
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
fn earliest_end(skips: &[ResolveSkip]) -> Option<chrono::DateTime<chrono::Utc>> {
    skips.iter().filter_map(|s| s.until).min()
}

/// A skip that ends by itself (a cooldown), so the run may succeed later.
fn transient_skip(skip: &ResolveSkip) -> bool {
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

/// One prompt over the candidates in order. Answers the completion, or the run's
/// error and whether every candidate failed for a reason that passes.
async fn step(
    caller: &Caller<'_>,
    candidates: &[(String, String)],
    prompt: &str,
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
        match attempt(caller, profile_id, model, prompt, attempts).await {
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
    prompt: &str,
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
