//! Sessions, handoffs and the audit log across two nodes on one PostgreSQL database:
//! a session or a handoff made on one node works on the other, a logout on one is
//! refused by the other within 1 s (also when its change feed was cut), a handoff is
//! consumed once whichever nodes try, and both nodes' audit events are all kept.
//! On redb there is one node per database: these tests return at once there (the
//! single-node behaviour is what the rest of the suite tests).

use std::sync::Arc;
use std::time::{Duration, Instant};

use palyra::application::EnvSecrets;
use palyra::testkit::postgres;
use palyra_actors::SecretString;
use reqwest::header::COOKIE;
use serde_json::{Value, json};

use crate::helpers::{Login, TestApp, session_cookie, start_with, test_settings};

/// How long a revocation may take to reach every node.
const REVOCATION_BOUND: Duration = Duration::from_secs(1);

/// Two daemons on one database, with the same vault key (as every node of a cluster).
async fn two_nodes() -> Option<(TestApp, TestApp)> {
    if !postgres::enabled() {
        return None;
    }
    let key = SecretString::new("QUJDREFCQ0RBQkNEQUJDREFCQ0RBQkNEQUJDREFCQ0Q=".into());
    let secrets = || EnvSecrets {
        admin_token: None,
        vault_key: Some(key.clone()),
    };
    let dir_a = Arc::new(tempfile::tempdir().unwrap());
    let dir_b = Arc::new(tempfile::tempdir().unwrap());
    let mut a = test_settings(&dir_a);
    a.cluster.node_id = "node-a".into();
    let mut b = test_settings(&dir_b);
    b.cluster.node_id = "node-b".into();
    b.storage.url = a.storage.url.clone();
    let a = start_with(dir_a, a, secrets())
        .await
        .expect("node A starts");
    let b = start_with(dir_b, b, secrets())
        .await
        .expect("node B starts");
    Some((a, b))
}

fn database_url(app: &TestApp) -> String {
    app.settings
        .storage
        .url
        .as_ref()
        .expect("a PostgreSQL URL")
        .expose()
        .to_owned()
}

async fn logout(app: &TestApp, login: &Login) {
    let response = app
        .http
        .post(app.url("/console/v1/auth/logout"))
        .header(COOKIE, login.cookie_header())
        .header("x-palyra-csrf-token", &login.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204, "logout");
}

/// Polls `node` every 50 ms until it refuses `cookie`; panics past the bound.
async fn refused_within_bound(node: &TestApp, cookie: &str, since: Instant) -> Duration {
    loop {
        let status = node.session_status(cookie).await;
        let elapsed = since.elapsed();
        if status == 401 {
            return elapsed;
        }
        assert_eq!(status, 200, "a session check answered {status}");
        assert!(
            elapsed < REVOCATION_BOUND,
            "still accepted {elapsed:?} after the logout's answer"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn handoff_token(body: &Value) -> String {
    let url = body["handoff_url"].as_str().unwrap();
    url.split_once("token=").unwrap().1.to_owned()
}

async fn mint(node: &TestApp) -> String {
    let response = node.mint_handoff(json!({})).await;
    assert_eq!(response.status(), 200, "mint");
    handoff_token(&response.json().await.unwrap())
}

async fn consume(node: &TestApp, token: &str) -> reqwest::Response {
    node.http
        .post(node.url("/console/v1/auth/browser-handoff/session"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_made_on_one_node_works_on_the_other_until_a_logout_anywhere() {
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let login = a.login().await;
    // B never saw it: it reads the row, then serves it from its cache.
    assert_eq!(b.session_status(&login.cookie).await, 200);
    assert_eq!(b.session_status(&login.cookie).await, 200);
    // A state-changing request on B needs the session's CSRF token, as on A.
    let mint = |csrf: Option<&str>| {
        let mut request = b
            .http
            .post(b.url("/console/v1/auth/browser-handoff"))
            .header(COOKIE, login.cookie_header())
            .json(&json!({}));
        if let Some(csrf) = csrf {
            request = request.header("x-palyra-csrf-token", csrf);
        }
        request.send()
    };
    assert_eq!(mint(None).await.unwrap().status(), 403);
    assert_eq!(mint(Some(&login.csrf)).await.unwrap().status(), 200);

    logout(&a, &login).await;
    let answered = Instant::now();
    let took = refused_within_bound(&b, &login.cookie, answered).await;
    eprintln!("node B refused the logged-out session after {took:?}");
    assert_eq!(a.session_status(&login.cookie).await, 401);

    // And the other way round: a logout on B reaches A.
    let login = b.login().await;
    assert_eq!(a.session_status(&login.cookie).await, 200);
    logout(&b, &login).await;
    refused_within_bound(&a, &login.cookie, Instant::now()).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_flushed_by_another_node_never_brings_a_revoked_session_back() {
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let url = database_url(&a);
    let login = a.login().await;
    // Both nodes slide the session, so both have activity to flush on their ticks
    // (every second in the tests), before and after the logout.
    for _ in 0..6 {
        assert_eq!(a.session_status(&login.cookie).await, 200);
        assert_eq!(b.session_status(&login.cookie).await, 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stored = postgres::psql(&url, "SELECT count(*) FROM sessions");
    assert_eq!(stored.trim(), "1", "one session row");
    assert_eq!(b.session_status(&login.cookie).await, 200);
    logout(&a, &login).await;
    refused_within_bound(&b, &login.cookie, Instant::now()).await;
    // Two more ticks of both nodes: no flush re-creates the row.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let stored = postgres::psql(&url, "SELECT count(*) FROM sessions");
    assert_eq!(stored.trim(), "0", "the revoked session stays deleted");
    assert_eq!(a.session_status(&login.cookie).await, 401);
    assert_eq!(b.session_status(&login.cookie).await, 401);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_a_node_whose_change_feed_was_cut() {
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let url = database_url(&a);
    let login = a.login().await;
    assert_eq!(b.session_status(&login.cookie).await, 200);
    // Cut every connection of B, its change feed's included (each comes back by
    // itself), then log out on A at once: the notification may be lost, the revocation
    // must not be. While B cannot read a row it answers 503, which refuses too.
    let killed = postgres::psql(
        &url,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE application_name = 'palyrad/node-b'",
    );
    assert!(
        killed.trim().parse::<u32>().unwrap() >= 2,
        "B's connections: {killed}"
    );
    logout(&a, &login).await;
    let answered = Instant::now();
    let took = loop {
        let status = b.session_status(&login.cookie).await;
        let elapsed = answered.elapsed();
        if status != 200 {
            break elapsed;
        }
        assert!(
            elapsed < REVOCATION_BOUND,
            "still accepted after {elapsed:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("node B (cut off) refused the logged-out session after {took:?}");
    // Once B reads again, the answer is the revocation, never the session.
    loop {
        match b.session_status(&login.cookie).await {
            401 => break,
            503 => {}
            other => panic!("B answered {other} for a revoked session"),
        }
        assert!(
            answered.elapsed() < Duration::from_secs(20),
            "B did not recover"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Sessions still work on B while and after its feed comes back.
    let fresh = a.login().await;
    assert_eq!(b.session_status(&fresh.cookie).await, 200);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_minted_on_one_node_is_consumed_once_on_any() {
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let token = mint(&a).await;
    let response = consume(&b, &token).await;
    assert_eq!(response.status(), 200, "consumed on B");
    let cookie = session_cookie(response.headers()).expect("a session cookie");
    let body: Value = response.json().await.unwrap();
    crate::helpers::remember_csrf(&cookie, body["csrf_token"].as_str().unwrap());
    assert_eq!(a.session_status(&cookie).await, 200);
    assert_eq!(b.session_status(&cookie).await, 200);
    // A minted it and still holds it in memory: the database says it is used.
    assert_eq!(consume(&a, &token).await.status(), 401);
    assert_eq!(consume(&b, &token).await.status(), 401);

    // Concurrent consumption on both nodes: exactly one wins, whichever minted it.
    for minter in [&a, &b] {
        let token = mint(minter).await;
        let tries = (0..4).map(|i| consume(if i % 2 == 0 { &a } else { &b }, &token));
        let statuses: Vec<u16> = futures::future::join_all(tries)
            .await
            .iter()
            .map(|r| r.status().as_u16())
            .collect();
        assert_eq!(
            statuses.iter().filter(|s| (200..300).contains(*s)).count(),
            1,
            "{statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 401),
            "{statuses:?}"
        );
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_nodes_audit_events_are_all_kept() {
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    const EACH: usize = 15;
    let logins = (0..EACH).flat_map(|_| [a.login(), b.login()]);
    futures::future::join_all(logins).await;
    // A node's audit query waits for the events that node queued; B's first, so A's
    // pages see both nodes' events durable.
    b.bearer_get_json("/console/v1/audit?limit=1").await;
    let mut ids = std::collections::BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/console/v1/audit?kind=login&limit=10".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = a.bearer_get_json(&path).await;
        for event in page["events"].as_array().unwrap() {
            assert!(
                ids.insert(event["id"].as_str().unwrap().to_owned()),
                "{event}"
            );
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        ids.len(),
        2 * EACH,
        "every login of both nodes is audited once"
    );
    assert_eq!(
        b.bearer_get_json("/console/v1/audit?kind=login&limit=100")
            .await["events"]
            .as_array()
            .unwrap()
            .len(),
        2 * EACH
    );
    a.stop().await;
    b.stop().await;
}
