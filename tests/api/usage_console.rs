//! The console's usage page in headless Chromium: the SVG chart's bars and the table
//! hold what the API reports (screenshot `usage` with the others).

use crate::console::Browser;
use crate::usage::{TokenModel, fire_and_wait, objective, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_page_charts_tokens_per_day_in_chromium() {
    let fake = TokenModel::start();
    let app = setup(&fake, |s| {
        s.usage.prices.insert(
            "m1".into(),
            palyra_actors::usage::ModelPrice {
                input_per_million: 1.0,
                output_per_million: 2.0,
            },
        );
    })
    .await;
    objective(&app, "o1", "a1", None).await;
    objective(&app, "o3", "a2", None).await;
    for id in ["o1", "o1", "o3"] {
        fire_and_wait(&app, id).await;
    }
    let browser = Browser::start().await;
    browser.goto(&app.url("/")).await;
    browser.find("#login-form").await;
    browser
        .fill("#admin-token", crate::helpers::ADMIN_TOKEN)
        .await;
    browser.click("#login-form button[type=submit]").await;
    browser.wait_text("main h1", "Overview").await;
    browser.click("#nav a[data-section=usage]").await;
    browser.wait_text("main h1", "Usage").await;
    browser.find("#usage-chart").await;
    // Today's bar of a1 (two runs of 8 tokens) and of a2 (one run of 24), by agent.
    let a1 = browser.find("#usage-chart rect[data-key=a1]").await;
    assert_eq!(a1.attr("data-tokens").await.unwrap().as_deref(), Some("16"));
    let a2 = browser.find("#usage-chart rect[data-key=a2]").await;
    assert_eq!(a2.attr("data-tokens").await.unwrap().as_deref(), Some("24"));
    let legend = browser.wait_text("#usage-legend", "a1").await;
    assert!(legend.contains("a2"), "{legend}");
    let table = browser.wait_text("#usage-table", "a2").await;
    assert!(table.contains("24"), "{table}");
    browser.screenshot("usage").await;
    // By model: m1 is priced ($0.000026 for 6 input and 10 output tokens), m2 is not.
    browser
        .choose("#usage-filters select[name=group_by]", "model")
        .await;
    browser.click("#usage-filters button[type=submit]").await;
    browser.wait_text("#usage-table", "openai/m1").await;
    let m1 = browser
        .find("#usage-table tr[data-key='openai/m1']")
        .await
        .text()
        .await
        .unwrap();
    assert!(m1.contains("$0.000026"), "{m1}");
    let m2 = browser
        .find("#usage-table tr[data-key='openai/m2']")
        .await
        .text()
        .await
        .unwrap();
    assert!(m2.contains('—'), "no price, no cost: {m2}");
    browser
        .find("#usage-chart rect[data-key='openai/m2']")
        .await;
    browser.screenshot("usage-by-model").await;
    browser.stop().await;
}
