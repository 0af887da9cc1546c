//! Vault key rotation on two nodes with a key file each, the procedure README.md gives:
//! rotate on one node, then copy its vault.key to the other. Until the copy, the other
//! node refuses to seal (a clear 503, never a secret sealed under the old key), and a
//! node started with only the old key refuses to start. Runs in the PostgreSQL pass.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, start, test_settings};

async fn node(url: Option<&str>) -> Result<TestApp, palyra::StartError> {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    node_in(dir, url).await
}

async fn node_in(
    dir: Arc<tempfile::TempDir>,
    url: Option<&str>,
) -> Result<TestApp, palyra::StartError> {
    let mut settings = test_settings(&dir);
    if let Some(url) = url {
        settings.storage.url = Some(palyra_actors::SecretString::new(url.to_owned()));
    }
    start(dir, settings).await
}

fn key_file(app: &TestApp) -> std::path::PathBuf {
    app.dir.path().join("data/vault.key")
}

/// Writes a key file as the README says to copy one: owner-only.
fn install_key(path: &std::path::Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

async fn create_profile(app: &TestApp, id: &str) -> reqwest::Response {
    app.bearer_post(
        "/console/v1/auth/profiles",
        json!({ "profile_id": id, "provider": "openai", "profile_name": id,
                "credential": { "type": "api_key", "api_key": format!("sk-{id}-0123456789") },
                "validate": false }),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_rotated_on_one_node_reaches_the_other_by_copying_its_key_file() {
    if !palyra::testkit::postgres::enabled() {
        return;
    }
    let a = node(None).await.expect("node A starts");
    let url = a.settings.storage.url.as_ref().unwrap().expose().to_owned();
    // B's data dir gets A's key file before B's first start.
    let b_dir = Arc::new(tempfile::tempdir().unwrap());
    std::fs::create_dir_all(b_dir.path().join("data")).unwrap();
    let old_key = std::fs::read(key_file(&a)).unwrap();
    install_key(&b_dir.path().join("data/vault.key"), &old_key);
    let b = node_in(Arc::clone(&b_dir), Some(&url))
        .await
        .expect("node B starts with A's key");
    assert_eq!(create_profile(&b, "before").await.status(), 200);

    let rotated = a
        .bearer_post("/console/v1/vault/rotate-key", json!({}))
        .await;
    assert_eq!(rotated.status(), 200, "{:?}", rotated.text().await);

    // B learns of the rotation through the change feed and refuses to seal under a
    // key that no longer opens the vault, saying what to do.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut sealed_before_it_knew = false;
    let refusal: Value = loop {
        let response = create_profile(&b, "during").await;
        if response.status() == 503 {
            break response.json().await.unwrap();
        }
        assert_eq!(
            response.status(),
            200,
            "either sealed before it knew, or refused"
        );
        sealed_before_it_knew = true;
        assert!(
            tokio::time::Instant::now() < deadline,
            "B never noticed the rotation"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(refusal["error"]["code"], "vault_key_not_here", "{refusal}");
    assert!(
        refusal["error"]["message"]
            .as_str()
            .unwrap()
            .contains("copy that node's vault.key"),
        "{refusal}"
    );
    // Nothing of the refused profile was stored, and B does not show it either.
    if !sealed_before_it_knew {
        let ghost = b
            .http
            .get(b.url("/console/v1/auth/profiles/during"))
            .bearer_auth(crate::helpers::ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(ghost.status(), 404, "{:?}", ghost.text().await);
    }

    // The operator copies A's key file; B's next sealing write reads it again.
    install_key(&key_file(&b), &std::fs::read(key_file(&a)).unwrap());
    let after = create_profile(&b, "after").await;
    assert_eq!(after.status(), 200, "{:?}", after.text().await);
    // Every secret opens on both nodes: B restarts on the new key file and lists
    // what both sealed; a profile made on A after the rotation is there too.
    assert_eq!(create_profile(&a, "on-a").await.status(), 200);
    let b = b.restart().await;
    let listed = b
        .bearer_get_json("/console/v1/auth/profiles?limit=100")
        .await;
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["profile_id"].as_str())
        .collect();
    for id in ["before", "after", "on-a"] {
        assert!(ids.contains(&id), "{id} missing: {ids:?}");
    }

    // A third node with only the old key refuses to start.
    let c_dir = Arc::new(tempfile::tempdir().unwrap());
    std::fs::create_dir_all(c_dir.path().join("data")).unwrap();
    install_key(&c_dir.path().join("data/vault.key"), &old_key);
    let refused = node_in(c_dir, Some(&url)).await;
    let Err(e) = refused else {
        panic!("a node with only the old key must not start");
    };
    assert!(e.to_string().contains("vault"), "{e}");
}
