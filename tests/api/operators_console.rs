//! The console as operators of each role see it, in headless Chromium: the header
//! names the operator and role, and a viewer is shown no action that changes anything.

use fantoccini::Locator;
use serde_json::json;

use crate::console::Browser;
use crate::helpers::spawn_app;

const PASSWORD: &str = "a long enough passphrase";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_as_a_viewer_shows_no_write_action() {
    let app = spawn_app().await;
    for (id, role) in [("vera", "viewer"), ("otto", "operator")] {
        let created = app
            .bearer_post(
                "/console/v1/operators",
                json!({ "operator_id": id, "role": role, "password": PASSWORD }),
            )
            .await;
        assert_eq!(created.status(), 201);
    }
    let agent = app
        .bearer_post(
            "/console/v1/agents",
            json!({ "agent_id": "a1", "model": "m" }),
        )
        .await;
    assert_eq!(agent.status(), 200);
    let browser = Browser::start().await;
    for (id, role, writes) in [("vera", "viewer", false), ("otto", "operator", true)] {
        browser.goto(&app.url("/#/login")).await;
        browser.fill("#operator-id", id).await;
        browser.fill("#operator-password", PASSWORD).await;
        browser.click("#login-form button[type=submit]").await;
        browser.wait_text("main h1", "Overview").await;
        browser
            .wait_text("#who", &format!("operator:{id} · {role}"))
            .await;
        browser.goto(&app.url("/#/agents")).await;
        browser.wait_text("#agents-table", "a1").await;
        let form = browser.find("#agent-form").await;
        assert_eq!(
            form.is_displayed().await.unwrap(),
            writes,
            "{role}: the agent form"
        );
        let edit = browser
            .client()
            .find(Locator::Css("#agents-table button.write"))
            .await
            .unwrap();
        assert_eq!(edit.is_displayed().await.unwrap(), writes, "{role}: Edit");
        browser.goto(&app.url("/#/profiles")).await;
        let add = browser.find("#add-api-key").await;
        assert_eq!(
            add.is_displayed().await.unwrap(),
            writes,
            "{role}: add a key"
        );
        browser.screenshot(&format!("as-{role}")).await;
        browser.click("#logout").await;
        browser.find("#login-form").await;
    }
    browser.stop().await;
}
