//! One run of an objective: the agent's candidates (`model_profiles`, or the one
//! element `default_model_profile` + `model`) tried in order for each prompt (each
//! turn of `call.rs`: a candidate that cannot be used now is passed over, a retryable
//! failure fails over to the next one, a bad request ends the run), as a conversation
//! with the agent's tools (`tool_loop.rs`). Every attempt is recorded, and tokens are
//! counted as input and output. Runs on a tokio worker; never inside an actor.
//! Provider calls go through the daemon's one outbound client
//! (`crate::outbound::client`), which the objectives actor was started with, and the
//! adapter of the profile's provider (`crate::adapter`).

use std::time::Duration;

use super::call::{Caller, earliest_end, skipped, transient_skip};
use super::model::{AgentRecord, MAX_OUTPUT_BYTES, ObjectiveKind, ObjectiveRecord, RunAttempt};
use super::tool_loop::{self, Progress, RunTools, Tally};
use super::transcript::TranscriptEntry;
use crate::audit::AuditLog;
use crate::refresher::RefresherHandle;
use crate::registry::handle::RegistryHandle;
use crate::registry::model::ResolveSkip;
use crate::tools::{DEFAULT_MAX_TOOL_CALLS, ToolBox, ToolsPolicy};

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
    /// Every model turn and tool call, in order (`tool_loop.rs`).
    pub transcript: Vec<TranscriptEntry>,
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

/// What a run needs for its tools: the daemon's policy and who audits writes.
#[derive(Clone)]
pub(super) struct ToolsContext {
    pub(super) policy: ToolsPolicy,
    pub(super) audit: AuditLog,
}

/// The tools `agent` enables for run `run_id`, if any.
fn run_tools(agent: &AgentRecord, context: &ToolsContext, run_id: &str) -> Option<RunTools> {
    if agent.tools.is_empty() {
        return None;
    }
    let max_tool_calls = agent.max_tool_calls.unwrap_or(DEFAULT_MAX_TOOL_CALLS);
    Some(RunTools {
        toolbox: ToolBox::new(
            agent.tools.clone(),
            agent.workspace_roots.clone(),
            context.policy.clone(),
            context.audit.clone(),
            agent.agent_id.clone(),
            run_id.to_owned(),
        ),
        calls_left: max_tool_calls,
        max_tool_calls,
    })
}

/// Runs `objective` for `agent`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn execute(
    tools: &ToolsContext,
    registry: &RegistryHandle,
    refresher: &RefresherHandle,
    client: &reqwest::Client,
    agent: Option<AgentRecord>,
    objective: &ObjectiveRecord,
    run_id: &str,
    timeout: Duration,
    progress: &Progress,
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
    let mut tools = run_tools(&agent, tools, run_id);
    let mut tally = Tally {
        attempts: std::mem::take(&mut outcome.attempts),
        progress: progress.clone(),
        ..Tally::default()
    };
    for prompt in prompts {
        let conversed =
            tool_loop::converse(&caller, &candidates, &prompt, &mut tools, &mut tally).await;
        // Every turn counts, those of a conversation that failed too.
        outcome.prompt_tokens = tally.prompt_tokens;
        outcome.completion_tokens = tally.completion_tokens;
        outcome.tokens = tally.prompt_tokens.saturating_add(tally.completion_tokens);
        outcome.attempts.clone_from(&tally.attempts);
        outcome.transcript.clone_from(&tally.transcript);
        match conversed {
            Ok(text) => outputs.push(text),
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
