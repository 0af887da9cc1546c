//! OAuth sign-in with PKCE and the background refresher, against a fake OAuth server
//! that checks the verifier against the challenge and counts redemptions.

use std::time::Duration;

use palyra::settings::{ProviderConfig, Validation};
use reqwest::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use serde_json::{Value, json};

use crate::fakes::{FakeOAuth, ForcedAnswer};
use crate::helpers::{ADMIN_TOKEN, TestApp, spawn_app_with};

pub(crate) const PROVIDER: &str = "custom:acme";

pub(crate) async fn app_with_oauth(fake: &FakeOAuth, lead_s: u64) -> TestApp {
    let base = fake.url();
    spawn_app_with(move |s| {
        s.providers
            .custom
            .insert("acme".into(), acme_provider(&base));
        s.oauth.refresh_lead_s = lead_s;
    })
    .await
}

/// The fake OAuth server as the `custom:acme` provider.
pub(crate) fn acme_provider(base: &str) -> ProviderConfig {
    ProviderConfig {
        api_base_url: base.to_owned(),
        api_style: None,
        authorization_endpoint: Some(format!("{base}/authorize")),
        token_endpoint: Some(format!("{base}/token")),
        revocation_endpoint: Some(format!("{base}/revoke")),
        client_id: Some("palyra-test".into()),
        scopes: vec!["openid".into(), "offline_access".into()],
        validation: Validation::Models,
        backoff_base_ms: 200,
        backoff_cap_ms: 1_000,
        ..ProviderConfig::default()
    }
}

async fn post(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.bearer_post(path, body).await
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    app.bearer_get_json(path).await
}

/// A manual refresh; returns the report.
pub(crate) async fn refresh(app: &TestApp, profile_id: &str) -> Value {
    let response = post(
        app,
        &format!("/console/v1/auth/profiles/{profile_id}/refresh"),
        json!({}),
    )
    .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

pub(crate) async fn bootstrap(app: &TestApp, profile_id: &str) -> Value {
    let response = post(
        app,
        &format!("/console/v1/auth/providers/{PROVIDER}/bootstrap"),
        json!({ "profile_name": "Acme", "profile_id": profile_id, "set_default": true }),
    )
    .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// A complete sign-in; returns the profile.
pub(crate) async fn sign_in(app: &TestApp, fake: &FakeOAuth, profile_id: &str) -> Value {
    let started = bootstrap(app, profile_id).await;
    let (_, redirect) = fake.authorize(started["authorization_url"].as_str().unwrap());
    let page = app.http.get(&redirect).send().await.unwrap();
    assert_eq!(page.status(), 200, "{}", page.text().await.unwrap());
    get_json(app, &format!("/console/v1/auth/profiles/{profile_id}")).await
}

#[tokio::test]
async fn a_full_sign_in_stores_the_tokens_sealed_and_the_profile() {
    let fake = FakeOAuth::start(3600).await;
    let app = app_with_oauth(&fake, 300).await;
    let started = bootstrap(&app, "acme.main").await;
    let url = started["authorization_url"].as_str().unwrap();
    let parsed = url::Url::parse(url).unwrap();
    let q: std::collections::HashMap<String, String> = parsed.query_pairs().into_owned().collect();
    assert_eq!(
        q["redirect_uri"],
        format!(
            "http://127.0.0.1:{}/console/v1/auth/providers/custom:acme/callback",
            app.addr.port()
        )
    );
    assert_eq!(q["scope"], "openid offline_access");
    assert_ne!(
        q["state"],
        started["attempt_id"].as_str().unwrap(),
        "the state is not the attempt id"
    );
    let attempt = started["attempt_id"].as_str().unwrap().to_owned();
    let state_path =
        format!("/console/v1/auth/providers/{PROVIDER}/callback-state?attempt_id={attempt}");
    assert_eq!(get_json(&app, &state_path).await["state"], "pending");

    let (_, redirect) = fake.authorize(url);
    let page = app.http.get(&redirect).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = page.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'nonce-"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("Signed in") && html.contains("acme.main"));
    assert!(html.contains("window.opener.postMessage"));
    assert!(
        !html.contains("at-") && !html.contains("rt-"),
        "no token in the page"
    );

    let state = get_json(&app, &state_path).await;
    assert_eq!(state["state"], "succeeded");
    assert_eq!(state["profile_id"], "acme.main");
    let profile = get_json(&app, "/console/v1/auth/profiles/acme.main").await;
    let text = profile.to_string();
    assert!(
        !text.contains("at-") && !text.contains("rt-"),
        "no token in the record: {text}"
    );
    assert_eq!(profile["is_default"], true);
    let credential = &profile["credential"];
    assert_eq!(credential["type"], "oauth");
    assert_eq!(
        credential["access_token_vault_ref"],
        "vault://global/auth.acme.main.access_token"
    );
    assert_eq!(
        credential["refresh_token_vault_ref"],
        "vault://global/auth.acme.main.refresh_token"
    );
    assert_eq!(credential["client_id"], "palyra-test");
    assert_eq!(credential["scopes"], json!(["openid", "offline_access"]));
    assert!(credential["expires_at"].is_string());
    let health = get_json(&app, "/console/v1/auth/health").await;
    assert_eq!(health["counts"]["ok"], 1, "{health}");
    fake.snapshot(|s| {
        assert_eq!(s.code_redemptions, 1);
        assert_eq!(s.pkce_failures, 0, "the verifier hashed to the challenge");
    });
}

#[tokio::test]
async fn unknown_reused_or_refused_states_store_nothing() {
    let fake = FakeOAuth::start(3600).await;
    let app = app_with_oauth(&fake, 300).await;
    let callback = app.url(&format!("/console/v1/auth/providers/{PROVIDER}/callback"));
    let unknown = app
        .http
        .get(format!(
            "{callback}?code=code-1&state=not-a-state-of-ours-at-all"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
    assert!(
        unknown
            .text()
            .await
            .unwrap()
            .contains("unknown, expired or already used")
    );
    let no_state = app.http.get(&callback).send().await.unwrap();
    assert_eq!(no_state.status(), 400);

    // Reused: the second visit of the same redirect is refused, the code redeemed once.
    let started = bootstrap(&app, "acme.once").await;
    let (_, redirect) = fake.authorize(started["authorization_url"].as_str().unwrap());
    assert_eq!(app.http.get(&redirect).send().await.unwrap().status(), 200);
    assert_eq!(app.http.get(&redirect).send().await.unwrap().status(), 400);
    fake.snapshot(|s| assert_eq!(s.code_redemptions, 1));

    // A used code under a fresh state: the provider refuses it, the attempt fails.
    let first = bootstrap(&app, "acme.code1").await;
    let second = bootstrap(&app, "acme.code2").await;
    let (code, redirect) = fake.authorize(first["authorization_url"].as_str().unwrap());
    assert_eq!(app.http.get(&redirect).send().await.unwrap().status(), 200);
    let url2 = url::Url::parse(second["authorization_url"].as_str().unwrap()).unwrap();
    let state2 = url2
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let replay = app
        .http
        .get(format!("{callback}?code={code}&state={state2}"))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 400);
    assert!(replay.text().await.unwrap().contains("invalid_grant"));
    let missing = app
        .http
        .get(app.url("/console/v1/auth/profiles/acme.code2"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        missing.status(),
        404,
        "nothing stored for the replayed code"
    );

    // Refused by the provider: the attempt records the failure.
    let started = bootstrap(&app, "acme.refused").await;
    let url = url::Url::parse(started["authorization_url"].as_str().unwrap()).unwrap();
    let state = url
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let refused = app
        .http
        .get(format!("{callback}?error=access_denied&state={state}"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let attempt = started["attempt_id"].as_str().unwrap();
    let outcome = get_json(
        &app,
        &format!("/console/v1/auth/providers/{PROVIDER}/callback-state?attempt_id={attempt}"),
    )
    .await;
    assert_eq!(outcome["state"], "failed");
    assert!(
        outcome["reason"]
            .as_str()
            .unwrap()
            .contains("access_denied")
    );
    let missing = app
        .http
        .get(app.url("/console/v1/auth/profiles/acme.refused"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    // A provider that is not configured for OAuth cannot start a sign-in.
    let unconfigured = post(
        &app,
        "/console/v1/auth/providers/anthropic/bootstrap",
        json!({ "profile_name": "x" }),
    )
    .await;
    assert_eq!(unconfigured.status(), 400);
}

#[tokio::test]
async fn a_sign_in_survives_a_restart_in_the_middle() {
    let fake = FakeOAuth::start(3600).await;
    let app = app_with_oauth(&fake, 300).await;
    let started = bootstrap(&app, "acme.restart").await;
    let app = app.restart().await;
    let (_, redirect) = fake.authorize(started["authorization_url"].as_str().unwrap());
    // Tests bind port 0, so the restarted daemon listens elsewhere: the browser's
    // redirect is sent to the new port. The attempt kept its redirect_uri, which the
    // exchange must repeat exactly.
    let redirect = url::Url::parse(&redirect).unwrap();
    let relocated = app.url(&format!(
        "{}?{}",
        redirect.path(),
        redirect.query().unwrap()
    ));
    assert_eq!(app.http.get(&relocated).send().await.unwrap().status(), 200);
    let profile = get_json(&app, "/console/v1/auth/profiles/acme.restart").await;
    assert_eq!(profile["credential"]["type"], "oauth");
    fake.snapshot(|s| {
        assert_eq!(s.code_redemptions, 1);
        assert_eq!(
            s.pkce_failures, 0,
            "the verifier came back from the vault after the restart"
        );
    });
}

#[tokio::test]
async fn the_headless_flow_completes_from_a_pasted_redirect() {
    let fake = FakeOAuth::start(3600).await;
    let app = app_with_oauth(&fake, 300).await;
    let started = bootstrap(&app, "acme.headless").await;
    let (_, redirect) = fake.authorize(started["authorization_url"].as_str().unwrap());
    let response = post(
        &app,
        &format!("/console/v1/auth/providers/{PROVIDER}/manual-callback"),
        json!({ "redirect_url": redirect }),
    )
    .await;
    assert_eq!(response.status(), 200);
    let outcome: Value = response.json().await.unwrap();
    assert_eq!(outcome["state"], "succeeded");
    assert_eq!(outcome["profile_id"], "acme.headless");
    let bad = post(
        &app,
        &format!("/console/v1/auth/providers/{PROVIDER}/manual-callback"),
        json!({ "redirect_url": "not a url" }),
    )
    .await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn a_transient_failure_backs_off_then_the_refresher_succeeds() {
    let fake = FakeOAuth::start(3600).await;
    let app = app_with_oauth(&fake, 300).await;
    sign_in(&app, &fake, "acme.flaky").await;
    fake.force(ForcedAnswer::Status(500, "server_error"));
    let report = refresh(&app, "acme.flaky").await;
    assert_eq!(report["outcome"], "transient_failure");
    let state = &report["profile"]["credential"]["refresh_state"];
    assert_eq!(state["failure_count"], 1);
    assert!(
        state["last_error"].as_str().unwrap().contains("500"),
        "{state}"
    );
    assert!(state["next_attempt_at"].is_string());
    let health = get_json(&app, "/console/v1/auth/health").await;
    assert_eq!(health["profiles"][0]["state"], "cooling_down");
    // The refresher retries on its own at next_attempt_at (100 to 200 ms here).
    let mut recovered = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let profile = get_json(&app, "/console/v1/auth/profiles/acme.flaky").await;
        if profile["credential"]["refresh_state"]["failure_count"] == 0 {
            recovered = true;
            break;
        }
    }
    assert!(recovered, "the refresher retried after the backoff");
    fake.snapshot(|s| assert_eq!(s.refresh_redemptions, 2));
}

#[tokio::test]
async fn invalid_grant_needs_reauth_and_stops_attempts() {
    let fake = FakeOAuth::start(3600).await;
    let app = app_with_oauth(&fake, 300).await;
    sign_in(&app, &fake, "acme.revoked").await;
    fake.force(ForcedAnswer::Status(400, "invalid_grant"));
    let report = refresh(&app, "acme.revoked").await;
    assert_eq!(report["outcome"], "permanent_failure");
    assert!(report["reason"].as_str().unwrap().contains("invalid_grant"));
    let health = get_json(&app, "/console/v1/auth/health").await;
    assert_eq!(health["profiles"][0]["state"], "needs_reauth");
    assert_eq!(health["counts"]["needs_reauth"], 1);
    let again = post(
        &app,
        "/console/v1/auth/profiles/acme.revoked/refresh",
        json!({}),
    )
    .await;
    assert_eq!(again.status(), 409);
    fake.snapshot(|s| {
        assert_eq!(
            s.refresh_redemptions, 1,
            "no attempt after a permanent failure"
        )
    });
    // A new sign-in clears it.
    sign_in(&app, &fake, "acme.revoked").await;
    let health = get_json(&app, "/console/v1/auth/health").await;
    assert_eq!(health["profiles"][0]["state"], "ok");
}

#[tokio::test]
async fn a_rotated_refresh_token_is_used_after_a_restart() {
    let fake = FakeOAuth::start(3600).await;
    let app = app_with_oauth(&fake, 300).await;
    sign_in(&app, &fake, "acme.rotate").await;
    let first = refresh(&app, "acme.rotate").await;
    assert_eq!(first["outcome"], "succeeded");
    let app = app.restart().await;
    // The fake accepts only the newest refresh token: the rotated one must be stored.
    let second = refresh(&app, "acme.rotate").await;
    assert_eq!(second["outcome"], "succeeded", "{second}");
    fake.snapshot(|s| assert_eq!(s.refresh_redemptions, 2));
}

#[tokio::test]
async fn fifty_concurrent_manual_refreshes_redeem_once() {
    let fake = FakeOAuth::start(3600).await;
    let app = app_with_oauth(&fake, 300).await;
    sign_in(&app, &fake, "acme.busy").await;
    fake.state.lock().unwrap().delay_ms = 300;
    let reports = futures::future::join_all((0..50).map(|_| {
        post(
            &app,
            "/console/v1/auth/profiles/acme.busy/refresh",
            json!({}),
        )
    }))
    .await;
    for response in reports {
        assert_eq!(response.status(), 200);
        let report: Value = response.json().await.unwrap();
        assert_eq!(report["outcome"], "succeeded");
    }
    fake.snapshot(|s| assert_eq!(s.refresh_redemptions, 1, "single flight"));
}

#[tokio::test]
async fn a_short_lived_token_is_refreshed_without_any_api_call() {
    let fake = FakeOAuth::start(2).await;
    let app = app_with_oauth(&fake, 1).await;
    sign_in(&app, &fake, "acme.short").await;
    let mut refreshed = 0;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        refreshed = fake.snapshot(|s| s.refresh_redemptions);
        if refreshed >= 1 {
            break;
        }
    }
    assert!(refreshed >= 1, "the refresher refreshed by itself");
    let profile = get_json(&app, "/console/v1/auth/profiles/acme.short").await;
    assert!(profile["credential"]["refresh_state"]["last_success_at"].is_string());
}

#[tokio::test]
async fn deleting_an_oauth_profile_revokes_its_refresh_token() {
    let fake = FakeOAuth::start(3600).await;
    let app = app_with_oauth(&fake, 300).await;
    sign_in(&app, &fake, "acme.gone").await;
    let response = app
        .http
        .delete(app.url("/console/v1/auth/profiles/acme.gone"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    fake.snapshot(|s| assert_eq!(s.revoked.len(), 1));
    let health = get_json(&app, "/console/v1/auth/health").await;
    assert_eq!(health["profiles"], json!([]));
}
