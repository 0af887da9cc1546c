//! What every HTTP scenario shares: the daemon it loads (a fresh one in this process
//! per scenario, or the one of `--url`) and the measurement against the baseline.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hyper::header::HeaderValue;
use palyra_actors::SecretString;
use palyra_actors::secret::random_token;

use crate::bench::{Bench, TargetMode};
use crate::driver::{BoxError, Work, bearer_header};
use crate::plan::Plan;
use crate::report::{Row, round};
use crate::servers::BenchDaemon;

/// The daemon an HTTP scenario loads.
#[derive(Debug)]
pub struct Target {
    /// The in-process daemon, stopped after the scenario; none with `--url`.
    pub daemon: Option<BenchDaemon>,
    pub addr: SocketAddr,
    pub token: SecretString,
}

impl Target {
    /// The body of a login with the admin token.
    pub fn login_body(&self) -> Bytes {
        Bytes::from(serde_json::json!({ "admin_token": self.token.expose() }).to_string())
    }

    /// `Authorization: Bearer <admin token>`, marked sensitive.
    pub fn bearer(&self) -> Result<HeaderValue, BoxError> {
        bearer_header(&self.token)
    }
}

/// A scenario's load: what each client repeats, and what one iteration is.
#[derive(Debug)]
pub struct HttpLoad<W> {
    pub work: W,
    /// HTTP requests per iteration (2 for handoff).
    pub requests_per_iteration: u32,
    /// Durable writes per iteration: above 0, fsync is probed between the slices.
    pub writes_per_iteration: u32,
}

impl Bench {
    /// A fresh daemon per scenario, so sessions left by one do not weigh on the next;
    /// with `--url`, the running daemon.
    pub async fn http_target(&self, plan: Plan) -> Result<Target, BoxError> {
        match &self.target {
            TargetMode::InProcess => {
                let token = random_token();
                let max_live = match plan {
                    Plan::SessionCheck { sessions } => sessions.saturating_mul(2),
                    _ => 0,
                }
                // Logins during a run stay far below this, so no login pays for an
                // eviction and no seeded session is evicted.
                .max(1_000_000);
                let daemon = self
                    .start_daemon(&token, max_live, |s| {
                        if plan == Plan::ObjectiveCreate {
                            // No objective of this scenario fires; should one, its call
                            // stays on loopback.
                            s.providers.openai.api_base_url = "http://127.0.0.1:9".into();
                        }
                    })
                    .await?;
                Ok(Target {
                    addr: daemon.addr(),
                    daemon: Some(daemon),
                    token,
                })
            }
            TargetMode::External { addr, token } => Ok(Target {
                daemon: None,
                addr: *addr,
                token: token.clone(),
            }),
        }
    }

    /// Alternating slices of `load` against the target and of the baseline, then the
    /// row; the in-process daemon is stopped. `notes` are the scenario's own.
    pub async fn measure<W: Work>(
        &self,
        plan: Plan,
        target: Target,
        load: HttpLoad<W>,
        mut notes: Vec<String>,
    ) -> Result<Row, BoxError> {
        let HttpLoad {
            work,
            requests_per_iteration,
            writes_per_iteration,
        } = load;
        let writer = target.daemon.as_ref().map(|d| d.writer().clone());
        let probe_fsync = writes_per_iteration > 0;
        let cmp = self
            .compare(target.addr, &Arc::new(work), writer.as_ref(), probe_fsync)
            .await?;
        if let Some(daemon) = target.daemon {
            daemon.stop().await?;
        }

        let mut row = Row::from_comparison(plan, &cmp, self);
        row.requests_per_iteration = Some(requests_per_iteration);
        if writes_per_iteration > 0 {
            // Compared with the fsync rate measured between this scenario's slices.
            let fsync_per_s = cmp.fsync.rate();
            row.fsync_per_s = round(fsync_per_s, 1);
            let durable = row.rps * f64::from(writes_per_iteration);
            row.durable_writes_per_s = Some(round(durable, 1));
            row.durable_vs_fsync = Some(round(durable / fsync_per_s, 3));
            notes.push(format!(
                "{durable:.0} durable writes/s = {:.2}x the {fsync_per_s:.0} fsync/s measured between slices",
                durable / fsync_per_s
            ));
        }
        if cmp.commits > 0 {
            let per_commit = cmp.writes as f64 / cmp.commits as f64;
            let commits_per_s = cmp.commits as f64 / cmp.scenario.elapsed.as_secs_f64();
            row.writes_per_commit = Some(round(per_commit, 2));
            row.commits_per_s = Some(round(commits_per_s, 1));
            notes.push(format!(
                "group commit: {per_commit:.1} writes/commit, {commits_per_s:.0} commits/s"
            ));
        }
        if cmp.baseline.errors > 0 {
            notes.push(format!("{} baseline errors", cmp.baseline.errors));
        }
        row.notes = notes.join("; ");
        Ok(row)
    }
}
