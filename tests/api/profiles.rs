//! Auth profiles and the vault through the real daemon, against a fake provider.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use palyra::application::EnvSecrets;
use palyra::client::{ClientError, ControlPlaneClient};
use palyra_actors::SecretString;
use palyra_actors::registry::{AuthProfileScope, NewCredential, ResolveReason};
use palyra_http::routes::profiles::{CreateProfileRequest, ListQuery, ResolveQuery};
use reqwest::header::{COOKIE, RETRY_AFTER};
use serde_json::{Value, json};

use crate::fakes::FakeProvider;
use crate::helpers::{ADMIN_TOKEN, TestApp, error_code, spawn_app_with, start_with, test_settings};

async fn app_with_provider(fake: &FakeProvider) -> TestApp {
    let url = fake.url();
    spawn_app_with(move |s| {
        s.providers.openai.api_base_url = url.clone();
        s.providers.anthropic.api_base_url = url;
    })
    .await
}

fn client(app: &TestApp) -> ControlPlaneClient {
    ControlPlaneClient::new(&app.base, Some(SecretString::new(ADMIN_TOKEN.into())))
}

fn api_key_request(
    id: &str,
    key: &str,
    scope: AuthProfileScope,
    validate: bool,
) -> CreateProfileRequest {
    CreateProfileRequest {
        profile_id: Some(id.into()),
        provider: "openai".into(),
        profile_name: format!("profile {id}"),
        scope: Some(scope),
        credential: NewCredential::ApiKey {
            api_key: SecretString::new(key.into()),
        },
        set_default: false,
        validate: Some(validate),
    }
}

async fn post_profile(app: &TestApp, body: Value) -> reqwest::Response {
    app.bearer_post("/console/v1/auth/profiles", body).await
}

#[tokio::test]
async fn an_api_key_is_validated_stored_sealed_and_never_returned() {
    let fake = FakeProvider::start().await;
    let app = app_with_provider(&fake).await;
    let key = "good-key-0123456789-wxyz";
    let response = post_profile(
        &app,
        json!({
            "profile_id": "openai.work",
            "provider": "openai",
            "profile_name": "Work",
            "credential": { "type": "api_key", "api_key": key },
            "set_default": true
        }),
    )
    .await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(!text.contains(key), "the key is not in the response");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["profile_id"], "openai.work");
    assert_eq!(body["scope"], json!({ "kind": "global" }));
    assert_eq!(body["is_default"], true);
    assert_eq!(body["credential"]["type"], "api_key");
    assert_eq!(
        body["credential"]["api_key_vault_ref"],
        "vault://global/auth.openai.work.api_key"
    );
    assert_eq!(body["credential"]["hint"], "…wxyz");
    assert_eq!(fake.calls(), 1, "validated once");
    assert_eq!(
        fake.keys_seen.lock().unwrap()[0],
        key,
        "with the key as bearer token"
    );

    let client = client(&app);
    let shown = client.get_profile("openai.work").await.unwrap();
    assert_eq!(shown.record.profile_name, "Work");
    assert!(shown.is_default);
    let health = client.auth_health().await.unwrap();
    assert_eq!(health.profiles.len(), 1);
    assert_eq!(
        health.counts[&palyra_actors::registry::HealthState::Static],
        1
    );
    assert_eq!(fake.calls(), 1, "health never calls the provider");
}

#[tokio::test]
async fn a_rejected_or_uncheckable_key_stores_nothing() {
    let fake = FakeProvider::start().await;
    let app = app_with_provider(&fake).await;
    let body = |key: &str| {
        json!({
            "profile_id": "p1", "provider": "openai", "profile_name": "P",
            "credential": { "type": "api_key", "api_key": key }
        })
    };
    let rejected = post_profile(&app, body("bad-key-123456789")).await;
    assert_eq!(rejected.status(), 422);
    assert_eq!(error_code(rejected).await, "credential_rejected");

    let limited = post_profile(&app, body("limited-key-123456")).await;
    assert_eq!(limited.status(), 424);
    assert_eq!(limited.headers()[RETRY_AFTER], "7");
    assert_eq!(error_code(limited).await, "provider_rate_limited");

    let broken = post_profile(&app, body("broken-key-123456")).await;
    assert_eq!(broken.status(), 424);
    let broken: Value = broken.json().await.unwrap();
    assert_eq!(broken["error"]["code"], "provider_unavailable");
    assert!(broken["error"]["message"].as_str().unwrap().contains("500"));
    assert_eq!(fake.calls(), 3);

    let page = client(&app)
        .list_profiles(&ListQuery::default())
        .await
        .unwrap();
    assert!(page.items.is_empty(), "nothing was stored");

    // validate: false skips the call.
    let mut skip = body("bad-key-123456789");
    skip["validate"] = json!(false);
    assert_eq!(post_profile(&app, skip).await.status(), 200);
    assert_eq!(fake.calls(), 3);
}

#[tokio::test]
async fn an_unreachable_provider_is_a_clear_424() {
    // A port that was free a moment ago: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let app = spawn_app_with(move |s| {
        s.providers.openai.api_base_url = format!("http://127.0.0.1:{port}");
    })
    .await;
    let response = post_profile(
        &app,
        json!({ "provider": "openai", "profile_name": "P",
                "credential": { "type": "api_key", "api_key": "good-123456789" } }),
    )
    .await;
    assert_eq!(response.status(), 424);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "provider_unavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{body}"
    );
}

#[tokio::test]
async fn every_field_is_validated_with_a_400_naming_it() {
    let fake = FakeProvider::start().await;
    let app = app_with_provider(&fake).await;
    let base = json!({
        "profile_id": "ok.id", "provider": "openai", "profile_name": "P",
        "credential": { "type": "api_key", "api_key": "good-123456789" }, "validate": false
    });
    let cases = [
        ("profile_id", json!("Upper")),
        ("profile_id", json!("x".repeat(129))),
        ("provider", json!("gemini")),
        ("provider", json!("custom:")),
        ("profile_name", json!("")),
        ("profile_name", json!("a\nb")),
        ("scope", json!({ "kind": "agent", "agent_id": "Bad Agent" })),
        ("scope", json!({ "kind": "planet" })),
        (
            "credential",
            json!({ "type": "api_key", "api_key": "has space" }),
        ),
        ("credential", json!({ "type": "api_key", "api_key": "" })),
        ("credential", json!({ "type": "password", "password": "x" })),
    ];
    for (field, value) in cases {
        let mut body = base.clone();
        body[field] = value.clone();
        let response = post_profile(&app, body).await;
        assert_eq!(response.status(), 400, "{field} = {value}");
        let error: Value = response.json().await.unwrap();
        let message = error["error"]["message"].as_str().unwrap();
        let named = if field == "scope" && value["kind"] == "agent" {
            "agent_id"
        } else {
            field
        };
        assert!(message.contains(named), "{field}: {message}");
    }
    assert_eq!(fake.calls(), 0);
    let page = client(&app)
        .list_profiles(&ListQuery::default())
        .await
        .unwrap();
    assert!(page.items.is_empty());
    // Bad query parameters and ids are 400 too.
    let bad = app
        .http
        .get(app.url("/console/v1/auth/profiles?limit=0"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let missing = app
        .http
        .get(app.url("/console/v1/auth/profiles/nope"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn defaults_scopes_and_resolution() {
    let fake = FakeProvider::start().await;
    let app = app_with_provider(&fake).await;
    let c = client(&app);
    let resolve = |agent: Option<&str>| ResolveQuery {
        provider: Some("openai".into()),
        agent_id: agent.map(str::to_owned),
    };
    let none = c.resolve_profile(&resolve(None)).await.unwrap();
    assert_eq!(none.reason, ResolveReason::None);
    assert!(none.profile_id.is_none());

    c.create_profile(&api_key_request(
        "g1",
        "good-g1-key-0000",
        AuthProfileScope::Global,
        false,
    ))
    .await
    .unwrap();
    let only = c.resolve_profile(&resolve(Some("agent-a"))).await.unwrap();
    assert_eq!(
        (only.reason, only.profile_id.as_deref()),
        (ResolveReason::OnlyCandidate, Some("g1"))
    );

    c.create_profile(&api_key_request(
        "g2",
        "good-g2-key-0000",
        AuthProfileScope::Global,
        false,
    ))
    .await
    .unwrap();
    let ambiguous = c.resolve_profile(&resolve(None)).await.unwrap();
    assert_eq!(ambiguous.reason, ResolveReason::None);
    assert!(
        ambiguous.detail.contains("none is the default"),
        "{}",
        ambiguous.detail
    );

    let g2 = c.set_default_profile("g2").await.unwrap();
    assert!(g2.is_default);
    let explicit = c.resolve_profile(&resolve(Some("agent-a"))).await.unwrap();
    assert_eq!(
        (explicit.reason, explicit.profile_id.as_deref()),
        (ResolveReason::ExplicitDefault, Some("g2"))
    );

    let agent_scope = AuthProfileScope::Agent {
        agent_id: "agent-a".into(),
    };
    let a1 = c
        .create_profile(&api_key_request(
            "a1",
            "good-a1-key-0000",
            agent_scope.clone(),
            true,
        ))
        .await
        .unwrap();
    assert_eq!(
        a1.record.credential,
        palyra_actors::registry::AuthCredential::ApiKey {
            api_key_vault_ref: "vault://agent:agent-a/auth.a1.api_key".into(),
            hint: "…0000".into(),
            rejected_at: None,
        }
    );
    let agent = c.resolve_profile(&resolve(Some("agent-a"))).await.unwrap();
    assert_eq!(
        (agent.reason, agent.profile_id.as_deref()),
        (ResolveReason::AgentOverride, Some("a1"))
    );
    let other = c.resolve_profile(&resolve(Some("agent-b"))).await.unwrap();
    assert_eq!(other.profile_id.as_deref(), Some("g2"));

    // The default survives a restart; deleting the default profile clears it.
    let app = app.restart().await;
    let c = client(&app);
    assert!(c.get_profile("g2").await.unwrap().is_default);
    c.delete_profile("g2").await.unwrap();
    let err = c.get_profile("g2").await.unwrap_err();
    assert!(
        matches!(err, ClientError::Api { status, .. } if status == 404),
        "{err}"
    );
    let after = c.resolve_profile(&resolve(None)).await.unwrap();
    assert_eq!(
        (after.reason, after.profile_id.as_deref()),
        (ResolveReason::OnlyCandidate, Some("g1"))
    );
    let agent_only = c
        .list_profiles(&ListQuery {
            agent_id: Some("agent-a".into()),
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(agent_only.items.len(), 1);
    let global_only = c
        .list_profiles(&ListQuery {
            scope: Some("global".into()),
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(global_only.items.len(), 1);
}

#[tokio::test]
async fn lists_are_paged_by_profile_id() {
    let fake = FakeProvider::start().await;
    let app = app_with_provider(&fake).await;
    let c = client(&app);
    for i in 0..7 {
        c.create_profile(&api_key_request(
            &format!("p{i}"),
            "good-key-12345678",
            AuthProfileScope::Global,
            false,
        ))
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = c
            .list_profiles(&ListQuery {
                limit: Some(3),
                after: after.clone(),
                ..ListQuery::default()
            })
            .await
            .unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(page.items.iter().map(|p| p.record.profile_id.clone()));
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ["p0", "p1", "p2", "p3", "p4", "p5", "p6"]);
}

#[tokio::test]
async fn replacing_a_profile_keeps_one_secret_and_its_creation_time() {
    let fake = FakeProvider::start().await;
    let app = app_with_provider(&fake).await;
    let c = client(&app);
    let first = c
        .create_profile(&api_key_request(
            "p",
            "good-first-key-1111",
            AuthProfileScope::Global,
            false,
        ))
        .await
        .unwrap();
    let agent = AuthProfileScope::Agent {
        agent_id: "a".into(),
    };
    let second = c
        .create_profile(&api_key_request("p", "good-second-key-2222", agent, false))
        .await
        .unwrap();
    assert_eq!(second.record.created_at, first.record.created_at);
    assert_eq!(
        second.record.credential,
        palyra_actors::registry::AuthCredential::ApiKey {
            api_key_vault_ref: "vault://agent:a/auth.p.api_key".into(),
            hint: "…2222".into(),
            rejected_at: None,
        }
    );
    // Rotation re-seals exactly the secrets that exist: the old ref was deleted.
    let report = c.rotate_vault_key().await.unwrap();
    assert_eq!(report.secrets_resealed, 1);
}

#[tokio::test]
async fn cookie_sessions_work_through_the_typed_client() {
    let fake = FakeProvider::start().await;
    let app = app_with_provider(&fake).await;
    let mut c = client(&app);
    let session = c.login(Some("ops-laptop")).await.unwrap();
    c.use_session(&session);
    assert_eq!(c.session().await.unwrap().principal, "root");
    let saved = c
        .create_profile(&api_key_request(
            "via-cookie",
            "good-cookie-key-9999",
            AuthProfileScope::Global,
            true,
        ))
        .await
        .unwrap();
    assert_eq!(saved.record.profile_id, "via-cookie");
    // Without the CSRF header the same request is refused.
    let refused = app
        .http
        .post(app.url("/console/v1/auth/profiles/via-cookie/default"))
        .header(
            COOKIE,
            format!("palyra_console_session={}", session.cookie.expose()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
}

#[tokio::test]
async fn vault_key_rotation_keeps_every_secret_readable_across_restarts() {
    let fake = FakeProvider::start().await;
    let app = app_with_provider(&fake).await;
    let c = client(&app);
    for i in 0..5 {
        c.create_profile(&api_key_request(
            &format!("r{i}"),
            "good-rot-key-4444",
            AuthProfileScope::Global,
            false,
        ))
        .await
        .unwrap();
    }
    let key_file = app.dir.path().join("data/vault.key");
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let before = std::fs::read_to_string(&key_file).unwrap();
    let report = c.rotate_vault_key().await.unwrap();
    assert_eq!(report.secrets_resealed, 5);
    assert_ne!(report.key_id, report.previous_key_id);
    let after = std::fs::read_to_string(&key_file).unwrap();
    assert_ne!(before, after);
    assert_eq!(
        after.lines().count(),
        1,
        "the old key is gone once the rotation committed"
    );

    let app = app.restart().await;
    let c = client(&app);
    let health = c.auth_health().await.unwrap();
    assert_eq!(
        health.counts[&palyra_actors::registry::HealthState::Static],
        5
    );
    // A second rotation must open every secret sealed by the first.
    let second = c.rotate_vault_key().await.unwrap();
    assert_eq!(second.previous_key_id, report.key_id);
    assert_eq!(second.secrets_resealed, 5);
}

#[tokio::test]
async fn an_interrupted_rotation_leaves_both_keys_usable() {
    // A key file holding a second key is what a rotation cut short before its commit
    // leaves behind: the daemon must still open every secret, with the old key.
    let fake = FakeProvider::start().await;
    let app = app_with_provider(&fake).await;
    let c = client(&app);
    c.create_profile(&api_key_request(
        "k",
        "good-int-key-5555",
        AuthProfileScope::Global,
        false,
    ))
    .await
    .unwrap();
    let (dir, settings) = app.stop().await;
    let key_file = dir.path().join("data/vault.key");
    let old = std::fs::read_to_string(&key_file).unwrap();
    let extra = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    std::fs::write(&key_file, format!("{extra}\n{old}")).unwrap();
    let app = start_with(dir, settings, EnvSecrets::default())
        .await
        .unwrap();
    let c = client(&app);
    assert_eq!(
        c.auth_health().await.unwrap().counts[&palyra_actors::registry::HealthState::Static],
        1
    );
    assert_eq!(c.rotate_vault_key().await.unwrap().secrets_resealed, 1);
}

#[tokio::test]
async fn a_wrong_or_exposed_vault_key_refuses_to_start() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let settings = test_settings(&dir);
    let key_a = SecretString::new("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into());
    let key_b = SecretString::new("BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA=".into());
    let secrets = |k: &SecretString| EnvSecrets {
        admin_token: None,
        vault_key: Some(k.clone()),
    };
    let app = start_with(Arc::clone(&dir), settings.clone(), secrets(&key_a))
        .await
        .unwrap();
    let c = client(&app);
    c.create_profile(&api_key_request(
        "e",
        "good-env-key-6666",
        AuthProfileScope::Global,
        false,
    ))
    .await
    .unwrap();
    // An environment key cannot be rotated by the daemon.
    let err = c.rotate_vault_key().await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Api { status, code, .. } if *status == 409 && code == "vault_key_from_env"),
        "{err}"
    );
    drop(app.stop().await);

    let err = start_with(Arc::clone(&dir), settings.clone(), secrets(&key_b))
        .await
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(text.contains("does not open the existing vault"), "{text}");
    assert!(!text.contains("BBBB") && !text.contains("AAAA"), "{text}");
    // Nor may a missing key silently start a second vault from a fresh key file.
    let err = start_with(Arc::clone(&dir), settings.clone(), EnvSecrets::default())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("the existing vault"), "{err}");
    assert!(
        !dir.path().join("data/vault.key").exists(),
        "no second vault was started"
    );
    // The right key still works.
    let app = start_with(Arc::clone(&dir), settings.clone(), secrets(&key_a))
        .await
        .unwrap();
    drop(app.stop().await);

    let other = Arc::new(tempfile::tempdir().unwrap());
    let settings = test_settings(&other);
    let app = start_with(Arc::clone(&other), settings.clone(), EnvSecrets::default())
        .await
        .unwrap();
    drop(app.stop().await);
    let key_file = other.path().join("data/vault.key");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = start_with(other, settings, EnvSecrets::default())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("chmod 600"), "{err}");
}
