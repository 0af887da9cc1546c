//! Browser sessions against real headless Chromium (Debian's, at /usr/bin/chromium;
//! these tests fail, not skip, without it), on pages this test serves on loopback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Query;
use axum::http::{StatusCode, header};
use axum::response::{Html, Redirect};
use axum::routing::get;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, TestApp, error_code, spawn_app_with};

pub(crate) const SESSIONS: &str = "/console/v1/browser/sessions";

/// The pages the browser visits, on 127.0.0.1. The links and redirects that leave
/// the site point at `localhost` (the same server under another name); `off_site`
/// counts the requests that arrived under that name.
struct Site {
    addr: SocketAddr,
    off_site: Arc<AtomicUsize>,
}

async fn start_site() -> Site {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let elsewhere = format!("http://localhost:{}/second", addr.port());
    let off_site = Arc::new(AtomicUsize::new(0));
    let home = format!(
        r##"<!doctype html><html><head><title>Home</title></head><body>
<h1>Welcome home</h1>
<p><a id="next" href="/second">Next page</a></p>
<form action="/echo" method="get">
  <input id="q" name="q" type="text">
  <button id="go" type="submit">Go</button>
</form>
<button id="hidden" style="display:none">hidden</button>
<button id="off" disabled>off</button>
<div style="position:relative;height:60px">
  <button id="covered" style="position:absolute;top:0;left:0;width:100px;height:40px">under</button>
  <div style="position:absolute;top:0;left:0;width:200px;height:50px;background:#eee"></div>
</div>
<a id="away" href="{elsewhere}">leave</a>
<img src="{elsewhere}.png" alt="">
<p><a id="anchor" href="#part">to the part</a> <a id="popup" href="/second" target="_blank">popup</a></p>
<p id="part" style="margin-top:1500px">The part</p>
</body></html>"##
    );
    let counter = Arc::clone(&off_site);
    let app = Router::new()
        .route("/", get(move || async move { Html(home) }))
        .route(
            "/second",
            get(|| async { Html("<title>Second</title><p>The second page</p>") }),
        )
        .route(
            "/echo",
            get(
                |Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    let typed = q.get("q").cloned().unwrap_or_default();
                    Html(format!("<title>Echo</title><p>You typed: {typed}</p>"))
                },
            ),
        )
        .route(
            "/missing",
            get(|| async { (StatusCode::NOT_FOUND, Html("<title>Missing</title>nothing")) }),
        )
        .route(
            "/big",
            get(|| async { Html(format!("<title>Big</title><p>{}</p>", "é".repeat(5000))) }),
        )
        .route(
            "/to-file",
            get(|| async { Redirect::temporary("file:///etc/passwd") }),
        )
        .route(
            "/redirect-away",
            get(move || async move { Redirect::temporary(&elsewhere) }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(20)).await;
                Html("<title>Slow</title>")
            }),
        )
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let counter = Arc::clone(&counter);
                async move {
                    let host = req
                        .headers()
                        .get(header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or_default();
                    if host.starts_with("localhost") {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    next.run(req).await
                }
            },
        ));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Site { addr, off_site }
}

/// A daemon whose sessions may load loopback pages (the test's site).
pub(crate) async fn spawn_browser_app(tweak: impl FnOnce(&mut palyra::Settings)) -> TestApp {
    spawn_app_with(|s| {
        s.browser.allow_private_networks = true;
        s.browser.navigation_timeout_s = 10;
        tweak(s);
    })
    .await
}

pub(crate) async fn post(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.bearer_post(path, body).await
}

pub(crate) async fn fetch(app: &TestApp, path: &str) -> reqwest::Response {
    app.http
        .get(app.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
}

pub(crate) async fn ok_json(response: reqwest::Response) -> Value {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{status}: {body}");
    body
}

pub(crate) async fn open(app: &TestApp, body: Value) -> String {
    let response = post(app, SESSIONS, body).await;
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    let body: Value = response.json().await.unwrap();
    body["session_id"].as_str().unwrap().to_owned()
}

/// Where the daemon makes session profiles: outside its data dir, in the system's
/// temporary directory, named after the data dir.
pub(crate) fn profiles_root(app: &TestApp) -> PathBuf {
    app.settings
        .browser
        .profiles_root(&app.dir.path().join("data"))
}

/// Processes whose command line names a profile under `root`, and whether each is
/// the browser process itself (not a renderer or other helper).
pub(crate) fn browser_processes(root: &Path) -> Vec<(u32, bool)> {
    let marker = format!("--user-data-dir={}/", root.display());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        // A zombie has an empty command line; it is gone in all but name.
        if args.iter().any(|a| a.starts_with(&marker)) {
            let main = !args.iter().any(|a| a.starts_with("--type="));
            found.push((pid, main));
        }
    }
    found
}

/// Waits (bounded) until no process uses a profile under `root` and no profile is left.
pub(crate) async fn assert_no_browser_left(root: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !browser_processes(root).is_empty() || profile_dirs(root) > 0 {
        assert!(
            Instant::now() < deadline,
            "browser processes left: {:?}, profiles left: {}",
            browser_processes(root),
            profile_dirs(root)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) fn profile_dirs(root: &Path) -> usize {
    std::fs::read_dir(root).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test]
async fn a_session_opens_navigates_clicks_types_and_closes() {
    let site = start_site().await.addr;
    let home = format!("http://{site}/");
    let app = spawn_browser_app(|_| {}).await;

    let response = post(
        &app,
        SESSIONS,
        json!({ "start_url": home, "viewport": { "width": 800, "height": 600 } }),
    )
    .await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let id = created["session_id"].as_str().unwrap().to_owned();
    assert_eq!(created["url"], home);
    assert_eq!(created["title"], "Home");
    assert!(created["created_at"].is_string());
    let session = |rest: &str| format!("{SESSIONS}/{id}{rest}");

    // Navigate: the URL, the title and the document's HTTP status.
    let nav = ok_json(
        post(
            &app,
            &session("/navigate"),
            json!({ "url": format!("http://{site}/second") }),
        )
        .await,
    )
    .await;
    assert_eq!(nav["title"], "Second");
    assert_eq!(nav["status"], 200);
    let nav = ok_json(
        post(
            &app,
            &session("/navigate"),
            json!({ "url": format!("http://{site}/missing") }),
        )
        .await,
    )
    .await;
    assert_eq!(nav["status"], 404);
    assert_eq!(nav["title"], "Missing");

    // Click a link: the new page has loaded when the answer comes.
    ok_json(post(&app, &session("/navigate"), json!({ "url": home })).await).await;
    let clicked =
        ok_json(post(&app, &session("/click"), json!({ "selector": "#next" })).await).await;
    assert_eq!(clicked["url"], format!("http://{site}/second"));
    assert_eq!(clicked["title"], "Second");
    assert_eq!(clicked["navigated"], true);

    // Links that load nothing in this page answer at once.
    ok_json(post(&app, &session("/navigate"), json!({ "url": home })).await).await;
    let started = Instant::now();
    let anchor =
        ok_json(post(&app, &session("/click"), json!({ "selector": "#anchor" })).await).await;
    assert_eq!(anchor["url"], format!("{home}#part"));
    let popup =
        ok_json(post(&app, &session("/click"), json!({ "selector": "#popup" })).await).await;
    assert_eq!(popup["url"], format!("{home}#part"));
    assert_eq!(popup["navigated"], false);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // Type into the form and submit it.
    ok_json(post(&app, &session("/navigate"), json!({ "url": home })).await).await;
    let typed = ok_json(
        post(
            &app,
            &session("/type"),
            json!({ "selector": "#q", "text": "hello world" }),
        )
        .await,
    )
    .await;
    assert_eq!(typed["title"], "Home");
    let submitted =
        ok_json(post(&app, &session("/click"), json!({ "selector": "#go" })).await).await;
    assert_eq!(
        submitted["url"],
        format!("http://{site}/echo?q=hello+world")
    );
    assert_eq!(submitted["title"], "Echo");
    let content = ok_json(fetch(&app, &session("/content")).await).await;
    assert_eq!(content["title"], "Echo");
    assert_eq!(content["text"], "You typed: hello world");
    assert_eq!(content["truncated"], false);

    // Elements that are not there, or not there to click or type into.
    ok_json(post(&app, &session("/navigate"), json!({ "url": home })).await).await;
    let missing = post(&app, &session("/click"), json!({ "selector": "#nope" })).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(error_code(missing).await, "selector_not_found");
    for selector in ["#hidden", "#off", "#covered"] {
        let response = post(&app, &session("/click"), json!({ "selector": selector })).await;
        assert_eq!(response.status(), 409, "{selector}");
        assert_eq!(error_code(response).await, "element_not_interactable");
    }
    let response = post(
        &app,
        &session("/type"),
        json!({ "selector": "#go", "text": "x" }),
    )
    .await;
    assert_eq!(response.status(), 409);
    let response = post(&app, &session("/click"), json!({ "selector": "a[" })).await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "invalid_selector");
    // The failed attempts clicked nothing.
    let info = ok_json(fetch(&app, &session("")).await).await;
    assert_eq!(info["url"], home);
    assert_eq!(info["title"], "Home");

    // The screenshot is a PNG of the viewport.
    let shot = fetch(&app, &session("/screenshot")).await;
    assert_eq!(shot.status(), 200);
    assert_eq!(shot.headers()[header::CONTENT_TYPE], "image/png");
    let bytes = shot.bytes().await.unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes.to_vec()));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).expect("PNG pixels decode");
    assert_eq!((frame.width, frame.height), (800, 600));

    let list = ok_json(fetch(&app, SESSIONS).await).await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(list["sessions"][0]["session_id"], id);
    assert_eq!(list["max_sessions"], 4);

    // Close: the process and the profile are gone.
    let root = profiles_root(&app);
    assert_eq!(
        browser_processes(&root)
            .iter()
            .filter(|(_, main)| *main)
            .count(),
        1
    );
    assert_eq!(profile_dirs(&root), 1);
    let closed = app
        .http
        .delete(app.url(&session("")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), 204);
    assert_no_browser_left(&root).await;
    assert_eq!(profile_dirs(&root), 0);
    let gone = fetch(&app, &session("")).await;
    assert_eq!(gone.status(), 404);
    assert_eq!(error_code(gone).await, "browser_session_not_found");

    // Created, navigated and closed are audited, with origins only: never a path or
    // a query, which can carry tokens.
    let audit = app.bearer_get_json("/console/v1/audit?limit=500").await;
    let mine: Vec<&Value> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["subject"] == id.as_str())
        .collect();
    let kinds: Vec<&str> = mine.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"browser_session_closed"), "{kinds:?}");
    assert!(kinds.contains(&"browser_navigated"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"browser_session_created"), "{kinds:?}");
    for event in &mine {
        assert_eq!(event["actor"], "root");
        let detail = event["detail"].as_str().unwrap();
        assert!(
            !detail.contains("/second") && !detail.contains('?'),
            "{detail}"
        );
    }
}

#[tokio::test]
async fn refused_schemes_and_private_destinations() {
    let site = start_site().await.addr;
    // The default: private destinations are refused.
    let app = spawn_app_with(|_| {}).await;
    for url in [
        "file:///etc/passwd",
        "chrome://version",
        "data:text/html,hi",
        "javascript:alert(1)",
    ] {
        let response = post(&app, SESSIONS, json!({ "start_url": url })).await;
        assert_eq!(response.status(), 400, "{url}");
        assert_eq!(error_code(response).await, "url_scheme_refused", "{url}");
    }
    for url in [
        format!("http://{site}/"),
        format!("http://localhost:{}/", site.port()),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[::1]/".to_owned(),
        "http://10.0.0.1/".to_owned(),
    ] {
        let response = post(&app, SESSIONS, json!({ "start_url": url })).await;
        assert_eq!(response.status(), 403, "{url}");
        assert_eq!(error_code(response).await, "destination_refused", "{url}");
    }
    // Nothing was started for refused requests.
    assert_eq!(profile_dirs(&profiles_root(&app)), 0);

    // The same checks on a session's navigation.
    let id = open(&app, json!({})).await;
    let navigate = format!("{SESSIONS}/{id}/navigate");
    let response = post(
        &app,
        &navigate,
        json!({ "url": format!("http://localhost:{}/second", site.port()) }),
    )
    .await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("loopback"),
        "{body}"
    );
    let response = post(&app, &navigate, json!({ "url": "file:///etc/passwd" })).await;
    assert_eq!(response.status(), 400);
    let response = post(&app, &navigate, json!({ "url": "not a url" })).await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "invalid_url");
    let info = ok_json(fetch(&app, &format!("{SESSIONS}/{id}")).await).await;
    assert_eq!(info["url"], "about:blank");
}

/// With an allow-list, every request the page makes is checked, not only the URL
/// given: a redirect or a link to another host is blocked, reported, and never reaches
/// that host.
#[tokio::test]
async fn redirects_and_links_to_refused_destinations_are_blocked() {
    let Site {
        addr: site,
        off_site,
    } = start_site().await;
    let port = site.port();
    let app = spawn_browser_app(|s| s.browser.allowed_hosts = vec!["127.0.0.1".into()]).await;
    let id = open(&app, json!({ "start_url": format!("http://{site}/") })).await;
    let session = |rest: &str| format!("{SESSIONS}/{id}{rest}");

    let response = post(
        &app,
        &session("/navigate"),
        json!({ "url": format!("http://localhost:{port}/second") }),
    )
    .await;
    assert_eq!(response.status(), 403);
    // A redirect hop to a refused host.
    let response = post(
        &app,
        &session("/navigate"),
        json!({ "url": format!("http://{site}/redirect-away") }),
    )
    .await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "destination_refused");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("localhost"),
        "{body}"
    );
    // A link to a refused host.
    ok_json(
        post(
            &app,
            &session("/navigate"),
            json!({ "url": format!("http://{site}/") }),
        )
        .await,
    )
    .await;
    let response = post(&app, &session("/click"), json!({ "selector": "#away" })).await;
    assert_eq!(response.status(), 403);
    assert_eq!(error_code(response).await, "destination_refused");
    assert_eq!(
        off_site.load(Ordering::SeqCst),
        0,
        "no request reached the refused host"
    );

    // A redirect to file: is not followed either.
    let response = post(
        &app,
        &session("/navigate"),
        json!({ "url": format!("http://{site}/to-file") }),
    )
    .await;
    assert_eq!(response.status(), 502);
    assert_eq!(error_code(response).await, "navigation_failed");
    let info = ok_json(fetch(&app, &session("")).await).await;
    assert!(
        !info["url"].as_str().unwrap().starts_with("file:"),
        "{info}"
    );
}

#[tokio::test]
async fn idle_sessions_expire_and_the_limit_holds() {
    // Six seconds: a sandboxed Chromium takes seconds to start on a loaded machine,
    // and the first session must not idle out while the second starts.
    let app = spawn_browser_app(|s| {
        s.browser.max_sessions = 2;
        s.browser.idle_timeout_s = 6;
    })
    .await;
    let first = open(&app, json!({})).await;
    let _second = open(&app, json!({})).await;
    let response = post(&app, SESSIONS, json!({})).await;
    assert_eq!(response.status(), 429);
    assert_eq!(error_code(response).await, "browser_session_limit");
    // Use keeps the first one alive while the second idles out.
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        ok_json(fetch(&app, &format!("{SESSIONS}/{first}/content")).await).await;
    }
    let list = ok_json(fetch(&app, SESSIONS).await).await;
    let ids: Vec<&str> = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [first.as_str()]);
    // A place is free again.
    open(&app, json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let list = ok_json(fetch(&app, SESSIONS).await).await;
        if list["sessions"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "sessions did not expire: {list}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let root = profiles_root(&app);
    assert_no_browser_left(&root).await;
    assert_eq!(profile_dirs(&root), 0);
    let audit = app
        .bearer_get_json("/console/v1/audit?kind=browser_session_closed")
        .await;
    let idle = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["detail"] == "idle timeout" && e["actor"] == "system")
        .count();
    assert!(idle >= 1, "{audit}");
}

#[tokio::test]
async fn a_killed_browser_is_a_clean_error_and_the_session_is_gone() {
    let site = start_site().await.addr;
    let app = spawn_browser_app(|_| {}).await;
    let id = open(&app, json!({ "start_url": format!("http://{site}/") })).await;
    let root = profiles_root(&app);
    let main: Vec<u32> = browser_processes(&root)
        .into_iter()
        .filter_map(|(pid, main)| main.then_some(pid))
        .collect();
    assert_eq!(main.len(), 1, "one browser process per session");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &main[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    let started = Instant::now();
    let response = post(
        &app,
        &format!("{SESSIONS}/{id}/navigate"),
        json!({ "url": format!("http://{site}/second") }),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered in {:?}",
        started.elapsed()
    );
    assert_eq!(response.status(), 410);
    assert_eq!(error_code(response).await, "browser_session_gone");
    let list = ok_json(fetch(&app, SESSIONS).await).await;
    assert!(list["sessions"].as_array().unwrap().is_empty(), "{list}");
    let response = fetch(&app, &format!("{SESSIONS}/{id}")).await;
    assert_eq!(response.status(), 404);
    assert_no_browser_left(&root).await;
    assert_eq!(profile_dirs(&root), 0);
    let audit = app
        .bearer_get_json("/console/v1/audit?kind=browser_session_closed")
        .await;
    let closed = &audit["events"][0];
    assert_eq!(closed["subject"], id.as_str());
    assert_eq!(closed["outcome"], "failure");
    assert!(
        closed["detail"].as_str().unwrap().contains("crashed"),
        "{closed}"
    );
}

/// A crashed page (its renderer process killed) ends the session the same way.
#[tokio::test]
async fn a_crashed_page_is_a_clean_error_and_the_session_is_gone() {
    let site = start_site().await.addr;
    let app = spawn_browser_app(|_| {}).await;
    let id = open(&app, json!({ "start_url": format!("http://{site}/") })).await;
    let root = profiles_root(&app);
    let main = browser_processes(&root)
        .into_iter()
        .find_map(|(pid, main)| main.then_some(pid))
        .expect("the browser process");
    // Renderers are in the browser's process group.
    let renderers: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the parenthesized name: state, ppid, pgrp.
            let pgrp = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(2)?.parse::<u32>().ok());
            pgrp == Some(main)
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.windows(15).any(|w| w == b"--type=renderer"))
        })
        .collect();
    assert!(!renderers.is_empty(), "a renderer process");
    for pid in &renderers {
        std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(5);
    // The crash event may take a moment to arrive; until then the page is busy dying.
    let status = loop {
        let response = fetch(&app, &format!("{SESSIONS}/{id}/content")).await;
        if response.status() != 200 || Instant::now() > deadline {
            break response.status();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 410);
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    let list = ok_json(fetch(&app, SESSIONS).await).await;
    assert!(list["sessions"].as_array().unwrap().is_empty(), "{list}");
    assert_no_browser_left(&root).await;
}

#[tokio::test]
async fn slow_pages_time_out_and_content_is_capped() {
    let site = start_site().await.addr;
    let app = spawn_browser_app(|s| {
        s.browser.navigation_timeout_s = 1;
        s.browser.content_max_bytes = 1024;
    })
    .await;
    let id = open(&app, json!({})).await;
    let started = Instant::now();
    let response = post(
        &app,
        &format!("{SESSIONS}/{id}/navigate"),
        json!({ "url": format!("http://{site}/slow") }),
    )
    .await;
    assert_eq!(response.status(), 504);
    assert_eq!(error_code(response).await, "navigation_timeout");
    assert!(started.elapsed() < Duration::from_secs(5));

    let nav = ok_json(
        post(
            &app,
            &format!("{SESSIONS}/{id}/navigate"),
            json!({ "url": format!("http://{site}/big") }),
        )
        .await,
    )
    .await;
    assert_eq!(nav["title"], "Big");
    let content = ok_json(fetch(&app, &format!("{SESSIONS}/{id}/content")).await).await;
    assert_eq!(content["truncated"], true);
    let text = content["text"].as_str().unwrap();
    assert!(text.len() <= 1024 && text.len() > 1000, "{}", text.len());
    assert!(text.chars().all(|c| c == 'é'));
}

#[tokio::test]
async fn without_chromium_the_daemon_runs_and_sessions_answer_503() {
    let app = spawn_app_with(|s| s.browser.chromium_path = "/nonexistent/chromium".into()).await;
    let response = post(&app, SESSIONS, json!({})).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "browser_unavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/chromium"),
        "{body}"
    );
    assert_eq!(profile_dirs(&profiles_root(&app)), 0);
    let list = ok_json(fetch(&app, SESSIONS).await).await;
    assert!(list["sessions"].as_array().unwrap().is_empty());

    let app = spawn_app_with(|s| s.browser.enabled = false).await;
    let response = post(&app, SESSIONS, json!({})).await;
    assert_eq!(response.status(), 503);
    assert_eq!(error_code(response).await, "browser_disabled");
}

#[tokio::test]
async fn bad_requests_are_clear_400s_and_shutdown_ends_every_browser() {
    let app = spawn_browser_app(|_| {}).await;
    let response = post(
        &app,
        SESSIONS,
        json!({ "viewport": { "width": 5, "height": 600 } }),
    )
    .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("viewport.width"),
        "{body}"
    );
    let response = post(&app, SESSIONS, json!({ "start_url": 5 })).await;
    assert_eq!(response.status(), 400);
    let response = post(
        &app,
        &format!("{SESSIONS}/bs_nope/click"),
        json!({ "selector": "a" }),
    )
    .await;
    assert_eq!(response.status(), 404);
    assert_eq!(error_code(response).await, "browser_session_not_found");

    // A cookie session needs its CSRF token here too.
    let login = app.login().await;
    let response = app
        .http
        .post(app.url(SESSIONS))
        .header(reqwest::header::COOKIE, login.cookie_header())
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    open(&app, json!({})).await;
    // The smallest viewport: its screenshot once hung in a window that small.
    let small = open(&app, json!({ "viewport": { "width": 100, "height": 100 } })).await;
    let shot = fetch(&app, &format!("{SESSIONS}/{small}/screenshot")).await;
    assert_eq!(shot.status(), 200);
    let bytes = shot.bytes().await.unwrap();
    let info = png::Decoder::new(std::io::Cursor::new(bytes.to_vec()))
        .read_info()
        .expect("a PNG")
        .info()
        .clone();
    assert_eq!((info.width, info.height), (100, 100));
    let root = profiles_root(&app);
    assert_eq!(
        browser_processes(&root).iter().filter(|(_, m)| *m).count(),
        2
    );
    app.stop().await;
    assert_no_browser_left(&root).await;
    assert_eq!(profile_dirs(&root), 0);
}

/// A daemon killed with SIGKILL cannot end its browsers; the next start on the same
/// data dir ends them and removes their profiles.
#[tokio::test]
async fn a_restart_after_a_kill_ends_the_browsers_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let root = palyra::Settings::defaults().browser.profiles_root(&data);
    let mut daemon = crate::helpers::start_child(&data, &[]).await;
    let response = reqwest::Client::new()
        .post(format!("{}{SESSIONS}", daemon.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    daemon.child.kill().await.unwrap();
    assert!(
        browser_processes(&root).iter().any(|(_, main)| *main),
        "the browser outlives a killed daemon"
    );
    assert_eq!(profile_dirs(&root), 1);

    let daemon = crate::helpers::start_child(&data, &[]).await;
    assert_no_browser_left(&root).await;
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{status}: {log}");
}
