//! Cost limits through the real daemon: a daily cost limit in US dollars, priced
//! with `usage.prices` from the usage rollup, stops new runs (409 for a manual
//! firing, `skipped_budget` for the schedule's) and its soft threshold notifies once;
//! a cost limit without any configured price is a 400, and tokens of a model without
//! a price count towards no cost (never a guess). The fake provider
//! (`usage::TokenModel`) answers model m1 with 3 + 5 tokens and counts its calls.

use std::time::Duration;

use palyra_actors::usage::ModelPrice;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, TestApp};
use crate::usage::{TokenModel, fire_and_wait, runs, setup};

/// One dollar per token in and out: a run of m1 (3 + 5 tokens) costs $8.
fn dollar_a_token(s: &mut palyra::settings::Settings, model: &str) {
    s.usage.prices.insert(
        model.to_owned(),
        ModelPrice {
            input_per_million: 1_000_000.0,
            output_per_million: 1_000_000.0,
        },
    );
}

async fn fire(app: &TestApp, id: &str) -> reqwest::Response {
    app.bearer_post(
        &format!("/console/v1/objectives/{id}/lifecycle"),
        json!({ "action": "fire" }),
    )
    .await
}

async fn threshold_events(app: &TestApp) -> Vec<Value> {
    let page = app
        .bearer_get_json("/console/v1/audit?kind=budget_threshold&limit=100")
        .await;
    page["events"].as_array().unwrap().clone()
}

async fn create_objective(app: &TestApp, body: Value) {
    let response = app.bearer_post("/console/v1/objectives", body).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not reached in 20 s");
}

#[tokio::test]
async fn a_daily_cost_limit_stops_runs_and_its_threshold_notifies_once() {
    let fake = TokenModel::start();
    let app = setup(&fake, |s| {
        dollar_a_token(s, "m1");
        s.notifications.allow_private_networks = true;
        s.notifications.poll_interval_ms = 50;
    })
    .await;
    let receiver = palyra::testkit::webhook::WebhookReceiver::start();
    let created = crate::notifications::create_channel(
        &app,
        json!({ "url": receiver.url(), "events": ["budget_threshold"] }),
    )
    .await;
    receiver.set_secret(created["secret"].as_str().unwrap());
    // $20 a day, the threshold at 80% ($16): the second run crosses it, the third
    // ($24) takes the day over the limit.
    create_objective(
        &app,
        json!({ "objective_id": "o1", "agent_id": "a1", "kind": "standing_order",
                "name": "o1", "prompt": "count", "activate": true,
                "budget": { "daily_cost_usd": 20.0 } }),
    )
    .await;
    let objective = app.bearer_get_json("/console/v1/objectives/o1").await;
    assert_eq!(objective["budget"]["daily_cost_usd"], 20.0, "{objective}");
    let mut crossed_at = Vec::new();
    for run in 1..=3 {
        let done = fire_and_wait(&app, "o1").await;
        assert_eq!(done["status"], "succeeded", "run {run}: {done}");
        crossed_at.push(threshold_events(&app).await.len());
    }
    assert_eq!(crossed_at, vec![0, 1, 1]);
    let events = threshold_events(&app).await;
    assert_eq!(events[0]["subject"], "objective o1");
    let detail = events[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("$16.00 of $20.00 daily US dollars used: past the 80% threshold"),
        "{detail}"
    );
    // Every token of m1 is priced: no note of unpriced tokens.
    assert!(!detail.contains("without a price"), "{detail}");
    wait_for("the threshold delivered", async || {
        !receiver.received().is_empty()
    })
    .await;
    let delivered = receiver.received();
    assert_eq!(delivered.len(), 1, "one threshold, one notification");
    assert_eq!(delivered[0].body["kind"], "budget_threshold");
    assert_eq!(delivered[0].body["subject"], "objective o1");
    assert_eq!(delivered[0].signature, Some(Ok(())));
    // $24 of $20: the fourth firing is refused, naming the cost and the reset.
    let response = fire(&app, "o1").await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(
            "the daily cost budget of objective o1 is used up ($24.00 of $20.00 US dollars)"
        ) && message.contains("runs resume at"),
        "{message}"
    );
    assert_eq!(fake.calls(), 3);
    // The schedule's firings are skipped, and the objective stays active.
    let response = app
        .http
        .patch(app.url("/console/v1/objectives/o1"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "automation": { "schedule": "* * * * * *", "timezone": "UTC" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    wait_for("a firing skipped for the cost budget", async || {
        runs(&app, "o1")
            .await
            .iter()
            .any(|r| r["status"] == "skipped_budget")
    })
    .await;
    let objective = app.bearer_get_json("/console/v1/objectives/o1").await;
    assert_eq!(objective["state"], "active", "{objective}");
    assert_eq!(fake.calls(), 3);
    assert_eq!(threshold_events(&app).await.len(), 1);
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn tokens_without_a_price_count_towards_no_cost_limit() {
    let fake = TokenModel::start();
    // Some price is configured, but not m1's: an agent's $1 a day never fills, and
    // its runs go on (a guessed price would have stopped the second run).
    let app = setup(&fake, |s| dollar_a_token(s, "another-model")).await;
    let response = app
        .http
        .patch(app.url("/console/v1/agents/a1"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "budget": { "daily_cost_usd": 1.0, "daily_tokens": 20 } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    create_objective(
        &app,
        json!({ "objective_id": "o1", "agent_id": "a1", "kind": "standing_order",
                "name": "o1", "prompt": "count", "activate": true }),
    )
    .await;
    for run in 1..=3 {
        let done = fire_and_wait(&app, "o1").await;
        assert_eq!(done["status"], "succeeded", "run {run}: {done}");
    }
    // The token limit (24 of 20) still holds: the refusal is the token budget's.
    let response = fire(&app, "o1").await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("daily token budget of agent a1"),
        "{message}"
    );
    assert_eq!(fake.calls(), 3);
}

#[tokio::test]
async fn a_cost_limit_needs_a_price_and_a_positive_amount() {
    let fake = TokenModel::start();
    let app = setup(&fake, |_| {}).await;
    // No price configured at all: every cost is unknown, so a cost limit is refused.
    let response = app
        .bearer_post(
            "/console/v1/objectives",
            json!({ "agent_id": "a1", "name": "x", "prompt": "p",
                    "budget": { "daily_cost_usd": 5.0 } }),
        )
        .await;
    assert_eq!(response.status(), 400);
    let body = response.text().await.unwrap();
    assert!(
        body.contains("budget.daily_cost_usd") && body.contains("usage.prices"),
        "{body}"
    );
    let response = app
        .http
        .patch(app.url("/console/v1/agents/a1"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "budget": { "monthly_cost_usd": 5.0 } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body = response.text().await.unwrap();
    assert!(body.contains("budget.monthly_cost_usd"), "{body}");

    let (dir, mut settings) = app.stop().await;
    dollar_a_token(&mut settings, "m1");
    let app = crate::helpers::start(dir, settings)
        .await
        .expect("daemon restarts");
    for budget in [
        json!({ "daily_cost_usd": 0 }),
        json!({ "monthly_cost_usd": -1.5 }),
        json!({ "daily_cost_usd": 1e10 }),
        json!({ "daily_cost_usd": "5" }),
    ] {
        let response = app
            .bearer_post(
                "/console/v1/objectives",
                json!({ "agent_id": "a1", "name": "x", "prompt": "p", "budget": budget }),
            )
            .await;
        assert_eq!(response.status(), 400, "{budget}");
    }
    let response = app
        .bearer_post(
            "/console/v1/objectives",
            json!({ "agent_id": "a1", "name": "x", "prompt": "p",
                    "budget": { "monthly_cost_usd": 0.25 } }),
        )
        .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}
