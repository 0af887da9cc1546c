//! Browser handoff: minting, single use, expiry and redirect validation.

use std::time::Duration;

use reqwest::header::{CACHE_CONTROL, COOKIE, LOCATION};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, error_code, session_cookie, spawn_app, spawn_app_with};

async fn mint(app: &crate::helpers::TestApp, body: Value) -> Value {
    let response = app.mint_handoff(body).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn token_of(handoff_url: &str) -> String {
    handoff_url.split_once("token=").unwrap().1.to_owned()
}

#[tokio::test]
async fn a_handoff_link_logs_a_browser_in_once() {
    let app = spawn_app().await;
    let handoff = mint(&app, json!({ "redirect_path": "/objectives?tab=active" })).await;
    let url = handoff["handoff_url"].as_str().unwrap();
    let expected_prefix = format!(
        "http://127.0.0.1:{}/console/v1/auth/browser-handoff/consume?token=",
        app.addr.port()
    );
    assert!(url.starts_with(&expected_prefix), "{url}");
    assert_eq!(token_of(url).len(), 43);
    assert!(handoff["expires_at"].is_string());

    let response = app.http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()[LOCATION], "/objectives?tab=active");
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    let cookie = session_cookie(response.headers()).expect("cookie set");
    let session = app
        .http
        .get(app.url("/console/v1/auth/session"))
        .header(COOKIE, format!("palyra_console_session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), 200);
    let body: Value = session.json().await.unwrap();
    assert_eq!(body["principal"], "root");
    assert_eq!(body["device_id"], "browser-handoff");

    // Single use, also across a restart.
    let again = app.http.get(url).send().await.unwrap();
    assert_eq!(again.status(), 401);
    assert!(session_cookie(again.headers()).is_none());
    assert_eq!(error_code(again).await, "handoff_rejected");
    let token = token_of(url);
    let app = app.restart().await;
    let consume = app.url(&format!(
        "/console/v1/auth/browser-handoff/consume?token={token}"
    ));
    assert_eq!(app.http.get(&consume).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn the_default_redirect_is_the_root_and_a_session_minted_handoff_keeps_the_principal() {
    let app = spawn_app().await;
    let login = {
        let response = app
            .http
            .post(app.url("/console/v1/auth/login"))
            .json(&json!({ "admin_token": ADMIN_TOKEN, "device_id": "carol-laptop" }))
            .send()
            .await
            .unwrap();
        let cookie = session_cookie(response.headers()).unwrap();
        let body: Value = response.json().await.unwrap();
        (cookie, body["csrf_token"].as_str().unwrap().to_owned())
    };
    // An empty body is allowed.
    let response = app
        .http
        .post(app.url("/console/v1/auth/browser-handoff"))
        .header(COOKIE, format!("palyra_console_session={}", login.0))
        .header("x-palyra-csrf-token", &login.1)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let handoff: Value = response.json().await.unwrap();
    let consumed = app
        .http
        .get(handoff["handoff_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(consumed.status(), 303);
    assert_eq!(consumed.headers()[LOCATION], "/");
    let cookie = session_cookie(consumed.headers()).unwrap();
    let body: Value = app
        .http
        .get(app.url("/console/v1/auth/session"))
        .header(COOKIE, format!("palyra_console_session={cookie}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["principal"], "root");
}

#[tokio::test]
async fn concurrent_consumes_of_one_token_create_one_session() {
    let app = spawn_app().await;
    let handoff = mint(&app, json!({})).await;
    let url = handoff["handoff_url"].as_str().unwrap().to_owned();
    let results = futures::future::join_all((0..10).map(|_| app.http.get(&url).send())).await;
    let statuses: Vec<u16> = results
        .iter()
        .map(|r| r.as_ref().unwrap().status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 303).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        9,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn script_clients_consume_with_post() {
    let app = spawn_app().await;
    let handoff = mint(&app, json!({})).await;
    let token = token_of(handoff["handoff_url"].as_str().unwrap());
    let response = app
        .http
        .post(app.url("/console/v1/auth/browser-handoff/session"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookie = session_cookie(response.headers()).unwrap();
    let body: Value = response.json().await.unwrap();
    assert!(body["csrf_token"].is_string());
    assert_eq!(app.session_status(&cookie).await, 200);
    let again = app
        .http
        .post(app.url("/console/v1/auth/browser-handoff/session"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 401);
}

#[tokio::test]
async fn expired_and_unknown_tokens_create_nothing() {
    let app = spawn_app_with(|s| s.handoff.ttl_s = 1).await;
    let handoff = mint(&app, json!({})).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let expired = app
        .http
        .get(handoff["handoff_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), 401);
    assert!(session_cookie(expired.headers()).is_none());
    for query in ["", "?token=", "?token=unknown"] {
        let response = app
            .http
            .get(app.url(&format!("/console/v1/auth/browser-handoff/consume{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{query}");
        assert!(session_cookie(response.headers()).is_none());
    }
}

#[tokio::test]
async fn redirect_paths_must_stay_on_this_origin() {
    let app = spawn_app().await;
    for bad in [
        "https://evil.example/",
        "//evil.example/",
        "evil",
        "/a\\b",
        "/\\evil.example",
        "/a\r\nSet-Cookie: x=y",
        "/a\nb",
        "",
    ] {
        let response = app.mint_handoff(json!({ "redirect_path": bad })).await;
        assert_eq!(response.status(), 400, "{bad:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_field");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("redirect_path")
        );
    }
    for good in ["/", "/agents/a-1", "/objectives?x=1#top"] {
        let response = app.mint_handoff(json!({ "redirect_path": good })).await;
        assert_eq!(response.status(), 200, "{good:?}");
    }
}

#[tokio::test]
async fn a_head_request_does_not_use_up_the_link() {
    let app = spawn_app().await;
    let handoff = mint(&app, json!({})).await;
    let url = handoff["handoff_url"].as_str().unwrap();
    let head = app.http.head(url).send().await.unwrap();
    assert_eq!(head.status(), 405);
    assert!(session_cookie(head.headers()).is_none());
    assert_eq!(app.http.get(url).send().await.unwrap().status(), 303);
}
