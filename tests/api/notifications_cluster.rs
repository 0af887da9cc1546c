//! Notifications on three nodes of one PostgreSQL database: a channel made on one
//! node signs on every node (its secret reaches the others' vaults), each delivery is
//! sent once by one node under normal operation, and a node killed with SIGKILL is
//! reported once as `node_lost`. Runs in the PostgreSQL pass.

use std::collections::BTreeMap;

use palyra::testkit::cluster::Cluster;
use palyra::testkit::webhook::WebhookReceiver;
use reqwest::Method;
use serde_json::json;

use crate::helpers::ADMIN_TOKEN;
use crate::notifications::wait_for;

const VAULT_KEY: &str = "bm90aWZpY2F0aW9ucy1jbHVzdGVyLXZhdWx0LWtleTM=";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deliveries_are_sent_once_across_nodes_and_a_lost_node_is_reported() {
    if !palyra::testkit::postgres::enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = palyra::testkit::postgres::database_for(&dir.path().join("db"));
    let env = [
        ("PALYRA_ADMIN_TOKEN", ADMIN_TOKEN),
        ("PALYRA_VAULT_KEY", VAULT_KEY),
        ("PALYRA_CLUSTER__LEASE_TTL_S", "3"),
        ("PALYRA_NOTIFICATIONS__ALLOW_PRIVATE_NETWORKS", "true"),
        ("PALYRA_NOTIFICATIONS__RETRY_BASE_MS", "100"),
        ("PALYRA_NOTIFICATIONS__POLL_INTERVAL_MS", "50"),
    ];
    let palyrad = std::path::Path::new(env!("CARGO_BIN_EXE_palyrad"));
    let mut cluster = Cluster::start(palyrad, 3, &db, &env)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let receiver = WebhookReceiver::start();
    let (status, created) = cluster
        .admin(
            0,
            Method::POST,
            "/console/v1/notifications/channels",
            Some(&json!({ "url": receiver.url(), "events": ["node_lost"] })),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{created}");
    receiver.set_secret(created["secret"].as_str().unwrap());
    let id = created["channel_id"].as_str().unwrap();
    // Tests queued through every node; every node's delivery actor competes for them.
    const TESTS: usize = 30;
    let mut ids = Vec::new();
    for i in 0..TESTS {
        let (status, queued) = cluster
            .admin(
                i % 3,
                Method::POST,
                &format!("/console/v1/notifications/channels/{id}/test"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(status, 202, "{queued}");
        ids.push(queued["event_id"].as_str().unwrap().to_owned());
    }
    wait_for("every test delivered", async || {
        receiver.received().len() >= TESTS
    })
    .await;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for got in receiver.received() {
        assert_eq!(got.signature, Some(Ok(())), "signed on every node: {got:?}");
        *counts
            .entry(got.body["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    ids.sort();
    assert_eq!(counts.keys().cloned().collect::<Vec<_>>(), ids);
    assert!(
        counts.values().all(|n| *n == 1),
        "each sent once: {counts:?}"
    );

    let lost = cluster.id(2).to_owned();
    cluster.kill9(2).await.unwrap();
    wait_for("node_lost delivered", async || {
        receiver
            .received()
            .iter()
            .any(|r| r.body["kind"] == "node_lost")
    })
    .await;
    // Three lease TTLs: the other survivor has dropped what it noted by then.
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    let reports: Vec<_> = receiver
        .received()
        .into_iter()
        .filter(|r| r.body["kind"] == "node_lost")
        .collect();
    assert_eq!(reports.len(), 1, "reported once: {reports:?}");
    assert_eq!(reports[0].body["detail"]["node_id"], lost.as_str());
    assert_eq!(reports[0].signature, Some(Ok(())));
}
