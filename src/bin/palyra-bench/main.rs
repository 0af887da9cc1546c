//! palyra-bench: the load benchmark of palyrad's console authentication routes.
//!
//! It owns the whole measurement and nothing the daemon needs:
//! - it starts palyrad in-process on a temporary data dir with a generated admin
//!   token (or targets a running daemon with `--url` and `PALYRA_ADMIN_TOKEN`);
//! - it starts a trivial axum responder on another loopback port as the baseline, on
//!   its own runtime and thread, so every scenario is read as a ratio to it;
//! - it drives N keep-alive HTTP/1.1 clients (hyper's connection-level client, one
//!   connection per task: cheap enough not to dominate a 2-core machine) against the
//!   baseline and the scenario in alternating slices, so drift hits both sides;
//! - it measures the fsync ceiling of the data dir's filesystem in the same run (once
//!   at the start, and for write scenarios again in probes between their slices, as
//!   the disk's rate drifts with other load), and the daemon's group commit (writes
//!   per commit) when the daemon is in-process;
//! - for `rss` and `rss-profiles` it spawns the release `palyrad` binary and reads its
//!   resident memory;
//! - for `refresh-10k` it starts a fake OAuth token endpoint on loopback (its own
//!   runtime and thread, like the baseline), signs 10,000 profiles in through the real
//!   sign-in flow and times the background refresher on them;
//! - for `scheduler-10k` it starts a fake OpenAI-compatible model provider on loopback
//!   (its own runtime and thread) that records when each call arrives, creates 10,000
//!   active standing orders due on the same boundaries, and compares the daemon's
//!   firings with tokio-cron-scheduler's on the same job set in the same run;
//! - `objective-create` loads `POST /console/v1/objectives` like `profile-create`.
//!
//! It prints a Markdown table and a pass/miss assessment of the targets, and writes a
//! JSON array with `--json`. It is a benchmark, never a test: it exits 0 whatever the
//! numbers, and non-zero only when it cannot measure (the daemon does not start, a
//! login fails outright). It never prints the admin token, cookies or handoff links.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use palyra::settings::{LogFormat, LogSettings, ProviderConfig, Settings, Validation};
use palyra_actors::SecretString;
use palyra_actors::objectives::{
    ObjectiveRecord, ObjectiveState, RunRecord, RunStatus, RunTrigger,
};
use palyra_actors::refresher::RefresherHandle;
use palyra_actors::secret::random_token;
use palyra_storage::{Table, Writer, decode_record};
use serde::Serialize;
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const LOGIN_PATH: &str = "/console/v1/auth/login";
const SESSION_PATH: &str = "/console/v1/auth/session";
const HANDOFF_PATH: &str = "/console/v1/auth/browser-handoff";
const PROFILES_PATH: &str = "/console/v1/auth/profiles";
const HEALTH_PATH: &str = "/console/v1/auth/health";
/// The OAuth provider of `refresh-10k`, served by the bench's fake token endpoint.
const BENCH_PROVIDER: &str = "custom:bench";
const SESSION_COOKIE: &str = "palyra_console_session";
/// Unrecorded run of each side before a scenario's slices: first connections, page
/// faults and caches should not land in the first recorded slice.
const WARMUP: Duration = Duration::from_millis(500);
/// A request slower than this counts as an error and its connection is dropped, so a
/// stuck server cannot hang the run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the fsync ceiling is measured at the start, and in all (split between the
/// slices) during each write scenario.
const FSYNC_PROBE: Duration = Duration::from_secs(2);
/// Logins between the idle and the loaded RSS reading.
const RSS_LOGINS: u64 = 10_000;
/// Sessions of the second session-check row of `--scenario all`.
const MANY_SESSIONS: usize = 10_000;
/// API-key profiles seeded before `profile-list`, and the page it loads.
const LIST_PROFILES: usize = 1_000;
const LIST_PAGE: usize = 100;
/// Profiles created between the idle and the loaded reading of `rss-profiles`, and
/// the intermediate reading that separates one-off growth from growth per profile.
const RSS_PROFILES: u64 = 10_000;
const RSS_PROFILES_FIRST: u64 = 1_000;
/// OAuth profiles of `refresh-10k`.
const REFRESH_PROFILES: usize = 10_000;
/// `oauth.refresh_lead_s` of `refresh-10k`.
const REFRESH_LEAD_S: u64 = 2;
/// Lifetime of the tokens the fake issues on refresh: nothing falls due again while
/// the idle CPU is measured.
const REFRESHED_EXPIRES_IN_S: u64 = 3_600;
/// How long idle CPU is measured after the refresh burst.
const IDLE_CPU_WINDOW: Duration = Duration::from_secs(5);
/// `--duration` default of the HTTP scenarios (seconds per side).
const HTTP_DURATION_S: f64 = 10.0;
/// `--duration` default of `scheduler-10k` (seconds of firing measured, per side).
const SCHEDULER_WINDOW_S: f64 = 30.0;
/// After the window of `scheduler-10k`, how long calls of firings in the window may
/// still arrive at the fake provider before the daemon is stopped.
const SCHEDULER_DRAIN: Duration = Duration::from_secs(10);
/// The same for tokio-cron-scheduler's jobs, which only record an instant.
const PEER_DRAIN: Duration = Duration::from_secs(1);
/// The peer baseline of `scheduler-10k`, as named by the issue.
const PEER_NAME: &str = "tokio-cron-scheduler 0.15.1";
const AGENTS_PATH: &str = "/console/v1/agents";
const OBJECTIVES_PATH: &str = "/console/v1/objectives";
/// The API-key profile and the agent every bench objective runs as.
const BENCH_MODEL_PROFILE: &str = "bench-model";
const BENCH_AGENT: &str = "bench-agent";
/// `objective-create`: active objectives whose schedule is far away (00:00:00 UTC on
/// 1 January), so none fires during the run.
const FAR_SCHEDULE: &str = "0 0 0 1 1 *";
/// Prefix of the objective ids of `scheduler-10k` (`s00001`...); the prompt of each
/// objective is its id, which is how the fake provider knows whose call arrived.
const SCHEDULER_PREFIX: &str = "s";

/// Load benchmark of palyrad's console auth routes against a trivial axum baseline.
#[derive(Debug, Parser)]
#[command(name = "palyra-bench")]
struct Args {
    /// What to measure.
    #[arg(long, value_enum)]
    scenario: ScenarioArg,
    /// Concurrent keep-alive HTTP/1.1 clients, one connection each.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Measured seconds per side (scenario, baseline) of each HTTP scenario
    /// [default: 10]; for `scheduler-10k`, seconds of firing measured for the daemon and
    /// again for tokio-cron-scheduler, rounded up to whole periods [default: 30].
    #[arg(long)]
    duration: Option<f64>,
    /// `scheduler-10k`: the schedule fires every this many seconds (`*/N * * * * *`,
    /// so every objective is due on the same boundaries); N must divide 60.
    #[arg(long, default_value_t = 5)]
    every: u32,
    /// `scheduler-10k`: active objectives (and peer jobs).
    #[arg(long, default_value_t = 10_000)]
    objectives: usize,
    /// Alternating slices per side: baseline, scenario, baseline, scenario, ...
    #[arg(long, default_value_t = 5)]
    slices: u32,
    /// Live sessions seeded (by concurrent logins) before `session-check`.
    #[arg(long, default_value_t = 1)]
    sessions: usize,
    /// Also write the rows as a JSON array to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Target a running daemon (a loopback http:// URL) instead of an in-process one;
    /// the admin token comes from PALYRA_ADMIN_TOKEN.
    #[arg(long)]
    url: Option<String>,
    /// Directory under which temporary data dirs are made and fsync is measured
    /// [default: the system temp dir].
    #[arg(long)]
    data_root: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ScenarioArg {
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
    All,
}

/// One row of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
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
    /// `scheduler-10k`: the daemon's scheduler (`peer: false`) or tokio-cron-scheduler
    /// on the same job set (`peer: true`); one scenario gives both rows.
    Scheduler {
        objectives: usize,
        every_s: u32,
        peer: bool,
    },
}

impl Plan {
    fn name(self) -> String {
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
        }
    }

    /// Scenarios that configure or fill the daemon beyond what `--url` allows: they
    /// create profiles (which would land among an operator's real ones) or need a
    /// provider configured for the bench.
    fn needs_in_process(self) -> bool {
        matches!(
            self,
            Plan::ProfileList
                | Plan::ProfileCreate
                | Plan::ObjectiveCreate
                | Plan::Refresh
                | Plan::Scheduler { .. }
        )
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Only the daemon's warnings and errors: its per-request info lines would flood
    // the terminal (RUST_LOG still wins).
    // tokio-cron-scheduler's notification runner logs an ERROR line each time its
    // broadcast channel lags under `scheduler-10k`'s load; that is not a job firing, and
    // thousands of those lines would bury the report.
    palyra::telemetry::init(&LogSettings {
        format: LogFormat::Human,
        level: "warn,tokio_cron_scheduler=off".into(),
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-client")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("palyra-bench: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("palyra-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    if args.clients == 0 || args.slices == 0 || args.sessions == 0 {
        return Err("--clients, --slices and --sessions must be at least 1".into());
    }
    if let Some(duration) = args.duration
        && !(duration.is_finite() && duration > 0.0)
    {
        return Err("--duration must be a positive number of seconds".into());
    }
    if args.every == 0 || 60 % args.every != 0 {
        return Err("--every must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)".into());
    }
    if args.objectives == 0 || args.objectives > 1_000_000 {
        return Err("--objectives must be between 1 and 1,000,000".into());
    }
    let scheduler = Plan::Scheduler {
        objectives: args.objectives,
        every_s: args.every,
        peer: false,
    };
    let plans = match args.scenario {
        ScenarioArg::SessionCheck => vec![Plan::SessionCheck {
            sessions: args.sessions,
        }],
        ScenarioArg::Login => vec![Plan::Login],
        ScenarioArg::Handoff => vec![Plan::Handoff],
        ScenarioArg::ProfileList => vec![Plan::ProfileList],
        ScenarioArg::ProfileCreate => vec![Plan::ProfileCreate],
        ScenarioArg::ObjectiveCreate => vec![Plan::ObjectiveCreate],
        ScenarioArg::Rss => vec![Plan::Rss],
        ScenarioArg::RssProfiles => vec![Plan::RssProfiles],
        ScenarioArg::Refresh10k => vec![Plan::Refresh],
        ScenarioArg::Scheduler10k => vec![scheduler],
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
    };
    let target = match &args.url {
        Some(url) => {
            let addr = loopback_addr(url)?;
            let token = std::env::var("PALYRA_ADMIN_TOKEN")
                .map_err(|_| "--url needs the daemon's admin token in PALYRA_ADMIN_TOKEN")?;
            TargetMode::External {
                addr,
                token: SecretString::new(token),
            }
        }
        None => TargetMode::InProcess,
    };
    let plans = if matches!(target, TargetMode::External { .. }) {
        if args.scenario != ScenarioArg::All
            && let Some(plan) = plans.iter().find(|p| p.needs_in_process())
        {
            return Err(format!(
                    "{} needs the in-process daemon: it creates profiles or objectives or configures a provider, which --url must not do to a running daemon",
                    plan.name()
                )
                .into());
        }
        plans
            .into_iter()
            .filter(|p| {
                let keep = !p.needs_in_process();
                if !keep {
                    eprintln!("skipping {} with --url (in-process only)", p.name());
                }
                keep
            })
            .collect()
    } else {
        plans
    };
    let data_root = match &args.data_root {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir(),
    };
    // Everything this run writes lives under one temporary dir, removed at the end.
    let root = tempfile::Builder::new()
        .prefix("palyra-bench-")
        .tempdir_in(&data_root)?;

    let load_before = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into());
    eprintln!(
        "measuring the fsync ceiling in {} for {} s",
        data_root.display(),
        FSYNC_PROBE.as_secs()
    );
    let probe_dir = root.path().to_owned();
    let fsync_per_s = fsync_probe(probe_dir, FSYNC_PROBE).await?.rate();

    let baseline = Baseline::start()?;
    let bench = Bench {
        clients: args.clients,
        duration: Duration::from_secs_f64(args.duration.unwrap_or(HTTP_DURATION_S)),
        scheduler_window: Duration::from_secs_f64(args.duration.unwrap_or(SCHEDULER_WINDOW_S)),
        slices: args.slices,
        baseline: baseline.addr,
        target,
        root: root.path().to_owned(),
        fsync_per_s,
        load_before,
    };
    let mut rows = Vec::new();
    for plan in plans {
        eprintln!("running {}", plan.name());
        match plan {
            Plan::Rss => rows.push(bench.rss().await?),
            Plan::RssProfiles => rows.push(bench.rss_profiles().await?),
            Plan::Refresh => rows.push(bench.refresh().await?),
            Plan::Scheduler {
                objectives,
                every_s,
                ..
            } => rows.extend(bench.scheduler(objectives, every_s).await?),
            _ => rows.push(bench.http_scenario(plan).await?),
        }
    }
    baseline.stop();

    let verdicts = assess(&rows);
    let report = render_report(&bench, &data_root, &rows, &verdicts);
    println!("{report}");
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&rows)?;
        std::fs::write(path, json + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// The socket address of a loopback `http://host:port` URL. The admin token travels in
/// clear over plain HTTP, so anything but loopback is refused.
fn loopback_addr(url: &str) -> Result<SocketAddr, BoxError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("--url must start with http://")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("--url: cannot resolve {authority:?} (give host:port): {e}"))?
        .find(|a| a.ip().is_loopback())
        .ok_or(
            "--url must name a loopback address: the admin token would cross the network in clear",
        )?;
    Ok(addr)
}

/// Where the daemon under test runs.
#[derive(Debug)]
enum TargetMode {
    /// A fresh palyrad per scenario, in this process.
    InProcess,
    /// A running daemon given with `--url`.
    External {
        addr: SocketAddr,
        token: SecretString,
    },
}

/// The settings shared by every scenario of a run.
#[derive(Debug)]
struct Bench {
    clients: usize,
    duration: Duration,
    /// `scheduler-10k`: seconds of firing measured per side.
    scheduler_window: Duration,
    slices: u32,
    baseline: SocketAddr,
    target: TargetMode,
    root: PathBuf,
    fsync_per_s: f64,
    /// /proc/loadavg (1, 5, 15 min) before the run: other work on the machine shifts
    /// every figure, and this shows whether there was any.
    load_before: String,
}

impl Bench {
    /// session-check, login or handoff: alternating slices against the baseline.
    async fn http_scenario(&self, plan: Plan) -> Result<Row, BoxError> {
        // A fresh daemon per scenario, so sessions left by one do not weigh on the next.
        let (daemon, token) = match &self.target {
            TargetMode::InProcess => {
                let token = random_token();
                let max_live = match plan {
                    Plan::SessionCheck { sessions } => sessions.saturating_mul(2),
                    _ => 0,
                }
                // Logins during a run stay far below this, so no login pays for an
                // eviction and no seeded session is evicted.
                .max(1_000_000);
                let daemon = InProcessDaemon::start(&self.root, &token, max_live, |s| {
                    if plan == Plan::ObjectiveCreate {
                        // No objective of this scenario fires; should one, its call
                        // stays on loopback.
                        s.providers.openai.api_base_url = "http://127.0.0.1:9".into();
                    }
                })
                .await?;
                (Some(daemon), token)
            }
            TargetMode::External { token, .. } => (None, token.clone()),
        };
        let addr = match (&daemon, &self.target) {
            (Some(d), _) => d.addr,
            (None, TargetMode::External { addr, .. }) => *addr,
            (None, TargetMode::InProcess) => return Err("no daemon to target".into()),
        };
        let login_body =
            Bytes::from(serde_json::json!({ "admin_token": token.expose() }).to_string());
        let bearer = bearer_header(&token)?;
        let mut notes = Vec::new();
        let (work, requests_per_iteration, writes_per_iteration) = match plan {
            Plan::SessionCheck { sessions } => {
                let seed = (sessions - 1) as u64;
                if seed > 0 {
                    eprintln!("  seeding {seed} sessions by concurrent logins");
                    let login = Arc::new(Work::Login {
                        body: login_body.clone(),
                    });
                    let seeded = drive(addr, &login, self.clients, Limit::Count(seed)).await?;
                    if seeded.errors > 0 {
                        notes.push(format!("{} seeding logins failed", seeded.errors));
                    }
                }
                // The last login, so that it is the newest session and never evicted.
                let cookie = login_cookie(addr, &login_body).await?;
                notes.push(format!("{sessions} live session(s), one cookie"));
                (Work::SessionCheck { cookie }, 1, 0)
            }
            Plan::Login => (Work::Login { body: login_body }, 1, 1),
            Plan::Handoff => {
                notes.push(
                    "rps = iterations/s; 1 iteration = mint (bearer, 200) + consume (303) = 2 requests, 2 durable writes"
                        .into(),
                );
                (Work::Handoff { bearer }, 2, 2)
            }
            Plan::ProfileList => {
                eprintln!("  seeding {LIST_PROFILES} API-key profiles");
                let create = Arc::new(Work::create_profiles(bearer.clone(), "p"));
                let seeded = drive(
                    addr,
                    &create,
                    self.clients,
                    Limit::Count(LIST_PROFILES as u64),
                )
                .await?;
                if seeded.errors > 0 {
                    notes.push(format!("{} seeding creates failed", seeded.errors));
                }
                let path = format!("{PROFILES_PATH}?limit={LIST_PAGE}");
                let (items, bytes) = list_page(addr, &path, &bearer).await?;
                notes.push(format!(
                    "{} profiles seeded; one page of {items} ({bytes} bytes of JSON)",
                    seeded.ok
                ));
                (Work::ListProfiles { bearer, path }, 1, 0)
            }
            Plan::ProfileCreate => {
                notes.push(
                    "1 iteration = 1 new API-key profile (validate false): a durable write with the key sealed in the vault"
                        .into(),
                );
                (Work::create_profiles(bearer, "c"), 1, 1)
            }
            Plan::ObjectiveCreate => {
                create_agent(addr, &bearer).await?;
                notes.push(format!(
                    "1 iteration = 1 new active standing order with the schedule `{FAR_SCHEDULE}` (UTC, never due during the run): a durable write and a scheduler entry"
                ));
                (
                    Work::create_objectives(bearer, "c", FAR_SCHEDULE.into()),
                    1,
                    1,
                )
            }
            Plan::Rss | Plan::RssProfiles | Plan::Refresh | Plan::Scheduler { .. } => {
                return Err(format!("{} is not an HTTP scenario", plan.name()).into());
            }
        };
        let writer = daemon.as_ref().map(|d| d.writer.clone());
        let probe_fsync = writes_per_iteration > 0;
        let cmp = self
            .compare(addr, &Arc::new(work), writer.as_ref(), probe_fsync)
            .await?;
        if let Some(daemon) = daemon {
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

    /// Baseline and scenario in alternating slices: drift (CPU frequency, page cache,
    /// the other side's leftovers) then weighs on both sides alike.
    /// With `probe_fsync`, an fsync probe runs after each pair of slices, so the write
    /// scenario is compared with the disk's rate of the same minutes.
    async fn compare(
        &self,
        target: SocketAddr,
        work: &Arc<Work>,
        writer: Option<&Writer>,
        probe_fsync: bool,
    ) -> Result<Comparison, BoxError> {
        let baseline_work = Arc::new(Work::Baseline);
        drive(
            self.baseline,
            &baseline_work,
            self.clients,
            Limit::For(WARMUP),
        )
        .await?;
        drive(target, work, self.clients, Limit::For(WARMUP)).await?;
        let slice = self.duration / self.slices;
        let mut cmp = Comparison::default();
        for _ in 0..self.slices {
            let base = drive(
                self.baseline,
                &baseline_work,
                self.clients,
                Limit::For(slice),
            )
            .await?;
            cmp.baseline.absorb(base);
            let before = writer.map(writer_counts);
            let scen = drive(target, work, self.clients, Limit::For(slice)).await?;
            cmp.scenario.absorb(scen);
            if let (Some(w), Some((commits, writes))) = (writer, before) {
                let (commits_after, writes_after) = writer_counts(w);
                cmp.commits += commits_after - commits;
                cmp.writes += writes_after - writes;
            }
            if probe_fsync {
                let probe = fsync_probe(self.root.clone(), FSYNC_PROBE / self.slices).await?;
                cmp.fsync.syncs += probe.syncs;
                cmp.fsync.elapsed += probe.elapsed;
            }
        }
        cmp.baseline.finish();
        cmp.scenario.finish();
        Ok(cmp)
    }

    /// Resident memory of the release palyrad binary, idle and after 10,000 logins.
    async fn rss(&self) -> Result<Row, BoxError> {
        let mut child = ChildDaemon::spawn(&self.root).await?;
        let idle = vm_rss_mib(child.pid())?;
        let login = Arc::new(Work::Login {
            body: Bytes::from(
                serde_json::json!({ "admin_token": child.token.expose() }).to_string(),
            ),
        });
        let logins = drive(child.addr, &login, self.clients, Limit::Count(RSS_LOGINS)).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let loaded = vm_rss_mib(child.pid())?;
        let stopped = child.stop().await;

        let mut notes = vec![format!(
            "release palyrad: idle {idle:.1} MiB, after {RSS_LOGINS} logins {loaded:.1} MiB ({:.0} logins/s, info logging to a file)",
            logins.ok as f64 / logins.elapsed.as_secs_f64()
        )];
        if !stopped.is_empty() {
            notes.push(stopped);
        }
        // rps, ratio and latencies stay 0: this row is about memory.
        Ok(Row {
            errors: logins.errors,
            rss_idle_mib: Some(round(idle, 2)),
            rss_loaded_mib: Some(round(loaded, 2)),
            notes: notes.join("; "),
            ..Row::new(Plan::Rss, self)
        })
    }

    /// Resident memory of the release palyrad binary, idle and after creating 10,000
    /// API-key profiles, with a reading after the first 1,000: growth from 1,000 to
    /// 10,000 leaves out one-off costs (connection buffers, allocator arenas, the first
    /// pages of the B-tree and of the maps).
    async fn rss_profiles(&self) -> Result<Row, BoxError> {
        let mut child = ChildDaemon::spawn(&self.root).await?;
        let idle = vm_rss_mib(child.pid())?;
        let create = Arc::new(Work::create_profiles(bearer_header(&child.token)?, "p"));
        let first = drive(
            child.addr,
            &create,
            self.clients,
            Limit::Count(RSS_PROFILES_FIRST),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after_first = vm_rss_mib(child.pid())?;
        let rest = drive(
            child.addr,
            &create,
            self.clients,
            Limit::Count(RSS_PROFILES - RSS_PROFILES_FIRST),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let loaded = vm_rss_mib(child.pid())?;
        let (listed, _) = list_page(
            child.addr,
            &format!("{PROFILES_PATH}?limit=1"),
            &bearer_header(&child.token)?,
        )
        .await?;
        let stopped = child.stop().await;

        let created = first.ok + rest.ok;
        let per_profile_kib = (loaded - idle) * 1024.0 / RSS_PROFILES as f64;
        let marginal_kib =
            (loaded - after_first) * 1024.0 / (RSS_PROFILES - RSS_PROFILES_FIRST) as f64;
        let secs = first.elapsed.as_secs_f64() + rest.elapsed.as_secs_f64();
        let mut notes = vec![format!(
            "release palyrad: idle {idle:.1} MiB, after {RSS_PROFILES_FIRST} profiles {after_first:.1} MiB, after {created} profiles {loaded:.1} MiB: {per_profile_kib:.2} KiB/profile over idle, {marginal_kib:.2} KiB/profile from {RSS_PROFILES_FIRST} to {RSS_PROFILES} ({:.0} creates/s, info logging to a file)",
            created as f64 / secs
        )];
        if listed == 0 {
            notes.push("the profile list came back empty".into());
        }
        if !stopped.is_empty() {
            notes.push(stopped);
        }
        Ok(Row {
            errors: first.errors + rest.errors,
            profiles: Some(created as usize),
            rss_idle_mib: Some(round(idle, 2)),
            rss_loaded_mib: Some(round(loaded, 2)),
            rss_first_mib: Some(round(after_first, 2)),
            rss_per_profile_kib: Some(round(per_profile_kib, 3)),
            rss_marginal_per_profile_kib: Some(round(marginal_kib, 3)),
            notes: notes.join("; "),
            ..Row::new(Plan::RssProfiles, self)
        })
    }
}

/// The release palyrad binary as a child process with a generated admin token, on a
/// temporary data dir, logging at info to a file; killed if dropped before `stop`.
struct ChildDaemon {
    child: ChildGuard,
    addr: SocketAddr,
    token: SecretString,
    _dir: TempDir,
}

impl ChildDaemon {
    async fn spawn(root: &Path) -> Result<Self, BoxError> {
        let exe = std::env::current_exe()?;
        let palyrad = exe.with_file_name("palyrad");
        if !palyrad.is_file() {
            return Err(format!(
                "{} not found: run `cargo build --release --bins` first",
                palyrad.display()
            )
            .into());
        }
        let dir = tempfile::Builder::new().prefix("rss-").tempdir_in(root)?;
        let token = random_token();
        // Bind then release a port: the daemon takes it a moment later.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log_path = dir.path().join("palyrad.log");
        let log = std::fs::File::create(&log_path)?;
        // A clean environment: no PALYRA_* of the caller changes the daemon measured.
        let child = Command::new(&palyrad)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--bind")
            .arg(addr.to_string())
            .env_clear()
            .env("PALYRA_ADMIN_TOKEN", token.expose())
            // As in-process: the limiter runs, with a quota the load never reaches.
            .env("PALYRA_RATE_LIMIT__LOOPBACK_PER_S", "100000000")
            .env("PALYRA_RATE_LIMIT__LOOPBACK_BURST", "100000000")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", palyrad.display()))?;
        let mut child = ChildGuard(child);
        if let Err(e) = wait_ready(addr, &mut child.0, Duration::from_secs(15)).await {
            let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(10).collect();
            for line in tail.into_iter().rev() {
                eprintln!("  palyrad: {line}");
            }
            return Err(e);
        }
        // Let start-up allocations settle before the idle reading.
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(Self {
            child,
            addr,
            token,
            _dir: dir,
        })
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// SIGTERM and wait; a note when the stop was not clean.
    async fn stop(&mut self) -> String {
        terminate(&mut self.child.0).await
    }
}

/// How one attempt of `refresh-10k` went.
enum RefreshAttempt {
    Measured(Box<Row>),
    /// A refresh started before seeding had finished: the due window was set too
    /// early for this machine. Carries how long the sign-in callbacks took.
    TooEarly {
        callbacks: Duration,
    },
}

impl Bench {
    /// `refresh-10k`: 10,000 OAuth profiles signed in through the real flow against the
    /// fake token endpoint, with expiries that make them all due within about one
    /// second a few seconds after seeding; then the background refresher's burst.
    async fn refresh(&self) -> Result<Row, BoxError> {
        let mut lead_in = None;
        for attempt in 1..=3 {
            match self.refresh_attempt(lead_in).await? {
                RefreshAttempt::Measured(row) => {
                    let mut row = *row;
                    if attempt > 1 {
                        row.notes.push_str(&format!(
                            "; attempt {attempt}: an earlier attempt set the due window before seeding had finished"
                        ));
                    }
                    return Ok(row);
                }
                RefreshAttempt::TooEarly { callbacks } => {
                    eprintln!(
                        "  a refresh started before seeding finished (callbacks took {:.1} s); again with a later due window",
                        callbacks.as_secs_f64()
                    );
                    lead_in = Some(callbacks * 2 + Duration::from_secs(3));
                }
            }
        }
        Err("refresh-10k: refreshes kept starting before seeding finished".into())
    }

    /// One run of `refresh-10k` on a fresh daemon and a fresh fake. `lead_in` is how
    /// long after the start of the callbacks the due window opens; by default it is
    /// estimated from the bootstraps.
    async fn refresh_attempt(&self, lead_in: Option<Duration>) -> Result<RefreshAttempt, BoxError> {
        let n = REFRESH_PROFILES;
        let fake = FakeOAuth::start(REFRESH_LEAD_S)?;
        let token = random_token();
        let base = format!("http://{}", fake.addr);
        let daemon = InProcessDaemon::start(&self.root, &token, 1_000_000, move |s| {
            s.providers.custom.insert(
                BENCH_PROVIDER
                    .strip_prefix("custom:")
                    .unwrap_or(BENCH_PROVIDER)
                    .to_owned(),
                ProviderConfig {
                    api_base_url: base.clone(),
                    authorization_endpoint: Some(format!("{base}/authorize")),
                    token_endpoint: Some(format!("{base}/token")),
                    revocation_endpoint: None,
                    client_id: Some("palyra-bench".into()),
                    scopes: vec!["offline_access".into()],
                    validation: Validation::None,
                    backoff_base_ms: 15_000,
                    backoff_cap_ms: 300_000,
                },
            );
            s.oauth.refresh_lead_s = REFRESH_LEAD_S;
        })
        .await?;
        let cap = Settings::defaults().oauth.max_concurrent_refreshes;
        let bearer = bearer_header(&token)?;
        let addr = daemon.addr;

        eprintln!("  signing in {n} OAuth profiles: bootstraps");
        let (paths, bootstrap_errors, bootstraps) =
            bootstrap_all(addr, &bearer, n, self.clients).await?;
        if paths.is_empty() {
            return Err("refresh-10k: no bootstrap succeeded".into());
        }
        // The callbacks cost a code exchange and a durable write each on top of what a
        // bootstrap costs: the window opens well after they should have finished.
        let lead_in = lead_in.unwrap_or_else(|| {
            (bootstraps * 3 + Duration::from_secs(3)).max(Duration::from_secs(5))
        });
        let callbacks_start = Instant::now();
        fake.state
            .open_due_window(unix_ms() + i64::try_from(lead_in.as_millis())?);
        eprintln!(
            "  callbacks; refreshes fall due from {:.1} s after their start",
            lead_in.as_secs_f64()
        );
        let paths = Arc::new(paths);
        let (signed_in, callback_errors, callbacks) =
            callbacks_all(addr, &paths, self.clients).await?;
        let seeded_at = Instant::now();
        let stats = daemon.refresher.stats();
        if fake.state.refreshes.load(Ordering::SeqCst) > 0
            || stats.completed.load(Ordering::SeqCst) > 0
        {
            daemon.stop().await?;
            fake.stop();
            return Ok(RefreshAttempt::TooEarly { callbacks });
        }
        let seed_errors = bootstrap_errors + callback_errors;
        let expected = signed_in;
        let (commits_before, writes_before) = writer_counts(&daemon.writer);
        let threads_before = thread_cpu_ticks();

        eprintln!("  waiting for the refresh burst");
        let wait_limit =
            lead_in.saturating_sub(callbacks_start.elapsed()) + Duration::from_secs(60);
        let done_at = loop {
            if stats.completed.load(Ordering::SeqCst) >= expected {
                break Some(Instant::now());
            }
            if seeded_at.elapsed() > wait_limit {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let completed = stats.completed.load(Ordering::SeqCst);
        let threads_after = thread_cpu_ticks();
        let (commits_after, writes_after) = writer_counts(&daemon.writer);
        let peak = stats.peak_in_flight.load(Ordering::SeqCst);
        let first_refresh = fake.state.first_refresh();
        let last_grant = fake.state.last_refresh();

        // Idle: the refresher has nothing due for an hour.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let cpu_before = process_cpu_ticks()?;
        let idle_started = Instant::now();
        tokio::time::sleep(IDLE_CPU_WINDOW).await;
        let cpu_after = process_cpu_ticks()?;
        let idle_secs = idle_started.elapsed().as_secs_f64();
        let ticks_per_s = clock_ticks_per_second();
        let idle_ticks = cpu_after.saturating_sub(cpu_before);
        let idle_cpu_pct = idle_ticks as f64 / ticks_per_s / idle_secs * 100.0;
        // One tick more or less, in % of one core over the window.
        let idle_resolution_pct = 100.0 / ticks_per_s / idle_secs;

        let health = auth_health_counts(addr, &bearer).await?;
        let ok_profiles = health.get("ok").copied().unwrap_or(0);
        let grants = fake.state.refreshes.load(Ordering::SeqCst);
        let codes = fake.state.codes.load(Ordering::SeqCst);
        let refused = fake.state.refused.load(Ordering::SeqCst);
        let connections = fake.state.connections.load(Ordering::SeqCst);
        let (due_min, due_max) = fake.state.due_range();
        daemon.stop().await?;
        fake.stop();

        let mut row = Row::new(Plan::Refresh, self);
        let mut notes = vec![format!(
            "{signed_in} OAuth profiles signed in through bootstrap + callback in {:.1} s ({:.0}/s; bootstraps {:.1} s, callbacks {:.1} s), {codes} codes redeemed at the fake",
            bootstraps.as_secs_f64() + callbacks.as_secs_f64(),
            signed_in as f64 / (bootstraps + callbacks).as_secs_f64(),
            bootstraps.as_secs_f64(),
            callbacks.as_secs_f64(),
        )];
        if seed_errors > 0 {
            notes.push(format!("{seed_errors} sign-ins failed"));
        }
        let due_spread_ms = due_max - due_min;
        notes.push(format!(
            "due times spread over {due_spread_ms} ms, from {:.1} s after seeding finished (lead {REFRESH_LEAD_S} s)",
            (due_min - unix_ms_at(seeded_at)) as f64 / 1000.0
        ));
        row.profiles = Some(signed_in as usize);
        row.refreshed = Some(completed);
        row.seed_s = Some(round((bootstraps + callbacks).as_secs_f64(), 2));
        row.due_spread_ms = Some(due_spread_ms);
        row.peak_in_flight = Some(peak);
        row.max_in_flight = Some(cap);
        row.token_endpoint_refreshes = Some(grants);
        match (first_refresh, done_at) {
            (Some(first), Some(done)) => {
                let wall = done.saturating_duration_since(first).as_secs_f64();
                let per_s = completed as f64 / wall;
                row.refresh_wall_s = Some(round(wall, 3));
                row.refreshes_per_s = Some(round(per_s, 1));
                let after_due = unix_ms_at(done) - due_max;
                notes.push(format!(
                    "first to {completed}th refresh in {wall:.2} s ({per_s:.0}/s), the last done {after_due} ms after the last due time; peak {peak} in flight (cap {cap})"
                ));
                if let Some(last) = last_grant {
                    notes.push(format!(
                        "last refresh grant at the fake {:.2} s after the first",
                        last.saturating_duration_since(first).as_secs_f64()
                    ));
                }
                // Busy threads over the burst (from the end of seeding, which was idle
                // until the first refresh, to the last refresh), in % of one core.
                let busy: Vec<String> = threads_after
                    .iter()
                    .filter_map(|(name, after)| {
                        let ticks =
                            after.saturating_sub(threads_before.get(name).copied().unwrap_or(0));
                        (ticks > 0).then_some((name, ticks))
                    })
                    .map(|(name, ticks)| {
                        format!("{name} {:.0}%", ticks as f64 / ticks_per_s / wall * 100.0)
                    })
                    .collect();
                if !busy.is_empty() {
                    notes.push(format!(
                        "CPU by thread over the burst, % of one core: {}",
                        busy.join(", ")
                    ));
                }
                let commits = commits_after - commits_before;
                let writes = writes_after - writes_before;
                if commits > 0 {
                    let per_commit = writes as f64 / commits as f64;
                    row.writes_per_commit = Some(round(per_commit, 2));
                    row.commits_per_s = Some(round(commits as f64 / wall, 1));
                    notes.push(format!(
                        "group commit: {per_commit:.1} writes/commit, {:.0} commits/s",
                        commits as f64 / wall
                    ));
                }
            }
            _ => notes.push(format!(
                "only {completed} of {expected} refreshes completed within {} s of seeding",
                wait_limit.as_secs()
            )),
        }
        notes.push(format!(
            "the daemon opened {connections} TCP connections to the token endpoint for {} token requests",
            codes + grants + refused
        ));
        if grants != completed || refused > 0 {
            notes.push(format!(
                "the fake saw {grants} refresh grants and refused {refused} requests"
            ));
        }
        row.idle_cpu_pct = Some(round(idle_cpu_pct, 2));
        row.idle_cpu_ticks = Some(idle_ticks);
        notes.push(format!(
            "idle CPU {idle_cpu_pct:.2}% of one core over {idle_secs:.0} s ({idle_ticks} ticks of utime+stime at {ticks_per_s:.0}/s in /proc/self/stat, so +-{idle_resolution_pct:.2}%; the whole bench process: the daemon plus the idle runtimes of the bench, the baseline and the fake)"
        ));
        row.errors = expected.saturating_sub(ok_profiles);
        if row.errors > 0 {
            notes.push(format!(
                "{} of {expected} profiles not ok after the burst: {health:?}",
                row.errors
            ));
        }
        row.notes = notes.join("; ");
        Ok(RefreshAttempt::Measured(Box::new(row)))
    }
}

/// The boundaries of `scheduler-10k` that are measured, in Unix milliseconds:
/// `boundaries` of them, `every_ms` apart, from `first_ms`. `*/N * * * * *` in UTC falls
/// due on Unix seconds that are multiples of N, as N divides 60.
#[derive(Debug, Clone, Copy)]
struct Window {
    first_ms: i64,
    every_ms: i64,
    boundaries: i64,
}

impl Window {
    /// The window after `ready_ms`: the first boundary after it is a warm-up, the
    /// window starts at the next one and covers `length` in whole periods.
    fn after(ready_ms: i64, every_s: u32, length: Duration) -> Self {
        let every_ms = i64::from(every_s) * 1000;
        let warm_up = (ready_ms.div_euclid(every_ms) + 1) * every_ms;
        let length_ms = i64::try_from(length.as_millis()).unwrap_or(i64::MAX / 4);
        Self {
            first_ms: warm_up + every_ms,
            every_ms,
            boundaries: ((length_ms + every_ms - 1) / every_ms).max(1),
        }
    }

    /// The boundary after the window's last one.
    fn end_ms(self) -> i64 {
        self.first_ms + self.boundaries * self.every_ms
    }

    fn seconds(self) -> f64 {
        (self.boundaries * self.every_ms) as f64 / 1000.0
    }

    /// Whether `ms` is one of the window's boundaries.
    fn is_boundary(self, ms: i64) -> bool {
        ms >= self.first_ms && ms < self.end_ms() && (ms - self.first_ms) % self.every_ms == 0
    }

    /// The boundary at or before `ns` (Unix nanoseconds), in Unix milliseconds.
    fn floor_ms(self, ns: i64) -> i64 {
        ns.div_euclid(1_000_000).div_euclid(self.every_ms) * self.every_ms
    }

    fn describe(self) -> String {
        let at = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .map_or_else(|| ms.to_string(), |t| t.format("%H:%M:%S").to_string())
        };
        format!(
            "{} boundaries {} s apart, {} to {} UTC",
            self.boundaries,
            self.every_ms / 1000,
            at(self.first_ms),
            at(self.end_ms() - self.every_ms)
        )
    }
}

/// Sleeps until the wall clock reads `target_ms` (Unix milliseconds).
async fn sleep_until_unix_ms(target_ms: i64) {
    if let Ok(wait) = u64::try_from(target_ms - unix_ms()) {
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

/// Wall-clock time in Unix nanoseconds.
fn unix_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The number of a bench objective id (`s00042` is 42).
fn objective_number(id: &str) -> Option<u32> {
    id.strip_prefix(SCHEDULER_PREFIX)?.parse().ok()
}

/// CPU time of the process and of each thread name at one instant.
struct CpuSnapshot {
    at: Instant,
    process: u64,
    threads: std::collections::BTreeMap<String, u64>,
}

impl CpuSnapshot {
    fn take() -> Result<Self, BoxError> {
        Ok(Self {
            at: Instant::now(),
            process: process_cpu_ticks()?,
            threads: thread_cpu_ticks(),
        })
    }

    /// CPU used from `before` to this snapshot, in % of one core.
    fn since(&self, before: &CpuSnapshot) -> CpuUse {
        let secs = self.at.duration_since(before.at).as_secs_f64().max(1e-9);
        let ticks_per_s = clock_ticks_per_second();
        let pct = |ticks: u64| ticks as f64 / ticks_per_s / secs * 100.0;
        let by_thread = self
            .threads
            .iter()
            .filter_map(|(name, after)| {
                let ticks = after.saturating_sub(before.threads.get(name).copied().unwrap_or(0));
                (ticks > 0).then(|| (name.clone(), pct(ticks)))
            })
            .collect();
        CpuUse {
            secs,
            process_pct: pct(self.process.saturating_sub(before.process)),
            by_thread,
        }
    }
}

/// CPU over a window, in % of one core.
struct CpuUse {
    secs: f64,
    process_pct: f64,
    by_thread: Vec<(String, f64)>,
}

impl CpuUse {
    /// The share of the threads whose names `side` accepts.
    fn side_pct(&self, side: impl Fn(&str) -> bool) -> f64 {
        self.by_thread
            .iter()
            .filter(|(name, _)| side(name))
            .map(|(_, pct)| pct)
            .sum()
    }

    fn describe(&self) -> String {
        self.by_thread
            .iter()
            .map(|(name, pct)| format!("{name} {pct:.1}%"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The daemon's threads in this process: `palyrad` (the actix System: the actors and
/// their timers), `palyra-worker` (HTTP, provider calls), `palyra-writer` (redb).
fn is_daemon_thread(name: &str) -> bool {
    name.starts_with("palyra") && name != "palyra-bench"
}

/// The peer scheduler's threads: `tcs` and its runtime's `tcs-worker`s.
fn is_peer_thread(name: &str) -> bool {
    name.starts_with("tcs")
}

/// What became of the firings due in a window.
#[derive(Debug, Default)]
struct FiringReport {
    /// Objectives (jobs) x boundaries.
    expected: u64,
    /// Firings whose provider call arrived at the fake (peer: whose job started).
    received: u64,
    /// A boundary of an objective with no run record at all.
    no_run: u64,
    skipped_overlap: u64,
    skipped_budget: u64,
    failed: u64,
    /// Run records the daemon itself marked `missed`.
    missed_runs: u64,
    /// Any other run record with no call at the fake (for example still `running`
    /// when the daemon was stopped).
    not_called: u64,
    /// Run records (peer: job starts) beyond the first for one objective and boundary.
    duplicates: u64,
    /// Objectives whose calls and provider-calling runs did not pair up one to one.
    unpaired_objectives: u64,
    /// Calls at the fake that named no bench objective.
    unattributed_calls: u64,
    /// Active bench objectives found in the database (peer: jobs).
    population: u64,
    /// Arrival (peer: job start) minus boundary, of each received firing; sorted.
    lateness_ns: Vec<u64>,
    /// The daemon only: the run record's `started_at` (stamped before its durable
    /// write, millisecond resolution) minus the boundary; sorted.
    record_lateness_ns: Vec<u64>,
    /// The daemon only: each window run's `scheduled_for` minus its boundary; sorted.
    schedule_offset_ns: Vec<u64>,
    /// The daemon only: arrival minus the run's `scheduled_for`, of each received
    /// firing (the lateness without the offset above); sorted.
    after_scheduled_ns: Vec<u64>,
}

impl FiringReport {
    fn missed(&self) -> u64 {
        self.expected.saturating_sub(self.received)
    }

    fn finish(&mut self) {
        self.lateness_ns.sort_unstable();
        self.record_lateness_ns.sort_unstable();
        self.schedule_offset_ns.sort_unstable();
        self.after_scheduled_ns.sort_unstable();
    }
}

/// The daemon's firings in `window`, from its run records and the calls the fake saw.
///
/// Each objective's runs are sequential (overlap `forbid`: a run starts only after the
/// previous one finished), so its provider calls arrive in the order of its runs: the
/// k-th call pairs with the k-th run that called the provider. A firing of the window
/// is received when its run's call arrived.
fn daemon_firings(
    window: Window,
    objective_ids: &[String],
    runs: Vec<RunRecord>,
    calls: Vec<(u32, i64)>,
) -> FiringReport {
    use std::collections::HashMap;
    let mut report = FiringReport {
        population: objective_ids.len() as u64,
        ..FiringReport::default()
    };
    let mut calls_by: HashMap<u32, Vec<i64>> = HashMap::new();
    for (n, at) in calls {
        calls_by.entry(n).or_default().push(at);
    }
    let mut runs_by: HashMap<String, Vec<(u64, RunRecord)>> = HashMap::new();
    for run in runs {
        let seq = run
            .run_id
            .rsplit_once('-')
            .and_then(|(_, seq)| seq.parse().ok())
            .unwrap_or(0);
        runs_by
            .entry(run.objective_id.clone())
            .or_default()
            .push((seq, run));
    }
    for id in objective_ids {
        let mut arrivals = objective_number(id)
            .and_then(|n| calls_by.remove(&n))
            .unwrap_or_default();
        arrivals.sort_unstable();
        let mut runs = runs_by.remove(id).unwrap_or_default();
        runs.sort_unstable_by_key(|(seq, _)| *seq);
        // Pair calls with the runs that called the provider, in order.
        let mut arrival_of: HashMap<u64, i64> = HashMap::new();
        let mut next = 0;
        let mut paired = true;
        for (seq, run) in &runs {
            let called = match run.status {
                RunStatus::Succeeded | RunStatus::Running => true,
                // Errors after the request was sent; others come before any call.
                RunStatus::Failed => run.error.as_deref().is_some_and(|e| {
                    e.starts_with("the provider answered")
                        || e.starts_with("the provider did not answer")
                }),
                _ => false,
            };
            if !called {
                continue;
            }
            match arrivals.get(next) {
                Some(at) => {
                    arrival_of.insert(*seq, *at);
                    next += 1;
                }
                // A run still going at the stop may not have called yet.
                None if run.status == RunStatus::Running => {}
                None => paired = false,
            }
        }
        if !paired || next != arrivals.len() {
            report.unpaired_objectives += 1;
        }
        let mut seen = std::collections::HashSet::new();
        for (seq, run) in &runs {
            if run.trigger != RunTrigger::Schedule {
                continue;
            }
            let Some(scheduled_ms) = run.scheduled_for.map(|t| t.timestamp_millis()) else {
                continue;
            };
            // The boundary a firing belongs to is the one at or before its
            // `scheduled_for`, which need not be on the boundary itself.
            let boundary = window.floor_ms(scheduled_ms.saturating_mul(1_000_000));
            if !window.is_boundary(boundary) {
                continue;
            }
            report
                .schedule_offset_ns
                .push(u64::try_from(scheduled_ms - boundary).unwrap_or(0) * 1_000_000);
            if !seen.insert(boundary) {
                report.duplicates += 1;
                continue;
            }
            let boundary_ns = boundary.saturating_mul(1_000_000);
            match arrival_of.get(seq) {
                Some(at) => {
                    report.received += 1;
                    report
                        .lateness_ns
                        .push(u64::try_from(at - boundary_ns).unwrap_or(0));
                    report.after_scheduled_ns.push(
                        u64::try_from(at - scheduled_ms.saturating_mul(1_000_000)).unwrap_or(0),
                    );
                    if let Some(started) = run.started_at {
                        let ms = started.timestamp_millis() - boundary;
                        report
                            .record_lateness_ns
                            .push(u64::try_from(ms).unwrap_or(0) * 1_000_000);
                    }
                }
                None => match run.status {
                    RunStatus::SkippedOverlap => report.skipped_overlap += 1,
                    RunStatus::SkippedBudget => report.skipped_budget += 1,
                    RunStatus::Failed => report.failed += 1,
                    RunStatus::Missed => report.missed_runs += 1,
                    _ => report.not_called += 1,
                },
            }
        }
        let boundaries = u64::try_from(window.boundaries).unwrap_or(0);
        report.expected += boundaries;
        report.no_run += boundaries.saturating_sub(seen.len() as u64);
    }
    report.unattributed_calls = calls_by.values().map(|v| v.len() as u64).sum();
    report.finish();
    report
}

/// The peer's firings in `window`: each job start belongs to the boundary at or before
/// it (the peer only fires at or after a boundary, and far less than a period late).
fn peer_firings(window: Window, jobs: usize, starts: Vec<(u32, i64)>) -> FiringReport {
    let mut report = FiringReport {
        population: jobs as u64,
        expected: jobs as u64 * u64::try_from(window.boundaries).unwrap_or(0),
        ..FiringReport::default()
    };
    let mut seen = std::collections::HashSet::new();
    for (job, at) in starts {
        let boundary = window.floor_ms(at);
        if !window.is_boundary(boundary) {
            continue;
        }
        if !seen.insert((job, boundary)) {
            report.duplicates += 1;
            continue;
        }
        report.received += 1;
        report
            .lateness_ns
            .push(u64::try_from(at - boundary.saturating_mul(1_000_000)).unwrap_or(0));
    }
    report.finish();
    report
}

/// The bench objectives in the data dir of a stopped daemon (ids of the active ones,
/// and how many are not active) and every run record.
fn read_objectives_and_runs(
    data_dir: &Path,
) -> Result<(Vec<String>, u64, Vec<RunRecord>), BoxError> {
    let storage = palyra_storage::Storage::open(data_dir)?;
    let mut ids = Vec::new();
    let mut inactive = 0;
    for (_, value) in storage.load(Table::Objectives)? {
        let objective: ObjectiveRecord = decode_record(&value)?;
        if objective_number(&objective.objective_id).is_none() {
            continue;
        }
        if objective.state == ObjectiveState::Active {
            ids.push(objective.objective_id);
        } else {
            inactive += 1;
        }
    }
    let mut runs = Vec::new();
    for (_, value) in storage.load(Table::Runs)? {
        runs.push(decode_record::<RunRecord>(&value)?);
    }
    Ok((ids, inactive, runs))
}

/// What a scheduler row is built from, beside the firings.
struct SchedulerMeasure {
    plan: Plan,
    implementation: String,
    window: Window,
    cpu: CpuUse,
    side_cpu_pct: f64,
    rss_before: f64,
    rss_end: f64,
}

impl Bench {
    /// `scheduler-10k`: the daemon's scheduler, then tokio-cron-scheduler on the same
    /// job set (one after the other, so neither takes CPU from the other).
    async fn scheduler(&self, objectives: usize, every_s: u32) -> Result<Vec<Row>, BoxError> {
        let ours = self.scheduler_daemon(objectives, every_s).await?;
        let peer = self.scheduler_peer(objectives, every_s).await?;
        Ok(vec![ours, peer])
    }

    fn scheduler_row(&self, m: &SchedulerMeasure, report: &FiringReport) -> Row {
        let mut row = Row::new(m.plan, self);
        let lateness = &report.lateness_ns;
        let max_ms = lateness.last().map_or(0.0, |ns| *ns as f64 / 1e6);
        row.p50_ms = round(nearest_rank_ms(lateness, 0.50), 3);
        row.p99_ms = round(nearest_rank_ms(lateness, 0.99), 3);
        row.p999_ms = round(nearest_rank_ms(lateness, 0.999), 3);
        row.errors = report.missed();
        row.implementation = Some(m.implementation.clone());
        row.objectives = Some(usize::try_from(report.population).unwrap_or(0));
        row.every_s = Some(u32::try_from(m.window.every_ms / 1000).unwrap_or(0));
        row.window_s = Some(m.window.seconds());
        row.expected = Some(report.expected);
        row.received = Some(report.received);
        row.missed = Some(report.missed());
        row.lateness_p50_ms = Some(row.p50_ms);
        row.lateness_p99_ms = Some(row.p99_ms);
        row.lateness_max_ms = Some(round(max_ms, 3));
        row.cpu_pct = Some(round(m.cpu.process_pct, 1));
        row.side_cpu_pct = Some(round(m.side_cpu_pct, 1));
        row.rss_before_mib = Some(round(m.rss_before, 2));
        row.rss_mib = Some(round(m.rss_end, 2));
        row
    }

    /// The daemon's side of `scheduler-10k`.
    async fn scheduler_daemon(&self, n: usize, every_s: u32) -> Result<Row, BoxError> {
        let plan = Plan::Scheduler {
            objectives: n,
            every_s,
            peer: false,
        };
        let fake = FakeModel::start()?;
        let token = random_token();
        let base = format!("http://{}", fake.addr);
        let daemon = InProcessDaemon::start(&self.root, &token, 1_000_000, move |s| {
            s.providers.openai.api_base_url = base;
        })
        .await?;
        let addr = daemon.addr;
        let bearer = bearer_header(&token)?;
        create_agent(addr, &bearer).await?;
        let pid = std::process::id();
        let rss_before = vm_rss_mib(pid)?;
        let schedule = format!("*/{every_s} * * * * *");
        eprintln!("  creating {n} active standing orders on `{schedule}` (UTC)");
        let create = Arc::new(Work::create_objectives(
            bearer,
            SCHEDULER_PREFIX,
            schedule.clone(),
        ));
        let created = drive(addr, &create, self.clients, Limit::Count(n as u64)).await?;
        let window = Window::after(unix_ms(), every_s, self.scheduler_window);
        eprintln!(
            "  palyrad: measuring {} after one warm-up boundary",
            window.describe()
        );
        sleep_until_unix_ms(window.first_ms).await;
        let cpu_before = CpuSnapshot::take()?;
        let (commits_before, writes_before) = writer_counts(&daemon.writer);
        let connections_before = fake.state.connections.load(Ordering::SeqCst);
        sleep_until_unix_ms(window.end_ms()).await;
        let cpu = CpuSnapshot::take()?.since(&cpu_before);
        let (commits_after, writes_after) = writer_counts(&daemon.writer);
        let connections_window = fake.state.connections.load(Ordering::SeqCst) - connections_before;
        let rss_end = vm_rss_mib(pid)?;
        eprintln!(
            "  letting the window's calls arrive for {} s more",
            SCHEDULER_DRAIN.as_secs()
        );
        tokio::time::sleep(SCHEDULER_DRAIN).await;
        let dir = daemon.stop_keeping_dir().await?;
        let connections = fake.state.connections.load(Ordering::SeqCst);
        let calls = fake.state.log.take();
        let unreadable = fake.state.unreadable.load(Ordering::SeqCst);
        fake.stop();
        let data_dir = dir.path().join("data");
        let (ids, inactive, runs) =
            tokio::task::spawn_blocking(move || read_objectives_and_runs(&data_dir)).await??;
        drop(dir);
        let all_calls = calls.len();
        let report = daemon_firings(window, &ids, runs, calls);

        let measure = SchedulerMeasure {
            plan,
            implementation: "palyrad".into(),
            window,
            side_cpu_pct: cpu.side_pct(is_daemon_thread),
            cpu,
            rss_before,
            rss_end,
        };
        let mut row = self.scheduler_row(&measure, &report);
        let commits = commits_after - commits_before;
        let writes = writes_after - writes_before;
        let secs = measure.cpu.secs;
        if commits > 0 {
            row.writes_per_commit = Some(round(writes as f64 / commits as f64, 2));
            row.commits_per_s = Some(round(commits as f64 / secs, 1));
        }
        row.durable_writes_per_s = Some(round(writes as f64 / secs, 1));
        let mut notes = vec![format!(
            "{} of {n} objectives created in {:.1} s over {} connections ({} failed); {} active at the end",
            created.ok,
            created.elapsed.as_secs_f64(),
            self.clients,
            created.errors,
            ids.len()
        )];
        if inactive > 0 {
            notes.push(format!(
                "{inactive} bench objectives were not active at the end"
            ));
        }
        notes.push(format!(
            "window: {}; a firing counts as received when its provider call arrived before the daemon was stopped, {} s after the window",
            window.describe(),
            SCHEDULER_DRAIN.as_secs()
        ));
        notes.push(format!(
            "not received: {} without any run record, {} skipped_overlap, {} skipped_budget, {} failed, {} recorded as missed, {} other runs without a call at the stop; {} duplicate runs",
            report.no_run,
            report.skipped_overlap,
            report.skipped_budget,
            report.failed,
            report.missed_runs,
            report.not_called,
            report.duplicates
        ));
        if let Some(max) = report.schedule_offset_ns.last() {
            let offsets = &report.schedule_offset_ns;
            let off = offsets.iter().filter(|ns| **ns > 0).count();
            row.scheduled_offset_p50_ms = Some(round(nearest_rank_ms(offsets, 0.50), 3));
            row.scheduled_offset_max_ms = Some(round(*max as f64 / 1e6, 3));
            if off == 0 {
                notes.push(format!(
                    "every one of the {} window runs has its scheduled_for on its boundary",
                    offsets.len()
                ));
            } else {
                notes.push(format!(
                    "{off} of {} window runs have a scheduled_for after their boundary (p50 {:.0} ms, max {:.0} ms): the daemon did not schedule them on the boundary",
                    offsets.len(),
                    nearest_rank_ms(offsets, 0.50),
                    *max as f64 / 1e6
                ));
                if let Some(max) = report.after_scheduled_ns.last() {
                    let after = &report.after_scheduled_ns;
                    let max = *max as f64 / 1e6;
                    notes.push(format!(
                        "measured from scheduled_for instead of the boundary, the calls arrived p50 {:.1}, p99 {:.1}, max {max:.1} ms late",
                        nearest_rank_ms(after, 0.50),
                        nearest_rank_ms(after, 0.99)
                    ));
                }
            }
        }
        if let Some(max) = report.after_scheduled_ns.last() {
            let after = &report.after_scheduled_ns;
            row.after_scheduled_p50_ms = Some(round(nearest_rank_ms(after, 0.50), 3));
            row.after_scheduled_p99_ms = Some(round(nearest_rank_ms(after, 0.99), 3));
            row.after_scheduled_max_ms = Some(round(*max as f64 / 1e6, 3));
        }
        if !report.record_lateness_ns.is_empty() {
            let rec = &report.record_lateness_ns;
            notes.push(format!(
                "lateness is the call's arrival at the fake minus the boundary, so it includes the durable run write before the call; the run record was stamped (before that write, ms resolution) p50 {:.0}, p99 {:.0}, max {:.0} ms after the boundary",
                nearest_rank_ms(rec, 0.50),
                nearest_rank_ms(rec, 0.99),
                rec.last().map_or(0.0, |ns| *ns as f64 / 1e6)
            ));
        }
        notes.push(format!(
            "over the window: {writes} durable writes ({:.0}/s, {:.2} per firing received; {} commits, {:.1} writes per commit)",
            writes as f64 / secs,
            writes as f64 / report.received.max(1) as f64,
            commits,
            row.writes_per_commit.unwrap_or(0.0)
        ));
        notes.push(format!(
            "the fake received {all_calls} calls in all ({} named no bench objective, {unreadable} unreadable) over {connections} TCP connections, {connections_window} of them opened during the window",
            report.unattributed_calls
        ));
        if report.unpaired_objectives > 0 {
            notes.push(format!(
                "{} objectives' calls did not pair one to one with their runs",
                report.unpaired_objectives
            ));
        }
        let per_firing_us = |pct: f64| pct / 100.0 * secs * 1e6 / report.received.max(1) as f64;
        notes.push(format!(
            "CPU over the window, % of one core: process {:.1}, daemon threads {:.1} ({:.0} and {:.0} us of CPU per firing received); by thread: {}",
            measure.cpu.process_pct,
            measure.side_cpu_pct,
            per_firing_us(measure.cpu.process_pct),
            per_firing_us(measure.side_cpu_pct),
            measure.cpu.describe()
        ));
        notes.push(format!(
            "VmRSS of the bench process {rss_before:.1} MiB before creating the objectives, {rss_end:.1} MiB at the window's end: the in-process daemon with its objectives, run history and idle provider connections, the fake provider and the bench's log of every call, and the idle client and baseline runtimes"
        ));
        row.notes = notes.join("; ");
        Ok(row)
    }

    /// The peer's side of `scheduler-10k`: tokio-cron-scheduler with one job per
    /// objective on the same expression, each recording the instant it is called.
    async fn scheduler_peer(&self, n: usize, every_s: u32) -> Result<Row, BoxError> {
        let plan = Plan::Scheduler {
            objectives: n,
            every_s,
            peer: true,
        };
        let schedule = format!("*/{every_s} * * * * *");
        let pid = std::process::id();
        let rss_before = vm_rss_mib(pid)?;
        let log = Arc::new(CallLog::default());
        eprintln!("  {PEER_NAME}: adding {n} jobs on `{schedule}`");
        let (peer, ready) = PeerScheduler::start(n, schedule, Arc::clone(&log))?;
        let setup = match ready.await {
            Ok(Ok(setup)) => setup,
            Ok(Err(e)) => return Err(format!("{PEER_NAME} failed: {e}").into()),
            Err(_) => return Err(format!("{PEER_NAME}'s thread ended before it was ready").into()),
        };
        let window = Window::after(unix_ms(), every_s, self.scheduler_window);
        eprintln!(
            "  {PEER_NAME}: measuring {} after one warm-up boundary",
            window.describe()
        );
        sleep_until_unix_ms(window.first_ms).await;
        let cpu_before = CpuSnapshot::take()?;
        sleep_until_unix_ms(window.end_ms()).await;
        let cpu = CpuSnapshot::take()?.since(&cpu_before);
        let rss_end = vm_rss_mib(pid)?;
        tokio::time::sleep(PEER_DRAIN).await;
        let stopped = peer.stop().await;
        let starts = log.take();
        let report = peer_firings(window, n, starts);
        let measure = SchedulerMeasure {
            plan,
            implementation: PEER_NAME.into(),
            window,
            side_cpu_pct: cpu.side_pct(is_peer_thread),
            cpu,
            rss_before,
            rss_end,
        };
        let mut row = self.scheduler_row(&measure, &report);
        let mut notes = vec![
            format!(
                "{n} jobs (Job::new_async, each recording the instant it is called) added and the scheduler started in {:.1} s, on its own multi-thread runtime and thread",
                setup.as_secs_f64()
            ),
            format!(
                "window: {}; each job start belongs to the boundary at or before it; {} duplicate starts",
                window.describe(),
                report.duplicates
            ),
            format!(
                "CPU over the window, % of one core: process {:.1}, peer threads {:.1}; by thread: {}",
                measure.cpu.process_pct,
                measure.side_cpu_pct,
                measure.cpu.describe()
            ),
            format!(
                "VmRSS of the bench process {rss_before:.1} MiB before adding the jobs (it still holds what the daemon's side left), {rss_end:.1} MiB at the window's end"
            ),
        ];
        if !stopped.is_empty() {
            notes.push(stopped);
        }
        row.notes = notes.join("; ");
        Ok(row)
    }
}

/// Bootstraps `n` OAuth sign-ins (profiles `r00001`...) over `clients` connections and
/// returns the callback path (with `code=c` and the state) of each, the failures and
/// the time taken.
async fn bootstrap_all(
    addr: SocketAddr,
    bearer: &HeaderValue,
    n: usize,
    clients: usize,
) -> Result<(Vec<String>, u64, Duration), BoxError> {
    let path = format!("/console/v1/auth/providers/{BENCH_PROVIDER}/bootstrap");
    let next = Arc::new(AtomicU64::new(0));
    let mut connected = Vec::new();
    for _ in 0..clients.min(n) {
        connected.push(Client::connect(addr).await?);
    }
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for mut client in connected {
        let (next, bearer, path) = (Arc::clone(&next), bearer.clone(), path.clone());
        tasks.spawn(async move {
            let mut paths = Vec::new();
            let mut errors = 0_u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n as u64 {
                    break;
                }
                let body = format!(r#"{{"profile_name": "b", "profile_id": "r{:05}"}}"#, i + 1);
                let sent = async {
                    let request = client.post(
                        &path,
                        Some((header::AUTHORIZATION, &bearer)),
                        Bytes::from(body),
                    )?;
                    let response = client.send(request).await?;
                    Ok::<_, BoxError>(
                        (response.status() == StatusCode::OK)
                            .then(|| callback_path(response.body()))
                            .flatten(),
                    )
                };
                match tokio::time::timeout(REQUEST_TIMEOUT, sent).await {
                    Ok(Ok(Some(p))) => paths.push(p),
                    Ok(Ok(None)) => errors += 1,
                    Ok(Err(_)) | Err(_) => {
                        errors += 1;
                        client.sender = None;
                    }
                }
            }
            (paths, errors)
        });
    }
    let mut paths = Vec::with_capacity(n);
    let mut errors = 0;
    while let Some(joined) = tasks.join_next().await {
        let (p, e) = joined?;
        paths.extend(p);
        errors += e;
    }
    Ok((paths, errors, start.elapsed()))
}

/// The daemon's callback path for a bootstrap answer, as the provider would redirect
/// the browser to it: `{redirect_uri path}?code=c&state=STATE`.
fn callback_path(body: &Bytes) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let url = url::Url::parse(value.get("authorization_url")?.as_str()?).ok()?;
    let (mut state, mut redirect) = (None, None);
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "state" => state = Some(value.into_owned()),
            "redirect_uri" => redirect = Some(value.into_owned()),
            _ => {}
        }
    }
    let redirect = url::Url::parse(&redirect?).ok()?;
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("code", "c")
        .append_pair("state", &state?)
        .finish();
    Some(format!("{}?{query}", redirect.path()))
}

/// Follows every callback path (the browser's redirect back to the daemon) over
/// `clients` connections; 200 means signed in. Returns successes, failures, time.
async fn callbacks_all(
    addr: SocketAddr,
    paths: &Arc<Vec<String>>,
    clients: usize,
) -> Result<(u64, u64, Duration), BoxError> {
    let next = Arc::new(AtomicU64::new(0));
    let mut connected = Vec::new();
    for _ in 0..clients.min(paths.len()) {
        connected.push(Client::connect(addr).await?);
    }
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for mut client in connected {
        let (next, paths) = (Arc::clone(&next), Arc::clone(paths));
        tasks.spawn(async move {
            let (mut ok, mut errors) = (0_u64, 0_u64);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(path) = paths.get(i) else {
                    break;
                };
                let sent = async {
                    let response = client.send(client.get(path, None)?).await?;
                    Ok::<_, BoxError>(response.status() == StatusCode::OK)
                };
                match tokio::time::timeout(REQUEST_TIMEOUT, sent).await {
                    Ok(Ok(true)) => ok += 1,
                    Ok(Ok(false)) => errors += 1,
                    Ok(Err(_)) | Err(_) => {
                        errors += 1;
                        client.sender = None;
                    }
                }
            }
            (ok, errors)
        });
    }
    let (mut ok, mut errors) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        let (o, e) = joined?;
        ok += o;
        errors += e;
    }
    Ok((ok, errors, start.elapsed()))
}

/// `GET /console/v1/auth/health`: the number of profiles per health state.
async fn auth_health_counts(
    addr: SocketAddr,
    bearer: &HeaderValue,
) -> Result<std::collections::BTreeMap<String, u64>, BoxError> {
    let mut client = Client::connect(addr).await?;
    let response = client
        .send(client.get(HEALTH_PATH, Some((header::AUTHORIZATION, bearer)))?)
        .await?;
    if response.status() != StatusCode::OK {
        return Err(format!("GET {HEALTH_PATH} answered {}", response.status()).into());
    }
    let report: serde_json::Value = serde_json::from_slice(response.body())?;
    let counts = report
        .get("counts")
        .and_then(|c| c.as_object())
        .ok_or("the health report has no counts")?;
    Ok(counts
        .iter()
        .filter_map(|(state, n)| Some((state.clone(), n.as_u64()?)))
        .filter(|(_, n)| *n > 0)
        .collect())
}

/// Wall-clock time in Unix milliseconds, the clock the daemon stamps expiries with.
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The Unix milliseconds of a past `Instant`.
fn unix_ms_at(at: Instant) -> i64 {
    let ago = i64::try_from(at.elapsed().as_millis()).unwrap_or(0);
    unix_ms() - ago
}

/// utime + stime of this process, in clock ticks, from /proc/self/stat.
fn process_cpu_ticks() -> Result<u64, BoxError> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The command name (field 2) may hold spaces; fields after it start at 3 (state).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("unexpected /proc/self/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Result<u64, BoxError> {
        Ok(fields
            .get(n - 3)
            .ok_or("short /proc/self/stat")?
            .parse::<u64>()?)
    };
    Ok(field(14)? + field(15)?)
}

/// utime + stime in clock ticks per thread name (threads of one name added up, as
/// tokio names all workers of a runtime alike), from /proc/self/task. Empty if it
/// cannot be read: it only feeds a note.
fn thread_cpu_ticks() -> std::collections::BTreeMap<String, u64> {
    let mut by_name = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return by_name;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("stat")),
        ) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        if let (Some(utime), Some(stime)) = (ticks(14), ticks(15)) {
            *by_name.entry(comm.trim().to_owned()).or_insert(0) += utime + stime;
        }
    }
    by_name
}

/// `getconf CLK_TCK` (the unit of /proc/self/stat times); 100 if it cannot be asked.
fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// A minimal OAuth token endpoint on loopback, on its own runtime and thread (like the
/// baseline), answering at once. `POST /token` takes a form:
/// - `grant_type=authorization_code` with any non-empty `code` and a `code_verifier`
///   (not checked against the challenge: this measures the daemon, not PKCE): tokens
///   whose `expires_in` puts the profile's refresh due time (expiry minus the lead) in
///   the second that starts at the due window set by the bench;
/// - `grant_type=refresh_token` with any non-empty `refresh_token`: a new access token
///   and a new (rotated) refresh token, valid for an hour.
///
/// Anything else gets 400 with an OAuth error. It counts what it answers and when the
/// first and last refresh grants arrived.
struct FakeOAuth {
    addr: SocketAddr,
    state: Arc<FakeOAuthState>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

#[derive(Debug)]
struct FakeOAuthState {
    epoch: Instant,
    lead_s: u64,
    /// Unix ms at which the due times of signed-in profiles start (0: as soon as allowed).
    due_from_ms: AtomicI64,
    /// Earliest and latest due time handed out, in Unix ms.
    due_min_ms: AtomicI64,
    due_max_ms: AtomicI64,
    codes: AtomicU64,
    refreshes: AtomicU64,
    refused: AtomicU64,
    issued: AtomicU64,
    /// TCP connections accepted.
    connections: AtomicU64,
    /// Nanoseconds after `epoch`, plus one (0: none yet).
    first_refresh_ns: AtomicU64,
    last_refresh_ns: AtomicU64,
}

impl FakeOAuthState {
    fn open_due_window(&self, from_unix_ms: i64) {
        self.due_from_ms.store(from_unix_ms, Ordering::SeqCst);
    }

    fn due_range(&self) -> (i64, i64) {
        (
            self.due_min_ms.load(Ordering::SeqCst),
            self.due_max_ms.load(Ordering::SeqCst),
        )
    }

    fn instant(&self, stored: u64) -> Option<Instant> {
        (stored > 0).then(|| self.epoch + Duration::from_nanos(stored - 1))
    }

    fn first_refresh(&self) -> Option<Instant> {
        self.instant(self.first_refresh_ns.load(Ordering::SeqCst))
    }

    fn last_refresh(&self) -> Option<Instant> {
        self.instant(self.last_refresh_ns.load(Ordering::SeqCst))
    }

    fn answer(&self, form: &std::collections::HashMap<String, String>) -> axum::response::Response {
        use axum::response::IntoResponse;
        let present = |key: &str| form.get(key).is_some_and(|v| !v.is_empty());
        let refuse = |code: &str| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            (
                StatusCode::BAD_REQUEST,
                axum::Json(serde_json::json!({ "error": code })),
            )
                .into_response()
        };
        let expires_in = match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => {
                if !present("code") || !present("code_verifier") {
                    return refuse("invalid_request");
                }
                self.codes.fetch_add(1, Ordering::Relaxed);
                // Whole seconds until the window opens, at least the lead (so that
                // expiry minus the lead is also past halfway to expiry, which the
                // refresher would otherwise pick): due = now + wait lands in
                // [window, window + 1 s) whenever the window is far enough ahead.
                let now = unix_ms();
                let ahead = self.due_from_ms.load(Ordering::SeqCst) - now;
                let wait_s = u64::try_from((ahead + 999).div_euclid(1000))
                    .unwrap_or(0)
                    .max(self.lead_s.max(1));
                let due = now + i64::try_from(wait_s * 1000).unwrap_or(i64::MAX / 2);
                self.due_min_ms.fetch_min(due, Ordering::Relaxed);
                self.due_max_ms.fetch_max(due, Ordering::Relaxed);
                wait_s + self.lead_s
            }
            Some("refresh_token") => {
                if !present("refresh_token") {
                    return refuse("invalid_request");
                }
                self.refreshes.fetch_add(1, Ordering::Relaxed);
                let at = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1;
                let _ = self.first_refresh_ns.compare_exchange(
                    0,
                    at,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
                self.last_refresh_ns.fetch_max(at, Ordering::SeqCst);
                REFRESHED_EXPIRES_IN_S
            }
            _ => return refuse("unsupported_grant_type"),
        };
        let n = self.issued.fetch_add(1, Ordering::Relaxed) + 1;
        axum::Json(serde_json::json!({
            "access_token": format!("bench-at-{n}"),
            "refresh_token": format!("bench-rt-{n}"),
            "token_type": "Bearer",
            "expires_in": expires_in,
        }))
        .into_response()
    }
}

impl FakeOAuth {
    fn start(lead_s: u64) -> Result<Self, BoxError> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(FakeOAuthState {
            epoch: Instant::now(),
            lead_s,
            due_from_ms: AtomicI64::new(0),
            due_min_ms: AtomicI64::new(i64::MAX),
            due_max_ms: AtomicI64::new(i64::MIN),
            codes: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            issued: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            first_refresh_ns: AtomicU64::new(0),
            last_refresh_ns: AtomicU64::new(0),
        });
        let served = Arc::clone(&state);
        let accepted = Arc::clone(&state);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fake-oauth".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .thread_name("fake-oauth-worker")
                    .build()?;
                runtime.block_on(async move {
                    use axum::serve::ListenerExt as _;
                    let listener = tokio::net::TcpListener::from_std(listener)?.tap_io(
                        move |_: &mut tokio::net::TcpStream| {
                            accepted.connections.fetch_add(1, Ordering::Relaxed);
                        },
                    );
                    let app = axum::Router::new().route(
                        "/token",
                        axum::routing::post(
                            move |axum::Form(form): axum::Form<
                                std::collections::HashMap<String, String>,
                            >| {
                                let state = Arc::clone(&served);
                                async move { state.answer(&form) }
                            },
                        ),
                    );
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stop_rx.await;
                        })
                        .await
                })
            })?;
        Ok(Self {
            addr,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("fake OAuth server failed: {e}"),
                Err(_) => eprintln!("fake OAuth server panicked"),
            }
        }
    }
}

impl Drop for FakeOAuth {
    // Only on error paths (stop() takes both).
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// When each call arrived (or each job started), by objective (job) number, in Unix
/// nanoseconds. The instant is taken before the lock.
#[derive(Debug, Default)]
struct CallLog {
    calls: std::sync::Mutex<Vec<(u32, i64)>>,
}

impl CallLog {
    fn record(&self, n: u32, at_ns: i64) {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((n, at_ns));
    }

    fn take(&self) -> Vec<(u32, i64)> {
        std::mem::take(
            &mut *self
                .calls
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// The answer of the fake model provider: what the daemon's runner reads (the
/// assistant message and `usage.total_tokens`).
const FAKE_COMPLETION: &str = r#"{"id":"bench","object":"chat.completion","model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;

#[derive(Debug, Default)]
struct FakeModelState {
    log: CallLog,
    /// Calls whose body named no objective.
    unreadable: AtomicU64,
    /// TCP connections accepted.
    connections: AtomicU64,
}

/// A zero-latency OpenAI-compatible model provider on loopback, on its own runtime and
/// thread (like the baseline): `POST /v1/chat/completions` answers 200 at once with
/// one assistant message and `usage.total_tokens` 2, and records when the call
/// arrived and which objective sent it (the prompt is the objective id). The bearer
/// is not checked.
struct FakeModel {
    addr: SocketAddr,
    state: Arc<FakeModelState>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl FakeModel {
    fn start() -> Result<Self, BoxError> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(FakeModelState::default());
        let served = Arc::clone(&state);
        let accepted = Arc::clone(&state);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fake-model".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .thread_name("fake-model-worker")
                    .build()?;
                runtime.block_on(async move {
                    use axum::serve::ListenerExt as _;
                    let listener = tokio::net::TcpListener::from_std(listener)?.tap_io(
                        move |_: &mut tokio::net::TcpStream| {
                            accepted.connections.fetch_add(1, Ordering::Relaxed);
                        },
                    );
                    let app = axum::Router::new().route(
                        "/v1/chat/completions",
                        axum::routing::post(move |body: Bytes| {
                            let at = unix_ns();
                            let state = Arc::clone(&served);
                            async move {
                                let number = serde_json::from_slice::<serde_json::Value>(&body)
                                    .ok()
                                    .and_then(|v| {
                                        v["messages"][0]["content"]
                                            .as_str()
                                            .and_then(objective_number)
                                    });
                                match number {
                                    Some(n) => state.log.record(n, at),
                                    None => {
                                        state.unreadable.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                                (
                                    [(header::CONTENT_TYPE, "application/json")],
                                    FAKE_COMPLETION,
                                )
                            }
                        }),
                    );
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stop_rx.await;
                        })
                        .await
                })
            })?;
        Ok(Self {
            addr,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("fake model provider failed: {e}"),
                Err(_) => eprintln!("fake model provider panicked"),
            }
        }
    }
}

impl Drop for FakeModel {
    // Only on error paths (stop() takes both).
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// tokio-cron-scheduler 0.15.1 on its own multi-thread runtime and thread (`tcs`,
/// workers `tcs-worker`), with `n` jobs on one cron expression, each recording in the
/// log the instant it is called (job `i` as number `i`, from 1).
struct PeerScheduler {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

type PeerReady = oneshot::Receiver<Result<Duration, String>>;

impl PeerScheduler {
    /// Starts the thread; the receiver answers with the time taken to add the jobs
    /// and start the scheduler, once it has started.
    fn start(n: usize, schedule: String, log: Arc<CallLog>) -> Result<(Self, PeerReady), BoxError> {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("tcs".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .thread_name("tcs-worker")
                    .build()
                    .map_err(|e| e.to_string())?;
                runtime.block_on(async move {
                    let began = Instant::now();
                    let setup = async {
                        let scheduler = tokio_cron_scheduler::JobScheduler::new().await?;
                        for i in 1..=n {
                            let log = Arc::clone(&log);
                            let number = u32::try_from(i).unwrap_or(u32::MAX);
                            let job = tokio_cron_scheduler::Job::new_async(
                                schedule.as_str(),
                                move |_id, _scheduler| {
                                    log.record(number, unix_ns());
                                    Box::pin(async {})
                                },
                            )?;
                            scheduler.add(job).await?;
                        }
                        scheduler.start().await?;
                        Ok::<_, tokio_cron_scheduler::JobSchedulerError>(scheduler)
                    };
                    let mut scheduler = match setup.await {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return Err(e.to_string());
                        }
                    };
                    let _ = ready_tx.send(Ok(began.elapsed()));
                    let _ = stop_rx.await;
                    scheduler.shutdown().await.map_err(|e| e.to_string())
                })
            })?;
        Ok((
            Self {
                stop: Some(stop_tx),
                thread: Some(thread),
            },
            ready_rx,
        ))
    }

    /// Shuts the scheduler down and joins its thread; a note when that was not clean.
    async fn stop(mut self) -> String {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(thread) = self.thread.take() else {
            return String::new();
        };
        let joined = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::task::spawn_blocking(move || thread.join()),
        )
        .await;
        match joined {
            Ok(Ok(Ok(Ok(())))) => String::new(),
            Ok(Ok(Ok(Err(e)))) => format!("{PEER_NAME} shut down with an error: {e}"),
            Ok(Ok(Err(_))) | Ok(Err(_)) => format!("{PEER_NAME}'s thread panicked"),
            Err(_) => format!("{PEER_NAME} did not shut down within 30 s; left running"),
        }
    }
}

impl Drop for PeerScheduler {
    // Only on error paths: let the thread end with the process if stop() was not called.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Both sides of one scenario, plus the writer's counters over the scenario slices.
#[derive(Debug, Default)]
struct Comparison {
    baseline: Tally,
    scenario: Tally,
    commits: u64,
    writes: u64,
    fsync: FsyncProbe,
}

fn writer_counts(writer: &Writer) -> (u64, u64) {
    let stats = writer.stats();
    (
        stats.commits.load(Ordering::Relaxed),
        stats.writes.load(Ordering::Relaxed),
    )
}

/// palyrad run in this process on its own thread (its own actix System and runtime).
struct InProcessDaemon {
    addr: SocketAddr,
    writer: Writer,
    refresher: RefresherHandle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), palyra::StartError>>>,
    // Dropped (removed) only after the daemon thread is joined.
    dir: Option<TempDir>,
}

impl std::fmt::Debug for InProcessDaemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessDaemon")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl InProcessDaemon {
    /// Starts palyrad on a fresh data dir; `configure` adjusts the settings first.
    async fn start(
        root: &Path,
        token: &SecretString,
        max_live: usize,
        configure: impl FnOnce(&mut Settings),
    ) -> Result<Self, BoxError> {
        let dir = tempfile::Builder::new()
            .prefix("daemon-")
            .tempdir_in(root)?;
        let mut settings = Settings::defaults();
        settings.server.bind = "127.0.0.1:0".into();
        settings.server.admin_token = Some(token.clone());
        settings.server.shutdown_grace_s = 5;
        settings.storage.data_dir = Some(dir.path().join("data"));
        settings.sessions.max_live = max_live;
        // The limiter stays in the request path (its cost is measured), with a quota
        // no load generator here reaches: the bench measures the daemon, not the quota.
        settings.rate_limit.loopback_per_s = 100_000_000;
        settings.rate_limit.loopback_burst = 100_000_000;
        configure(&mut settings);
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("palyrad".into())
            .spawn(move || {
                palyra::run_daemon(
                    settings,
                    palyra::application::EnvSecrets::default(),
                    move |app| {
                        let _ = ready_tx.send((app.local_addr(), app.writer(), app.refresher()));
                    },
                    async move {
                        let _ = stop_rx.await;
                    },
                )
            })?;
        match ready_rx.await {
            Ok((addr, writer, refresher)) => Ok(Self {
                addr,
                writer,
                refresher,
                stop: Some(stop_tx),
                thread: Some(thread),
                dir: Some(dir),
            }),
            Err(_) => {
                let joined = tokio::task::spawn_blocking(move || thread.join()).await?;
                let why = match joined {
                    Ok(Err(e)) => e.to_string(),
                    Ok(Ok(())) => "it stopped before it was ready".into(),
                    Err(_) => "it panicked".into(),
                };
                Err(format!("palyrad did not start: {why}").into())
            }
        }
    }

    /// Graceful stop; an error if the daemon failed or panicked.
    async fn stop(self) -> Result<(), BoxError> {
        self.stop_keeping_dir().await.map(drop)
    }

    /// Graceful stop that hands over the temporary dir (the data dir is its `data`),
    /// so the stored records can be read once the daemon has let go of them.
    async fn stop_keeping_dir(mut self) -> Result<TempDir, BoxError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            match tokio::task::spawn_blocking(move || thread.join()).await? {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("palyrad stopped with an error: {e}").into()),
                Err(_) => return Err("palyrad panicked".into()),
            }
        }
        self.dir
            .take()
            .ok_or_else(|| "the daemon's dir is gone".into())
    }
}

impl Drop for InProcessDaemon {
    // Only on error paths (stop() takes both): still stop before the dir goes away.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The trivial axum responder every scenario is compared with: `GET /` answers 200
/// "ok". Served like palyrad serves (axum::serve, multi-thread runtime, no middleware).
#[derive(Debug)]
struct Baseline {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Baseline {
    fn start() -> Result<Self, BoxError> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("baseline".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .thread_name("baseline-worker")
                    .build()?;
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stop_rx.await;
                        })
                        .await
                })
            })?;
        Ok(Self {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("baseline server failed: {e}"),
                Err(_) => eprintln!("baseline server panicked"),
            }
        }
    }
}

/// What one client does per iteration.
#[derive(Debug)]
enum Work {
    /// `GET /` on the baseline; 200 expected.
    Baseline,
    /// `GET /console/v1/auth/session` with the session cookie; 200 expected.
    SessionCheck { cookie: HeaderValue },
    /// `POST /console/v1/auth/login`: a full login, one durable write; 200 expected.
    Login { body: Bytes },
    /// Mint a handoff with the bearer token (200), then consume its link (303).
    Handoff { bearer: HeaderValue },
    /// `GET /console/v1/auth/profiles?limit=...` with the bearer token; 200 expected.
    ListProfiles { bearer: HeaderValue, path: String },
    /// `POST /console/v1/auth/profiles`: a new API-key profile (`validate: false`) with
    /// a unique id `{prefix}{n:05}` per iteration; 200 expected.
    CreateProfile {
        bearer: HeaderValue,
        prefix: &'static str,
        next: AtomicU64,
    },
    /// `POST /console/v1/objectives`: a new active standing order of the bench agent
    /// with a unique id `{prefix}{n:05}` per iteration, the id as its prompt, and
    /// `schedule` in UTC; 200 expected.
    CreateObjective {
        bearer: HeaderValue,
        prefix: &'static str,
        schedule: String,
        next: AtomicU64,
    },
}

impl Work {
    fn create_profiles(bearer: HeaderValue, prefix: &'static str) -> Self {
        Work::CreateProfile {
            bearer,
            prefix,
            next: AtomicU64::new(1),
        }
    }

    fn create_objectives(bearer: HeaderValue, prefix: &'static str, schedule: String) -> Self {
        Work::CreateObjective {
            bearer,
            prefix,
            schedule,
            next: AtomicU64::new(1),
        }
    }

    /// One iteration: `Ok(true)` when every answer had the expected status.
    async fn iterate(&self, client: &mut Client) -> Result<bool, BoxError> {
        match self {
            Work::Baseline => {
                let response = client.send(client.get("/", None)?).await?;
                Ok(response.status() == StatusCode::OK)
            }
            Work::SessionCheck { cookie } => {
                let request = client.get(SESSION_PATH, Some((header::COOKIE, cookie)))?;
                Ok(client.send(request).await?.status() == StatusCode::OK)
            }
            Work::Login { body } => {
                let request = client.post(LOGIN_PATH, None, body.clone())?;
                Ok(client.send(request).await?.status() == StatusCode::OK)
            }
            Work::Handoff { bearer } => {
                let request = client.post(
                    HANDOFF_PATH,
                    Some((header::AUTHORIZATION, bearer)),
                    Bytes::from_static(b"{}"),
                )?;
                let minted = client.send(request).await?;
                if minted.status() != StatusCode::OK {
                    return Ok(false);
                }
                let Some(path) = handoff_path(minted.body()) else {
                    return Ok(false);
                };
                let consumed = client.send(client.get(&path, None)?).await?;
                Ok(consumed.status() == StatusCode::SEE_OTHER)
            }
            Work::ListProfiles { bearer, path } => {
                let request = client.get(path, Some((header::AUTHORIZATION, bearer)))?;
                Ok(client.send(request).await?.status() == StatusCode::OK)
            }
            Work::CreateProfile {
                bearer,
                prefix,
                next,
            } => {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let body = format!(
                    r#"{{"profile_id": "{prefix}{n:05}", "provider": "openai", "profile_name": "p", "credential": {{"type": "api_key", "api_key": "bench-key-{n:010}"}}, "validate": false}}"#
                );
                let request = client.post(
                    PROFILES_PATH,
                    Some((header::AUTHORIZATION, bearer)),
                    Bytes::from(body),
                )?;
                Ok(client.send(request).await?.status() == StatusCode::OK)
            }
            Work::CreateObjective {
                bearer,
                prefix,
                schedule,
                next,
            } => {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let body = serde_json::json!({
                    "objective_id": format!("{prefix}{n:05}"),
                    "agent_id": BENCH_AGENT,
                    "kind": "standing_order",
                    "name": format!("bench {n}"),
                    "prompt": format!("{prefix}{n:05}"),
                    "automation": { "schedule": schedule, "timezone": "UTC" },
                    "activate": true,
                });
                let request = client.post(
                    OBJECTIVES_PATH,
                    Some((header::AUTHORIZATION, bearer)),
                    Bytes::from(body.to_string()),
                )?;
                Ok(client.send(request).await?.status() == StatusCode::OK)
            }
        }
    }
}

/// Creates the API-key profile (`validate: false`) and the agent that bench
/// objectives run as; the key is the bearer the fake provider receives.
async fn create_agent(addr: SocketAddr, bearer: &HeaderValue) -> Result<(), BoxError> {
    let mut client = Client::connect(addr).await?;
    let profile = serde_json::json!({
        "profile_id": BENCH_MODEL_PROFILE,
        "provider": "openai",
        "profile_name": "bench model",
        "credential": { "type": "api_key", "api_key": "bench-model-key-0001" },
        "validate": false,
    });
    let agent = serde_json::json!({
        "agent_id": BENCH_AGENT,
        "model": "bench-model",
        "default_model_profile": BENCH_MODEL_PROFILE,
    });
    for (path, body) in [(PROFILES_PATH, profile), (AGENTS_PATH, agent)] {
        let request = client.post(
            path,
            Some((header::AUTHORIZATION, bearer)),
            Bytes::from(body.to_string()),
        )?;
        let response = client.send(request).await?;
        if response.status() != StatusCode::OK {
            return Err(format!(
                "POST {path} answered {}: {}",
                response.status(),
                String::from_utf8_lossy(response.body())
            )
            .into());
        }
    }
    Ok(())
}

/// `Authorization: Bearer <admin token>`, marked sensitive.
fn bearer_header(token: &SecretString) -> Result<HeaderValue, BoxError> {
    let mut bearer = HeaderValue::from_str(&format!("Bearer {}", token.expose()))?;
    bearer.set_sensitive(true);
    Ok(bearer)
}

/// Fetches one page of profiles; returns its item count and size, and fails unless
/// it answers 200 with a page.
async fn list_page(
    addr: SocketAddr,
    path: &str,
    bearer: &HeaderValue,
) -> Result<(usize, usize), BoxError> {
    let mut client = Client::connect(addr).await?;
    let response = client
        .send(client.get(path, Some((header::AUTHORIZATION, bearer)))?)
        .await?;
    if response.status() != StatusCode::OK {
        return Err(format!("GET {path} answered {}", response.status()).into());
    }
    let page: serde_json::Value = serde_json::from_slice(response.body())?;
    let items = page
        .get("items")
        .and_then(|i| i.as_array())
        .ok_or("the profile list answered no items")?
        .len();
    Ok((items, response.body().len()))
}

/// Path and query of the `handoff_url` in a mint answer. The link is followed on the
/// same connection: the daemon names itself by its loopback address, which may be
/// spelled differently from `--url`.
fn handoff_path(body: &Bytes) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let url = value.get("handoff_url")?.as_str()?;
    let rest = url.strip_prefix("http://")?;
    let slash = rest.find('/')?;
    Some(rest[slash..].to_owned())
}

/// One keep-alive HTTP/1.1 connection, reopened when the server closes it.
struct Client {
    addr: SocketAddr,
    host: HeaderValue,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Result<Self, BoxError> {
        Ok(Self {
            addr,
            host: HeaderValue::from_str(&addr.to_string())?,
            sender: Some(open(addr).await?),
        })
    }

    fn get(
        &self,
        path: &str,
        extra: Option<(HeaderName, &HeaderValue)>,
    ) -> Result<Request<Full<Bytes>>, BoxError> {
        self.request(Method::GET, path, extra, None)
    }

    fn post(
        &self,
        path: &str,
        extra: Option<(HeaderName, &HeaderValue)>,
        json: Bytes,
    ) -> Result<Request<Full<Bytes>>, BoxError> {
        self.request(Method::POST, path, extra, Some(json))
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        extra: Option<(HeaderName, &HeaderValue)>,
        json: Option<Bytes>,
    ) -> Result<Request<Full<Bytes>>, BoxError> {
        // hyper's connection-level client adds no Host header; HTTP/1.1 requires one.
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host);
        if let Some((name, value)) = extra {
            builder = builder.header(name, value);
        }
        let body = match json {
            Some(json) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                json
            }
            None => Bytes::new(),
        };
        Ok(builder.body(Full::new(body))?)
    }

    /// Sends one request and reads the whole answer (so the connection can be reused).
    /// On any failure the connection is dropped; the next request opens a new one.
    async fn send(&mut self, request: Request<Full<Bytes>>) -> Result<Response<Bytes>, BoxError> {
        let mut sender = match self.sender.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => open(self.addr).await?,
        };
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        self.sender = Some(sender);
        Ok(Response::from_parts(parts, body))
    }
}

async fn open(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    // Requests are small and written at once; Nagle would only add delay.
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // The connection's I/O driver; it ends when the sender is dropped or the peer closes.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Logs in once and returns the `Cookie` header value for the new session.
async fn login_cookie(addr: SocketAddr, body: &Bytes) -> Result<HeaderValue, BoxError> {
    let mut client = Client::connect(addr).await?;
    let response = client
        .send(client.post(LOGIN_PATH, None, body.clone())?)
        .await?;
    if response.status() != StatusCode::OK {
        return Err(format!("login answered {}", response.status()).into());
    }
    let token = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
        .ok_or("login answered no session cookie")?;
    let mut cookie = HeaderValue::from_str(&format!("{SESSION_COOKIE}={token}"))?;
    cookie.set_sensitive(true);
    Ok(cookie)
}

/// When a drive stops.
#[derive(Debug, Clone, Copy)]
enum Limit {
    /// After this long (requests in flight then still finish and count).
    For(Duration),
    /// After this many iterations in all.
    Count(u64),
}

/// Outcome of a drive, or of several added up.
#[derive(Debug, Default)]
struct Tally {
    /// Iterations whose answers all had the expected status.
    ok: u64,
    /// Unexpected statuses, transport failures and timeouts.
    errors: u64,
    /// Latency of each ok iteration, in nanoseconds; sorted by `finish`.
    latencies_ns: Vec<u64>,
    elapsed: Duration,
}

impl Tally {
    fn absorb(&mut self, other: Tally) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.latencies_ns.extend(other.latencies_ns);
        self.elapsed += other.elapsed;
    }

    fn finish(&mut self) {
        self.latencies_ns.sort_unstable();
    }

    /// Ok iterations per second of wall time.
    fn rps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }

    /// Nearest-rank percentile in milliseconds (`q` in 0..=1); needs `finish` first.
    fn percentile_ms(&self, q: f64) -> f64 {
        nearest_rank_ms(&self.latencies_ns, q)
    }
}

/// Nearest-rank percentile in milliseconds of sorted nanoseconds (`q` in 0..=1).
fn nearest_rank_ms(sorted_ns: &[u64], q: f64) -> f64 {
    let n = sorted_ns.len();
    if n == 0 {
        return 0.0;
    }
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted_ns[rank - 1] as f64 / 1e6
}

/// Runs `clients` concurrent clients, one connection each, until `limit`.
async fn drive(
    addr: SocketAddr,
    work: &Arc<Work>,
    clients: usize,
    limit: Limit,
) -> Result<Tally, BoxError> {
    // Connect first, so that connection set-up is not timed.
    let mut connected = Vec::with_capacity(clients);
    for _ in 0..clients {
        connected.push(Client::connect(addr).await?);
    }
    let start = Instant::now();
    let tickets = match limit {
        Limit::Count(n) => Some(Arc::new(AtomicU64::new(n))),
        Limit::For(_) => None,
    };
    let deadline = match limit {
        Limit::For(d) => Some(start + d),
        Limit::Count(_) => None,
    };
    let mut tasks = JoinSet::new();
    for mut client in connected {
        let work = Arc::clone(work);
        let tickets = tickets.clone();
        tasks.spawn(async move {
            let mut tally = Tally {
                latencies_ns: Vec::with_capacity(8192),
                ..Tally::default()
            };
            loop {
                let more = match (&tickets, deadline) {
                    (Some(t), _) => t
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                        .is_ok(),
                    (None, Some(deadline)) => Instant::now() < deadline,
                    (None, None) => false,
                };
                if !more {
                    break;
                }
                let began = Instant::now();
                match tokio::time::timeout(REQUEST_TIMEOUT, work.iterate(&mut client)).await {
                    Ok(Ok(true)) => {
                        tally.ok += 1;
                        let ns = u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX);
                        tally.latencies_ns.push(ns);
                    }
                    Ok(Ok(false)) => tally.errors += 1,
                    Ok(Err(_)) | Err(_) => {
                        tally.errors += 1;
                        // The connection is gone (or unknown after a timeout): drop it,
                        // and do not spin if the server is down.
                        client.sender = None;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
            tally
        });
    }
    let mut total = Tally::default();
    while let Some(joined) = tasks.join_next().await {
        total.absorb(joined?);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// Polls `GET /readyz` until 200, failing if the child exits or time runs out.
async fn wait_ready(addr: SocketAddr, child: &mut Child, limit: Duration) -> Result<(), BoxError> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(format!("palyrad exited with {status} before it was ready").into());
        }
        if let Ok(mut client) = Client::connect(addr).await
            && let Ok(request) = client.get("/readyz", None)
            && let Ok(response) = client.send(request).await
            && response.status() == StatusCode::OK
        {
            return Ok(());
        }
        if started.elapsed() > limit {
            return Err(format!("palyrad was not ready within {} s", limit.as_secs()).into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGTERM (through kill(1): this workspace forbids unsafe code), then wait for a
/// clean exit; SIGKILL after 15 s. Returns a note when the stop was not clean.
async fn terminate(child: &mut Child) -> String {
    let sent = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    if !sent.is_ok_and(|s| s.success()) {
        let _ = child.kill();
        let _ = child.wait();
        return "kill -TERM failed; palyrad was killed".into();
    }
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(15) {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return String::new(),
            Ok(Some(status)) => return format!("palyrad exited with {status} on SIGTERM"),
            Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => return format!("cannot wait for palyrad: {e}"),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    "palyrad did not stop within 15 s of SIGTERM; killed".into()
}

/// Kills the child if a measurement fails half-way, so no daemon outlives the bench.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// VmRSS of a process in MiB.
fn vm_rss_mib(pid: u32) -> Result<f64, BoxError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or("no VmRSS in /proc/<pid>/status")?;
    Ok(kib / 1024.0)
}

/// Syncs done by fsync probes and the time they took.
#[derive(Debug, Default, Clone, Copy)]
struct FsyncProbe {
    syncs: u64,
    elapsed: Duration,
}

impl FsyncProbe {
    fn rate(self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.syncs as f64 / secs
        } else {
            0.0
        }
    }
}

/// Runs [`measure_fsync`] off the async workers.
async fn fsync_probe(dir: PathBuf, length: Duration) -> Result<FsyncProbe, BoxError> {
    tokio::task::spawn_blocking(move || measure_fsync(&dir, length)).await?
}

/// The fsync ceiling: a serial loop of a small appending write and `sync_data`, as
/// one redb commit with `Durability::Immediate` costs about one appending fsync.
fn measure_fsync(dir: &Path, length: Duration) -> Result<FsyncProbe, BoxError> {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let record = [0x5a_u8; 128];
    let started = Instant::now();
    let mut syncs = 0_u64;
    while started.elapsed() < length {
        file.write_all(&record)?;
        file.sync_data()?;
        syncs += 1;
    }
    let elapsed = started.elapsed();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(FsyncProbe { syncs, elapsed })
}

/// One row of the report and of the JSON array. The first nine keys are the contract;
/// the optional ones appear only where they apply.
#[derive(Debug, Clone, Serialize)]
struct Row {
    scenario: String,
    /// Ok iterations per second (for handoff one iteration is mint + consume).
    rps: f64,
    baseline_rps: f64,
    ratio: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    errors: u64,
    fsync_per_s: f64,
    clients: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline_p99_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline_errors: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    measured_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sessions: Option<usize>,
    /// HTTP requests per iteration (2 for handoff).
    #[serde(skip_serializing_if = "Option::is_none")]
    requests_per_iteration: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    durable_writes_per_s: Option<f64>,
    /// durable_writes_per_s / fsync_per_s.
    #[serde(skip_serializing_if = "Option::is_none")]
    durable_vs_fsync: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    writes_per_commit: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    commits_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_idle_mib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_loaded_mib: Option<f64>,
    /// Profiles seeded or created by the scenario.
    #[serde(skip_serializing_if = "Option::is_none")]
    profiles: Option<usize>,
    /// rss-profiles: RSS after the first 1,000 profiles.
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_first_mib: Option<f64>,
    /// rss-profiles: (loaded - idle) / profiles.
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_per_profile_kib: Option<f64>,
    /// rss-profiles: growth per profile from the first 1,000 to the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_marginal_per_profile_kib: Option<f64>,
    /// refresh-10k: refreshes the refresher completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    refreshed: Option<u64>,
    /// refresh-10k: seconds from the first refresh grant at the token endpoint to the
    /// last refresh completed (durable).
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_wall_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refreshes_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peak_in_flight: Option<u64>,
    /// refresh-10k: `oauth.max_concurrent_refreshes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    max_in_flight: Option<usize>,
    /// refresh-10k: CPU of the whole bench process while idle after the burst, in % of
    /// one core.
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_cpu_pct: Option<f64>,
    /// refresh-10k: the utime+stime clock ticks behind `idle_cpu_pct`.
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_cpu_ticks: Option<u64>,
    /// refresh-10k: seconds the sign-ins took (bootstraps and callbacks).
    #[serde(skip_serializing_if = "Option::is_none")]
    seed_s: Option<f64>,
    /// refresh-10k: spread of the due times handed out, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    due_spread_ms: Option<i64>,
    /// refresh-10k: refresh grants the fake token endpoint answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    token_endpoint_refreshes: Option<u64>,
    /// scheduler-10k: what fired (`palyrad`, or the peer).
    #[serde(skip_serializing_if = "Option::is_none")]
    implementation: Option<String>,
    /// scheduler-10k: active objectives (for the peer: jobs), all on one schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    objectives: Option<usize>,
    /// scheduler-10k: the schedule's period, `*/every_s * * * * *`.
    #[serde(skip_serializing_if = "Option::is_none")]
    every_s: Option<u32>,
    /// scheduler-10k: seconds of boundaries measured (whole periods).
    #[serde(skip_serializing_if = "Option::is_none")]
    window_s: Option<f64>,
    /// scheduler-10k: firings due in the window (objectives x boundaries).
    #[serde(skip_serializing_if = "Option::is_none")]
    expected: Option<u64>,
    /// scheduler-10k: firings of the window that arrived (a provider call at the fake,
    /// or the peer's job started).
    #[serde(skip_serializing_if = "Option::is_none")]
    received: Option<u64>,
    /// scheduler-10k: expected - received.
    #[serde(skip_serializing_if = "Option::is_none")]
    missed: Option<u64>,
    /// scheduler-10k: arrival (or job start) minus the boundary, over received firings.
    #[serde(skip_serializing_if = "Option::is_none")]
    lateness_p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lateness_p99_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lateness_max_ms: Option<f64>,
    /// scheduler-10k, the daemon: `scheduled_for` of its window runs minus the
    /// boundary they belong to (0 when the daemon schedules on the boundary).
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduled_offset_p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduled_offset_max_ms: Option<f64>,
    /// scheduler-10k, the daemon: arrival minus `scheduled_for` (the lateness without
    /// that offset).
    #[serde(skip_serializing_if = "Option::is_none")]
    after_scheduled_p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after_scheduled_p99_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after_scheduled_max_ms: Option<f64>,
    /// scheduler-10k: CPU of the whole bench process over the window, % of one core.
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_pct: Option<f64>,
    /// scheduler-10k: CPU of the measured side's threads over the window (the daemon's,
    /// or the peer's runtime), % of one core.
    #[serde(skip_serializing_if = "Option::is_none")]
    side_cpu_pct: Option<f64>,
    /// scheduler-10k: VmRSS of the bench process before the objectives (jobs) were
    /// created, and at the end of the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_before_mib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_mib: Option<f64>,
    #[serde(skip)]
    plan: Plan,
    #[serde(skip)]
    notes: String,
}

impl Row {
    fn new(plan: Plan, bench: &Bench) -> Self {
        Self {
            scenario: plan.name(),
            rps: 0.0,
            baseline_rps: 0.0,
            ratio: 0.0,
            p50_ms: 0.0,
            p99_ms: 0.0,
            p999_ms: 0.0,
            errors: 0,
            fsync_per_s: round(bench.fsync_per_s, 1),
            clients: bench.clients,
            baseline_p99_ms: None,
            baseline_errors: None,
            measured_s: None,
            sessions: match plan {
                Plan::SessionCheck { sessions } => Some(sessions),
                _ => None,
            },
            requests_per_iteration: None,
            durable_writes_per_s: None,
            durable_vs_fsync: None,
            writes_per_commit: None,
            commits_per_s: None,
            rss_idle_mib: None,
            rss_loaded_mib: None,
            profiles: match plan {
                Plan::ProfileList => Some(LIST_PROFILES),
                _ => None,
            },
            rss_first_mib: None,
            rss_per_profile_kib: None,
            rss_marginal_per_profile_kib: None,
            refreshed: None,
            refresh_wall_s: None,
            refreshes_per_s: None,
            peak_in_flight: None,
            max_in_flight: None,
            idle_cpu_pct: None,
            idle_cpu_ticks: None,
            seed_s: None,
            due_spread_ms: None,
            token_endpoint_refreshes: None,
            implementation: None,
            objectives: None,
            every_s: None,
            window_s: None,
            expected: None,
            received: None,
            missed: None,
            lateness_p50_ms: None,
            lateness_p99_ms: None,
            lateness_max_ms: None,
            scheduled_offset_p50_ms: None,
            scheduled_offset_max_ms: None,
            after_scheduled_p50_ms: None,
            after_scheduled_p99_ms: None,
            after_scheduled_max_ms: None,
            cpu_pct: None,
            side_cpu_pct: None,
            rss_before_mib: None,
            rss_mib: None,
            plan,
            notes: String::new(),
        }
    }

    fn from_comparison(plan: Plan, cmp: &Comparison, bench: &Bench) -> Self {
        let rps = cmp.scenario.rps();
        let baseline_rps = cmp.baseline.rps();
        Self {
            rps: round(rps, 1),
            baseline_rps: round(baseline_rps, 1),
            ratio: if baseline_rps > 0.0 {
                round(rps / baseline_rps, 3)
            } else {
                0.0
            },
            p50_ms: round(cmp.scenario.percentile_ms(0.50), 3),
            p99_ms: round(cmp.scenario.percentile_ms(0.99), 3),
            p999_ms: round(cmp.scenario.percentile_ms(0.999), 3),
            errors: cmp.scenario.errors,
            baseline_p99_ms: Some(round(cmp.baseline.percentile_ms(0.99), 3)),
            baseline_errors: Some(cmp.baseline.errors),
            measured_s: Some(round(cmp.scenario.elapsed.as_secs_f64(), 2)),
            ..Self::new(plan, bench)
        }
    }
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10_f64.powi(digits);
    (value * scale).round() / scale
}

/// One target of the issue, met or missed.
#[derive(Debug)]
struct Verdict {
    target: String,
    measured: String,
    pass: bool,
}

fn assess(rows: &[Row]) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    let mut check = |target: String, measured: String, pass: bool| {
        verdicts.push(Verdict {
            target,
            measured,
            pass,
        });
    };
    for row in rows {
        let name = &row.scenario;
        match row.plan {
            Plan::SessionCheck { .. } => {
                check(
                    format!("{name}: rps >= 0.8x baseline"),
                    format!("{:.2}x", row.ratio),
                    row.ratio >= 0.8,
                );
                let base_p99 = row.baseline_p99_ms.unwrap_or(0.0);
                check(
                    format!("{name}: p99 <= 2x baseline p99"),
                    format!("{:.2} ms vs 2 x {base_p99:.2} ms", row.p99_ms),
                    row.rps > 0.0 && row.p99_ms <= 2.0 * base_p99,
                );
            }
            Plan::Login => {
                let vs_fsync = row.durable_vs_fsync.unwrap_or(0.0);
                check(
                    format!("{name} at {} clients: >= 5x serial fsync rate", row.clients),
                    format!(
                        "{vs_fsync:.2}x ({:.0}/s vs {:.0} fsync/s)",
                        row.rps, row.fsync_per_s
                    ),
                    vs_fsync >= 5.0,
                );
                check(
                    format!("{name}: rps >= 0.25x baseline"),
                    format!("{:.2}x", row.ratio),
                    row.ratio >= 0.25,
                );
            }
            Plan::Handoff => check(
                format!("{name} mint+consume: rps >= 0.5x baseline"),
                format!("{:.2}x", row.ratio),
                row.ratio >= 0.5,
            ),
            Plan::ProfileList => check(
                format!(
                    "{name} ({LIST_PROFILES} profiles, page of {LIST_PAGE}): rps >= 0.5x baseline"
                ),
                format!("{:.2}x", row.ratio),
                row.ratio >= 0.5,
            ),
            // No target: reported only.
            Plan::ProfileCreate | Plan::ObjectiveCreate => {}
            Plan::Scheduler {
                objectives,
                every_s,
                peer,
            } => {
                let who = if peer {
                    format!("{PEER_NAME}, the peer")
                } else {
                    "palyrad".into()
                };
                let expected = row.expected.unwrap_or(0);
                let missed = row.missed.unwrap_or(expected);
                check(
                    format!(
                        "{name}: zero missed firings, {objectives} objectives every {every_s} s ({who})"
                    ),
                    format!("{missed} missed of {expected}"),
                    expected > 0 && missed == 0,
                );
                check(
                    format!("{name}: p99 lateness <= 50 ms ({who})"),
                    format!(
                        "p99 {:.1} ms, max {:.1} ms",
                        row.lateness_p99_ms.unwrap_or(0.0),
                        row.lateness_max_ms.unwrap_or(0.0)
                    ),
                    row.received.unwrap_or(0) > 0 && row.lateness_p99_ms.is_some_and(|p| p <= 50.0),
                );
            }
            Plan::Rss => {
                let idle = row.rss_idle_mib.unwrap_or(f64::INFINITY);
                check(
                    "idle RSS <= 16 MiB".into(),
                    format!("{idle:.1} MiB"),
                    idle <= 16.0,
                );
            }
            Plan::RssProfiles => {
                let per = row.rss_per_profile_kib.unwrap_or(f64::INFINITY);
                check(
                    format!("RSS <= 4 KiB per profile ({RSS_PROFILES} profiles)"),
                    format!(
                        "{per:.2} KiB ({:.1} MiB idle, {:.1} MiB loaded)",
                        row.rss_idle_mib.unwrap_or(0.0),
                        row.rss_loaded_mib.unwrap_or(0.0)
                    ),
                    per <= 4.0,
                );
            }
            Plan::Refresh => {
                let n = row.profiles.unwrap_or(0);
                let wall = row.refresh_wall_s;
                check(
                    format!("{name}: all {REFRESH_PROFILES} refreshed in <= 2 s"),
                    match wall {
                        Some(w) => format!(
                            "{w:.2} s for {} of {n} ({:.0}/s), {} not ok",
                            row.refreshed.unwrap_or(0),
                            row.refreshes_per_s.unwrap_or(0.0),
                            row.errors
                        ),
                        None => format!("{} of {n} refreshed", row.refreshed.unwrap_or(0)),
                    },
                    n == REFRESH_PROFILES
                        && row.errors == 0
                        && row.refreshed == Some(n as u64)
                        && wall.is_some_and(|w| w <= 2.0),
                );
            }
        }
    }
    verdicts
}

/// The Markdown report: what ran where, the table, the targets.
fn render_report(bench: &Bench, data_root: &Path, rows: &[Row], verdicts: &[Verdict]) -> String {
    let mut out = String::new();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let target = match &bench.target {
        TargetMode::InProcess => "palyrad in-process, fresh temporary data dir per scenario".into(),
        TargetMode::External { addr, .. } => format!("palyrad at http://{addr} (--url)"),
    };
    let _ = writeln!(out, "## palyra-bench results\n");
    let _ = writeln!(
        out,
        "Run at {} UTC.",
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S")
    );
    let _ = writeln!(
        out,
        "Machine: {cores} cores, {cpu}, kernel {}; load average before the run {}.",
        kernel.trim(),
        bench.load_before
    );
    let _ = writeln!(
        out,
        "Target: {target}; baseline: trivial axum `GET /` on its own runtime, same process."
    );
    if rows
        .iter()
        .any(|r| !matches!(r.plan, Plan::Scheduler { .. }))
    {
        let _ = writeln!(
            out,
            "Load: {} keep-alive HTTP/1.1 clients; {:.1} s per side per scenario in {} alternating slices after {} ms warm-up per side.",
            bench.clients,
            bench.duration.as_secs_f64(),
            bench.slices,
            WARMUP.as_millis()
        );
    }
    let _ = writeln!(
        out,
        "fsync ceiling at the start: {:.0} appending write+fdatasync/s, serial, in {} ({}); write scenarios are compared with probes run between their slices.",
        bench.fsync_per_s,
        data_root.display(),
        filesystem_of(data_root)
    );
    let _ = writeln!(
        out,
        "rps counts iterations answered with the expected status; for handoff one iteration is two requests (mint, consume).\n"
    );
    let table_rows: Vec<&Row> = rows
        .iter()
        .filter(|r| !matches!(r.plan, Plan::Scheduler { .. }))
        .collect();
    if !table_rows.is_empty() {
        let _ = writeln!(
            out,
            "| scenario | rps | baseline rps | ratio | p50 ms | p99 ms | p99.9 ms | baseline p99 ms | errors | notes |"
        );
    }
    if !table_rows.is_empty() {
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    }
    for row in table_rows {
        if matches!(row.plan, Plan::Rss | Plan::RssProfiles | Plan::Refresh) {
            let _ = writeln!(
                out,
                "| {} | - | - | - | - | - | - | - | {} | {} |",
                row.scenario, row.errors, row.notes
            );
            continue;
        }
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} |",
            row.scenario,
            row.rps,
            row.baseline_rps,
            row.ratio,
            row.p50_ms,
            row.p99_ms,
            row.p999_ms,
            row.baseline_p99_ms.unwrap_or(0.0),
            row.errors,
            row.notes
        );
    }
    let scheduler_rows: Vec<&Row> = rows
        .iter()
        .filter(|r| matches!(r.plan, Plan::Scheduler { .. }))
        .collect();
    if !scheduler_rows.is_empty() {
        let _ = writeln!(
            out,
            "\n### Scheduler\n\nLateness is the arrival of the provider call at the fake (the daemon: after its durable run write) or the start of the job (the peer) minus the boundary it belongs to; CPU is % of one core over the window, for the whole bench process and for the measured side's threads; RSS is the bench process's VmRSS (the daemon is in-process).\n"
        );
        let _ = writeln!(
            out,
            "| scenario | implementation | objectives | every s | window s | expected | received | missed | lateness p50 ms | p99 ms | max ms | CPU % process | CPU % side | RSS MiB before, end | notes |"
        );
        let _ = writeln!(
            out,
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
        );
        for row in scheduler_rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1}, {:.1} | {} |",
                row.scenario,
                row.implementation.as_deref().unwrap_or("-"),
                row.objectives.unwrap_or(0),
                row.every_s.unwrap_or(0),
                row.window_s.unwrap_or(0.0),
                row.expected.unwrap_or(0),
                row.received.unwrap_or(0),
                row.missed.unwrap_or(0),
                row.lateness_p50_ms.unwrap_or(0.0),
                row.lateness_p99_ms.unwrap_or(0.0),
                row.lateness_max_ms.unwrap_or(0.0),
                row.cpu_pct.unwrap_or(0.0),
                row.side_cpu_pct.unwrap_or(0.0),
                row.rss_before_mib.unwrap_or(0.0),
                row.rss_mib.unwrap_or(0.0),
                row.notes
            );
        }
    }
    let _ = writeln!(out, "\n### Targets\n");
    if verdicts.is_empty() {
        let _ = writeln!(out, "- none for these scenarios");
    }
    for v in verdicts {
        let mark = if v.pass { "pass" } else { "MISS" };
        let _ = writeln!(out, "- {mark}: {} (measured {})", v.target, v.measured);
    }
    out
}

/// Type of the filesystem holding `path`, from /proc/self/mounts.
fn filesystem_of(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _device = fields.next()?;
            let mount_point = fields.next()?;
            let fs_type = fields.next()?;
            path.starts_with(mount_point)
                .then(|| (mount_point.len(), fs_type.to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown filesystem".into(), |(_, fs)| fs)
}
