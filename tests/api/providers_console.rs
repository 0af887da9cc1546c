//! The console's side of failover, in headless Chromium: an agent's candidate list
//! (shown, and entered in the agent form), a run's attempts, and cooldowns on the
//! profiles page.

use palyra::testkit::scripted::{Answer, RetryAfter, ScriptedModel};
use serde_json::json;

use crate::console::Browser;
use crate::helpers::{ADMIN_TOKEN, spawn_app_with};
use crate::providers_failover::{add_key, fire};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_candidates_attempts_and_cooldowns() {
    let fake = ScriptedModel::start().await;
    fake.script(
        "key-limited-0001",
        vec![Answer::RateLimited(Some(RetryAfter::Seconds(600)))],
    );
    fake.script(
        "key-good-0000001",
        vec![Answer::Ok {
            input: 4,
            output: 3,
        }],
    );
    let url = fake.url();
    let app = spawn_app_with(move |s| s.providers.openai.api_base_url = url).await;
    add_key(&app, "k1", "openai", "key-limited-0001").await;
    add_key(&app, "k2", "openai", "key-good-0000001").await;
    let created = app
        .bearer_post(
            "/console/v1/agents",
            json!({ "agent_id": "a1", "model_profiles": [
                { "profile_id": "k1", "model": "m1" }, { "profile_id": "k2", "model": "m2" } ] }),
        )
        .await;
    assert_eq!(created.status(), 200);
    let run = fire(&app, "o1", "a1").await;
    assert_eq!(run["status"], "succeeded", "{run}");

    let browser = Browser::start().await;
    browser.goto(&app.url("/")).await;
    browser.fill("#admin-token", ADMIN_TOKEN).await;
    browser.click("#login-form button[type=submit]").await;
    browser.wait_text("main h1", "Overview").await;

    browser.click("nav a[href='#/agents']").await;
    let row = browser
        .wait_text("#agents-table tr[data-agent-id=a1]", "k1 · m1")
        .await;
    assert!(row.contains("k2 · m2"), "{row}");
    // The form takes candidates one per line, in order.
    browser.fill("#agent-form [name=agent_id]", "a2").await;
    browser
        .fill("#agent-form [name=model_profiles]", "k2 m2\nk1 m1")
        .await;
    browser.click("#agent-form button[type=submit]").await;
    browser
        .wait_text("#agents-table tr[data-agent-id=a2]", "k2 · m2")
        .await;
    let a2 = app.bearer_get_json("/console/v1/agents/a2").await;
    assert_eq!(
        a2["model_profiles"],
        json!([{ "profile_id": "k2", "model": "m2" }, { "profile_id": "k1", "model": "m1" }])
    );
    assert_eq!(a2["model"], "m2");

    browser.goto(&app.url("/#/objectives/o1")).await;
    let run_row = browser
        .wait_text("#runs-table tr[data-status=succeeded]", "rate limited")
        .await;
    assert!(
        run_row.contains("k1 · m1") && run_row.contains("k2 · m2"),
        "{run_row}"
    );
    assert!(
        run_row.contains("7 (4 + 3)"),
        "tokens in and out: {run_row}"
    );
    browser.screenshot("run-attempts").await;

    browser.click("nav a[href='#/profiles']").await;
    let k1 = browser
        .wait_text(
            "#profiles-table tr[data-profile-id=k1]",
            "rate limited until",
        )
        .await;
    assert!(k1.contains("HTTP 429"), "{k1}");
    let k2 = browser
        .wait_text("#profiles-table tr[data-profile-id=k2]", "static")
        .await;
    assert!(!k2.contains("until"), "{k2}");
    browser.screenshot("profiles-cooldown").await;
    browser.stop().await;
}
