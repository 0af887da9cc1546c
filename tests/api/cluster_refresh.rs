//! Auth profiles, OAuth sign-ins and refreshes across two daemons on one PostgreSQL
//! database (issue 15). Each test needs the shared database, so on redb it only checks
//! that one node still behaves as before.

use std::sync::Arc;
use std::time::{Duration, Instant};

use palyra::application::EnvSecrets;
use palyra_actors::SecretString;
use serde_json::{Value, json};

use crate::fakes::FakeOAuth;
use crate::helpers::{TestApp, start_with, test_settings};
use crate::oauth::{PROVIDER, acme_provider, bootstrap, refresh, sign_in};

/// Two daemons on one database, each with its own data dir, both knowing the fake
/// OAuth server as `custom:acme`; `None` on redb. `key`: the same PALYRA_VAULT_KEY
/// for both (their key files would differ).
async fn two_nodes(fake: &FakeOAuth, lead_s: u64) -> Option<(TestApp, TestApp)> {
    if !palyra::testkit::postgres::enabled() {
        return None;
    }
    let key = vault_key(7);
    let a = node(fake, lead_s, None, &key).await.expect("node A starts");
    let b = node(fake, lead_s, Some(&a), &key)
        .await
        .expect("node B starts");
    Some((a, b))
}

fn vault_key(byte: u8) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

/// A daemon on `beside`'s database (or a fresh one) with `key` as PALYRA_VAULT_KEY.
async fn node(
    fake: &FakeOAuth,
    lead_s: u64,
    beside: Option<&TestApp>,
    key: &str,
) -> Result<TestApp, palyra::StartError> {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let mut settings = test_settings(&dir);
    if let Some(first) = beside {
        settings.storage.url = first.settings.storage.url.clone();
    }
    settings
        .providers
        .custom
        .insert("acme".into(), acme_provider(&fake.url()));
    settings.oauth.refresh_lead_s = lead_s;
    let secrets = EnvSecrets {
        admin_token: None,
        vault_key: Some(SecretString::new(key.to_owned())),
    };
    start_with(dir, settings, secrets).await
}

/// Polls `check` every 20 ms until it holds or `limit` passes; the time it took.
async fn within<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if check().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

async fn status_of(app: &TestApp, path: &str) -> u16 {
    app.http
        .get(app.url(path))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_profile_created_on_one_node_is_listed_and_resolvable_on_another_within_a_second() {
    let fake = FakeOAuth::start(3600).await;
    let Some((a, b)) = two_nodes(&fake, 300).await else {
        return;
    };
    let created = a
        .bearer_post(
            "/console/v1/auth/profiles",
            json!({
                "profile_id": "openai.shared",
                "provider": "openai",
                "profile_name": "Shared",
                "credential": { "type": "api_key", "api_key": "shared-key-0123456789-abcd" },
                "set_default": true,
                "validate": false
            }),
        )
        .await;
    assert_eq!(created.status(), 200, "{}", created.text().await.unwrap());
    let seen = within(Duration::from_secs(1), || async {
        let list = b.bearer_get_json("/console/v1/auth/profiles").await;
        let listed = list["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|p| p["profile_id"] == "openai.shared"));
        let resolved = b
            .bearer_get_json("/console/v1/auth/resolve?provider=openai")
            .await;
        listed && resolved["profile_id"] == "openai.shared"
    })
    .await;
    assert!(
        seen.is_some(),
        "node B lists and resolves the profile within 1 s"
    );

    // A deletion on B reaches A the same way.
    let deleted = b
        .http
        .delete(b.url("/console/v1/auth/profiles/openai.shared"))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = within(Duration::from_secs(1), || async {
        status_of(&a, "/console/v1/auth/profiles/openai.shared").await == 404
    })
    .await;
    assert!(gone.is_some(), "node A forgets the profile within 1 s");
    // Both nodes changing one profile: the later write builds on the earlier one.
    for (i, node) in [&a, &b, &a].into_iter().enumerate() {
        let response = node
            .bearer_post(
                "/console/v1/auth/profiles",
                json!({
                    "profile_id": "openai.raced",
                    "provider": "openai",
                    "profile_name": format!("Raced {i}"),
                    "credential": { "type": "api_key", "api_key": format!("raced-key-{i}-0123456789") },
                    "validate": false
                }),
            )
            .await;
        assert_eq!(response.status(), 200, "write {i}");
    }
    let named = within(Duration::from_secs(1), || async {
        b.bearer_get_json("/console/v1/auth/profiles/openai.raced")
            .await["profile_name"]
            == "Raced 2"
    })
    .await;
    assert!(named.is_some(), "node B shows the last write");
}

#[tokio::test]
async fn concurrent_manual_refreshes_on_two_nodes_redeem_the_token_once() {
    let fake = FakeOAuth::start(3600).await;
    let Some((a, b)) = two_nodes(&fake, 300).await else {
        return;
    };
    let profile = sign_in(&a, &fake, "acme.shared").await;
    let generation = profile["credential"]["refresh_state"]["generation"]
        .as_u64()
        .unwrap();
    let seen = within(Duration::from_secs(1), || async {
        status_of(&b, "/console/v1/auth/profiles/acme.shared").await == 200
    })
    .await;
    assert!(seen.is_some(), "node B knows the profile");
    // Slow answers, so the two refreshes overlap.
    fake.state.lock().unwrap().delay_ms = 600;
    let (on_a, on_b) = tokio::join!(refresh(&a, "acme.shared"), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        refresh(&b, "acme.shared").await
    });
    for report in [&on_a, &on_b] {
        assert_eq!(report["outcome"], "succeeded", "{report}");
        assert_eq!(
            report["profile"]["credential"]["refresh_state"]["generation"],
            generation + 1,
            "{report}"
        );
    }
    let (redemptions, grants) = fake.snapshot(|s| (s.refresh_redemptions, s.refresh_grants));
    assert_eq!(redemptions, 1, "one refresh request reached the provider");
    assert_eq!(grants, 1);
    assert!(!fake.any_refresh_token_reused());
    // The rotated token is what both nodes use next: a refresh on B redeems it.
    fake.state.lock().unwrap().delay_ms = 0;
    let again = within(Duration::from_secs(1), || async {
        b.bearer_get_json("/console/v1/auth/profiles/acme.shared")
            .await["credential"]["refresh_state"]["generation"]
            == generation + 1
    })
    .await;
    assert!(again.is_some());
    let next = refresh(&b, "acme.shared").await;
    assert_eq!(next["outcome"], "succeeded", "{next}");
    assert!(!fake.any_refresh_token_reused());
}

#[tokio::test]
async fn many_profiles_due_at_once_over_two_nodes_present_every_refresh_token_once() {
    // Tokens live 4 s and are refreshed 2 s before expiry: every profile falls due
    // about every 2 s, on whichever node holds its shard.
    let fake = FakeOAuth::start(4).await;
    let Some((a, b)) = two_nodes(&fake, 2).await else {
        return;
    };
    let count = 12;
    for i in 0..count {
        sign_in(&a, &fake, &format!("acme.p{i}")).await;
    }
    let refreshed = within(Duration::from_secs(20), || async {
        fake.snapshot(|s| s.refresh_grants) >= 2 * count
    })
    .await;
    assert!(
        refreshed.is_some(),
        "every profile was refreshed (grants: {})",
        fake.snapshot(|s| s.refresh_grants)
    );
    let reused = fake.reused_refresh_tokens();
    assert!(
        reused.is_empty(),
        "refresh tokens presented twice: {reused:?}"
    );
    let refused = fake.snapshot(|s| s.refused);
    assert_eq!(refused, 0, "no token request was refused");
    for i in 0..count {
        for node in [&a, &b] {
            let profile = node
                .bearer_get_json(&format!("/console/v1/auth/profiles/acme.p{i}"))
                .await;
            assert_eq!(
                profile["credential"]["refresh_state"]["needs_reauth"], false,
                "{profile}"
            );
        }
    }
}

#[tokio::test]
async fn a_sign_in_started_on_one_node_completes_on_another_once() {
    let fake = FakeOAuth::start(3600).await;
    let Some((a, b)) = two_nodes(&fake, 300).await else {
        return;
    };
    let started = bootstrap(&a, "acme.travel").await;
    let (_, redirect) = fake.authorize(started["authorization_url"].as_str().unwrap());
    // The provider's redirect reaches node B instead of A.
    let mut on_b = url::Url::parse(&redirect).unwrap();
    on_b.set_port(Some(b.addr.port())).unwrap();
    let page = b.http.get(on_b.as_str()).send().await.unwrap();
    assert_eq!(page.status(), 200, "{}", page.text().await.unwrap());
    let profile = b
        .bearer_get_json("/console/v1/auth/profiles/acme.travel")
        .await;
    assert_eq!(profile["credential"]["type"], "oauth");
    // The same callback at node A is refused: the attempt was consumed.
    let replay = a.http.get(&redirect).send().await.unwrap();
    assert_ne!(replay.status(), 200);
    assert_eq!(fake.snapshot(|s| s.code_redemptions), 1);
    let attempt = started["attempt_id"].as_str().unwrap();
    let state_path =
        format!("/console/v1/auth/providers/{PROVIDER}/callback-state?attempt_id={attempt}");
    let succeeded = within(Duration::from_secs(1), || async {
        let state: Value = a.bearer_get_json(&state_path).await;
        state["state"] == "succeeded"
    })
    .await;
    assert!(succeeded.is_some(), "node A shows the sign-in as succeeded");
}

#[tokio::test]
async fn a_second_node_whose_vault_key_does_not_open_the_vault_refuses_to_start() {
    let fake = FakeOAuth::start(3600).await;
    if !palyra::testkit::postgres::enabled() {
        return;
    }
    let a = node(&fake, 300, None, &vault_key(1))
        .await
        .expect("A starts");
    let refused = node(&fake, 300, Some(&a), &vault_key(2)).await;
    let Err(e) = refused else {
        panic!("a node with another vault key must not start");
    };
    let message = e.to_string();
    assert!(
        message.contains("does not open the existing vault"),
        "a clear error: {message}"
    );
    // The key never enters the database: neither its base64 nor its bytes.
    let stored = crate::helpers::stored_bytes(&a.settings.storage.data_dir.clone().unwrap());
    let key = vault_key(1);
    assert!(
        !stored.windows(key.len()).any(|w| w == key.as_bytes()),
        "the vault key's base64 is not stored"
    );
    assert!(
        !stored.windows(32).any(|w| w == [1u8; 32]),
        "the vault key's bytes are not stored"
    );
    // A node with the right key still starts beside it.
    let again = node(&fake, 300, Some(&a), &vault_key(1)).await;
    assert!(again.is_ok(), "the same key opens the vault");
}
