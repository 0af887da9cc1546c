//! Browser isolation against real headless Chromium: a hostile page whose every kind
//! of request (frames, an out-of-process frame, images, fetch, XHR, WebSocket,
//! workers, a service worker, a redirect) aims at a refused host and reaches
//! nothing; a rebinding domain served by the test's own DNS server; and the browser's
//! processes as the kernel sees them (no listening socket, no daemon variable in
//! their environment, never root).

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect};
use axum::routing::get;
use serde_json::{Value, json};

use crate::browser::{
    SESSIONS, browser_processes, fetch, ok_json, open, post, profiles_root, spawn_browser_app,
};
use crate::helpers::{ADMIN_TOKEN, error_code};

/// A TCP listener that records what every connection it accepts sends, and answers
/// none: the refused destination. Every URL aimed at it starts with `marker`, a path
/// unique to this trap, so a request from the browser carries it; a connection that
/// has sent nothing yet counts too. A request without the marker is another test's
/// client reaching a port the kernel handed the trap after that test let it go: it
/// is shown, not counted.
struct Trap {
    addr: SocketAddr,
    marker: String,
    received: Arc<Mutex<Vec<Option<String>>>>,
}

impl Trap {
    /// The connections that could have come from the browser.
    fn reached(&self) -> usize {
        let received = self.received.lock().unwrap();
        received
            .iter()
            .filter(|head| {
                head.as_ref()
                    .is_none_or(|h| h.is_empty() || h.contains(&self.marker))
            })
            .count()
    }

    /// Everything received, for a failure's message.
    fn log(&self) -> String {
        format!("{:?}", self.received.lock().unwrap())
    }
}

async fn start_trap(ip: Ipv4Addr) -> Trap {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let marker = format!("trap-{}", rand::random::<u64>());
    let received: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let log = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let index = {
                let mut log = log.lock().unwrap();
                log.push(None);
                log.len() - 1
            };
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut head = vec![0; 1024];
                let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut head))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or(0);
                let line = String::from_utf8_lossy(&head[..n])
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned();
                log.lock().unwrap()[index] = Some(line);
            });
        }
    });
    Trap {
        addr,
        marker,
        received,
    }
}

async fn serve(ip: Ipv4Addr, app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

fn script(body: String) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript")], body)
}

/// The page: every attempt reports `reached` or `blocked`, and the title becomes
/// `done` once all have; `control` is a request to the page's own site, which must
/// work.
fn hostile_page(refused: &str, frame_site: &str) -> String {
    format!(
        r#"<!doctype html><html><head><title>hostile</title></head><body><pre id="out"></pre>
<script>
const R = "{refused}";
const expected = ["fetch", "xhr", "ws", "img", "iframe", "oopif_fetch", "oopif_img",
  "worker", "sw", "redirect", "control"];
const results = {{}};
function report(name, value) {{
  if (name in results) return;
  results[name] = value;
  if (expected.every(k => k in results)) {{
    document.getElementById("out").textContent = JSON.stringify(results);
    document.title = "done";
  }}
}}
function attempt(name, promise) {{
  promise.then(() => report(name, "reached"), () => report(name, "blocked"));
}}
attempt("fetch", fetch(R + "/fetch", {{ mode: "no-cors" }}));
attempt("redirect", fetch("/redirect", {{ mode: "no-cors" }}));
fetch("/ok").then(r => r.text()).then(
  t => report("control", t === "ok" ? "reached" : "wrong"),
  () => report("control", "blocked"));
const xhr = new XMLHttpRequest();
xhr.onload = () => report("xhr", "reached");
xhr.onerror = () => report("xhr", "blocked");
xhr.open("GET", R + "/xhr");
xhr.send();
const ws = new WebSocket(R.replace("http:", "ws:") + "/ws");
ws.onopen = () => report("ws", "reached");
ws.onerror = () => report("ws", "blocked");
const img = new Image();
img.onload = () => report("img", "reached");
img.onerror = () => report("img", "blocked");
img.src = R + "/img.png";
const frame = document.createElement("iframe");
frame.src = R + "/frame";
frame.onload = () => report("iframe", "loaded");
document.body.appendChild(frame);
// A frame of another site: its own renderer (site isolation), its own requests.
window.addEventListener("message", e => {{
  if (e.data && e.data.kind) report(e.data.kind, e.data.value);
}});
const oopif = document.createElement("iframe");
oopif.src = "{frame_site}/frame?target=" + encodeURIComponent(R);
document.body.appendChild(oopif);
const worker = new Worker("/worker.js");
worker.onmessage = e => report("worker", e.data);
navigator.serviceWorker.addEventListener("message", e => report("sw", e.data));
navigator.serviceWorker.register("/sw.js")
  .then(() => navigator.serviceWorker.ready)
  .then(reg => reg.active.postMessage(R))
  .catch(e => report("sw", "no service worker: " + e));
</script></body></html>"#
    )
}

const FRAME_PAGE: &str = r#"<!doctype html><title>frame</title><script>
const R = new URLSearchParams(location.search).get("target");
const tell = (kind, value) => parent.postMessage({ kind, value }, "*");
fetch(R + "/oopif", { mode: "no-cors" }).then(() => tell("oopif_fetch", "reached"),
  () => tell("oopif_fetch", "blocked"));
const img = new Image();
img.onload = () => tell("oopif_img", "reached");
img.onerror = () => tell("oopif_img", "blocked");
img.src = R + "/oopif.png";
</script>"#;

/// A page that breaks what the daemon's own scripts call.
const HOSTILE_SCRIPT: &str = r#"<!doctype html><title>Hostile script</title>
<button id="b">b</button><script>
Element.prototype.scrollIntoView = () => { throw new Error("hostile scrollIntoView"); };
Object.defineProperty(HTMLElement.prototype, "innerText",
  { get() { throw new Error("hostile innerText"); } });
</script>"#;

/// The processes of the browser whose main process is `main` (its process group).
fn group_of(main: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let pgrp = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(2)?.parse::<u32>().ok());
            pgrp == Some(main)
        })
        .collect()
}

fn main_browser(root: &Path) -> u32 {
    let mains: Vec<u32> = browser_processes(root)
        .into_iter()
        .filter_map(|(pid, main)| main.then_some(pid))
        .collect();
    assert_eq!(mains.len(), 1, "one browser: {mains:?}");
    mains[0]
}

fn renderers(group: &[u32]) -> usize {
    group
        .iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.windows(15).any(|w| w == b"--type=renderer"))
        })
        .count()
}

/// Waits (bounded) until the page's title is `done`; answers its report.
async fn wait_for_report(app: &crate::helpers::TestApp, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let content = ok_json(fetch(app, &format!("{SESSIONS}/{id}/content")).await).await;
        if content["title"] == "done" {
            return serde_json::from_str(content["text"].as_str().unwrap()).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the page did not finish its attempts: {content}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn no_request_of_any_kind_reaches_a_refused_host_and_the_session_still_works() {
    let trap = start_trap(Ipv4Addr::LOCALHOST).await;
    // Under a name the policy refuses (not in browser.allowed_hosts).
    let refused = format!("http://localhost:{}/{}", trap.addr.port(), trap.marker);
    let frame_site = serve(
        Ipv4Addr::new(127, 0, 0, 3),
        Router::new().route("/frame", get(|| async { Html(FRAME_PAGE) })),
    )
    .await;
    let frame_site = format!("http://{frame_site}");
    let page = hostile_page(&refused, &frame_site);
    let worker = format!(
        r#"fetch("{refused}/worker", {{ mode: "no-cors" }}).then(() => postMessage("reached"), () => postMessage("blocked"));"#
    );
    let sw = r#"self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", e => e.waitUntil(self.clients.claim()));
self.addEventListener("message", e => {
  fetch(e.data + "/sw", { mode: "no-cors" }).then(() => "reached", () => "blocked")
    .then(r => e.source.postMessage(r));
});"#;
    let to_refused = format!("{refused}/redirected");
    let site = serve(
        Ipv4Addr::LOCALHOST,
        Router::new()
            .route("/", get(move || async move { Html(page) }))
            .route("/ok", get(|| async { "ok" }))
            .route(
                "/worker.js",
                get(move || async move { script(worker.clone()) }),
            )
            .route("/sw.js", get(move || async move { script(sw.to_owned()) }))
            .route(
                "/redirect",
                get(move || async move { Redirect::temporary(&to_refused) }),
            ),
    )
    .await;
    let app = spawn_browser_app(|s| {
        s.browser.allowed_hosts = vec!["127.0.0.1".into(), "127.0.0.3".into()];
    })
    .await;
    let id = open(&app, json!({ "start_url": format!("http://{site}/") })).await;

    let report = wait_for_report(&app, &id).await;
    for kind in [
        "fetch",
        "xhr",
        "ws",
        "img",
        "oopif_fetch",
        "oopif_img",
        "worker",
        "sw",
        "redirect",
    ] {
        assert_eq!(report[kind], "blocked", "{kind}: {report}");
    }
    assert_eq!(report["iframe"], "loaded", "{report}");
    assert_eq!(report["control"], "reached", "{report}");
    assert_eq!(
        trap.reached(),
        0,
        "the refused host was reached: {}",
        trap.log()
    );
    // The frame of another site ran in a renderer of its own.
    let group = group_of(main_browser(&profiles_root(&app)));
    assert!(renderers(&group) >= 2, "an out-of-process frame");

    // The session still works, and the refusals were counted.
    let nav = ok_json(
        post(
            &app,
            &format!("{SESSIONS}/{id}/navigate"),
            json!({ "url": format!("http://{site}/ok") }),
        )
        .await,
    )
    .await;
    assert_eq!(nav["status"], 200);
    let posture = app.bearer_get_json("/console/v1/deployment/posture").await;
    let refused_requests = posture["browser"]["refused_requests"].as_u64().unwrap();
    // The page's own requests stop at the interceptor; the frame's, the workers'
    // and the socket's at the proxy.
    assert!(refused_requests >= 4, "{posture}");
    assert_eq!(trap.reached(), 0, "{}", trap.log());
}

#[tokio::test]
async fn a_rebinding_domain_never_reaches_the_refused_address() {
    // The trap listens on 127.0.0.2: loopback, refused by default.
    let trap = start_trap(Ipv4Addr::new(127, 0, 0, 2)).await;
    // A public address first (the check before the navigation passes), the trap's
    // address from then on (what a browser resolving on its own would reach).
    let dns = palyra::testkit::dns::FakeDns::start(
        "rebind.test",
        vec![Ipv4Addr::new(93, 184, 216, 34), Ipv4Addr::new(127, 0, 0, 2)],
    )
    .await;
    let server = dns.addr.to_string();
    let app = crate::helpers::spawn_app_with(|s| {
        s.browser.navigation_timeout_s = 10;
        s.browser.dns_servers = vec![server];
    })
    .await;
    let id = open(&app, json!({})).await;
    let url = format!("http://rebind.test:{}/{}/", trap.addr.port(), trap.marker);
    let response = post(
        &app,
        &format!("{SESSIONS}/{id}/navigate"),
        json!({ "url": url }),
    )
    .await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "destination_refused", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("127.0.0.2"),
        "{body}"
    );
    // The check before the navigation and the proxy each asked.
    assert!(dns.queries() >= 2, "{} queries", dns.queries());
    assert_eq!(trap.reached(), 0, "{}", trap.log());
    // A name that resolves to a refused address from the start is refused before
    // the browser is asked.
    let response = post(
        &app,
        &format!("{SESSIONS}/{id}/navigate"),
        json!({ "url": url }),
    )
    .await;
    assert_eq!(response.status(), 403);
    assert_eq!(error_code(response).await, "destination_refused");
    assert_eq!(trap.reached(), 0, "{}", trap.log());
}

/// Inodes of the TCP sockets in the LISTEN state, IPv4 and IPv6.
fn listening_inodes() -> HashSet<u64> {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 9 && fields[3] == "0A" {
                inodes.insert(fields[9].parse().unwrap());
            }
        }
    }
    inodes
}

fn socket_inodes(pid: u32) -> HashSet<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    fds.flatten()
        .filter_map(|fd| {
            let target = std::fs::read_link(fd.path()).ok()?;
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// The real, effective, saved and file-system uids of a process.
fn uids(pid: u32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|u| u.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Against the palyrad binary, whose environment holds `PALYRA_ADMIN_TOKEN` and
/// other `PALYRA_` variables: none reaches Chromium.
#[tokio::test]
async fn the_browser_has_no_port_no_daemon_variable_and_is_never_root() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let root = palyra::Settings::defaults().browser.profiles_root(&data);
    let daemon =
        crate::helpers::start_child(&data, &[("PALYRA_BROWSER__ALLOW_PRIVATE_NETWORKS", "true")])
            .await;
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let site = serve(
        Ipv4Addr::LOCALHOST,
        Router::new()
            .route(
                "/",
                get(move || async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    Html("<title>Plain</title><p>plain")
                }),
            )
            .route("/hostile-script", get(|| async { Html(HOSTILE_SCRIPT) })),
    )
    .await;
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}{SESSIONS}", daemon.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "start_url": format!("http://{site}/") }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["title"], "Plain");

    let group = group_of(main_browser(&root));
    assert!(group.len() >= 3, "the browser and its helpers: {group:?}");
    let listening = listening_inodes();
    let root_is_daemon = nix_uid() == 0;
    let nobody = uid_of("nobody");
    for pid in &group {
        let sockets = socket_inodes(*pid);
        assert!(
            sockets.is_disjoint(&listening),
            "process {pid} has a listening TCP socket"
        );
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        assert!(
            !environ.windows(7).any(|w| w == b"PALYRA_"),
            "process {pid} has a PALYRA_ variable"
        );
        let ids = uids(*pid);
        assert_eq!(ids.len(), 4, "process {pid}");
        assert!(ids.iter().all(|u| *u != 0), "process {pid} runs as root");
        if root_is_daemon {
            assert!(
                ids.iter().all(|u| Some(*u) == nobody),
                "process {pid}: {ids:?}"
            );
        }
    }
    // Another process (this test) cannot use the browser's proxy as a relay: the
    // connection is dropped unanswered and the site sees nothing.
    let main = main_browser(&root);
    let cmdline = std::fs::read(format!("/proc/{main}/cmdline")).unwrap();
    let proxy_port: u16 = cmdline
        .split(|b| *b == 0)
        .find_map(|arg| {
            std::str::from_utf8(arg)
                .ok()?
                .strip_prefix("--proxy-server=http://127.0.0.1:")?
                .parse()
                .ok()
        })
        .expect("the browser's --proxy-server");
    let before = hits.load(Ordering::SeqCst);
    let mut relay = tokio::net::TcpStream::connect(("127.0.0.1", proxy_port))
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    relay
        .write_all(format!("GET http://{site}/ HTTP/1.1\r\nHost: {site}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), relay.read_to_end(&mut answer)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the proxy answered another process: {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(hits.load(Ordering::SeqCst), before);

    // A page whose scripts make ours throw: a 502 naming the page's exception.
    let session = format!("{SESSIONS}/{}", created["session_id"].as_str().unwrap());
    let response = client
        .post(format!("{}{session}/navigate", daemon.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "url": format!("http://{site}/hostile-script") }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    for (method, path, body) in [
        ("POST", "/click", json!({ "selector": "#b" })),
        ("GET", "/content", Value::Null),
    ] {
        let request = if method == "POST" {
            client
                .post(format!("{}{session}{path}", daemon.base))
                .json(&body)
        } else {
            client.get(format!("{}{session}{path}", daemon.base))
        };
        let response = request.bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(response.status(), 502, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["error"]["code"], "page_script_failed",
            "{path}: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("hostile"),
            "{path}: {body}"
        );
    }

    // The daemon itself has the variables this checks for.
    let own = std::fs::read(format!("/proc/{}/environ", daemon.pid().unwrap())).unwrap();
    assert!(own.windows(18).any(|w| w == b"PALYRA_ADMIN_TOKEN"));
    // The profiles are outside the data dir, which the browser's user cannot enter.
    assert!(!root.starts_with(&data));

    let posture: Value = client
        .get(format!("{}/console/v1/deployment/posture", daemon.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let browser = &posture["browser"];
    assert_eq!(browser["devtools"], "pipe", "{posture}");
    assert_eq!(browser["egress"], "proxy", "{posture}");
    if root_is_daemon {
        assert_eq!(browser["user"], "nobody", "{posture}");
    }
    match browser["sandbox"].as_str().unwrap() {
        "on" => {}
        "unavailable" => assert!(
            posture["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w.as_str().unwrap().contains("sandbox")),
            "{posture}"
        ),
        other => panic!("sandbox {other} after a browser started: {posture}"),
    }
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{status}: {log}");
    assert!(!log.contains(ADMIN_TOKEN));
}

fn nix_uid() -> u32 {
    uids(std::process::id())[1]
}

fn uid_of(name: &str) -> Option<u32> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&name))
            .then(|| fields.get(2)?.parse().ok())
            .flatten()
    })
}
