//! Agents, objectives and the scheduler, against a fake model provider that counts
//! calls and reports usage. Schedules use the seconds field to stay fast.

use std::time::Duration;

use serde_json::{Value, json};

use crate::fakes::FakeModel;
use crate::helpers::{ADMIN_TOKEN, TestApp, error_code, spawn_app_with};

const EVERY_SECOND: &str = "* * * * * *";

async fn setup(fake: &FakeModel) -> TestApp {
    let url = fake.url();
    let app = spawn_app_with(move |s| s.providers.openai.api_base_url = url).await;
    app.seed_agent(
        json!({ "display_name": "Agent One", "workspace_roots": ["/srv/a1"],
                           "model": "gpt-test" }),
    )
    .await;
    app
}

async fn create(app: &TestApp, body: Value) -> Value {
    let response = app.bearer_post("/console/v1/objectives", body).await;
    assert_eq!(response.status(), 200);
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

async fn wait_for(mut check: impl AsyncFnMut() -> bool, seconds: u64) -> bool {
    for _ in 0..seconds * 10 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn a_standing_order_fires_on_schedule_and_records_its_runs() {
    let fake = FakeModel::start(7).await;
    let app = setup(&fake).await;
    let objective = create(
        &app,
        json!({ "objective_id": "daily", "agent_id": "a1", "kind": "standing_order",
                "name": "Summarize", "prompt": "summarize the day",
                "automation": { "schedule": EVERY_SECOND, "timezone": "Europe/Prague" },
                "activate": true }),
    )
    .await;
    assert_eq!(objective["state"], "active");
    assert!(objective["next_run_at"].is_string());
    assert!(
        wait_for(async || fake.calls() >= 2, 6).await,
        "fired on schedule"
    );
    let all = runs(&app, "daily").await;
    let succeeded: Vec<&Value> = all.iter().filter(|r| r["status"] == "succeeded").collect();
    assert!(!succeeded.is_empty(), "{all:?}");
    let run = succeeded[0];
    assert_eq!(run["trigger"], "schedule");
    assert_eq!(run["tokens"], 7);
    assert!(
        run["output"]
            .as_str()
            .unwrap()
            .contains("to summarize the day")
    );
    assert!(run["scheduled_for"].is_string() && run["finished_at"].is_string());
    assert_eq!(fake.models_seen.lock().unwrap()[0], "gpt-test");
    let objective = app.bearer_get_json("/console/v1/objectives/daily").await;
    assert!(objective["usage"]["runs"].as_u64().unwrap() >= 2);
    assert!(objective["usage"]["tokens"].as_u64().unwrap() >= 7);
}

#[tokio::test]
async fn max_runs_is_never_exceeded_and_pauses_the_objective() {
    let fake = FakeModel::start(5).await;
    let app = setup(&fake).await;
    create(
        &app,
        json!({ "objective_id": "three", "agent_id": "a1", "name": "Three", "prompt": "go",
                "budget": { "max_runs": 3 },
                "automation": { "schedule": EVERY_SECOND }, "activate": true }),
    )
    .await;
    let paused = wait_for(
        async || app.bearer_get_json("/console/v1/objectives/three").await["state"] == "paused",
        10,
    )
    .await;
    assert!(paused);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fake.calls(), 3, "exactly three provider calls");
    let objective = app.bearer_get_json("/console/v1/objectives/three").await;
    assert_eq!(objective["state_reason"], "budget_exhausted");
    assert_eq!(objective["usage"]["runs"], 3);
    assert!(objective["next_run_at"].is_null());
    let all = runs(&app, "three").await;
    assert!(all.iter().any(|r| r["status"] == "skipped_budget"));
    // Firing by hand is refused too.
    let fire = lifecycle(&app, "three", "fire").await;
    assert_eq!(fire.status(), 409);
}

#[tokio::test]
async fn the_token_budget_stops_runs() {
    let fake = FakeModel::start(50).await;
    let app = setup(&fake).await;
    create(
        &app,
        json!({ "objective_id": "tokens", "agent_id": "a1", "name": "T", "prompt": "go",
                "budget": { "max_tokens": 120 },
                "automation": { "schedule": EVERY_SECOND }, "activate": true }),
    )
    .await;
    assert!(
        wait_for(
            async || app.bearer_get_json("/console/v1/objectives/tokens").await["state"]
                == "paused",
            10
        )
        .await
    );
    // 0, 50 and 100 tokens are below 120; at 150 no run starts.
    assert_eq!(fake.calls(), 3);
    let objective = app.bearer_get_json("/console/v1/objectives/tokens").await;
    assert_eq!(objective["usage"]["tokens"], 150);
    assert_eq!(objective["state_reason"], "budget_exhausted");
}

#[tokio::test]
async fn pause_and_resume_stop_and_restart_firings() {
    let fake = FakeModel::start(1).await;
    let app = setup(&fake).await;
    create(
        &app,
        json!({ "objective_id": "pr", "agent_id": "a1", "name": "PR", "prompt": "go",
                "automation": { "schedule": EVERY_SECOND }, "activate": true }),
    )
    .await;
    assert!(wait_for(async || fake.calls() >= 1, 5).await);
    assert_eq!(lifecycle(&app, "pr", "pause").await.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at_pause = fake.calls();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(fake.calls(), at_pause, "no firing while paused");
    let paused = app.bearer_get_json("/console/v1/objectives/pr").await;
    assert!(paused["next_run_at"].is_null());
    assert_eq!(lifecycle(&app, "pr", "resume").await.status(), 200);
    assert!(
        wait_for(async || fake.calls() > at_pause, 5).await,
        "firings resume"
    );
}

#[tokio::test]
async fn overlap_forbid_records_skipped_runs_while_one_is_going() {
    let fake = FakeModel::start(1).await;
    fake.delay_ms
        .store(2500, std::sync::atomic::Ordering::SeqCst);
    let app = setup(&fake).await;
    create(
        &app,
        json!({ "objective_id": "slow", "agent_id": "a1", "name": "Slow", "prompt": "go",
                "automation": { "schedule": EVERY_SECOND, "overlap": "forbid" }, "activate": true }),
    )
    .await;
    assert!(
        wait_for(
            async || runs(&app, "slow")
                .await
                .iter()
                .any(|r| r["status"] == "skipped_overlap"),
            6
        )
        .await
    );
    assert_eq!(
        fake.max_in_flight.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[tokio::test]
async fn firings_missed_while_down_are_recorded_and_caught_up_once() {
    let fake = FakeModel::start(1).await;
    let app = setup(&fake).await;
    for (id, misfire) in [("catch", "run_once"), ("skip", "skip")] {
        create(
            &app,
            json!({ "objective_id": id, "agent_id": "a1", "name": id, "prompt": "go",
                    "automation": { "schedule": "*/2 * * * * *", "misfire": misfire }, "activate": true }),
        )
        .await;
    }
    let (dir, mut settings) = app.stop().await;
    // Firings a few seconds late are the misfire policy's here, not late runs: on
    // PostgreSQL a restarted node takes its shards over like any other node would,
    // and the late threshold (cluster.late_fire_threshold_s) has its own test.
    settings.cluster.late_fire_threshold_s = 0;
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let app = crate::helpers::start(dir, settings).await.unwrap();
    for id in ["catch", "skip"] {
        // On PostgreSQL the shards are taken (and their firings recovered) moments
        // after the start; on redb before it answers.
        assert!(
            wait_for(
                async || runs(&app, id).await.iter().any(|r| r["status"] == "missed"),
                5
            )
            .await,
            "{id}: {:?}",
            runs(&app, id).await
        );
    }
    assert!(
        wait_for(
            async || runs(&app, "catch")
                .await
                .iter()
                .any(|r| r["trigger"] == "catch_up"),
            3
        )
        .await,
        "run_once catches up"
    );
    assert!(
        !runs(&app, "skip")
            .await
            .iter()
            .any(|r| r["trigger"] == "catch_up")
    );
    // No firing ran twice: each scheduled instant has at most one run that started.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let app = app.restart().await;
    for id in ["catch", "skip"] {
        let all = runs(&app, id).await;
        let mut started: Vec<&str> = all
            .iter()
            .filter(|r| r["trigger"] == "schedule" && r["status"] != "missed")
            .filter_map(|r| r["scheduled_for"].as_str())
            .collect();
        let n = started.len();
        started.sort_unstable();
        started.dedup();
        assert_eq!(started.len(), n, "{id}: a firing ran twice");
    }
}

#[tokio::test]
async fn bad_schedules_and_illegal_transitions_are_refused() {
    let fake = FakeModel::start(1).await;
    let app = setup(&fake).await;
    for (automation, field) in [
        (json!({ "schedule": "61 * * * *" }), "automation.schedule"),
        (
            json!({ "schedule": "* * * * *", "timezone": "Mars/Olympus" }),
            "automation.timezone",
        ),
        (json!({ "timezone": "UTC" }), "automation.schedule"),
    ] {
        let response = app
            .bearer_post(
                "/console/v1/objectives",
                json!({ "agent_id": "a1", "name": "x", "prompt": "p", "automation": automation }),
            )
            .await;
        assert_eq!(response.status(), 400, "{field}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["error"]["message"].as_str().unwrap().contains(field),
            "{body}"
        );
    }
    let unknown_agent = app
        .bearer_post(
            "/console/v1/objectives",
            json!({ "agent_id": "nobody", "name": "x", "prompt": "p" }),
        )
        .await;
    assert_eq!(unknown_agent.status(), 400);
    create(
        &app,
        json!({ "objective_id": "o1", "agent_id": "a1", "name": "O", "prompt": "p" }),
    )
    .await;
    let pause = lifecycle(&app, "o1", "pause").await;
    assert_eq!(pause.status(), 409);
    let body: Value = pause.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("draft"),
        "{body}"
    );
    assert_eq!(lifecycle(&app, "o1", "archive").await.status(), 200);
    let again = lifecycle(&app, "o1", "activate").await;
    assert_eq!(again.status(), 409);
    assert!(again.text().await.unwrap().contains("archived"));
    let bad_action = app
        .bearer_post(
            "/console/v1/objectives/o1/lifecycle",
            json!({ "action": "explode" }),
        )
        .await;
    assert_eq!(bad_action.status(), 400);
    assert_eq!(error_code(bad_action).await, "invalid_json");
}

#[tokio::test]
async fn an_agent_in_use_cannot_be_deleted() {
    let fake = FakeModel::start(1).await;
    let app = setup(&fake).await;
    create(
        &app,
        json!({ "objective_id": "uses", "agent_id": "a1", "name": "U", "prompt": "p" }),
    )
    .await;
    let delete = |app: &TestApp| {
        app.http
            .delete(app.url("/console/v1/agents/a1"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
    };
    assert_eq!(delete(&app).await.unwrap().status(), 409);
    assert_eq!(lifecycle(&app, "uses", "archive").await.status(), 200);
    assert_eq!(delete(&app).await.unwrap().status(), 204);
    let bad_root = app
        .bearer_post(
            "/console/v1/agents",
            json!({ "agent_id": "a2", "model": "m", "workspace_roots": ["relative/path"] }),
        )
        .await;
    assert_eq!(bad_root.status(), 400);
}

#[tokio::test]
async fn heartbeats_programs_manual_fires_and_rejected_keys() {
    let fake = FakeModel::start(4).await;
    let app = setup(&fake).await;
    let heartbeat = create(
        &app,
        json!({ "objective_id": "hb", "agent_id": "a1", "kind": "heartbeat", "name": "HB" }),
    )
    .await;
    assert_eq!(
        heartbeat["automation"]["schedule"], "*/30 * * * *",
        "every 30 minutes by default"
    );
    assert_eq!(lifecycle(&app, "hb", "fire").await.status(), 200);
    assert!(
        wait_for(
            async || runs(&app, "hb")
                .await
                .first()
                .is_some_and(|r| r["status"] == "succeeded"),
            5
        )
        .await
    );
    let hb_run = &runs(&app, "hb").await[0];
    assert_eq!(hb_run["output"], "alive; credential p1: static");
    assert_eq!(hb_run["trigger"], "manual");
    assert_eq!(
        fake.calls(),
        0,
        "a heartbeat without a prompt calls no provider"
    );

    create(
        &app,
        json!({ "objective_id": "prog", "agent_id": "a1", "kind": "program", "name": "Prog",
                "steps": ["first step", "second step"] }),
    )
    .await;
    assert_eq!(lifecycle(&app, "prog", "fire").await.status(), 200);
    assert!(
        wait_for(
            async || runs(&app, "prog")
                .await
                .first()
                .is_some_and(|r| r["status"] == "succeeded"),
            5
        )
        .await
    );
    let run = &runs(&app, "prog").await[0];
    assert_eq!(run["tokens"], 8, "two steps, four tokens each");
    assert_eq!(fake.calls(), 2);

    // A key the provider rejects: the run fails and the profile needs a new key.
    app.bearer_post(
        "/console/v1/auth/profiles",
        json!({ "profile_id": "p1", "provider": "openai", "profile_name": "P",
                "credential": { "type": "api_key", "api_key": "revoked-key-12345678" }, "validate": false }),
    )
    .await;
    assert_eq!(lifecycle(&app, "prog", "fire").await.status(), 200);
    assert!(
        wait_for(
            async || runs(&app, "prog")
                .await
                .first()
                .is_some_and(|r| r["status"] == "failed"),
            5
        )
        .await
    );
    let failed = &runs(&app, "prog").await[0];
    assert!(
        failed["error"].as_str().unwrap().contains("401"),
        "{failed}"
    );
    let health = app.bearer_get_json("/console/v1/auth/health").await;
    assert_eq!(health["profiles"][0]["state"], "needs_reauth");
}

#[tokio::test]
async fn overlap_queue_one_keeps_one_firing_waiting() {
    let fake = FakeModel::start(1).await;
    fake.delay_ms
        .store(2200, std::sync::atomic::Ordering::SeqCst);
    let app = setup(&fake).await;
    create(
        &app,
        json!({ "objective_id": "queued", "agent_id": "a1", "name": "Q", "prompt": "go",
                "automation": { "schedule": EVERY_SECOND, "overlap": "queue_one" }, "activate": true }),
    )
    .await;
    // The first run takes 2.2 s: the firing during it waits, later ones are skipped,
    // and the waiting one starts as soon as the first finishes.
    assert!(
        wait_for(async || fake.calls() >= 2, 8).await,
        "the queued firing ran"
    );
    assert_eq!(
        fake.max_in_flight.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    let all = runs(&app, "queued").await;
    assert!(
        all.iter().any(|r| r["status"] == "skipped_overlap"),
        "{all:?}"
    );
    assert_eq!(lifecycle(&app, "queued", "cancel").await.status(), 200);
}

#[tokio::test]
async fn agents_and_objectives_are_listed_in_pages_with_filters() {
    let fake = FakeModel::start(1).await;
    let app = setup(&fake).await;
    // Created out of order: pages come in id order whatever the order in memory.
    let ids = ["o-e", "o-a", "o-g", "o-c", "o-b", "o-f", "o-d"];
    for id in ids {
        create(
            &app,
            json!({ "objective_id": id, "agent_id": "a1", "name": id, "prompt": "p" }),
        )
        .await;
    }
    assert_eq!(lifecycle(&app, "o-b", "activate").await.status(), 200);
    let first = app.bearer_get_json("/console/v1/objectives?limit=2").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    assert_eq!(first["next_after"], "o-b");
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    // Bounded, so a cursor that does not move fails the test rather than hanging it.
    for _ in 0..ids.len() {
        let url = match &after {
            Some(a) => format!("/console/v1/objectives?limit=2&after={a}"),
            None => "/console/v1/objectives?limit=2".to_owned(),
        };
        let page = app.bearer_get_json(&url).await;
        for item in page["items"].as_array().unwrap() {
            seen.push(item["objective_id"].as_str().unwrap().to_owned());
        }
        match page["next_after"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    let mut sorted: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    sorted.sort();
    assert_eq!(seen, sorted);
    let last = app
        .bearer_get_json("/console/v1/objectives?limit=2&after=o-e")
        .await;
    assert_eq!(last["items"][0]["objective_id"], "o-f");
    assert_eq!(last["items"][1]["objective_id"], "o-g");
    assert!(last["next_after"].is_null());
    let active = app
        .bearer_get_json("/console/v1/objectives?state=active")
        .await;
    assert_eq!(active["items"].as_array().unwrap().len(), 1);
    let agents = app.bearer_get_json("/console/v1/agents?limit=1").await;
    assert_eq!(agents["items"][0]["agent_id"], "a1");
    assert!(agents["next_after"].is_null());
    let too_big = app
        .http
        .get(app.url("/console/v1/objectives?limit=501"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status(), 400);
}
