//! Start-up: the admin token file, token checks and the data dir.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use palyra::application::resolve_admin_token;
use palyra_actors::SecretString;

use crate::helpers::{start, test_settings};

#[tokio::test]
async fn a_generated_admin_token_is_written_0600_and_reused() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = test_settings(&dir);
    settings.server.admin_token = None;
    let app = start(Arc::clone(&dir), settings.clone()).await.unwrap();
    let data = dir.path().join("data");
    let token_file = data.join("admin.token");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        std::fs::metadata(&data).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(token.len(), 43);
    let ok = app
        .http
        .post(app.url("/console/v1/auth/login"))
        .json(&serde_json::json!({ "admin_token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let (dir, settings) = app.stop().await;
    let app = start(dir, settings).await.unwrap();
    let again = app
        .http
        .post(app.url("/console/v1/auth/login"))
        .json(&serde_json::json!({ "admin_token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200, "the same token after a restart");
}

#[tokio::test]
async fn a_token_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.token");
    std::fs::write(&path, "a".repeat(43)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = resolve_admin_token(None, None, dir.path()).unwrap_err();
    assert!(err.to_string().contains("chmod 600"), "{err}");
}

#[tokio::test]
async fn short_admin_tokens_are_refused_without_quoting_them() {
    let dir = tempfile::tempdir().unwrap();
    let err = resolve_admin_token(
        Some(SecretString::new("tooshort-secret".into())),
        None,
        dir.path(),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("PALYRA_ADMIN_TOKEN") && text.contains("at least 32"),
        "{text}"
    );
    assert!(!text.contains("tooshort-secret"));
    let (token, _) =
        resolve_admin_token(Some(SecretString::new("e".repeat(32))), None, dir.path()).unwrap();
    assert_eq!(format!("{token:?}"), "[redacted]");
}

#[tokio::test]
async fn a_second_daemon_on_the_same_data_dir_is_refused() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let settings = test_settings(&dir);
    let _first = start(Arc::clone(&dir), settings.clone()).await.unwrap();
    let err = start(dir, settings)
        .await
        .err()
        .expect("second start fails");
    assert!(err.to_string().contains("storage"), "{err}");
}

/// A lock held a moment past its daemon's end (a forked child about to exec shares it)
/// does not refuse the next start: the start waits for it, briefly.
#[tokio::test]
async fn a_start_waits_for_a_data_dir_lock_released_a_moment_later() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let settings = test_settings(&dir);
    drop(
        start(Arc::clone(&dir), settings.clone())
            .await
            .unwrap()
            .stop()
            .await,
    );
    let lock_path = dir
        .path()
        .join("data")
        .join(palyra::application::DATA_DIR_LOCK_FILE);
    let held = std::fs::OpenOptions::new()
        .write(true)
        .open(&lock_path)
        .unwrap();
    held.try_lock().unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(700));
        drop(held);
    });
    let app = start(Arc::clone(&dir), settings)
        .await
        .expect("the start waited for the lock");
    release.join().unwrap();
    drop(app.stop().await);
}
