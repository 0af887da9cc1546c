//! The revocation propagation of `cluster`: a session logged in through one node and
//! logged out through the next, until every node refuses it.

use std::time::{Duration, Instant};

use reqwest::header::COOKIE;

use super::Rig;
use crate::bench::Bench;
use crate::driver::BoxError;
use crate::plan::{ClusterMeasure, Plan};
use crate::report::{Row, round};

/// Sessions revoked.
const ROUNDS: usize = 200;
/// A node that still accepts a revoked session this long after the logout's answer
/// counts as never refusing it.
const GIVE_UP: Duration = Duration::from_secs(5);
/// Between two checks of one node.
const POLL: Duration = Duration::from_millis(5);

/// `GET /console/v1/auth/session` on `base`: the status, 0 when unreachable.
async fn session_status(http: &reqwest::Client, base: &str, cookie: &str, csrf: &str) -> u16 {
    http.get(format!("{base}/console/v1/auth/session"))
        .header(COOKIE, format!("palyra_console_session={cookie}"))
        // A cookie alone is refused, reads included.
        .header("x-palyra-csrf-token", csrf)
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// How long after `since` the node at `base` refuses `cookie`; None past [`GIVE_UP`].
async fn refused_after(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
    csrf: &str,
    since: Instant,
) -> Option<Duration> {
    loop {
        if session_status(http, base, cookie, csrf).await == 401 {
            return Some(since.elapsed());
        }
        if since.elapsed() > GIVE_UP {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

fn quantile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

impl Rig {
    pub async fn revocation(&self, bench: &Bench) -> Result<Row, BoxError> {
        eprintln!("  revocation: {ROUNDS} sessions logged out through another node");
        let http = reqwest::Client::new();
        let urls: Vec<String> = (0..self.cluster.len())
            .map(|i| self.cluster.url(i))
            .collect();
        let mut delays = Vec::with_capacity(ROUNDS);
        let (mut not_shared, mut never_refused, mut logout_failed) = (0u64, 0u64, 0u64);
        for round_no in 0..ROUNDS {
            let (cookie, csrf) = self.login(&http, round_no % urls.len()).await?;
            let mut shared = true;
            for url in &urls {
                shared &= session_status(&http, url, &cookie, &csrf).await == 200;
            }
            if !shared {
                not_shared += 1;
            }
            let logout = http
                .post(format!(
                    "{}/console/v1/auth/logout",
                    urls[(round_no + 1) % urls.len()]
                ))
                .header(COOKIE, format!("palyra_console_session={cookie}"))
                .header("x-palyra-csrf-token", &csrf)
                .send()
                .await?;
            if logout.status() != 204 {
                logout_failed += 1;
                continue;
            }
            let answered = Instant::now();
            // Every node polled at once, each on its own task.
            let mut checks = tokio::task::JoinSet::new();
            for url in &urls {
                let (http, url, cookie) = (http.clone(), url.clone(), cookie.clone());
                let csrf = csrf.clone();
                checks.spawn(
                    async move { refused_after(&http, &url, &cookie, &csrf, answered).await },
                );
            }
            let mut worst = Duration::ZERO;
            let mut refused_everywhere = true;
            while let Some(refused) = checks.join_next().await {
                match refused? {
                    Some(after) => worst = worst.max(after),
                    None => refused_everywhere = false,
                }
            }
            if refused_everywhere {
                delays.push(worst);
            } else {
                never_refused += 1;
            }
        }
        delays.sort_unstable();
        let plan = Plan::Cluster {
            measure: ClusterMeasure::Revocation,
        };
        let mut row = Row::new(plan, bench);
        row.p50_ms = round(quantile_ms(&delays, 0.5), 1);
        row.p99_ms = round(quantile_ms(&delays, 0.99), 1);
        row.p999_ms = round(delays.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0), 1);
        row.errors = not_shared + never_refused + logout_failed;
        row.revocations = Some(delays.len() as u64);
        row.measured = format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} revocations",
            row.p50_ms,
            row.p99_ms,
            row.p999_ms,
            delays.len()
        );
        row.notes = format!(
            "from the logout's answer (through the next node) until all three nodes answer 401, each polled every {} ms; {not_shared} sessions not valid on every node right after login, {never_refused} still accepted somewhere {} s after the logout, {logout_failed} logouts refused",
            POLL.as_millis(),
            GIVE_UP.as_secs()
        );
        eprintln!("    {}", row.measured);
        Ok(row)
    }
}
