//! The API as a whole: error shapes, limits, the route table and the OpenAPI document.

use palyra_http::route_table;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, error_code, spawn_app};

#[tokio::test]
async fn probes_answer() {
    let app = spawn_app().await;
    let health: Value = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "alive");
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_are_json_errors() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(app.url("/console/v1/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(error_code(response).await, "not_found");
    let response = app
        .http
        .delete(app.url("/console/v1/auth/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(error_code(response).await, "method_not_allowed");
}

#[tokio::test]
async fn malformed_bodies_are_400_naming_the_field() {
    let app = spawn_app().await;
    let login = app.url("/console/v1/auth/login");
    let send = |body: &'static str| {
        app.http
            .post(&login)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
    };
    let response = send("{not json").await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "invalid_json");

    let response = send(r#"{"admin_token": 5}"#).await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("admin_token"),
        "{body}"
    );

    let response = send(r#"{"admin_token": "x", "principal": ["a"]}"#)
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("principal"),
        "{body}"
    );

    let response = send(r#"{}"#).await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("admin_token"),
        "{body}"
    );

    let response = send(r#"{"admin_token": "x", "extra": 1}"#).await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("extra"),
        "{body}"
    );

    let response = app
        .http
        .post(&login)
        .header(CONTENT_TYPE, "text/plain")
        .body(format!(r#"{{"admin_token": "{ADMIN_TOKEN}"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    assert_eq!(error_code(response).await, "unsupported_media_type");
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let app = spawn_app().await;
    let big = json!({ "admin_token": "x".repeat(70 * 1024) });
    let response = app
        .http
        .post(app.url("/console/v1/auth/login"))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(error_code(response).await, "payload_too_large");
    // Also when the body arrives without a length (chunked).
    let stream = futures::stream::iter((0..80).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));
    let response = app
        .http
        .post(app.url("/console/v1/auth/browser-handoff"))
        .bearer_auth(ADMIN_TOKEN)
        .header(CONTENT_TYPE, "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}

/// Every route of the router is in the OpenAPI document with its method, and every
/// route in the table is really routed.
#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(app.url("/console/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let table = route_table();
    assert!(table.len() >= 9);
    for route in &table {
        let method = route.method.as_str().to_ascii_lowercase();
        assert!(
            doc["paths"][route.path][&method].is_object(),
            "{} {} is missing from openapi.json",
            route.method,
            route.path
        );
        let probe = app
            .http
            .request(route.method.clone(), app.url(route.path))
            .send()
            .await
            .unwrap();
        assert!(
            probe.status() != 404 && probe.status() != 405,
            "{} {} is not routed: {}",
            route.method,
            route.path,
            probe.status()
        );
    }
    let documented: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|ops| ops.as_object().unwrap().len())
        .sum();
    assert_eq!(
        documented,
        table.len(),
        "the document lists no route the router lacks"
    );
}
