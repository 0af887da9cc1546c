//! Periodic budgets through the real daemon: daily token limits of an objective and of
//! an agent, read from the usage rollup, stop new runs (`skipped_budget` for the
//! schedule's firings, 409 for manual ones) without pausing, and the next day (the
//! test clock `usage.budget_clock_offset_s`, across a restart) they run again; the
//! soft threshold's crossing is one audit event per period. The fake provider
//! (`usage::TokenModel`) answers model m1 with 3 + 5 tokens and counts its calls.
//! Each test runs on redb, and on PostgreSQL in the suite's PostgreSQL pass.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, TestApp, start};
use crate::usage::{TokenModel, fire_and_wait, runs, setup};

/// Tokens one run of agent a1 (model m1) uses.
const RUN_TOKENS: u64 = 8;

async fn create_objective(app: &TestApp, body: Value) {
    let response = app.bearer_post("/console/v1/objectives", body).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

async fn fire(app: &TestApp, id: &str) -> reqwest::Response {
    app.bearer_post(
        &format!("/console/v1/objectives/{id}/lifecycle"),
        json!({ "action": "fire" }),
    )
    .await
}

async fn patch(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.http
        .patch(app.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
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

fn count(all: &[Value], status: &str) -> usize {
    all.iter().filter(|r| r["status"] == status).count()
}

async fn threshold_events(app: &TestApp) -> Vec<Value> {
    let page = app
        .bearer_get_json("/console/v1/audit?kind=budget_threshold&limit=100")
        .await;
    page["events"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_daily_budget_stops_runs_and_they_resume_the_next_day() {
    let fake = TokenModel::start();
    let app = setup(&fake, |_| {}).await;
    // Every second, in a zone whose midnight is not UTC's; 20 tokens a day: the third
    // run (8 + 8 + 8 = 24) takes it over, so later firings are skipped.
    create_objective(
        &app,
        json!({ "objective_id": "o1", "agent_id": "a1", "kind": "standing_order",
                "name": "o1", "prompt": "count", "activate": true,
                "budget": { "daily_tokens": 20 },
                "automation": { "schedule": "* * * * * *", "timezone": "Asia/Kolkata" } }),
    )
    .await;
    wait_for("two firings skipped for the budget", async || {
        count(&runs(&app, "o1").await, "skipped_budget") >= 2
    })
    .await;
    let all = runs(&app, "o1").await;
    assert_eq!(count(&all, "succeeded"), 3, "{all:?}");
    assert_eq!(fake.calls(), 3);
    let skipped = all
        .iter()
        .find(|r| r["status"] == "skipped_budget")
        .unwrap();
    let why = skipped["error"].as_str().unwrap();
    assert!(
        why.contains("daily token budget of objective o1")
            && why.contains("24 of 20 tokens")
            && why.contains("runs resume at"),
        "{why}"
    );
    // The objective is not paused: the limit is the period's, not its lifetime's.
    let objective = app.bearer_get_json("/console/v1/objectives/o1").await;
    assert_eq!(objective["state"], "active", "{objective}");
    assert_eq!(objective["budget"]["daily_tokens"], 20);
    // A manual firing is refused, naming the limit.
    let response = fire(&app, "o1").await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("daily token budget"),
        "{body}"
    );
    assert_eq!(fake.calls(), 3);

    // The next day (the budget clock a day ahead: the period it places now in has no
    // usage yet), the firings run again.
    let (dir, mut settings) = app.stop().await;
    settings.usage.budget_clock_offset_s = 86_400;
    let app = start(dir, settings).await.expect("daemon restarts");
    wait_for("runs again the next day", async || fake.calls() >= 4).await;
    wait_for("a run of the new day recorded", async || {
        count(&runs(&app, "o1").await, "succeeded") >= 4
    })
    .await;
    let objective = app.bearer_get_json("/console/v1/objectives/o1").await;
    assert_eq!(objective["state"], "active", "{objective}");
}

#[tokio::test]
async fn an_agent_budget_spans_its_objectives_and_reports_its_threshold_once() {
    let fake = TokenModel::start();
    let app = setup(&fake, |s| {
        s.notifications.allow_private_networks = true;
        s.notifications.poll_interval_ms = 50;
    })
    .await;
    // A channel for the threshold: its notification rides the run's finish write.
    let receiver = palyra::testkit::webhook::WebhookReceiver::start();
    let created = crate::notifications::create_channel(
        &app,
        json!({ "url": receiver.url(), "events": ["budget_threshold"] }),
    )
    .await;
    receiver.set_secret(created["secret"].as_str().unwrap());
    // 20 tokens a day for all of a1's objectives; the default threshold is 80% (16).
    let response = patch(
        &app,
        "/console/v1/agents/a1",
        json!({ "budget": { "daily_tokens": 20, "timezone": "America/New_York" } }),
    )
    .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let agent = app.bearer_get_json("/console/v1/agents/a1").await;
    assert_eq!(agent["budget"]["timezone"], "America/New_York", "{agent}");
    for (id, agent) in [("o1", "a1"), ("o2", "a1"), ("o3", "a2")] {
        create_objective(
            &app,
            json!({ "objective_id": id, "agent_id": agent, "kind": "standing_order",
                    "name": id, "prompt": "count", "activate": true }),
        )
        .await;
    }
    assert_eq!(fire_and_wait(&app, "o1").await["status"], "succeeded");
    assert!(threshold_events(&app).await.is_empty());
    // 16 of 20: the threshold, crossed by this run.
    assert_eq!(fire_and_wait(&app, "o2").await["status"], "succeeded");
    let events = threshold_events(&app).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["subject"], "agent a1");
    assert!(
        events[0]["detail"]
            .as_str()
            .unwrap()
            .contains("16 of 20 daily tokens"),
        "{events:?}"
    );
    wait_for("the threshold delivered", async || {
        !receiver.received().is_empty()
    })
    .await;
    let delivered = receiver.received();
    assert_eq!(
        delivered[0].body["kind"], "budget_threshold",
        "{:?}",
        delivered[0].body
    );
    assert_eq!(delivered[0].body["subject"], "agent a1");
    assert_eq!(delivered[0].signature, Some(Ok(())));
    // 24 of 20: over the limit, and no second threshold event.
    assert_eq!(fire_and_wait(&app, "o1").await["status"], "succeeded");
    assert_eq!(threshold_events(&app).await.len(), 1);
    assert_eq!(fake.calls(), 3);
    for id in ["o1", "o2"] {
        let response = fire(&app, id).await;
        assert_eq!(response.status(), 409, "{id}");
        let body: Value = response.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("daily token budget of agent a1 is used up (24 of 20 tokens)"),
            "{message}"
        );
    }
    assert_eq!(fake.calls(), 3);
    // Another agent's objective is not held by a1's budget.
    assert_eq!(fire_and_wait(&app, "o3").await["status"], "succeeded");
    // Clearing the budget lets a1 run again.
    let response = patch(&app, "/console/v1/agents/a1", json!({ "budget": null })).await;
    assert_eq!(response.status(), 200);
    assert_eq!(fire_and_wait(&app, "o2").await["status"], "succeeded");
    assert_eq!(fake.calls(), 5);
    assert_eq!(threshold_events(&app).await.len(), 1);
    assert_eq!(
        receiver.received().len(),
        1,
        "one threshold, one notification"
    );
}

#[tokio::test]
async fn an_objective_threshold_is_recorded_once_per_period() {
    let fake = TokenModel::start();
    let app = setup(&fake, |_| {}).await;
    // 40 tokens a month, the threshold at 50% (20): the third run (24) crosses it.
    create_objective(
        &app,
        json!({ "objective_id": "o1", "agent_id": "a1", "kind": "standing_order",
                "name": "o1", "prompt": "count", "activate": true,
                "budget": { "monthly_tokens": 40, "notify_at_percent": 50 } }),
    )
    .await;
    let mut crossed_at = Vec::new();
    for run in 1..=5u64 {
        let done = fire_and_wait(&app, "o1").await;
        assert_eq!(done["status"], "succeeded", "run {run}: {done}");
        assert_eq!(done["tokens"], RUN_TOKENS);
        crossed_at.push(threshold_events(&app).await.len());
    }
    // Runs 1 to 5 bring the month to 8, 16, ..., 40 tokens: the crossing is recorded
    // by the third run, and by no other.
    assert_eq!(crossed_at, vec![0, 0, 1, 1, 1]);
    let events = threshold_events(&app).await;
    assert_eq!(events[0]["subject"], "objective o1");
    assert!(
        events[0]["detail"]
            .as_str()
            .unwrap()
            .contains("24 of 40 monthly tokens used: past the 50% threshold"),
        "{events:?}"
    );
    // 40 of 40: the sixth is refused.
    let response = fire(&app, "o1").await;
    assert_eq!(response.status(), 409);
    assert_eq!(fake.calls(), 5);
}

#[tokio::test]
async fn malformed_budgets_are_400s() {
    let fake = TokenModel::start();
    let app = setup(&fake, |_| {}).await;
    for (budget, field) in [
        (json!({ "daily_tokens": 0 }), "budget.daily_tokens"),
        (json!({ "monthly_tokens": 0 }), "budget.monthly_tokens"),
        (
            json!({ "notify_at_percent": 0 }),
            "budget.notify_at_percent",
        ),
        (
            json!({ "notify_at_percent": 101 }),
            "budget.notify_at_percent",
        ),
    ] {
        let response = app
            .bearer_post(
                "/console/v1/objectives",
                json!({ "agent_id": "a1", "name": "x", "prompt": "p", "budget": budget }),
            )
            .await;
        assert_eq!(response.status(), 400, "{budget}");
        let body = response.text().await.unwrap();
        assert!(body.contains(field), "{body}");
    }
    for budget in [
        json!({ "timezone": "Mars/Olympus" }),
        json!({ "daily_tokens": 0 }),
        json!({ "weekly_tokens": 5 }),
        json!([null, null]),
    ] {
        let response = patch(&app, "/console/v1/agents/a1", json!({ "budget": budget })).await;
        assert_eq!(response.status(), 400, "{budget}");
    }
}
