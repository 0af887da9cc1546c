//! Deployment posture: the remote-bind guard, TLS end to end, security headers, rate
//! limits, request ids and `/metrics`.

use std::sync::Arc;

use palyra::client::ControlPlaneClient;
use palyra_actors::SecretString;
use reqwest::header;
use serde_json::json;

use crate::helpers::{ADMIN_TOKEN, error_code, spawn_app_with, start, start_with, test_settings};

/// A self-signed certificate for 127.0.0.1 and localhost, valid for `days`, written
/// to the temp dir; returns (cert path, key path, cert PEM).
fn self_signed(
    dir: &std::path::Path,
    days: i64,
) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    if let Some(ip) = non_loopback_ip() {
        names.push(ip.to_string());
    }
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    let end = chrono::Utc::now() + chrono::Duration::days(days);
    use chrono::Datelike;
    params.not_after = rcgen::date_time_ymd(end.year(), end.month() as u8, end.day() as u8);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path, cert.pem())
}

/// The error of a start that must be refused.
async fn refusal(dir: Arc<tempfile::TempDir>, settings: palyra::settings::Settings) -> String {
    match start(dir, settings).await {
        Ok(_) => panic!("the daemon started"),
        Err(e) => e.to_string(),
    }
}

/// This machine's address on its default route (no packet is sent: a UDP socket's
/// connect only picks the route).
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn a_remote_bind_is_refused_naming_each_missing_condition() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    // Nothing in place: all three conditions are named.
    let mut settings = test_settings(&dir);
    settings.server.bind = "0.0.0.0:0".into();
    settings.server.admin_token = None;
    let err = refusal(Arc::clone(&dir), settings.clone()).await;
    assert!(err.contains("0.0.0.0:0"), "{err}");
    assert!(err.contains("TLS is off"), "{err}");
    assert!(err.contains("admin token would be generated"), "{err}");
    assert!(err.contains("--allow-remote"), "{err}");
    assert!(
        !dir.path().join("data/admin.token").exists(),
        "a refused start generates no token file"
    );

    // TLS and a configured token, but no acknowledgement: only that is named.
    let (cert, key, _) = self_signed(dir.path(), 90);
    settings.tls.cert_path = Some(cert);
    settings.tls.key_path = Some(key);
    settings.server.admin_token = Some(SecretString::new(ADMIN_TOKEN.into()));
    let err = refusal(Arc::clone(&dir), settings.clone()).await;
    assert!(err.contains("--allow-remote"), "{err}");
    assert!(!err.contains("TLS is off"), "{err}");
    assert!(!err.contains("generated"), "{err}");

    // Acknowledged but the token would be generated.
    settings.server.allow_remote = true;
    settings.server.admin_token = None;
    let err = refusal(Arc::clone(&dir), settings.clone()).await;
    assert!(err.contains("admin token would be generated"), "{err}");
    assert!(!err.contains("--allow-remote"), "{err}");

    // A token from the environment satisfies the guard: the daemon starts, and says
    // where it listens.
    let secrets = palyra::application::EnvSecrets {
        admin_token: Some(SecretString::new(ADMIN_TOKEN.into())),
        vault_key: None,
    };
    let app = start_with(Arc::clone(&dir), settings.clone(), secrets)
        .await
        .expect("a remote bind with TLS, an env token and the acknowledgement starts");
    let (cert_pem, port) = (
        std::fs::read(dir.path().join("cert.pem")).unwrap(),
        app.addr.port(),
    );
    let client = ControlPlaneClient::with_ca_cert(
        &format!("https://127.0.0.1:{port}"),
        Some(SecretString::new(ADMIN_TOKEN.into())),
        &cert_pem,
    )
    .unwrap();
    let posture = client.posture().await.unwrap();
    assert!(posture.remote_bind_detected);
    assert!(!posture.loopback_only);
    assert_eq!(posture.admin_token_source, "env");
    assert!(posture.tls.enabled);
    assert!(
        posture.last_remote_admin_access.is_none(),
        "loopback is not remote"
    );
    assert!(
        posture
            .warnings
            .iter()
            .any(|w| w.contains("vault key is a file")),
        "{:?}",
        posture.warnings
    );
    // A request from the machine's network address is remote access, and the posture
    // says so.
    let ip = non_loopback_ip().expect("this machine has a non-loopback address");
    let remote = ControlPlaneClient::with_ca_cert(
        &format!("https://{ip}:{port}"),
        Some(SecretString::new(ADMIN_TOKEN.into())),
        &cert_pem,
    )
    .unwrap();
    remote.auth_health().await.unwrap();
    let posture = client.posture().await.unwrap();
    let access = posture
        .last_remote_admin_access
        .expect("remote access noted");
    assert_eq!(access.peer, ip.to_string());
    assert_eq!(access.method, "GET");
    assert_eq!(access.path, "/console/v1/auth/health");
    assert_eq!(access.status, 200);
    app.stop().await;

    // A non-loopback metrics listener needs the acknowledgement too.
    let mut settings = test_settings(&dir);
    settings.metrics.bind = Some("0.0.0.0:0".into());
    let err = refusal(Arc::clone(&dir), settings).await;
    assert!(
        err.starts_with("refusing to serve metrics on 0.0.0.0:0 (metrics.bind)"),
        "only the metrics listener is named: {err}"
    );
    assert!(!err.contains("refusing to listen"), "{err}");
}

#[tokio::test]
async fn localhost_counts_as_loopback() {
    let app = spawn_app_with(|s| {
        s.server.bind = "localhost:0".into();
        s.server.admin_token = None;
    })
    .await;
    assert!(app.addr.ip().is_loopback());
    let token = std::fs::read_to_string(app.dir.path().join("data/admin.token")).unwrap();
    let client = ControlPlaneClient::new(&app.base, Some(SecretString::new(token.trim().into())));
    let posture = client.posture().await.unwrap();
    assert!(posture.loopback_only);
    assert!(!posture.remote_bind_detected);
    assert_eq!(posture.admin_token_source, "generated");
    assert_eq!(posture.vault_key_source, "file");
    assert!(!posture.tls.enabled);
    assert!(!posture.cookie_secure);
    assert_eq!(posture.session_idle_timeout_s, 900);
    assert_eq!(posture.session_absolute_timeout_s, 28_800);
    assert!(posture.last_remote_admin_access.is_none());
    assert!(posture.warnings.is_empty(), "{:?}", posture.warnings);
}

#[tokio::test]
async fn tls_serves_the_api_with_secure_host_cookies_hsts_and_an_expiry_warning() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    // Expires in 5 days: within the 14-day warning.
    let (cert, key, pem) = self_signed(dir.path(), 5);
    let mut settings = test_settings(&dir);
    settings.tls.cert_path = Some(cert);
    settings.tls.key_path = Some(key);
    let app = start(Arc::clone(&dir), settings).await.unwrap();
    let base = format!("https://127.0.0.1:{}", app.addr.port());

    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let login = http
        .post(format!("{base}/console/v1/auth/login"))
        .json(&json!({ "admin_token": ADMIN_TOKEN }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login
        .headers()
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.starts_with("__Host-palyra_console_session="),
        "{cookie}"
    );
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    assert!(!cookie.to_ascii_lowercase().contains("domain="), "{cookie}");
    assert_eq!(
        login.headers()[header::STRICT_TRANSPORT_SECURITY],
        "max-age=31536000"
    );

    // The typed client logs in over TLS and uses the __Host- cookie with CSRF.
    let client = ControlPlaneClient::with_ca_cert(
        &base,
        Some(SecretString::new(ADMIN_TOKEN.into())),
        pem.as_bytes(),
    )
    .unwrap();
    let session = client.login(None).await.unwrap();
    assert_eq!(session.cookie_name, "__Host-palyra_console_session");
    let mut by_cookie = client.clone();
    by_cookie.use_session(&session);
    let handoff = by_cookie.create_browser_handoff(None).await.unwrap();
    assert!(
        handoff.handoff_url.starts_with(&format!(
            "{base}/console/v1/auth/browser-handoff/consume?token="
        )),
        "the link speaks TLS too: {}",
        handoff.handoff_url
    );
    // Following it over TLS logs a browser in with the __Host- cookie.
    let browser = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let consumed = crate::helpers::redeem_link(&browser, &handoff.handoff_url).await;
    assert_eq!(consumed.status, 200);
    assert!(
        consumed.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .starts_with("__Host-palyra_console_session=")
    );
    // The plain-HTTP cookie name is not accepted under TLS.
    let wrong_name = http
        .get(format!("{base}/console/v1/auth/session"))
        .header(
            header::COOKIE,
            format!("palyra_console_session={}", session.cookie.expose()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_name.status(), 401);

    let posture = client.posture().await.unwrap();
    assert!(posture.tls.enabled);
    assert!(posture.cookie_secure);
    let not_after = posture.tls.cert_not_after.expect("certificate expiry");
    let left = not_after - chrono::Utc::now();
    assert!(left > chrono::Duration::days(3) && left < chrono::Duration::days(6));
    assert!(
        posture
            .warnings
            .iter()
            .any(|w| w.contains("certificate expires within 14 days")),
        "{:?}",
        posture.warnings
    );

    // The certificate's expiry is a metric to alert on.
    let metrics = client.metrics().await.unwrap();
    let expiry_line = metrics
        .lines()
        .find(|l| l.starts_with("palyra_tls_certificate_expiry_timestamp_seconds "))
        .unwrap_or_else(|| panic!("no expiry gauge:\n{metrics}"));
    let expiry: i64 = expiry_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(expiry, not_after.timestamp());

    // Plain HTTP to the TLS port gets no answer from the API.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/healthz", app.addr.port()))
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "a TLS port answers no plain HTTP");
    app.stop().await;
}

#[tokio::test]
async fn unreadable_tls_files_refuse_the_start_and_check_config_names_them() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = test_settings(&dir);
    settings.tls.cert_path = Some(dir.path().join("missing-cert.pem"));
    settings.tls.key_path = Some(dir.path().join("missing-key.pem"));
    let problems = palyra::application::check_config(&settings, None);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("missing-cert.pem"), "{problems:?}");
    let err = refusal(Arc::clone(&dir), settings).await;
    assert!(err.contains("missing-cert.pem"), "{err}");
}

#[tokio::test]
async fn every_response_carries_security_headers_and_a_request_id() {
    let app = spawn_app_with(|_| {}).await;
    for path in [
        "/console/v1/auth/session",
        "/console/v1/nothing-here",
        "/healthz",
    ] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        let h = response.headers();
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY", "{path}");
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer", "{path}");
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(
            !h.contains_key(header::STRICT_TRANSPORT_SECURITY),
            "no HSTS without TLS"
        );
        let id = h["x-request-id"].to_str().unwrap();
        assert_eq!(id.len(), 16, "{path}: {id}");
    }
    // A sane request id is echoed; an unsafe one is replaced.
    let echoed = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-abc.123")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-abc.123");
    let replaced = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    assert_ne!(replaced.headers()["x-request-id"], "bad id with spaces");
}

#[tokio::test]
async fn the_admin_api_is_rate_limited_per_peer() {
    let app = spawn_app_with(|s| {
        s.rate_limit.loopback_per_s = 1;
        s.rate_limit.loopback_burst = 3;
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = app
            .http
            .get(app.url("/console/v1/deployment/posture"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            let retry: u64 = r.headers()[header::RETRY_AFTER]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=2).contains(&retry), "{retry}");
            assert_eq!(error_code(r).await, "rate_limited");
        }
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert_eq!(statuses[4], 429, "{statuses:?}");
    // Probes are not the admin API.
    for _ in 0..5 {
        let r = app.http.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    // The quota refills.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = app
        .http
        .get(app.url("/console/v1/deployment/posture"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Parses the OpenMetrics text: every line is a comment or `name{labels} value`.
/// Returns the metric family names declared by `# TYPE` lines and the sample lines.
fn parse_metrics(text: &str) -> (Vec<String>, Vec<(String, f64)>) {
    let mut families = Vec::new();
    let mut samples = Vec::new();
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            families.push(rest.split(' ').next().unwrap().to_owned());
        } else if line.starts_with("# HELP ") || line.starts_with("# UNIT ") || line == "# EOF" {
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
            let name = series.split('{').next().unwrap();
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line}"
            );
            if let Some(labels) = series.strip_prefix(name) {
                assert!(
                    labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                    "{line}"
                );
            }
            samples.push((series.to_owned(), value));
        }
    }
    (families, samples)
}

#[tokio::test]
async fn metrics_carry_every_family_behind_the_admin_token_or_on_their_own_listener() {
    let app = spawn_app_with(|s| s.metrics.bind = Some("127.0.0.1:0".into())).await;
    // Some traffic first, one request with a made-up method among it.
    app.login().await;
    let odd = app
        .http
        .request(
            reqwest::Method::from_bytes(b"FROBNICATE").unwrap(),
            app.url("/healthz"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(odd.status(), 405);
    let _ = app.bearer_get_json("/console/v1/auth/profiles").await;

    let anonymous = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let response = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = response.text().await.unwrap();
    let (families, samples) = parse_metrics(&text);
    for family in [
        "palyra_http_requests",
        "palyra_http_request_duration_seconds",
        "palyra_console_sessions_live",
        "palyra_auth_profiles",
        "palyra_oauth_refreshes",
        "palyra_objective_runs",
        "palyra_scheduler_lateness_seconds",
        "palyra_writer_batch_size",
        "palyra_writer_commit_duration_seconds",
    ] {
        assert!(
            families.iter().any(|f| f == family),
            "{family} missing:\n{text}"
        );
    }
    let value = |series: &str| {
        samples
            .iter()
            .find(|(s, _)| s == series)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("{series} missing:\n{text}"))
    };
    assert_eq!(value("palyra_console_sessions_live"), 1.0);
    assert_eq!(value("palyra_auth_profiles{health=\"ok\"}"), 0.0);
    assert!(
        value(
            "palyra_http_requests_total{route=\"/console/v1/auth/login\",method=\"POST\",status=\"200\"}"
        ) >= 1.0
    );
    assert!(samples.iter().any(|(s, _)| {
        s.starts_with("palyra_http_request_duration_seconds_bucket{")
            && s.contains("route=\"/console/v1/auth/profiles\"")
    }));
    assert!(
        !text.contains("FROBNICATE"),
        "a client's method must not become a label"
    );
    assert!(text.contains("method=\"other\""), "{text}");
    assert!(value("palyra_writer_batch_size_count") >= 1.0);
    assert!(value("palyra_writer_commit_duration_seconds_count") >= 1.0);

    // The separate listener serves /metrics without a token, and nothing else.
    let posture = app.bearer_get_json("/console/v1/deployment/posture").await;
    let metrics_addr = posture["bind_addresses"][1].as_str().unwrap().to_owned();
    let scraped = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(scraped.status(), 200);
    parse_metrics(&scraped.text().await.unwrap());
    let other = reqwest::get(format!("http://{metrics_addr}/console/v1/auth/profiles"))
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}

#[tokio::test]
async fn check_config_accepts_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(&dir);
    assert!(palyra::application::check_config(&settings, None).is_empty());
}
