//! Resolution of an agent's candidates through `GET /console/v1/auth/resolve` and
//! `palyra auth profiles resolve`, each skip explained; the CLI's candidate flags and
//! its run attempts.

use std::process::Stdio;

use palyra::testkit::scripted::{Answer, RetryAfter, ScriptedModel};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, TestApp, error_code, spawn_app_with};
use crate::providers_failover::{add_key, fire};

/// Runs the CLI against `app`; answers (success, stdout, stderr).
async fn palyra(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_palyra"))
        .args(args)
        .env("PALYRA_URL", &app.base)
        .env("PALYRA_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.http
        .get(app.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_agents_candidates_resolve_to_the_first_usable_one_with_each_skip_explained() {
    let fake = ScriptedModel::start().await;
    fake.script(
        "key-limited-0001",
        vec![Answer::RateLimited(Some(RetryAfter::Seconds(60)))],
    );
    fake.script(
        "key-good-0000001",
        vec![Answer::Ok {
            input: 2,
            output: 1,
        }],
    );
    let url = fake.url();
    let app = spawn_app_with(move |s| s.providers.openai.api_base_url = url).await;
    add_key(&app, "k1", "openai", "key-limited-0001").await;
    add_key(&app, "k2", "openai", "key-good-0000001").await;

    let (ok, out, err) = palyra(
        &app,
        &[
            "--json",
            "agents",
            "create",
            "--agent-id",
            "a1",
            "--candidate",
            "k1=m1",
            "--candidate",
            "k2=m2",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        created["model_profiles"],
        json!([{ "profile_id": "k1", "model": "m1" }, { "profile_id": "k2", "model": "m2" }])
    );
    assert_eq!(created["model"], "m1");

    let first = app
        .bearer_get_json("/console/v1/auth/resolve?agent_id=a1")
        .await;
    assert_eq!(
        (&first["profile_id"], &first["model"], &first["reason"]),
        (&json!("k1"), &json!("m1"), &json!("candidate"))
    );
    assert_eq!(first["skipped"], json!([]));

    let run = fire(&app, "o1", "a1").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let after = app
        .bearer_get_json("/console/v1/auth/resolve?agent_id=a1")
        .await;
    assert_eq!(
        (&after["profile_id"], &after["model"]),
        (&json!("k2"), &json!("m2"))
    );
    assert_eq!(after["provider"], "openai");
    assert_eq!(after["skipped"][0]["profile_id"], "k1");
    assert_eq!(after["skipped"][0]["reason"], "rate_limited");
    assert!(after["skipped"][0]["until"].is_string());

    let (ok, out, err) = palyra(&app, &["auth", "profiles", "resolve", "--agent-id", "a1"]).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("k2 ("), "{out}");
    assert!(out.contains("skipped k1 (rate_limited)"), "{out}");

    let (ok, out, err) = palyra(&app, &["objectives", "runs", "o1"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("k1:rate_limited > k2:ok"), "{out}");
    assert!(out.contains("3 (2+1)"), "{out}");

    let (ok, out, err) = palyra(
        &app,
        &[
            "--json",
            "agents",
            "update",
            "a1",
            "--clear-candidates",
            "--profile",
            "k2",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let updated: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(updated["model_profiles"], json!([]));
    let single = app
        .bearer_get_json("/console/v1/auth/resolve?agent_id=a1")
        .await;
    assert_eq!(
        (&single["profile_id"], &single["model"]),
        (&json!("k2"), &json!("m1"))
    );
}

#[tokio::test]
async fn resolve_needs_a_provider_or_an_existing_agent() {
    let app = spawn_app_with(|_| {}).await;
    let neither = get(&app, "/console/v1/auth/resolve").await;
    assert_eq!(neither.status(), 400);
    assert_eq!(error_code(neither).await, "invalid_field");
    let unknown = get(&app, "/console/v1/auth/resolve?agent_id=nobody").await;
    assert_eq!(unknown.status(), 404);
    // An agent without a profile is its `openai` resolution, as its runs are.
    add_key(&app, "g1", "openai", "key-any-00000001").await;
    let created = app
        .bearer_post(
            "/console/v1/agents",
            json!({ "agent_id": "a1", "model": "m" }),
        )
        .await;
    assert_eq!(created.status(), 200);
    let answer = app
        .bearer_get_json("/console/v1/auth/resolve?agent_id=a1")
        .await;
    assert_eq!(
        (&answer["profile_id"], &answer["reason"]),
        (&json!("g1"), &json!("only_candidate"))
    );
}
