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
//! - for `rss` and `rss-profiles` it spawns the release `palyrad` binary (the test
//!   kit's child daemon, logging JSON to a pipe the bench drains) and reads its
//!   resident memory;
//! - for `refresh-10k` it starts the test kit's fake OAuth provider on loopback (its
//!   own runtime and thread, like the baseline; it checks PKCE and rotation as a real
//!   one would), signs 10,000 profiles in through the real sign-in flow (bootstrap,
//!   consent at the fake, callback) and times the background refresher on them;
//! - for `scheduler-10k` it starts the test kit's fake OpenAI-compatible model
//!   provider on loopback (its own runtime and thread) that records when each call
//!   arrives, creates 10,000 active standing orders due on the same boundaries, and
//!   compares the daemon's firings with tokio-cron-scheduler's on the same job set in
//!   the same run;
//! - `cluster` starts three release palyrad nodes on one fresh database of the run's
//!   PostgreSQL server (the test kit's cluster) and measures firings across them, the
//!   takeover after kill -9, revocation propagation and session checks on one node;
//! - `objective-create` loads `POST /console/v1/objectives` like `profile-create`;
//! - with `--backend postgres` or `both`, it starts one throwaway PostgreSQL server on
//!   this machine (the test kit's, fsync and synchronous_commit on) and gives each
//!   in-process daemon a fresh database on it, beside or instead of redb.
//!
//! It prints a Markdown table and a pass/miss assessment of the targets, and writes a
//! JSON array with `--json`. It is a benchmark, never a test: it exits 0 whatever the
//! numbers, and non-zero only when it cannot measure (the daemon does not start, a
//! login fails outright). It never prints the admin token, cookies or handoff links.
//!
//! Layout: [`args`] (the flags), [`plan`] (the rows a run makes), [`backends`] (redb
//! or the run's PostgreSQL server), [`bench`] (what
//! every scenario shares, the alternating slices), [`driver`] (the HTTP/1.1 clients and
//! their loop), [`servers`] (the in-process daemon, the baseline, the child palyrad),
//! [`fakes`] (the test kit's fake providers as the bench uses them), [`probes`] (/proc,
//! the fsync ceiling, CPU per thread), [`http`] (the HTTP scenarios' common part), one
//! module per scenario family ([`auth`], [`profiles`], [`objectives`], [`refresh`],
//! [`rss`], [`cluster`]), and [`report`] and [`targets`] for the output.

mod args;
mod auth;
mod backends;
mod bench;
mod cluster;
mod driver;
mod fakes;
mod http;
mod objectives;
mod plan;
mod probes;
mod profiles;
mod refresh;
mod report;
mod rss;
mod servers;
mod soak;
mod targets;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use palyra::settings::{LogFormat, LogSettings};
use palyra_actors::SecretString;

use crate::args::{Args, ScenarioArg};
use crate::backends::{Backend, PgServer};
use crate::bench::{Bench, TargetMode, loopback_addr};
use crate::driver::BoxError;
use crate::plan::Plan;
use crate::probes::{FSYNC_PROBE, fsync_probe, load_average};
use crate::report::{pair_rows, render_report};
use crate::servers::Baseline;
use crate::targets::assess;

/// The daemon's allocator (palyrad's, see the root Cargo.toml), so the daemon measured
/// in process allocates as the real one does; the baselines in this process share it.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// `--duration` default of the HTTP scenarios (seconds per side).
const HTTP_DURATION_S: f64 = 10.0;
/// `--duration` default of `scheduler-10k` (seconds of firing measured, per side).
const SCHEDULER_WINDOW_S: f64 = 30.0;

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
    args.check()?;
    let plans = args.plans();
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

    let load_before = load_average();
    eprintln!(
        "measuring the fsync ceiling in {} for {} s",
        data_root.display(),
        FSYNC_PROBE.as_secs()
    );
    let probe_dir = root.path().to_owned();
    let fsync_per_s = fsync_probe(probe_dir, FSYNC_PROBE).await?.rate();

    let backends = args.backend.backends();
    // `cluster` runs on PostgreSQL whatever --backend says.
    let cluster = plans.iter().any(|p| matches!(p, Plan::Cluster { .. }));
    let postgres = if cluster
        || backends.contains(&Backend::Postgres) && plans.iter().any(|p| p.runs_on_postgres())
    {
        eprintln!("starting a PostgreSQL server for the run");
        let server = PgServer::start().await?;
        eprintln!("  PostgreSQL: {}", server.settings);
        Some(server)
    } else {
        None
    };

    let baseline = Baseline::start()?;
    let mut bench = Bench {
        clients: args.clients,
        duration: Duration::from_secs_f64(args.duration.unwrap_or(HTTP_DURATION_S)),
        scheduler_window: Duration::from_secs_f64(args.duration.unwrap_or(SCHEDULER_WINDOW_S)),
        slices: args.slices,
        baseline: baseline.addr(),
        target,
        root: root.path().to_owned(),
        fsync_per_s,
        load_before,
        backend: Backend::Redb,
        postgres,
    };
    let mut rows = Vec::new();
    // Each scenario on every backend asked for, one right after the other, so the
    // two rows of a pair see the same minutes of the machine.
    let runs = plans
        .iter()
        .flat_map(|plan| backends.iter().map(move |b| (*plan, *b)));
    for (plan, backend) in runs {
        if matches!(plan, Plan::Cluster { .. }) && backend != backends[0] {
            // Once per run: it is always on PostgreSQL.
            continue;
        }
        if backend == Backend::Postgres && !plan.runs_on_postgres() {
            eprintln!("skipping {} on PostgreSQL (redb only)", plan.name());
            continue;
        }
        bench.backend = backend;
        let on = match plan {
            Plan::Cluster { .. } => "three nodes on PostgreSQL",
            _ => backend.label(),
        };
        eprintln!("running {} on {on}", plan.name());
        match plan {
            Plan::SessionCheck { sessions } => {
                rows.push(auth::session_check(&bench, sessions).await?);
            }
            Plan::Login => rows.push(auth::login(&bench).await?),
            Plan::Handoff => rows.push(auth::handoff(&bench).await?),
            Plan::ProfileList => rows.push(profiles::profile_list(&bench).await?),
            Plan::ProfileCreate => rows.push(profiles::profile_create(&bench).await?),
            Plan::ObjectiveCreate => rows.push(objectives::objective_create(&bench).await?),
            Plan::Rss => rows.push(rss::rss(&bench).await?),
            Plan::RssProfiles => rows.push(rss::rss_profiles(&bench).await?),
            Plan::Refresh => rows.push(bench.refresh().await?),
            Plan::Soak { duration_s } => {
                rows.push(soak::soak(&bench, std::time::Duration::from_secs(duration_s)).await?)
            }
            Plan::Scheduler {
                objectives,
                every_s,
                ..
            } => rows.extend(bench.scheduler(objectives, every_s).await?),
            Plan::Cluster { .. } => rows.extend(bench.cluster(args.every).await?),
        }
    }
    baseline.stop();
    pair_rows(&mut rows);

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
