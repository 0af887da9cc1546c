//! A conversation with tools, provider-neutral: the turns after the prompt (the
//! model's tool calls, the tools' results), the tools offered, and how each API
//! writes them (OpenAI `tools` / `tool_calls` / `role: tool`; Anthropic `tools` /
//! `tool_use` / `tool_result`).
//! Turns are kept neutral so a run can fail over mid-conversation to a candidate of
//! the other API and replay the same history.

use serde_json::{Value, json};

/// A tool as offered to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    /// The JSON Schema of the arguments (an object).
    pub parameters: Value,
}

/// One call the model asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// The provider's id of the call, echoed with its result.
    pub id: String,
    pub name: String,
    /// The arguments as the model sent them (an object, or what it sent instead).
    pub arguments: Value,
}

/// What a tool call came to, as returned to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolResult {
    pub call_id: String,
    pub content: String,
    /// A refusal or a failure of the tool (told to the model, not a run failure).
    pub is_error: bool,
}

/// One turn after the prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    /// The model's answer that asked for tools (its text, if any, and the calls).
    Assistant { text: String, calls: Vec<ToolCall> },
    /// The results of those calls, in their order.
    Results(Vec<ToolResult>),
}

/// The OpenAI chat completions `messages` after the prompt.
pub(super) fn openai_messages(prompt: &str, turns: &[Turn]) -> Vec<Value> {
    let mut messages = vec![json!({ "role": "user", "content": prompt })];
    for turn in turns {
        match turn {
            Turn::Assistant { text, calls } => {
                let calls: Vec<Value> = calls
                    .iter()
                    .map(|c| {
                        json!({
                            "id": c.id, "type": "function",
                            // OpenAI carries arguments as a JSON string.
                            "function": { "name": c.name, "arguments": c.arguments.to_string() },
                        })
                    })
                    .collect();
                let content = if text.is_empty() {
                    Value::Null
                } else {
                    json!(text)
                };
                messages
                    .push(json!({ "role": "assistant", "content": content, "tool_calls": calls }));
            }
            Turn::Results(results) => {
                for r in results {
                    messages.push(
                        json!({ "role": "tool", "tool_call_id": r.call_id, "content": r.content }),
                    );
                }
            }
        }
    }
    messages
}

/// The OpenAI `tools` list.
pub(super) fn openai_tools(tools: &[ToolSpec]) -> Vec<Value> {
    tools
        .iter()
        .map(|t| {
            json!({ "type": "function", "function": {
                "name": t.name, "description": t.description, "parameters": t.parameters,
            }})
        })
        .collect()
}

/// The tool calls of an OpenAI answer's message.
pub(super) fn openai_calls(message: &Value) -> Vec<ToolCall> {
    message["tool_calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .map(|c| {
                    let raw = &c["function"]["arguments"];
                    // A string of JSON, as the API documents; an object from a lenient
                    // server is taken as it is; anything else is passed on as text so
                    // the tool can refuse it.
                    let arguments = match raw {
                        Value::String(s) => {
                            serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
                        }
                        other => other.clone(),
                    };
                    ToolCall {
                        id: c["id"].as_str().unwrap_or_default().to_owned(),
                        name: c["function"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        arguments,
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The Anthropic Messages `messages` after the prompt.
pub(super) fn anthropic_messages(prompt: &str, turns: &[Turn]) -> Vec<Value> {
    let mut messages = vec![json!({ "role": "user", "content": prompt })];
    for turn in turns {
        match turn {
            Turn::Assistant { text, calls } => {
                let mut blocks = Vec::new();
                if !text.is_empty() {
                    blocks.push(json!({ "type": "text", "text": text }));
                }
                for c in calls {
                    blocks.push(
                        json!({ "type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments }),
                    );
                }
                messages.push(json!({ "role": "assistant", "content": blocks }));
            }
            Turn::Results(results) => {
                let blocks: Vec<Value> = results
                    .iter()
                    .map(|r| {
                        json!({
                            "type": "tool_result", "tool_use_id": r.call_id,
                            "content": r.content, "is_error": r.is_error,
                        })
                    })
                    .collect();
                messages.push(json!({ "role": "user", "content": blocks }));
            }
        }
    }
    messages
}

/// The Anthropic `tools` list.
pub(super) fn anthropic_tools(tools: &[ToolSpec]) -> Vec<Value> {
    tools
        .iter()
        .map(|t| json!({ "name": t.name, "description": t.description, "input_schema": t.parameters }))
        .collect()
}

/// The `tool_use` blocks of an Anthropic answer.
pub(super) fn anthropic_calls(blocks: &[Value]) -> Vec<ToolCall> {
    blocks
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .map(|b| ToolCall {
            id: b["id"].as_str().unwrap_or_default().to_owned(),
            name: b["name"].as_str().unwrap_or_default().to_owned(),
            arguments: b["input"].clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> Vec<Turn> {
        vec![
            Turn::Assistant {
                text: String::new(),
                calls: vec![ToolCall {
                    id: "c1".into(),
                    name: "workspace_read".into(),
                    arguments: json!({ "path": "a.txt" }),
                }],
            },
            Turn::Results(vec![ToolResult {
                call_id: "c1".into(),
                content: "hello".into(),
                is_error: false,
            }]),
        ]
    }

    #[test]
    fn openai_history_carries_calls_as_json_strings_and_results_as_tool_messages() {
        let m = openai_messages("p", &history());
        assert_eq!(m.len(), 3);
        assert_eq!(
            m[1]["tool_calls"][0]["function"]["arguments"],
            r#"{"path":"a.txt"}"#
        );
        assert_eq!(
            m[2],
            json!({ "role": "tool", "tool_call_id": "c1", "content": "hello" })
        );
        let calls = openai_calls(&m[1]);
        assert_eq!(calls[0].arguments, json!({ "path": "a.txt" }));
    }

    #[test]
    fn anthropic_history_carries_tool_use_and_tool_result_blocks() {
        let m = anthropic_messages("p", &history());
        assert_eq!(m[1]["content"][0]["type"], "tool_use");
        assert_eq!(m[2]["role"], "user");
        assert_eq!(m[2]["content"][0]["tool_use_id"], "c1");
        let blocks = m[1]["content"].as_array().unwrap();
        assert_eq!(anthropic_calls(blocks)[0].name, "workspace_read");
    }
}
