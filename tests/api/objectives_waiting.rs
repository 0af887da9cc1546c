//! Firings that wait (for the run going, overlap `queue_one`, or for a run slot) keep
//! their claim's record honest: a `queue_one` firing keeps `queued_at` once it starts;
//! a cancel of a waiting firing is a compare-and-set on the `queued` row this node
//! wrote, so it never overwrites a record another node made of it; and a queued
//! firing a stopped node left is found by the shard's next owner however many newer
//! records the objective has. The last two need PostgreSQL (a second writer, a node
//! that leaves runs to another); they return at once on redb.

use std::time::Duration;

use palyra::testkit::postgres::psql;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};
use crate::objectives_limits::{Answer, ScriptedModel};

const EVERY_SECOND: &str = "* * * * * *";

/// The daemon against `fake` with `tweak` applied, profile `p1` and agent `a1`.
async fn setup(
    fake: &ScriptedModel,
    tweak: impl FnOnce(&mut palyra::settings::Settings) + Send + 'static,
) -> TestApp {
    let url = fake.url();
    let app = spawn_app_with(move |s| {
        s.providers.openai.api_base_url = url;
        tweak(s);
    })
    .await;
    prepare(&app).await;
    app
}

async fn prepare(app: &TestApp) {
    app.seed_agent(json!({})).await;
}

async fn create(app: &TestApp, body: Value) {
    let mut full = json!({ "agent_id": "a1", "name": "n", "activate": true });
    full.as_object_mut()
        .unwrap()
        .extend(body.as_object().unwrap().clone());
    let response = app.bearer_post("/console/v1/objectives", full).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
}

async fn lifecycle(app: &TestApp, id: &str, action: &str) -> reqwest::Response {
    app.bearer_post(
        &format!("/console/v1/objectives/{id}/lifecycle"),
        json!({ "action": action }),
    )
    .await
}

/// Every run of `id`, newest first.
async fn runs(app: &TestApp, id: &str) -> Vec<Value> {
    let page = app
        .bearer_get_json(&format!("/console/v1/objectives/{id}/runs?limit=500"))
        .await;
    page["items"].as_array().unwrap().clone()
}

async fn run(app: &TestApp, id: &str, run_id: &str) -> Value {
    runs(app, id)
        .await
        .into_iter()
        .find(|r| r["run_id"] == run_id)
        .unwrap_or(Value::Null)
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

fn database_url(app: &TestApp) -> String {
    app.settings
        .storage
        .url
        .as_ref()
        .expect("a PostgreSQL URL")
        .expose()
        .to_owned()
}

#[tokio::test]
async fn a_queue_one_firing_keeps_when_it_was_queued_once_it_starts() {
    let fake = ScriptedModel::start();
    // The first run takes 2.5 s: a firing during it waits as a queued run.
    fake.set_delay_ms(2500);
    let app = setup(&fake, |_| {}).await;
    create(
        &app,
        json!({ "objective_id": "q1", "prompt": "go",
                "automation": { "schedule": EVERY_SECOND, "overlap": "queue_one" } }),
    )
    .await;
    let mut waited = Value::Null;
    wait_for(
        async || {
            waited = runs(&app, "q1")
                .await
                .into_iter()
                .find(|r| r["started_at"].is_string() && r["queued_at"].is_string())
                .unwrap_or(Value::Null);
            !waited.is_null()
        },
        "the firing that waited to start with its queued_at",
    )
    .await;
    assert_eq!(waited["trigger"], "schedule", "{waited}");
    assert!(
        waited["queued_at"].as_str().unwrap() <= waited["started_at"].as_str().unwrap(),
        "{waited}"
    );
    // It was claimed while the first run went, after that run started.
    let first = run(&app, "q1", "q1-1").await;
    assert!(
        first["started_at"].as_str().unwrap() <= waited["queued_at"].as_str().unwrap(),
        "{first} {waited}"
    );
    assert_eq!(lifecycle(&app, "q1", "cancel").await.status(), 200);
}

#[tokio::test]
async fn cancelling_a_waiting_firing_never_overwrites_another_nodes_record_of_it() {
    if !palyra::testkit::postgres::enabled() {
        return;
    }
    let fake = ScriptedModel::start();
    fake.script(&[Answer::Hang]);
    let app = setup(&fake, |s| s.objectives.max_concurrent_runs = 1).await;
    for id in ["w0", "w1"] {
        create(&app, json!({ "objective_id": id, "prompt": id })).await;
        assert_eq!(lifecycle(&app, id, "fire").await.status(), 200);
    }
    assert_eq!(run(&app, "w1", "w1-1").await["status"], "queued");
    // Meanwhile the firing is recorded by another writer, as the shard's next owner
    // records a queued firing it finds left (`missed`).
    let changed = psql(
        &database_url(&app),
        "UPDATE runs SET status = 'missed', value = convert_to(replace(convert_from(value, 'UTF8'), \
         '\"status\":\"queued\"', '\"status\":\"missed\"'), 'UTF8') WHERE run_id = 'w1-1' \
         RETURNING run_id",
    );
    assert_eq!(changed.trim(), "w1-1", "the row changed");
    let refused = app
        .bearer_post("/console/v1/objectives/w1/runs/w1-1/cancel", json!({}))
        .await;
    assert_eq!(refused.status(), 409, "{:?}", refused.text().await);
    // The other writer's record stands, and the firing never reaches the provider.
    let stored = run(&app, "w1", "w1-1").await;
    assert_eq!(stored["status"], "missed", "{stored}");
    assert_eq!(lifecycle(&app, "w0", "cancel").await.status(), 200);
    wait_for(async || fake.dropped() == 1, "the hanging call dropped").await;
    assert_eq!(fake.prompts(), vec!["w0"]);
}

#[tokio::test]
async fn a_queued_firing_a_stopped_node_left_is_found_under_any_number_of_newer_runs() {
    if !palyra::testkit::postgres::enabled() {
        return;
    }
    let fake = ScriptedModel::start();
    // The first run hangs: the next firing waits (queued), every later one is skipped
    // for overlap, each a newer record over the queued one.
    fake.script(&[Answer::Hang]);
    let app = setup(&fake, |s| {
        s.cluster.node_id = "node-a".into();
        s.cluster.lease_ttl_s = 3;
    })
    .await;
    create(
        &app,
        json!({ "objective_id": "deep", "prompt": "go",
                "automation": { "schedule": EVERY_SECOND, "overlap": "queue_one" } }),
    )
    .await;
    wait_for(
        async || runs(&app, "deep").await.len() >= 6,
        "a queued firing under four skipped ones",
    )
    .await;
    let all = runs(&app, "deep").await;
    let queued: Vec<&Value> = all.iter().filter(|r| r["status"] == "queued").collect();
    assert_eq!(queued.len(), 1, "{all:?}");
    let queued_id = queued[0]["run_id"].as_str().unwrap().to_owned();
    let newer = all
        .iter()
        .take_while(|r| r["run_id"] != queued_id.as_str())
        .count();
    assert!(newer >= 4, "{all:?}");
    // The node stops with its run going and the firing waiting for it; it comes back
    // as the same node, the shards' next owner, which finds both left.
    let app = app.restart().await;
    wait_for(
        async || run(&app, "deep", &queued_id).await["status"] == "missed",
        "the queued firing the stopped node left recorded missed",
    )
    .await;
    let left = run(&app, "deep", &queued_id).await;
    assert_eq!(
        left["error"], "the node that queued this firing stopped before starting it",
        "{left}"
    );
    wait_for(
        async || run(&app, "deep", "deep-1").await["status"] == "interrupted",
        "the run the stopped node left recorded interrupted",
    )
    .await;
    assert_eq!(lifecycle(&app, "deep", "cancel").await.status(), 200);
}
