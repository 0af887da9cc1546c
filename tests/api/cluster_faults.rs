//! Three palyrad processes on one PostgreSQL database under real faults: a node
//! killed with SIGKILL in a firing window, a node paused past its lease TTL and
//! resumed, a node's database connections cut, the server restarted as a crash would,
//! and every node down for two schedule intervals.
//!
//! After each fault the checker (the test kit's `firings`) reads the `runs` table
//! itself: every scheduled instant of every objective has exactly one run row, settled,
//! and the fake model provider saw at most one call per run and none for a run without
//! a row.
//!
//! The refresh scenarios sign 18 OAuth profiles in to a fake provider whose tokens are
//! always due, pause, kill and cut nodes, and ask the fake: no refresh token presented
//! twice, every profile refreshing again after the faults, none needing a sign-in; and
//! a node killed after the provider rotated a token it never stored leaves exactly that
//! profile needing a sign-in, with the documented reason, and nothing looping; a node
//! that gets the rotated token while the server is down stores it once it is back.
//! Each scenario has a server of its own (one of them restarts it), so scripts/test runs
//! them after the PostgreSQL pass, one at a time; they need only the PostgreSQL
//! binaries scripts/postgres uses.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use palyra::testkit::cluster::Cluster;
use palyra::testkit::firings::{Expected, FiringReport, RunRow, check, read_runs};
use palyra::testkit::model::FakeModel;
use palyra::testkit::oauth::FakeOAuth;
use palyra::testkit::postgres::{OwnServer, psql, with_database};
use palyra_actors::cluster::shard_of;
use reqwest::Method;
use reqwest::header::COOKIE;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, session_cookie};

/// Base64 of 32 bytes, the same on every node.
const VAULT_KEY: &str = "Y2x1c3Rlci1mYXVsdHMtdmF1bHQta2V5LTMyYnl0ZXM=";
/// The shortest lease TTL the config accepts: takeovers within seconds.
const TTL: Duration = Duration::from_secs(3);
/// A renewal interval: a third of the TTL.
const RENEWAL: Duration = Duration::from_secs(1);
const SCHEDULE: &str = "*/2 * * * * *";
const EVERY_MS: i64 = 2000;
/// Objectives spread over every fourth shard, so each node owns several.
const OBJECTIVES: u32 = 16;
/// How long the fake provider takes to answer: runs are in flight at a fault.
const MODEL_DELAY_MS: usize = 300;
/// Bounds every wait for the cluster to settle.
const LIMIT: Duration = Duration::from_secs(30);

/// The scenarios share the machine's two cores: one runs at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A cluster on a server of its own, its fake provider and its objectives.
struct Rig {
    server: OwnServer,
    model: FakeModel,
    cluster: Cluster,
    objectives: Vec<String>,
    /// Every objective was active by then (Unix ms): the checked window starts here.
    from_ms: i64,
}

fn now_ms() -> i64 {
    palyra_actors::now_ms()
}

/// One objective id per fourth shard: each node owns some whatever the lease spread.
fn objective_ids() -> Vec<String> {
    (0..OBJECTIVES)
        .map(|n| {
            (0u32..)
                .map(|k| format!("cf-{n}-{k}"))
                .find(|id| shard_of(id.as_bytes()) == n * 4)
                .expect("an id in every shard")
        })
        .collect()
}

/// A server of its own, the fake provider, and three nodes with their shards spread.
/// The profile and the agent the objectives run as are created through the first node
/// before the others start: the objectives are what this suite checks.
async fn nodes(extra_env: &[(&str, &str)]) -> (OwnServer, FakeModel, Cluster) {
    let server = OwnServer::start();
    psql(&server.url, "CREATE DATABASE cluster");
    let db = with_database(&server.url, "cluster");
    let model = FakeModel::start(1).await;
    model
        .delay_ms
        .store(MODEL_DELAY_MS, std::sync::atomic::Ordering::SeqCst);
    let model_url = model.url();
    let ttl = TTL.as_secs().to_string();
    let mut env = vec![
        ("PALYRA_ADMIN_TOKEN", ADMIN_TOKEN),
        ("PALYRA_VAULT_KEY", VAULT_KEY),
        ("PALYRA_CLUSTER__LEASE_TTL_S", ttl.as_str()),
        ("PALYRA_PROVIDERS__OPENAI__API_BASE_URL", model_url.as_str()),
        ("PALYRA_SESSIONS__MAX_LIVE", "100000"),
        ("PALYRA_STORAGE__CONNECT_TIMEOUT_S", "2"),
        ("PALYRA_STORAGE__STATEMENT_TIMEOUT_S", "3"),
    ];
    env.extend_from_slice(extra_env);
    let palyrad = std::path::Path::new(env!("CARGO_BIN_EXE_palyrad"));
    let mut cluster = Cluster::start(palyrad, 1, &db, &env)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    seed_agent(&cluster).await;
    for _ in 1..3 {
        cluster.grow().await.unwrap_or_else(|e| panic!("{e}"));
    }
    cluster
        .wait_spread_over(&[0, 1, 2], LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (server, model, cluster)
}

async fn rig(extra_env: &[(&str, &str)]) -> Rig {
    let (server, model, cluster) = nodes(extra_env).await;
    // Created through node A while every node runs: the others learn of them from the
    // database.
    let objectives = objective_ids();
    for id in &objectives {
        post(
            &cluster,
            "/console/v1/objectives",
            json!({ "objective_id": id, "agent_id": "a1", "kind": "standing_order",
                    "name": id, "prompt": format!("go {id}"),
                    "automation": { "schedule": SCHEDULE }, "activate": true }),
        )
        .await;
    }
    let from_ms = now_ms();
    let rig = Rig {
        server,
        model,
        cluster,
        objectives,
        from_ms,
    };
    // Every objective fired at least once, on whichever node owns it.
    wait_until("every objective fires", LIMIT, || {
        let rows = read_runs(rig.cluster.db_url()).unwrap_or_default();
        rig.objectives
            .iter()
            .all(|o| rows.iter().any(|r| &r.objective_id == o))
    })
    .await;
    rig
}

/// A POST through node A, answered 200.
async fn post(cluster: &Cluster, path: &str, body: Value) {
    let (status, answer) = cluster
        .admin(0, Method::POST, path, Some(&body))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200, "{path}: {answer}");
}

/// The model profile and the agent the objectives run as.
async fn seed_agent(cluster: &Cluster) {
    post(
        cluster,
        "/console/v1/auth/profiles",
        json!({ "profile_id": "p1", "provider": "openai", "profile_name": "P",
                "credential": { "type": "api_key", "api_key": "good-model-key-1234" },
                "validate": false, "set_default": true }),
    )
    .await;
    post(
        cluster,
        "/console/v1/agents",
        json!({ "agent_id": "a1", "display_name": "Agent", "workspace_roots": ["/srv/a1"],
                "default_model_profile": "p1", "model": "gpt-test" }),
    )
    .await;
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sleeps until `offset_ms` after the next scheduled instant: in a firing window.
async fn into_firing_window(offset_ms: i64) {
    let now = now_ms();
    let next = (now / EVERY_MS + 1) * EVERY_MS + offset_ms;
    tokio::time::sleep(Duration::from_millis(
        u64::try_from(next - now).unwrap_or(0),
    ))
    .await;
}

/// Sleeps until `ms` (Unix milliseconds).
async fn until(ms: i64) {
    let wait = u64::try_from(ms - now_ms()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

impl Rig {
    /// The node that owns the most objectives, and those objectives.
    fn busiest(&self) -> (usize, Vec<String>) {
        let owners = self
            .cluster
            .shard_owners()
            .unwrap_or_else(|e| panic!("{e}"));
        let mut by_node: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for id in &self.objectives {
            let owner = owners.get(&shard_of(id.as_bytes())).cloned();
            if let Some(i) =
                (0..self.cluster.len()).find(|&i| owner.as_deref() == Some(self.cluster.id(i)))
            {
                by_node.entry(i).or_default().push(id.clone());
            }
        }
        by_node
            .into_iter()
            .max_by_key(|(_, ids)| ids.len())
            .expect("some node owns objectives")
    }

    /// Lets three more intervals fire on the settled cluster, waits for the last one
    /// to finish, and checks every instant from the start up to there.
    async fn check_after_settling(&self) -> (FiringReport, Vec<RunRow>) {
        self.cluster
            .wait_spread_over(&[0, 1, 2], LIMIT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let to_ms = (now_ms() / EVERY_MS + 3) * EVERY_MS;
        // The last firing's provider call and its record take well under 3 s.
        until(to_ms + 3000).await;
        // The calls first: each has its row by then (see `check`).
        let calls = self.model.answered();
        let rows = read_runs(self.cluster.db_url()).unwrap_or_else(|e| panic!("{e}"));
        let expected = Expected {
            objectives: self.objectives.clone(),
            every_ms: EVERY_MS,
            from_ms: self.from_ms,
            to_ms,
        };
        let report = check(&rows, &calls, &expected);
        eprintln!("{}", report.summary());
        let violations = report.violations();
        assert!(
            violations.is_empty(),
            "{}\n{}\nleases {:?}",
            violations.join("\n"),
            report.summary(),
            self.cluster.leases()
        );
        (report, rows)
    }
}

/// How long after `after_ms` each of `objectives` started a firing again: the longest.
fn fired_again_after(rows: &[RunRow], objectives: &[String], after_ms: i64) -> Duration {
    let worst = objectives
        .iter()
        .map(|o| {
            rows.iter()
                .filter(|r| &r.objective_id == o && r.scheduled_ms.is_some_and(|t| t > after_ms))
                .filter_map(|r| r.started_ms)
                .min()
                .unwrap_or_else(|| panic!("{o} never started again after the fault"))
        })
        .max()
        .unwrap_or(after_ms);
    Duration::from_millis(u64::try_from(worst - after_ms).unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_in_a_firing_window_is_taken_over_within_ttl_and_a_renewal() {
    let _serial = SERIAL.lock().await;
    let mut rig = rig(&[]).await;
    let (victim, owned) = rig.busiest();
    into_firing_window(100).await;
    let killed_ms = now_ms();
    rig.cluster.kill9(victim).await.unwrap();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
    let spread = rig
        .cluster
        .wait_spread_over(&survivors, LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "{} killed; its shards were leased again in {spread:?}",
        rig.cluster.id(victim)
    );
    // Its objectives fire on the others, late, then on schedule; then it rejoins.
    until((now_ms() / EVERY_MS + 2) * EVERY_MS + 500).await;
    rig.cluster.start_node(victim).await.unwrap();
    let (_, rows) = rig.check_after_settling().await;
    let takeover = fired_again_after(&rows, &owned, killed_ms);
    eprintln!(
        "{} objectives of the dead node fired again {takeover:?} after the kill",
        owned.len()
    );
    // Scheduling and the late firing's start take a moment past the lease's change.
    assert!(
        takeover <= TTL + RENEWAL + Duration::from_millis(1500),
        "the dead node's objectives fired again only {takeover:?} after the kill"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_paused_past_its_ttl_does_not_fire_on_its_stale_lease() {
    let _serial = SERIAL.lock().await;
    let rig = rig(&[]).await;
    let (victim, owned) = rig.busiest();
    into_firing_window(100).await;
    let paused_ms = now_ms();
    rig.cluster.sigstop(victim).unwrap();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
    let spread = rig.cluster.wait_spread_over(&survivors, LIMIT).await;
    // Past its TTL and then some: its leases are the others' now, with new epochs.
    until(paused_ms + i64::try_from((TTL * 2).as_millis()).unwrap()).await;
    rig.cluster.sigcont(victim).unwrap();
    let spread = spread.unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "{} paused; its shards were leased again in {spread:?}",
        rig.cluster.id(victim)
    );
    // The checker finds any firing or provider call it made on the stale lease: a
    // second row for an instant, a call for a run no row has, two calls for one run.
    let (_, rows) = rig.check_after_settling().await;
    let takeover = fired_again_after(&rows, &owned, paused_ms);
    eprintln!("the paused node's objectives fired again {takeover:?} after the pause");
    assert!(
        takeover <= TTL + RENEWAL + Duration::from_millis(1500),
        "{takeover:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_database_connections_are_cut_keeps_every_firing_once() {
    let _serial = SERIAL.lock().await;
    let rig = rig(&[]).await;
    let (victim, _) = rig.busiest();
    let mut cut = 0;
    for _ in 0..3 {
        into_firing_window(100).await;
        cut += rig.cluster.terminate_connections(victim).unwrap();
    }
    assert!(
        cut > 0,
        "no connection of {} was found",
        rig.cluster.id(victim)
    );
    eprintln!("{cut} connections of {} terminated", rig.cluster.id(victim));
    rig.check_after_settling().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restarted_as_by_a_crash_keeps_every_firing_once() {
    let _serial = SERIAL.lock().await;
    let rig = rig(&[]).await;
    into_firing_window(100).await;
    rig.server.restart_immediate();
    eprintln!("PostgreSQL restarted (immediate)");
    rig.check_after_settling().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_down_for_two_intervals_records_each_missed_firing_once() {
    let _serial = SERIAL.lock().await;
    let mut rig = rig(&[]).await;
    into_firing_window(100).await;
    let down_ms = now_ms();
    rig.cluster.kill_all().await.unwrap();
    until(down_ms + 2 * EVERY_MS + 400).await;
    let up_ms = now_ms();
    rig.cluster.start_all().await.unwrap();
    let (report, rows) = rig.check_after_settling().await;
    // The instants while every node was down: each has its one row (missed, or run
    // late), which the checker verified; and a catch-up runs at most once each.
    let down: Vec<i64> = ((down_ms / EVERY_MS + 1) * EVERY_MS..=up_ms)
        .step_by(usize::try_from(EVERY_MS).unwrap())
        .collect();
    assert!(down.len() >= 2, "{down:?}");
    for o in &rig.objectives {
        let catch_ups = rows
            .iter()
            .filter(|r| &r.objective_id == o && r.trigger == "catch_up")
            .count();
        assert!(catch_ups <= 1, "{o} caught up {catch_ups} times");
    }
    eprintln!("down {down:?}: {}", report.summary());
}

/// GET /console/v1/auth/session on `base` with `cookie` and its CSRF token: the status
/// (0 unreachable).
async fn session_status(http: &reqwest::Client, base: &str, cookie: &str, csrf: &str) -> u16 {
    http.get(format!("{base}/console/v1/auth/session"))
        .header(COOKIE, format!("palyra_console_session={cookie}"))
        .header("x-palyra-csrf-token", csrf)
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_revoked_through_one_node_is_refused_by_every_node_within_a_second() {
    let _serial = SERIAL.lock().await;
    let (_server, _model, cluster) = nodes(&[]).await;
    let http = reqwest::Client::new();
    let urls: Vec<String> = (0..3).map(|i| cluster.url(i)).collect();
    let mut worst = Duration::ZERO;
    for round in 0..5 {
        let login = http
            .post(format!("{}/console/v1/auth/login", urls[round % 3]))
            .json(&json!({ "admin_token": ADMIN_TOKEN }))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 200);
        let cookie = session_cookie(login.headers()).unwrap();
        let csrf = login.json::<Value>().await.unwrap()["csrf_token"]
            .as_str()
            .unwrap()
            .to_owned();
        // Valid on every node, at once.
        for url in &urls {
            assert_eq!(
                session_status(&http, url, &cookie, &csrf).await,
                200,
                "{url}"
            );
        }
        let logout = http
            .post(format!("{}/console/v1/auth/logout", urls[(round + 1) % 3]))
            .header(COOKIE, format!("palyra_console_session={cookie}"))
            .header("x-palyra-csrf-token", &csrf)
            .send()
            .await
            .unwrap();
        assert_eq!(logout.status(), 204);
        let answered = Instant::now();
        for url in &urls {
            loop {
                if session_status(&http, url, &cookie, &csrf).await == 401 {
                    break;
                }
                assert!(
                    answered.elapsed() <= Duration::from_secs(1),
                    "{url} still accepts a session revoked {:?} ago",
                    answered.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        worst = worst.max(answered.elapsed());
    }
    eprintln!("revocations reached every node within {worst:?}");
}

/// Access tokens the fake issues live this long and are refreshed `REFRESH_LEAD_S`
/// before expiry: every profile refreshes about every 3 s, on whichever node holds
/// its shard.
const TOKEN_LIFE_S: u64 = 6;
const REFRESH_LEAD_S: &str = "3";
/// OAuth profiles signed in, spread over every third shard.
const PROFILES: u32 = 18;
/// Every token answer is held this long after the request was processed: requests are
/// in flight at the fake long enough to be seen.
const ANSWER_DELAY_MS: u64 = 100;
/// What the refresher says of a refresh it took over from a node that left it
/// unfinished and the provider then refused (ARCHITECTURE.md, "Several nodes").
const TAKEN_OVER: &str = "after taking over a refresh a node left unfinished: it may have redeemed the token before it stopped; sign in again";

/// Three nodes signed in to a fake OAuth provider whose tokens are always due.
struct RefreshRig {
    server: OwnServer,
    _model: FakeModel,
    cluster: Cluster,
    oauth: FakeOAuth,
    /// Every profile and the family its sign-in began at the fake.
    profiles: Vec<(String, usize)>,
}

/// One profile id per third shard: each node owns some whatever the lease spread.
fn oauth_profile_ids() -> Vec<String> {
    (0..PROFILES)
        .map(|n| {
            (0u32..)
                .map(|k| format!("acme.r{n}-{k}"))
                .find(|id| shard_of(id.as_bytes()) == n * 3)
                .expect("an id in every shard")
        })
        .collect()
}

/// A server of its own, three nodes knowing the fake as `custom:acme`, and every
/// profile signed in through the nodes in turn; returns once each has refreshed.
async fn refresh_rig() -> RefreshRig {
    let oauth = FakeOAuth::start(TOKEN_LIFE_S).await;
    oauth.state.lock().unwrap().answer_delay_ms = ANSWER_DELAY_MS;
    let base = oauth.url();
    let (authorize, token) = (format!("{base}/authorize"), format!("{base}/token"));
    let env = [
        (
            "PALYRA_PROVIDERS__CUSTOM__ACME__API_BASE_URL",
            base.as_str(),
        ),
        (
            "PALYRA_PROVIDERS__CUSTOM__ACME__AUTHORIZATION_ENDPOINT",
            authorize.as_str(),
        ),
        (
            "PALYRA_PROVIDERS__CUSTOM__ACME__TOKEN_ENDPOINT",
            token.as_str(),
        ),
        ("PALYRA_PROVIDERS__CUSTOM__ACME__CLIENT_ID", "palyra-test"),
        ("PALYRA_PROVIDERS__CUSTOM__ACME__VALIDATION", "none"),
        ("PALYRA_PROVIDERS__CUSTOM__ACME__BACKOFF_BASE_MS", "200"),
        ("PALYRA_PROVIDERS__CUSTOM__ACME__BACKOFF_CAP_MS", "1000"),
        ("PALYRA_OAUTH__REFRESH_LEAD_S", REFRESH_LEAD_S),
    ];
    let (server, model, cluster) = nodes(&env).await;
    let http = reqwest::Client::new();
    let mut profiles = Vec::new();
    for (n, id) in oauth_profile_ids().into_iter().enumerate() {
        let (status, started) = cluster
            .admin(
                n % 3,
                Method::POST,
                "/console/v1/auth/providers/custom:acme/bootstrap",
                // offline_access: what gets a refresh token from a strict provider.
                Some(&json!({ "profile_name": id, "profile_id": id, "scopes": ["openid", "offline_access"] })),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status, 200, "bootstrap of {id}: {started}");
        let (_, redirect) = oauth.authorize(started["authorization_url"].as_str().unwrap());
        let page = http.get(&redirect).send().await.unwrap();
        assert_eq!(page.status(), 200, "sign-in of {id}");
        let family = oauth
            .snapshot(|s| s.last_code_family)
            .expect("a code grant");
        profiles.push((id, family));
    }
    let rig = RefreshRig {
        server,
        _model: model,
        cluster,
        oauth,
        profiles,
    };
    let signed_in = now_ms();
    rig.wait_all_refreshed_after("every profile refreshes", signed_in, LIMIT)
        .await;
    rig
}

/// A profile row as stored: what the checker asks of it.
#[derive(Debug)]
struct StoredProfile {
    id: String,
    needs_reauth: bool,
    /// The node whose refresh claim the row holds, if any.
    claimed_by: Option<String>,
    last_error: String,
}

impl RefreshRig {
    /// Every OAuth profile's row, read from the database.
    fn stored(&self) -> Vec<StoredProfile> {
        let out = palyra::testkit::cluster::try_psql(
            self.cluster.db_url(),
            "SELECT profile_id, s->>'needs_reauth', coalesce(s#>>'{claim,node_id}', ''), \
             coalesce(s->>'last_error', '') FROM (SELECT profile_id, \
             convert_from(value, 'UTF8')::jsonb #> '{r,credential,refresh_state}' AS s \
             FROM auth_profiles WHERE profile_id LIKE 'acme.%') t",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        out.lines()
            .filter(|l| !l.is_empty())
            .map(|line| {
                let fields: Vec<&str> = line.splitn(4, '|').collect();
                assert_eq!(fields.len(), 4, "a profile row {line:?}");
                StoredProfile {
                    id: fields[0].to_owned(),
                    needs_reauth: fields[1] == "true",
                    claimed_by: Some(fields[2].to_owned()).filter(|n| !n.is_empty()),
                    last_error: fields[3].to_owned(),
                }
            })
            .collect()
    }

    /// The profiles whose stored refresh claim names node `i`.
    fn claimed_by(&self, i: usize) -> Vec<String> {
        let node = self.cluster.id(i);
        self.stored()
            .into_iter()
            .filter(|p| p.claimed_by.as_deref() == Some(node))
            .map(|p| p.id)
            .collect()
    }

    /// The families without a refresh granted after `after_ms`, among `families`.
    fn not_refreshed_after(&self, families: &[usize], after_ms: i64) -> Vec<usize> {
        self.oauth.snapshot(|s| {
            families
                .iter()
                .copied()
                .filter(|f| {
                    !s.refresh_log
                        .iter()
                        .any(|r| r.granted && r.family == Some(*f) && r.at_unix_ms > after_ms)
                })
                .collect()
        })
    }

    /// Every node's warnings, errors and log lines that name the profiles of
    /// `families`: what a failure message needs to tell a lost refresh from a slow one.
    fn logs_about(&self, families: &[usize]) -> String {
        let ids: Vec<&str> = self
            .profiles
            .iter()
            .filter(|(_, f)| families.contains(f))
            .map(|(id, _)| id.as_str())
            .collect();
        let mut out = String::new();
        for i in 0..self.cluster.len() {
            out.push_str(&format!("-- {} (named {:?}):\n", self.cluster.id(i), ids));
            for line in self.cluster.log(i).lines() {
                let alarm =
                    line.contains("\"level\":\"WARN\"") || line.contains("\"level\":\"ERROR\"");
                if alarm || ids.iter().any(|id| line.contains(id)) {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// Makes the fake answer the first profile's refreshes `ms` late (after rotating
    /// its token); returns its id and family.
    fn slow_first_profile(&self, ms: u64) -> (String, usize) {
        let (id, family) = self.profiles[0].clone();
        self.oauth
            .state
            .lock()
            .unwrap()
            .slow_families
            .insert(family, ms);
        (id, family)
    }

    /// Waits (up to `LIMIT`) until the fake holds an answer for `family`, or no more.
    async fn until_in_flight(&self, family: usize, held: bool, what: &str) {
        let started = Instant::now();
        while self
            .oauth
            .snapshot(|s| s.in_flight_families.contains(&family))
            != held
        {
            assert!(
                started.elapsed() < LIMIT,
                "family {family} never {what} within {LIMIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn families(&self) -> Vec<usize> {
        self.profiles.iter().map(|(_, f)| *f).collect()
    }

    async fn wait_all_refreshed_after(&self, what: &str, after_ms: i64, limit: Duration) {
        let families = self.families();
        let started = Instant::now();
        loop {
            let missing = self.not_refreshed_after(&families, after_ms);
            if missing.is_empty() {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "{what}: families {missing:?} not refreshed within {limit:?}; stored {:#?}\n{}",
                self.stored(),
                self.logs_about(&missing)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The node whose shards hold the most profiles.
    fn busiest(&self) -> usize {
        let owners = self
            .cluster
            .shard_owners()
            .unwrap_or_else(|e| panic!("{e}"));
        (0..self.cluster.len())
            .filter(|&i| self.cluster.is_up(i))
            .max_by_key(|&i| {
                self.profiles
                    .iter()
                    .filter(|(id, _)| {
                        owners.get(&shard_of(id.as_bytes())).map(String::as_str)
                            == Some(self.cluster.id(i))
                    })
                    .count()
            })
            .expect("a node is up")
    }

    /// SIGSTOPs node `i` at a moment `quiet` accepts: the profiles its stored claims
    /// name (a stopped node writes nothing more, and 200 ms let a write it had sent
    /// land) and the fake's state. Returns with the node stopped; a node stopped this
    /// briefly keeps its leases.
    async fn stop_when(
        &self,
        i: usize,
        quiet: impl Fn(&[String], &palyra::testkit::oauth::OAuthState) -> bool,
    ) {
        for _ in 0..60 {
            self.cluster.sigstop(i).unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            let claims = self.claimed_by(i);
            for _ in 0..20 {
                if self.oauth.snapshot(|s| quiet(&claims, s)) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            self.cluster.sigcont(i).unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        panic!("{} never reached the moment wanted", self.cluster.id(i));
    }

    /// No refresh token was presented twice, no refresh was refused, no profile needs a
    /// new sign-in.
    fn assert_no_loss(&self) {
        let reused = self.oauth.reused_refresh_tokens();
        assert!(
            reused.is_empty(),
            "refresh tokens presented twice: {reused:?}"
        );
        let refused = self.oauth.snapshot(|s| {
            s.refresh_log
                .iter()
                .filter(|r| !r.granted)
                .cloned()
                .collect::<Vec<_>>()
        });
        assert!(refused.is_empty(), "refused refreshes: {refused:?}");
        let reauth: Vec<StoredProfile> = self
            .stored()
            .into_iter()
            .filter(|p| p.needs_reauth)
            .collect();
        assert!(reauth.is_empty(), "profiles needing a sign-in: {reauth:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_survive_a_pause_a_quiet_kill_and_cut_connections_with_no_token_reused() {
    let _serial = SERIAL.lock().await;
    let mut rig = refresh_rig().await;
    let refreshes = |rig: &RefreshRig| rig.oauth.snapshot(|s| s.refresh_grants);

    // (a) Paused past its TTL while it holds a refresh claim: the others take its
    // shards and wait for the claim, which outlives the pause; the refresh finishes
    // when the node resumes.
    let paused = rig.busiest();
    rig.stop_when(paused, |claims, _| !claims.is_empty()).await;
    tokio::time::sleep(TTL * 2).await;
    rig.cluster.sigcont(paused).unwrap();
    let resumed = now_ms();
    rig.wait_all_refreshed_after("after the pause", resumed, LIMIT)
        .await;
    rig.assert_no_loss();
    eprintln!(
        "{} paused {:?}; {} refreshes so far",
        rig.cluster.id(paused),
        TTL * 2,
        refreshes(&rig)
    );

    // (b) kill -9 when it has no refresh claimed and the fake no token request in
    // flight: frozen for a moment first, so that moment is a fact, not a race.
    rig.cluster
        .wait_spread_over(&[0, 1, 2], LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let killed = rig.busiest();
    rig.stop_when(killed, |claims, s| claims.is_empty() && s.in_flight == 0)
        .await;
    rig.cluster.kill9(killed).await.unwrap();
    let killed_ms = now_ms();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != killed).collect();
    rig.cluster
        .wait_spread_over(&survivors, LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    rig.wait_all_refreshed_after("after the quiet kill", killed_ms, LIMIT)
        .await;
    rig.assert_no_loss();
    rig.cluster.start_node(killed).await.unwrap();
    rig.cluster
        .wait_spread_over(&[0, 1, 2], LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "{} killed with nothing in flight and restarted; {} refreshes so far",
        rig.cluster.id(killed),
        refreshes(&rig)
    );

    // (c) Every database connection of one node cut, three times.
    let cut_node = rig.busiest();
    let mut cut = 0;
    for _ in 0..3 {
        cut += rig.cluster.terminate_connections(cut_node).unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert!(
        cut > 0,
        "no connection of {} found",
        rig.cluster.id(cut_node)
    );
    let last_fault = now_ms();

    // Every profile refreshes again after the last fault, within a bound, and nothing
    // was lost on the way.
    rig.wait_all_refreshed_after("after the last fault", last_fault, LIMIT)
        .await;
    rig.assert_no_loss();
    eprintln!(
        "{cut} connections of {} cut; {} refreshes in all, none presented twice",
        rig.cluster.id(cut_node),
        refreshes(&rig)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_answered_while_the_database_is_down_is_stored_once_it_is_back() {
    let _serial = SERIAL.lock().await;
    let rig = refresh_rig().await;
    // One profile's answers take 3 s, after the fake rotated its token: the server
    // crashes inside that window, so the node holding the claim gets the only valid
    // refresh token while it cannot store it.
    let (target, family) = rig.slow_first_profile(3000);
    rig.until_in_flight(family, true, "caught in flight").await;
    rig.server.crash();
    let crashed = Instant::now();
    rig.until_in_flight(family, false, "answered").await;
    // Its node has tried to store the answer, and failed, by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    rig.server.resume();
    let resumed = now_ms();
    eprintln!(
        "PostgreSQL down {:?} while {target}'s refresh was answered",
        crashed.elapsed()
    );
    // The rotated tokens were stored once the server was back: every profile,
    // the target too, refreshes again with nothing refused and nothing reused (the
    // claim alone would have held the target for 30 s, then a takeover would have
    // presented the redeemed token and been refused).
    rig.wait_all_refreshed_after("after the database came back", resumed, LIMIT)
        .await;
    rig.assert_no_loss();
    // And the window was hit: the claimer did fail to store the answer first.
    let retried = (0..rig.cluster.len()).any(|i| {
        rig.cluster.log(i).lines().any(|line| {
            line.contains("storing a refresh's outcome failed; trying again")
                && line.contains(&target)
        })
    });
    assert!(retried, "no node retried storing {target}'s refresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_with_a_redeemed_refresh_unstored_leaves_that_profile_needing_a_sign_in() {
    let _serial = SERIAL.lock().await;
    let mut rig = refresh_rig().await;
    // One profile's answers take 2 s, after the fake rotated its token: its node is
    // killed inside that window.
    let (target, family) = rig.slow_first_profile(2000);
    let started = Instant::now();
    let victim = loop {
        assert!(
            started.elapsed() < LIMIT,
            "{target} was never caught in flight"
        );
        let in_flight = rig
            .oauth
            .snapshot(|s| s.in_flight_families.contains(&family));
        let claimer = in_flight
            .then(|| rig.stored().into_iter().find(|p| p.id == target))
            .flatten()
            .and_then(|p| p.claimed_by);
        if let Some(node) = claimer {
            let i = (0..3).find(|&i| rig.cluster.id(i) == node).unwrap();
            // Frozen, its claims are what it has in flight: only this one may be, and
            // the fake must still hold the answer.
            rig.cluster.sigstop(i).unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            let claims = rig.claimed_by(i);
            let still = rig
                .oauth
                .snapshot(|s| s.in_flight_families.contains(&family));
            if claims == [target.clone()] && still {
                break i;
            }
            rig.cluster.sigcont(i).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    rig.cluster.kill9(victim).await.unwrap();
    let killed_ms = now_ms();
    let requests_of = |rig: &RefreshRig, after_ms: i64| {
        rig.oauth.snapshot(|s| {
            s.refresh_log
                .iter()
                .filter(|r| r.family == Some(family) && r.at_unix_ms > after_ms)
                .cloned()
                .collect::<Vec<_>>()
        })
    };
    eprintln!(
        "{} killed while its refresh of {target} was in flight",
        rig.cluster.id(victim)
    );

    // The claim lasts the OAuth timeout plus 10 s (30 s); then a survivor takes it
    // over, presents the token the dead node redeemed, is refused, and says why.
    let bound = Duration::from_secs(45);
    let reauth = loop {
        let stored = rig.stored().into_iter().find(|p| p.id == target).unwrap();
        if stored.needs_reauth {
            break stored;
        }
        assert!(
            Duration::from_millis(u64::try_from(now_ms() - killed_ms).unwrap()) < bound,
            "{target} not marked needs_reauth within {bound:?}: {stored:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let marked_ms = now_ms();
    assert!(
        reauth.last_error.contains(TAKEN_OVER),
        "the documented reason: {reauth:?}"
    );
    // Not a loop: no token request for it once it needs a sign-in.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after_kill = requests_of(&rig, killed_ms);
    assert_eq!(
        after_kill.len(),
        1,
        "{target}: one takeover request after the kill, refused: {after_kill:?}"
    );
    assert!(!after_kill[0].granted, "{after_kill:?}");
    // At most one token presented twice, and it is the target's.
    let reused = rig.oauth.reused_refresh_tokens();
    assert!(reused.len() <= 1, "tokens presented twice: {reused:?}");
    for token in &reused {
        assert_eq!(
            rig.oauth.snapshot(|s| s.family_of(token)),
            Some(family),
            "{token} reused"
        );
    }
    // Every other profile kept refreshing, with nothing refused.
    let others: Vec<usize> = rig.profiles[1..].iter().map(|(_, f)| *f).collect();
    let started = Instant::now();
    loop {
        let missing = rig.not_refreshed_after(&others, marked_ms);
        if missing.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < LIMIT,
            "families {missing:?} did not refresh after {target} was marked"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused_others = rig.oauth.snapshot(|s| {
        s.refresh_log
            .iter()
            .filter(|r| !r.granted && r.family != Some(family))
            .cloned()
            .collect::<Vec<_>>()
    });
    assert!(refused_others.is_empty(), "{refused_others:?}");
    let reauth_others: Vec<StoredProfile> = rig
        .stored()
        .into_iter()
        .filter(|p| p.needs_reauth && p.id != target)
        .collect();
    assert!(reauth_others.is_empty(), "{reauth_others:#?}");
    eprintln!(
        "{target} needs a sign-in {:.1} s after the kill; the others refreshed on",
        (marked_ms - killed_ms) as f64 / 1000.0
    );
}
