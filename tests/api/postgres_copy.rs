//! `palyrad storage copy`: redb -> PostgreSQL -> redb keeps every profile (its secret
//! still opens: a run authenticates with it), session, objective, run and audit event;
//! a target that holds rows is refused. Needs PALYRA_TEST_POSTGRES_URL.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use palyra::settings::{Settings, StorageBackend};
use palyra::testkit::postgres;
use serde_json::{Value, json};

use crate::fakes::FakeModel;
use crate::helpers::{TestApp, start, test_settings};

fn redb_settings(dir: &tempfile::TempDir, data: &Path, model: &str) -> Settings {
    let mut settings = test_settings(dir);
    settings.storage.backend = StorageBackend::Redb;
    settings.storage.url = None;
    settings.storage.data_dir = Some(data.to_owned());
    settings.providers.openai.api_base_url = model.to_owned();
    settings
}

fn copy(from: &str, to: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_palyrad"))
        .args(["storage", "copy", "--from", from, "--to", to])
        .env_remove("PALYRA_STORAGE__URL")
        .output()
        .expect("palyrad runs")
}

/// What the first daemon stored, as the API shows it.
struct Stored {
    cookie: String,
    runs: usize,
    audit: usize,
}

async fn fire_and_wait(app: &TestApp) -> usize {
    let fired = app
        .bearer_post(
            "/console/v1/objectives/o1/lifecycle",
            json!({ "action": "fire" }),
        )
        .await;
    assert_eq!(fired.status(), 200);
    for _ in 0..100 {
        let page = app
            .bearer_get_json("/console/v1/objectives/o1/runs?limit=500")
            .await;
        let items = page["items"].as_array().unwrap().clone();
        if items
            .iter()
            .all(|r| r["status"] != "running" && r["status"] != "queued")
        {
            let last = &items[0];
            // The run called the fake with the key opened from the vault.
            assert_eq!(last["status"], "succeeded", "{last}");
            return items.len();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the run did not finish");
}

async fn audit_count(app: &TestApp) -> usize {
    let page = app.bearer_get_json("/console/v1/audit?limit=500").await;
    page["events"].as_array().unwrap().len()
}

/// Every record is there and works: the session, the profile (its secret opens), the
/// objective with its runs, the audit events; then one more run.
async fn check(app: &TestApp, stored: &Stored) -> Stored {
    assert_eq!(
        app.session_status(&stored.cookie).await,
        200,
        "the session was lost"
    );
    let profile = app.bearer_get_json("/console/v1/auth/profiles/p1").await;
    assert_eq!(profile["credential"]["hint"], "…1234", "{profile}");
    let page = app
        .bearer_get_json("/console/v1/objectives/o1/runs?limit=500")
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), stored.runs);
    assert!(audit_count(app).await >= stored.audit);
    let runs = fire_and_wait(app).await;
    assert_eq!(runs, stored.runs + 1);
    Stored {
        cookie: stored.cookie.clone(),
        runs,
        audit: audit_count(app).await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_copy_round_trips_redb_postgres_redb() {
    let fake = FakeModel::start(3).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let data = dir.path().join("data");
    let settings = redb_settings(&dir, &data, &fake.url());
    let app = start(Arc::clone(&dir), settings.clone()).await.unwrap();
    let login = app.login().await;
    assert_eq!(
        app.bearer_post(
            "/console/v1/auth/profiles",
            json!({ "profile_id": "p1", "provider": "openai", "profile_name": "P",
                    "credential": { "type": "api_key", "api_key": "good-copied-key-1234" },
                    "validate": false, "set_default": true }),
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        app.bearer_post(
            "/console/v1/agents",
            json!({ "agent_id": "a1", "display_name": "A", "default_model_profile": "p1", "model": "m" }),
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        app.bearer_post(
            "/console/v1/objectives",
            json!({ "objective_id": "o1", "agent_id": "a1", "kind": "standing_order",
                    "name": "copied", "prompt": "p" }),
        )
        .await
        .status(),
        200
    );
    let runs = fire_and_wait(&app).await;
    let stored = Stored {
        cookie: login.cookie.clone(),
        runs,
        audit: audit_count(&app).await,
    };
    assert!(stored.audit > 0);
    app.stop().await;

    // redb -> PostgreSQL.
    let pg = postgres::database_for(&dir.path().join("copy-target"));
    let out = copy(&data.display().to_string(), &pg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("counts verified"), "{printed}");
    assert!(printed.contains("auth_profiles    1"), "{printed}");
    // A second copy into the same, now non-empty, database is refused.
    let again = copy(&data.display().to_string(), &pg);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    // The daemon on PostgreSQL, with the same data dir (its vault key file), has it all.
    let mut on_pg = settings.clone();
    on_pg.storage.backend = StorageBackend::Postgres;
    on_pg.storage.url = Some(palyra_actors::SecretString::new(pg.clone()));
    let app = start(Arc::clone(&dir), on_pg).await.unwrap();
    let stored = check(&app, &stored).await;
    app.stop().await;

    // PostgreSQL -> a new redb data dir (the vault key file goes along by hand).
    let back = dir.path().join("back");
    let out = copy(&pg, &back.display().to_string());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::copy(data.join("vault.key"), back.join("vault.key")).unwrap();
    let app = start(Arc::clone(&dir), redb_settings(&dir, &back, &fake.url()))
        .await
        .unwrap();
    check(&app, &stored).await;
    let value: Value = app.bearer_get_json("/console/v1/auth/profiles").await;
    assert_eq!(value["items"].as_array().unwrap().len(), 1);
    app.stop().await;
}
