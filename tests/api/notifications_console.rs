//! The console's notifications page in headless Chromium: a channel is added (its
//! secret shown once), tested, and the delivery listed as delivered.

use fantoccini::Locator;
use palyra::testkit::webhook::WebhookReceiver;

use crate::console::Browser;
use crate::helpers::spawn_app_with;
use crate::notifications::wait_for;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notifications_page_adds_tests_and_lists_a_channel() {
    let app = spawn_app_with(|s| {
        s.notifications.allow_private_networks = true;
        s.notifications.poll_interval_ms = 50;
    })
    .await;
    let receiver = WebhookReceiver::start();
    let browser = Browser::start().await;
    browser.goto(&app.url("/")).await;
    browser
        .fill("#admin-token", crate::helpers::ADMIN_TOKEN)
        .await;
    browser.click("#login-form button[type=submit]").await;
    browser.wait_text("main h1", "Overview").await;
    browser.click("nav a[href='#/notifications']").await;
    browser.wait_text("main h1", "Notifications").await;
    browser
        .fill("#channel-form [name=url]", &receiver.url())
        .await;
    browser.click("#channel-form input[value=run_failed]").await;
    browser.click("#channel-form button[type=submit]").await;
    let shown = browser.wait_text("#channel-secret", "shown only now").await;
    let secret = browser
        .client()
        .find(Locator::Css("#channel-secret code"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(secret.len() >= 32, "{shown}");
    receiver.set_secret(&secret);
    browser.wait_text("#channels-table", "run_failed").await;
    browser.click("#channels-table button.write").await;
    wait_for("the test delivered", async || {
        !receiver.received().is_empty()
    })
    .await;
    assert_eq!(receiver.received()[0].signature, Some(Ok(())));
    // The list reloads on the next visit.
    browser.click("nav a[href='#/audit']").await;
    browser.click("nav a[href='#/notifications']").await;
    browser.wait_text("#deliveries-table", "delivered").await;
    let page = browser.source().await;
    assert_eq!(
        page.matches(&secret).count(),
        0,
        "the secret is gone after a reload"
    );
    browser.screenshot("notifications").await;
    browser.stop().await;
}
