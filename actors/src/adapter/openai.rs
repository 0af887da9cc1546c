//! The OpenAI chat completions API (and every OpenAI-compatible server):
//! `POST {api_base_url}/v1/chat/completions` with a bearer token; usage is
//! `prompt_tokens` and `completion_tokens`.

use serde_json::json;

use super::classify::{network_failure, read_answer};
use super::model::{CallFailure, CallRequest, Completion, FailureClass};
use crate::secret::SecretString;

pub(super) async fn complete(
    client: &reqwest::Client,
    secret: &SecretString,
    request: &CallRequest<'_>,
) -> Result<Completion, CallFailure> {
    let response = client
        .post(format!("{}/v1/chat/completions", request.base_url))
        .timeout(request.timeout)
        .bearer_auth(secret.expose())
        .header("x-palyra-run-id", request.run_id)
        .json(&json!({
            "model": request.model,
            "messages": [{ "role": "user", "content": request.prompt }],
        }))
        .send()
        .await
        .map_err(|e| network_failure(&e))?;
    let body = read_answer(response).await?;
    let text = body["choices"][0]["message"]["content"]
        .as_str()
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
        prompt_tokens,
        completion_tokens,
    })
}
