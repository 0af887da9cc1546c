//! The usage rollup and `GET /console/v1/usage`, through the real daemon against a
//! fake provider that reports input and output tokens per model (checking the bearer
//! and counting calls). Each test runs on redb, and on PostgreSQL in the suite's
//! PostgreSQL pass.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use palyra::testkit::served::Served;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, TestApp, error_code, spawn_app_with};

/// Input and output tokens the fake reports for a call to `model`.
pub fn tokens_of(model: &str) -> (u64, u64) {
    match model {
        "m1" => (3, 5),
        _ => (11, 13),
    }
}

/// An OpenAI-compatible fake: answers `Bearer good-...` with `tokens_of(model)`.
pub struct TokenModel {
    pub calls: Arc<AtomicUsize>,
    served: Served,
}

impl TokenModel {
    pub fn start() -> Self {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&calls);
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, axum::Json(body): axum::Json<Value>| {
                    let c = Arc::clone(&c);
                    async move {
                        let ok = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .is_some_and(|v| v.starts_with("Bearer good-"));
                        if !ok {
                            return (StatusCode::UNAUTHORIZED, "{}").into_response();
                        }
                        c.fetch_add(1, Ordering::SeqCst);
                        let (input, output) = tokens_of(body["model"].as_str().unwrap_or(""));
                        axum::Json(json!({
                            "choices": [{ "message": { "role": "assistant", "content": "done" } }],
                            "usage": { "prompt_tokens": input, "completion_tokens": output,
                                       "total_tokens": input + output }
                        }))
                        .into_response()
                    }
                },
            ),
        );
        Self {
            calls,
            served: Served::start("token-model", app).expect("the fake starts"),
        }
    }

    pub fn url(&self) -> String {
        self.served.url()
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// Profiles p1 and p2 (both openai, at the fake) and agents a1 (p1, model m1) and a2
/// (p2, model m2).
pub async fn setup(
    fake: &TokenModel,
    tweak: impl FnOnce(&mut palyra::settings::Settings),
) -> TestApp {
    let url = fake.url();
    let app = spawn_app_with(move |s| {
        s.providers.openai.api_base_url = url;
        tweak(s);
    })
    .await;
    for (profile, agent, model) in [("p1", "a1", "m1"), ("p2", "a2", "m2")] {
        let response = app
            .bearer_post(
                "/console/v1/auth/profiles",
                json!({ "profile_id": profile, "provider": "openai", "profile_name": profile,
                        "credential": { "type": "api_key", "api_key": format!("good-key-{profile}-1234") },
                        "validate": false }),
            )
            .await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        let response = app
            .bearer_post(
                "/console/v1/agents",
                json!({ "agent_id": agent, "display_name": agent, "workspace_roots": ["/srv/a"],
                        "default_model_profile": profile, "model": model }),
            )
            .await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
    app
}

/// Creates an active standing order of `agent`; `schedule` fires it on its own.
pub async fn objective(app: &TestApp, id: &str, agent: &str, schedule: Option<&str>) {
    let mut body = json!({ "objective_id": id, "agent_id": agent, "kind": "standing_order",
                           "name": id, "prompt": "count", "activate": true });
    if let Some(schedule) = schedule {
        body["automation"] = json!({ "schedule": schedule, "timezone": "UTC" });
    }
    let response = app.bearer_post("/console/v1/objectives", body).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

/// Fires `id` once by hand and waits for the run to finish; returns the run.
pub async fn fire_and_wait(app: &TestApp, id: &str) -> Value {
    // The newest run before (the history may be pruned to a fixed length).
    let before = runs(app, id).await.first().map(|r| r["run_id"].clone());
    let response = app
        .bearer_post(
            &format!("/console/v1/objectives/{id}/lifecycle"),
            json!({ "action": "fire" }),
        )
        .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    for _ in 0..100 {
        let all = runs(app, id).await;
        let newest = all.first().map(|r| r["run_id"].clone());
        if newest.is_some() && newest != before && all.iter().all(|r| r["finished_at"].is_string())
        {
            return all[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the run of {id} did not finish");
}

pub async fn runs(app: &TestApp, id: &str) -> Vec<Value> {
    let page = app
        .bearer_get_json(&format!("/console/v1/objectives/{id}/runs?limit=500"))
        .await;
    page["items"].as_array().unwrap().clone()
}

pub async fn usage(app: &TestApp, query: &str) -> Value {
    let response = app
        .http
        .get(app.url(&format!("/console/v1/usage{query}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{query}");
    response.json().await.unwrap()
}

/// The group `key` of a report.
pub fn group<'a>(report: &'a Value, key: &str) -> &'a Value {
    report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == key)
        .unwrap_or_else(|| panic!("no group {key} in {report}"))
}

#[tokio::test]
async fn usage_sums_match_the_runs_and_outlive_their_pruning() {
    let fake = TokenModel::start();
    // Two runs kept per objective: the history is pruned long before the test ends.
    let app = setup(&fake, |s| s.objectives.run_retention = 2).await;
    objective(&app, "o1", "a1", None).await;
    let mut seen = Vec::new();
    for _ in 0..5 {
        let run = fire_and_wait(&app, "o1").await;
        assert_eq!(run["status"], "succeeded", "{run}");
        // Each run's record, read before it is pruned, with its attempt's tokens.
        assert_eq!(run["prompt_tokens"], 3);
        assert_eq!(run["completion_tokens"], 5);
        assert_eq!(run["attempts"][0]["provider"], "openai");
        assert_eq!(run["attempts"][0]["prompt_tokens"], 3);
        seen.push(run);
        // The rollup matches the records seen so far, run by run.
        let report = usage(&app, "?group_by=objective").await;
        let o1 = group(&report, "o1");
        let input: u64 = seen
            .iter()
            .map(|r| r["prompt_tokens"].as_u64().unwrap())
            .sum();
        let output: u64 = seen
            .iter()
            .map(|r| r["completion_tokens"].as_u64().unwrap())
            .sum();
        assert_eq!(o1["input_tokens"], input, "{report}");
        assert_eq!(o1["output_tokens"], output, "{report}");
        assert_eq!(o1["calls"], seen.len());
    }
    assert_eq!(fake.calls(), 5);
    assert!(runs(&app, "o1").await.len() <= 2, "the history was pruned");
    // And across a restart: the rollup is durable, not memory.
    let app = app.restart().await;
    let report = usage(&app, "?group_by=objective").await;
    let o1 = group(&report, "o1");
    assert_eq!(
        (o1["input_tokens"].as_u64(), o1["output_tokens"].as_u64()),
        (Some(15), Some(25))
    );
    let objective = app.bearer_get_json("/console/v1/objectives/o1").await;
    assert_eq!(
        objective["usage"]["tokens"], 40,
        "the lifetime usage agrees"
    );
    // One day in UTC holds it all, and its day is today.
    let days = report["days"].as_array().unwrap();
    assert_eq!(days.len(), 1, "{report}");
    let today = chrono::Utc::now().date_naive().to_string();
    assert_eq!(days[0]["day"], today.as_str());
    assert_eq!(report["tz"], "UTC");
    assert_eq!(report["to"], today.as_str());
    assert!(days[0].get("cost_usd").is_none(), "no price, no cost");
}

#[tokio::test]
async fn usage_groups_by_agent_profile_model_and_objective() {
    let fake = TokenModel::start();
    let app = setup(&fake, |_| {}).await;
    objective(&app, "o1", "a1", None).await;
    objective(&app, "o2", "a1", None).await;
    objective(&app, "o3", "a2", None).await;
    for id in ["o1", "o1", "o2", "o3"] {
        fire_and_wait(&app, id).await;
    }
    let by = |key: &str| format!("?group_by={key}");
    let report = usage(&app, &by("agent")).await;
    assert_eq!(report["group_by"], "agent");
    assert_eq!(report["groups"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(group(&report, "a1")["input_tokens"], 9);
    assert_eq!(group(&report, "a1")["output_tokens"], 15);
    assert_eq!(group(&report, "a2")["input_tokens"], 11);
    // Most tokens first.
    assert_eq!(report["groups"][0]["key"], "a1");
    let report = usage(&app, &by("profile")).await;
    assert_eq!(group(&report, "p1")["calls"], 3);
    assert_eq!(group(&report, "p2")["calls"], 1);
    let report = usage(&app, &by("model")).await;
    assert_eq!(group(&report, "openai/m1")["output_tokens"], 15);
    assert_eq!(group(&report, "openai/m2")["output_tokens"], 13);
    let report = usage(&app, &by("objective")).await;
    assert_eq!(report["groups"].as_array().unwrap().len(), 3);
    assert_eq!(group(&report, "o1")["calls"], 2);
    assert_eq!(group(&report, "o2")["calls"], 1);
    assert_eq!(group(&report, "o3")["input_tokens"], 11);
    // The days list the same sums per group.
    let days = report["days"].as_array().unwrap();
    let o1: i64 = days
        .iter()
        .filter(|d| d["key"] == "o1")
        .map(|d| d["input_tokens"].as_i64().unwrap())
        .sum();
    assert_eq!(o1, 6);
    // Without group_by: by agent.
    assert_eq!(usage(&app, "").await["group_by"], "agent");
}

#[tokio::test]
async fn usage_days_are_counted_in_the_time_zone_asked_for() {
    let fake = TokenModel::start();
    let app = setup(&fake, |_| {}).await;
    objective(&app, "o1", "a1", None).await;
    // Kathmandu keeps UTC+5:45 all year: a quarter-hour offset.
    let zone = chrono::FixedOffset::east_opt(5 * 3600 + 45 * 60).unwrap();
    let before = chrono::Utc::now().with_timezone(&zone).date_naive();
    fire_and_wait(&app, "o1").await;
    let after = chrono::Utc::now().with_timezone(&zone).date_naive();
    let report = usage(&app, "?tz=Asia/Kathmandu").await;
    assert_eq!(report["tz"], "Asia/Kathmandu");
    let day = report["days"][0]["day"].as_str().unwrap().to_owned();
    assert!(
        day == before.to_string() || day == after.to_string(),
        "{day} is the run's day in Kathmandu ({before}..{after})"
    );
    // A window of other days holds nothing.
    let yesterday = before.pred_opt().unwrap();
    let report = usage(
        &app,
        &format!("?tz=Asia/Kathmandu&from={yesterday}&to={yesterday}"),
    )
    .await;
    assert_eq!(report["days"], json!([]));
    assert_eq!(report["groups"], json!([]));
    let report = usage(
        &app,
        &format!("?tz=Asia/Kathmandu&from={yesterday}&to={after}"),
    )
    .await;
    assert_eq!(group(&report, "a1")["input_tokens"], 3);
    // Kathmandu shares UTC's date most of the day; in a zone whose date differs from
    // UTC's now (of UTC+14 and UTC-11 one always does), the day is that zone's.
    use chrono::Timelike;
    let utc_hour = chrono::Utc::now().hour();
    let (name, offset) = if utc_hour >= 10 {
        ("Pacific/Kiritimati", 14 * 3600)
    } else {
        ("Pacific/Pago_Pago", -11 * 3600)
    };
    let far = chrono::FixedOffset::east_opt(offset).unwrap();
    let report = usage(&app, &format!("?tz={name}")).await;
    let day = report["days"][0]["day"].as_str().unwrap().to_owned();
    let local = chrono::Utc::now().with_timezone(&far).date_naive();
    let utc = chrono::Utc::now().date_naive();
    if local != utc && chrono::Utc::now().hour() == utc_hour {
        assert_eq!(day, local.to_string(), "the run's day in {name}");
    }
}

#[tokio::test]
async fn prices_give_costs_and_a_model_without_a_price_has_none() {
    let fake = TokenModel::start();
    let app = setup(&fake, |s| {
        s.usage.prices.insert(
            "openai/m1".into(),
            palyra_actors::usage::ModelPrice {
                input_per_million: 1_000_000.0,
                output_per_million: 2_000_000.0,
            },
        );
    })
    .await;
    objective(&app, "o1", "a1", None).await;
    objective(&app, "o3", "a2", None).await;
    fire_and_wait(&app, "o1").await;
    fire_and_wait(&app, "o3").await;
    let report = usage(&app, "?group_by=model").await;
    // 3 input tokens at $1 each and 5 output at $2: $13.
    let m1 = group(&report, "openai/m1");
    assert_eq!(m1["cost_usd"], 13.0, "{report}");
    assert_eq!(m1["unpriced_tokens"], 0);
    let m2 = group(&report, "openai/m2");
    assert!(m2.get("cost_usd").is_none(), "{report}");
    assert_eq!(m2["unpriced_tokens"], 24);
    let days = report["days"].as_array().unwrap();
    assert!(
        days.iter()
            .any(|d| d["key"] == "openai/m1" && d["cost_usd"] == 13.0)
    );
    assert!(
        days.iter()
            .any(|d| d["key"] == "openai/m2" && d.get("cost_usd").is_none())
    );
}

#[tokio::test]
async fn usage_refuses_bad_windows_and_zones_with_a_400() {
    let fake = TokenModel::start();
    let app = setup(&fake, |_| {}).await;
    for query in [
        "?tz=Mars/Olympus",
        "?from=2026-03-02&to=2026-03-01",
        "?from=2020-01-01&to=2026-01-01",
        "?group_by=planet",
        "?from=yesterday",
        "?color=blue",
    ] {
        let response = app
            .http
            .get(app.url(&format!("/console/v1/usage{query}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        assert!(!error_code(response).await.is_empty(), "{query}");
    }
    let anonymous = app
        .http
        .get(app.url("/console/v1/usage"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn token_counters_by_provider_and_model_are_on_metrics() {
    let fake = TokenModel::start();
    let app = setup(&fake, |_| {}).await;
    objective(&app, "o1", "a1", None).await;
    fire_and_wait(&app, "o1").await;
    fire_and_wait(&app, "o1").await;
    let text = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = |direction: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("palyra_tokens_total{")
                    && l.contains("model=\"m1\"")
                    && l.contains("provider=\"openai\"")
                    && l.contains(&format!("direction=\"{direction}\""))
            })
            .unwrap_or_else(|| panic!("no {direction} series in {text}"))
            .to_owned()
    };
    assert!(line("input").ends_with(" 6"), "{}", line("input"));
    assert!(line("output").ends_with(" 10"), "{}", line("output"));
}
