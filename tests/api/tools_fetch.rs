//! `http_fetch` through the browser sessions' egress policy: a loopback page the
//! test serves is refused while private networks are off, and fetched (HTML reduced
//! to text, in the model's next turn) when they are on; the daemon's own port is
//! refused either way; a POST is audited.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use palyra::testkit::scripted::{Answer, ScriptedModel};
use palyra::testkit::served::Served;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};
use crate::providers_failover::{add_key, fire};

const KEY: &str = "sk-fetch-secret-key-0123456789";

/// The requests a page received: what (method, body) and the headers.
type Seen = Arc<Mutex<Vec<(String, HeaderMap)>>>;

/// A page on loopback that records the requests it receives (method, headers).
fn page() -> (Served, Seen) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (a, b) = (Arc::clone(&seen), Arc::clone(&seen));
    let app = Router::new().route(
        "/alerts",
        get(move |headers: HeaderMap| async move {
            a.lock().unwrap().push(("GET".to_owned(), headers));
            (
                [("content-type", "text/html; charset=utf-8")],
                "<html><head><script>var leak = 1;</script></head><body><h1>Alerts</h1><p>db-2 disk &amp; cpu</p></body></html>",
            )
        })
        .post(move |headers: HeaderMap, body: String| async move {
            b.lock().unwrap().push((format!("POST {body}"), headers));
            "ack"
        }),
    );
    (Served::start("fetch-page", app).unwrap(), seen)
}

async fn app_on(fake: &ScriptedModel, allow_private: bool) -> TestApp {
    let url = fake.url();
    spawn_app_with(move |s| {
        s.providers.openai.api_base_url = url;
        s.objectives.provider_timeout_s = 5;
        s.browser.allow_private_networks = allow_private;
    })
    .await
}

async fn fetch_agent(app: &TestApp) {
    add_key(app, "p1", "openai", KEY).await;
    let response = app
        .bearer_post(
            "/console/v1/agents",
            json!({ "agent_id": "a1", "model": "m", "default_model_profile": "p1",
                    "tools": ["http_fetch"] }),
        )
        .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

fn fetch(arguments: Value) -> Answer {
    Answer::ToolCall {
        name: "http_fetch",
        arguments,
        input: 2,
        output: 1,
    }
}

#[tokio::test]
async fn a_private_destination_is_refused_and_never_reached() {
    let fake = ScriptedModel::start().await;
    let app = app_on(&fake, false).await;
    let (served, seen) = page();
    fetch_agent(&app).await;
    fake.script(
        KEY,
        vec![
            fetch(json!({ "url": format!("{}/alerts", served.url()) })),
            fetch(json!({ "url": "file:///etc/passwd" })),
            Answer::Ok {
                input: 1,
                output: 1,
            },
        ],
    );
    let run = fire(&app, "o1", "a1").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let results = fake.calls()[2].tool_results();
    assert!(
        results[0].1 && results[0].0.contains("loopback"),
        "{results:?}"
    );
    assert!(results[1].1, "{results:?}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "the refused page was reached"
    );
}

#[tokio::test]
async fn a_page_is_fetched_as_text_and_the_daemon_itself_is_refused() {
    let fake = ScriptedModel::start().await;
    let app = app_on(&fake, true).await;
    let (served, seen) = page();
    fetch_agent(&app).await;
    let own = format!("http://127.0.0.1:{}/console/v1/agents", app.addr.port());
    let own_by_name = format!("http://localhost:{}/console/v1/agents", app.addr.port());
    fake.script(
        KEY,
        vec![
            fetch(json!({ "url": format!("{}/alerts", served.url()),
                          "headers": { "X-Trace": "t1", "Authorization": "Bearer model-made" } })),
            fetch(json!({ "url": own, "headers": { "Authorization": format!("Bearer {}", crate::helpers::ADMIN_TOKEN) } })),
            fetch(json!({ "url": own_by_name })),
            fetch(json!({ "url": format!("{}/alerts", served.url()), "method": "POST", "body": "hello" })),
            Answer::Ok { input: 1, output: 1 },
        ],
    );
    let run = fire(&app, "o1", "a1").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let results = fake.calls()[4].tool_results();
    // The page reached the model as text: no tags, no script.
    assert!(!results[0].1, "{results:?}");
    assert!(
        results[0].0.contains("Alerts\ndb-2 disk & cpu"),
        "{results:?}"
    );
    assert!(!results[0].0.contains("leak"), "{results:?}");
    // The daemon's own listener, by address and by name, is refused.
    assert!(
        results[1].1 && results[1].0.contains("own listener"),
        "{results:?}"
    );
    assert!(
        results[2].1 && results[2].0.contains("own listener"),
        "{results:?}"
    );
    assert!(!results[3].1 && results[3].0.contains("ack"), "{results:?}");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].1.get("x-trace").unwrap(), "t1");
        assert_eq!(seen[1].0, "POST hello");
    }
    // The transcript keeps no credential-like header value, the admin token least.
    let text = run["transcript"].to_string();
    assert!(!text.contains(crate::helpers::ADMIN_TOKEN));
    assert!(!text.contains("model-made"));
    assert!(text.contains("[redacted]"));
    // Only the POST is a write, and it is audited.
    let audit = app
        .bearer_get_json("/console/v1/audit?kind=tool_write")
        .await;
    let events = audit["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{audit}");
    let detail = events[0]["detail"].as_str().unwrap();
    // The origin only: a path may be a credential (a webhook's).
    assert!(
        detail.contains("POST") && detail.contains(&served.url()),
        "{detail}"
    );
    assert!(!detail.contains("/alerts"), "{detail}");
}

/// A page on loopback whose `/away` redirects to `target` (302 for a GET, 307 for a
/// POST).
fn redirector(target: String) -> Served {
    let post_target = target.clone();
    let app = Router::new().route(
        "/away",
        get(move || async move { (axum::http::StatusCode::FOUND, [("location", target)]) }).post(
            move || async move {
                (
                    axum::http::StatusCode::TEMPORARY_REDIRECT,
                    [("location", post_target)],
                )
            },
        ),
    );
    Served::start("fetch-redirector", app).unwrap()
}

#[tokio::test]
async fn a_redirect_to_another_origin_gets_neither_the_models_headers_nor_its_body() {
    let fake = ScriptedModel::start().await;
    let app = app_on(&fake, true).await;
    let (served, seen) = page();
    let away = redirector(format!("{}/alerts", served.url()));
    fetch_agent(&app).await;
    fake.script(
        KEY,
        vec![
            fetch(json!({ "url": format!("{}/away", away.url()),
                          "headers": { "X-Trace": "t2", "Authorization": "Bearer model-made" } })),
            fetch(
                json!({ "url": format!("{}/away", away.url()), "method": "POST", "body": "hello" }),
            ),
            Answer::Ok {
                input: 1,
                output: 1,
            },
        ],
    );
    let run = fire(&app, "o1", "a1").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let results = fake.calls()[2].tool_results();
    // The GET followed the redirect and read the other page.
    assert!(
        !results[0].1 && results[0].0.contains("Alerts"),
        "{results:?}"
    );
    // The POST's redirect to another origin was not followed.
    assert!(
        results[1].1 && results[1].0.contains("another origin"),
        "{results:?}"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "only the GET reached the other origin");
    assert_eq!(seen[0].0, "GET");
    assert!(seen[0].1.get("authorization").is_none(), "{:?}", seen[0].1);
    assert!(seen[0].1.get("x-trace").is_none(), "{:?}", seen[0].1);
}
