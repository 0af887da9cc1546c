//! The browser tools end to end on real headless Chromium: a run opens a loopback
//! page the test serves, types, clicks and reads it on one session it owns, which is
//! closed when the run ends and counts against `browser.max_sessions`.

use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::response::Html;
use axum::routing::get;
use palyra::testkit::scripted::{Answer, ScriptedModel};
use palyra::testkit::served::Served;
use serde_json::{Value, json};

use crate::browser::{post, spawn_browser_app};
use crate::helpers::TestApp;
use crate::providers_failover::{add_key, fire};

const KEY: &str = "sk-browse-secret-key-0123456789";

fn site() -> Served {
    let app = Router::new()
        .route(
            "/",
            get(|| async {
                Html(
                    r#"<!doctype html><html><head><title>Alerts</title></head><body>
<h1>Overnight alerts</h1>
<form action="/search" method="get"><input id="q" name="q"><button id="go" type="submit">Go</button></form>
</body></html>"#,
                )
            }),
        )
        .route(
            "/search",
            get(|Query(q): Query<std::collections::HashMap<String, String>>| async move {
                Html(format!(
                    "<title>Results</title><p>You searched: {}</p>",
                    q.get("q").cloned().unwrap_or_default()
                ))
            }),
        );
    Served::start("tools-site", app).unwrap()
}

fn call(name: &'static str, arguments: Value) -> Answer {
    Answer::ToolCall {
        name,
        arguments,
        input: 1,
        output: 1,
    }
}

async fn setup(max_sessions: usize) -> (ScriptedModel, TestApp) {
    let fake = ScriptedModel::start().await;
    let url = fake.url();
    let app = spawn_browser_app(move |s| {
        s.providers.openai.api_base_url = url;
        s.objectives.provider_timeout_s = 5;
        s.browser.max_sessions = max_sessions;
    })
    .await;
    add_key(&app, "p1", "openai", KEY).await;
    let response = app
        .bearer_post(
            "/console/v1/agents",
            json!({ "agent_id": "a1", "model": "m", "default_model_profile": "p1",
                    "tools": ["browser"] }),
        )
        .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    (fake, app)
}

async fn session_count(app: &TestApp) -> usize {
    app.bearer_get_json("/console/v1/browser/sessions").await["sessions"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_run_opens_types_clicks_and_reads_a_page_and_its_session_closes() {
    let (fake, app) = setup(4).await;
    let site = site();
    fake.script(
        KEY,
        vec![
            call("browser_read", json!({})),
            call("browser_open", json!({ "url": format!("{}/", site.url()) })),
            call("browser_type", json!({ "selector": "#q", "text": "disk" })),
            call("browser_click", json!({ "selector": "#go" })),
            call("browser_read", json!({})),
            Answer::Ok {
                input: 1,
                output: 1,
            },
        ],
    );
    let run = fire(&app, "o1", "a1").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let calls = fake.calls();
    assert_eq!(
        calls[0].tools_offered(),
        [
            "browser_open",
            "browser_click",
            "browser_type",
            "browser_read"
        ]
    );
    let results = calls[5].tool_results();
    assert!(
        results[0].1 && results[0].0.contains("browser_open first"),
        "{results:?}"
    );
    assert!(
        !results[1].1 && results[1].0.contains("Alerts"),
        "{results:?}"
    );
    assert!(
        !results[3].1 && results[3].0.contains("Results"),
        "{results:?}"
    );
    assert!(results[4].0.contains("You searched: disk"), "{results:?}");
    // The run's session is closed once it ended.
    for _ in 0..100 {
        if session_count(&app).await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the run's browser session was left open");
}

#[tokio::test]
async fn a_runs_session_counts_against_max_sessions() {
    let (fake, app) = setup(1).await;
    let site = site();
    // An operator's session takes the only place.
    let held = post(&app, "/console/v1/browser/sessions", json!({})).await;
    assert_eq!(held.status(), 201, "{}", held.text().await.unwrap());
    fake.script(
        KEY,
        vec![
            call("browser_open", json!({ "url": format!("{}/", site.url()) })),
            Answer::Ok {
                input: 1,
                output: 1,
            },
        ],
    );
    let run = fire(&app, "o1", "a1").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let results = fake.calls()[1].tool_results();
    assert!(
        results[0].1 && results[0].0.contains("browser sessions are in use"),
        "{results:?}"
    );
    assert_eq!(session_count(&app).await, 1);
}
