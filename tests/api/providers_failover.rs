//! Provider adapters, failover across an agent's candidates, and cooldowns, against
//! a fake provider scripted per key (OpenAI chat completions and the Anthropic
//! Messages API, which refuses calls without `x-api-key`, `anthropic-version` or
//! `max_tokens`).

use std::time::{Duration, SystemTime};

use palyra::settings::{ProviderConfig, Validation};
use palyra::testkit::scripted::{Answer, Api, RetryAfter, ScriptedModel};
use serde_json::{Value, json};

use crate::fakes::FakeOAuth;
use crate::helpers::{TestApp, error_code, spawn_app_with};

async fn app_on(fake: &ScriptedModel) -> TestApp {
    let url = fake.url();
    spawn_app_with(move |s| {
        s.providers.openai.api_base_url = url.clone();
        s.providers.anthropic.api_base_url = url;
        s.objectives.provider_timeout_s = 1;
    })
    .await
}

pub(crate) async fn add_key(app: &TestApp, id: &str, provider: &str, key: &str) {
    let response = app
        .bearer_post(
            "/console/v1/auth/profiles",
            json!({ "profile_id": id, "provider": provider, "profile_name": id,
                    "credential": { "type": "api_key", "api_key": key }, "validate": false }),
        )
        .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

async fn agent(app: &TestApp, body: Value) -> Value {
    let response = app.bearer_post("/console/v1/agents", body).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    response.json().await.unwrap()
}

/// Creates an objective for `agent_id` (once) and fires it; answers the finished run.
pub(crate) async fn fire(app: &TestApp, objective_id: &str, agent_id: &str) -> Value {
    let existing = app
        .http
        .get(app.url(&format!("/console/v1/objectives/{objective_id}")))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    if existing.status() == 404 {
        let created = app
            .bearer_post(
                "/console/v1/objectives",
                json!({ "objective_id": objective_id, "agent_id": agent_id, "name": "Go",
                        "prompt": "say hi" }),
            )
            .await;
        assert_eq!(created.status(), 200, "{}", created.text().await.unwrap());
    }
    let before = app
        .bearer_get_json(&format!("/console/v1/objectives/{objective_id}"))
        .await["run_seq"]
        .as_u64()
        .unwrap();
    let fired = app
        .bearer_post(
            &format!("/console/v1/objectives/{objective_id}/lifecycle"),
            json!({ "action": "fire" }),
        )
        .await;
    assert_eq!(fired.status(), 200, "{}", fired.text().await.unwrap());
    let run_id = format!("{objective_id}-{}", before + 1);
    for _ in 0..200 {
        let page = app
            .bearer_get_json(&format!("/console/v1/objectives/{objective_id}/runs"))
            .await;
        if let Some(run) = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["run_id"] == run_id.as_str())
            && run["finished_at"].is_string()
        {
            return run.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("run {run_id} did not finish");
}

fn outcomes(run: &Value) -> Vec<(String, String)> {
    run["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["profile_id"].as_str().unwrap().to_owned(),
                a["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

async fn health_of(app: &TestApp, id: &str) -> Value {
    let report = app.bearer_get_json("/console/v1/auth/health").await;
    report["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["profile_id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no health for {id}: {report}"))
}

/// Seconds from now until an RFC 3339 time.
fn seconds_until(at: &Value) -> i64 {
    let at = chrono::DateTime::parse_from_rfc3339(at.as_str().expect("a time")).unwrap();
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds()
}

#[tokio::test]
async fn an_anthropic_profile_speaks_the_messages_api_and_records_input_and_output_tokens() {
    let fake = ScriptedModel::start().await;
    fake.script(
        "sk-ant-good-0001",
        vec![Answer::Ok {
            input: 11,
            output: 5,
        }],
    );
    let app = app_on(&fake).await;
    add_key(&app, "claude", "anthropic", "sk-ant-good-0001").await;
    agent(
        &app,
        json!({ "agent_id": "a1", "default_model_profile": "claude", "model": "claude-test" }),
    )
    .await;
    let run = fire(&app, "o1", "a1").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        (
            &run["prompt_tokens"],
            &run["completion_tokens"],
            &run["tokens"]
        ),
        (&json!(11), &json!(5), &json!(16))
    );
    assert!(
        run["output"]
            .as_str()
            .unwrap()
            .contains("says hi to say hi")
    );
    assert_eq!(outcomes(&run), pairs(&[("claude", "ok")]));
    assert_eq!(run["attempts"][0]["model"], "claude-test");
    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    // The fake answers 400 without anthropic-version or max_tokens, and 401 without
    // x-api-key: a 200 proves all three were sent, with the key in x-api-key.
    assert_eq!(
        (calls[0].api, calls[0].status, calls[0].key.as_str()),
        (Api::Anthropic, 200, "sk-ant-good-0001")
    );
    assert_eq!(
        calls[0].run_id.as_deref(),
        Some(run["run_id"].as_str().unwrap())
    );
    let objective = app.bearer_get_json("/console/v1/objectives/o1").await;
    assert_eq!(objective["usage"]["tokens"], 16, "budgets count the total");
}

#[tokio::test]
async fn a_custom_provider_with_the_anthropic_api_style_uses_the_messages_api() {
    let fake = ScriptedModel::start().await;
    fake.script(
        "acme-good-key-0001",
        vec![Answer::Ok {
            input: 2,
            output: 3,
        }],
    );
    let url = fake.url();
    let app = spawn_app_with(move |s| {
        s.providers.custom.insert(
            "acme".into(),
            ProviderConfig {
                api_base_url: url,
                api_style: Some(palyra_actors::provider::ApiStyle::Anthropic),
                validation: Validation::None,
                backoff_base_ms: 200,
                backoff_cap_ms: 1_000,
                ..ProviderConfig::default()
            },
        );
    })
    .await;
    add_key(&app, "acme", "custom:acme", "acme-good-key-0001").await;
    agent(
        &app,
        json!({ "agent_id": "a1", "model_profiles": [{ "profile_id": "acme", "model": "m" }] }),
    )
    .await;
    let run = fire(&app, "o1", "a1").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(fake.calls()[0].api, Api::Anthropic);
}

#[tokio::test]
async fn a_run_fails_over_in_order_records_every_attempt_and_skips_cooling_profiles() {
    let fake = ScriptedModel::start().await;
    fake.script(
        "key-limited-0001",
        vec![Answer::RateLimited(Some(RetryAfter::Seconds(40)))],
    );
    fake.script(
        "key-broken-00001",
        vec![Answer::Status(500, "server_error")],
    );
    fake.script(
        "key-overload-001",
        vec![Answer::Status(529, "overloaded_error")],
    );
    fake.script(
        "key-good-0000001",
        vec![Answer::Ok {
            input: 3,
            output: 4,
        }],
    );
    let app = app_on(&fake).await;
    for (id, key) in [
        ("k1", "key-limited-0001"),
        ("k2", "key-broken-00001"),
        ("k3", "key-overload-001"),
        ("k4", "key-good-0000001"),
    ] {
        add_key(&app, id, "openai", key).await;
    }
    let created = agent(
        &app,
        json!({ "agent_id": "a1", "model_profiles": [
            { "profile_id": "k1", "model": "m1" }, { "profile_id": "k2", "model": "m2" },
            { "profile_id": "k3", "model": "m3" }, { "profile_id": "k4", "model": "m4" } ] }),
    )
    .await;
    assert_eq!(created["model"], "m1", "the first candidate's model");
    let run = fire(&app, "o1", "a1").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        outcomes(&run),
        pairs(&[
            ("k1", "rate_limited"),
            ("k2", "unavailable"),
            ("k3", "unavailable"),
            ("k4", "ok")
        ])
    );
    let models: Vec<&str> = run["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["model"].as_str().unwrap())
        .collect();
    assert_eq!(models, ["m1", "m2", "m3", "m4"]);
    assert!(
        run["attempts"][1]["detail"]
            .as_str()
            .unwrap()
            .contains("500")
    );
    assert_eq!(run["tokens"], 7);

    let k1 = health_of(&app, "k1").await;
    assert_eq!(k1["state"], "rate_limited", "{k1}");
    let left = seconds_until(&k1["until"]);
    assert!((30..=40).contains(&left), "until Retry-After: {left} s");
    for id in ["k2", "k3"] {
        let h = health_of(&app, id).await;
        assert_eq!(h["state"], "cooling_down", "{h}");
        assert!(
            (20..=30).contains(&seconds_until(&h["until"])),
            "30 s first: {h}"
        );
        assert_eq!(h["cooldown"]["reason"], "unavailable");
    }
    assert_eq!(health_of(&app, "k4").await["state"], "static");

    // The next run passes over the cooling profiles without calling them.
    let again = fire(&app, "o1", "a1").await;
    assert_eq!(again["status"], "succeeded");
    assert_eq!(
        outcomes(&again),
        pairs(&[
            ("k1", "skipped"),
            ("k2", "skipped"),
            ("k3", "skipped"),
            ("k4", "ok")
        ])
    );
    assert_eq!(
        fake.keys_called(),
        [
            "key-limited-0001",
            "key-broken-00001",
            "key-overload-001",
            "key-good-0000001",
            "key-good-0000001"
        ]
    );

    // Resolution says why it passed over the default.
    let set = app
        .bearer_post("/console/v1/auth/profiles/k1/default", json!({}))
        .await;
    assert_eq!(set.status(), 200);
    let answer = app
        .bearer_get_json("/console/v1/auth/resolve?provider=openai")
        .await;
    assert_eq!(
        (answer["profile_id"].as_str(), answer["reason"].as_str()),
        (Some("k4"), Some("fallback"))
    );
    let skipped: Vec<(&str, &str)> = answer["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["profile_id"].as_str().unwrap(),
                s["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        skipped,
        [
            ("k1", "rate_limited"),
            ("k2", "cooling_down"),
            ("k3", "cooling_down")
        ]
    );
    assert!(answer["skipped"][0]["until"].is_string());
}

#[tokio::test]
async fn cooldowns_survive_a_restart_and_a_success_clears_them() {
    let fake = ScriptedModel::start().await;
    let at = SystemTime::now() + Duration::from_secs(120);
    fake.script(
        "key-dated-000001",
        vec![Answer::RateLimited(Some(RetryAfter::Date(at)))],
    );
    fake.script(
        "key-brief-000001",
        vec![
            Answer::RateLimited(Some(RetryAfter::Seconds(1))),
            Answer::Ok {
                input: 1,
                output: 1,
            },
        ],
    );
    fake.script(
        "key-good-0000001",
        vec![Answer::Ok {
            input: 1,
            output: 1,
        }],
    );
    let app = app_on(&fake).await;
    add_key(&app, "dated", "openai", "key-dated-000001").await;
    add_key(&app, "brief", "openai", "key-brief-000001").await;
    add_key(&app, "good", "openai", "key-good-0000001").await;
    agent(
        &app,
        json!({ "agent_id": "a1", "model_profiles": [
            { "profile_id": "dated", "model": "m" }, { "profile_id": "brief", "model": "m" },
            { "profile_id": "good", "model": "m" } ] }),
    )
    .await;
    let run = fire(&app, "o1", "a1").await;
    assert_eq!(
        outcomes(&run),
        pairs(&[
            ("dated", "rate_limited"),
            ("brief", "rate_limited"),
            ("good", "ok")
        ])
    );
    let dated = health_of(&app, "dated").await;
    assert!(
        (100..=120).contains(&seconds_until(&dated["until"])),
        "the HTTP date: {dated}"
    );

    let app = app.restart().await;
    let dated = health_of(&app, "dated").await;
    assert_eq!(dated["state"], "rate_limited", "persisted: {dated}");
    let answer = app
        .bearer_get_json("/console/v1/auth/resolve?provider=openai&agent_id=a1")
        .await;
    assert_eq!(
        answer["profile_id"],
        Value::Null,
        "three global profiles, no default"
    );
    let skip = answer["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["profile_id"] == "dated")
        .cloned()
        .unwrap_or_else(|| panic!("dated is skipped: {answer}"));
    assert_eq!(skip["reason"], "rate_limited");

    // `brief`'s second is over: it is called again, answers, and its cooldown is gone.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let run = fire(&app, "o1", "a1").await;
    assert_eq!(
        outcomes(&run),
        pairs(&[("dated", "skipped"), ("brief", "ok")])
    );
    let brief = health_of(&app, "brief").await;
    assert_eq!(
        (&brief["state"], &brief["cooldown"]),
        (&json!("static"), &Value::Null)
    );
    let profile = app.bearer_get_json("/console/v1/auth/profiles/brief").await;
    assert!(
        profile.get("cooldown").is_none(),
        "cleared in the record: {profile}"
    );
}

#[tokio::test]
async fn a_bad_request_is_not_tried_on_another_candidate_and_cools_nothing() {
    let fake = ScriptedModel::start().await;
    fake.script(
        "key-bad-00000001",
        vec![Answer::Status(400, "invalid_request_error")],
    );
    fake.script(
        "key-good-0000001",
        vec![Answer::Ok {
            input: 1,
            output: 1,
        }],
    );
    let app = app_on(&fake).await;
    add_key(&app, "bad", "openai", "key-bad-00000001").await;
    add_key(&app, "good", "openai", "key-good-0000001").await;
    agent(
        &app,
        json!({ "agent_id": "a1", "model_profiles": [
            { "profile_id": "bad", "model": "m" }, { "profile_id": "good", "model": "m" } ] }),
    )
    .await;
    let run = fire(&app, "o1", "a1").await;
    assert_eq!(run["status"], "failed");
    assert_eq!(outcomes(&run), pairs(&[("bad", "bad_request")]));
    assert!(
        run["error"]
            .as_str()
            .unwrap()
            .contains("HTTP 400 (invalid_request_error)")
    );
    assert_eq!(fake.keys_called(), ["key-bad-00000001"]);
    assert_eq!(health_of(&app, "bad").await["state"], "static");
}

#[tokio::test]
async fn billing_a_refused_key_and_a_hang_fail_over_each_to_its_own_state() {
    let fake = ScriptedModel::start().await;
    fake.script(
        "key-billing-0001",
        vec![Answer::Status(402, "billing_error")],
    );
    fake.script(
        "key-refused-0001",
        vec![Answer::Status(401, "invalid_api_key")],
    );
    fake.script("key-hang-0000001", vec![Answer::Hang]);
    fake.script(
        "key-slow-0000001",
        vec![Answer::Slow {
            delay: Duration::from_millis(300),
            input: 2,
            output: 2,
        }],
    );
    let app = app_on(&fake).await;
    for (id, key) in [
        ("billing", "key-billing-0001"),
        ("refused", "key-refused-0001"),
        ("hang", "key-hang-0000001"),
        ("slow", "key-slow-0000001"),
    ] {
        add_key(&app, id, "openai", key).await;
    }
    agent(
        &app,
        json!({ "agent_id": "a1", "model_profiles": [
            { "profile_id": "billing", "model": "m" }, { "profile_id": "refused", "model": "m" },
            { "profile_id": "hang", "model": "m" }, { "profile_id": "slow", "model": "m" } ] }),
    )
    .await;
    let run = fire(&app, "o1", "a1").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        outcomes(&run),
        pairs(&[
            ("billing", "billing"),
            ("refused", "auth"),
            ("hang", "unavailable"),
            ("slow", "ok")
        ])
    );
    assert!(
        run["attempts"][2]["detail"]
            .as_str()
            .unwrap()
            .contains("in time")
    );
    let billing = health_of(&app, "billing").await;
    assert_eq!(billing["state"], "cooling_down");
    let hours = seconds_until(&billing["until"]) / 3600;
    assert_eq!(hours, 4, "5 h first (a few seconds under): {billing}");
    assert_eq!(health_of(&app, "refused").await["state"], "needs_reauth");
    assert_eq!(health_of(&app, "hang").await["state"], "cooling_down");
    // The fake's error messages quote the key; nothing the daemon recorded does.
    let recorded = format!(
        "{run}{}{}",
        app.bearer_get_json("/console/v1/auth/health").await,
        app.bearer_get_json("/console/v1/auth/profiles").await
    );
    for key in ["key-billing-0001", "key-refused-0001", "key-hang-0000001"] {
        assert!(!recorded.contains(key), "{key} leaked: {recorded}");
    }
}

#[tokio::test]
async fn every_candidate_failing_fails_the_run_naming_each() {
    let fake = ScriptedModel::start().await;
    fake.script("key-limited-0001", vec![Answer::RateLimited(None)]);
    fake.script("key-broken-00001", vec![Answer::Status(503, "unavailable")]);
    let app = app_on(&fake).await;
    add_key(&app, "k1", "openai", "key-limited-0001").await;
    add_key(&app, "k2", "openai", "key-broken-00001").await;
    agent(
        &app,
        json!({ "agent_id": "a1", "model_profiles": [
            { "profile_id": "k1", "model": "m" }, { "profile_id": "k2", "model": "m" } ] }),
    )
    .await;
    let run = fire(&app, "o1", "a1").await;
    assert_eq!(run["status"], "failed");
    let error = run["error"].as_str().unwrap();
    assert!(
        error.starts_with("every candidate failed")
            && error.contains("k1")
            && error.contains("503"),
        "{error}"
    );
    let k1 = health_of(&app, "k1").await;
    assert!(
        (20..=30).contains(&seconds_until(&k1["until"])),
        "30 s without Retry-After: {k1}"
    );
}

#[tokio::test]
async fn an_oauth_401_refreshes_once_and_retries_then_marks_needs_reauth() {
    let oauth = FakeOAuth::start(3600).await;
    let fake = ScriptedModel::start().await;
    let (model_url, oauth_url) = (fake.url(), oauth.url());
    let app = spawn_app_with(move |s| {
        let mut acme = crate::oauth::acme_provider(&oauth_url);
        acme.api_base_url = model_url;
        acme.validation = Validation::None;
        s.providers.custom.insert("acme".into(), acme);
    })
    .await;
    crate::oauth::sign_in(&app, &oauth, "acme.main").await;
    // The fake numbers codes and tokens from one counter: the code was 1.
    fake.script("ACCESS-TOKEN-2", vec![Answer::Status(401, "invalid_token")]);
    fake.script(
        "ACCESS-TOKEN-3",
        vec![Answer::Ok {
            input: 1,
            output: 2,
        }],
    );
    agent(
        &app,
        json!({ "agent_id": "a1", "default_model_profile": "acme.main", "model": "m" }),
    )
    .await;
    let run = fire(&app, "o1", "a1").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        outcomes(&run),
        pairs(&[("acme.main", "auth"), ("acme.main", "ok")]),
        "{:?}",
        fake.keys_called()
    );
    assert!(
        run["attempts"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("refreshing")
    );
    assert_eq!(oauth.snapshot(|s| s.refresh_grants), 1);
    assert_eq!(health_of(&app, "acme.main").await["state"], "ok");

    // Refused again after the refresh: one refresh, one retry, then needs_reauth.
    fake.script("ACCESS-TOKEN-3", vec![Answer::Status(401, "invalid_token")]);
    fake.script("ACCESS-TOKEN-4", vec![Answer::Status(401, "invalid_token")]);
    let run = fire(&app, "o1", "a1").await;
    assert_eq!(run["status"], "failed");
    assert_eq!(
        outcomes(&run),
        pairs(&[("acme.main", "auth"), ("acme.main", "auth")])
    );
    assert!(run["error"].as_str().unwrap().contains("needs_reauth"));
    assert_eq!(oauth.snapshot(|s| s.refresh_grants), 2);
    assert_eq!(health_of(&app, "acme.main").await["state"], "needs_reauth");
    assert_eq!(
        fake.keys_called(),
        [
            "ACCESS-TOKEN-2",
            "ACCESS-TOKEN-3",
            "ACCESS-TOKEN-3",
            "ACCESS-TOKEN-4"
        ]
    );
}

#[tokio::test]
async fn candidate_lists_are_checked_and_an_empty_one_is_the_single_profile_case() {
    let fake = ScriptedModel::start().await;
    let app = app_on(&fake).await;
    let nine: Vec<Value> = (0..9)
        .map(|i| json!({ "profile_id": format!("p{i}"), "model": "m" }))
        .collect();
    for body in [
        json!({ "agent_id": "a1", "model_profiles": nine }),
        json!({ "agent_id": "a1", "model_profiles": [
            { "profile_id": "p", "model": "m" }, { "profile_id": "p", "model": "m" } ] }),
        json!({ "agent_id": "a1", "model_profiles": [{ "profile_id": "Bad Id", "model": "m" }] }),
        json!({ "agent_id": "a1", "model_profiles": [{ "profile_id": "p", "model": "" }] }),
        json!({ "agent_id": "a1" }),
    ] {
        let response = app.bearer_post("/console/v1/agents", body.clone()).await;
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(error_code(response).await, "invalid_field");
    }
    fake.script(
        "key-good-0000001",
        vec![Answer::Ok {
            input: 1,
            output: 1,
        }],
    );
    add_key(&app, "good", "openai", "key-good-0000001").await;
    agent(
        &app,
        json!({ "agent_id": "a1", "model": "solo", "default_model_profile": "good",
                "model_profiles": [{ "profile_id": "missing", "model": "m" }] }),
    )
    .await;
    let run = fire(&app, "o1", "a1").await;
    assert_eq!(run["status"], "failed");
    assert_eq!(outcomes(&run), pairs(&[("missing", "skipped")]));
    let patched = app
        .http
        .patch(app.url("/console/v1/agents/a1"))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .json(&json!({ "model_profiles": [] }))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let run = fire(&app, "o1", "a1").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(outcomes(&run), pairs(&[("good", "ok")]));
    assert_eq!(fake.calls()[0].model, "solo");
}

#[tokio::test]
async fn a_new_access_token_refused_by_the_key_check_is_refreshed_once_and_checked_again() {
    let oauth = FakeOAuth::start(3600).await;
    let fake = ScriptedModel::start().await;
    let (model_url, oauth_url) = (fake.url(), oauth.url());
    let app = spawn_app_with(move |s| {
        let mut acme = crate::oauth::acme_provider(&oauth_url);
        acme.api_base_url = model_url;
        acme.validation = Validation::Models;
        s.providers.custom.insert("acme".into(), acme);
    })
    .await;
    // The code is 1, the first access token 2, the refreshed one 3.
    fake.script("ACCESS-TOKEN-2", vec![Answer::Status(401, "invalid_token")]);
    fake.script(
        "ACCESS-TOKEN-3",
        vec![Answer::Ok {
            input: 1,
            output: 1,
        }],
    );
    let profile = crate::oauth::sign_in(&app, &oauth, "acme.main").await;
    assert_eq!(profile["profile_id"], "acme.main");
    assert_eq!(oauth.snapshot(|s| s.refresh_grants), 1);
    let checks: Vec<(Api, String)> = fake.calls().into_iter().map(|c| (c.api, c.key)).collect();
    assert_eq!(
        checks,
        [
            (Api::Models, "ACCESS-TOKEN-2".to_owned()),
            (Api::Models, "ACCESS-TOKEN-3".to_owned())
        ]
    );
    // The refreshed token is the one stored: a run uses it.
    agent(
        &app,
        json!({ "agent_id": "a1", "default_model_profile": "acme.main", "model": "m" }),
    )
    .await;
    let run = fire(&app, "o1", "a1").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        fake.keys_called().last().map(String::as_str),
        Some("ACCESS-TOKEN-3")
    );
}

#[tokio::test]
async fn each_step_of_a_program_fails_over_and_the_tokens_add_up() {
    let fake = ScriptedModel::start().await;
    fake.script(
        "key-limited-0001",
        vec![Answer::RateLimited(Some(RetryAfter::Seconds(30)))],
    );
    fake.script(
        "key-good-0000001",
        vec![Answer::Ok {
            input: 2,
            output: 3,
        }],
    );
    let app = app_on(&fake).await;
    add_key(&app, "k1", "openai", "key-limited-0001").await;
    add_key(&app, "k2", "openai", "key-good-0000001").await;
    agent(
        &app,
        json!({ "agent_id": "a1", "model_profiles": [
            { "profile_id": "k1", "model": "m" }, { "profile_id": "k2", "model": "m" } ] }),
    )
    .await;
    let created = app
        .bearer_post(
            "/console/v1/objectives",
            json!({ "objective_id": "prog", "agent_id": "a1", "kind": "program", "name": "Two",
                    "steps": ["first", "second"] }),
        )
        .await;
    assert_eq!(created.status(), 200, "{}", created.text().await.unwrap());
    let run = fire(&app, "prog", "a1").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    // The second step passes over the profile the first one cooled down.
    assert_eq!(
        outcomes(&run),
        pairs(&[
            ("k1", "rate_limited"),
            ("k2", "ok"),
            ("k1", "skipped"),
            ("k2", "ok")
        ])
    );
    assert_eq!(
        (
            &run["prompt_tokens"],
            &run["completion_tokens"],
            &run["tokens"]
        ),
        (&json!(4), &json!(6), &json!(10))
    );
    let prompts: Vec<String> = fake.calls().into_iter().map(|c| c.prompt).collect();
    assert_eq!(prompts, ["first", "first", "second"]);
}
