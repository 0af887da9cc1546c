//! The command line: flags, their checks, and the plans they ask for.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::backends::BackendArg;
use crate::driver::BoxError;
use crate::plan::{CLUSTER_OBJECTIVES, ClusterMeasure, Plan};

/// Sessions of the second session-check row of `--scenario all`.
const MANY_SESSIONS: usize = 10_000;

/// Load benchmark of palyrad's console auth routes against a trivial axum baseline.
#[derive(Debug, Parser)]
#[command(name = "palyra-bench")]
pub struct Args {
    /// What to measure.
    #[arg(long, value_enum)]
    pub scenario: ScenarioArg,
    /// Concurrent keep-alive HTTP/1.1 clients, one connection each.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Measured seconds per side (scenario, baseline) of each HTTP scenario
    /// [default: 10]; for `scheduler-10k`, seconds of firing measured for the daemon and
    /// again for tokio-cron-scheduler, rounded up to whole periods [default: 30].
    #[arg(long)]
    pub duration: Option<f64>,
    /// `scheduler-10k`: the schedule fires every this many seconds (`*/N * * * * *`,
    /// so every objective is due on the same boundaries); N must divide 60.
    #[arg(long, default_value_t = 5)]
    pub every: u32,
    /// `scheduler-10k`: active objectives (and peer jobs).
    #[arg(long, default_value_t = 10_000)]
    pub objectives: usize,
    /// Alternating slices per side: baseline, scenario, baseline, scenario, ...
    #[arg(long, default_value_t = 5)]
    pub slices: u32,
    /// Live sessions seeded (by concurrent logins) before `session-check`.
    #[arg(long, default_value_t = 1)]
    pub sessions: usize,
    /// Also write the rows as a JSON array to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Target a running daemon (a loopback http:// URL) instead of an in-process one;
    /// the admin token comes from PALYRA_ADMIN_TOKEN.
    #[arg(long)]
    pub url: Option<String>,
    /// Directory under which temporary data dirs are made and fsync is measured
    /// [default: the system temp dir].
    #[arg(long)]
    pub data_root: Option<PathBuf>,
    /// Where the in-process daemon keeps its state: `redb`, `postgres` (a fresh
    /// database per scenario on one PostgreSQL server the bench starts on this machine)
    /// or `both` (each scenario on redb, then on PostgreSQL; PostgreSQL rows are
    /// suffixed `-pg`). `rss` and `rss-profiles` run on redb only.
    #[arg(long, value_enum, default_value = "redb")]
    pub backend: BackendArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScenarioArg {
    SessionCheck,
    Login,
    Handoff,
    ProfileList,
    ProfileCreate,
    ObjectiveCreate,
    Rss,
    RssProfiles,
    #[value(name = "refresh-10k")]
    Refresh10k,
    #[value(name = "scheduler-10k")]
    Scheduler10k,
    /// Three release palyrad nodes on PostgreSQL (not part of `all`: a few minutes).
    Cluster,
    /// The release palyrad under mixed load for `--duration` seconds [default: 600],
    /// RSS sampled every minute (not part of `all`); PALYRA_STORAGE__CACHE_MIB, when set, is passed to it.
    Soak,
    All,
}

impl Args {
    /// Refuses flags that cannot give a measurement.
    pub fn check(&self) -> Result<(), BoxError> {
        if self.clients == 0 || self.slices == 0 || self.sessions == 0 {
            return Err("--clients, --slices and --sessions must be at least 1".into());
        }
        if let Some(duration) = self.duration
            && !(duration.is_finite() && duration > 0.0)
        {
            return Err("--duration must be a positive number of seconds".into());
        }
        if self.every == 0 || 60 % self.every != 0 {
            return Err("--every must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)".into());
        }
        if self.objectives == 0 || self.objectives > 1_000_000 {
            return Err("--objectives must be between 1 and 1,000,000".into());
        }
        if self.url.is_some() && self.backend.uses_postgres() {
            return Err("--backend postgres or both needs the in-process daemon, not --url".into());
        }
        if self.scenario == ScenarioArg::Cluster && self.url.is_some() {
            return Err("cluster starts its own nodes: --url does not apply".into());
        }
        if self.backend == BackendArg::Postgres
            && self.scenario != ScenarioArg::All
            && let Some(plan) = self.plans().iter().find(|p| !p.runs_on_postgres())
        {
            return Err(format!(
                "{} measures the palyrad binary on redb only: use --backend redb",
                plan.name()
            )
            .into());
        }
        Ok(())
    }

    /// The rows `--scenario` asks for, in the order they run.
    pub fn plans(&self) -> Vec<Plan> {
        let scheduler = Plan::Scheduler {
            objectives: self.objectives,
            every_s: self.every,
            peer: false,
        };
        match self.scenario {
            ScenarioArg::SessionCheck => vec![Plan::SessionCheck {
                sessions: self.sessions,
            }],
            ScenarioArg::Login => vec![Plan::Login],
            ScenarioArg::Handoff => vec![Plan::Handoff],
            ScenarioArg::ProfileList => vec![Plan::ProfileList],
            ScenarioArg::ProfileCreate => vec![Plan::ProfileCreate],
            ScenarioArg::ObjectiveCreate => vec![Plan::ObjectiveCreate],
            ScenarioArg::Rss => vec![Plan::Rss],
            ScenarioArg::RssProfiles => vec![Plan::RssProfiles],
            ScenarioArg::Refresh10k => vec![Plan::Refresh],
            ScenarioArg::Soak => vec![Plan::Soak {
                duration_s: self.duration.map_or(600, |d| d.ceil() as u64),
            }],
            ScenarioArg::Scheduler10k => vec![scheduler],
            ScenarioArg::Cluster => vec![Plan::Cluster {
                measure: ClusterMeasure::Firings {
                    objectives: CLUSTER_OBJECTIVES,
                    every_s: self.every,
                },
            }],
            ScenarioArg::All => vec![
                Plan::SessionCheck { sessions: 1 },
                Plan::SessionCheck {
                    sessions: MANY_SESSIONS,
                },
                Plan::Login,
                Plan::Handoff,
                Plan::ProfileList,
                Plan::ProfileCreate,
                Plan::ObjectiveCreate,
                Plan::Rss,
                Plan::RssProfiles,
                Plan::Refresh,
                scheduler,
            ],
        }
    }
}
