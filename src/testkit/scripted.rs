//! A fake model provider scripted per key, on loopback: OpenAI chat completions
//! (`POST /v1/chat/completions`, bearer) and the Anthropic Messages API
//! (`POST /v1/messages`, which refuses a call without `x-api-key`, without
//! `anthropic-version: 2023-06-01` or without a positive `max_tokens`, as the real one
//! does). Each key answers its script in order, the last answer repeating; a key with
//! no script is refused with 401. Every call is recorded with what it carried.
//! `GET /v1/models` (the key check) answers from the same script: an `Ok` is the
//! model list, a status is that status.
//! A `ToolCall` answer asks for a tool in the API's own format (OpenAI `tool_calls`
//! with JSON-string arguments; Anthropic `tool_use` blocks); a request whose history
//! is malformed for its API (a tool result naming no earlier call, a tool call of a
//! tool not offered) is refused with 400, as the real APIs do.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::testkit::model::RUN_ID_HEADER;
use crate::testkit::served::Served;

/// What a Retry-After header says.
#[derive(Debug, Clone, Copy)]
pub enum RetryAfter {
    Seconds(u64),
    /// An HTTP date.
    Date(SystemTime),
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Answer {
    /// 200 with this usage (input, output tokens).
    Ok { input: u64, output: u64 },
    /// 429, with or without Retry-After.
    RateLimited(Option<RetryAfter>),
    /// Any status with the provider's error type in the body (500, 529, 401, 402, 400).
    Status(u16, &'static str),
    /// Never answers (the caller's timeout must end the call).
    Hang,
    /// 200 after a delay.
    Slow {
        delay: Duration,
        input: u64,
        output: u64,
    },
    /// 200 asking for one call of tool `name` with `arguments`, with this usage.
    ToolCall {
        name: &'static str,
        arguments: Value,
        input: u64,
        output: u64,
    },
}

/// Which API a call used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    OpenAi,
    Anthropic,
    /// `GET /v1/models` with a bearer token.
    Models,
}

/// One call received.
#[derive(Debug, Clone)]
pub struct ScriptedCall {
    pub api: Api,
    pub key: String,
    pub model: String,
    pub prompt: String,
    pub run_id: Option<String>,
    /// The status answered (0 for a hang).
    pub status: u16,
    /// The request body as received (messages, tools).
    pub body: Value,
}

impl ScriptedCall {
    /// The names of the tools the request offered.
    pub fn tools_offered(&self) -> Vec<String> {
        self.body["tools"]
            .as_array()
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| t["function"]["name"].as_str().or(t["name"].as_str()))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The tool results the request carried, in order: (content, is_error).
    pub fn tool_results(&self) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        for m in self.body["messages"].as_array().into_iter().flatten() {
            if m["role"] == "tool" {
                let text = m["content"].as_str().unwrap_or_default().to_owned();
                out.push((text.clone(), text.starts_with("refused:")));
            }
            for b in m["content"].as_array().into_iter().flatten() {
                if b["type"] == "tool_result" {
                    out.push((
                        b["content"].as_str().unwrap_or_default().to_owned(),
                        b["is_error"].as_bool().unwrap_or(false),
                    ));
                }
            }
        }
        out
    }
}

/// Whether a request's history is well formed for its API: every tool result names a
/// call of an earlier assistant turn, and every call names an offered tool.
fn history_ok(api: Api, body: &Value) -> bool {
    let offered: Vec<&str> = body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["function"]["name"].as_str().or(t["name"].as_str()))
        .collect();
    let mut calls: Vec<&str> = Vec::new();
    for m in body["messages"].as_array().into_iter().flatten() {
        match api {
            Api::OpenAi => {
                for c in m["tool_calls"].as_array().into_iter().flatten() {
                    let name = c["function"]["name"].as_str().unwrap_or_default();
                    if !offered.contains(&name) || !c["function"]["arguments"].is_string() {
                        return false;
                    }
                    calls.push(c["id"].as_str().unwrap_or_default());
                }
                if m["role"] == "tool"
                    && !calls.contains(&m["tool_call_id"].as_str().unwrap_or_default())
                {
                    return false;
                }
            }
            Api::Anthropic => {
                for b in m["content"].as_array().into_iter().flatten() {
                    if b["type"] == "tool_use" {
                        let name = b["name"].as_str().unwrap_or_default();
                        if m["role"] != "assistant" || !offered.contains(&name) {
                            return false;
                        }
                        calls.push(b["id"].as_str().unwrap_or_default());
                    }
                    if b["type"] == "tool_result"
                        && (m["role"] != "user"
                            || !calls.contains(&b["tool_use_id"].as_str().unwrap_or_default()))
                    {
                        return false;
                    }
                }
            }
            Api::Models => {}
        }
    }
    true
}

#[derive(Debug, Default)]
struct State {
    scripts: HashMap<String, Vec<Answer>>,
    /// Answers taken so far per key.
    taken: HashMap<String, usize>,
    calls: Vec<ScriptedCall>,
}

#[derive(Debug)]
pub struct ScriptedModel {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    in_flight: Arc<AtomicUsize>,
    /// The most calls in flight at once.
    pub max_in_flight: Arc<AtomicUsize>,
    served: Served,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ScriptedModel {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let handler = |api: Api| {
            let (state, in_flight, max) = (
                Arc::clone(&state),
                Arc::clone(&in_flight),
                Arc::clone(&max_in_flight),
            );
            move |headers: HeaderMap, axum::Json(body): axum::Json<Value>| {
                let (state, in_flight, max) =
                    (Arc::clone(&state), Arc::clone(&in_flight), Arc::clone(&max));
                async move {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(now, Ordering::SeqCst);
                    let response = answer(api, &state, &headers, &body).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    response
                }
            }
        };
        let models = handler(Api::Models);
        let app = Router::new()
            .route("/v1/chat/completions", post(handler(Api::OpenAi)))
            .route("/v1/messages", post(handler(Api::Anthropic)))
            .route(
                "/v1/models",
                axum::routing::get(move |headers: HeaderMap| {
                    models(headers, axum::Json(Value::Null))
                }),
            );
        let served = Served::start("fake-scripted-model", app).expect("the scripted fake starts");
        Self {
            addr: served.addr(),
            state,
            in_flight,
            max_in_flight,
            served,
        }
    }

    pub fn url(&self) -> String {
        self.served.url()
    }

    /// Sets `key`'s answers, in order; the last one repeats.
    pub fn script(&self, key: &str, answers: Vec<Answer>) {
        let mut s = lock(&self.state);
        s.scripts.insert(key.to_owned(), answers);
        s.taken.remove(key);
    }

    /// Every call received so far.
    pub fn calls(&self) -> Vec<ScriptedCall> {
        lock(&self.state).calls.clone()
    }

    /// The keys of the calls received so far, in order.
    pub fn keys_called(&self) -> Vec<String> {
        self.calls().into_iter().map(|c| c.key).collect()
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }
}

/// An error answer whose message quotes the key, as OpenAI's 401 does ("Incorrect API
/// key provided: sk-..."): the daemon must never pass a provider's message on.
fn error(status: u16, kind: &str, key: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = format!("scripted failure for key {key}");
    (
        code,
        axum::Json(json!({ "type": "error", "error": { "type": kind, "message": message } })),
    )
        .into_response()
}

async fn answer(api: Api, state: &Mutex<State>, headers: &HeaderMap, body: &Value) -> Response {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let key = match api {
        Api::OpenAi | Api::Models => text(header::AUTHORIZATION.as_str())
            .and_then(|v| v.strip_prefix("Bearer ").map(str::to_owned)),
        Api::Anthropic => text("x-api-key"),
    };
    let mut call = ScriptedCall {
        api,
        key: key.clone().unwrap_or_default(),
        model: body["model"].as_str().unwrap_or("").to_owned(),
        prompt: body["messages"][0]["content"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        run_id: text(RUN_ID_HEADER),
        status: 0,
        body: body.clone(),
    };
    // What the Messages API itself refuses, before any key is looked at.
    let refusal = match api {
        Api::Anthropic if key.is_none() => Some((401, "authentication_error")),
        Api::Anthropic if text("anthropic-version").as_deref() != Some("2023-06-01") => {
            Some((400, "invalid_request_error"))
        }
        Api::Anthropic if body["max_tokens"].as_u64().is_none_or(|n| n == 0) => {
            Some((400, "invalid_request_error"))
        }
        Api::OpenAi | Api::Models if key.is_none() => Some((401, "invalid_api_key")),
        Api::OpenAi | Api::Anthropic if !history_ok(api, body) => {
            Some((400, "invalid_request_error"))
        }
        _ => None,
    };
    let next = {
        let mut s = lock(state);
        let answer = match refusal {
            Some(_) => None,
            None => {
                let key = call.key.clone();
                let n = *s.taken.get(&key).unwrap_or(&0);
                let answer = s
                    .scripts
                    .get(&key)
                    .and_then(|script| script.get(n).or(script.last()).cloned());
                *s.taken.entry(key).or_default() += 1;
                answer
            }
        };
        call.status = match (&refusal, &answer) {
            (Some((status, _)), _) => *status,
            (None, None) => 401,
            (None, Some(Answer::Ok { .. } | Answer::Slow { .. } | Answer::ToolCall { .. })) => 200,
            (None, Some(Answer::RateLimited(_))) => 429,
            (None, Some(Answer::Status(status, _))) => *status,
            (None, Some(Answer::Hang)) => 0,
        };
        s.calls.push(call.clone());
        answer
    };
    if let Some((status, kind)) = refusal {
        return error(status, kind, &call.key);
    }
    let ok = |input: u64, output: u64| {
        match api {
        Api::Models => axum::Json(json!({ "object": "list", "data": [] })).into_response(),
        Api::OpenAi => axum::Json(json!({
            "choices": [{ "message": { "role": "assistant", "content": format!("{} says hi to {}", call.key, call.prompt) } }],
            "usage": { "prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output }
        }))
        .into_response(),
        Api::Anthropic => axum::Json(json!({
            "type": "message", "role": "assistant",
            "content": [{ "type": "text", "text": format!("{} says hi to {}", call.key, call.prompt) }],
            "usage": { "input_tokens": input, "output_tokens": output }
        }))
        .into_response(),
    }
    };
    let turn = call.body["messages"].as_array().map_or(0, Vec::len);
    match next {
        None => error(401, "authentication_error", &call.key),
        Some(Answer::ToolCall {
            name,
            arguments,
            input,
            output,
        }) => {
            let id = format!("call_{turn}");
            let usage_openai = json!({ "prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output });
            match api {
                Api::Anthropic => axum::Json(json!({
                    "type": "message", "role": "assistant", "stop_reason": "tool_use",
                    "content": [{ "type": "tool_use", "id": id, "name": name, "input": arguments }],
                    "usage": { "input_tokens": input, "output_tokens": output }
                }))
                .into_response(),
                _ => axum::Json(json!({
                    "choices": [{ "finish_reason": "tool_calls", "message": {
                        "role": "assistant", "content": null,
                        "tool_calls": [{ "id": id, "type": "function",
                            "function": { "name": name, "arguments": arguments.to_string() } }]
                    }}],
                    "usage": usage_openai
                }))
                .into_response(),
            }
        }
        Some(Answer::Ok { input, output }) => ok(input, output),
        Some(Answer::Slow {
            delay,
            input,
            output,
        }) => {
            tokio::time::sleep(delay).await;
            ok(input, output)
        }
        Some(Answer::RateLimited(after)) => {
            let mut r = error(429, "rate_limit_error", &call.key);
            let value = match after {
                Some(RetryAfter::Seconds(s)) => Some(s.to_string()),
                Some(RetryAfter::Date(at)) => Some(httpdate(at)),
                None => None,
            };
            if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        Some(Answer::Status(status, kind)) => error(status, kind, &call.key),
        Some(Answer::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            error(504, "hang_ended", &call.key)
        }
    }
}

/// An HTTP date (IMF-fixdate), as a real server sends it.
fn httpdate(at: SystemTime) -> String {
    let at: chrono::DateTime<chrono::Utc> = at.into();
    at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}
