//! `cluster`: three release palyrad processes on the run's PostgreSQL server, all on
//! this machine (the test kit's cluster), with the default lease TTL of 15 s.
//!
//! - firings: active objectives every `--every` s created through node A, fired by
//!   whichever node leases their shard; the test kit's checker reads the `runs` table
//!   and the fake provider's calls: a level holds with no firing missing, doubled,
//!   skipped or failed, and no run calling the provider twice or without a row. The
//!   target level first (2,000 every 5 s), then 2,000 more at a time (up to 8,000)
//!   while the previous level held;
//! - takeover: kill -9 of the node that owns the most objectives, in a firing window,
//!   until every one of its objectives started a firing again on the others;
//! - revocation: a session logged in through one node and logged out through another,
//!   until all three nodes refuse it;
//! - session checks on node A against the same binary alone on redb, in the same run;
//! - refresh: 1,000 OAuth profiles due at once at the test kit's fake OAuth provider,
//!   refreshed by the nodes holding their shards, until all are durable, with the
//!   refresh tokens presented twice (none may be).
//!
//! The session and refresh rows come first, on the idle cluster; the firing levels
//! then load it.

mod firings;
mod refresh;
mod revocation;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use palyra::testkit::cluster::Cluster;
use palyra::testkit::model::FakeModel;
use palyra::testkit::oauth::FakeOAuth;
use palyra_actors::secret::random_token;
use reqwest::Method;

use crate::auth::{SessionCheck, login_cookie_for};
use crate::bench::Bench;
use crate::driver::BoxError;
use crate::plan::{CLUSTER_OBJECTIVES, ClusterMeasure, Plan};
use crate::report::{Row, round};
use crate::servers::ChildPalyrad;

/// The nodes' lease TTL: the default, as the takeover target is stated for it.
const LEASE_TTL_S: u64 = 15;
/// Bounds a wait for the leases to settle over the live nodes (a joining node takes
/// its share at its next beats, a third of the TTL apart).
const SPREAD_LIMIT: Duration = Duration::from_secs(90);
/// Boundaries measured per firing level, after one of warm-up.
const WINDOW_BOUNDARIES: i64 = 4;
/// Firing levels after the target one, each this many objectives more, while the
/// previous one held.
const LEVEL_STEP: usize = 2_000;
const EXTRA_LEVELS: u32 = 3;

/// The model profile and agent every objective runs as (the key is the bearer the
/// fake provider accepts).
const MODEL_PROFILE: &str = "bench-model";
const MODEL_KEY: &str = "good-bench-model-key-0001";
const AGENT: &str = "bench-agent";

/// The cluster under measurement and what it talks to.
struct Rig {
    cluster: Cluster,
    model: FakeModel,
    /// The OAuth provider `custom:bench` of every node, for the refresh row.
    oauth: FakeOAuth,
    token: String,
    /// Objectives created so far, all on the same schedule.
    objectives: Vec<String>,
    every_s: u32,
    /// Keeps the scenario's database until the nodes are gone.
    _database: crate::backends::PgDatabase,
}

impl Bench {
    /// `cluster`: every row of the scenario.
    pub async fn cluster(&self, every_s: u32) -> Result<Vec<Row>, BoxError> {
        let server = self
            .postgres
            .as_ref()
            .ok_or("cluster needs the run's PostgreSQL server")?;
        let database = server.fresh_database()?;
        let exe = std::env::current_exe()?;
        let palyrad = exe.with_file_name("palyrad");
        if !palyrad.is_file() {
            return Err(format!(
                "{} not found: run `cargo build --release --bins --features bench` first",
                palyrad.display()
            )
            .into());
        }
        let model = FakeModel::try_start(1)?;
        let token = random_token().expose().to_owned();
        let vault_key =
            base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
        let model_url = model.url();
        let ttl = LEASE_TTL_S.to_string();
        // Refreshed tokens live an hour: each profile refreshes once in the scenario.
        let oauth = FakeOAuth::try_start(3_600)?;
        let oauth_url = oauth.url();
        let (authorize, token_url) = (
            format!("{oauth_url}/authorize"),
            format!("{oauth_url}/token"),
        );
        let lead = refresh::REFRESH_LEAD_S.to_string();
        let env = [
            ("PALYRA_ADMIN_TOKEN", token.as_str()),
            ("PALYRA_VAULT_KEY", vault_key.as_str()),
            ("PALYRA_CLUSTER__LEASE_TTL_S", ttl.as_str()),
            ("PALYRA_PROVIDERS__OPENAI__API_BASE_URL", model_url.as_str()),
            ("PALYRA_SESSIONS__MAX_LIVE", "1000000"),
            ("PALYRA_RATE_LIMIT__LOOPBACK_PER_S", "100000000"),
            ("PALYRA_RATE_LIMIT__LOOPBACK_BURST", "100000000"),
            (
                "PALYRA_PROVIDERS__CUSTOM__BENCH__API_BASE_URL",
                oauth_url.as_str(),
            ),
            (
                "PALYRA_PROVIDERS__CUSTOM__BENCH__AUTHORIZATION_ENDPOINT",
                authorize.as_str(),
            ),
            (
                "PALYRA_PROVIDERS__CUSTOM__BENCH__TOKEN_ENDPOINT",
                token_url.as_str(),
            ),
            ("PALYRA_PROVIDERS__CUSTOM__BENCH__CLIENT_ID", "palyra-bench"),
            ("PALYRA_PROVIDERS__CUSTOM__BENCH__VALIDATION", "none"),
            ("PALYRA_OAUTH__REFRESH_LEAD_S", lead.as_str()),
            // Warnings only, and the line that gives the address away.
            ("RUST_LOG", "warn,palyra::application=info"),
        ];
        eprintln!("  starting node-a, seeding the agent, then node-b and node-c");
        let mut cluster = Cluster::start(&palyrad, 1, database.url(), &env).await?;
        seed_agent(&cluster).await?;
        for _ in 1..3 {
            cluster.grow().await?;
        }
        let spread = cluster.wait_spread_over(&[0, 1, 2], SPREAD_LIMIT).await?;
        eprintln!(
            "  three nodes lease all shards ({:.1} s after the last one started)",
            spread.as_secs_f64()
        );
        let mut rig = Rig {
            cluster,
            model,
            oauth,
            token,
            objectives: Vec::new(),
            every_s,
            _database: database,
        };
        // Sessions first, on the idle cluster; then the firings, which load it.
        let mut rows = rig.session_check(self).await?;
        rows.push(rig.revocation(self).await?);
        rows.push(rig.refresh(self).await?);
        let target = CLUSTER_OBJECTIVES;
        let first = rig.firing_level(self, target).await?;
        let mut held = first.held;
        rows.push(first.row);
        rows.push(rig.takeover(self).await?);
        let mut level = target;
        for _ in 0..EXTRA_LEVELS {
            if !held {
                break;
            }
            level += LEVEL_STEP;
            let next = rig.firing_level(self, level).await?;
            held = next.held;
            rows.push(next.row);
        }
        rig.cluster.kill_all().await?;
        if let Err(e) = rig.model.stop() {
            eprintln!("  the fake model provider: {e}");
        }
        if let Err(e) = rig.oauth.stop() {
            eprintln!("  the fake OAuth provider: {e}");
        }
        Ok(rows)
    }
}

impl Rig {
    /// A login through node `i`: the session cookie value and the CSRF token.
    async fn login(&self, http: &reqwest::Client, i: usize) -> Result<(String, String), BoxError> {
        let response = http
            .post(format!("{}/console/v1/auth/login", self.cluster.url(i)))
            .json(&serde_json::json!({ "admin_token": self.token }))
            .send()
            .await?;
        if response.status() != 200 {
            return Err(format!("login answered {}", response.status()).into());
        }
        let cookie = response
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .filter_map(|pair| pair.split_once('='))
            .find(|(name, _)| *name == "palyra_console_session")
            .map(|(_, value)| value.to_owned())
            .ok_or("login answered no session cookie")?;
        let body: serde_json::Value = response.json().await?;
        let csrf = body["csrf_token"]
            .as_str()
            .ok_or("login answered no CSRF token")?
            .to_owned();
        Ok((cookie, csrf))
    }

    /// `cluster-session-check` on node A and `cluster-session-check-redb` on the same
    /// binary alone on redb, each against the baseline in alternating slices.
    async fn session_check(&self, bench: &Bench) -> Result<Vec<Row>, BoxError> {
        eprintln!("  session checks on node-a, then on palyrad alone on redb");
        let node_a = self.cluster.url(0);
        let addr = crate::bench::loopback_addr(&node_a)?;
        let cookie = login_cookie_for(addr, &self.token).await?;
        let work = Arc::new(SessionCheck { cookie });
        let on_cluster = bench.compare(addr, &work, None, false).await?;
        let single = ChildPalyrad::spawn(&bench.root).await?;
        let cookie = login_cookie_for(single.addr(), single.token.expose()).await?;
        let work = Arc::new(SessionCheck { cookie });
        let on_redb = bench.compare(single.addr(), &work, None, false).await;
        let mut single = single;
        let stopped = single.stop().await;
        let on_redb = on_redb?;
        let plan = Plan::Cluster {
            measure: ClusterMeasure::SessionCheck,
        };
        let mut row = Row::from_comparison(plan, &on_cluster, bench);
        let redb_plan = Plan::Cluster {
            measure: ClusterMeasure::SessionCheckRedb,
        };
        let mut redb = Row::from_comparison(redb_plan, &on_redb, bench);
        let vs = if redb.rps > 0.0 {
            row.rps / redb.rps
        } else {
            0.0
        };
        row.vs_redb = Some(round(vs, 3));
        row.measured = format!(
            "{:.0} rps, p99 {:.2} ms; {vs:.2}x the single-node redb figure",
            row.rps, row.p99_ms
        );
        row.notes = "node-a of three on PostgreSQL (the other two idle but beating), release palyrad, one cookie".into();
        redb.measured = format!("{:.0} rps, p99 {:.2} ms", redb.rps, redb.p99_ms);
        redb.notes = "the same release palyrad alone on redb, a child process".into();
        if !stopped.is_empty() {
            redb.notes.push_str(&format!("; {stopped}"));
        }
        Ok(vec![row, redb])
    }
}

/// The model profile and the agent, through node A before the others start (the
/// objectives are what this scenario measures).
async fn seed_agent(cluster: &Cluster) -> Result<(), BoxError> {
    let profile = serde_json::json!({
        "profile_id": MODEL_PROFILE,
        "provider": "openai",
        "profile_name": "bench model",
        "credential": { "type": "api_key", "api_key": MODEL_KEY },
        "validate": false,
    });
    let agent = serde_json::json!({
        "agent_id": AGENT,
        "model": "bench-model",
        "default_model_profile": MODEL_PROFILE,
    });
    for (path, body) in [
        ("/console/v1/auth/profiles", profile),
        ("/console/v1/agents", agent),
    ] {
        let (status, answer) = cluster.admin(0, Method::POST, path, Some(&body)).await?;
        if status != 200 {
            return Err(format!("POST {path} answered {status}: {answer}").into());
        }
    }
    Ok(())
}
