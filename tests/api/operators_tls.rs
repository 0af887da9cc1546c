//! `palyrad tls self-signed` as an operator uses it: the certificate it writes is
//! served by palyrad and accepted by rustls clients (reqwest, the CLI with
//! `--ca-cert`), which refuse the `CA:TRUE` certificates `openssl req -x509` makes.

use std::sync::Arc;

use crate::helpers::{ADMIN_TOKEN, start, test_settings};

#[tokio::test]
async fn a_self_signed_certificate_from_palyrad_works_with_the_cli() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let tls_dir = dir.path().join("tls");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_palyrad"))
        .args([
            "tls",
            "self-signed",
            "--name",
            "localhost",
            "--name",
            "127.0.0.1",
            "--out-dir",
        ])
        .arg(&tls_dir)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("fingerprint: sha256:"), "{stdout}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(tls_dir.join("key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the key is private");
    // Never overwrites.
    let cert_before = std::fs::read(tls_dir.join("cert.pem")).unwrap();
    let key_before = std::fs::read(tls_dir.join("key.pem")).unwrap();
    let again = tokio::process::Command::new(env!("CARGO_BIN_EXE_palyrad"))
        .args(["tls", "self-signed", "--name", "localhost", "--out-dir"])
        .arg(&tls_dir)
        .output()
        .await
        .unwrap();
    assert!(!again.status.success());
    assert_eq!(
        std::fs::read(tls_dir.join("cert.pem")).unwrap(),
        cert_before
    );
    assert_eq!(std::fs::read(tls_dir.join("key.pem")).unwrap(), key_before);

    let mut settings = test_settings(&dir);
    settings.tls.cert_path = Some(tls_dir.join("cert.pem"));
    settings.tls.key_path = Some(tls_dir.join("key.pem"));
    let app = start(Arc::clone(&dir), settings).await.unwrap();
    let base = format!("https://127.0.0.1:{}", app.addr.port());
    let pem = std::fs::read(tls_dir.join("cert.pem")).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    for url in [
        base.clone(),
        format!("https://localhost:{}", app.addr.port()),
    ] {
        let cli = tokio::process::Command::new(env!("CARGO_BIN_EXE_palyra"))
            .args(["--url", &url, "--ca-cert"])
            .arg(tls_dir.join("cert.pem"))
            .arg("status")
            .env("PALYRA_ADMIN_TOKEN", ADMIN_TOKEN)
            .output()
            .await
            .unwrap();
        assert!(
            cli.status.success(),
            "{url}: {}{}",
            String::from_utf8_lossy(&cli.stdout),
            String::from_utf8_lossy(&cli.stderr)
        );
    }
}

/// A certificate the CLI refuses is named plainly, not "error sending request".
#[tokio::test]
async fn the_cli_names_tls_failures() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    // What `openssl req -x509` makes: a CA certificate, here for localhost only.
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let cert_path = dir.path().join("ca-cert.pem");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(dir.path().join("ca-key.pem"), key.serialize_pem()).unwrap();
    let mut settings = test_settings(&dir);
    settings.tls.cert_path = Some(cert_path.clone());
    settings.tls.key_path = Some(dir.path().join("ca-key.pem"));
    let app = start(Arc::clone(&dir), settings).await.unwrap();
    let port = app.addr.port();
    let run = |url: String, ca: Option<std::path::PathBuf>| async move {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_palyra"));
        cmd.args(["--url", &url]);
        if let Some(ca) = ca {
            cmd.arg("--ca-cert").arg(ca);
        }
        let out = cmd
            .arg("status")
            .env("PALYRA_ADMIN_TOKEN", ADMIN_TOKEN)
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "{url}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let ca = run(format!("https://localhost:{port}"), Some(cert_path.clone())).await;
    assert!(ca.contains("CA certificate"), "{ca}");

    // An end-entity certificate for localhost only: untrusted without --ca-cert, and
    // not valid for 127.0.0.1.
    let dir2 = Arc::new(tempfile::tempdir().unwrap());
    let written =
        palyra::tls_gen::self_signed(&dir2.path().join("tls"), &["localhost".to_owned()], 30)
            .unwrap();
    let mut settings = test_settings(&dir2);
    settings.tls.cert_path = Some(written.cert_path.clone());
    settings.tls.key_path = Some(written.key_path.clone());
    let app2 = start(Arc::clone(&dir2), settings).await.unwrap();
    let port2 = app2.addr.port();
    let untrusted = run(format!("https://localhost:{port2}"), None).await;
    assert!(untrusted.contains("not trusted"), "{untrusted}");
    let wrong_name = run(
        format!("https://127.0.0.1:{port2}"),
        Some(written.cert_path.clone()),
    )
    .await;
    assert!(
        wrong_name.contains("not valid for the host name"),
        "{wrong_name}"
    );
    drop(app);
}

/// `palyra --tls-pin sha256:...` instead of `--ca-cert`: the fingerprint the daemon
/// logs at start (the one `palyrad tls self-signed` printed) lets the CLI in, whatever
/// name the URL uses; another fingerprint is refused, naming the one served.
#[tokio::test]
async fn the_cli_pins_the_daemons_certificate_by_its_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let tls_dir = dir.path().join("tls");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_palyrad"))
        .args(["tls", "self-signed", "--name", "localhost", "--out-dir"])
        .arg(&tls_dir)
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pin = stdout
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint: "))
        .expect("the fingerprint is printed")
        .trim()
        .to_owned();
    let cert = tls_dir.join("cert.pem").display().to_string();
    let key = tls_dir.join("key.pem").display().to_string();
    let daemon = crate::helpers::start_child(
        &dir.path().join("data"),
        &[
            ("PALYRA_TLS__CERT_PATH", &cert),
            ("PALYRA_TLS__KEY_PATH", &key),
        ],
    )
    .await;
    let port = daemon.base.rsplit(':').next().unwrap().to_owned();
    let run = |url: String, pin: String| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_palyra"))
            .args(["--url", &url, "--tls-pin", &pin, "status"])
            .env("PALYRA_ADMIN_TOKEN", ADMIN_TOKEN)
            .output()
            .await
            .unwrap()
    };
    // The certificate names only localhost; the pin is the trust, so 127.0.0.1 works.
    for url in [
        format!("https://localhost:{port}"),
        format!("https://127.0.0.1:{port}"),
    ] {
        let ok = run(url.clone(), pin.clone()).await;
        assert!(
            ok.status.success(),
            "{url}: {}{}",
            String::from_utf8_lossy(&ok.stdout),
            String::from_utf8_lossy(&ok.stderr)
        );
        assert!(String::from_utf8_lossy(&ok.stdout).contains("alive"));
    }
    // Another certificate's fingerprint: refused, naming the served one.
    let other = format!("sha256:{}", "ab".repeat(32));
    let refused = run(format!("https://localhost:{port}"), other).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("not the one --tls-pin names"), "{stderr}");
    assert!(
        stderr.contains(&pin),
        "the served fingerprint is named: {stderr}"
    );
    // A malformed pin is a usage error, before any connection.
    let malformed = run(format!("https://localhost:{port}"), "sha256:1234".into()).await;
    assert!(!malformed.status.success());
    assert!(
        String::from_utf8_lossy(&malformed.stderr).contains("64 hex digits"),
        "{}",
        String::from_utf8_lossy(&malformed.stderr)
    );
    // --ca-cert and --tls-pin together are refused by the argument parser.
    let both = tokio::process::Command::new(env!("CARGO_BIN_EXE_palyra"))
        .args([
            "--url",
            "https://localhost:1",
            "--tls-pin",
            &pin,
            "--ca-cert",
            &cert,
            "status",
        ])
        .output()
        .await
        .unwrap();
    assert!(!both.status.success());
    let (status, log) = daemon.terminate().await;
    assert!(status.success());
    assert!(
        log.contains(&pin),
        "the daemon logs its certificate's fingerprint at start"
    );
}
