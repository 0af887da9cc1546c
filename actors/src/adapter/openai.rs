//! The OpenAI chat completions API (and every OpenAI-compatible server):
//! `POST {api_base_url}/v1/chat/completions` with a bearer token; usage is
//! `prompt_tokens` and `completion_tokens`.

use serde_json::json;

use super::classify::{network_failure, read_answer};
use super::conversation::{openai_calls, openai_messages, openai_tools};
use super::model::{CallFailure, CallRequest, Completion, FailureClass};
use crate::secret::SecretString;

pub(super) async fn complete(
    client: &reqwest::Client,
    secret: &SecretString,
    request: &CallRequest<'_>,
) -> Result<Completion, CallFailure> {
    let mut payload = json!({
        "model": request.model,
        "messages": openai_messages(request.prompt, request.turns),
    });
    if !request.tools.is_empty() {
        payload["tools"] = json!(openai_tools(request.tools));
    }
    let response = client
        .post(format!("{}/v1/chat/completions", request.base_url))
        .timeout(request.timeout)
        .bearer_auth(secret.expose())
        .header("x-palyra-run-id", request.run_id)
        .json(&payload)
        .send()
        .await
        .map_err(|e| network_failure(&e))?;
    let body = read_answer(response).await?;
    let message = &body["choices"][0]["message"];
    let tool_calls = openai_calls(message);
    // A message that calls tools may have no content (`null`).
    let text = message["content"]
        .as_str()
        .or(if tool_calls.is_empty() {
            None
        } else {
            Some("")
        })
        .ok_or_else(|| {
            CallFailure::new(
                FailureClass::Unavailable,
                "the provider's answer has no choices[0].message.content",
            )
        })?
        .to_owned();
    let usage = &body["usage"];
    let prompt_tokens = usage["prompt_tokens"].as_u64().unwrap_or(0);
    let mut completion_tokens = usage["completion_tokens"].as_u64().unwrap_or(0);
    // A server that reports only the total: the rest of it is counted as output, so
    // budgets (which count the total) stay right.
    if let Some(total) = usage["total_tokens"].as_u64() {
        completion_tokens = completion_tokens.max(total.saturating_sub(prompt_tokens));
    }
    Ok(Completion {
        text,
        tool_calls,
        prompt_tokens,
        completion_tokens,
    })
}
