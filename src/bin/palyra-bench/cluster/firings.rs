//! The firing levels of `cluster` and the takeover after kill -9.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use palyra::testkit::firings::{Expected, RunRow, check, read_runs};
use palyra_actors::cluster::shard_of;
use tokio::task::JoinSet;

use super::{AGENT, LEASE_TTL_S, Rig, SPREAD_LIMIT, WINDOW_BOUNDARIES};
use crate::bench::Bench;
use crate::driver::BoxError;
use crate::plan::{ClusterMeasure, Plan};
use crate::probes::unix_ms;
use crate::report::{Row, round};

/// Objective creations in flight at once.
const CREATORS: usize = 16;
/// A level whose objectives cannot all be created within this long (the nodes are
/// busy firing the earlier ones) does not hold.
const CREATE_LIMIT: Duration = Duration::from_secs(90);
/// How long the takeover may take before the bench gives up on it.
const TAKEOVER_LIMIT: Duration = Duration::from_secs(90);

/// A firing level's row, and whether it held.
pub struct Level {
    pub row: Row,
    pub held: bool,
}

/// Sleeps until `ms` (Unix milliseconds).
async fn until(ms: i64) {
    let wait = u64::try_from(ms - unix_ms()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

/// The p-th quantile of sorted values.
fn quantile(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64
}

impl Rig {
    fn every_ms(&self) -> i64 {
        i64::from(self.every_s) * 1000
    }

    /// Creates objectives through node A until there are `total`, `CREATORS` at once,
    /// retrying a 503 (storage busy), for at most [`CREATE_LIMIT`]: how long it took,
    /// and whether all were created.
    async fn create_up_to(&mut self, total: usize) -> Result<(Duration, bool), BoxError> {
        let started = Instant::now();
        let first = self.objectives.len();
        let ids: Arc<Vec<String>> = Arc::new((first..total).map(|n| format!("k{n:05}")).collect());
        let next = Arc::new(AtomicUsize::new(0));
        let http = reqwest::Client::new();
        let url = format!("{}/console/v1/objectives", self.cluster.url(0));
        let schedule = format!("*/{} * * * * *", self.every_s);
        let mut tasks = JoinSet::new();
        for _ in 0..CREATORS {
            let (ids, next, http, url, schedule, token) = (
                Arc::clone(&ids),
                Arc::clone(&next),
                http.clone(),
                url.clone(),
                schedule.clone(),
                self.token.clone(),
            );
            tasks.spawn(async move {
                let mut created = Vec::new();
                loop {
                    if started.elapsed() > CREATE_LIMIT {
                        return Ok::<_, String>(created);
                    }
                    let Some(id) = ids.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        return Ok(created);
                    };
                    let body = serde_json::json!({
                        "objective_id": id, "agent_id": AGENT, "kind": "standing_order",
                        "name": id, "prompt": id,
                        "automation": { "schedule": schedule, "timezone": "UTC" },
                        "activate": true,
                    });
                    loop {
                        let response = http
                            .post(&url)
                            .bearer_auth(&token)
                            .json(&body)
                            .send()
                            .await
                            .map_err(|e| format!("creating {id}: {e}"))?;
                        match response.status().as_u16() {
                            200 => break,
                            503 if started.elapsed() <= CREATE_LIMIT => {
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                            status => return Err(format!("creating {id}: {status}")),
                        }
                    }
                    created.push(id.clone());
                }
            });
        }
        let mut created = Vec::new();
        while let Some(done) = tasks.join_next().await {
            created.extend(done??);
        }
        created.sort_unstable();
        let all = created.len() == ids.len();
        self.objectives.extend(created);
        Ok((started.elapsed(), all))
    }

    /// One level: `total` objectives, a boundary of warm-up, `WINDOW_BOUNDARIES`
    /// measured, and the checker on the window.
    pub async fn firing_level(&mut self, bench: &Bench, total: usize) -> Result<Level, BoxError> {
        eprintln!("  firings: {total} objectives every {} s", self.every_s);
        let (created, all_created) = self.create_up_to(total).await?;
        let every_ms = self.every_ms();
        // The first boundary after the creations is a warm-up; the window follows.
        let warm_up = (unix_ms() / every_ms + 1) * every_ms;
        let from_ms = warm_up;
        let to_ms = warm_up + WINDOW_BOUNDARIES * every_ms;
        until(to_ms + every_ms / 2 + 2000).await;
        // The calls before the rows: a run calls the provider only once its row has
        // committed, so every call taken first has its row in the read that follows.
        // The other way round, the next boundary's calls that land while a large
        // table is read count as calls for runs with no row.
        let calls = self.model.answered();
        let rows = read_runs(self.cluster.db_url())?;
        let expected = Expected {
            objectives: self.objectives.clone(),
            every_ms,
            from_ms,
            to_ms,
        };
        let report = check(&rows, &calls, &expected);
        let succeeded = report.statuses.get("succeeded").copied().unwrap_or(0);
        let not_run = report.expected - succeeded.min(report.expected);
        let doubled = report.doubled.len() + report.doubled_calls.len() + report.orphan_calls.len();
        let held = report.missing.is_empty() && report.violations().is_empty() && not_run == 0;
        let mut lateness: Vec<i64> = rows
            .iter()
            .filter(|r| r.scheduled_ms.is_some_and(|t| t > from_ms && t <= to_ms))
            .filter_map(|r| Some(r.started_ms? - r.scheduled_ms?))
            .collect();
        lateness.sort_unstable();
        let measure = ClusterMeasure::Firings {
            objectives: total,
            every_s: self.every_s,
        };
        let mut row = Row::new(Plan::Cluster { measure }, bench);
        let window_s = (WINDOW_BOUNDARIES * every_ms) as f64 / 1000.0;
        row.rps = round(self.objectives.len() as f64 / f64::from(self.every_s), 1);
        row.objectives = Some(self.objectives.len());
        row.every_s = Some(self.every_s);
        row.window_s = Some(window_s);
        row.expected = Some(report.expected as u64);
        row.received = Some(succeeded as u64);
        row.missed = Some(not_run as u64);
        row.doubled = Some(doubled as u64);
        row.lateness_p50_ms = Some(quantile(&lateness, 0.5));
        row.lateness_p99_ms = Some(quantile(&lateness, 0.99));
        row.lateness_max_ms = Some(lateness.last().copied().unwrap_or(0) as f64);
        row.errors = (report.missing.len() + report.unsettled.len()) as u64;
        let verdict = if held { "held" } else { "did not hold" };
        row.measured = format!(
            "{:.0} firings/s {verdict}: {} expected, {succeeded} succeeded, {not_run} not run, {doubled} doubled; start after the instant p50 {:.0} ms, p99 {:.0} ms",
            row.rps,
            report.expected,
            quantile(&lateness, 0.5),
            quantile(&lateness, 0.99),
        );
        row.notes = format!(
            "{} through node-a in {:.1} s; per node {:?}; statuses {:?}{}",
            if all_created {
                "created".to_owned()
            } else {
                format!("only {} of {total} created", self.objectives.len())
            },
            created.as_secs_f64(),
            report.nodes,
            report.statuses,
            if report.errors.is_empty() {
                String::new()
            } else {
                format!("; errors {:?}", report.errors)
            }
        );
        if doubled > 0 {
            // Which promise broke, with examples: the three kinds have different causes.
            let violations = report.violations();
            row.notes
                .push_str(&format!("; doubled: {}", violations.join("; ")));
            eprintln!("    {}", violations.join("\n    "));
        }
        eprintln!("    {}", row.measured);
        Ok(Level { row, held })
    }

    /// The node that owns the most objectives, and those objectives.
    fn busiest(&self) -> Result<(usize, Vec<String>), BoxError> {
        let owners = self.cluster.shard_owners()?;
        let mut by_node: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for id in &self.objectives {
            let owner = owners.get(&shard_of(id.as_bytes()));
            if let Some(i) = (0..self.cluster.len())
                .find(|&i| owner.map(String::as_str) == Some(self.cluster.id(i)))
            {
                by_node.entry(i).or_default().push(id.clone());
            }
        }
        Ok(by_node
            .into_iter()
            .max_by_key(|(_, ids)| ids.len())
            .ok_or("no node owns an objective")?)
    }

    /// kill -9 of the busiest node 100 ms into a firing window, until each of its
    /// objectives started a firing again; then it rejoins.
    pub async fn takeover(&mut self, bench: &Bench) -> Result<Row, BoxError> {
        let (victim, owned) = self.busiest()?;
        let every_ms = self.every_ms();
        until((unix_ms() / every_ms + 1) * every_ms + 100).await;
        let killed_ms = unix_ms();
        self.cluster.kill9(victim).await?;
        let killed = Instant::now();
        eprintln!(
            "  takeover: {} killed, it owned {} objectives",
            self.cluster.id(victim),
            owned.len()
        );
        let survivors: Vec<usize> = (0..self.cluster.len()).filter(|&i| i != victim).collect();
        // Both waits are reported, not fatal: a takeover that does not complete is a
        // result.
        let moved = self
            .cluster
            .wait_spread_over(&survivors, TAKEOVER_LIMIT)
            .await;
        let (fired_again, pending) = loop {
            let rows = read_runs(self.cluster.db_url())?;
            let (worst, pending) = fired_again_after(&rows, &owned, killed_ms);
            if pending == 0 || killed.elapsed() > TAKEOVER_LIMIT {
                break (worst, pending);
            }
            // The rows carry their start times: polling more often adds load, not precision.
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        let plan = Plan::Cluster {
            measure: ClusterMeasure::Takeover,
        };
        let mut row = Row::new(plan, bench);
        let takeover_s = fired_again.map(|t| (t - killed_ms) as f64 / 1000.0);
        row.takeover_s = if pending == 0 {
            takeover_s.map(|s| round(s, 2))
        } else {
            None
        };
        row.lease_moved_s = moved.as_ref().ok().map(|d| round(d.as_secs_f64(), 2));
        row.objectives = Some(owned.len());
        row.errors = pending as u64;
        let leases = match &moved {
            Ok(d) => format!(
                "its leases were all held by the others after {:.1} s",
                d.as_secs_f64()
            ),
            Err(e) => e.clone(),
        };
        row.measured = if pending == 0 {
            format!(
                "{:.1} s until the last of its {} objectives started again; {leases}",
                takeover_s.unwrap_or(0.0),
                owned.len()
            )
        } else {
            format!(
                "{pending} of its {} objectives had not fired again {} s after the kill; {leases}",
                owned.len(),
                TAKEOVER_LIMIT.as_secs()
            )
        };
        row.notes = format!(
            "lease TTL {LEASE_TTL_S} s, renewal every {} s; {} objectives every {} s over three nodes",
            LEASE_TTL_S / 3,
            self.objectives.len(),
            self.every_s
        );
        eprintln!("    {}", row.measured);
        self.cluster.start_node(victim).await?;
        if let Err(e) = self
            .cluster
            .wait_spread_over(&[0, 1, 2], SPREAD_LIMIT)
            .await
        {
            eprintln!("    after the rejoin: {e}");
            row.notes.push_str(&format!("; after the rejoin: {e}"));
        }
        Ok(row)
    }
}

/// When the last of `objectives` started a firing scheduled after `after_ms` (Unix
/// ms), among those that did, and how many did not yet.
fn fired_again_after(
    rows: &[RunRow],
    objectives: &[String],
    after_ms: i64,
) -> (Option<i64>, usize) {
    let mut first: BTreeMap<&str, i64> = BTreeMap::new();
    for r in rows {
        if r.scheduled_ms.is_some_and(|t| t > after_ms)
            && let Some(started) = r.started_ms
        {
            let at = first.entry(r.objective_id.as_str()).or_insert(started);
            *at = (*at).min(started);
        }
    }
    let starts: Vec<i64> = objectives
        .iter()
        .filter_map(|o| first.get(o.as_str()).copied())
        .collect();
    (
        starts.iter().max().copied(),
        objectives.len() - starts.len(),
    )
}
