//! Retries, deadlines, cancellation, the pause after failures and the concurrency
//! caps, through the real daemon against a scripted fake provider that counts the
//! calls in flight and sees a call dropped (its handler future ends unanswered).
//! Each test runs on redb, and on PostgreSQL in the suite's PostgreSQL pass.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use palyra::testkit::served::Served;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code, spawn_app_with};

/// What the fake does with one call.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    Ok,
    Status(u16),
    /// 429 with `Retry-After: 0`: busy now, usable again at once (the profile's
    /// rate-limit cooldown ends immediately, so a retry is not held back by it).
    Busy,
    /// Never answers: only a dropped connection ends it.
    Hang,
}

#[derive(Default)]
struct Script {
    answers: Mutex<VecDeque<Answer>>,
    /// Delay of an `Ok` answer, in milliseconds.
    delay_ms: AtomicUsize,
    calls: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Calls whose handler was dropped before it answered: the caller went away.
    dropped: AtomicUsize,
    /// Prompts in arrival order.
    prompts: Mutex<Vec<String>>,
}

/// Counts a call out of flight when its handler ends, answered or dropped.
struct InFlight(Arc<Script>, bool);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !self.1 {
            self.0.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// An OpenAI-compatible fake whose answers follow a script (then `Ok`), and that
/// checks the bearer of every call.
pub struct ScriptedModel {
    script: Arc<Script>,
    served: Served,
}

impl ScriptedModel {
    pub fn start() -> Self {
        let script = Arc::new(Script::default());
        let s = Arc::clone(&script);
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, axum::Json(body): axum::Json<Value>| {
                    let s = Arc::clone(&s);
                    async move {
                        let bearer = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("");
                        if bearer != "Bearer good-model-key-1234" {
                            return (StatusCode::UNAUTHORIZED, "{}").into_response();
                        }
                        s.calls.fetch_add(1, Ordering::SeqCst);
                        let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        s.max_in_flight.fetch_max(now, Ordering::SeqCst);
                        let mut guard = InFlight(Arc::clone(&s), false);
                        let prompt = body["messages"][0]["content"]
                            .as_str()
                            .unwrap_or("")
                            .to_owned();
                        s.prompts.lock().unwrap().push(prompt.clone());
                        let answer = s.answers.lock().unwrap().pop_front().unwrap_or(Answer::Ok);
                        match answer {
                            Answer::Hang => std::future::pending::<()>().await,
                            Answer::Status(code) => {
                                guard.1 = true;
                                return (StatusCode::from_u16(code).unwrap(), "{}").into_response();
                            }
                            Answer::Busy => {
                                guard.1 = true;
                                return (
                                    StatusCode::TOO_MANY_REQUESTS,
                                    [("retry-after", "0")],
                                    "{}",
                                )
                                    .into_response();
                            }
                            Answer::Ok => {}
                        }
                        let delay = s.delay_ms.load(Ordering::SeqCst) as u64;
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                        guard.1 = true;
                        axum::Json(json!({
                            "choices": [{ "message": { "role": "assistant", "content": format!("did {prompt}") } }],
                            "usage": { "total_tokens": 2 }
                        }))
                        .into_response()
                    }
                },
            ),
        );
        let served = Served::start("scripted-model", app).expect("the fake starts");
        Self { script, served }
    }

    pub fn script(&self, answers: &[Answer]) {
        self.script.answers.lock().unwrap().extend(answers);
    }

    /// Delays every `Ok` answer by `ms`.
    pub fn set_delay_ms(&self, ms: usize) {
        self.script.delay_ms.store(ms, Ordering::SeqCst);
    }

    pub fn calls(&self) -> usize {
        self.script.calls.load(Ordering::SeqCst)
    }

    pub fn in_flight(&self) -> usize {
        self.script.in_flight.load(Ordering::SeqCst)
    }

    pub fn max_in_flight(&self) -> usize {
        self.script.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn dropped(&self) -> usize {
        self.script.dropped.load(Ordering::SeqCst)
    }

    pub fn prompts(&self) -> Vec<String> {
        self.script.prompts.lock().unwrap().clone()
    }

    pub fn url(&self) -> String {
        self.served.url()
    }
}

/// The daemon against `fake`, with profile `p1` and agent `a1` (with `agent` fields).
async fn setup(fake: &ScriptedModel, cap: usize, agent: Value) -> TestApp {
    let url = fake.url();
    let app = spawn_app_with(move |s| {
        s.providers.openai.api_base_url = url;
        s.objectives.max_concurrent_runs = cap;
    })
    .await;
    app.seed_agent(agent).await;
    app
}

async fn create(app: &TestApp, body: Value) -> Value {
    let mut full = json!({ "agent_id": "a1", "name": "n", "activate": true });
    full.as_object_mut()
        .unwrap()
        .extend(body.as_object().unwrap().clone());
    let response = app.bearer_post("/console/v1/objectives", full).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    response.json().await.unwrap()
}

async fn lifecycle(app: &TestApp, id: &str, action: &str) -> reqwest::Response {
    app.bearer_post(
        &format!("/console/v1/objectives/{id}/lifecycle"),
        json!({ "action": action }),
    )
    .await
}

async fn runs(app: &TestApp, id: &str) -> Vec<Value> {
    let page = app
        .bearer_get_json(&format!("/console/v1/objectives/{id}/runs?limit=500"))
        .await;
    page["items"].as_array().unwrap().clone()
}

/// The newest run of `id` once it is finished.
async fn finished_run(app: &TestApp, id: &str) -> Value {
    for _ in 0..300 {
        if let Some(run) = runs(app, id).await.first()
            && !matches!(run["status"].as_str(), Some("running" | "queued"))
        {
            return run.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no run of {id} finished: {:?}", runs(app, id).await);
}

async fn wait_for(mut check: impl AsyncFnMut() -> bool, what: &str) {
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn a_failed_run_is_retried_within_max_attempts_and_a_400_is_not_retried() {
    let fake = ScriptedModel::start();
    let app = setup(&fake, 64, json!({})).await;
    create(
        &app,
        json!({ "objective_id": "r", "prompt": "go",
                "retry": { "max_attempts": 3, "backoff_s": 0 } }),
    )
    .await;
    // Retryable failures whose cooldowns end at once (a 5xx cools the profile down
    // for 30 s, and a retry waits for that: `usable_at`).
    fake.script(&[Answer::Busy, Answer::Busy]);
    assert_eq!(lifecycle(&app, "r", "fire").await.status(), 200);
    let run = finished_run(&app, "r").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["retries"], 2);
    assert_eq!(run["tokens"], 2);
    assert_eq!(fake.calls(), 3);
    // Every attempt fails: three in all, and the run is failed with the last error.
    fake.script(&[Answer::Busy, Answer::Busy, Answer::Busy]);
    assert_eq!(lifecycle(&app, "r", "fire").await.status(), 200);
    let run = finished_run(&app, "r").await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["retries"], 2);
    assert!(run["error"].as_str().unwrap().contains("429"), "{run}");
    assert_eq!(fake.calls(), 6);
    // A request the provider refuses is not tried again.
    fake.script(&[Answer::Status(400)]);
    assert_eq!(lifecycle(&app, "r", "fire").await.status(), 200);
    let run = finished_run(&app, "r").await;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["retries"], 0);
    assert_eq!(fake.calls(), 7);
    let objective = app.bearer_get_json("/console/v1/objectives/r").await;
    assert_eq!(objective["usage"]["runs"], 3, "retries are not runs");
    assert_eq!(objective["consecutive_failures"], 2);
}

#[tokio::test]
async fn a_retry_never_goes_past_the_budget() {
    let fake = ScriptedModel::start();
    let app = setup(&fake, 64, json!({})).await;
    // Each failed attempt of this program spends its first step's 2 tokens; the budget
    // of 3 tokens allows one retry, not the four the policy would.
    create(
        &app,
        json!({ "objective_id": "b", "kind": "program", "steps": ["one", "two"],
                "budget": { "max_tokens": 3 },
                "retry": { "max_attempts": 5, "backoff_s": 0 } }),
    )
    .await;
    fake.script(&[Answer::Ok, Answer::Busy, Answer::Ok, Answer::Busy]);
    assert_eq!(lifecycle(&app, "b", "fire").await.status(), 200);
    finished_run(&app, "b").await;
    // The newest record is the budget's pause; the run is the one before.
    let all = runs(&app, "b").await;
    let run = all.iter().find(|r| r["run_id"] == "b-1").unwrap();
    assert_eq!(run["status"], "failed", "{all:?}");
    assert_eq!(all[0]["status"], "skipped_budget");
    assert_eq!(run["retries"], 1);
    assert_eq!(fake.calls(), 4);
}

#[tokio::test]
async fn a_deadline_stops_a_slow_program() {
    let fake = ScriptedModel::start();
    let app = setup(&fake, 64, json!({})).await;
    create(
        &app,
        json!({ "objective_id": "slow", "kind": "program", "steps": ["one", "two", "three"],
                "deadline_s": 1 }),
    )
    .await;
    fake.script(&[Answer::Ok, Answer::Hang]);
    assert_eq!(lifecycle(&app, "slow", "fire").await.status(), 200);
    let run = finished_run(&app, "slow").await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["error"]
            .as_str()
            .unwrap()
            .starts_with("deadline_exceeded"),
        "{run}"
    );
    // The hanging second step was dropped, the third never asked.
    wait_for(async || fake.dropped() == 1, "the hanging call dropped").await;
    assert_eq!(fake.calls(), 2);
    assert_eq!(fake.prompts(), vec!["one", "two"]);
}

#[tokio::test]
async fn cancel_stops_a_hanging_call_and_records_the_run_cancelled() {
    let fake = ScriptedModel::start();
    let app = setup(&fake, 64, json!({})).await;
    create(&app, json!({ "objective_id": "h", "prompt": "hang" })).await;
    fake.script(&[Answer::Hang]);
    assert_eq!(lifecycle(&app, "h", "fire").await.status(), 200);
    wait_for(async || fake.in_flight() == 1, "the call in flight").await;
    let run_id = runs(&app, "h").await[0]["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = app
        .bearer_post(
            &format!("/console/v1/objectives/h/runs/{run_id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let cancelled: Value = response.json().await.unwrap();
    // Answered once durable: the record says so already.
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(runs(&app, "h").await[0]["status"], "cancelled");
    wait_for(async || fake.dropped() == 1, "the provider call dropped").await;
    assert_eq!(fake.in_flight(), 0);
    let objective = app.bearer_get_json("/console/v1/objectives/h").await;
    assert_eq!(objective["last_run"]["status"], "cancelled");
    assert_eq!(
        objective["state"], "active",
        "a run's cancel leaves the objective"
    );
    // A finished run cannot be cancelled; an unknown one is not found.
    let again = app
        .bearer_post(
            &format!("/console/v1/objectives/h/runs/{run_id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(again.status(), 409);
    assert_eq!(error_code(again).await, "conflict");
    let unknown = app
        .bearer_post("/console/v1/objectives/h/runs/h-99/cancel", json!({}))
        .await;
    assert_eq!(unknown.status(), 404);
    // The objective runs again afterwards.
    assert_eq!(lifecycle(&app, "h", "fire").await.status(), 200);
    assert_eq!(finished_run(&app, "h").await["status"], "succeeded");
}

#[tokio::test]
async fn pausing_an_objective_stops_its_run_in_flight() {
    let fake = ScriptedModel::start();
    let app = setup(&fake, 64, json!({})).await;
    create(&app, json!({ "objective_id": "p", "prompt": "hang" })).await;
    fake.script(&[Answer::Hang]);
    assert_eq!(lifecycle(&app, "p", "fire").await.status(), 200);
    wait_for(async || fake.in_flight() == 1, "the call in flight").await;
    assert_eq!(lifecycle(&app, "p", "pause").await.status(), 200);
    let run = finished_run(&app, "p").await;
    assert_eq!(run["status"], "cancelled");
    assert_eq!(run["error"], "the objective was paused");
    wait_for(async || fake.dropped() == 1, "the provider call dropped").await;
    let objective = app.bearer_get_json("/console/v1/objectives/p").await;
    assert_eq!(objective["state"], "paused");
}

#[tokio::test]
async fn consecutive_failed_runs_pause_the_objective_and_a_resume_starts_counting_again() {
    let fake = ScriptedModel::start();
    let app = setup(&fake, 64, json!({})).await;
    let created = create(
        &app,
        json!({ "objective_id": "f", "prompt": "go", "pause_after_failures": 2,
                "automation": { "schedule": "* * * * * *" } }),
    )
    .await;
    assert_eq!(created["pause_after_failures"], 2);
    // Failures that put no cooldown on the profile (a refused request), so every
    // firing calls the provider.
    fake.script(&[Answer::Status(400), Answer::Status(400)]);
    wait_for(
        async || app.bearer_get_json("/console/v1/objectives/f").await["state"] == "paused",
        "the pause after two failures",
    )
    .await;
    let objective = app.bearer_get_json("/console/v1/objectives/f").await;
    assert_eq!(objective["state_reason"], "consecutive_failures");
    assert_eq!(objective["consecutive_failures"], 2);
    let failed = runs(&app, "f")
        .await
        .into_iter()
        .filter(|r| r["status"] == "failed")
        .count();
    assert_eq!(failed, 2);
    assert_eq!(fake.calls(), 2, "nothing ran once paused");
    let resumed: Value = lifecycle(&app, "f", "resume").await.json().await.unwrap();
    assert_eq!(resumed["consecutive_failures"], 0);
    // The default is 10.
    let other = create(&app, json!({ "objective_id": "g", "prompt": "go" })).await;
    assert_eq!(other["pause_after_failures"], 10);
}

#[tokio::test]
async fn the_node_cap_is_never_exceeded_and_every_queued_firing_runs_in_order() {
    let fake = ScriptedModel::start();
    fake.script.delay_ms.store(400, Ordering::SeqCst);
    let app = setup(&fake, 2, json!({})).await;
    let ids: Vec<String> = (0..6).map(|i| format!("c{i}")).collect();
    for id in &ids {
        create(&app, json!({ "objective_id": id, "prompt": id })).await;
    }
    for id in &ids {
        assert_eq!(lifecycle(&app, id, "fire").await.status(), 200);
    }
    // Over the cap a firing is a durable queued run.
    let queued = runs(&app, "c5").await;
    assert_eq!(queued[0]["status"], "queued", "{queued:?}");
    // A second manual firing of a waiting objective is refused, not doubled.
    let twice = lifecycle(&app, "c5", "fire").await;
    assert_eq!(twice.status(), 409);
    for id in &ids {
        assert_eq!(finished_run(&app, id).await["status"], "succeeded");
    }
    assert_eq!(
        fake.max_in_flight(),
        2,
        "the cap was reached and never exceeded"
    );
    // Started in firing order, two at a time (within a pair the calls race).
    let prompts = fake.prompts();
    for (started, fired) in prompts.chunks(2).zip(ids.chunks(2)) {
        let mut started = started.to_vec();
        started.sort();
        assert_eq!(started, fired, "{prompts:?}");
    }
    for id in &ids {
        assert_eq!(runs(&app, id).await.len(), 1, "one record per firing");
    }
    // A firing that waited shows when it was claimed and when it started.
    let waited = finished_run(&app, "c5").await;
    let queued_at = waited["queued_at"].as_str().expect("queued_at").to_owned();
    assert!(
        waited["started_at"].as_str().unwrap() >= queued_at.as_str(),
        "{waited}"
    );
    assert!(finished_run(&app, "c0").await.get("queued_at").is_none());
}

#[tokio::test]
async fn an_agents_own_cap_holds_below_the_nodes_and_a_waiting_run_can_be_cancelled() {
    let fake = ScriptedModel::start();
    fake.script.delay_ms.store(300, Ordering::SeqCst);
    let app = setup(&fake, 64, json!({ "max_concurrent_runs": 1 })).await;
    let agent = app.bearer_get_json("/console/v1/agents/a1").await;
    assert_eq!(agent["max_concurrent_runs"], 1);
    for id in ["x0", "x1", "x2"] {
        create(&app, json!({ "objective_id": id, "prompt": id })).await;
        assert_eq!(lifecycle(&app, id, "fire").await.status(), 200);
    }
    // x2 waits for a slot: cancelled, it never reaches the provider.
    let waiting = runs(&app, "x2").await[0].clone();
    assert_eq!(waiting["status"], "queued");
    let response = app
        .bearer_post(
            &format!(
                "/console/v1/objectives/x2/runs/{}/cancel",
                waiting["run_id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap()["status"],
        "cancelled"
    );
    assert_eq!(finished_run(&app, "x0").await["status"], "succeeded");
    assert_eq!(finished_run(&app, "x1").await["status"], "succeeded");
    assert_eq!(fake.max_in_flight(), 1);
    assert_eq!(fake.prompts(), vec!["x0", "x1"]);
    // Out-of-range limits are a clear 400.
    let bad = app
        .bearer_post(
            "/console/v1/objectives",
            json!({ "agent_id": "a1", "name": "n", "prompt": "p",
                    "retry": { "max_attempts": 0, "backoff_s": 1 } }),
        )
        .await;
    assert_eq!(bad.status(), 400);
    let bad = app
        .bearer_post(
            "/console/v1/agents",
            json!({ "agent_id": "a2", "model": "m", "max_concurrent_runs": 0 }),
        )
        .await;
    assert_eq!(bad.status(), 400);
}
