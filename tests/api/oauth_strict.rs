//! OAuth against a fake as strict as the specifications: OpenID Connect's
//! `prompt=consent` for `offline_access`, provider parameters, `iss` (RFC 9207),
//! errors shown to the operator, client authentication, JSON bodies, tokens without a
//! refresh token or an expiry, Retry-After, the size cap, HEAD on the callback and
//! the public base URL.

use std::time::Duration;

use palyra::settings::{ClientAuth, ProviderConfig, TokenRequestFormat};
use serde_json::{Value, json};

use crate::fakes::{FakeOAuth, ForcedAnswer};
use crate::helpers::{TestApp, spawn_app_with};
use crate::oauth::{PROVIDER, acme_provider, bootstrap, refresh, sign_in};

/// A daemon whose `custom:acme` provider is the fake, as `tweak` changes it.
async fn app_with(
    fake: &FakeOAuth,
    tweak: impl FnOnce(&mut ProviderConfig) + Send + 'static,
) -> TestApp {
    let base = fake.url();
    spawn_app_with(move |s| {
        let mut provider = acme_provider(&base);
        tweak(&mut provider);
        s.providers.custom.insert("acme".into(), provider);
        s.oauth.refresh_lead_s = 300;
    })
    .await
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    app.bearer_get_json(path).await
}

/// The health entry of one profile.
async fn health_of(app: &TestApp, profile_id: &str) -> Value {
    let health = get_json(app, "/console/v1/auth/health").await;
    health["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["profile_id"] == profile_id)
        .cloned()
        .unwrap_or_else(|| panic!("no health for {profile_id}: {health}"))
}

/// The browser's part of a sign-in; returns the callback page's status and text.
async fn sign_in_page(app: &TestApp, fake: &FakeOAuth, profile_id: &str) -> (u16, String) {
    let started = bootstrap(app, profile_id).await;
    let (_, redirect) = fake.authorize(started["authorization_url"].as_str().unwrap());
    let page = app.http.get(&redirect).send().await.unwrap();
    (page.status().as_u16(), page.text().await.unwrap())
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..300 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn offline_access_is_asked_with_prompt_consent_and_gets_a_refresh_token() {
    let fake = FakeOAuth::start(3600).await;
    let app = app_with(&fake, |_| {}).await;
    let profile = sign_in(&app, &fake, "acme.consent").await;
    let q = fake.snapshot(|s| s.last_authorization.clone().unwrap());
    assert_eq!(q["prompt"], "consent", "{q:?}");
    assert_eq!(q["scope"], "openid offline_access");
    assert_eq!(profile["credential"]["refreshable"], true);
    assert_eq!(health_of(&app, "acme.consent").await["refreshable"], true);
    let report = refresh(&app, "acme.consent").await;
    assert_eq!(report["outcome"], "succeeded", "{report}");
}

#[tokio::test]
async fn a_sign_in_without_a_refresh_token_is_stored_not_refreshable_and_reported() {
    let fake = FakeOAuth::start(3600).await;
    // The operator's own prompt replaces consent: the strict fake then grants no
    // refresh token, as a certified provider does.
    let app = app_with(&fake, |p| {
        p.authorization_params
            .insert("prompt".into(), "login".into());
    })
    .await;
    let (status, page) = sign_in_page(&app, &fake, "acme.short").await;
    assert_eq!(status, 200, "{page}");
    let profile = get_json(&app, "/console/v1/auth/profiles/acme.short").await;
    assert_eq!(profile["credential"]["refreshable"], false);
    assert!(profile["credential"]["expires_at"].is_string());
    let health = health_of(&app, "acme.short").await;
    assert_eq!(health["refreshable"], false);
    // An hour left and nothing will refresh it: the operator is warned now.
    assert_eq!(health["state"], "expiring", "{health}");
    let advice = health["advice"].as_str().unwrap();
    assert!(advice.contains("sign in again before"), "{advice}");
    let manual = app
        .bearer_post("/console/v1/auth/profiles/acme.short/refresh", json!({}))
        .await;
    assert_eq!(manual.status(), 409);
    let body: Value = manual.json().await.unwrap();
    assert_eq!(body["error"]["code"], "refresh_refused", "{body}");
    fake.snapshot(|s| assert_eq!(s.refresh_redemptions, 0, "nothing was sent to refresh"));
    // The profile's bearer still works until the expiry: the daemon did not refuse the
    // whole sign-in as it used to.
    assert_eq!(
        get_json(&app, "/console/v1/auth/health").await["counts"]["missing"],
        0
    );
}

#[tokio::test]
async fn authorization_params_audience_and_resource_reach_the_provider() {
    let fake = FakeOAuth::start(3600).await;
    let app = app_with(&fake, |p| {
        p.authorization_params
            .insert("access_type".into(), "offline".into());
        p.audience = Some("https://api.acme.example".into());
        p.resource = Some("https://api.acme.example/v1".into());
    })
    .await;
    sign_in(&app, &fake, "acme.params").await;
    let q = fake.snapshot(|s| s.last_authorization.clone().unwrap());
    assert_eq!(q["access_type"], "offline");
    assert_eq!(q["audience"], "https://api.acme.example");
    assert_eq!(q["resource"], "https://api.acme.example/v1");
    assert_eq!(q["prompt"], "consent");
    fake.snapshot(|s| {
        assert_eq!(
            s.token_resources,
            [Some("https://api.acme.example/v1".to_owned())]
        );
    });
}

#[tokio::test]
async fn the_callback_checks_iss_and_shows_the_providers_error() {
    let fake = FakeOAuth::start(3600).await;
    let app = app_with(&fake, |_| {}).await;
    // The fake names itself as issuer: the origin of its authorization endpoint.
    let origin = url::Url::parse(&fake.url())
        .unwrap()
        .origin()
        .ascii_serialization();
    fake.configure(|s| s.issuer = Some(origin));
    let (status, page) = sign_in_page(&app, &fake, "acme.iss").await;
    assert_eq!(status, 200, "{page}");

    // Another authorization server's answer (a mix-up): refused, nothing redeemed.
    fake.configure(|s| s.issuer = Some("https://evil.example".into()));
    let before = fake.snapshot(|s| s.code_redemptions);
    let (status, page) = sign_in_page(&app, &fake, "acme.mixup").await;
    assert_eq!(status, 400);
    assert!(
        page.contains("iss") && page.contains("evil.example"),
        "{page}"
    );
    assert_eq!(fake.snapshot(|s| s.code_redemptions), before);
    let missing = app
        .http
        .get(app.url("/console/v1/auth/profiles/acme.mixup"))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // A refusal with a description: the operator reads why.
    let started = bootstrap(&app, "acme.denied").await;
    let url = url::Url::parse(started["authorization_url"].as_str().unwrap()).unwrap();
    let state = url
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let callback = app.url(&format!("/console/v1/auth/providers/{PROVIDER}/callback"));
    let page = app
        .http
        .get(&callback)
        .query(&[
            ("state", state.as_str()),
            ("error", "access_denied"),
            ("error_description", "The user said <no>"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 400);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("access_denied") && html.contains("The user said &lt;no&gt;"),
        "{html}"
    );
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
            .contains("access_denied: The user said <no>"),
        "{outcome}"
    );
}

#[tokio::test]
async fn head_on_the_callback_is_refused_and_leaves_the_state_usable() {
    let fake = FakeOAuth::start(3600).await;
    let app = app_with(&fake, |_| {}).await;
    let started = bootstrap(&app, "acme.head").await;
    let (_, redirect) = fake.authorize(started["authorization_url"].as_str().unwrap());
    let head = app.http.head(&redirect).send().await.unwrap();
    assert_eq!(head.status(), 405);
    let page = app.http.get(&redirect).send().await.unwrap();
    assert_eq!(page.status(), 200, "the HEAD used nothing up");
}

#[tokio::test]
async fn client_secret_post_sends_the_secret_in_the_body() {
    let fake = FakeOAuth::start(3600).await;
    let secret = "post-secret-5f1c0a9e-not-in-logs";
    fake.configure(|s| s.client_auth = crate::fakes::FakeClientAuth::Post(secret.into()));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("client_secret");
    std::fs::write(&file, format!("{secret}\n")).unwrap();
    let app = app_with(&fake, move |p| {
        p.client_auth = ClientAuth::ClientSecretPost;
        p.client_secret_file = Some(file);
    })
    .await;
    sign_in(&app, &fake, "acme.post").await;
    assert_eq!(refresh(&app, "acme.post").await["outcome"], "succeeded");
    fake.snapshot(|s| {
        assert_eq!(s.client_auth_refused, 0);
        assert!(s.client_auth_ok >= 2);
    });
}

#[tokio::test]
async fn a_public_client_against_a_confidential_provider_fails_with_invalid_client() {
    let fake = FakeOAuth::start(3600).await;
    fake.configure(|s| s.client_auth = crate::fakes::FakeClientAuth::Basic("s".into()));
    let app = app_with(&fake, |_| {}).await;
    let (status, page) = sign_in_page(&app, &fake, "acme.public").await;
    assert_eq!(status, 400);
    assert!(page.contains("invalid_client"), "{page}");
    fake.snapshot(|s| assert_eq!(s.client_auth_refused, 1));
}

#[tokio::test]
async fn json_token_bodies_work_where_the_provider_wants_them_and_forms_do_not() {
    let fake = FakeOAuth::start(3600).await;
    fake.configure(|s| s.json_body = true);
    let app = app_with(&fake, |p| p.token_request_format = TokenRequestFormat::Json).await;
    sign_in(&app, &fake, "acme.json").await;
    assert_eq!(refresh(&app, "acme.json").await["outcome"], "succeeded");
    fake.snapshot(|s| assert_eq!(s.wrong_format, 0));

    let form_app = app_with(&fake, |_| {}).await;
    let (status, page) = sign_in_page(&form_app, &fake, "acme.form").await;
    assert_eq!(status, 400, "{page}");
    fake.snapshot(|s| assert_eq!(s.wrong_format, 1));
}

#[tokio::test]
async fn a_token_without_expiry_is_refreshed_on_the_configured_interval() {
    let fake = FakeOAuth::start(3600).await;
    fake.configure(|s| s.omit_expires_in = true);
    let base = fake.url();
    let app = spawn_app_with(move |s| {
        s.providers
            .custom
            .insert("acme".into(), acme_provider(&base));
        s.oauth.refresh_without_expiry_s = 2;
    })
    .await;
    let profile = sign_in(&app, &fake, "acme.noexpiry").await;
    assert!(profile["credential"]["expires_at"].is_null());
    assert_eq!(profile["credential"]["refreshable"], true);
    let health = health_of(&app, "acme.noexpiry").await;
    assert_eq!(health["state"], "ok");
    assert!(health["advice"].is_null());
    wait_for("the interval's refresh", || {
        fake.snapshot(|s| s.refresh_grants >= 1)
    })
    .await;
    fake.snapshot(|s| assert!(!s.reused().iter().any(|_| true), "no token presented twice"));
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_honoured() {
    let fake = FakeOAuth::start(3600).await;
    let app = app_with(&fake, |p| {
        p.backoff_base_ms = 200;
        p.backoff_cap_ms = 600_000;
    })
    .await;
    sign_in(&app, &fake, "acme.retry").await;
    let at = chrono::Utc::now() + chrono::Duration::seconds(120);
    fake.force(ForcedAnswer::RetryAfter(
        429,
        "temporarily_unavailable",
        at.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
    ));
    let report = refresh(&app, "acme.retry").await;
    assert_eq!(report["outcome"], "transient_failure", "{report}");
    let state = &report["profile"]["credential"]["refresh_state"];
    let until: chrono::DateTime<chrono::Utc> = state["rate_limited_until"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let next: chrono::DateTime<chrono::Utc> =
        state["next_attempt_at"].as_str().unwrap().parse().unwrap();
    // The date, not the 200 ms backoff, sets the next try (to the second).
    assert!((until - at).num_seconds().abs() <= 2, "{until} vs {at}");
    assert!(next >= at - chrono::Duration::seconds(2), "{next} vs {at}");
    assert_eq!(health_of(&app, "acme.retry").await["state"], "rate_limited");
}

#[tokio::test]
async fn a_token_answer_over_the_cap_is_refused() {
    let fake = FakeOAuth::start(3600).await;
    fake.configure(|s| s.pad_answer_bytes = 300 * 1024);
    let app = app_with(&fake, |_| {}).await;
    let (status, page) = sign_in_page(&app, &fake, "acme.huge").await;
    assert_eq!(status, 400);
    assert!(page.contains("larger than 256 KiB"), "{page}");
}

#[tokio::test]
async fn the_public_base_url_is_used_for_the_redirect_and_handoff_links() {
    let fake = FakeOAuth::start(3600).await;
    let base = fake.url();
    let app = spawn_app_with(move |s| {
        s.providers
            .custom
            .insert("acme".into(), acme_provider(&base));
        s.server.public_base_url = Some("https://palyra.example:8443/".into());
    })
    .await;
    let started = bootstrap(&app, "acme.public").await;
    let url = url::Url::parse(started["authorization_url"].as_str().unwrap()).unwrap();
    let redirect = url
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .unwrap()
        .1
        .into_owned();
    assert_eq!(
        redirect,
        "https://palyra.example:8443/console/v1/auth/providers/custom:acme/callback"
    );
    let handoff: Value = app
        .mint_handoff(json!({ "redirect_path": "/" }))
        .await
        .json()
        .await
        .unwrap();
    let link = handoff["handoff_url"].as_str().unwrap();
    assert!(
        link.starts_with("https://palyra.example:8443/console/v1/auth/browser-handoff/"),
        "{link}"
    );
}
