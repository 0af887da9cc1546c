//! palyrad as a process: signals, exit status, and what it writes to its log.

use reqwest::header::COOKIE;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, session_cookie, start_child, stored_bytes};

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
    let body: Value = response.json().await.unwrap();
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "exit status {status:?}");
    assert!(log.contains("palyrad stopped"), "{log}");
    let daemon = start_child(&data, &[]).await;
    let session = http
        .get(format!("{}/console/v1/auth/session", daemon.base))
        .header(COOKIE, format!("palyra_console_session={cookie}"))
        .header("x-palyra-csrf-token", &csrf)
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
    // The link's page (GET), then its button's POST.
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
    let consumed = crate::helpers::redeem_link(&http, &url).await;
    assert_eq!(consumed.status, 200);
    let second_cookie = consumed.cookie.unwrap();
    let second_csrf = consumed.csrf.unwrap();
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
        ("handoff session csrf token", second_csrf.as_str()),
        ("handoff token", handoff_token.as_str()),
    ] {
        assert!(!log.contains(secret), "the {name} is in the log");
    }
}

/// A distinctive API key goes in once and then appears in no response, no error, no
/// log line at trace level, and not in the bytes of the database file.
#[tokio::test]
async fn a_planted_api_key_is_nowhere_but_sealed_in_the_vault() {
    let fake = crate::fakes::FakeProvider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let provider_url = fake.url();
    let daemon = start_child(
        &data,
        &[
            ("RUST_LOG", "trace"),
            (
                "PALYRA_PROVIDERS__OPENAI__API_BASE_URL",
                provider_url.as_str(),
            ),
        ],
    )
    .await;
    let planted = "PLANTED7f3a9c1e5b2d4680SECRET";
    let good = format!("good-{planted}");
    let bad = format!("bad-{planted}");
    let http = reqwest::Client::new();
    let base = daemon.base.clone();
    let mut seen = String::new();
    let create = |key: &str, name: &str| {
        http.post(format!("{base}/console/v1/auth/profiles"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({
                "profile_id": "planted", "provider": "openai", "profile_name": name,
                "credential": { "type": "api_key", "api_key": key }, "set_default": true
            }))
            .send()
    };
    let (status, _) = record(&mut seen, create(&good, "Planted").await.unwrap()).await;
    assert_eq!(status, 200);
    let (status, _) = record(&mut seen, create(&bad, "Planted").await.unwrap()).await;
    assert_eq!(status, 422);
    let (status, _) = record(&mut seen, create(&good, "").await.unwrap()).await;
    assert_eq!(status, 400);
    let (status, _) = record(
        &mut seen,
        http.post(format!("{base}/console/v1/auth/profiles"))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"provider": "openai", "credential": {{"api_key": "{good}"}}}}"#
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    for path in [
        "/console/v1/auth/profiles",
        "/console/v1/auth/profiles/planted",
        "/console/v1/auth/health",
        "/console/v1/auth/resolve?provider=openai",
    ] {
        let (status, _) = record(
            &mut seen,
            http.get(format!("{base}{path}"))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{path}");
    }
    for path in [
        "/console/v1/auth/profiles/planted/default",
        "/console/v1/vault/rotate-key",
    ] {
        let (status, _) = record(
            &mut seen,
            http.post(format!("{base}{path}"))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{path}");
    }
    assert!(
        seen.contains("\"hint\":\"…CRET\""),
        "the hint is there: {seen}"
    );
    assert!(!seen.contains(planted), "a response carries the key");
    let (status, log) = daemon.terminate().await;
    assert!(status.success());
    assert!(log.contains("TRACE"));
    assert!(!log.contains(planted), "the log carries the key");
    let db = stored_bytes(&data);
    // What is searched holds the vault's rows (their refs), so the search can fail.
    assert!(
        db.windows(8).any(|w| w == b"vault://"),
        "no vault rows stored"
    );
    let needle = planted.as_bytes();
    assert!(
        !db.windows(needle.len()).any(|w| w == needle),
        "the database holds the key in plaintext"
    );
    assert!(
        fake.keys_seen.lock().unwrap().contains(&good),
        "the provider did see it"
    );
}

/// Appends a response's headers and body to `seen`; returns the status and body.
async fn record(seen: &mut String, response: reqwest::Response) -> (reqwest::StatusCode, String) {
    let status = response.status();
    for (name, value) in response.headers() {
        seen.push_str(&format!("{name}: {value:?}\n"));
    }
    let body = response.text().await.unwrap();
    seen.push_str(&body);
    (status, body)
}

/// At trace level, a whole OAuth sign-in and a refresh leave no access token, refresh
/// token, authorization code, state or PKCE verifier in the log or the database file.
#[tokio::test]
async fn oauth_secrets_are_nowhere_in_the_log() {
    let fake = crate::fakes::FakeOAuth::start(3600).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let base_url = fake.url();
    let authorize = format!("{base_url}/authorize");
    let token = format!("{base_url}/token");
    // The scopes (a list, which the environment cannot give) in a config file:
    // offline_access is what gets a refresh token from the strict fake.
    let config = dir.path().join("palyrad.toml");
    std::fs::write(
        &config,
        "[providers.custom.acme]\nscopes = [\"openid\", \"offline_access\"]\n",
    )
    .unwrap();
    let config = config.display().to_string();
    let daemon = start_child(
        &data,
        &[
            ("PALYRA_CONFIG", config.as_str()),
            ("RUST_LOG", "trace"),
            (
                "PALYRA_PROVIDERS__CUSTOM__ACME__API_BASE_URL",
                base_url.as_str(),
            ),
            (
                "PALYRA_PROVIDERS__CUSTOM__ACME__AUTHORIZATION_ENDPOINT",
                authorize.as_str(),
            ),
            (
                "PALYRA_PROVIDERS__CUSTOM__ACME__TOKEN_ENDPOINT",
                token.as_str(),
            ),
            ("PALYRA_PROVIDERS__CUSTOM__ACME__CLIENT_ID", "palyra-trace"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let base = daemon.base.clone();
    let started: Value = http
        .post(format!(
            "{base}/console/v1/auth/providers/custom:acme/bootstrap"
        ))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "profile_name": "Acme", "profile_id": "acme.trace" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = started["authorization_url"].as_str().unwrap().to_owned();
    let state = url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let (code, redirect) = fake.authorize(&url);
    assert_eq!(http.get(&redirect).send().await.unwrap().status(), 200);
    let refreshed = http
        .post(format!(
            "{base}/console/v1/auth/profiles/acme.trace/refresh"
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200);
    let (status, log) = daemon.terminate().await;
    assert!(status.success());
    assert!(log.contains("TRACE"));
    assert!(log.contains("OAuth token refreshed"), "the flow really ran");
    for (name, secret) in [
        ("access token", "ACCESS-TOKEN"),
        ("refresh token", "REFRESH-TOKEN"),
        ("authorization code", code.as_str()),
        ("state", state.as_str()),
    ] {
        assert!(!log.contains(secret), "the {name} is in the log");
    }
    let db = stored_bytes(&data);
    // What is searched holds the vault's rows (their refs), so the search can fail.
    assert!(
        db.windows(8).any(|w| w == b"vault://"),
        "no vault rows stored"
    );
    for secret in [
        b"ACCESS-TOKEN".as_slice(),
        b"REFRESH-TOKEN".as_slice(),
        state.as_bytes(),
    ] {
        assert!(
            !db.windows(secret.len()).any(|w| w == secret),
            "a token is in the database in plaintext"
        );
    }
    // The verifier never left the daemon except to the token endpoint; the fake saw it
    // hash to the challenge.
    fake.snapshot(|s| assert_eq!(s.pkce_failures, 0));
}
