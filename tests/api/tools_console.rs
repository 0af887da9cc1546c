//! The console's agent form in headless Chromium: the tools as checkboxes and the
//! most tool calls a run makes, created, edited and cleared, what the daemon stored
//! read back through the API (screenshot `agent-tools` with the others).

use serde_json::json;

use crate::console::Browser;
use crate::helpers::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_form_sets_tools_and_max_tool_calls_in_chromium() {
    let app = spawn_app().await;
    let root = app.dir.path().join("ws");
    std::fs::create_dir_all(&root).unwrap();
    let browser = Browser::start().await;
    browser.goto(&app.url("/")).await;
    browser.find("#login-form").await;
    browser
        .fill("#admin-token", crate::helpers::ADMIN_TOKEN)
        .await;
    browser.click("#login-form button[type=submit]").await;
    browser.wait_text("main h1", "Overview").await;
    browser.goto(&app.url("/#/agents")).await;
    browser.wait_text("main h1", "Agents").await;
    browser.find("#agent-form").await;
    browser.fill("#agent-form [name=agent_id]", "ops").await;
    browser.fill("#agent-form [name=model]", "m").await;
    browser
        .fill(
            "#agent-form [name=workspace_roots]",
            &root.display().to_string(),
        )
        .await;
    browser
        .click("#agent-form input[name=tools][value=workspace_read]")
        .await;
    browser
        .click("#agent-form input[name=tools][value=http_fetch]")
        .await;
    // Out of range: the API's 400 lands under the field, nothing is created.
    browser
        .fill("#agent-form [name=max_tool_calls]", "5000")
        .await;
    browser.click("#agent-form button[type=submit]").await;
    browser
        .wait_text(
            "#agent-form [data-field-for=max_tool_calls] .field-error",
            "1 to 1000",
        )
        .await;
    let missing = app
        .http
        .get(app.url("/console/v1/agents/ops"))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    browser.fill("#agent-form [name=max_tool_calls]", "5").await;
    browser.click("#agent-form button[type=submit]").await;
    browser
        .wait_text("tr[data-agent-id='ops'] td.tools", "workspace_read")
        .await;
    let agent = app.bearer_get_json("/console/v1/agents/ops").await;
    assert_eq!(agent["tools"], json!(["workspace_read", "http_fetch"]));
    assert_eq!(agent["max_tool_calls"], 5);
    // Editing: the form shows what is set; one tool off, another on, the count cleared.
    browser.click("tr[data-agent-id='ops'] button").await;
    browser.wait_text("#agent-form h2", "Edit agent ops").await;
    let checked = browser
        .find("#agent-form input[name=tools][value=http_fetch]")
        .await
        .prop("checked")
        .await
        .unwrap();
    assert_eq!(checked.as_deref(), Some("true"));
    let count = browser
        .find("#agent-form [name=max_tool_calls]")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(count.as_deref(), Some("5"));
    browser
        .click("#agent-form input[name=tools][value=http_fetch]")
        .await;
    browser
        .click("#agent-form input[name=tools][value=workspace_write]")
        .await;
    browser.fill("#agent-form [name=max_tool_calls]", "").await;
    browser.click("#agent-form button[type=submit]").await;
    browser.wait_text("#flash", "Saved agent ops").await;
    browser
        .wait_text("tr[data-agent-id='ops'] td.tools", "workspace_write")
        .await;
    browser.screenshot("agent-tools").await;
    let agent = app.bearer_get_json("/console/v1/agents/ops").await;
    assert_eq!(agent["tools"], json!(["workspace_read", "workspace_write"]));
    assert!(agent.get("max_tool_calls").is_none(), "{agent}");
    browser.stop().await;
}
