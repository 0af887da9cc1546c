//! The audit log: one event per security-relevant action, none carrying a secret,
//! filtered, paged, kept across restarts and pruned by retention.

use std::collections::BTreeSet;
use std::time::Duration;

use palyra::settings::ProviderConfig;
use reqwest::header::COOKIE;
use serde_json::{Value, json};

use crate::fakes::{FakeModel, FakeOAuth, FakeProvider, ForcedAnswer};
use crate::helpers::{ADMIN_TOKEN, TestApp, spawn_app_with};
use crate::oauth::{PROVIDER, acme_provider, refresh, sign_in};

const PLANTED_KEY: &str = "good-PLANTED-api-key-0000111122223333";
const PLANTED_WRONG_TOKEN: &str = "PLANTED-wrong-admin-token-4444555566667777";

async fn audit_page(app: &TestApp, query: &str) -> Value {
    app.bearer_get_json(&format!("/console/v1/audit?{query}"))
        .await
}

fn kinds(page: &Value) -> BTreeSet<String> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

async fn wait_until(mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("condition not reached in 10 s");
}

#[tokio::test]
async fn every_security_event_is_audited_and_none_carries_a_secret() {
    let keys = FakeProvider::start().await;
    let oauth = FakeOAuth::start(3600).await;
    let model = FakeModel::start(5).await;
    let (keys_url, oauth_url, model_url) = (keys.url(), oauth.url(), model.url());
    let app = spawn_app_with(move |s| {
        s.providers
            .custom
            .insert("acme".into(), acme_provider(&oauth_url));
        s.providers.custom.insert(
            "keys".into(),
            ProviderConfig {
                api_base_url: keys_url,
                ..acme_provider("http://127.0.0.1:1")
            },
        );
        s.providers.openai.api_base_url = model_url;
    })
    .await;
    let mut secrets: Vec<String> = vec![
        ADMIN_TOKEN.into(),
        PLANTED_KEY.into(),
        PLANTED_WRONG_TOKEN.into(),
    ];

    // Logins: a wrong token at login and as a bearer token, then a success and logout.
    let wrong = app
        .http
        .post(app.url("/console/v1/auth/login"))
        .json(&json!({ "operator_id": "mallory", "password": PLANTED_WRONG_TOKEN }))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let wrong_bearer = app
        .http
        .get(app.url("/console/v1/auth/profiles"))
        .bearer_auth(PLANTED_WRONG_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_bearer.status(), 401);
    let login = app.login().await;
    let login_request_id = login.request_id.clone();
    secrets.push(login.cookie.clone());
    secrets.push(login.csrf.clone());
    let logout = app
        .http
        .post(app.url("/console/v1/auth/logout"))
        .header(COOKIE, login.cookie_header())
        .header("x-palyra-csrf-token", &login.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);

    // A handoff minted, consumed, and refused the second time.
    let minted: Value = app.mint_handoff(json!({})).await.json().await.unwrap();
    let url = minted["handoff_url"].as_str().unwrap().to_owned();
    secrets.push(url.split("token=").nth(1).unwrap().to_owned());
    let redeemed = crate::helpers::redeem_link(&app.http, &url).await;
    assert_eq!(redeemed.status, 200);
    secrets.push(redeemed.csrf.expect("the page's CSRF token"));
    assert_eq!(
        crate::helpers::redeem_link(&app.http, &url).await.status,
        401
    );

    // API-key profiles: created (validated), made default, deleted; a rejected key.
    let created = app
        .bearer_post(
            "/console/v1/auth/profiles",
            json!({ "profile_id": "keys.main", "provider": "custom:keys", "profile_name": "Keys",
                    "credential": { "type": "api_key", "api_key": PLANTED_KEY } }),
        )
        .await;
    assert_eq!(created.status(), 200);
    let rejected = app
        .bearer_post(
            "/console/v1/auth/profiles",
            json!({ "profile_id": "keys.bad", "provider": "custom:keys", "profile_name": "Bad",
                    "credential": { "type": "api_key", "api_key": "bad-PLANTED-key-88889999" } }),
        )
        .await;
    assert_eq!(rejected.status(), 422);
    secrets.push("bad-PLANTED-key-88889999".into());
    let default = app
        .bearer_post("/console/v1/auth/profiles/keys.main/default", json!({}))
        .await;
    assert_eq!(default.status(), 200);
    let deleted = app
        .http
        .delete(app.url("/console/v1/auth/profiles/keys.main"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);

    // OAuth: a sign-in, a refresh, a refused refresh (needs re-auth), a bogus callback.
    sign_in(&app, &oauth, "acme.one").await;
    assert_eq!(refresh(&app, "acme.one").await["outcome"], "succeeded");
    oauth.force(ForcedAnswer::Status(400, "invalid_grant"));
    assert_eq!(
        refresh(&app, "acme.one").await["outcome"],
        "permanent_failure"
    );
    let bogus = app
        .http
        .get(app.url(&format!(
            "/console/v1/auth/providers/{PROVIDER}/callback?state=no-such-state&code=c"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(bogus.status(), 400);
    // A sign-in the operator declines at the provider fails, and says so.
    let declined = crate::oauth::bootstrap(&app, "acme.declined").await;
    let authorization = url::Url::parse(declined["authorization_url"].as_str().unwrap()).unwrap();
    let state = authorization
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    secrets.push(state.clone());
    let denied = app
        .http
        .get(app.url(&format!(
            "/console/v1/auth/providers/{PROVIDER}/callback?state={state}&error=access_denied"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 400);
    for n in 1..=3 {
        secrets.push(format!("ACCESS-TOKEN-{n}"));
        secrets.push(format!("REFRESH-TOKEN-{n}"));
    }

    // Agents and objectives: created, updated, activated, fired until the budget ends.
    let profile = app
        .bearer_post(
            "/console/v1/auth/profiles",
            json!({ "profile_id": "p1", "provider": "openai", "profile_name": "P",
                    "credential": { "type": "api_key", "api_key": "good-model-PLANTED-1234" },
                    "validate": false, "set_default": true }),
        )
        .await;
    assert_eq!(profile.status(), 200);
    secrets.push("good-model-PLANTED-1234".into());
    for (path, body) in [
        (
            "/console/v1/agents",
            json!({ "agent_id": "a1", "model": "gpt-test", "default_model_profile": "p1" }),
        ),
        (
            "/console/v1/objectives",
            json!({ "objective_id": "o1", "agent_id": "a1", "name": "Once", "prompt": "go",
                    "budget": { "max_runs": 1 } }),
        ),
        (
            "/console/v1/objectives/o1/lifecycle",
            json!({ "action": "activate" }),
        ),
        (
            "/console/v1/objectives/o1/lifecycle",
            json!({ "action": "fire" }),
        ),
    ] {
        let r = app.bearer_post(path, body).await;
        assert_eq!(r.status(), 200, "{path}: {}", r.text().await.unwrap());
    }
    let patched = app
        .http
        .patch(app.url("/console/v1/agents/a1"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "display_name": "Agent One" }))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let patched = app
        .http
        .patch(app.url("/console/v1/objectives/o1"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "name": "Just once" }))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    wait_until(async || {
        app.bearer_get_json("/console/v1/objectives/o1").await["state"] == "paused"
    })
    .await;
    let spare = app
        .bearer_post(
            "/console/v1/agents",
            json!({ "agent_id": "a2", "model": "m" }),
        )
        .await;
    assert_eq!(spare.status(), 200);
    let removed = app
        .http
        .delete(app.url("/console/v1/agents/a2"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);

    // The vault key, rotated.
    let rotated = app
        .bearer_post("/console/v1/vault/rotate-key", json!({}))
        .await;
    assert_eq!(rotated.status(), 200);

    let page = audit_page(&app, "limit=500").await;
    let seen = kinds(&page);
    for kind in [
        "login",
        "login_failed",
        "session_revoked",
        "handoff_minted",
        "handoff_consumed",
        "profile_created",
        "profile_updated",
        "profile_deleted",
        "profile_refreshed",
        "profile_needs_reauth",
        "signin_started",
        "signin_completed",
        "signin_failed",
        "agent_created",
        "agent_updated",
        "agent_deleted",
        "objective_created",
        "objective_updated",
        "objective_lifecycle",
        "budget_exhausted",
        "vault_key_rotated",
    ] {
        assert!(seen.contains(kind), "no {kind} event in {seen:?}");
    }
    let text = page.to_string();
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "the audit log holds a secret: {secret}"
        );
    }

    let events = page["events"].as_array().unwrap();
    let find = |kind: &str, outcome: &str| {
        events
            .iter()
            .find(|e| e["kind"] == kind && e["outcome"] == outcome)
            .unwrap_or_else(|| panic!("no {outcome} {kind}"))
            .clone()
    };
    let failed = events
        .iter()
        .find(|e| e["kind"] == "login_failed" && e["subject"] == "operator:mallory")
        .expect("the failed login with a claimed principal")
        .clone();
    assert_eq!(failed["peer"], "127.0.0.1");
    let login_event = find("login", "success");
    assert_eq!(login_event["actor"], "root");
    assert_eq!(
        login_event["request_id"].as_str(),
        Some(login_request_id.as_str()),
        "the event names the request it came from"
    );
    // Refused handoff tokens and unknown OAuth states are anyone's to send: they are
    // logged, not audited, so they cannot flood the audit log.
    assert!(
        !events
            .iter()
            .any(|e| e["kind"] == "handoff_consumed" && e["outcome"] == "failure")
    );
    assert!(
        !events.iter().any(
            |e| e["kind"] == "signin_failed" && e["detail"].as_str().unwrap().contains("state")
        )
    );
    assert_eq!(
        failed["actor"], "anonymous",
        "a claimed principal is not an actor"
    );
    assert!(
        failed["detail"]
            .as_str()
            .unwrap()
            .contains("claimed operator:mallory")
    );
    assert_eq!(find("profile_created", "failure")["subject"], "keys.bad");
    let budget = find("budget_exhausted", "success");
    assert_eq!(budget["actor"], "system");
    assert_eq!(budget["subject"], "o1");
    assert!(budget["peer"].is_null());
    // Newest first.
    let at =
        |e: &Value| -> chrono::DateTime<chrono::Utc> { e["at"].as_str().unwrap().parse().unwrap() };
    let ats: Vec<_> = events.iter().map(at).collect();
    let mut sorted = ats.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ats, sorted);

    // Filter by kind, and page through it.
    let fails = audit_page(&app, "kind=login_failed").await;
    assert_eq!(kinds(&fails), BTreeSet::from(["login_failed".to_owned()]));
    assert_eq!(fails["events"].as_array().unwrap().len(), 2);
    let first = audit_page(&app, "limit=3").await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let second = audit_page(&app, &format!("limit=3&cursor={cursor}")).await;
    let ids = |p: &Value| -> Vec<String> {
        p["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let all_ids = ids(&page);
    assert_eq!(ids(&first), all_ids[..3]);
    assert_eq!(ids(&second), all_ids[3..6]);
    // A window around one event holds exactly the events of its millisecond, inclusive
    // at both ends.
    let budget_at = budget["at"].as_str().unwrap();
    let at_budget = audit_page(
        &app,
        &format!("since={budget_at}&until={budget_at}").replace('+', "%2B"),
    )
    .await;
    let window = at_budget["events"].as_array().unwrap();
    assert!(
        window.iter().any(|e| e["id"] == budget["id"]),
        "{at_budget}"
    );
    assert!(
        window.iter().all(|e| e["at"] == budget["at"]),
        "{at_budget}"
    );
    let from_budget = audit_page(&app, &format!("since={budget_at}").replace('+', "%2B")).await;
    let newer: Vec<&Value> = events.iter().filter(|e| at(e) >= at(&budget)).collect();
    assert_eq!(from_budget["events"].as_array().unwrap().len(), newer.len());
    // A time window before everything is empty; a bad cursor or window is a 400.
    let before = audit_page(&app, "until=2001-01-01T00:00:00Z").await;
    assert!(before["events"].as_array().unwrap().is_empty());
    let since_now = audit_page(
        &app,
        &format!(
            "since={}",
            (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()
        )
        .replace('+', "%2B"),
    )
    .await;
    assert!(since_now["events"].as_array().unwrap().is_empty());
    for bad in [
        "cursor=zz",
        "kind=nonsense",
        "limit=0",
        "since=2030-01-01T00:00:00Z&until=2020-01-01T00:00:00Z",
    ] {
        let r = app
            .http
            .get(app.url(&format!("/console/v1/audit?{bad}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }

    // The log is durable, and events after a restart sort after those before it.
    let app = app.restart().await;
    let minted = app.mint_handoff(json!({})).await;
    assert_eq!(minted.status(), 200);
    let after = audit_page(&app, "limit=500").await;
    let after_ids = ids(&after);
    assert_eq!(after_ids[1..], all_ids[..], "every event kept, in order");
    assert_eq!(after["events"][0]["kind"], "handoff_minted");
    assert!(
        after_ids[0] > all_ids[0],
        "ids keep growing across a restart"
    );
}

#[tokio::test]
async fn the_audit_log_is_pruned_to_its_retention() {
    let app = spawn_app_with(|s| {
        s.audit.max_events = 5;
        s.audit.prune_interval_s = 1;
    })
    .await;
    let minted_at = std::sync::Mutex::new(Vec::new());
    for _ in 0..12 {
        let r = app.mint_handoff(json!({})).await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        let expires: chrono::DateTime<chrono::Utc> =
            body["expires_at"].as_str().unwrap().parse().unwrap();
        minted_at.lock().unwrap().push(expires.to_rfc3339());
    }
    wait_until(async || {
        audit_page(&app, "limit=500").await["events"]
            .as_array()
            .unwrap()
            .len()
            <= 5
    })
    .await;
    let page = audit_page(&app, "limit=500").await;
    let kept: Vec<&Value> = page["events"].as_array().unwrap().iter().collect();
    assert_eq!(kept.len(), 5);
    // The newest five stay: the ones after the first seven mints of twelve.
    let all_minted = minted_at.lock().unwrap().clone();
    for (event, expires) in kept.iter().zip(all_minted.iter().rev()) {
        assert_eq!(
            event["detail"].as_str().unwrap(),
            format!("expires {expires}"),
            "the kept events are the newest ones"
        );
    }
}

#[tokio::test]
async fn a_flood_of_events_is_pruned_as_it_comes_not_once_per_interval() {
    // An interval that never comes during the test: only the count triggers pruning,
    // once every max(max_events / 100, 100) events added.
    let app = spawn_app_with(|s| {
        s.audit.max_events = 5;
        s.audit.prune_interval_s = 3600;
    })
    .await;
    for _ in 0..250 {
        let r = app.mint_handoff(json!({})).await;
        assert_eq!(r.status(), 200);
    }
    // Pruned once 100 and again once 200 events were added (later under load: the
    // count read by the pruning decides), so far fewer than the 250 written remain.
    wait_until(async || {
        audit_page(&app, "limit=500").await["events"]
            .as_array()
            .unwrap()
            .len()
            <= 150
    })
    .await;
    let kept = audit_page(&app, "limit=500").await["events"]
        .as_array()
        .unwrap()
        .len();
    assert!(kept >= 5, "only the excess is pruned: {kept} kept");
}

/// The console's kind filter offers every kind the daemon records.
#[test]
fn the_console_offers_every_audit_kind() {
    let page = include_str!("../../http/console/audit.js");
    for kind in palyra_actors::audit::AuditKind::ALL {
        let name = serde_json::to_value(kind).unwrap();
        let quoted = format!("'{}'", name.as_str().unwrap());
        assert!(
            page.contains(&quoted),
            "{quoted} is not in the console's audit filter"
        );
    }
}
