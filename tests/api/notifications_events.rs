//! Three event kinds reach a subscribed channel through the real daemon:
//! `profile_needs_reauth` (a run whose API-key profile the fake provider answers
//! 401), `refresh_failing` (an OAuth profile whose token endpoint keeps answering
//! 500) and `certificate_expiring` (the daemon serving a certificate that expires
//! within `notifications.certificate_warning_days`). Each delivery is checked by the
//! fake receiver: signed under the channel's secret, in the timestamp window.

use std::sync::Arc;
use std::time::Duration;

use palyra::testkit::scripted::{Answer, ScriptedModel};
use palyra::testkit::webhook::{Received, WebhookReceiver};
use serde_json::{Value, json};

use crate::fakes::{FakeOAuth, ForcedAnswer};
use crate::helpers::{ADMIN_TOKEN, TestApp, spawn_app_with, start, test_settings};

/// Subscribes `receiver` to `kind`; it learns the channel's secret.
async fn subscribe(app: &TestApp, receiver: &WebhookReceiver, kind: &str) {
    let created = crate::notifications::create_channel(
        app,
        json!({ "url": receiver.url(), "events": [kind] }),
    )
    .await;
    receiver.set_secret(created["secret"].as_str().unwrap());
}

fn allow_loopback(s: &mut palyra::settings::Settings) {
    s.notifications.allow_private_networks = true;
    s.notifications.poll_interval_ms = 50;
}

/// Waits for the first delivery of `kind`, and checks its signature.
async fn delivered(receiver: &WebhookReceiver, kind: &str) -> Received {
    for _ in 0..300 {
        if let Some(r) = receiver
            .received()
            .into_iter()
            .find(|r| r.body["kind"] == kind)
        {
            assert_eq!(r.signature, Some(Ok(())), "{:?}", r.body);
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no {kind} delivered in 30 s: {:?}",
        receiver
            .received()
            .iter()
            .map(|r| r.body.clone())
            .collect::<Vec<Value>>()
    );
}

#[tokio::test]
async fn a_run_answered_401_raises_profile_needs_reauth() {
    let fake = ScriptedModel::start().await;
    let url = fake.url();
    let app = spawn_app_with(move |s| {
        s.providers.openai.api_base_url = url;
        allow_loopback(s);
    })
    .await;
    let key = "revoked-key-1234567890";
    fake.script(key, vec![Answer::Status(401, "invalid_api_key")]);
    let receiver = WebhookReceiver::start();
    subscribe(&app, &receiver, "profile_needs_reauth").await;
    for (path, body) in [
        (
            "/console/v1/auth/profiles",
            json!({ "profile_id": "p1", "provider": "openai", "profile_name": "p1",
                    "credential": { "type": "api_key", "api_key": key }, "validate": false }),
        ),
        (
            "/console/v1/agents",
            json!({ "agent_id": "a1", "display_name": "a1", "workspace_roots": ["/srv/a"],
                    "default_model_profile": "p1", "model": "m1" }),
        ),
        (
            "/console/v1/objectives",
            json!({ "objective_id": "o1", "agent_id": "a1", "kind": "standing_order",
                    "name": "o1", "prompt": "hello", "activate": true }),
        ),
    ] {
        let response = app.bearer_post(path, body).await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
    let response = app
        .bearer_post(
            "/console/v1/objectives/o1/lifecycle",
            json!({ "action": "fire" }),
        )
        .await;
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
    let event = delivered(&receiver, "profile_needs_reauth").await;
    assert_eq!(event.body["subject"], "auth profile p1", "{:?}", event.body);
    assert_eq!(event.body["detail"]["profile_id"], "p1", "{:?}", event.body);
    assert!(
        fake.keys_called().iter().any(|k| k == key),
        "the run called the provider"
    );
    // The secret itself is in no delivery.
    let all = serde_json::to_string(
        &receiver
            .received()
            .iter()
            .map(|r| r.body.clone())
            .collect::<Vec<Value>>(),
    )
    .unwrap();
    assert!(!all.contains(key), "{all}");
}

#[tokio::test]
async fn a_token_endpoint_answering_500_raises_refresh_failing() {
    let fake = FakeOAuth::start(3600).await;
    let base = fake.url();
    let app = spawn_app_with(move |s| {
        s.providers
            .custom
            .insert("acme".into(), crate::oauth::acme_provider(&base));
        s.oauth.refresh_lead_s = 300;
        allow_loopback(s);
    })
    .await;
    let receiver = WebhookReceiver::start();
    subscribe(&app, &receiver, "refresh_failing").await;
    crate::oauth::sign_in(&app, &fake, "acme.flaky").await;
    // The token endpoint keeps answering 500: the refresher retries on its own after
    // each backoff (200 ms to 1 s here), and the third failure in a row raises it.
    for _ in 0..50 {
        fake.force(ForcedAnswer::Status(500, "server_error"));
    }
    let report = crate::oauth::refresh(&app, "acme.flaky").await;
    assert_eq!(report["outcome"], "transient_failure", "{report}");
    let event = delivered(&receiver, "refresh_failing").await;
    assert_eq!(
        event.body["subject"], "auth profile acme.flaky",
        "{:?}",
        event.body
    );
    assert_eq!(
        event.body["detail"]["consecutive_failures"], 3,
        "{:?}",
        event.body
    );
    assert!(
        event.body["detail"]["error"]
            .as_str()
            .unwrap()
            .contains("500"),
        "{:?}",
        event.body
    );
}

#[tokio::test]
async fn a_certificate_expiring_soon_raises_certificate_expiring() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    // Valid for 3 days: within the default warning of 14.
    let written = palyra::tls_gen::self_signed(
        &dir.path().join("tls"),
        &["localhost".to_owned(), "127.0.0.1".to_owned()],
        3,
    )
    .unwrap();
    let mut settings = test_settings(&dir);
    settings.tls.cert_path = Some(written.cert_path.clone());
    settings.tls.key_path = Some(written.key_path.clone());
    allow_loopback(&mut settings);
    let pem = std::fs::read(&written.cert_path).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let app = start(Arc::clone(&dir), settings).await.unwrap();
    let base = format!("https://127.0.0.1:{}", app.addr.port());
    // The watch raises the event at start; the channel is made first, then the daemon
    // restarts so its start raises one for the channel.
    let receiver = WebhookReceiver::start();
    let response = http
        .post(format!("{base}/console/v1/notifications/channels"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "url": receiver.url(), "events": ["certificate_expiring"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    receiver.set_secret(created["secret"].as_str().unwrap());
    let (dir, settings) = app.stop().await;
    let _app = start(dir, settings).await.unwrap();
    let event = delivered(&receiver, "certificate_expiring").await;
    assert_eq!(
        event.body["subject"], "the daemon's TLS certificate",
        "{:?}",
        event.body
    );
    let days_left = event.body["detail"]["days_left"].as_i64().unwrap();
    assert!((0..=3).contains(&days_left), "{:?}", event.body);
    assert!(
        event.body["detail"]["not_after"].is_string(),
        "{:?}",
        event.body
    );
}
