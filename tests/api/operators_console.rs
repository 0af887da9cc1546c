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
        // Operators and tokens are an admin's: no way there for a viewer or an operator,
        // and the page says so rather than failing.
        for link in ["nav a[href='#/operators']", "nav a[href='#/tokens']"] {
            let link = browser.find(link).await;
            assert!(!link.is_displayed().await.unwrap(), "{role}: {link:?}");
        }
        browser.goto(&app.url("/#/operators")).await;
        browser
            .wait_text("main", "Only admins manage operators")
            .await;
        browser.screenshot(&format!("as-{role}")).await;
        browser.click("#logout").await;
        browser.find("#login-form").await;
    }
    browser.stop().await;
}

/// An admin creates an operator, mints a token shown once (and working), sees it in the
/// tokens list without its secret, and revokes it, all in the console.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_manages_operators_and_tokens_in_the_console() {
    let app = spawn_app().await;
    let browser = Browser::start().await;
    browser.goto(&app.url("/")).await;
    browser
        .fill("#admin-token", crate::helpers::ADMIN_TOKEN)
        .await;
    browser.click("#login-form button[type=submit]").await;
    browser.wait_text("#who", "root · admin").await;
    browser.click("nav a[href='#/operators']").await;
    browser.find("#operator-form").await;
    browser
        .fill("#operator-form [name=operator_id]", "olga")
        .await;
    browser
        .fill("#operator-form [name=display_name]", "Olga")
        .await;
    browser
        .choose("#operator-form [name=role]", "operator")
        .await;
    browser
        .fill("#operator-form [name=password]", PASSWORD)
        .await;
    browser.click("#operator-form button[type=submit]").await;
    browser.wait_text("#operators-table", "olga").await;
    browser
        .click("tr[data-operator-id='olga'] button[data-action=new-token]")
        .await;
    browser.fill("#token-form [name=name]", "ci").await;
    browser.choose("#token-form [name=role]", "viewer").await;
    browser.click("#token-form button[type=submit]").await;
    let token = browser.wait_text("#minted-token", "palyra_").await;
    let token = token.trim().to_owned();
    browser.screenshot("operators-token-minted").await;
    let works = app
        .http
        .get(app.url("/console/v1/agents"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(works.status(), 200, "the token shown works");

    browser.click("nav a[href='#/tokens']").await;
    browser.wait_text("#tokens-table", "olga").await;
    assert!(
        !browser.source().await.contains(&token),
        "the secret is shown once only"
    );
    browser.screenshot("tokens").await;
    browser
        .click("#tokens-table button[data-action=revoke]")
        .await;
    browser.client().accept_alert().await.unwrap();
    browser.wait_text("#token-list", "No API tokens").await;
    let revoked = app
        .http
        .get(app.url("/console/v1/agents"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 401, "revoked at once");
    browser.goto(&app.url("/#/operators")).await;
    browser.wait_text("#operators-table", "olga").await;
    assert!(!browser.source().await.contains(&token));
    browser.stop().await;
}
