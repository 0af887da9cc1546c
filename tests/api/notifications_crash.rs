//! The outbox across a SIGKILL: a delivery whose receiver is down when the daemon is
//! killed is delivered, signed, after the restart, once the receiver is back.

use palyra::testkit::webhook::WebhookReceiver;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, start_child};
use crate::notifications::wait_for;

const ENV: [(&str, &str); 4] = [
    ("PALYRA_NOTIFICATIONS__ALLOW_PRIVATE_NETWORKS", "true"),
    ("PALYRA_NOTIFICATIONS__RETRY_BASE_MS", "100"),
    ("PALYRA_NOTIFICATIONS__RETRY_CAP_MS", "300"),
    ("PALYRA_NOTIFICATIONS__POLL_INTERVAL_MS", "50"),
];

async fn deliveries(http: &reqwest::Client, base: &str) -> Vec<Value> {
    let response = http
        .get(format!("{base}/console/v1/notifications/deliveries"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["deliveries"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_delivery_to_a_receiver_down_across_a_sigkill_arrives_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let http = reqwest::Client::new();
    let mut receiver = WebhookReceiver::down();
    let mut daemon = start_child(&data_dir, &ENV).await;
    let created = http
        .post(format!("{}/console/v1/notifications/channels", daemon.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "url": receiver.url(), "events": ["run_failed"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    receiver.set_secret(created["secret"].as_str().unwrap());
    let id = created["channel_id"].as_str().unwrap();
    let test = http
        .post(format!(
            "{}/console/v1/notifications/channels/{id}/test",
            daemon.base
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(test.status(), 202);
    let event_id = test.json::<Value>().await.unwrap()["event_id"].clone();
    let base = daemon.base.clone();
    wait_for("failed attempts while the receiver is down", async || {
        let list = deliveries(&http, &base).await;
        list.len() == 1 && list[0]["attempts"].as_u64() >= Some(2)
    })
    .await;
    let pending = &deliveries(&http, &base).await[0];
    assert_eq!(pending["status"], "pending");
    assert!(pending["last_status_code"].is_null(), "{pending}");
    assert!(pending["last_error"].is_string(), "{pending}");
    daemon.child.start_kill().unwrap(); // SIGKILL
    daemon.child.wait().await.unwrap();
    receiver.resume();
    let daemon = start_child(&data_dir, &ENV).await;
    let base = daemon.base.clone();
    wait_for("delivered after the restart", async || {
        deliveries(&http, &base).await[0]["status"] == "delivered"
    })
    .await;
    let received = receiver.received();
    assert!(!received.is_empty());
    for got in &received {
        assert_eq!(got.body["id"], event_id);
        assert_eq!(got.body["kind"], "test");
        assert_eq!(got.signature, Some(Ok(())), "{got:?}");
    }
    let (_, log) = daemon.terminate().await;
    assert!(
        !log.contains(created["secret"].as_str().unwrap()),
        "the secret is never logged"
    );
}
