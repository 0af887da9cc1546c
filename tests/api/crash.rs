//! Crash safety: palyrad runs as a child process, takes concurrent durable writes, is
//! killed with SIGKILL at a random moment and restarted on the same data dir. Every
//! write acknowledged with a 2xx before the kill must be there afterwards, and the
//! database must open cleanly. Correctness only, never timing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helpers::{ADMIN_TOKEN, session_cookie, start_child};
use rand::Rng;
use reqwest::header::COOKIE;
use serde_json::{Value, json};

const CYCLES: usize = 10;
const DAEMON_ENV: [(&str, &str); 2] = [
    ("PALYRA_SESSIONS__MAX_LIVE", "1000000"),
    (
        "PALYRA_PROVIDERS__OPENAI__API_BASE_URL",
        "http://127.0.0.1:9",
    ),
];
const WRITERS: usize = 16;

/// What the daemon acknowledged before a kill.
#[derive(Default)]
struct Acknowledged {
    /// Logins answered 200: (cookie, csrf token).
    live: Vec<(String, String)>,
    /// Sessions whose logout was answered 204.
    revoked: Vec<String>,
    /// Sessions whose logout was sent: without an answer, either outcome is correct.
    logout_sent: Vec<String>,
    /// Profiles whose creation was answered 200: (profile id, expected hint).
    profiles: Vec<(String, String)>,
    /// Objectives whose creation was answered 200.
    objectives: Vec<String>,
    /// Objectives whose manual fire was answered 200: a run record must exist.
    fired: Vec<String>,
}

async fn write_until_killed(base: String, acked: Arc<Mutex<Acknowledged>>, writer: String) {
    let http = reqwest::Client::new();
    let mut n = 0u64;
    loop {
        n += 1;
        if n % 6 == 3 {
            // An objective, then a run of it: a fire is answered once its run is durable.
            let objective_id = format!("crash.o.{writer}.{n}");
            let Ok(response) = http
                .post(format!("{base}/console/v1/objectives"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({
                    "objective_id": objective_id, "agent_id": "crash-agent", "kind": "standing_order",
                    "name": format!("crash {n}"), "prompt": "p",
                }))
                .send()
                .await
            else {
                return;
            };
            if response.status() != 200 {
                return;
            }
            acked.lock().unwrap().objectives.push(objective_id.clone());
            let Ok(response) = http
                .post(format!(
                    "{base}/console/v1/objectives/{objective_id}/lifecycle"
                ))
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({ "action": "fire" }))
                .send()
                .await
            else {
                return;
            };
            if response.status() != 200 {
                return;
            }
            acked.lock().unwrap().fired.push(objective_id);
            continue;
        }
        if n.is_multiple_of(2) {
            // A profile write: the record and its sealed secret in one transaction.
            let profile_id = format!("crash.{writer}.{n}");
            let key = format!("key-{writer}-{n:08}-{:04}", n % 10_000);
            let Ok(response) = http
                .post(format!("{base}/console/v1/auth/profiles"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({
                    "profile_id": profile_id, "provider": "openai", "profile_name": "crash",
                    "credential": { "type": "api_key", "api_key": key }, "validate": false
                }))
                .send()
                .await
            else {
                return;
            };
            if response.status() != 200 {
                return;
            }
            let hint = format!("…{}", &key[key.len() - 4..]);
            acked.lock().unwrap().profiles.push((profile_id, hint));
            continue;
        }
        let Ok(response) = http
            .post(format!("{base}/console/v1/auth/login"))
            .json(&json!({ "admin_token": ADMIN_TOKEN, "device_id": format!("crash-{n}") }))
            .send()
            .await
        else {
            return;
        };
        if response.status() != 200 {
            return;
        }
        let cookie = session_cookie(response.headers()).unwrap();
        let Ok(body) = response.json::<Value>().await else {
            return;
        };
        let csrf = body["csrf_token"].as_str().unwrap().to_owned();
        acked
            .lock()
            .unwrap()
            .live
            .push((cookie.clone(), csrf.clone()));
        if n % 4 == 1 {
            // Every other session is logged out again: a durable delete.
            acked.lock().unwrap().logout_sent.push(cookie.clone());
            let Ok(response) = http
                .post(format!("{base}/console/v1/auth/logout"))
                .header(COOKIE, format!("palyra_console_session={cookie}"))
                .header("x-palyra-csrf-token", &csrf)
                .send()
                .await
            else {
                return;
            };
            if response.status() == 204 {
                acked.lock().unwrap().revoked.push(cookie);
            }
        }
    }
}

async fn rotate_until_killed(base: String) {
    let http = reqwest::Client::new();
    while let Ok(response) = http
        .post(format!("{base}/console/v1/vault/rotate-key"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
    {
        if response.status() != 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let http = reqwest::Client::new();
    for cycle in 0..CYCLES {
        let mut daemon = start_child(&data_dir, &DAEMON_ENV).await;
        if cycle == 0 {
            // The agent the objectives run as; its provider refuses connections, so runs
            // fail fast without leaving the machine.
            let agent = http
                .post(format!("{}/console/v1/agents", daemon.base))
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({ "agent_id": "crash-agent", "model": "m" }))
                .send()
                .await
                .unwrap();
            assert_eq!(agent.status(), 200);
        }
        let ready = http
            .get(format!("{}/readyz", daemon.base))
            .send()
            .await
            .unwrap();
        assert_eq!(
            ready.status(),
            200,
            "cycle {cycle}: the database opened cleanly"
        );
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                tokio::spawn(write_until_killed(
                    daemon.base.clone(),
                    Arc::clone(&acked),
                    format!("{cycle}-{w}"),
                ))
            })
            .collect();
        // Key rotations run throughout, so some kills land in the middle of one.
        let rotator = tokio::spawn(rotate_until_killed(daemon.base.clone()));
        let delay = rand::rng().random_range(50..400);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        daemon.child.start_kill().unwrap(); // SIGKILL
        daemon.child.wait().await.unwrap();
        for writer in writers {
            writer.await.unwrap();
        }
        rotator.await.unwrap();
    }

    let daemon = start_child(&data_dir, &DAEMON_ENV).await;
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.live.len() > 100,
        "the harness wrote: {}",
        acked.live.len()
    );
    let revoked: std::collections::HashSet<&String> = acked.revoked.iter().collect();
    let undecided: std::collections::HashSet<&String> = acked
        .logout_sent
        .iter()
        .filter(|c| !revoked.contains(c))
        .collect();
    let checks = acked
        .live
        .iter()
        .filter(|(cookie, _)| !undecided.contains(cookie))
        .map(|(cookie, csrf)| {
            let http = http.clone();
            let base = daemon.base.clone();
            let expect_revoked = revoked.contains(cookie);
            async move {
                let response = http
                    .get(format!("{base}/console/v1/auth/session"))
                    .header(COOKIE, format!("palyra_console_session={cookie}"))
                    // The CSRF token of the login: it authenticates the session too.
                    .header("x-palyra-csrf-token", csrf.as_str())
                    .send()
                    .await
                    .unwrap();
                if expect_revoked {
                    assert_eq!(response.status(), 401, "an acknowledged logout was lost");
                } else {
                    assert_eq!(response.status(), 200, "an acknowledged login was lost");
                    let body: Value = response.json().await.unwrap();
                    assert_eq!(body["principal"], "root");
                }
            }
        });
    let mut checks = futures::stream::iter(checks).buffer_unordered(32);
    use futures::StreamExt;
    while checks.next().await.is_some() {}

    assert!(
        acked.profiles.len() > 50,
        "profiles written: {}",
        acked.profiles.len()
    );
    for (profile_id, hint) in &acked.profiles {
        let response = http
            .get(format!(
                "{}/console/v1/auth/profiles/{profile_id}",
                daemon.base
            ))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "an acknowledged profile was lost");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["credential"]["hint"], hint.as_str());
    }
    assert!(!acked.objectives.is_empty(), "objectives written");
    for objective_id in &acked.objectives {
        let response = http
            .get(format!(
                "{}/console/v1/objectives/{objective_id}",
                daemon.base
            ))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "an acknowledged objective was lost");
    }
    for objective_id in &acked.fired {
        // On PostgreSQL the restarted node recovers an objective when it takes the
        // objective's shard back, moments after the start; on redb before it answers.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let runs = loop {
            let runs: Value = http
                .get(format!(
                    "{}/console/v1/objectives/{objective_id}/runs",
                    daemon.base
                ))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let settled = runs["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["status"] != "running");
            if settled || std::time::Instant::now() > deadline {
                break runs;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let items = runs["items"].as_array().unwrap();
        assert!(
            items.iter().any(|r| r["trigger"] == "manual"),
            "an acknowledged run was lost: {runs}"
        );
        assert!(
            items.iter().all(|r| r["status"] != "running"),
            "a run left running by a kill is marked interrupted after the restart: {runs}"
        );
    }
    // Every stored secret opens: a rotation re-seals them all or fails.
    let rotation: Value = http
        .post(format!("{}/console/v1/vault/rotate-key", daemon.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resealed = rotation["secrets_resealed"]
        .as_u64()
        .expect("rotation succeeded");
    assert!(resealed as usize >= acked.profiles.len(), "{rotation}");
    eprintln!(
        "crash harness: {CYCLES} kills, {} acknowledged logins, {} logouts, {} profiles, {} objectives, {} runs, all present",
        acked.live.len(),
        acked.revoked.len(),
        acked.profiles.len(),
        acked.objectives.len(),
        acked.fired.len()
    );
    assert!(
        undecided.len() <= CYCLES * WRITERS,
        "only in-flight logouts are undecided"
    );
}
