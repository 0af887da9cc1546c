//! A provider's OAuth client secret sealed in the vault: set through the CLI (from
//! standard input) or sealed from `client_secret_env` at start, sent by
//! `client_secret_basic` in the Authorization header, still there after a restart (the
//! environment variable gone), and in no response, log line, audit event or stored
//! byte in clear; the route's refusals.

use std::process::Stdio;

use palyra::settings::ClientAuth;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::fakes::{FakeClientAuth, FakeOAuth};
use crate::helpers::{ADMIN_TOKEN, TestApp, error_code, spawn_app_with, start_child, stored_bytes};
use crate::oauth::{PROVIDER, acme_provider, sign_in};
use crate::oauth_device::{acme_env, as_refs};

/// A secret with characters Basic authentication must form-encode first.
const SECRET: &str = "vault-sealed-9c41e7d2:with/odd chars";

/// The secret as `client_secret_basic` sends it for the client id `palyra-cli`.
fn basic_header_value() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!(
        "palyra-cli:{}",
        url::form_urlencoded::byte_serialize(SECRET.as_bytes()).collect::<String>()
    ))
}

/// Every trace of the secret a leak would show.
fn assert_no_secret(what: &str, text: &str) {
    for needle in ["vault-sealed-9c41e7d2", basic_header_value().as_str()] {
        assert!(!text.contains(needle), "the client secret is in {what}");
    }
}

/// The fake as `custom:acme`, a confidential client (`client_secret_basic`), for a
/// palyrad child with trace logging; `extra` on top.
fn confidential_env(
    fake: &FakeOAuth,
    dir: &std::path::Path,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env = acme_env(&fake.url(), dir);
    env.push((
        "PALYRA_PROVIDERS__CUSTOM__ACME__CLIENT_AUTH".to_owned(),
        "client_secret_basic".to_owned(),
    ));
    // Every level: the secret must not show even in trace output.
    env.push(("RUST_LOG".to_owned(), "trace".to_owned()));
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env
}

async fn post(base: &str, path: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn get_text(base: &str, path: &str) -> String {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A browser sign-in against a child daemon; returns every answer's text.
async fn child_sign_in(base: &str, fake: &FakeOAuth, profile_id: &str) -> String {
    let started = post(
        base,
        &format!("/console/v1/auth/providers/{PROVIDER}/bootstrap"),
        json!({ "profile_name": "Acme", "profile_id": profile_id }),
    )
    .await;
    assert_eq!(started.status(), 200);
    let started: Value = started.json().await.unwrap();
    let (_, redirect) = fake.authorize(started["authorization_url"].as_str().unwrap());
    let redirect = url::Url::parse(&redirect).unwrap();
    let page = reqwest::Client::new()
        .get(format!(
            "{base}{}?{}",
            redirect.path(),
            redirect.query().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    let profile = get_text(base, &format!("/console/v1/auth/profiles/{profile_id}")).await;
    format!("{started}\n{page}\n{profile}")
}

/// A manual refresh against a child daemon; returns the report.
async fn child_refresh(base: &str, profile_id: &str) -> Value {
    let response = post(
        base,
        &format!("/console/v1/auth/profiles/{profile_id}/refresh"),
        json!({}),
    )
    .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// `palyra auth client-secret ARGS` with `stdin` on its standard input.
async fn cli(base: &str, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_palyra"))
        .args(["auth", "client-secret"])
        .args(args)
        .env("PALYRA_URL", base)
        .env("PALYRA_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    child.wait_with_output().await.unwrap()
}

#[tokio::test]
async fn a_secret_set_through_the_cli_is_sent_in_the_header_survives_a_restart_and_is_never_shown()
{
    let fake = FakeOAuth::start(3600).await;
    fake.configure(|s| s.client_auth = FakeClientAuth::Basic(SECRET.into()));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = confidential_env(&fake, dir.path(), &[]);
    let daemon = start_child(&data, &as_refs(&env)).await;

    // Without a secret the sign-in is refused before the browser round trip.
    let refused = post(
        &daemon.base,
        &format!("/console/v1/auth/providers/{PROVIDER}/bootstrap"),
        json!({ "profile_name": "Acme" }),
    )
    .await;
    assert_eq!(refused.status(), 400);
    let body = refused.text().await.unwrap();
    assert!(body.contains("palyra auth client-secret set"), "{body}");

    let set = cli(
        &daemon.base,
        &["set", PROVIDER, "--stdin"],
        &format!("{SECRET}\n"),
    )
    .await;
    let out = String::from_utf8_lossy(&set.stdout).into_owned();
    assert!(
        set.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&set.stderr)
    );
    assert_eq!(out.trim(), "custom:acme: client secret sealed");
    let mut answers = out;

    answers.push_str(&child_sign_in(&daemon.base, &fake, "acme.sealed").await);
    let report = child_refresh(&daemon.base, "acme.sealed").await;
    assert_eq!(report["outcome"], "succeeded", "{report}");
    answers.push_str(&report.to_string());
    let (_, first_log) = daemon.terminate().await;

    // The secret is the vault's, not the process's: a new process opens it there.
    let daemon = start_child(&data, &as_refs(&env)).await;
    let report = child_refresh(&daemon.base, "acme.sealed").await;
    assert_eq!(report["outcome"], "succeeded", "after a restart: {report}");
    answers.push_str(&report.to_string());
    let deleted = reqwest::Client::new()
        .delete(format!(
            "{}/console/v1/auth/profiles/acme.sealed",
            daemon.base
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());
    fake.snapshot(|s| {
        assert_eq!(s.client_auth_refused, 0, "every request authenticated");
        assert_eq!(
            s.client_auth_ok, 4,
            "code, two refreshes and the revocation"
        );
        assert_eq!(s.revoked.len(), 1);
    });
    let audit = get_text(&daemon.base, "/console/v1/audit?kind=client_secret_changed").await;
    let events: Value = serde_json::from_str(&audit).unwrap();
    let events = events["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 1, "{audit}");
    assert_eq!(events[0]["subject"], PROVIDER);
    assert_eq!(events[0]["detail"], "set");
    answers.push_str(&get_text(&daemon.base, "/console/v1/audit?limit=500").await);
    answers.push_str(&get_text(&daemon.base, "/console/v1/auth/health").await);
    answers.push_str(&get_text(&daemon.base, "/console/v1/auth/profiles").await);

    // Removed, the secret is not sent any more: the next sign-in is refused up front.
    let removed = cli(&daemon.base, &["remove", PROVIDER], "").await;
    assert!(removed.status.success());
    let refused = post(
        &daemon.base,
        &format!("/console/v1/auth/providers/{PROVIDER}/bootstrap"),
        json!({ "profile_name": "Acme" }),
    )
    .await;
    assert_eq!(refused.status(), 400);
    let (_, second_log) = daemon.terminate().await;

    assert!(
        first_log.contains("\"TRACE\"") || first_log.contains("\"DEBUG\""),
        "trace logging was on"
    );
    assert_no_secret("an answer", &answers);
    assert_no_secret("the log", &first_log);
    assert_no_secret("the log after the restart", &second_log);
    let stored = stored_bytes(&data);
    assert!(
        !stored.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
        "the client secret is stored in clear"
    );
}

#[tokio::test]
async fn a_secret_from_the_environment_is_sealed_at_start_and_outlives_the_variable() {
    let fake = FakeOAuth::start(3600).await;
    fake.configure(|s| s.client_auth = FakeClientAuth::Basic(SECRET.into()));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let with_env = confidential_env(
        &fake,
        dir.path(),
        &[
            (
                "PALYRA_PROVIDERS__CUSTOM__ACME__CLIENT_SECRET_ENV",
                "ACME_CLIENT_SECRET",
            ),
            ("ACME_CLIENT_SECRET", SECRET),
        ],
    );
    let daemon = start_child(&data, &as_refs(&with_env)).await;
    let mut answers = child_sign_in(&daemon.base, &fake, "acme.env").await;
    // The config names the source: the route refuses to change it behind its back.
    let put = reqwest::Client::new()
        .put(format!(
            "{}/console/v1/auth/providers/custom:acme/client-secret",
            daemon.base
        ))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "client_secret": "another-secret" }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 409);
    answers.push_str(&put.text().await.unwrap());
    let (_, first_log) = daemon.terminate().await;

    // Restarted with the same variable: nothing is sealed again (one audit event).
    let daemon = start_child(&data, &as_refs(&with_env)).await;
    daemon.terminate().await;

    // Neither the variable nor client_secret_env now: the vault still holds it.
    let without_env = confidential_env(&fake, dir.path(), &[]);
    let daemon = start_child(&data, &as_refs(&without_env)).await;
    let report = child_refresh(&daemon.base, "acme.env").await;
    assert_eq!(report["outcome"], "succeeded", "{report}");
    fake.snapshot(|s| {
        assert_eq!(s.client_auth_refused, 0);
        assert_eq!(s.client_auth_ok, 2, "the code and the refresh");
    });
    let audit = get_text(&daemon.base, "/console/v1/audit?kind=client_secret_changed").await;
    let events: Value = serde_json::from_str(&audit).unwrap();
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "sealed once, at the first start: {audit}");
    assert_eq!(events[0]["actor"], "system");
    answers.push_str(&audit);
    let (_, second_log) = daemon.terminate().await;
    assert_no_secret("an answer", &answers);
    assert_no_secret("the log", &first_log);
    assert_no_secret("the log without the variable", &second_log);
}

async fn put_secret(app: &TestApp, provider: &str, body: Value) -> reqwest::Response {
    app.http
        .put(app.url(&format!(
            "/console/v1/auth/providers/{provider}/client-secret"
        )))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn delete_secret(app: &TestApp, provider: &str) -> reqwest::Response {
    app.http
        .delete(app.url(&format!(
            "/console/v1/auth/providers/{provider}/client-secret"
        )))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_client_secret_route_answers_204_without_a_body_and_refuses_clearly() {
    let fake = FakeOAuth::start(3600).await;
    fake.configure(|s| s.client_auth = FakeClientAuth::Post(SECRET.into()));
    let base = fake.url();
    let app = spawn_app_with(move |s| {
        let mut confidential = acme_provider(&base);
        confidential.client_auth = ClientAuth::ClientSecretPost;
        s.providers.custom.insert("acme".into(), confidential);
        s.providers
            .custom
            .insert("public".into(), acme_provider(&base));
    })
    .await;

    let set = put_secret(&app, PROVIDER, json!({ "client_secret": SECRET })).await;
    assert_eq!(set.status(), 204);
    assert!(set.text().await.unwrap().is_empty(), "nothing echoed");
    // The same secret again writes nothing and still answers 204.
    let again = put_secret(&app, PROVIDER, json!({ "client_secret": SECRET })).await;
    assert_eq!(again.status(), 204);
    sign_in(&app, &fake, "acme.post").await;
    fake.snapshot(|s| assert_eq!((s.client_auth_ok, s.client_auth_refused), (1, 0)));

    let public = put_secret(&app, "custom:public", json!({ "client_secret": "x" })).await;
    assert_eq!(public.status(), 400);
    let public = public.text().await.unwrap();
    assert!(public.contains("public client"), "{public}");
    let unknown = put_secret(&app, "custom:nobody", json!({ "client_secret": "x" })).await;
    assert_eq!(unknown.status(), 400);
    let empty = put_secret(&app, PROVIDER, json!({ "client_secret": "" })).await;
    assert_eq!(error_code(empty).await, "invalid_field");
    let control = put_secret(&app, PROVIDER, json!({ "client_secret": "a\nb" })).await;
    assert_eq!(control.status(), 400);
    let extra = put_secret(
        &app,
        PROVIDER,
        json!({ "client_secret": "x", "echo": true }),
    )
    .await;
    assert_eq!(extra.status(), 400);
    let anonymous = app
        .http
        .put(app.url("/console/v1/auth/providers/custom:acme/client-secret"))
        .json(&json!({ "client_secret": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // Removed: a refresh waits for a secret instead of giving the tokens up.
    assert_eq!(delete_secret(&app, PROVIDER).await.status(), 204);
    assert_eq!(
        delete_secret(&app, PROVIDER).await.status(),
        204,
        "none left"
    );
    let report = crate::oauth::refresh(&app, "acme.post").await;
    assert_eq!(report["outcome"], "transient_failure", "{report}");
    assert!(
        report["reason"].as_str().unwrap().contains("client secret"),
        "{report}"
    );
    let profile = app
        .bearer_get_json("/console/v1/auth/profiles/acme.post")
        .await;
    assert_eq!(
        profile["credential"]["refresh_state"]["needs_reauth"], false,
        "{profile}"
    );
    fake.snapshot(|s| assert_eq!(s.client_auth_refused, 0, "nothing was sent without it"));

    // Set again (after a restart, from the vault), the refresh goes through.
    assert_eq!(
        put_secret(&app, PROVIDER, json!({ "client_secret": SECRET }))
            .await
            .status(),
        204
    );
    let app = app.restart().await;
    let report = crate::oauth::refresh(&app, "acme.post").await;
    assert_eq!(report["outcome"], "succeeded", "{report}");
    let audit = app
        .bearer_get_json("/console/v1/audit?kind=client_secret_changed")
        .await;
    let details: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert_eq!(
        details,
        ["set", "removed", "set (unchanged)", "set"],
        "{audit}"
    );
    assert_no_secret("the audit log", &audit.to_string());
}

/// A node on `dir` whose `custom:acme` is the fake as a `client_secret_basic` client;
/// on the database at `url` when given.
async fn confidential_node(
    fake: &FakeOAuth,
    dir: std::sync::Arc<tempfile::TempDir>,
    url: Option<&str>,
) -> TestApp {
    let mut settings = crate::helpers::test_settings(&dir);
    if let Some(url) = url {
        settings.storage.url = Some(palyra_actors::SecretString::new(url.to_owned()));
    }
    let mut provider = acme_provider(&fake.url());
    provider.client_auth = ClientAuth::ClientSecretBasic;
    settings.providers.custom.insert("acme".into(), provider);
    crate::helpers::start(dir, settings)
        .await
        .expect("the node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_secret_set_through_one_node_is_used_at_once_by_another() {
    if !palyra::testkit::postgres::enabled() {
        return;
    }
    let fake = FakeOAuth::start(3600).await;
    fake.configure(|s| s.client_auth = FakeClientAuth::Basic(SECRET.into()));
    let a = confidential_node(
        &fake,
        std::sync::Arc::new(tempfile::tempdir().unwrap()),
        None,
    )
    .await;
    let url = a.settings.storage.url.as_ref().unwrap().expose().to_owned();
    // The vault key is the same on every node.
    let b_dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    std::fs::create_dir_all(b_dir.path().join("data")).unwrap();
    let key = a.dir.path().join("data/vault.key");
    let b_key = b_dir.path().join("data/vault.key");
    std::fs::copy(&key, &b_key).unwrap();
    let b = confidential_node(&fake, b_dir, Some(&url)).await;

    assert_eq!(
        put_secret(&a, PROVIDER, json!({ "client_secret": SECRET }))
            .await
            .status(),
        204
    );
    // B opens it from the shared vault table, before or without the change feed.
    sign_in(&b, &fake, "acme.cluster").await;
    assert_eq!(
        crate::oauth::refresh(&b, "acme.cluster").await["outcome"],
        "succeeded"
    );
    fake.snapshot(|s| assert_eq!((s.client_auth_ok, s.client_auth_refused), (2, 0)));
}
