//! A fake OpenAI-compatible model provider on loopback: `POST /v1/chat/completions`.
//! It checks the bearer, and records what each call asked for, when it arrived and for
//! which run (the header [`RUN_ID_HEADER`] the objectives runner sends).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;

use crate::testkit::served::Served;

/// The header that names the run a provider call belongs to: the cluster checker
/// matches calls to run rows with it (at most one call per run, none without a row).
pub const RUN_ID_HEADER: &str = "x-palyra-run-id";

/// One call that was answered: its prompt (the first message's content), when it
/// arrived, in Unix nanoseconds (taken before any lock), and its run id header.
#[derive(Debug, Clone)]
pub struct ModelCall {
    pub prompt: String,
    pub at_unix_ns: i64,
    /// None when the caller sent no [`RUN_ID_HEADER`].
    pub run_id: Option<String>,
}

/// Answers keys starting with `good-` with a message and `usage.total_tokens`,
/// anything else 401. Counts calls and the most calls in flight at once.
#[derive(Debug)]
pub struct FakeModel {
    pub addr: SocketAddr,
    pub calls: Arc<AtomicUsize>,
    pub max_in_flight: Arc<AtomicUsize>,
    /// Tokens each answer reports (a test may change it).
    pub tokens: Arc<AtomicUsize>,
    /// Delay of each answer, in milliseconds.
    pub delay_ms: Arc<AtomicUsize>,
    pub models_seen: Arc<Mutex<Vec<String>>>,
    /// Every answered call, in the order the calls took the lock.
    pub answered: Arc<Mutex<Vec<ModelCall>>>,
    served: Served,
}

impl FakeModel {
    pub async fn start(tokens: usize) -> Self {
        Self::try_start(tokens).expect("the fake model provider starts")
    }

    pub fn try_start(tokens: usize) -> std::io::Result<Self> {
        let calls = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let token_count = Arc::new(AtomicUsize::new(tokens));
        let delay_ms = Arc::new(AtomicUsize::new(0));
        let models_seen = Arc::new(Mutex::new(Vec::new()));
        let answered = Arc::new(Mutex::new(Vec::new()));
        let (c, f, m, t, d, ms, a) = (
            Arc::clone(&calls),
            Arc::clone(&in_flight),
            Arc::clone(&max_in_flight),
            Arc::clone(&token_count),
            Arc::clone(&delay_ms),
            Arc::clone(&models_seen),
            Arc::clone(&answered),
        );
        let app = Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(
                move |headers: HeaderMap, axum::Json(body): axum::Json<serde_json::Value>| {
                    let at_unix_ns = unix_ns();
                    let (c, f, m, t, d, ms, a) = (
                        Arc::clone(&c),
                        Arc::clone(&f),
                        Arc::clone(&m),
                        Arc::clone(&t),
                        Arc::clone(&d),
                        Arc::clone(&ms),
                        Arc::clone(&a),
                    );
                    async move {
                        let ok = headers
                            .get(header::AUTHORIZATION)
                            .and_then(|v| v.to_str().ok())
                            .is_some_and(|v| v.starts_with("Bearer good-"));
                        if !ok {
                            return (StatusCode::UNAUTHORIZED, "{}").into_response();
                        }
                        let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                        let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                        m.fetch_max(now, Ordering::SeqCst);
                        let model = body["model"].as_str().unwrap_or("").to_owned();
                        ms.lock().unwrap_or_else(PoisonError::into_inner).push(model);
                        let prompt = body["messages"][0]["content"]
                            .as_str()
                            .unwrap_or("")
                            .to_owned();
                        let run_id = headers
                            .get(RUN_ID_HEADER)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        a.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(ModelCall {
                                prompt: prompt.clone(),
                                at_unix_ns,
                                run_id,
                            });
                        let delay = d.load(Ordering::SeqCst) as u64;
                        if delay > 0 {
                            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                        }
                        f.fetch_sub(1, Ordering::SeqCst);
                        axum::Json(serde_json::json!({
                            "choices": [{ "message": { "role": "assistant", "content": format!("answer {n} to {prompt}") } }],
                            "usage": { "total_tokens": t.load(Ordering::SeqCst) }
                        }))
                        .into_response()
                    }
                },
            ),
        );
        let served = Served::start("fake-model", app)?;
        Ok(Self {
            addr: served.addr(),
            calls,
            max_in_flight,
            tokens: token_count,
            delay_ms,
            models_seen,
            answered,
            served,
        })
    }

    pub fn url(&self) -> String {
        self.served.url()
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.served.connections()
    }

    /// Takes the calls answered so far out of the record.
    pub fn take_answered(&self) -> Vec<ModelCall> {
        std::mem::take(&mut *self.answered.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A copy of the calls answered so far, left in the record.
    pub fn answered(&self) -> Vec<ModelCall> {
        self.answered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Graceful stop; an error if the server failed.
    pub fn stop(self) -> Result<(), String> {
        self.served.stop()
    }
}

/// Wall-clock time in Unix nanoseconds.
fn unix_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}
