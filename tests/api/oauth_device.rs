//! Through the real binaries: device sign-in (RFC 8628) with `palyra auth login
//! --device`, and a confidential client (`client_secret_basic`) whose secret reaches
//! the provider in the Authorization header and nowhere in the daemon's logs.

use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::fakes::{FakeClientAuth, FakeOAuth};
use crate::helpers::{ADMIN_TOKEN, TestApp, start_child};
use crate::oauth::{PROVIDER, acme_provider};

/// The fake as `custom:acme`, with its device endpoint, for a palyrad child; its
/// scopes (a list, which the environment cannot give) in a config file in `dir`.
pub(crate) fn acme_env(base: &str, dir: &std::path::Path) -> Vec<(String, String)> {
    let p = "PALYRA_PROVIDERS__CUSTOM__ACME__";
    let config = dir.join("palyrad.toml");
    std::fs::write(
        &config,
        "[providers.custom.acme]\nscopes = [\"openid\", \"offline_access\"]\n",
    )
    .unwrap();
    vec![
        ("PALYRA_CONFIG".to_owned(), config.display().to_string()),
        (format!("{p}API_BASE_URL"), base.to_owned()),
        (
            format!("{p}AUTHORIZATION_ENDPOINT"),
            format!("{base}/authorize"),
        ),
        (format!("{p}TOKEN_ENDPOINT"), format!("{base}/token")),
        (format!("{p}REVOCATION_ENDPOINT"), format!("{base}/revoke")),
        (
            format!("{p}DEVICE_AUTHORIZATION_ENDPOINT"),
            format!("{base}/device_authorization"),
        ),
        (format!("{p}CLIENT_ID"), "palyra-cli".to_owned()),
    ]
}

pub(crate) fn as_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn login_cli(base: &str, extra: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_palyra"))
        .args(["auth", "login", "custom:acme", "--device"])
        .args(extra)
        .env("PALYRA_URL", base)
        .env("PALYRA_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn a_headless_daemon_signs_in_with_the_device_flow_through_the_cli() {
    let fake = FakeOAuth::start(3600).await;
    // One slow_down before the approval: the daemon must poll 5 s less often after it.
    fake.configure(|s| s.forced_slow_downs = 1);
    let dir = tempfile::tempdir().unwrap();
    let env = acme_env(&fake.url(), dir.path());
    let daemon = start_child(&dir.path().join("data"), &as_refs(&env)).await;
    let mut child = login_cli(
        &daemon.base,
        &["--profile-id", "acme.device", "--profile-name", "Acme"],
    );
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let uri = stdout
        .next_line()
        .await
        .unwrap()
        .expect("the verification URI");
    assert_eq!(uri, "https://fake-oauth.example/device");
    let code_line = stdout.next_line().await.unwrap().expect("the user code");
    let user_code = code_line
        .strip_prefix("code: ")
        .expect(&code_line)
        .to_owned();
    // The operator is slow: the daemon is told authorization_pending meanwhile.
    for _ in 0..100 {
        if fake.snapshot(|s| s.device_pending >= 1) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(fake.answer_device(&user_code, true));
    let rest = stdout.next_line().await.unwrap().unwrap_or_default();
    let status = child.wait().await.unwrap();
    assert!(status.success(), "the CLI succeeds: {rest}");
    assert_eq!(rest, "signed in: profile acme.device");
    fake.snapshot(|s| {
        assert_eq!(s.device_slow_downs, 1, "the forced one only");
        assert_eq!(
            s.device_polls_too_fast, 0,
            "slow_down and the interval honoured"
        );
        assert_eq!(s.code_grants, 1);
    });
    let profile: Value = reqwest::Client::new()
        .get(format!(
            "{}/console/v1/auth/profiles/acme.device",
            daemon.base
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(profile["credential"]["type"], "oauth", "{profile}");
    assert_eq!(profile["credential"]["refreshable"], true);
    let (_, log) = daemon.terminate().await;
    assert!(
        !log.contains("DEVICE-CODE-"),
        "the device code is never logged"
    );
    assert!(!log.contains("ACCESS-TOKEN-") && !log.contains("REFRESH-TOKEN-"));
}

#[tokio::test]
async fn a_refused_device_sign_in_fails_the_cli_with_the_reason() {
    let fake = FakeOAuth::start(3600).await;
    let dir = tempfile::tempdir().unwrap();
    let env = acme_env(&fake.url(), dir.path());
    let daemon = start_child(&dir.path().join("data"), &as_refs(&env)).await;
    let mut child = login_cli(&daemon.base, &["--profile-id", "acme.refused"]);
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    stdout
        .next_line()
        .await
        .unwrap()
        .expect("the verification URI");
    let code_line = stdout.next_line().await.unwrap().expect("the user code");
    assert!(fake.answer_device(code_line.strip_prefix("code: ").unwrap(), false));
    let output = child.wait_with_output().await.unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refused the sign-in"), "{stderr}");
    daemon.terminate().await;
}

#[tokio::test]
async fn a_provider_without_a_device_endpoint_refuses_device_sign_in() {
    let fake = FakeOAuth::start(3600).await;
    let app = crate::oauth::app_with_oauth(&fake, 300).await;
    let response = device(&app).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body.to_string().contains("device_authorization_endpoint"),
        "{body}"
    );
}

async fn device(app: &TestApp) -> reqwest::Response {
    app.bearer_post(
        &format!("/console/v1/auth/providers/{PROVIDER}/device"),
        json!({ "profile_name": "Acme" }),
    )
    .await
}

#[tokio::test]
async fn the_device_flow_works_through_the_api_on_the_configured_backend() {
    let fake = FakeOAuth::start(3600).await;
    let base = fake.url();
    let app = crate::helpers::spawn_app_with(move |s| {
        let mut provider = acme_provider(&base);
        provider.device_authorization_endpoint = Some(format!("{base}/device_authorization"));
        s.providers.custom.insert("acme".into(), provider);
    })
    .await;
    let started: Value = device(&app).await.json().await.unwrap();
    let attempt = started["attempt_id"].as_str().unwrap();
    assert!(
        started["verification_uri_complete"]
            .as_str()
            .unwrap()
            .contains("user_code=")
    );
    assert!(
        started.get("device_code").is_none(),
        "the device code stays in the daemon"
    );
    let state_path =
        format!("/console/v1/auth/providers/{PROVIDER}/callback-state?attempt_id={attempt}");
    assert_eq!(app.bearer_get_json(&state_path).await["state"], "pending");
    assert!(fake.answer_device(started["user_code"].as_str().unwrap(), true));
    let mut outcome = Value::Null;
    for _ in 0..100 {
        outcome = app.bearer_get_json(&state_path).await;
        if outcome["state"] != "pending" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(outcome["state"], "succeeded", "{outcome}");
    let profile_id = outcome["profile_id"].as_str().unwrap();
    let report = crate::oauth::refresh(&app, profile_id).await;
    assert_eq!(
        report["outcome"], "succeeded",
        "the device profile refreshes"
    );
    let audit = app
        .bearer_get_json("/console/v1/audit?kind=signin_completed")
        .await;
    assert!(audit.to_string().contains("device"), "{audit}");
}

#[tokio::test]
async fn client_secret_basic_sends_the_secret_in_the_header_and_never_logs_it() {
    let fake = FakeOAuth::start(3600).await;
    let secret = "basic-secret-7d3e19b2:with/odd chars";
    fake.configure(|s| s.client_auth = FakeClientAuth::Basic(secret.into()));
    let dir = tempfile::tempdir().unwrap();
    let mut env = acme_env(&fake.url(), dir.path());
    env.extend([
        (
            "PALYRA_PROVIDERS__CUSTOM__ACME__CLIENT_AUTH".to_owned(),
            "client_secret_basic".to_owned(),
        ),
        (
            "PALYRA_PROVIDERS__CUSTOM__ACME__CLIENT_SECRET_ENV".to_owned(),
            "ACME_CLIENT_SECRET".to_owned(),
        ),
        ("ACME_CLIENT_SECRET".to_owned(), secret.to_owned()),
        // Every level: the secret must not show even in trace output.
        ("RUST_LOG".to_owned(), "trace".to_owned()),
    ]);
    let daemon = start_child(&dir.path().join("data"), &as_refs(&env)).await;
    let http = reqwest::Client::new();
    let started: Value = http
        .post(format!(
            "{}/console/v1/auth/providers/{PROVIDER}/bootstrap",
            daemon.base
        ))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "profile_name": "Acme", "profile_id": "acme.basic" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (_, redirect) = fake.authorize(started["authorization_url"].as_str().unwrap());
    let redirect = url::Url::parse(&redirect).unwrap();
    let page = http
        .get(format!(
            "{}{}?{}",
            daemon.base,
            redirect.path(),
            redirect.query().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200, "{}", page.text().await.unwrap());
    let refreshed: Value = http
        .post(format!(
            "{}/console/v1/auth/profiles/acme.basic/refresh",
            daemon.base
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(refreshed["outcome"], "succeeded", "{refreshed}");
    let deleted = http
        .delete(format!(
            "{}/console/v1/auth/profiles/acme.basic",
            daemon.base
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());
    fake.snapshot(|s| {
        assert_eq!(s.client_auth_refused, 0, "every request authenticated");
        assert_eq!(s.client_auth_ok, 3, "code, refresh and revocation");
        assert_eq!(s.revoked.len(), 1);
    });
    let (_, log) = daemon.terminate().await;
    assert!(
        log.contains("\"TRACE\"") || log.contains("\"DEBUG\""),
        "trace logging was on"
    );
    let encoded = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!(
            "palyra-cli:{}",
            url::form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>()
        ))
    };
    for needle in ["basic-secret-7d3e19b2", encoded.as_str()] {
        assert!(!log.contains(needle), "the client secret is in the log");
    }
}
