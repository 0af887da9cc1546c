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
    let again = tokio::process::Command::new(env!("CARGO_BIN_EXE_palyrad"))
        .args(["tls", "self-signed", "--name", "localhost", "--out-dir"])
        .arg(&tls_dir)
        .output()
        .await
        .unwrap();
    assert!(!again.status.success());

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
