//! Provider adapters: one model call (a prompt in; text and token usage out) in the
//! API the provider serves, and the one classification of its answer.
//!
//! Layout:
//! - `openai.rs`: `POST {api_base_url}/v1/chat/completions` with a bearer token
//!   (OpenAI and every OpenAI-compatible server).
//! - `anthropic.rs`: `POST {api_base_url}/v1/messages` with `x-api-key` and
//!   `anthropic-version` (the Anthropic Messages API).
//! - `conversation.rs`: turns after the prompt (tool calls, tool results) and the
//!   tools offered, provider-neutral, and how each API writes and reads them.
//! - `model.rs`: a call as sent, a completion, a failure and its class.
//! - `classify.rs`: what a status, a Retry-After or a network error means, and the
//!   bounded read of an answer; shared by both, so answers are classified in one place.

mod anthropic;
mod classify;
mod conversation;
mod model;
mod openai;

pub use classify::{MAX_RETRY_AFTER, parse_retry_after};
pub use conversation::{ToolCall, ToolResult, ToolSpec, Turn};
pub use model::{CallFailure, CallRequest, Completion, FailureClass};

use crate::provider::ApiStyle;
use crate::secret::SecretString;

/// Calls `style`'s API with `secret` on the daemon's one outbound client.
pub async fn complete(
    style: ApiStyle,
    client: &reqwest::Client,
    secret: &SecretString,
    request: &CallRequest<'_>,
) -> Result<Completion, CallFailure> {
    match style {
        ApiStyle::Openai => openai::complete(client, secret, request).await,
        ApiStyle::Anthropic => anthropic::complete(client, secret, request).await,
    }
}
