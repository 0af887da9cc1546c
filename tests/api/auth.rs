//! Console login, sessions, logout, CSRF, bearer, throttling, expiry and persistence.

use std::time::Duration;

use palyra_http::{Access, route_table};
use reqwest::Method;
use reqwest::header::{CACHE_CONTROL, COOKIE, RETRY_AFTER, SET_COOKIE};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, error_code, session_cookie, spawn_app, spawn_app_with};

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_and_returns_the_session() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(app.url("/console/v1/auth/login"))
        .json(&json!({
            "admin_token": ADMIN_TOKEN,
            "device_id": "laptop-1"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    let attrs: Vec<&str> = set_cookie.split("; ").collect();
    assert!(
        attrs[0].starts_with("palyra_console_session="),
        "{set_cookie}"
    );
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(attrs.contains(&attr), "{attr} missing in {set_cookie}");
    }
    assert!(
        !attrs.contains(&"Secure"),
        "no TLS, so no Secure: {set_cookie}"
    );
    let cookie = session_cookie(response.headers()).unwrap();
    assert_eq!(cookie.len(), 43, "256 random bits in base64url");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["principal"], "root", "the admin token is root");
    assert_eq!(body["role"], "admin");
    assert_eq!(body["device_id"], "laptop-1");
    assert!(body["csrf_token"].as_str().unwrap().len() >= 43);
    for field in ["issued_at", "expires_at", "idle_expires_at"] {
        assert!(body[field].is_string(), "{field}");
    }
    assert!(
        !body.to_string().contains(&cookie),
        "the cookie is not in the body"
    );

    let session = app
        .http
        .get(app.url("/console/v1/auth/session"))
        .header(COOKIE, format!("palyra_console_session={cookie}"))
        .header("x-palyra-csrf-token", body["csrf_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), 200);
    assert_eq!(session.headers()[CACHE_CONTROL], "no-store");
    let view: Value = session.json().await.unwrap();
    // A request made with the cookie never gets the CSRF token back: only login and
    // handoff redemption answer it.
    assert!(view.get("csrf_token").is_none(), "{view}");
    assert!(
        !view
            .to_string()
            .contains(body["csrf_token"].as_str().unwrap())
    );
    assert_eq!(view["principal"], "root");
}

/// Cookies are shared by every port of a host, so the cookie alone must not read
/// anything: a GET with the cookie but without the CSRF header (or a wrong one) is
/// refused before the route runs, and with it the same GET works.
#[tokio::test]
async fn a_cookie_without_the_csrf_header_is_refused_on_a_get() {
    let app = spawn_app().await;
    let login = app.login().await;
    for path in [
        "/console/v1/auth/session",
        "/console/v1/auth/profiles",
        "/console/v1/audit",
    ] {
        for csrf in [None, Some("wrong"), Some("")] {
            let mut req = app
                .http
                .get(app.url(path))
                .header(COOKIE, login.cookie_header());
            if let Some(csrf) = csrf {
                req = req.header("x-palyra-csrf-token", csrf);
            }
            let response = req.send().await.unwrap();
            assert_eq!(response.status(), 403, "GET {path} csrf {csrf:?}");
            let body = response.text().await.unwrap();
            assert!(body.contains("csrf_rejected"), "{body}");
            assert!(
                !body.contains(&login.csrf),
                "the refusal does not leak the token"
            );
        }
        let response = app
            .http
            .get(app.url(path))
            .header(COOKIE, login.cookie_header())
            .header("x-palyra-csrf-token", &login.csrf)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET {path} with the token");
    }
    // HEAD is refused the same way.
    let head = app
        .http
        .head(app.url("/console/v1/auth/session"))
        .header(COOKIE, login.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 403);
}

#[tokio::test]
async fn login_defaults_principal_and_device() {
    let app = spawn_app().await;
    let login = app.login().await;
    assert_eq!(login.body["principal"], "root");
    assert_eq!(login.body["device_id"], "unnamed-device");
}

#[tokio::test]
async fn wrong_admin_token_is_401_without_cookie() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(app.url("/console/v1/auth/login"))
        .json(&json!({ "admin_token": "not-the-token" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers().get(SET_COOKIE).is_none());
    assert_eq!(error_code(response).await, "unauthorized");
}

#[tokio::test]
async fn invalid_principal_and_device_are_400_naming_the_field() {
    let app = spawn_app().await;
    // A principal is never the client's to name: the field is refused.
    for body in [
        json!({"admin_token": ADMIN_TOKEN, "principal": "root"}),
        json!({"admin_token": ADMIN_TOKEN, "principal": "admin:alice"}),
    ] {
        let response = app
            .http
            .post(app.url("/console/v1/auth/login"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "invalid_json");
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("principal")
        );
    }
    for (body, field) in [
        (
            json!({"admin_token": ADMIN_TOKEN, "device_id": "a b"}),
            "device_id",
        ),
        (
            json!({"admin_token": ADMIN_TOKEN, "device_id": ""}),
            "device_id",
        ),
    ] {
        let response = app
            .http
            .post(app.url("/console/v1/auth/login"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "invalid_field");
        assert!(error["error"]["message"].as_str().unwrap().contains(field));
        assert!(!error.to_string().contains(ADMIN_TOKEN));
    }
}

#[tokio::test]
async fn session_requires_a_valid_cookie() {
    let app = spawn_app().await;
    assert_eq!(app.session_status("made-up").await, 401);
    let response = app
        .http
        .get(app.url("/console/v1/auth/session"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(error_code(response).await, "unauthorized");
}

#[tokio::test]
async fn logout_revokes_the_session_and_clears_the_cookie() {
    let app = spawn_app().await;
    let login = app.login().await;
    let response = app
        .http
        .post(app.url("/console/v1/auth/logout"))
        .header(COOKIE, login.cookie_header())
        .header("x-palyra-csrf-token", &login.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let cleared = response.headers()[SET_COOKIE].to_str().unwrap();
    assert!(cleared.starts_with("palyra_console_session=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(app.session_status(&login.cookie).await, 401);
    // Still revoked after a restart: the revocation was durable.
    let app = app.restart().await;
    assert_eq!(app.session_status(&login.cookie).await, 401);
}

/// Every route that a cookie can authenticate, reads included (cookies are shared by
/// every port of a host), rejects a cookie request without the CSRF header, or with a
/// wrong one, before doing anything.
#[tokio::test]
async fn every_protected_route_requires_the_csrf_header_with_a_cookie() {
    let app = spawn_app().await;
    let login = app.login().await;
    let protected: Vec<_> = route_table()
        .into_iter()
        .filter(|r| r.access != Access::Public)
        .collect();
    assert!(
        protected.iter().any(|r| r.method == Method::GET)
            && protected.iter().any(|r| r.method == Method::POST),
        "the table lists reads and changes"
    );
    for route in &protected {
        let path = route.path.replace('{', "x").replace('}', "");
        for csrf in [None, Some("wrong"), Some("")] {
            let mut req = app
                .http
                .request(route.method.clone(), app.url(&path))
                .header(COOKIE, login.cookie_header());
            if route.method != Method::GET {
                req = req.json(&json!({}));
            }
            if let Some(csrf) = csrf {
                req = req.header("x-palyra-csrf-token", csrf);
            }
            let response = req.send().await.unwrap();
            assert_eq!(
                response.status(),
                403,
                "{} {} csrf {csrf:?}",
                route.method,
                path
            );
            assert_eq!(error_code(response).await, "csrf_rejected");
        }
    }
    // Nothing happened: the session still works.
    assert_eq!(app.session_status(&login.cookie).await, 200);
    // And with the right header the same request goes through.
    let response = app
        .http
        .post(app.url("/console/v1/auth/browser-handoff"))
        .header(COOKIE, login.cookie_header())
        .header("x-palyra-csrf-token", &login.csrf)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn bearer_token_authenticates_without_csrf_and_a_wrong_one_does_not() {
    let app = spawn_app().await;
    let ok = app.mint_handoff(json!({})).await;
    assert_eq!(ok.status(), 200);
    let wrong = app
        .http
        .post(app.url("/console/v1/auth/browser-handoff"))
        .bearer_auth("x".repeat(43))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    // Bearer requests carry no console session.
    let session = app
        .http
        .get(app.url("/console/v1/auth/session"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), 401);
    // Logout with a bearer token only clears the cookie.
    let logout = app
        .http
        .post(app.url("/console/v1/auth/logout"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
}

#[tokio::test]
async fn failed_logins_are_throttled_per_peer() {
    let app = spawn_app().await;
    for attempt in 0..5 {
        let response = app
            .http
            .post(app.url("/console/v1/auth/login"))
            .json(&json!({ "admin_token": format!("wrong-{attempt}") }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "attempt {attempt}");
    }
    // A wrong token waits now.
    let response = app
        .http
        .post(app.url("/console/v1/auth/login"))
        .json(&json!({ "admin_token": "wrong-again" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(error_code(response).await, "too_many_requests");
    // Wrong bearer tokens are refused while throttled.
    let response = app
        .http
        .post(app.url("/console/v1/auth/browser-handoff"))
        .bearer_auth("x".repeat(43))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    // From loopback the right token is not locked out by wrong attempts from there
    // (the host's own CLI and scripts), at login and as a bearer.
    app.login().await;
    let response = app.mint_handoff(json!({})).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn throttle_window_passes() {
    let app = spawn_app_with(|s| {
        s.auth.max_failures = 2;
        s.auth.failure_window_s = 1;
    })
    .await;
    for _ in 0..2 {
        let r = app
            .http
            .post(app.url("/console/v1/auth/login"))
            .json(&json!({ "admin_token": "wrong" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let wrong = || {
        app.http
            .post(app.url("/console/v1/auth/login"))
            .json(&json!({ "admin_token": "wrong" }))
            .send()
    };
    assert_eq!(wrong().await.unwrap().status(), 429);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(wrong().await.unwrap().status(), 401, "the window passed");
}

#[tokio::test]
async fn a_session_survives_a_restart() {
    let app = spawn_app().await;
    let login = app.login().await;
    let app = app.restart().await;
    let response = app
        .http
        .get(app.url("/console/v1/auth/session"))
        .header(COOKIE, login.cookie_header())
        .header("x-palyra-csrf-token", &login.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    // The token of before the restart still authenticates the session.
    assert_eq!(body["principal"], login.body["principal"]);
    assert_eq!(body["issued_at"], login.body["issued_at"]);
}

#[tokio::test]
async fn idle_sessions_expire_and_use_slides_the_idle_timeout() {
    let app = spawn_app_with(|s| s.sessions.idle_timeout_s = 2).await;
    let idle = app.login().await;
    let used = app.login().await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(app.session_status(&used.cookie).await, 200);
    }
    // 3 s have passed: the unused one is gone, the used one lives on.
    assert_eq!(app.session_status(&idle.cookie).await, 401);
    assert_eq!(app.session_status(&used.cookie).await, 200);
}

#[tokio::test]
async fn sliding_activity_is_persisted_across_a_restart() {
    let app = spawn_app_with(|s| s.sessions.idle_timeout_s = 3).await;
    let login = app.login().await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(app.session_status(&login.cookie).await, 200);
    // The use at 2 s is flushed at shutdown, so 2 s later (4 s after login) the session
    // is still within its idle timeout.
    let app = app.restart().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.session_status(&login.cookie).await, 200);
}

#[tokio::test]
async fn sessions_end_at_their_absolute_lifetime_even_when_used() {
    let app = spawn_app_with(|s| {
        s.sessions.absolute_timeout_s = 2;
        s.sessions.idle_timeout_s = 60;
    })
    .await;
    let login = app.login().await;
    let mut last = 200;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        last = app.session_status(&login.cookie).await;
    }
    assert_eq!(last, 401);
}

#[tokio::test]
async fn the_oldest_session_is_evicted_at_the_cap() {
    let app = spawn_app_with(|s| s.sessions.max_live = 3).await;
    let mut logins = Vec::new();
    for _ in 0..4 {
        logins.push(app.login().await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(app.session_status(&logins[0].cookie).await, 401);
    for login in &logins[1..] {
        assert_eq!(app.session_status(&login.cookie).await, 200);
    }
    // The eviction is audited as a revocation by the daemon.
    let audit = app
        .bearer_get_json("/console/v1/audit?kind=session_revoked")
        .await;
    let events = audit["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{audit}");
    assert_eq!(events[0]["actor"], "system");
    assert_eq!(events[0]["subject"], "root");
    assert!(
        events[0]["detail"]
            .as_str()
            .unwrap()
            .contains("max_live (3)"),
        "{audit}"
    );
    let app = app.restart().await;
    assert_eq!(app.session_status(&logins[0].cookie).await, 401);
    for login in &logins[1..] {
        assert_eq!(app.session_status(&login.cookie).await, 200);
    }
}

#[tokio::test]
async fn fifty_concurrent_logins_are_all_present_after_a_restart() {
    let app = spawn_app().await;
    let logins = futures::future::join_all((0..50).map(|_| app.login())).await;
    let app = app.restart().await;
    for login in &logins {
        assert_eq!(app.session_status(&login.cookie).await, 200);
    }
}

#[tokio::test]
async fn concurrent_logins_never_leave_more_than_the_cap() {
    let app = spawn_app_with(|s| s.sessions.max_live = 3).await;
    let logins = futures::future::join_all((0..12).map(|_| app.login())).await;
    // The surplus is evicted right after the commits; give the follow-up a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut live = 0;
    for login in &logins {
        if app.session_status(&login.cookie).await == 200 {
            live += 1;
        }
    }
    assert_eq!(live, 3, "exactly the cap survives");
    let app = app.restart().await;
    let mut live_after = 0;
    for login in &logins {
        if app.session_status(&login.cookie).await == 200 {
            live_after += 1;
        }
    }
    assert_eq!(live_after, 3, "and the evictions were durable");
}

#[tokio::test]
async fn a_refused_request_does_not_slide_the_idle_timeout() {
    let app = spawn_app_with(|s| s.sessions.idle_timeout_s = 2).await;
    let login = app.login().await;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Without CSRF: refused, and must not count as activity.
        let refused = app
            .http
            .post(app.url("/console/v1/auth/browser-handoff"))
            .header(COOKIE, login.cookie_header())
            .send()
            .await
            .unwrap();
        assert!(refused.status() == 403 || refused.status() == 401);
    }
    assert_eq!(app.session_status(&login.cookie).await, 401);
}
