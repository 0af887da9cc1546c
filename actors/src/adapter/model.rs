//! The adapters' vocabulary: a call as sent, a completion, a failure and its class.

use std::time::Duration;

use super::conversation::{ToolCall, ToolSpec, Turn};

/// One call as an adapter sends it.
#[derive(Debug, Clone, Copy)]
pub struct CallRequest<'a> {
    /// `{api_base_url}` without a trailing slash.
    pub base_url: &'a str,
    pub model: &'a str,
    pub prompt: &'a str,
    /// The turns after the prompt (tool calls and their results); empty for a
    /// plain prompt.
    pub turns: &'a [Turn],
    /// The tools offered; empty offers none (and the request names no tools).
    pub tools: &'a [ToolSpec],
    /// Names the run, so a provider's logs (and the tests' fake) tie each call to the
    /// one durable run record it belongs to.
    pub run_id: &'a str,
    /// Bounds the whole call, answer included.
    pub timeout: Duration,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub text: String,
    /// The tools the model asked to call; empty when it answered.
    pub tool_calls: Vec<ToolCall>,
    /// Input tokens (OpenAI's `prompt_tokens`, Anthropic's `input_tokens`).
    pub prompt_tokens: u64,
    /// Output tokens (`completion_tokens`, `output_tokens`).
    pub completion_tokens: u64,
}

impl Completion {
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// What a failed call means for the run and for the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// 429: the profile cools down until Retry-After.
    RateLimited,
    /// 5xx, 529, a network error or a timeout.
    Unavailable,
    /// 401 or 403: the credential is refused.
    Auth,
    /// 402 or the provider's quota error.
    Billing,
    /// Any other 4xx: the request itself is wrong, so no other candidate is tried.
    BadRequest,
}

/// A failed call. `message` is a sentence built from the status and the provider's
/// error type only, never from the answer's text (which may quote the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    pub class: FailureClass,
    /// The provider's Retry-After, capped at `MAX_RETRY_AFTER`.
    pub retry_after: Option<Duration>,
    pub message: String,
}

impl CallFailure {
    pub(crate) fn new(class: FailureClass, message: impl Into<String>) -> Self {
        Self {
            class,
            retry_after: None,
            message: message.into(),
        }
    }
}
