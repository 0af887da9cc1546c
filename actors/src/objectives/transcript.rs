//! A run's transcript as its record keeps it: each model turn, each tool call with
//! its arguments and its capped result, and the final answer.
//! Nothing in it is a secret: the model holds none, header values that could carry a
//! credential are replaced before they are recorded, and no tool can read one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most bytes of one text (a model's turn, a tool's result, an argument) kept.
pub const MAX_ENTRY_TEXT: usize = 4 * 1024;

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TranscriptKind {
    /// A model answer that asked for tools.
    ModelTurn,
    /// One tool call and what it came to.
    ToolCall,
    /// The model's answer without a tool call, which ends the conversation.
    FinalAnswer,
}

/// One entry of a run's transcript.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TranscriptEntry {
    pub kind: TranscriptKind,
    pub at: DateTime<Utc>,
    /// The model's text (a turn, the final answer), capped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The tool called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The call's arguments, with long strings cut and credential-like header values
    /// replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub arguments: Option<Value>,
    /// What the tool returned to the model, capped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// The tool refused or failed (the model was told; the run went on).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refused: bool,
    /// Tokens of the model turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
}

impl TranscriptEntry {
    pub(super) fn new(kind: TranscriptKind) -> Self {
        Self {
            kind,
            at: crate::time::to_datetime(crate::time::now_ms()),
            text: None,
            tool: None,
            arguments: None,
            result: None,
            refused: false,
            prompt_tokens: None,
            completion_tokens: None,
        }
    }
}

/// `text` cut at [`MAX_ENTRY_TEXT`] bytes on a character boundary.
pub(super) fn capped(text: &str) -> String {
    if text.len() <= MAX_ENTRY_TEXT {
        return text.to_owned();
    }
    let mut end = MAX_ENTRY_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}[cut at {MAX_ENTRY_TEXT} bytes]", &text[..end])
}

/// Header names whose values are never recorded: they carry credentials.
fn credential_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "authorization",
        "cookie",
        "key",
        "token",
        "secret",
        "auth",
        "password",
        "session",
    ]
    .iter()
    .any(|w| name.contains(w))
}

/// The arguments as recorded: strings capped, and the values of credential-like
/// `headers` replaced.
pub(super) fn recorded_arguments(arguments: &Value) -> Value {
    match arguments {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("headers", Value::Object(headers)) => Value::Object(
                            headers
                                .iter()
                                .map(|(name, value)| {
                                    let value = if credential_header(name) {
                                        Value::String("[redacted]".into())
                                    } else {
                                        recorded_arguments(value)
                                    };
                                    (name.clone(), value)
                                })
                                .collect(),
                        ),
                        _ => recorded_arguments(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(recorded_arguments).collect()),
        Value::String(s) => Value::String(capped(s)),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_headers_are_redacted_and_long_strings_cut() {
        let args = serde_json::json!({
            "url": "https://example.com",
            "headers": { "Authorization": "Bearer sk-1", "X-Api-Key": "k", "Accept": "text/html" },
            "body": "x".repeat(10_000),
        });
        let r = recorded_arguments(&args);
        assert_eq!(r["headers"]["Authorization"], "[redacted]");
        assert_eq!(r["headers"]["X-Api-Key"], "[redacted]");
        assert_eq!(r["headers"]["Accept"], "text/html");
        assert!(r["body"].as_str().unwrap().len() < 5000);
    }
}
