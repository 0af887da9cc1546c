//! One run of an objective: resolve the agent's credential, call the provider's
//! OpenAI-compatible `POST {api_base_url}/v1/chat/completions`, count the tokens.
//! Runs on a tokio worker; never inside an actor.
//! Provider calls go through the daemon's one outbound client
//! (`crate::outbound::client`), which the objectives actor was started with.

use std::time::Duration;

use serde_json::json;

use super::model::{AgentRecord, MAX_OUTPUT_BYTES, ObjectiveKind, ObjectiveRecord};
use crate::refresher::RefresherHandle;
use crate::registry::RegistryHandle;

/// What a run came to.
#[derive(Debug, Default)]
pub(super) struct RunOutcome {
    pub tokens: u64,
    pub output: Option<String>,
    /// Set when the run failed; a sentence, never a secret.
    pub error: Option<String>,
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
    let profile_id = match &agent.default_model_profile {
        Some(id) => id.clone(),
        None => match registry
            .resolve("openai".into(), Some(agent.agent_id.clone()))
            .await
        {
            Ok(answer) => match answer.profile_id {
                Some(id) => id,
                None => return failed(format!("no credential for the agent: {}", answer.detail)),
            },
            Err(e) => return failed(e.to_string()),
        },
    };
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
        // A heartbeat without a prompt records liveness and the credential's health.
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
                    ..RunOutcome::default()
                }
            }
            Err(e) => failed(e.to_string()),
        };
    }
    let mut outcome = RunOutcome::default();
    let mut outputs = Vec::new();
    for prompt in prompts {
        let target = Target {
            profile_id: &profile_id,
            model: &agent.model,
            run_id,
        };
        match call(registry, refresher, client, &target, &prompt, timeout).await {
            Ok((tokens, text)) => {
                outcome.tokens = outcome.tokens.saturating_add(tokens);
                outputs.push(text);
            }
            Err(e) => {
                outcome.error = Some(e);
                break;
            }
        }
    }
    if !outputs.is_empty() {
        outcome.output = Some(cap(outputs.join("\n\n")));
    }
    outcome
}

/// One chat completion; answers (total tokens, assistant message).
/// Whose credential, which model, for which run.
struct Target<'a> {
    profile_id: &'a str,
    model: &'a str,
    run_id: &'a str,
}

async fn call(
    registry: &RegistryHandle,
    refresher: &RefresherHandle,
    client: &reqwest::Client,
    target: &Target<'_>,
    prompt: &str,
    timeout: Duration,
) -> Result<(u64, String), String> {
    let Target {
        profile_id,
        model,
        run_id,
    } = *target;
    let mut credential = registry
        .bearer(profile_id)
        .await
        .map_err(|e| e.to_string())?;
    if credential.expired {
        // An expired OAuth token is refreshed first (joining a refresh in flight).
        refresher
            .refresh_now(profile_id)
            .await
            .map_err(|e| format!("the credential has expired and could not be refreshed: {e}"))?;
        credential = registry
            .bearer(profile_id)
            .await
            .map_err(|e| e.to_string())?;
    }
    let base = registry
        .providers()
        .get(&credential.provider)
        .map(|p| p.api_base_url.clone())
        .ok_or_else(|| format!("provider {} is not configured", credential.provider))?;
    let response = client
        .post(format!("{base}/v1/chat/completions"))
        .timeout(timeout)
        .bearer_auth(credential.secret.expose())
        // Names the run, so a provider's logs (and the tests' fake) tie each call to
        // the one durable run record it belongs to.
        .header("x-palyra-run-id", run_id)
        .json(&json!({ "model": model, "messages": [{ "role": "user", "content": prompt }] }))
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                "the provider did not answer in time".to_owned()
            } else {
                format!("the provider could not be reached: {}", e.without_url())
            }
        })?;
    drop(credential);
    let status = response.status().as_u16();
    if status == 401 {
        let _ = registry.mark_rejected(profile_id).await;
        return Err(format!(
            "the provider answered HTTP 401: credential {profile_id} was rejected and is marked needs_reauth"
        ));
    }
    if !(200..300).contains(&status) {
        return Err(format!("the provider answered HTTP {status}"));
    }
    // Bounded: an answer over 4 MiB is refused rather than buffered.
    const MAX_BODY: usize = 4 * 1024 * 1024;
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY as u64)
    {
        return Err("the provider's answer is larger than 4 MiB".into());
    }
    let mut body = Vec::new();
    let mut response = response;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|_| "the provider's answer was cut off".to_owned())?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err("the provider's answer is larger than 4 MiB".into());
        }
        body.extend_from_slice(&chunk);
    }
    let body: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|_| "the provider answered without JSON".to_owned())?;
    let tokens = body["usage"]["total_tokens"].as_u64().unwrap_or(0);
    let text = body["choices"][0]["message"]["content"]
        .as_str()
        .ok_or_else(|| "the provider's answer has no choices[0].message.content".to_owned())?
        .to_owned();
    Ok((tokens, text))
}
