//! The scenarios a run measures (one report row each), and the sizes that name them
//! and their targets.

/// API-key profiles seeded before `profile-list`, and the page it loads.
pub const LIST_PROFILES: usize = 1_000;
pub const LIST_PAGE: usize = 100;
/// Profiles created between the idle and the loaded reading of `rss-profiles`.
pub const RSS_PROFILES: u64 = 10_000;
/// OAuth profiles of `refresh-10k`.
pub const REFRESH_PROFILES: usize = 10_000;
/// The peer baseline of `scheduler-10k`, as named by the issue.
pub const PEER_NAME: &str = "tokio-cron-scheduler 0.15.1";
/// The target firing level of `cluster` (issue 15): this many objectives every 5 s
/// across three nodes.
pub const CLUSTER_OBJECTIVES: usize = 2_000;
/// OAuth profiles of `cluster`'s refresh row, all due at once across three nodes.
pub const CLUSTER_REFRESH_PROFILES: usize = 1_000;

/// One row of `cluster`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterMeasure {
    /// A firing level: `objectives` every `every_s` s over three nodes.
    Firings { objectives: usize, every_s: u32 },
    /// kill -9 of a node until its objectives fire again on the others.
    Takeover,
    /// A logout through one node until every node refuses the session.
    Revocation,
    /// `profiles` OAuth profiles due at once, refreshed across three nodes.
    Refresh { profiles: usize },
    /// Session checks on one node of the cluster.
    SessionCheck,
    /// The same on the same binary alone on redb, in the same run.
    SessionCheckRedb,
}

/// One row of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    SessionCheck {
        sessions: usize,
    },
    Login,
    Handoff,
    ProfileList,
    ProfileCreate,
    ObjectiveCreate,
    Rss,
    RssProfiles,
    Refresh,
    /// `soak`: the release binary under mixed load for `duration_s`.
    Soak {
        duration_s: u64,
    },
    /// `scheduler-10k`: the daemon's scheduler (`peer: false`) or tokio-cron-scheduler
    /// on the same job set (`peer: true`); one scenario gives both rows.
    Scheduler {
        objectives: usize,
        every_s: u32,
        peer: bool,
    },
    /// `cluster`: three nodes on PostgreSQL; one scenario gives every row.
    Cluster {
        measure: ClusterMeasure,
    },
}

impl Plan {
    pub fn name(self) -> String {
        match self {
            Plan::SessionCheck { sessions: 1 } => "session-check".into(),
            Plan::SessionCheck { sessions } if sessions % 1000 == 0 => {
                format!("session-check-{}k", sessions / 1000)
            }
            Plan::SessionCheck { sessions } => format!("session-check-{sessions}"),
            Plan::Login => "login".into(),
            Plan::Handoff => "handoff".into(),
            Plan::ProfileList => "profile-list".into(),
            Plan::ProfileCreate => "profile-create".into(),
            Plan::ObjectiveCreate => "objective-create".into(),
            Plan::Rss => "rss".into(),
            Plan::RssProfiles => "rss-profiles".into(),
            Plan::Refresh => "refresh-10k".into(),
            Plan::Soak { duration_s } if duration_s % 60 == 0 => {
                format!("soak-{}min", duration_s / 60)
            }
            Plan::Soak { duration_s } => format!("soak-{duration_s}s"),
            Plan::Scheduler {
                objectives,
                every_s,
                peer,
            } => {
                let mut name = if objectives % 1000 == 0 {
                    format!("scheduler-{}k", objectives / 1000)
                } else {
                    format!("scheduler-{objectives}")
                };
                if every_s != 5 {
                    name.push_str(&format!("-every-{every_s}s"));
                }
                if peer {
                    name.push_str("-tokio-cron-scheduler");
                }
                name
            }
            Plan::Cluster { measure } => match measure {
                ClusterMeasure::Firings {
                    objectives,
                    every_s,
                } if objectives % 1000 == 0 => {
                    format!("cluster-firings-{}k-every-{every_s}s", objectives / 1000)
                }
                ClusterMeasure::Firings {
                    objectives,
                    every_s,
                } => format!("cluster-firings-{objectives}-every-{every_s}s"),
                ClusterMeasure::Takeover => "cluster-takeover".into(),
                ClusterMeasure::Revocation => "cluster-revocation".into(),
                ClusterMeasure::Refresh { profiles } if profiles % 1000 == 0 => {
                    format!("cluster-refresh-{}k", profiles / 1000)
                }
                ClusterMeasure::Refresh { profiles } => format!("cluster-refresh-{profiles}"),
                ClusterMeasure::SessionCheck => "cluster-session-check".into(),
                ClusterMeasure::SessionCheckRedb => "cluster-session-check-redb".into(),
            },
        }
    }

    /// Scenarios that configure or fill the daemon beyond what `--url` allows: they
    /// create profiles (which would land among an operator's real ones) or need a
    /// provider configured for the bench.
    pub fn needs_in_process(self) -> bool {
        matches!(
            self,
            Plan::ProfileList
                | Plan::ProfileCreate
                | Plan::ObjectiveCreate
                | Plan::Refresh
                | Plan::Soak { .. }
                | Plan::Scheduler { .. }
                | Plan::Cluster { .. }
        )
    }

    /// Scenarios whose in-process daemon can run on PostgreSQL; `rss` and
    /// `rss-profiles` measure the release binary as a child process, on redb.
    pub fn runs_on_postgres(self) -> bool {
        !matches!(self, Plan::Rss | Plan::RssProfiles | Plan::Soak { .. })
    }
}
