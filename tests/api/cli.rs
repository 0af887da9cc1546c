//! The `palyra` CLI as an operator runs it, against a child palyrad.

use std::process::Stdio;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::fakes::FakeProvider;
use crate::helpers::{ADMIN_TOKEN, start_child};

pub(crate) struct Run {
    pub(crate) ok: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

pub(crate) async fn palyra(base: &str, args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_palyra"))
        .args(args)
        .env("PALYRA_URL", base)
        .env("PALYRA_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.unwrap();
    }
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn an_operator_manages_profiles_with_the_cli() {
    let fake = FakeProvider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = fake.url();
    let daemon = start_child(
        &dir.path().join("data"),
        &[("PALYRA_PROVIDERS__OPENAI__API_BASE_URL", url.as_str())],
    )
    .await;
    let base = daemon.base.clone();
    let key = "good-cli-key-0123456789";

    let status = palyra(&base, &["status"], None).await;
    assert!(status.ok, "{}", status.stderr);
    assert!(status.stdout.contains("alive, ready"), "{}", status.stdout);
    let login = palyra(&base, &["login"], None).await;
    assert!(
        login.ok && login.stdout.contains("principal root"),
        "{}",
        login.stdout
    );
    let open = palyra(&base, &["--json", "console", "open"], None).await;
    let handoff: Value = serde_json::from_str(&open.stdout).unwrap();
    assert!(
        handoff["handoff_url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );

    let added = palyra(
        &base,
        &[
            "auth",
            "profiles",
            "add-api-key",
            "--provider",
            "openai",
            "--name",
            "Work",
            "--profile-id",
            "cli.one",
            "--set-default",
            "--api-key-stdin",
        ],
        Some(&format!("{key}\n")),
    )
    .await;
    assert!(added.ok, "{}", added.stderr);
    assert!(added.stdout.contains("cli.one"));
    assert_eq!(fake.calls(), 1);

    let env_added = tokio::process::Command::new(env!("CARGO_BIN_EXE_palyra"))
        .args([
            "auth",
            "profiles",
            "add-api-key",
            "--provider",
            "openai",
            "--name",
            "Other",
            "--profile-id",
            "cli.two",
            "--agent-id",
            "agent-x",
            "--no-validate",
            "--api-key-env",
            "MY_KEY",
        ])
        .env("PALYRA_URL", &base)
        .env("PALYRA_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("MY_KEY", "unchecked-key-000000")
        .output()
        .await
        .unwrap();
    assert!(
        env_added.status.success(),
        "{}",
        String::from_utf8_lossy(&env_added.stderr)
    );
    assert_eq!(fake.calls(), 1, "--no-validate skips the provider");

    let list = palyra(&base, &["--json", "auth", "profiles", "list"], None).await;
    let page: Value = serde_json::from_str(&list.stdout).unwrap();
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["profile_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["cli.one", "cli.two"]);
    let table = palyra(&base, &["auth", "profiles", "list"], None).await;
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("PROVIDER"),
        "{}",
        table.stdout
    );
    assert!(
        lines[1].contains("cli.one") && lines[1].contains("…6789") && lines[1].ends_with("yes")
    );
    assert!(lines[2].contains("agent:agent-x"));

    let health = palyra(&base, &["auth", "profiles", "health"], None).await;
    assert!(health.stdout.contains("static: 2"), "{}", health.stdout);
    let resolve = palyra(
        &base,
        &[
            "auth",
            "profiles",
            "resolve",
            "--provider",
            "openai",
            "--agent-id",
            "agent-x",
        ],
        None,
    )
    .await;
    assert!(resolve.stdout.starts_with("cli.two"), "{}", resolve.stdout);
    let set = palyra(&base, &["auth", "profiles", "set-default", "cli.two"], None).await;
    assert!(set.ok, "{}", set.stderr);
    let rotate = palyra(&base, &["--json", "vault", "rotate-key"], None).await;
    let report: Value = serde_json::from_str(&rotate.stdout).unwrap();
    assert_eq!(report["secrets_resealed"], 2);

    let removed = palyra(&base, &["auth", "profiles", "remove", "cli.one"], None).await;
    assert!(removed.ok);
    let gone = palyra(&base, &["auth", "profiles", "show", "cli.one"], None).await;
    assert!(!gone.ok, "a failure exits non-zero");
    assert!(
        gone.stderr.contains("404") && gone.stderr.contains("not_found"),
        "{}",
        gone.stderr
    );
    let bad = palyra(
        &base,
        &[
            "auth",
            "profiles",
            "add-api-key",
            "--provider",
            "openai",
            "--name",
            "X",
            "--api-key-stdin",
        ],
        Some("bad-key-0000000000\n"),
    )
    .await;
    assert!(!bad.ok);
    assert!(bad.stderr.contains("credential_rejected"), "{}", bad.stderr);

    for run in [&added, &list, &table, &health, &bad] {
        assert!(!run.stdout.contains(key) && !run.stderr.contains(key));
    }
    let (_, log) = daemon.terminate().await;
    assert!(!log.contains(key));
}

#[tokio::test]
async fn an_operator_signs_in_headless_with_the_cli() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let fake = crate::fakes::FakeOAuth::start(3600).await;
    let dir = tempfile::tempdir().unwrap();
    let base_url = fake.url();
    let authorize = format!("{base_url}/authorize");
    let token = format!("{base_url}/token");
    // The scopes (a list, which the environment cannot give) in a config file:
    // offline_access is what gets a refresh token from the strict fake.
    let config = dir.path().join("palyrad.toml");
    std::fs::write(
        &config,
        "[providers.custom.acme]\nscopes = [\"openid\", \"offline_access\"]\n",
    )
    .unwrap();
    let config = config.display().to_string();
    let daemon = start_child(
        &dir.path().join("data"),
        &[
            ("PALYRA_CONFIG", config.as_str()),
            (
                "PALYRA_PROVIDERS__CUSTOM__ACME__API_BASE_URL",
                base_url.as_str(),
            ),
            (
                "PALYRA_PROVIDERS__CUSTOM__ACME__AUTHORIZATION_ENDPOINT",
                authorize.as_str(),
            ),
            (
                "PALYRA_PROVIDERS__CUSTOM__ACME__TOKEN_ENDPOINT",
                token.as_str(),
            ),
            ("PALYRA_PROVIDERS__CUSTOM__ACME__CLIENT_ID", "palyra-cli"),
        ],
    )
    .await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_palyra"))
        .args([
            "auth",
            "login",
            "custom:acme",
            "--manual",
            "--profile-id",
            "acme.cli",
            "--profile-name",
            "Acme",
        ])
        .env("PALYRA_URL", &daemon.base)
        .env("PALYRA_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = stdout
        .next_line()
        .await
        .unwrap()
        .expect("the CLI prints the sign-in URL");
    let (_, redirect) = fake.authorize(&url);
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{redirect}\n").as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let rest = stdout.next_line().await.unwrap().unwrap_or_default();
    let status = child.wait().await.unwrap();
    assert!(status.success());
    assert_eq!(rest, "signed in: profile acme.cli");
    fake.snapshot(|s| assert_eq!((s.code_redemptions, s.pkce_failures), (1, 0)));

    let refreshed = palyra(
        &daemon.base,
        &["auth", "profiles", "refresh", "acme.cli"],
        None,
    )
    .await;
    assert!(refreshed.ok, "{}", refreshed.stderr);
    assert_eq!(refreshed.stdout.trim(), "acme.cli: succeeded");
    let health = palyra(&daemon.base, &["auth", "profiles", "health"], None).await;
    assert!(health.stdout.contains("ok: 1"), "{}", health.stdout);
}

#[tokio::test]
async fn an_operator_runs_a_standing_order_with_the_cli() {
    let fake = crate::fakes::FakeModel::start(3).await;
    let dir = tempfile::tempdir().unwrap();
    let url = fake.url();
    let daemon = start_child(
        &dir.path().join("data"),
        &[("PALYRA_PROVIDERS__OPENAI__API_BASE_URL", url.as_str())],
    )
    .await;
    let base = daemon.base.clone();
    let added = palyra(
        &base,
        &[
            "auth",
            "profiles",
            "add-api-key",
            "--provider",
            "openai",
            "--name",
            "M",
            "--profile-id",
            "m1",
            "--no-validate",
            "--api-key-stdin",
        ],
        Some("good-cli-model-key-1\n"),
    )
    .await;
    assert!(added.ok, "{}", added.stderr);
    let agent = palyra(
        &base,
        &[
            "agents",
            "create",
            "--agent-id",
            "a1",
            "--model",
            "gpt-cli",
            "--profile",
            "m1",
            "--workspace-root",
            "/srv/a1",
        ],
        None,
    )
    .await;
    assert!(agent.ok, "{}", agent.stderr);
    let created = palyra(
        &base,
        &[
            "--json",
            "objectives",
            "create",
            "--agent-id",
            "a1",
            "--objective-id",
            "o1",
            "--kind",
            "standing_order",
            "--name",
            "Report",
            "--prompt",
            "report",
            "--schedule",
            "0 8 * * 1-5",
            "--timezone",
            "Europe/Prague",
            "--max-runs",
            "5",
        ],
        None,
    )
    .await;
    assert!(created.ok, "{}", created.stderr);
    let objective: Value = serde_json::from_str(&created.stdout).unwrap();
    assert_eq!(objective["state"], "draft");
    assert!(
        palyra(&base, &["objectives", "activate", "o1"], None)
            .await
            .ok
    );
    let fired = palyra(&base, &["objectives", "fire", "o1"], None).await;
    assert!(fired.ok, "{}", fired.stderr);
    let mut done = false;
    for _ in 0..50 {
        let runs = palyra(&base, &["--json", "objectives", "runs", "o1"], None).await;
        let page: Value = serde_json::from_str(&runs.stdout).unwrap();
        if page["items"][0]["status"] == "succeeded" {
            assert_eq!(page["items"][0]["trigger"], "manual");
            done = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(done, "the fired run succeeded");
    let list = palyra(&base, &["objectives", "list", "--state", "active"], None).await;
    assert!(
        list.stdout.lines().nth(1).unwrap().starts_with("o1"),
        "{}",
        list.stdout
    );
    let illegal = palyra(&base, &["objectives", "resume", "o1"], None).await;
    assert!(
        !illegal.ok && illegal.stderr.contains("409"),
        "{}",
        illegal.stderr
    );
    let busy = palyra(&base, &["agents", "remove", "a1"], None).await;
    assert!(!busy.ok && busy.stderr.contains("409"));
    assert_eq!(fake.calls(), 1);
}

#[tokio::test]
async fn posture_and_audit_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_child(&dir.path().join("data"), &[]).await;
    let base = daemon.base.clone();
    let posture = palyra(&base, &["posture"], None).await;
    assert!(posture.ok, "{}", posture.stderr);
    assert!(
        posture.stdout.contains("loopback only"),
        "{}",
        posture.stdout
    );
    assert!(
        posture.stdout.contains("admin token source:  env"),
        "{}",
        posture.stdout
    );
    let json = palyra(&base, &["--json", "posture"], None).await;
    let value: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["remote_bind_detected"], false);

    assert!(palyra(&base, &["login"], None).await.ok);
    let audit = palyra(&base, &["audit", "--kind", "login"], None).await;
    assert!(audit.ok, "{}", audit.stderr);
    let lines: Vec<&str> = audit.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", audit.stdout);
    assert!(
        lines[0].contains("login") && lines[0].contains("root"),
        "{}",
        lines[0]
    );
    let json = palyra(&base, &["--json", "audit", "--limit", "1"], None).await;
    let page: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    assert!(page["next_cursor"].is_string());
    let typo = palyra(&base, &["audit", "--kind", "logins"], None).await;
    assert!(!typo.ok);
    assert!(typo.stderr.contains("unknown kind"), "{}", typo.stderr);
    daemon.terminate().await;
}

#[tokio::test]
async fn palyrad_check_config_exits_non_zero_with_the_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let check = |config: &str| {
        let path = dir.path().join("palyrad.toml");
        std::fs::write(&path, config).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_palyrad"))
            .arg("--config")
            .arg(&path)
            .arg("check-config")
            .env_remove("PALYRA_ADMIN_TOKEN")
            .env_remove("PALYRA_BIND")
            .output()
            .unwrap()
    };
    let ok = check("[server]\nbind = \"127.0.0.1:0\"\n");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("valid"));

    let remote = check("[server]\nbind = \"0.0.0.0:7142\"\n");
    assert_eq!(remote.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&remote.stderr);
    assert!(stderr.contains("TLS is off"), "{stderr}");
    assert!(stderr.contains("generated"), "{stderr}");
    assert!(stderr.contains("--allow-remote"), "{stderr}");

    let half_tls = check("[tls]\ncert_path = \"/nonexistent/cert.pem\"\n");
    assert_eq!(half_tls.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&half_tls.stderr).contains("cert_path and key_path"));

    let unknown = check("[server]\nbindd = \"127.0.0.1:0\"\n");
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("bindd"));
}

/// The configuration reference names every key of the defaults and its variable.
#[test]
fn the_configuration_reference_covers_every_key() {
    let reference = include_str!("../../config/README.md");
    let defaults = include_str!("../../config/default.toml");
    let mut section = String::new();
    for line in defaults.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        if section.starts_with("providers") {
            continue; // documented per provider pattern
        }
        // `key = value`, also commented out: `# key = value`.
        let candidate = line.trim_start_matches('#').trim();
        let Some((key, _)) = candidate.split_once(" = ") else {
            continue;
        };
        if key.contains(' ') || key.is_empty() {
            continue;
        }
        let full = format!("`{section}.{key}`");
        assert!(
            reference.contains(&full),
            "{full} is not in config/README.md"
        );
        let env = format!(
            "PALYRA_{}__{}",
            section.to_ascii_uppercase(),
            key.to_ascii_uppercase()
        );
        assert!(reference.contains(&env), "{env} is not in config/README.md");
    }
}

#[tokio::test]
async fn an_operator_drives_a_browser_session_with_the_cli() {
    // A page with a link and a form, served on loopback.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let site = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(|| async {
                axum::response::Html(
                    r#"<title>Start</title><a id="next" href="/next">next</a>
<form action="/next"><input id="q" name="q"><button id="go">go</button></form>"#,
                )
            }),
        )
        .route(
            "/next",
            axum::routing::get(|| async { axum::response::Html("<title>Next</title>arrived") }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_child(
        &dir.path().join("data"),
        &[("PALYRA_BROWSER__ALLOW_PRIVATE_NETWORKS", "true")],
    )
    .await;
    let base = daemon.base.clone();
    let home = format!("http://{site}/");

    let opened = palyra(&base, &["--json", "browser", "open", &home], None).await;
    assert!(opened.ok, "{}", opened.stderr);
    let info: Value = serde_json::from_str(&opened.stdout).unwrap();
    assert_eq!(info["title"], "Start");
    let id = info["session_id"].as_str().unwrap().to_owned();

    let clicked = palyra(&base, &["browser", "click", &id, "#next"], None).await;
    assert!(clicked.ok, "{}", clicked.stderr);
    assert!(
        clicked.stdout.contains(&format!("http://{site}/next")),
        "{}",
        clicked.stdout
    );
    let nav = palyra(&base, &["browser", "navigate", &id, &home], None).await;
    assert!(
        nav.ok && nav.stdout.starts_with("200"),
        "{} {}",
        nav.stdout,
        nav.stderr
    );
    let typed = palyra(&base, &["browser", "type", &id, "#q", "abc"], None).await;
    assert!(typed.ok, "{}", typed.stderr);
    let submitted = palyra(&base, &["--json", "browser", "click", &id, "#go"], None).await;
    let page: Value = serde_json::from_str(&submitted.stdout).unwrap();
    assert_eq!(page["url"], format!("http://{site}/next?q=abc"));
    let content = palyra(&base, &["browser", "content", &id], None).await;
    assert_eq!(content.stdout.trim(), "arrived");

    let png = dir.path().join("shot.png");
    let shot = palyra(
        &base,
        &["browser", "screenshot", &id, "--out", png.to_str().unwrap()],
        None,
    )
    .await;
    assert!(shot.ok, "{}", shot.stderr);
    assert!(
        std::fs::read(&png)
            .unwrap()
            .starts_with(b"\x89PNG\r\n\x1a\n")
    );

    let list = palyra(&base, &["browser", "list"], None).await;
    assert!(
        list.stdout.lines().nth(1).unwrap().starts_with(&id),
        "{}",
        list.stdout
    );
    let missing = palyra(&base, &["browser", "click", &id, "#nothing"], None).await;
    assert!(!missing.ok);
    assert!(
        missing.stderr.contains("selector_not_found"),
        "{}",
        missing.stderr
    );
    let refused = palyra(
        &base,
        &["browser", "navigate", &id, "file:///etc/passwd"],
        None,
    )
    .await;
    assert!(
        !refused.ok && refused.stderr.contains("url_scheme_refused"),
        "{}",
        refused.stderr
    );

    let closed = palyra(&base, &["browser", "close", &id], None).await;
    assert!(closed.ok, "{}", closed.stderr);
    let list = palyra(&base, &["--json", "browser", "list"], None).await;
    let list: Value = serde_json::from_str(&list.stdout).unwrap();
    assert!(list["sessions"].as_array().unwrap().is_empty());
    let (status, _) = daemon.terminate().await;
    assert!(status.success());
}
