//! PostgreSQL faults, each on a server of the test's own (the shared one must not be
//! restarted under the other tests): a crash-restart of the server during concurrent
//! writes, a server that is down for a while, and one that is unreachable at start.
//! scripts/test runs these in its PostgreSQL pass; they need PALYRA_TEST_POSTGRES_URL
//! only for the PostgreSQL binaries scripts/postgres uses.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palyra::settings::{Settings, StorageBackend};
use palyra::testkit::postgres::OwnServer;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, TestApp, start, test_settings};

const WRITERS: usize = 8;
/// Bounds every wait of these tests.
const LIMIT: Duration = Duration::from_secs(60);

fn on_server(dir: &tempfile::TempDir, url: &str) -> Settings {
    let mut settings = test_settings(dir);
    settings.storage.backend = StorageBackend::Postgres;
    settings.storage.url = Some(palyra_actors::SecretString::new(url.to_owned()));
    settings.storage.connect_timeout_s = 2;
    settings.storage.statement_timeout_s = 3;
    settings
}

/// What the writers saw.
#[derive(Default)]
struct Seen {
    /// Profiles whose creation was answered 200.
    acked: Vec<String>,
    /// Every profile id a create was sent for.
    attempted: HashSet<String>,
    /// 503 answers, all `storage_unavailable` with a Retry-After.
    unavailable: usize,
    /// Any other answer: (status, body).
    wrong: Vec<(u16, String)>,
}

async fn create_profiles(
    app_base: String,
    writer: usize,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut n = 0u32;
    while !stop.load(Ordering::Relaxed) && n < 100_000 {
        n += 1;
        let profile_id = format!("pgf.{writer}.{n}");
        seen.lock().unwrap().attempted.insert(profile_id.clone());
        let response = http
            .post(format!("{app_base}/console/v1/auth/profiles"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({
                "profile_id": profile_id, "provider": "openai", "profile_name": "pg fault",
                "credential": { "type": "api_key", "api_key": format!("pg-fault-key-{writer}-{n:08}") },
                "validate": false
            }))
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(e) => {
                seen.lock().unwrap().wrong.push((0, e.to_string()));
                continue;
            }
        };
        let status = response.status().as_u16();
        let retry_after = response.headers().get("retry-after").is_some();
        let body = response.text().await.unwrap_or_default();
        let unavailable = status == 503 && retry_after && body.contains("storage_unavailable");
        {
            let mut seen = seen.lock().unwrap();
            match status {
                200 => seen.acked.push(profile_id),
                _ if unavailable => seen.unavailable += 1,
                _ => seen.wrong.push((status, body)),
            }
        }
        if unavailable {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn ready(app: &TestApp) -> (u16, Value) {
    match app.http.get(app.url("/readyz")).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

async fn wait_ready(app: &TestApp) {
    let started = Instant::now();
    loop {
        if ready(app).await.0 == 200 {
            return;
        }
        assert!(
            started.elapsed() < LIMIT,
            "the daemon did not become ready again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every profile in `ids` answers 200 with its record.
async fn assert_present(app: &TestApp, ids: &[String]) {
    for id in ids {
        let response = app
            .http
            .get(app.url(&format!("/console/v1/auth/profiles/{id}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "acknowledged profile {id} is missing"
        );
    }
}

/// Every stored profile of this test: none that no client asked for, each whole.
async fn stored_profiles(app: &TestApp) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = app.url("/console/v1/auth/profiles?limit=500");
        if let Some(c) = &cursor {
            url.push_str(&format!("&after={c}"));
        }
        let page: Value = app
            .http
            .get(url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        all.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_after"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return all,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_crash_restart_during_writes_answers_503_and_loses_nothing() {
    let server = OwnServer::start();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let settings = on_server(&dir, &server.url);
    let app = start(Arc::clone(&dir), settings.clone()).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(create_profiles(
                app.base.clone(),
                w,
                Arc::clone(&stop),
                Arc::clone(&seen),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = seen.lock().unwrap().acked.len();
    assert!(before > 0, "no write succeeded before the fault");
    server.restart_immediate();
    // Writes keep coming while the daemon reconnects by itself.
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_ready(&app).await;
    let after_ready = seen.lock().unwrap().acked.len();
    let started = Instant::now();
    while seen.lock().unwrap().acked.len() < after_ready + 20 {
        assert!(
            started.elapsed() < LIMIT,
            "writes did not succeed again after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let seen = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();
    assert!(
        seen.wrong.is_empty(),
        "answers other than 200 and 503: {:?}",
        &seen.wrong[..seen.wrong.len().min(5)]
    );
    eprintln!(
        "acked {} unavailable {} attempted {}",
        seen.acked.len(),
        seen.unavailable,
        seen.attempted.len()
    );
    assert!(seen.unavailable > 0, "the restart was never seen as a 503");
    assert_present(&app, &seen.acked).await;
    // Nothing that no client sent, and every stored profile whole (its key sealed).
    let stored = stored_profiles(&app).await;
    for profile in &stored {
        let id = profile["profile_id"].as_str().unwrap();
        assert!(
            seen.attempted.contains(id),
            "a profile nobody created: {id}"
        );
        assert_eq!(
            profile["credential"]["hint"].as_str().map(str::len),
            Some(7),
            "{profile}"
        );
    }
    // And durable: a new daemon on the same database has every acknowledged write.
    let (dir, _) = app.stop().await;
    let again = start(dir, settings).await.unwrap();
    assert_present(&again, &seen.acked).await;
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_is_503_naming_storage_until_it_returns() {
    let server = OwnServer::start();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = start(Arc::clone(&dir), on_server(&dir, &server.url))
        .await
        .unwrap();
    assert_eq!(ready(&app).await.0, 200);
    let login = app.login().await;
    server.crash();
    let (status, body) = ready(&app).await;
    assert_eq!(status, 503);
    assert_eq!(body["failing"], json!(["storage"]), "{body}");
    // A write answers 503 with Retry-After, quickly, and nothing else breaks.
    let started = Instant::now();
    let response = app
        .http
        .post(app.url("/console/v1/auth/profiles"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({
            "profile_id": "while-down", "provider": "openai", "profile_name": "down",
            "credential": { "type": "api_key", "api_key": "sk-while-the-database-is-down" },
            "validate": false
        }))
        .send()
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "a write hung for {:?}",
        started.elapsed()
    );
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "2");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "storage_unavailable");
    assert!(!body.to_string().contains("127.0.0.1"), "{body}");
    // A session check cannot vouch for a session without its row, since another node
    // may have revoked it (issue 15): it answers 503 too, not 401, so the login is not
    // lost, and the same cookie works again once the database is back.
    let check = app
        .http
        .get(app.url("/console/v1/auth/session"))
        .header(reqwest::header::COOKIE, login.cookie_header())
        .header("x-palyra-csrf-token", &login.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(check.status(), 503);
    let body: Value = check.json().await.unwrap();
    assert_eq!(body["error"]["code"], "storage_unavailable");
    server.resume();
    wait_ready(&app).await;
    assert_eq!(app.session_status(&login.cookie).await, 200);
    // The daemon writes again by itself, and the refused write left nothing behind.
    let started = Instant::now();
    loop {
        let response = app
            .http
            .post(app.url("/console/v1/auth/profiles"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({
                "profile_id": "after-return", "provider": "openai", "profile_name": "back",
                "credential": { "type": "api_key", "api_key": "sk-after-the-database-returned" },
                "validate": false
            }))
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            break;
        }
        assert_eq!(response.status(), 503);
        assert!(started.elapsed() < LIMIT, "writes did not resume");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ids: Vec<String> = stored_profiles(&app)
        .await
        .iter()
        .map(|p| p["profile_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, vec!["after-return".to_owned()]);
    app.stop().await;
}

#[tokio::test]
async fn an_unreachable_database_at_start_fails_naming_host_port_and_cause() {
    // A port nothing listens on (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = on_server(
        &dir,
        &format!("postgres://palyra:hunter2-secret@127.0.0.1:{port}/palyra"),
    );
    settings.storage.connect_retries = 1;
    let started = Instant::now();
    let err = start(Arc::clone(&dir), settings)
        .await
        .err()
        .expect("start fails");
    let text = err.to_string();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("unreachable"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!format!("{err:?}").contains("hunter2"));
}

/// `palyrad check-config` with `PALYRA_STORAGE__*` pointing at `url`: exit code, stderr.
fn check_config(url: &str) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palyrad"))
        .arg("check-config")
        .env("PALYRA_STORAGE__BACKEND", "postgres")
        .env("PALYRA_STORAGE__URL", url)
        .env("PALYRA_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .expect("palyrad runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn check_config_reaches_the_database_and_names_what_is_wrong() {
    let server = OwnServer::start();
    let url = palyra::testkit::postgres::with_database(&server.url, "checked");
    palyra::testkit::postgres::psql(&server.url, "CREATE DATABASE checked");
    // Reachable, allowed, no schema yet: valid, and nothing was created.
    assert_eq!(check_config(&url), (0, String::new()));
    let tables = palyra::testkit::postgres::psql(
        &url,
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
    );
    assert_eq!(tables.trim(), "0");
    // A schema newer than this binary.
    palyra::testkit::postgres::psql(
        &url,
        "CREATE TABLE schema_version (version bigint PRIMARY KEY); INSERT INTO schema_version VALUES (99)",
    );
    let (code, stderr) = check_config(&url);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("newer"), "{stderr}");
    // A user without privileges on an existing schema.
    let limited = palyra::testkit::postgres::with_database(&server.url, "checked")
        .replace("palyra@", "reader@");
    palyra::testkit::postgres::psql(
        &url,
        "CREATE ROLE reader LOGIN; DELETE FROM schema_version; INSERT INTO schema_version VALUES (1)",
    );
    let (code, stderr) = check_config(&limited);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("missing privileges"), "{stderr}");
    // Unreachable: host, port and the cause, never the password.
    server.crash();
    let with_password = url.replace("palyra@", "palyra:hunter2-secret@");
    let (code, stderr) = check_config(&with_password);
    assert_eq!(code, 2, "{stderr}");
    let port = url.rsplit(':').next().unwrap().split('/').next().unwrap();
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(stderr.contains("unreachable"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}
