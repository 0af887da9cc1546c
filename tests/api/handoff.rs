//! Browser handoff: minting, the link's page (which redeems nothing), redemption by its
//! button's POST, single use, expiry and redirect validation.

use std::time::Duration;

use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE};
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_TOKEN, error_code, meta_content, redeem_link, remember_csrf, session_cookie, spawn_app,
    spawn_app_with, with_cookie,
};

async fn mint(app: &crate::helpers::TestApp, body: Value) -> Value {
    let response = app.mint_handoff(body).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn token_of(handoff_url: &str) -> String {
    handoff_url.split_once("token=").unwrap().1.to_owned()
}

#[tokio::test]
async fn a_handoff_link_logs_a_browser_in_once() {
    let app = spawn_app().await;
    let handoff = mint(&app, json!({ "redirect_path": "/objectives?tab=active" })).await;
    let url = handoff["handoff_url"].as_str().unwrap();
    let expected_prefix = format!(
        "http://127.0.0.1:{}/console/v1/auth/browser-handoff/consume?token=",
        app.addr.port()
    );
    assert!(url.starts_with(&expected_prefix), "{url}");
    assert_eq!(token_of(url).len(), 43);
    assert!(handoff["expires_at"].is_string());

    // A link scanner's GET gets the page, whose button POSTs the token, and uses
    // nothing up.
    let page = app.http.get(url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(session_cookie(page.headers()).is_none());
    assert_eq!(page.headers()[CACHE_CONTROL], "no-store");
    assert_eq!(page.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    assert!(
        html.contains(r#"<form method="post" action="consume""#),
        "{html}"
    );
    assert!(html.contains(&format!(r#"name="token" value="{}""#, token_of(url))));

    let redeemed = redeem_link(&app.http, url).await;
    assert_eq!(redeemed.status, 200, "{}", redeemed.page);
    assert_eq!(redeemed.headers[CACHE_CONTROL], "no-store");
    assert_eq!(
        meta_content(&redeemed.page, "palyra-redirect").as_deref(),
        Some("/objectives?tab=active")
    );
    assert!(
        redeemed
            .page
            .contains(r#"<script src="/assets/handoff.js"></script>"#)
    );
    let cookie = redeemed.cookie.expect("cookie set");
    let csrf = redeemed.csrf.expect("the page hands over the CSRF token");
    assert_eq!(csrf.len(), 43);
    let session = app
        .http
        .get(app.url("/console/v1/auth/session"))
        .header(COOKIE, format!("palyra_console_session={cookie}"))
        .header("x-palyra-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), 200);
    let body: Value = session.json().await.unwrap();
    assert_eq!(body["principal"], "root");
    assert_eq!(body["device_id"], "browser-handoff");

    // Single use, also across a restart.
    let again = redeem_link(&app.http, url).await;
    assert_eq!(again.status, 401);
    assert!(again.cookie.is_none());
    assert!(again.page.contains("handoff_rejected"), "{}", again.page);
    let token = token_of(url);
    let app = app.restart().await;
    let consume = app.url(&format!(
        "/console/v1/auth/browser-handoff/consume?token={token}"
    ));
    assert_eq!(redeem_link(&app.http, &consume).await.status, 401);
}

#[tokio::test]
async fn the_default_redirect_is_the_root_and_a_session_minted_handoff_keeps_the_principal() {
    let app = spawn_app().await;
    let login = {
        let response = app
            .http
            .post(app.url("/console/v1/auth/login"))
            .json(&json!({ "admin_token": ADMIN_TOKEN, "device_id": "carol-laptop" }))
            .send()
            .await
            .unwrap();
        let cookie = session_cookie(response.headers()).unwrap();
        let body: Value = response.json().await.unwrap();
        (cookie, body["csrf_token"].as_str().unwrap().to_owned())
    };
    // An empty body is allowed.
    let response = app
        .http
        .post(app.url("/console/v1/auth/browser-handoff"))
        .header(COOKIE, format!("palyra_console_session={}", login.0))
        .header("x-palyra-csrf-token", &login.1)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let handoff: Value = response.json().await.unwrap();
    let consumed = redeem_link(&app.http, handoff["handoff_url"].as_str().unwrap()).await;
    assert_eq!(consumed.status, 200);
    assert_eq!(
        meta_content(&consumed.page, "palyra-redirect").as_deref(),
        Some("/")
    );
    let cookie = consumed.cookie.unwrap();
    let body: Value = with_cookie(app.http.get(app.url("/console/v1/auth/session")), &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["principal"], "root");
}

#[tokio::test]
async fn concurrent_consumes_of_one_token_create_one_session() {
    let app = spawn_app().await;
    let handoff = mint(&app, json!({})).await;
    let url = handoff["handoff_url"].as_str().unwrap().to_owned();
    let results = futures::future::join_all((0..10).map(|_| redeem_link(&app.http, &url))).await;
    let statuses: Vec<u16> = results.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        9,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn script_clients_consume_with_post() {
    let app = spawn_app().await;
    let handoff = mint(&app, json!({})).await;
    let token = token_of(handoff["handoff_url"].as_str().unwrap());
    let response = app
        .http
        .post(app.url("/console/v1/auth/browser-handoff/session"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookie = session_cookie(response.headers()).unwrap();
    let body: Value = response.json().await.unwrap();
    let csrf = body["csrf_token"].as_str().expect("the CSRF token");
    remember_csrf(&cookie, csrf);
    assert_eq!(app.session_status(&cookie).await, 200);
    let again = app
        .http
        .post(app.url("/console/v1/auth/browser-handoff/session"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 401);
}

#[tokio::test]
async fn expired_and_unknown_tokens_create_nothing() {
    let app = spawn_app_with(|s| s.handoff.ttl_s = 1).await;
    let handoff = mint(&app, json!({})).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let expired = redeem_link(&app.http, handoff["handoff_url"].as_str().unwrap()).await;
    assert_eq!(expired.status, 401);
    assert!(expired.cookie.is_none());
    for query in ["", "?token="] {
        let response = app
            .http
            .get(app.url(&format!("/console/v1/auth/browser-handoff/consume{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{query}");
        assert!(session_cookie(response.headers()).is_none());
    }
    let consume = app.url("/console/v1/auth/browser-handoff/consume");
    for form in [vec![("token", "")], vec![("token", "unknown")]] {
        let response = app.http.post(&consume).form(&form).send().await.unwrap();
        assert_eq!(response.status(), 401, "{form:?}");
        assert!(session_cookie(response.headers()).is_none());
    }
    // A form without the token, or not a form at all: a clear 400.
    let empty = app
        .http
        .post(&consume)
        .form(&[("other", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 400);
    assert_eq!(error_code(empty).await, "invalid_form");
    let json = app
        .http
        .post(&consume)
        .json(&json!({ "token": "unknown" }))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 400);
    assert_eq!(error_code(json).await, "invalid_form");
}

#[tokio::test]
async fn redirect_paths_must_stay_on_this_origin() {
    let app = spawn_app().await;
    for bad in [
        "https://evil.example/",
        "//evil.example/",
        "evil",
        "/a\\b",
        "/\\evil.example",
        "/a\r\nSet-Cookie: x=y",
        "/a\nb",
        "",
    ] {
        let response = app.mint_handoff(json!({ "redirect_path": bad })).await;
        assert_eq!(response.status(), 400, "{bad:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_field");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("redirect_path")
        );
    }
    for good in ["/", "/agents/a-1", "/objectives?x=1#top"] {
        let response = app.mint_handoff(json!({ "redirect_path": good })).await;
        assert_eq!(response.status(), 200, "{good:?}");
    }
}

#[tokio::test]
async fn a_head_request_does_not_use_up_the_link() {
    let app = spawn_app().await;
    let handoff = mint(&app, json!({})).await;
    let url = handoff["handoff_url"].as_str().unwrap();
    let head = app.http.head(url).send().await.unwrap();
    assert_eq!(head.status(), 405);
    assert!(session_cookie(head.headers()).is_none());
    assert_eq!(redeem_link(&app.http, url).await.status, 200);
}

/// A link scanner (a mail gateway's preview, a chat's unfurler) fetches the link, with
/// GET and HEAD, as often as it likes; the operator's browser, posting the page's form
/// afterwards, still signs in.
#[tokio::test]
async fn a_scanner_fetching_the_link_does_not_use_it_up() {
    let app = spawn_app().await;
    let handoff = mint(&app, json!({})).await;
    let url = handoff["handoff_url"].as_str().unwrap();
    for _ in 0..3 {
        let head = app.http.head(url).send().await.unwrap();
        assert_eq!(head.status(), 405);
        let get = app
            .http
            .get(url)
            .header("user-agent", "LinkPreviewBot/1.0")
            .header("accept", "text/html,*/*")
            .send()
            .await
            .unwrap();
        assert_eq!(get.status(), 200);
        assert!(session_cookie(get.headers()).is_none());
    }
    let redeemed = redeem_link(&app.http, url).await;
    assert_eq!(redeemed.status, 200);
    let cookie = redeemed.cookie.expect("the browser is signed in");
    assert_eq!(app.session_status(&cookie).await, 200);
}

/// Another site's page cannot post a token to the daemon (login CSRF: signing the
/// operator's browser in as the attacker), and the link's page cannot be made to run
/// markup from its query.
#[tokio::test]
async fn the_redeeming_post_must_come_from_the_daemons_own_page() {
    let app = spawn_app().await;
    let handoff = mint(&app, json!({})).await;
    let url = handoff["handoff_url"].as_str().unwrap();
    let (action, token) = url.split_once("?token=").unwrap();
    for headers in [
        vec![("origin", "http://evil.example".to_owned())],
        vec![(
            "origin",
            format!("http://127.0.0.1:{}", app.addr.port() + 1),
        )],
        vec![("origin", "null".to_owned())],
        vec![("sec-fetch-site", "cross-site".to_owned())],
        // Another port of the same host is same-site, not same-origin.
        vec![
            ("sec-fetch-site", "same-site".to_owned()),
            ("origin", "null".to_owned()),
        ],
    ] {
        let mut request = app.http.post(action);
        for (name, value) in &headers {
            request = request.header(*name, value);
        }
        let response = request.form(&[("token", token)]).send().await.unwrap();
        assert_eq!(response.status(), 403, "{headers:?}");
        assert!(session_cookie(response.headers()).is_none());
        assert_eq!(error_code(response).await, "csrf_rejected");
    }
    // From the daemon's own page as a browser that sends `Sec-Fetch-Site` posts it
    // (which decides, whatever the origin says) the same token still works: the
    // refusals used nothing.
    let own = app
        .http
        .post(action)
        .header("origin", "null")
        .header("sec-fetch-site", "same-origin")
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);

    // A browser without `Sec-Fetch-Site` (Safari before 16.4) names the origin only
    // if the page's policy lets it: the link's page says `same-origin`, and such a
    // browser's post from it signs in.
    let handoff = mint(&app, json!({})).await;
    let url = handoff["handoff_url"].as_str().unwrap();
    let page = app.http.get(url).send().await.unwrap();
    assert_eq!(page.headers()["referrer-policy"], "same-origin");
    let (action, token) = url.split_once("?token=").unwrap();
    let older = app
        .http
        .post(action)
        .header("origin", format!("http://127.0.0.1:{}", app.addr.port()))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(older.status(), 200);
    assert!(session_cookie(older.headers()).is_some());
    assert_eq!(older.headers()["referrer-policy"], "no-referrer");

    let hostile = app
        .http
        .get(app.url(
            "/console/v1/auth/browser-handoff/consume?token=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(hostile.status(), 200);
    let page = hostile.text().await.unwrap();
    assert!(!page.contains("<script>"), "{page}");
    assert!(page.contains("&quot;&gt;&lt;script&gt;"), "{page}");
}
