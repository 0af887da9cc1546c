//! `scheduler-10k`: the daemon's scheduler, then tokio-cron-scheduler on the same job
//! set, each measured over the same kind of window.

use std::sync::Arc;
use std::time::Duration;

use palyra::testkit::model::FakeModel;
use palyra_actors::objectives::{ObjectiveRecord, ObjectiveState, RunRecord};
use palyra_actors::secret::random_token;
use palyra_storage::{Table, decode_record};

use super::firings::{FiringReport, Window, daemon_firings, peer_firings};
use super::peer::{CallLog, PeerScheduler};
use super::{CreateObjective, SCHEDULER_PREFIX, create_agent, objective_number};
use crate::backends::Backend;
use crate::bench::Bench;
use crate::driver::{BoxError, Limit, bearer_header, drive, nearest_rank_ms};
use crate::fakes::model_calls;
use crate::plan::{PEER_NAME, Plan};
use crate::probes::{CpuSnapshot, CpuUse, sleep_until_unix_ms, unix_ms, vm_rss_mib, writer_counts};
use crate::report::{Row, round};
use crate::servers::{StoredState, report_stop};

/// After the window of `scheduler-10k`, how long calls of firings in the window may
/// still arrive at the fake provider before the daemon is stopped.
const SCHEDULER_DRAIN: Duration = Duration::from_secs(10);

/// The same for tokio-cron-scheduler's jobs, which only record an instant.
const PEER_DRAIN: Duration = Duration::from_secs(1);

/// The daemon's threads in this process: `palyrad` (the actix System: the actors and
/// their timers), `palyra-worker` (HTTP, provider calls), `palyra-writer` (the writer).
/// On PostgreSQL the server's own processes are not in this process, so not counted.
fn is_daemon_thread(name: &str) -> bool {
    name.starts_with("palyra") && name != "palyra-bench"
}

/// The peer scheduler's threads: `tcs` and its runtime's `tcs-worker`s.
fn is_peer_thread(name: &str) -> bool {
    name.starts_with("tcs")
}

/// The bench objectives of a stopped daemon (ids of the active ones, and how many are
/// not active) and every run record, read from its storage (redb or PostgreSQL) through
/// the same async read API.
async fn read_objectives_and_runs(
    stored: &StoredState,
) -> Result<(Vec<String>, u64, Vec<RunRecord>), BoxError> {
    let storage = stored.open().await?;
    let mut ids = Vec::new();
    let mut inactive = 0;
    for (_, value) in storage.read_table(Table::Objectives).await? {
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
    for (_, value) in storage.read_table(Table::Runs).await? {
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
    /// job set (one after the other, so neither takes CPU from the other). The peer
    /// keeps nothing in storage, so it runs only beside the redb daemon.
    pub async fn scheduler(&self, objectives: usize, every_s: u32) -> Result<Vec<Row>, BoxError> {
        let ours = self.scheduler_daemon(objectives, every_s).await?;
        if self.backend != Backend::Redb {
            return Ok(vec![ours]);
        }
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
        let fake = FakeModel::try_start(2)?;
        let token = random_token();
        let base = fake.url();
        // The daemon runs with its default cap on concurrent runs; the report names it.
        let cap = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen_cap = Arc::clone(&cap);
        let daemon = self
            .start_daemon(&token, 1_000_000, move |s| {
                s.providers.openai.api_base_url = base;
                seen_cap.store(
                    s.objectives.max_concurrent_runs,
                    std::sync::atomic::Ordering::SeqCst,
                );
            })
            .await?;
        let cap = cap.load(std::sync::atomic::Ordering::SeqCst);
        let addr = daemon.addr();
        let bearer = bearer_header(&token)?;
        create_agent(addr, &bearer).await?;
        let pid = std::process::id();
        let rss_before = vm_rss_mib(pid)?;
        let schedule = format!("*/{every_s} * * * * *");
        eprintln!("  creating {n} active standing orders on `{schedule}` (UTC)");
        let create = Arc::new(CreateObjective::new(
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
        let rss_window_start = vm_rss_mib(pid)?;
        let (commits_before, writes_before) = writer_counts(daemon.writer());
        let connections_before = fake.connections();
        sleep_until_unix_ms(window.end_ms()).await;
        let cpu = CpuSnapshot::take()?.since(&cpu_before);
        let (commits_after, writes_after) = writer_counts(daemon.writer());
        let connections_window = fake.connections() - connections_before;
        let rss_end = vm_rss_mib(pid)?;
        eprintln!(
            "  letting the window's calls arrive for {} s more",
            SCHEDULER_DRAIN.as_secs()
        );
        tokio::time::sleep(SCHEDULER_DRAIN).await;
        let stored = daemon.stop_keeping_state().await?;
        let connections = fake.connections();
        let max_in_flight = fake.max_in_flight.load(std::sync::atomic::Ordering::SeqCst);
        let (calls, unreadable) = model_calls(fake.take_answered());
        report_stop(fake.stop());
        let (ids, inactive, runs) = read_objectives_and_runs(&stored).await?;
        drop(stored);
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
            row.claim_p50_ms = Some(round(nearest_rank_ms(rec, 0.50), 3));
            row.claim_p99_ms = Some(round(nearest_rank_ms(rec, 0.99), 3));
            row.claim_max_ms = Some(round(rec.last().map_or(0.0, |ns| *ns as f64 / 1e6), 3));
            notes.push(format!(
                "lateness is start lateness, the call's arrival at the fake minus the boundary, so it includes the durable run write and any wait for a run slot (objectives.max_concurrent_runs {}) before the call; claim lateness, the durable run record (queued_at for the {} firings that waited for a slot, else started_at, stamped before the write, ms resolution), p50 {:.0}, p99 {:.0}, max {:.0} ms after the boundary",
                cap,
                report.waited,
                nearest_rank_ms(rec, 0.50),
                nearest_rank_ms(rec, 0.99),
                rec.last().map_or(0.0, |ns| *ns as f64 / 1e6)
            ));
        }
        if let Some(max) = report.drain_ns.last() {
            row.drain_max_ms = Some(round(*max as f64 / 1e6, 3));
            notes.push(format!(
                "drain: a boundary's last call arrived p50 {:.0}, max {:.0} ms after the boundary (over {} boundaries)",
                nearest_rank_ms(&report.drain_ns, 0.50),
                *max as f64 / 1e6,
                report.drain_ns.len()
            ));
        }
        row.peak_in_flight = Some(max_in_flight as u64);
        row.max_in_flight = Some(cap);
        row.rss_window_start_mib = Some(round(rss_window_start, 2));
        row.provider_connections = Some(connections);
        notes.push(format!(
            "the fake had at most {max_in_flight} calls in flight at once; VmRSS {rss_window_start:.1} MiB at the window's first boundary, {rss_end:.1} MiB at its end ({:+.1} MiB over the bursts)",
            rss_end - rss_window_start
        ));
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
