//! Two nodes on one PostgreSQL database fire every objective once: the shards are
//! spread over both, every scheduled instant has exactly one run row, none is skipped
//! when a node leaves, and the provider is called once per run that started. Runs in
//! the PostgreSQL pass of scripts/test; on redb there is no second node to test.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use palyra::testkit::model::FakeModel;
use palyra::testkit::postgres::psql;
use serde_json::json;

use crate::helpers::{TestApp, start_with, test_settings};

const OBJECTIVES: usize = 12;
const VAULT_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

async fn node(url: &str, fake: &FakeModel, node_id: &str) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = test_settings(&dir);
    settings.storage.url = Some(palyra_actors::SecretString::new(url.to_owned()));
    settings.cluster.node_id = node_id.into();
    settings.cluster.lease_ttl_s = 3;
    settings.providers.openai.api_base_url = fake.url();
    // Every node takes the same vault key (never stored in the database).
    let secrets = palyra::application::EnvSecrets {
        admin_token: None,
        vault_key: Some(palyra_actors::SecretString::new(VAULT_KEY.into())),
    };
    start_with(dir, settings, secrets)
        .await
        .expect("node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_fire_every_instant_once_and_a_leaving_node_hands_over() {
    if !palyra::testkit::postgres::enabled() {
        return;
    }
    let fake = FakeModel::start(3).await;
    let key = tempfile::tempdir().unwrap();
    let url = palyra::testkit::postgres::database_for(key.path());
    let a = node(&url, &fake, "node-a").await;
    let b = node(&url, &fake, "node-b").await;
    a.seed_agent(json!({ "display_name": "A", "model": "gpt-test" }))
        .await;
    // Created through node B: B's registry learns of A's profile and agent through
    // the change feed, and B's objectives actor of the agent.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 0..OBJECTIVES {
        let response = b
            .bearer_post(
                "/console/v1/objectives",
                json!({ "objective_id": format!("o{i}"), "agent_id": "a1", "name": "n",
                        "prompt": format!("o{i}"),
                        "automation": { "schedule": "* * * * * *" }, "activate": true }),
            )
            .await;
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
    }
    // Both nodes hold shards within a few beats.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let status = a.bearer_get_json("/console/v1/cluster").await;
        let holders: BTreeSet<String> = status["leases"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["live"] == true)
            .filter_map(|l| l["owner"].as_str().map(str::to_owned))
            .collect();
        if holders.len() == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "shards not spread: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    // A leaves cleanly: it gives its leases up and B takes them at its next beat.
    a.stop().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    b.stop().await;

    let rows = psql(
        &url,
        "SELECT objective_id, status, coalesce(trigger, ''), \
         coalesce(to_char(scheduled_for AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), ''), \
         coalesce(convert_from(value, 'UTF8')::jsonb->'r'->>'node_id', ''), \
         translate(coalesce(convert_from(value, 'UTF8')::jsonb->'r'->>'error', ''), E'|\\n', '  ') \
         FROM runs",
    );
    let mut instants: BTreeMap<String, Vec<DateTime<Utc>>> = BTreeMap::new();
    let mut nodes = BTreeSet::new();
    let mut succeeded = 0;
    let mut failed = Vec::new();
    for line in rows.lines() {
        let cols: Vec<&str> = line.split('|').collect();
        let [objective, status, _trigger, scheduled, node, _error] = cols[..] else {
            panic!("row {line:?}");
        };
        if !node.is_empty() {
            nodes.insert(node.to_owned());
        }
        match status {
            "succeeded" => succeeded += 1,
            "failed" | "interrupted" | "running" => failed.push(line.to_owned()),
            _ => {}
        }
        if !scheduled.is_empty() {
            instants
                .entry(objective.to_owned())
                .or_default()
                .push(scheduled.parse().unwrap());
        }
    }
    assert_eq!(instants.len(), OBJECTIVES, "every objective fired: {rows}");
    assert_eq!(
        nodes.len(),
        2,
        "runs on both nodes: {nodes:?}; the shards were spread"
    );
    for (objective, mut at) in instants {
        at.sort();
        let n = at.len();
        at.dedup();
        assert_eq!(at.len(), n, "{objective}: an instant recorded twice");
        assert!(n >= 8, "{objective}: only {n} firings in about 10 s");
        for pair in at.windows(2) {
            assert_eq!(
                (pair[1] - pair[0]).num_seconds(),
                1,
                "{objective}: an instant between {} and {} is unaccounted for",
                pair[0],
                pair[1]
            );
        }
    }
    // Every run on either node found the profile and agent made on A, and A's
    // graceful stop finished its runs.
    assert!(failed.is_empty(), "runs that did not succeed: {failed:?}");
    assert_eq!(
        fake.calls(),
        succeeded,
        "one provider call per run that started"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edits_through_either_node_apply_while_the_objective_runs() {
    if !palyra::testkit::postgres::enabled() {
        return;
    }
    let fake = FakeModel::start(3).await;
    let key = tempfile::tempdir().unwrap();
    let url = palyra::testkit::postgres::database_for(key.path());
    let a = node(&url, &fake, "node-a").await;
    let b = node(&url, &fake, "node-b").await;
    a.seed_agent(json!({ "model": "gpt-test" })).await;
    let objective = a
        .bearer_post(
            "/console/v1/objectives",
            json!({ "objective_id": "o1", "agent_id": "a1", "name": "n0", "prompt": "go",
                    "automation": { "schedule": "* * * * * *" }, "activate": true }),
        )
        .await;
    assert_eq!(objective.status(), 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // An agent made through A is usable through B at once: B rereads it.
    let agent = a
        .bearer_post(
            "/console/v1/agents",
            json!({ "agent_id": "a2", "default_model_profile": "p1", "model": "gpt-test" }),
        )
        .await;
    assert_eq!(agent.status(), 200);
    let objective = b
        .bearer_post(
            "/console/v1/objectives",
            json!({ "objective_id": "o2", "agent_id": "a2", "name": "n", "prompt": "go" }),
        )
        .await;
    assert_eq!(objective.status(), 200, "{:?}", objective.text().await);
    // Each edit lands on the node that did not make the previous one, before that
    // node has heard of it; meanwhile the objective fires every second on its
    // shard's owner, whose runs' records change the row too. Every edit applies.
    for i in 1..=20 {
        let (via, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let name = format!("n{i}");
        let patched = via
            .http
            .patch(via.url("/console/v1/objectives/o1"))
            .bearer_auth(crate::helpers::ADMIN_TOKEN)
            .json(&json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            patched.status(),
            200,
            "edit {i}: {}",
            patched.text().await.unwrap()
        );
        assert_eq!(
            patched.json::<serde_json::Value>().await.unwrap()["name"],
            name
        );
        // A lifecycle action through the other node at once applies too.
        let action = if i % 2 == 1 { "pause" } else { "resume" };
        let acted = other
            .bearer_post(
                "/console/v1/objectives/o1/lifecycle",
                json!({ "action": action }),
            )
            .await;
        let status = acted.status();
        let body = acted.text().await.unwrap();
        assert_eq!(status, 200, "{action} {i}: {body}");
        assert!(!body.contains("meanwhile"), "{action} {i}: {body}");
    }
    // Both nodes end on the last edit.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    for app in [&a, &b] {
        loop {
            let o = app.bearer_get_json("/console/v1/objectives/o1").await;
            if o["name"] == "n20" {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{o}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    a.stop().await;
    b.stop().await;
}
