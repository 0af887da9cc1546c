//! Cancelling across nodes on one PostgreSQL database: a pause sent to one node stops
//! the run going on another (it sees the objective change on the change feed and
//! aborts its call), and a cancel of one run sent to a node that does not run it
//! answers 409 naming the node that does. PostgreSQL only; on redb there is no second
//! node.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code, start_with, test_settings};
use crate::objectives_limits::{Answer, ScriptedModel};

const VAULT_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

async fn node(url: &str, fake: &ScriptedModel, node_id: &str) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = test_settings(&dir);
    settings.storage.url = Some(palyra_actors::SecretString::new(url.to_owned()));
    settings.cluster.node_id = node_id.into();
    settings.cluster.lease_ttl_s = 3;
    settings.providers.openai.api_base_url = fake.url();
    let secrets = palyra::application::EnvSecrets {
        admin_token: None,
        vault_key: Some(palyra_actors::SecretString::new(VAULT_KEY.into())),
    };
    start_with(dir, settings, secrets)
        .await
        .expect("node starts")
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

async fn newest_run(app: &TestApp, id: &str) -> Value {
    let page = app
        .bearer_get_json(&format!("/console/v1/objectives/{id}/runs?limit=1"))
        .await;
    page["items"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pause_on_one_node_stops_the_run_going_on_another() {
    if !palyra::testkit::postgres::enabled() {
        return;
    }
    let fake = ScriptedModel::start();
    let key = tempfile::tempdir().unwrap();
    let url = palyra::testkit::postgres::database_for(key.path());
    let a = node(&url, &fake, "node-a").await;
    let b = node(&url, &fake, "node-b").await;
    a.seed_agent(json!({})).await;
    let objective = a
        .bearer_post(
            "/console/v1/objectives",
            json!({ "objective_id": "h", "agent_id": "a1", "name": "n", "prompt": "hang",
                    "activate": true }),
        )
        .await;
    assert_eq!(objective.status(), 200);
    // A manual run goes on the node asked: node A.
    fake.script(&[Answer::Hang]);
    let fired = a
        .bearer_post(
            "/console/v1/objectives/h/lifecycle",
            json!({ "action": "fire" }),
        )
        .await;
    assert_eq!(fired.status(), 200);
    wait_for(async || fake.in_flight() == 1, "the call in flight").await;
    let run = newest_run(&a, "h").await;
    assert_eq!(run["node_id"], "node-a");
    let run_id = run["run_id"].as_str().unwrap().to_owned();
    // Node B cannot abort A's task: it says where the run goes.
    wait_for(
        async || b.bearer_get_json("/console/v1/objectives/h").await["objective_id"] == "h",
        "node B to know the objective",
    )
    .await;
    let refused = b
        .bearer_post(
            &format!("/console/v1/objectives/h/runs/{run_id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(refused.status(), 409);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "conflict", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("node-a"),
        "{body}"
    );
    // A pause through node B stops it on node A.
    let paused = b
        .bearer_post(
            "/console/v1/objectives/h/lifecycle",
            json!({ "action": "pause" }),
        )
        .await;
    assert_eq!(paused.status(), 200);
    wait_for(async || fake.dropped() == 1, "node A to drop the call").await;
    wait_for(
        async || newest_run(&b, "h").await["status"] == "cancelled",
        "the run recorded cancelled",
    )
    .await;
    let run = newest_run(&a, "h").await;
    assert_eq!(run["error"], "the objective was paused");
    let objective = b.bearer_get_json("/console/v1/objectives/h").await;
    assert_eq!(objective["state"], "paused");
    // A cancel of a finished run is refused on any node.
    let again = a
        .bearer_post(
            &format!("/console/v1/objectives/h/runs/{run_id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(error_code(again).await, "conflict");
}
