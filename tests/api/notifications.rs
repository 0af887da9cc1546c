//! Notification channels through the real daemon: signed deliveries retried until a
//! 2xx, subscriptions filtered by kind, agent and objective, a 410 disabling its
//! channel, the Slack and Discord bodies and the URL policy, against fake receivers
//! on loopback that verify every signature and its timestamp window.
//! Each test runs on redb, and on PostgreSQL in the suite's PostgreSQL pass.

use std::time::Duration;

use palyra::testkit::webhook::WebhookReceiver;
use serde_json::{Value, json};

use crate::fakes::FakeModel;
use crate::helpers::{ADMIN_TOKEN, TestApp, error_code, spawn_app_with};

const EVERY_SECOND: &str = "* * * * * *";

/// Receivers on loopback are allowed; retries are quick.
fn fast(s: &mut palyra::settings::Settings) {
    s.notifications.allow_private_networks = true;
    s.notifications.retry_base_ms = 100;
    s.notifications.retry_cap_ms = 300;
    s.notifications.poll_interval_ms = 50;
}

async fn setup(fake: &FakeModel) -> TestApp {
    let url = fake.url();
    let app = spawn_app_with(move |s| {
        s.providers.openai.api_base_url = url;
        fast(s);
    })
    .await;
    app.seed_agent(json!({})).await;
    app
}

pub async fn create_channel(app: &TestApp, body: Value) -> Value {
    let response = app
        .bearer_post("/console/v1/notifications/channels", body)
        .await;
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    response.json().await.unwrap()
}

/// Sends `channel`'s test event (202) and answers the `POST`'s body.
async fn send_test(app: &TestApp, channel: &str) -> Value {
    let test = app
        .bearer_post(
            &format!("/console/v1/notifications/channels/{channel}/test"),
            json!({}),
        )
        .await;
    assert_eq!(test.status(), 202);
    test.json().await.unwrap()
}

/// A channel to `receiver`, which learns its secret.
async fn channel_to(app: &TestApp, receiver: &WebhookReceiver, mut body: Value) -> String {
    body["url"] = json!(receiver.url());
    let created = create_channel(app, body).await;
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.len() >= 32, "a generated secret: {created}");
    receiver.set_secret(secret);
    created["channel_id"].as_str().unwrap().to_owned()
}

async fn objective(app: &TestApp, id: &str, extra: Value) {
    let mut body = json!({ "objective_id": id, "agent_id": "a1", "kind": "standing_order",
        "name": id, "prompt": format!("report on {id}"),
        "automation": { "schedule": EVERY_SECOND, "timezone": "UTC" }, "activate": true });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let response = app.bearer_post("/console/v1/objectives", body).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
}

pub async fn deliveries(app: &TestApp, query: &str) -> Vec<Value> {
    app.bearer_get_json(&format!("/console/v1/notifications/deliveries?{query}"))
        .await["deliveries"]
        .as_array()
        .unwrap()
        .clone()
}

pub async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Every request the receiver got carried a valid signature in the window.
fn all_signed(receiver: &WebhookReceiver) {
    for got in receiver.received() {
        assert_eq!(got.signature, Some(Ok(())), "{got:?}");
    }
}

#[tokio::test]
async fn a_run_completed_is_signed_and_delivered_on_the_third_attempt() {
    let fake = FakeModel::start(3).await;
    let app = setup(&fake).await;
    let receiver = WebhookReceiver::start();
    receiver.script(&[500, 500]);
    let channel = channel_to(&app, &receiver, json!({ "events": ["run_completed"] })).await;
    let pauses = WebhookReceiver::start();
    let c_pauses = channel_to(&app, &pauses, json!({ "events": ["objective_paused"] })).await;
    // One run: then the budget pauses the objective.
    objective(&app, "o1", json!({ "budget": { "max_runs": 1 } })).await;
    wait_for("both events delivered", async || {
        let done = |list: Vec<Value>| list.len() == 1;
        done(deliveries(&app, &format!("channel_id={channel}&status=delivered")).await)
            && done(deliveries(&app, &format!("channel_id={c_pauses}&status=delivered")).await)
    })
    .await;
    let list = deliveries(&app, &format!("channel_id={channel}")).await;
    let completed = list.iter().find(|d| d["kind"] == "run_completed").unwrap();
    assert_eq!(completed["attempts"], 3, "{completed}");
    assert_eq!(completed["last_status_code"], 200);
    assert_eq!(completed["status"], "delivered");
    let event_id = completed["event_id"].as_str().unwrap();
    let received = receiver.received();
    let attempts: Vec<_> = received
        .iter()
        .filter(|r| r.body["id"] == event_id)
        .collect();
    assert_eq!(
        attempts.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![500, 500, 200]
    );
    // At least once, with one id to deduplicate by: every attempt is the same event.
    for attempt in &attempts {
        assert_eq!(attempt.body, attempts[0].body);
        assert_eq!(attempt.event_id.as_deref(), Some(event_id));
    }
    let body = &attempts[0].body;
    assert_eq!(body["kind"], "run_completed");
    assert!(body["at"].is_string() && body["subject"].as_str().unwrap().contains("o1"));
    assert!(
        body["detail"]["output"]
            .as_str()
            .unwrap()
            .contains("report on o1"),
        "the run's output reaches the receiver: {body}"
    );
    assert_eq!(received.len(), 3, "only run_completed to this channel");
    let paused = pauses.received();
    assert_eq!(paused.len(), 1);
    assert_eq!(paused[0].body["kind"], "objective_paused");
    assert_eq!(paused[0].body["detail"]["reason"], "budget_exhausted");
    all_signed(&receiver);
    all_signed(&pauses);
    // The secret was shown once: never in the list.
    let channels = app
        .bearer_get_json("/console/v1/notifications/channels")
        .await;
    let listed = channels["channels"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed.iter().all(|c| c.get("secret").is_none()),
        "{channels}"
    );
    assert!(listed.iter().any(|c| c["channel_id"] == channel.as_str()));
}

#[tokio::test]
async fn subscriptions_filter_by_kind_agent_and_objective() {
    let fake = FakeModel::start(1).await;
    let app = setup(&fake).await;
    let only_o1 = WebhookReceiver::start();
    let failures = WebhookReceiver::start();
    let other_agent = WebhookReceiver::start();
    let c_o1 = channel_to(
        &app,
        &only_o1,
        json!({ "events": ["run_completed"], "objective_id": "o1" }),
    )
    .await;
    let c_failed = channel_to(&app, &failures, json!({ "events": ["run_failed"] })).await;
    let c_other = channel_to(
        &app,
        &other_agent,
        json!({ "events": ["run_completed"], "agent_id": "a2" }),
    )
    .await;
    objective(&app, "o1", json!({ "budget": { "max_runs": 2 } })).await;
    objective(&app, "o2", json!({ "budget": { "max_runs": 2 } })).await;
    wait_for("every run of both objectives", async || {
        let o1 = app.bearer_get_json("/console/v1/objectives/o1").await;
        let o2 = app.bearer_get_json("/console/v1/objectives/o2").await;
        o1["state"] == "paused" && o2["state"] == "paused"
    })
    .await;
    // o1 ran twice: two deliveries to its channel.
    wait_for("o1's runs delivered", async || {
        deliveries(&app, &format!("channel_id={c_o1}&status=delivered"))
            .await
            .len()
            >= 2
    })
    .await;
    // A channel created now gets only later events; its test is fanned out after
    // every run event (the outbox is taken oldest first).
    let late = WebhookReceiver::start();
    let c_late = channel_to(&app, &late, json!({ "events": ["node_lost"] })).await;
    send_test(&app, &c_late).await;
    wait_for("the later test delivered", async || {
        !late.received().is_empty()
    })
    .await;
    assert_eq!(late.received()[0].body["kind"], "test");
    let to_o1 = only_o1.received();
    assert_eq!(to_o1.len(), 2, "{to_o1:?}");
    for got in &to_o1 {
        assert_eq!(got.body["kind"], "run_completed");
        assert_eq!(got.body["detail"]["objective_id"], "o1");
    }
    assert!(
        deliveries(&app, &format!("channel_id={c_failed}"))
            .await
            .is_empty()
    );
    assert!(
        deliveries(&app, &format!("channel_id={c_other}"))
            .await
            .is_empty()
    );
    assert!(failures.received().is_empty() && other_agent.received().is_empty());
    all_signed(&only_o1);
}

#[tokio::test]
async fn a_receiver_answering_410_disables_its_channel() {
    let app = spawn_app_with(fast).await;
    let receiver = WebhookReceiver::start();
    receiver.script(&[410]);
    let channel = channel_to(&app, &receiver, json!({ "events": ["run_failed"] })).await;
    let path = format!("/console/v1/notifications/channels/{channel}/test");
    let test = app.bearer_post(&path, json!({})).await;
    assert_eq!(test.status(), 202);
    let event_id = test.json::<Value>().await.unwrap()["event_id"].clone();
    wait_for("the delivery failed", async || {
        let list = deliveries(&app, "status=failed").await;
        list.len() == 1
    })
    .await;
    let failed = &deliveries(&app, "").await[0];
    assert_eq!(failed["event_id"], event_id);
    assert_eq!(failed["attempts"], 1, "a 410 is not retried: {failed}");
    assert_eq!(failed["last_status_code"], 410);
    wait_for("the channel disabled", async || {
        let list = app
            .bearer_get_json("/console/v1/notifications/channels")
            .await;
        list["channels"][0]["disabled"] == true
    })
    .await;
    let again = app.bearer_post(&path, json!({})).await;
    assert_eq!(again.status(), 409);
    assert_eq!(error_code(again).await, "conflict");
    assert_eq!(receiver.received().len(), 1);
    all_signed(&receiver);
    // Deleting the channel removes it (and its secret).
    let deleted = app
        .http
        .delete(app.url(&format!("/console/v1/notifications/channels/{channel}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let list = app
        .bearer_get_json("/console/v1/notifications/channels")
        .await;
    assert_eq!(list["channels"], json!([]));
}

/// A generic receiver may take its token in the query: it is not shown (credentials
/// in the user info are refused outright), and the channel still delivers to the
/// whole URL.
#[tokio::test]
async fn a_channel_url_is_listed_without_its_query() {
    let app = spawn_app_with(fast).await;
    let receiver = WebhookReceiver::start();
    let url = receiver.url();
    let created = create_channel(
        &app,
        json!({ "url": format!("{url}?token=s3cret-token"), "events": ["run_failed"] }),
    )
    .await;
    let shown = format!("{}?…", receiver.url());
    assert_eq!(created["url"], shown.as_str(), "{created}");
    let list = app
        .bearer_get_json("/console/v1/notifications/channels")
        .await;
    assert_eq!(list["channels"][0]["url"], shown.as_str());
    let text = list.to_string();
    assert!(!text.contains("s3cret-token"), "{text}");
    receiver.set_secret(created["secret"].as_str().unwrap());
    let id = created["channel_id"].as_str().unwrap();
    send_test(&app, id).await;
    wait_for("the test delivered", async || {
        !receiver.received().is_empty()
    })
    .await;
    let got = &receiver.received()[0];
    assert_eq!(got.body["kind"], "test");
    assert_eq!(got.uri, "/hook?token=s3cret-token");
}

#[tokio::test]
async fn slack_and_discord_channels_get_their_own_bodies() {
    let app = spawn_app_with(fast).await;
    let slack = WebhookReceiver::start();
    let discord = WebhookReceiver::start();
    for (receiver, format) in [(&slack, "slack"), (&discord, "discord")] {
        let created = create_channel(
            &app,
            json!({ "url": receiver.url(), "format": format, "events": ["run_failed"] }),
        )
        .await;
        assert_eq!(created["format"], format);
        // The webhook URL is the credential of these formats: shown by origin only.
        assert!(
            !created["url"].as_str().unwrap().contains("/hook"),
            "{created}"
        );
        let id = created["channel_id"].as_str().unwrap();
        send_test(&app, id).await;
    }
    wait_for("both delivered", async || {
        !slack.received().is_empty() && !discord.received().is_empty()
    })
    .await;
    let text = &slack.received()[0];
    assert!(text.signature.is_none(), "incoming webhooks are not signed");
    let message = text.body["text"].as_str().unwrap();
    assert!(message.contains("test"), "{message}");
    assert_eq!(text.body.as_object().unwrap().len(), 1, "{:?}", text.body);
    let content = &discord.received()[0];
    assert!(content.body["content"].as_str().unwrap().contains("test"));
    assert_eq!(content.body.as_object().unwrap().len(), 1);
}

#[tokio::test]
async fn channel_urls_follow_the_address_policy() {
    let app = spawn_app_with(|_| {}).await;
    let post = async |body: Value| {
        app.bearer_post("/console/v1/notifications/channels", body)
            .await
    };
    let events = json!(["run_failed"]);
    for (url, status, code) in [
        // Loopback and private addresses are refused unless allowed.
        ("http://127.0.0.1:9/hook", 403, "destination_refused"),
        ("https://10.0.0.1/hook", 403, "destination_refused"),
        ("https://[::1]/hook", 403, "destination_refused"),
        // http only to loopback.
        ("http://93.184.216.34/hook", 400, "invalid_field"),
        ("ftp://93.184.216.34/hook", 400, "invalid_field"),
        ("https://user:pw@93.184.216.34/hook", 400, "invalid_field"),
        ("not a url", 400, "invalid_field"),
    ] {
        let response = post(json!({ "url": url, "events": events })).await;
        assert_eq!(response.status(), status, "{url}");
        assert_eq!(error_code(response).await, code, "{url}");
    }
    for body in [
        json!({ "url": "https://93.184.216.34/", "events": [] }),
        json!({ "url": "https://93.184.216.34/", "events": ["test"] }),
        json!({ "url": "https://93.184.216.34/", "events": ["no_such_kind"] }),
        json!({ "url": "https://93.184.216.34/", "events": events, "agent_id": "Bad Id" }),
        json!({ "url": "https://93.184.216.34/", "events": events, "extra": 1 }),
    ] {
        let response = post(body.clone()).await;
        assert_eq!(response.status(), 400, "{body}");
    }
    // A channel id that is not one: 400; one that does not exist: 404.
    let bad = app
        .bearer_post("/console/v1/notifications/channels/nope/test", json!({}))
        .await;
    assert_eq!(bad.status(), 400);
    let missing = app
        .bearer_post(
            "/console/v1/notifications/channels/ch_0000000000000000/test",
            json!({}),
        )
        .await;
    assert_eq!(missing.status(), 404);
    // Allowed private networks still need https away from loopback.
    let open = spawn_app_with(|s| s.notifications.allow_private_networks = true).await;
    let response = open
        .bearer_post(
            "/console/v1/notifications/channels",
            json!({ "url": "http://10.0.0.1/hook", "events": events }),
        )
        .await;
    assert_eq!(response.status(), 400);
    let response = open
        .bearer_post(
            "/console/v1/notifications/channels",
            json!({ "url": "http://127.0.0.1:9/hook", "events": events }),
        )
        .await;
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn an_operator_manages_channels_with_the_cli() {
    use crate::cli::palyra;
    let app = spawn_app_with(fast).await;
    let receiver = WebhookReceiver::start();
    let url = receiver.url();
    let added = palyra(
        &app.base,
        &[
            "--json",
            "notifications",
            "add",
            &url,
            "--events",
            "run_failed,run_completed",
        ],
        None,
    )
    .await;
    assert!(added.ok, "{} {}", added.stdout, added.stderr);
    let created: Value = serde_json::from_str(&added.stdout).unwrap();
    let id = created["channel_id"].as_str().unwrap().to_owned();
    receiver.set_secret(created["secret"].as_str().unwrap());
    assert_eq!(created["events"], json!(["run_completed", "run_failed"]));
    let listed = palyra(&app.base, &["notifications", "channels"], None).await;
    assert!(
        listed.ok && listed.stdout.contains(&id),
        "{}",
        listed.stdout
    );
    assert!(!listed.stdout.contains(created["secret"].as_str().unwrap()));
    let tested = palyra(&app.base, &["notifications", "test", &id], None).await;
    assert!(tested.ok, "{}", tested.stderr);
    wait_for("the test delivered", async || {
        !receiver.received().is_empty()
    })
    .await;
    all_signed(&receiver);
    wait_for("listed as delivered", async || {
        let run = palyra(
            &app.base,
            &["notifications", "deliveries", "--status", "delivered"],
            None,
        )
        .await;
        run.ok && run.stdout.contains(&id)
    })
    .await;
    let removed = palyra(&app.base, &["notifications", "remove", &id], None).await;
    assert!(removed.ok, "{}", removed.stderr);
    let bad = palyra(
        &app.base,
        &["notifications", "add", "ftp://x/", "--events", "run_failed"],
        None,
    )
    .await;
    assert!(!bad.ok && bad.stderr.contains("url"), "{}", bad.stderr);
}

/// A storm of events on a receiver that does not answer: it holds only its channel's
/// places, so another channel's delivery goes through meanwhile, and once it answers
/// every event arrives exactly once (one node, normal operation).
#[tokio::test]
async fn a_slow_receiver_never_delays_another_channel() {
    let app = spawn_app_with(fast).await;
    let slow = WebhookReceiver::start();
    slow.hold();
    let quick = WebhookReceiver::start();
    let c_slow = channel_to(&app, &slow, json!({ "events": ["run_failed"] })).await;
    let c_quick = channel_to(&app, &quick, json!({ "events": ["run_failed"] })).await;
    const STORM: usize = 200;
    let mut ids = Vec::new();
    for _ in 0..STORM {
        let test = send_test(&app, &c_slow).await;
        ids.push(test["event_id"].as_str().unwrap().to_owned());
    }
    // The slow channel's places (notifications.per_channel_in_flight) are all taken.
    let places = app.settings.notifications.per_channel_in_flight;
    wait_for("the slow receiver holds its places", async || {
        slow.waiting() == places
    })
    .await;
    send_test(&app, &c_quick).await;
    wait_for("the other channel delivered", async || {
        !quick.received().is_empty()
    })
    .await;
    assert_eq!(
        slow.waiting(),
        places,
        "never more than its places in flight"
    );
    assert!(
        slow.received().is_empty(),
        "nothing answered by the slow one yet"
    );
    slow.release();
    wait_for("the storm delivered", async || {
        deliveries(
            &app,
            &format!("channel_id={c_slow}&status=delivered&limit=500"),
        )
        .await
        .len()
            == STORM
    })
    .await;
    let mut got: Vec<String> = slow
        .received()
        .iter()
        .map(|r| r.body["id"].as_str().unwrap().to_owned())
        .collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids, "each event exactly once");
    all_signed(&slow);
    all_signed(&quick);
}

/// An event is written only while some channel exists, decided in the write that
/// raises it: a run that finished before the first channel was made is never sent to
/// it, however late the fan-out pass comes, and a run after it is.
#[tokio::test]
async fn events_raised_before_any_channel_exists_are_never_sent() {
    let fake = FakeModel::start(3).await;
    let url = fake.url();
    let app = spawn_app_with(move |s| {
        s.providers.openai.api_base_url = url;
        fast(s);
        // Fan-out passes 2 s apart: an event written while no channel existed would
        // still be in the outbox when the channel below is made.
        s.notifications.poll_interval_ms = 2000;
    })
    .await;
    app.seed_agent(json!({})).await;
    let paused = async |id: &str| {
        app.bearer_get_json(&format!("/console/v1/objectives/{id}"))
            .await["state"]
            == "paused"
    };
    // One run, then its budget pauses it: run_completed and objective_paused, raised
    // in the finish's write, with no channel yet.
    objective(&app, "early", json!({ "budget": { "max_runs": 1 } })).await;
    wait_for("the early run finished", async || paused("early").await).await;
    let receiver = WebhookReceiver::start();
    let channel = channel_to(
        &app,
        &receiver,
        json!({ "events": ["run_completed", "objective_paused"] }),
    )
    .await;
    objective(&app, "late", json!({ "budget": { "max_runs": 1 } })).await;
    wait_for("the late run's two events delivered", async || {
        deliveries(&app, &format!("channel_id={channel}&status=delivered"))
            .await
            .len()
            >= 2
    })
    .await;
    // Two more fan-out passes: nothing of the early run turns up.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let received = receiver.received();
    let about: Vec<_> = received
        .iter()
        .map(|r| {
            (
                r.body["kind"].as_str().unwrap_or("").to_owned(),
                r.body["detail"]["objective_id"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect();
    let mut kinds: Vec<_> = about.iter().map(|(k, _)| k.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["objective_paused", "run_completed"], "{about:?}");
    assert!(about.iter().all(|(_, o)| o == "late"), "{about:?}");
    assert_eq!(deliveries(&app, "").await.len(), 2);
    all_signed(&receiver);
}
