//! The report: one row per scenario (the JSON array's objects), and the Markdown
//! table with the targets' verdicts.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::backends::Backend;
use crate::bench::{Bench, Comparison, TargetMode};
use crate::driver::WARMUP;
use crate::plan::{ClusterMeasure, LIST_PROFILES, Plan};
use crate::probes::{filesystem_of, machine};

/// One row of the report and of the JSON array. The first nine keys are the contract;
/// the optional ones appear only where they apply.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: String,
    /// `redb` or `postgres`: where the daemon kept its state.
    pub backend: Backend,
    /// Ok iterations per second (for handoff one iteration is mint + consume).
    pub rps: f64,
    pub baseline_rps: f64,
    pub ratio: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub errors: u64,
    pub fsync_per_s: f64,
    pub clients: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_p99_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_errors: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions: Option<usize>,
    /// HTTP requests per iteration (2 for handoff).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_iteration: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub durable_writes_per_s: Option<f64>,
    /// durable_writes_per_s / fsync_per_s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub durable_vs_fsync: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writes_per_commit: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commits_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_idle_mib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_loaded_mib: Option<f64>,
    /// `soak`: RSS growth over the second half of the run, in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_growth_pct: Option<f64>,
    /// Profiles seeded or created by the scenario.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profiles: Option<usize>,
    /// rss-profiles: RSS after the first 1,000 profiles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_first_mib: Option<f64>,
    /// rss-profiles: (loaded - idle) / profiles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_per_profile_kib: Option<f64>,
    /// rss-profiles: growth per profile from the first 1,000 to the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_marginal_per_profile_kib: Option<f64>,
    /// refresh-10k: refreshes the refresher completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refreshed: Option<u64>,
    /// refresh-10k: seconds from the first refresh grant at the token endpoint to the
    /// last refresh completed (durable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_wall_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refreshes_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_in_flight: Option<u64>,
    /// refresh-10k: `oauth.max_concurrent_refreshes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<usize>,
    /// refresh-10k: CPU of the whole bench process while idle after the burst, in % of
    /// one core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_cpu_pct: Option<f64>,
    /// refresh-10k: the utime+stime clock ticks behind `idle_cpu_pct`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_cpu_ticks: Option<u64>,
    /// refresh-10k: seconds the sign-ins took (bootstraps and callbacks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed_s: Option<f64>,
    /// refresh-10k: spread of the due times handed out, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_spread_ms: Option<i64>,
    /// refresh-10k: refresh grants the fake token endpoint answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_endpoint_refreshes: Option<u64>,
    /// scheduler-10k: what fired (`palyrad`, or the peer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub implementation: Option<String>,
    /// scheduler-10k: active objectives (for the peer: jobs), all on one schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objectives: Option<usize>,
    /// scheduler-10k: the schedule's period, `*/every_s * * * * *`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub every_s: Option<u32>,
    /// scheduler-10k: seconds of boundaries measured (whole periods).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_s: Option<f64>,
    /// scheduler-10k: firings due in the window (objectives x boundaries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<u64>,
    /// scheduler-10k: firings of the window that arrived (a provider call at the fake,
    /// or the peer's job started).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received: Option<u64>,
    /// scheduler-10k: expected - received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missed: Option<u64>,
    /// scheduler-10k: arrival (or job start) minus the boundary, over received firings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lateness_p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lateness_p99_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lateness_max_ms: Option<f64>,
    /// scheduler-10k, the daemon: `scheduled_for` of its window runs minus the
    /// boundary they belong to (0 when the daemon schedules on the boundary).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_offset_p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_offset_max_ms: Option<f64>,
    /// scheduler-10k, the daemon: arrival minus `scheduled_for` (the lateness without
    /// that offset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_scheduled_p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_scheduled_p99_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_scheduled_max_ms: Option<f64>,
    /// scheduler-10k, the daemon: claim lateness, the durable run record (its
    /// `queued_at` when the firing waited for a run slot, else its `started_at`, both
    /// stamped just before the write) minus the boundary; the lateness above is the
    /// start lateness (the provider call's arrival).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim_p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim_p99_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim_max_ms: Option<f64>,
    /// scheduler-10k, the daemon: the time to drain a boundary's burst (its last call's
    /// arrival minus the boundary), the largest over the window's boundaries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_max_ms: Option<f64>,
    /// scheduler-10k, the daemon: VmRSS at the window's first boundary (the growth of
    /// the burst is `rss_mib` minus this).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_window_start_mib: Option<f64>,
    /// scheduler-10k, the daemon: TCP connections the fake provider accepted over the
    /// whole run (more than were ever open at once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_connections: Option<u64>,
    /// scheduler-10k: CPU of the whole bench process over the window, % of one core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_pct: Option<f64>,
    /// scheduler-10k: CPU of the measured side's threads over the window (the daemon's,
    /// or the peer's runtime), % of one core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side_cpu_pct: Option<f64>,
    /// scheduler-10k: VmRSS of the bench process before the objectives (jobs) were
    /// created, and at the end of the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_before_mib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_mib: Option<f64>,
    /// PostgreSQL rows: rps / the rps of the same scenario on redb in the same run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_redb: Option<f64>,
    /// cluster firings: instants with two rows, runs that called the provider twice,
    /// and calls for runs with no row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doubled: Option<u64>,
    /// cluster-takeover: seconds from the kill until the last of the dead node's
    /// objectives started a firing again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub takeover_s: Option<f64>,
    /// cluster-takeover: seconds from the kill until the others held every lease.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_moved_s: Option<f64>,
    /// cluster-refresh: refresh tokens the fake saw presented more than once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reused_refresh_tokens: Option<u64>,
    /// cluster-revocation: revocations measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocations: Option<u64>,
    /// cluster rows: the measurement in words, for the report's cluster table.
    #[serde(skip)]
    pub measured: String,
    #[serde(skip)]
    pub plan: Plan,
    #[serde(skip)]
    pub notes: String,
}

impl Row {
    pub fn new(plan: Plan, bench: &Bench) -> Self {
        // The peer of `scheduler-10k` keeps no state in the daemon's storage; `cluster`
        // runs on PostgreSQL (but for its single-node redb row) and names no suffix.
        let backend = match plan {
            Plan::Scheduler { peer: true, .. } => Backend::Redb,
            Plan::Cluster {
                measure: ClusterMeasure::SessionCheckRedb,
            } => Backend::Redb,
            Plan::Cluster { .. } => Backend::Postgres,
            _ => bench.backend,
        };
        let suffix = match plan {
            Plan::Cluster { .. } => "",
            _ => backend.suffix(),
        };
        Self {
            scenario: format!("{}{suffix}", plan.name()),
            backend,
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
            rss_growth_pct: None,
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
            claim_p50_ms: None,
            claim_p99_ms: None,
            claim_max_ms: None,
            drain_max_ms: None,
            rss_window_start_mib: None,
            provider_connections: None,
            cpu_pct: None,
            side_cpu_pct: None,
            rss_before_mib: None,
            rss_mib: None,
            vs_redb: None,
            doubled: None,
            takeover_s: None,
            lease_moved_s: None,
            revocations: None,
            reused_refresh_tokens: None,
            measured: String::new(),
            plan,
            notes: String::new(),
        }
    }

    pub fn from_comparison(plan: Plan, cmp: &Comparison, bench: &Bench) -> Self {
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

/// Adds to each PostgreSQL row the ratio of its rps to the redb row of the same
/// scenario in the same run (none for rows without rps, such as the scheduler's).
pub fn pair_rows(rows: &mut [Row]) {
    let redb: Vec<(Plan, f64)> = rows
        .iter()
        .filter(|r| r.backend == Backend::Redb)
        .map(|r| (r.plan, r.rps))
        .collect();
    for row in rows.iter_mut().filter(|r| r.backend == Backend::Postgres) {
        let Some((_, redb_rps)) = redb.iter().find(|(plan, _)| *plan == row.plan) else {
            continue;
        };
        if *redb_rps > 0.0 && row.rps > 0.0 {
            let ratio = row.rps / redb_rps;
            row.vs_redb = Some(round(ratio, 3));
            let note = format!("PostgreSQL/redb rps {ratio:.2} ({redb_rps:.0}/s on redb)");
            row.notes = if row.notes.is_empty() {
                note
            } else {
                format!("{note}; {}", row.notes)
            };
        }
    }
}

pub fn round(value: f64, digits: i32) -> f64 {
    let scale = 10_f64.powi(digits);
    (value * scale).round() / scale
}

/// One target of the issue, met or missed.
#[derive(Debug)]
pub struct Verdict {
    pub target: String,
    pub measured: String,
    pub pass: bool,
}

/// The Markdown report: what ran where, the table, the targets.
pub fn render_report(
    bench: &Bench,
    data_root: &Path,
    rows: &[Row],
    verdicts: &[Verdict],
) -> String {
    let mut out = String::new();
    let (cores, cpu, kernel) = machine();
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
        kernel, bench.load_before
    );
    let _ = writeln!(
        out,
        "Target: {target}; baseline: trivial axum `GET /` on its own runtime, same process."
    );
    if let Some(pg) = &bench.postgres {
        let _ = writeln!(
            out,
            "PostgreSQL (rows suffixed `-pg`): one throwaway server on this machine for the run (scripts/postgres: initdb, trust auth on 127.0.0.1), a fresh database per scenario, the daemon's default pool; {}.",
            pg.settings
        );
    }
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
        .filter(|r| !matches!(r.plan, Plan::Scheduler { .. } | Plan::Cluster { .. }))
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
        if matches!(
            row.plan,
            Plan::Rss | Plan::RssProfiles | Plan::Refresh | Plan::Soak { .. }
        ) {
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
    let cluster_rows: Vec<&Row> = rows
        .iter()
        .filter(|r| matches!(r.plan, Plan::Cluster { .. }))
        .collect();
    if !cluster_rows.is_empty() {
        let _ = writeln!(
            out,
            "\n### Cluster\n\nThree release palyrad nodes and the run's PostgreSQL server on this machine, one fresh database; the firing checker reads the `runs` table and the fake provider's calls (each names its run).\n"
        );
        let _ = writeln!(out, "| scenario | measured | notes |");
        let _ = writeln!(out, "|---|---|---|");
        for row in cluster_rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                row.scenario, row.measured, row.notes
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
