//! The Anthropic Messages API, natively: `POST {api_base_url}/v1/messages` with
//! `x-api-key` and `anthropic-version`, a `max_tokens` bound, and usage as
//! `input_tokens` and `output_tokens`.

use serde_json::json;

use super::classify::{network_failure, read_answer};
use super::conversation::{anthropic_calls, anthropic_messages, anthropic_tools};
use super::model::{CallFailure, CallRequest, Completion, FailureClass};
use crate::secret::SecretString;

/// The API version every call names (the one the Messages API is documented at).
pub(super) const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The output bound each call asks for: the Messages API requires one, and 4,096 is
/// within every current model's limit.
pub(super) const MAX_TOKENS: u32 = 4096;

pub(super) async fn complete(
    client: &reqwest::Client,
    secret: &SecretString,
    request: &CallRequest<'_>,
) -> Result<Completion, CallFailure> {
    let mut payload = json!({
        "model": request.model,
        "max_tokens": MAX_TOKENS,
        "messages": anthropic_messages(request.prompt, request.turns),
    });
    if !request.tools.is_empty() {
        payload["tools"] = json!(anthropic_tools(request.tools));
    }
    let response = client
        .post(format!("{}/v1/messages", request.base_url))
        .timeout(request.timeout)
        .header("x-api-key", secret.expose())
        .header("anthropic-version", ANTHROPIC_VERSION)
        .header("x-palyra-run-id", request.run_id)
        .json(&payload)
        .send()
        .await
        .map_err(|e| network_failure(&e))?;
    let body = read_answer(response).await?;
    // The answer is a list of content blocks; the text is that of its text blocks.
    let blocks = body["content"].as_array().ok_or_else(|| {
        CallFailure::new(
            FailureClass::Unavailable,
            "the provider's answer has no content",
        )
    })?;
    let text: Vec<&str> = blocks
        .iter()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b["text"].as_str())
        .collect();
    let usage = &body["usage"];
    Ok(Completion {
        text: text.join(""),
        tool_calls: anthropic_calls(blocks),
        prompt_tokens: usage["input_tokens"].as_u64().unwrap_or(0),
        completion_tokens: usage["output_tokens"].as_u64().unwrap_or(0),
    })
}
