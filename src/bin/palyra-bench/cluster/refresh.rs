//! The refresh throughput of `cluster`: OAuth profiles signed in through the three
//! nodes in turn, all due within about a second (the fake's due window), refreshed by
//! whichever node holds each profile's shard, each claimed in the database first.
//! Measured until every refresh is durable, with the count of refresh tokens the fake
//! saw presented twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use palyra::testkit::cluster::try_psql;
use palyra::testkit::oauth::consent;
use palyra_actors::cluster::shard_of;
use tokio::task::JoinSet;

use super::Rig;
use crate::bench::Bench;
use crate::driver::BoxError;
use crate::fakes::BENCH_PROVIDER;
use crate::plan::{CLUSTER_REFRESH_PROFILES, ClusterMeasure, Plan};
use crate::probes::{unix_ms, unix_ms_at};
use crate::report::{Row, round};

/// `oauth.refresh_lead_s` of the nodes.
pub const REFRESH_LEAD_S: u64 = 2;
/// Sign-ins in flight at once.
const SIGNERS: usize = 16;
/// How long after the due window the refreshes may take before the bench gives up.
const REFRESH_LIMIT: Duration = Duration::from_secs(90);
/// The ids of the scenario's profiles start with this.
const PREFIX: &str = "cr";

/// The stored refresh generation of every profile of the scenario: how many there are
/// per generation.
fn generations(db_url: &str) -> Result<BTreeMap<u64, usize>, BoxError> {
    let out = try_psql(
        db_url,
        &format!(
            "SELECT (convert_from(value, 'UTF8')::jsonb #>> \
             '{{r,credential,refresh_state,generation}}')::bigint, count(*) \
             FROM auth_profiles WHERE profile_id LIKE '{PREFIX}%' GROUP BY 1"
        ),
    )?;
    let mut counts = BTreeMap::new();
    for line in out.lines().filter(|l| !l.is_empty()) {
        let (generation, n) = line
            .split_once('|')
            .ok_or_else(|| format!("a generation row {line:?}"))?;
        counts.insert(generation.parse()?, n.parse()?);
    }
    Ok(counts)
}

/// Profiles of the scenario whose row says they need a new sign-in.
fn needing_sign_in(db_url: &str) -> Result<usize, BoxError> {
    let out = try_psql(
        db_url,
        &format!(
            "SELECT count(*) FROM auth_profiles WHERE profile_id LIKE '{PREFIX}%' AND \
             convert_from(value, 'UTF8')::jsonb #>> \
             '{{r,credential,refresh_state,needs_reauth}}' = 'true'"
        ),
    )?;
    Ok(out.trim().parse()?)
}

impl Rig {
    /// `cluster-refresh-1k`.
    pub async fn refresh(&self, bench: &Bench) -> Result<Row, BoxError> {
        let n = CLUSTER_REFRESH_PROFILES;
        eprintln!("  refresh: signing in {n} OAuth profiles through the three nodes");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let urls: Arc<Vec<String>> = Arc::new(
            (0..self.cluster.len())
                .map(|i| self.cluster.url(i))
                .collect(),
        );
        let ids: Arc<Vec<String>> = Arc::new((0..n).map(|i| format!("{PREFIX}{i:05}")).collect());
        let started = Instant::now();
        let callbacks = self.bootstrap_all(&http, &urls, &ids).await;
        let bootstraps = started.elapsed();
        // The callbacks cost a code exchange and two durable writes each on top of a
        // bootstrap: the window opens well after they should have finished.
        let lead_in = (bootstraps * 4 + Duration::from_secs(5)).max(Duration::from_secs(10));
        self.oauth.open_due_window(
            unix_ms() + i64::try_from(lead_in.as_millis())?,
            REFRESH_LEAD_S,
        );
        let signed = follow_all(&http, callbacks).await;
        let seed = started.elapsed();
        let early = self.oauth.snapshot(|s| s.refresh_redemptions);
        let before = generations(self.cluster.db_url())?;
        let base_generation = before.keys().next().copied().unwrap_or(0);
        let owners = self.cluster.shard_owners()?;
        let mut per_node = vec![0usize; self.cluster.len()];
        for id in ids.iter() {
            let owner = owners.get(&shard_of(id.as_bytes()));
            if let Some(i) = (0..self.cluster.len())
                .find(|&i| owner.map(String::as_str) == Some(self.cluster.id(i)))
            {
                per_node[i] += 1;
            }
        }
        eprintln!(
            "    {signed} signed in in {:.1} s; waiting for the refreshes",
            seed.as_secs_f64()
        );
        // Done when every profile's stored generation moved past the sign-in's.
        let deadline = started + lead_in + REFRESH_LIMIT;
        let (done_at, refreshed) = loop {
            let now = generations(self.cluster.db_url())?;
            let refreshed: usize = now
                .iter()
                .filter(|(g, _)| **g > base_generation)
                .map(|(_, c)| *c)
                .sum();
            if refreshed >= signed {
                break (Some(Instant::now()), refreshed);
            }
            if Instant::now() > deadline {
                break (None, refreshed);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (first, grants, refused, due_range) = self
            .oauth
            .snapshot(|s| (s.first_refresh, s.refresh_grants, s.refused, s.due_range));
        let reused = self.oauth.reused_refresh_tokens().len();
        let reauth = needing_sign_in(self.cluster.db_url())?;

        let plan = Plan::Cluster {
            measure: ClusterMeasure::Refresh { profiles: n },
        };
        let mut row = Row::new(plan, bench);
        row.profiles = Some(signed);
        row.refreshed = Some(refreshed as u64);
        row.token_endpoint_refreshes = Some(grants);
        row.reused_refresh_tokens = Some(reused as u64);
        row.seed_s = Some(round(seed.as_secs_f64(), 2));
        let (due_min, due_max) = due_range.unwrap_or((0, 0));
        row.due_spread_ms = Some(due_max - due_min);
        row.errors = (n - signed) as u64
            + (signed.saturating_sub(refreshed)) as u64
            + refused
            + reauth as u64
            + reused as u64;
        match (first, done_at) {
            (Some(first), Some(done)) => {
                let wall = done.saturating_duration_since(first).as_secs_f64();
                let per_s = refreshed as f64 / wall;
                row.refresh_wall_s = Some(round(wall, 3));
                row.refreshes_per_s = Some(round(per_s, 1));
                row.measured = format!(
                    "{per_s:.0} refreshes/s: {refreshed} of {signed} durable {wall:.2} s after the first grant at the fake, {} ms after the last due time; {reused} refresh tokens presented twice",
                    unix_ms_at(done) - due_max
                );
            }
            _ => {
                row.measured = format!(
                    "{refreshed} of {signed} refreshed within {} s of the due window; {reused} refresh tokens presented twice",
                    REFRESH_LIMIT.as_secs()
                );
            }
        }
        let mut notes = vec![format!(
            "{signed} of {n} signed in through the nodes in turn in {:.1} s; due times spread over {} ms; shards held per node {per_node:?}; {grants} grants, {refused} refused at the fake, {reauth} needing a sign-in",
            seed.as_secs_f64(),
            due_max - due_min
        )];
        if early > 0 {
            notes.push(format!(
                "{early} refreshes started before the sign-ins finished (the due window opened too early)"
            ));
        }
        row.notes = notes.join("; ");
        eprintln!("    {}", row.measured);
        Ok(row)
    }

    /// Bootstraps every sign-in (through node `i % 3` for the i-th), consents to each
    /// at the fake, and returns the callback URLs the browser would follow.
    async fn bootstrap_all(
        &self,
        http: &reqwest::Client,
        urls: &Arc<Vec<String>>,
        ids: &Arc<Vec<String>>,
    ) -> Vec<String> {
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = JoinSet::new();
        for _ in 0..SIGNERS {
            let (http, urls, ids, next) = (
                http.clone(),
                Arc::clone(urls),
                Arc::clone(ids),
                Arc::clone(&next),
            );
            let (token, oauth) = (self.token.clone(), Arc::clone(&self.oauth.state));
            tasks.spawn(async move {
                let mut callbacks = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(id) = ids.get(i) else {
                        break;
                    };
                    let url = format!(
                        "{}/console/v1/auth/providers/{BENCH_PROVIDER}/bootstrap",
                        urls[i % urls.len()]
                    );
                    let answer = http
                        .post(url)
                        .bearer_auth(&token)
                        // offline_access: what gets a refresh token from a strict provider.
                        .json(&serde_json::json!({ "profile_name": id, "profile_id": id, "scopes": ["offline_access"] }))
                        .send()
                        .await;
                    let Ok(answer) = answer else { continue };
                    let Ok(body) = answer.json::<serde_json::Value>().await else {
                        continue;
                    };
                    let Some(authorization) = body["authorization_url"].as_str() else {
                        continue;
                    };
                    if let Ok((_, redirect)) = consent(&oauth, authorization) {
                        callbacks.push(redirect);
                    }
                }
                callbacks
            });
        }
        let mut callbacks = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            callbacks.extend(joined.unwrap_or_default());
        }
        callbacks
    }
}

/// Follows every callback (each to the node that began its sign-in); how many
/// answered 200.
async fn follow_all(http: &reqwest::Client, callbacks: Vec<String>) -> usize {
    let callbacks = Arc::new(callbacks);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..SIGNERS {
        let (http, callbacks, next) = (http.clone(), Arc::clone(&callbacks), Arc::clone(&next));
        tasks.spawn(async move {
            let mut ok = 0;
            while let Some(url) = callbacks.get(next.fetch_add(1, Ordering::Relaxed)) {
                if http.get(url).send().await.is_ok_and(|r| r.status() == 200) {
                    ok += 1;
                }
            }
            ok
        });
    }
    let mut ok = 0;
    while let Some(joined) = tasks.join_next().await {
        ok += joined.unwrap_or(0);
    }
    ok
}
