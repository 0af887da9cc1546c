//! Operators, roles and API tokens through the real daemon: every route of the route
//! table against every role, tokens (disabled operator, expiry, revocation), password
//! login and its throttle, credential-bound root sessions, and the Host check.

use palyra_http::{Access, route_table};
use reqwest::header::{COOKIE, HOST};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, TestApp, error_code, session_cookie, spawn_app, start};

const PASSWORD: &str = "a long enough passphrase";

async fn create_operator(app: &TestApp, id: &str, role: &str) {
    let response = app
        .bearer_post(
            "/console/v1/operators",
            json!({ "operator_id": id, "role": role, "password": PASSWORD }),
        )
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
}

async fn mint_token(app: &TestApp, operator: &str, role: &str, expires: Option<u64>) -> Value {
    let response = app
        .bearer_post(
            &format!("/console/v1/operators/{operator}/tokens"),
            json!({ "name": format!("{role} script"), "role": role, "expires_in_s": expires }),
        )
        .await;
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

async fn get_with_token(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    app.http
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn password_login(app: &TestApp, id: &str, password: &str) -> reqwest::Response {
    app.http
        .post(app.url("/console/v1/auth/login"))
        .json(&json!({ "operator_id": id, "password": password }))
        .send()
        .await
        .unwrap()
}

/// A password login's cookie, its CSRF token remembered for the test kit's requests.
async fn password_session(app: &TestApp, id: &str, password: &str) -> String {
    let login = password_login(app, id, password).await;
    assert_eq!(login.status(), 200);
    let cookie = session_cookie(login.headers()).unwrap();
    let body: Value = login.json().await.unwrap();
    crate::helpers::remember_csrf(&cookie, body["csrf_token"].as_str().unwrap());
    cookie
}

fn rank(access: Access) -> usize {
    match access {
        Access::Public => 0,
        Access::Viewer => 1,
        Access::Operator => 2,
        Access::Admin => 3,
    }
}

/// Every protected route of the route table, called with a token of every role: a role
/// below the route's is refused with 403 `forbidden` before the handler; a role at or
/// above it reaches the handler (whatever it then answers, never 401 or 403).
#[tokio::test]
async fn every_route_against_every_role() {
    let app = spawn_app().await;
    let mut tokens = Vec::new();
    for (rank, role) in [(1, "viewer"), (2, "operator"), (3, "admin")] {
        create_operator(&app, role, role).await;
        let minted = mint_token(&app, role, role, None).await;
        let token = minted["token"].as_str().unwrap().to_owned();
        assert!(
            token.starts_with(&format!("palyra_{}_", minted["token_id"].as_str().unwrap())),
            "{token}"
        );
        tokens.push((rank, role, token));
    }
    let protected: Vec<_> = route_table()
        .into_iter()
        .filter(|r| r.access != Access::Public)
        .collect();
    assert!(protected.len() > 30, "the table lists the protected routes");
    for route in &protected {
        // Ids that exist nowhere, so an allowed call changes nothing it matters to.
        let path = route.path.replace('{', "none-").replace('}', "");
        for (caller_rank, role, token) in &tokens {
            let response = app
                .http
                .request(route.method.clone(), app.url(&path))
                .bearer_auth(token)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let what = format!("{} {} as {role}", route.method, route.path);
            if *caller_rank < rank(route.access) {
                assert_eq!(status, 403, "{what}");
                assert_eq!(error_code(response).await, "forbidden", "{what}");
            } else if status == 401 || status == 403 {
                // The handler's own answer (a bearer caller has no console session),
                // never the middleware's refusal.
                let code = error_code(response).await;
                assert!(
                    code != "unauthorized" && code != "forbidden",
                    "{what}: {code}"
                );
            }
        }
    }
    // A session has its operator's role, checked by the same middleware.
    let login = password_login(&app, "viewer", PASSWORD).await;
    assert_eq!(login.status(), 200);
    let cookie = session_cookie(login.headers()).unwrap();
    let body: Value = login.json().await.unwrap();
    assert_eq!(body["principal"], "operator:viewer");
    assert_eq!(body["role"], "viewer");
    let refused = app
        .http
        .post(app.url("/console/v1/agents"))
        .header(COOKIE, format!("palyra_console_session={cookie}"))
        .header("x-palyra-csrf-token", body["csrf_token"].as_str().unwrap())
        .json(&json!({ "agent_id": "a1", "model": "m" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let agents = app.bearer_get_json("/console/v1/agents").await;
    assert_eq!(
        agents["items"].as_array().map(Vec::len),
        Some(0),
        "{agents}"
    );
}

#[tokio::test]
async fn tokens_of_disabled_operators_expired_and_revoked_tokens_are_refused() {
    let app = spawn_app().await;
    create_operator(&app, "ops", "operator").await;
    // A token's role is at most its operator's.
    let too_high = app
        .bearer_post(
            "/console/v1/operators/ops/tokens",
            json!({ "name": "x", "role": "admin" }),
        )
        .await;
    assert_eq!(too_high.status(), 400);

    let live = mint_token(&app, "ops", "operator", None).await;
    let live_token = live["token"].as_str().unwrap().to_owned();
    assert_eq!(
        get_with_token(&app, &live_token, "/console/v1/agents")
            .await
            .status(),
        200
    );
    // The list never shows a secret, and records the last use.
    let mut list = app
        .bearer_get_json("/console/v1/tokens?operator_id=ops")
        .await;
    assert!(!list.to_string().contains(&live_token), "{list}");
    // The last use is stored off the request path: it lands shortly after.
    for _ in 0..50 {
        if list["tokens"][0]["last_used_at"].is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        list = app
            .bearer_get_json("/console/v1/tokens?operator_id=ops")
            .await;
    }
    assert!(list["tokens"][0]["last_used_at"].is_string(), "{list}");

    // Revoked: refused on the very next request.
    let id = live["token_id"].as_str().unwrap();
    let revoked = app
        .http
        .delete(app.url(&format!("/console/v1/tokens/{id}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    assert_eq!(
        get_with_token(&app, &live_token, "/console/v1/agents")
            .await
            .status(),
        401
    );

    // Expired.
    let short = mint_token(&app, "ops", "viewer", Some(1)).await;
    let short_token = short["token"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        get_with_token(&app, &short_token, "/console/v1/agents")
            .await
            .status(),
        401
    );

    // Disabled operator: the token, and the operator's session, are refused.
    let token = mint_token(&app, "ops", "viewer", None).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let cookie = password_session(&app, "ops", PASSWORD).await;
    assert_eq!(app.session_status(&cookie).await, 200);
    let disabled = app
        .http
        .patch(app.url("/console/v1/operators/ops"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "disabled": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), 200);
    assert_eq!(
        get_with_token(&app, &token, "/console/v1/agents")
            .await
            .status(),
        401
    );
    assert_eq!(app.session_status(&cookie).await, 401);
    assert_eq!(password_login(&app, "ops", PASSWORD).await.status(), 401);

    // The audit log names the token as the actor of what it did.
    create_operator(&app, "bot", "operator").await;
    let minted = mint_token(&app, "bot", "operator", None).await;
    let created = app
        .http
        .post(app.url("/console/v1/agents"))
        .bearer_auth(minted["token"].as_str().unwrap())
        .json(&json!({ "agent_id": "a1", "model": "m" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200, "{}", created.text().await.unwrap());
    let audit = app
        .bearer_get_json("/console/v1/audit?kind=agent_created")
        .await;
    assert_eq!(
        audit["events"][0]["actor"],
        format!(
            "operator:bot/token:{}",
            minted["token_id"].as_str().unwrap()
        )
    );
}

#[tokio::test]
async fn revoke_sessions_ends_every_session_and_token_of_an_operator() {
    let app = spawn_app().await;
    create_operator(&app, "ops", "operator").await;
    let token = mint_token(&app, "ops", "operator", None).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = password_session(&app, "ops", PASSWORD).await;
    let b = password_session(&app, "ops", PASSWORD).await;
    assert_eq!(app.session_status(&a).await, 200);
    let root = app.login().await;
    let response = app
        .bearer_post("/console/v1/operators/ops/revoke-sessions", json!({}))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({ "sessions_revoked": 2, "tokens_revoked": 1 }));
    assert_eq!(app.session_status(&a).await, 401);
    assert_eq!(app.session_status(&b).await, 401);
    assert_eq!(
        get_with_token(&app, &token, "/console/v1/agents")
            .await
            .status(),
        401
    );
    assert_eq!(
        app.session_status(&root.cookie).await,
        200,
        "others keep theirs"
    );
    // The operator may sign in again.
    assert_eq!(password_login(&app, "ops", PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn password_login_is_throttled_per_operator_but_the_right_password_from_loopback_gets_in() {
    let app = spawn_app().await;
    create_operator(&app, "ops", "operator").await;
    let short = app
        .bearer_post(
            "/console/v1/operators",
            json!({ "operator_id": "weak", "role": "viewer", "password": "short" }),
        )
        .await;
    assert_eq!(
        short.status(),
        400,
        "a password of fewer than 12 characters"
    );
    let max = app.settings.auth.max_failures;
    for _ in 0..max {
        assert_eq!(
            password_login(&app, "ops", "wrong password!!")
                .await
                .status(),
            401
        );
    }
    let throttled = password_login(&app, "ops", "wrong password!!").await;
    assert_eq!(throttled.status(), 429);
    assert!(throttled.headers().contains_key("retry-after"));
    // From loopback the right password is let in even now.
    let ok = password_login(&app, "ops", PASSWORD).await;
    assert_eq!(ok.status(), 200);
    // And so is the right admin token, as a bearer.
    let bearer = app
        .http
        .get(app.url("/console/v1/agents"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
}

#[tokio::test]
async fn a_new_admin_token_invalidates_root_sessions_made_with_the_old_one() {
    let app = spawn_app().await;
    let root = app.login().await;
    create_operator(&app, "ops", "operator").await;
    let ops = password_session(&app, "ops", PASSWORD).await;
    let (dir, mut settings) = app.stop().await;
    settings.server.admin_token = Some(palyra_actors::SecretString::new(
        "another-admin-token-0123456789abcdefghijkl".into(),
    ));
    let app = start(dir, settings).await.unwrap();
    assert_eq!(app.session_status(&root.cookie).await, 401);
    assert_eq!(
        app.session_status(&ops).await,
        200,
        "an operator's session stays"
    );
    let old = app
        .http
        .get(app.url("/console/v1/agents"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 401);
}

#[tokio::test]
async fn a_request_for_another_host_name_is_421_before_authentication() {
    let app = spawn_app().await;
    for host in ["evil.example", "evil.example:7142", "127.0.0.1.nip.io"] {
        let response = app
            .http
            .get(app.url("/console/v1/agents"))
            .header(HOST, host)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 421, "{host}");
        assert_eq!(error_code(response).await, "misdirected_host");
    }
    for host in ["localhost", &app.addr.to_string(), "LOCALHOST:1"] {
        let response = app
            .http
            .get(app.url("/healthz"))
            .header(HOST, host)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{host}");
    }
}

/// Unauthenticated failures from anywhere share one audit budget a minute; beyond it
/// they are only counted (the unit tests of `throttle.rs` cover the summary event).
#[tokio::test]
async fn a_flood_of_wrong_tokens_stays_within_the_audit_budget() {
    let app = crate::helpers::spawn_app_with(|s| s.auth.max_failures = 1_000_000).await;
    let budget = palyra_http::throttle::FAILURE_EVENTS_PER_WINDOW;
    let floods = (0..budget + 30).map(|i| {
        let app = &app;
        async move {
            let response =
                get_with_token(app, &format!("wrong-token-{i}"), "/console/v1/agents").await;
            assert_eq!(response.status(), 401);
        }
    });
    futures::future::join_all(floods).await;
    let audit = app
        .bearer_get_json("/console/v1/audit?kind=login_failed&limit=500")
        .await;
    let events = audit["events"].as_array().unwrap();
    assert_eq!(events.len(), budget, "the excess is folded, not recorded");
}
