//! palyrad as a process: signals, exit status, and what it writes to its log.

use reqwest::header::COOKIE;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, session_cookie, start_child};

#[tokio::test]
async fn sigterm_stops_the_daemon_with_exit_0_and_keeps_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let daemon = start_child(&data, &[]).await;
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{}/console/v1/auth/login", daemon.base))
        .json(&json!({ "admin_token": ADMIN_TOKEN }))
        .send()
        .await
        .unwrap();
    let cookie = session_cookie(response.headers()).unwrap();
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "exit status {status:?}");
    assert!(log.contains("palyrad stopped"), "{log}");
    let daemon = start_child(&data, &[]).await;
    let session = http
        .get(format!("{}/console/v1/auth/session", daemon.base))
        .header(COOKIE, format!("palyra_console_session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), 200);
}

/// At trace level, a full login, session, handoff and logout round leaves no admin
/// token, session cookie, CSRF token or handoff token in the daemon's log.
#[tokio::test]
async fn secrets_never_reach_the_log_even_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_child(&dir.path().join("data"), &[("RUST_LOG", "trace")]).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = &daemon.base;
    let response = http
        .post(format!("{base}/console/v1/auth/login"))
        .json(&json!({ "admin_token": ADMIN_TOKEN }))
        .send()
        .await
        .unwrap();
    let cookie = session_cookie(response.headers()).unwrap();
    let body: Value = response.json().await.unwrap();
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    let handoff: Value = http
        .post(format!("{base}/console/v1/auth/browser-handoff"))
        .header(COOKIE, format!("palyra_console_session={cookie}"))
        .header("x-palyra-csrf-token", &csrf)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = handoff["handoff_url"].as_str().unwrap().to_owned();
    let handoff_token = url.split_once("token=").unwrap().1.to_owned();
    let consumed = http.get(&url).send().await.unwrap();
    assert_eq!(consumed.status(), 303);
    let second_cookie = session_cookie(consumed.headers()).unwrap();
    // A failed login with a near-miss token must not echo it either.
    let wrong = format!("{ADMIN_TOKEN}-wrong");
    let failed = http
        .post(format!("{base}/console/v1/auth/login"))
        .json(&json!({ "admin_token": wrong }))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 401);
    let logout = http
        .post(format!("{base}/console/v1/auth/logout"))
        .header(COOKIE, format!("palyra_console_session={cookie}"))
        .header("x-palyra-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    let (status, log) = daemon.terminate().await;
    assert!(status.success());
    assert!(log.contains("TRACE"), "the log really is at trace level");
    assert!(
        log.contains("browser-handoff/consume"),
        "requests are logged by path"
    );
    for (name, secret) in [
        ("admin token", ADMIN_TOKEN),
        ("session cookie", cookie.as_str()),
        ("handoff session cookie", second_cookie.as_str()),
        ("csrf token", csrf.as_str()),
        ("handoff token", handoff_token.as_str()),
    ] {
        assert!(!log.contains(secret), "the {name} is in the log");
    }
}
