//! What became of the firings of `scheduler-10k`: the measured window of boundaries,
//! and the daemon's and the peer's firings in it.

use std::time::Duration;

use palyra_actors::objectives::{RunRecord, RunStatus, RunTrigger};

use super::objective_number;

/// The boundaries of `scheduler-10k` that are measured, in Unix milliseconds:
/// `boundaries` of them, `every_ms` apart, from `first_ms`. `*/N * * * * *` in UTC falls
/// due on Unix seconds that are multiples of N, as N divides 60.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub first_ms: i64,
    pub every_ms: i64,
    pub boundaries: i64,
}

impl Window {
    /// The window after `ready_ms`: the first boundary after it is a warm-up, the
    /// window starts at the next one and covers `length` in whole periods.
    pub fn after(ready_ms: i64, every_s: u32, length: Duration) -> Self {
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
    pub fn end_ms(self) -> i64 {
        self.first_ms + self.boundaries * self.every_ms
    }

    pub fn seconds(self) -> f64 {
        (self.boundaries * self.every_ms) as f64 / 1000.0
    }

    /// Whether `ms` is one of the window's boundaries.
    pub fn is_boundary(self, ms: i64) -> bool {
        ms >= self.first_ms && ms < self.end_ms() && (ms - self.first_ms) % self.every_ms == 0
    }

    /// The boundary at or before `ns` (Unix nanoseconds), in Unix milliseconds.
    pub fn floor_ms(self, ns: i64) -> i64 {
        ns.div_euclid(1_000_000).div_euclid(self.every_ms) * self.every_ms
    }

    pub fn describe(self) -> String {
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

/// What became of the firings due in a window.
#[derive(Debug, Default)]
pub struct FiringReport {
    /// Objectives (jobs) x boundaries.
    pub expected: u64,
    /// Firings whose provider call arrived at the fake (peer: whose job started).
    pub received: u64,
    /// A boundary of an objective with no run record at all.
    pub no_run: u64,
    pub skipped_overlap: u64,
    pub skipped_budget: u64,
    pub failed: u64,
    /// Run records the daemon itself marked `missed`.
    pub missed_runs: u64,
    /// Any other run record with no call at the fake (for example still `running`
    /// when the daemon was stopped).
    pub not_called: u64,
    /// Run records (peer: job starts) beyond the first for one objective and boundary.
    pub duplicates: u64,
    /// Objectives whose calls and provider-calling runs did not pair up one to one.
    pub unpaired_objectives: u64,
    /// Calls at the fake that named no bench objective.
    pub unattributed_calls: u64,
    /// Active bench objectives found in the database (peer: jobs).
    pub population: u64,
    /// Arrival (peer: job start) minus boundary, of each received firing; sorted.
    pub lateness_ns: Vec<u64>,
    /// The daemon only: claim lateness, the run record's `queued_at` when the firing
    /// waited for a run slot, else its `started_at` (each stamped before its durable
    /// write, millisecond resolution), minus the boundary; sorted.
    pub record_lateness_ns: Vec<u64>,
    /// The daemon only: received firings that waited for a run slot.
    pub waited: u64,
    /// The daemon only: per boundary of the window, its last call's arrival minus the
    /// boundary (the time to drain its burst); sorted.
    pub drain_ns: Vec<u64>,
    /// The daemon only: each window run's `scheduled_for` minus its boundary; sorted.
    pub schedule_offset_ns: Vec<u64>,
    /// The daemon only: arrival minus the run's `scheduled_for`, of each received
    /// firing (the lateness without the offset above); sorted.
    pub after_scheduled_ns: Vec<u64>,
}

impl FiringReport {
    pub fn missed(&self) -> u64 {
        self.expected.saturating_sub(self.received)
    }

    pub fn finish(&mut self) {
        self.lateness_ns.sort_unstable();
        self.record_lateness_ns.sort_unstable();
        self.drain_ns.sort_unstable();
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
pub fn daemon_firings(
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
    let mut drain_by: HashMap<i64, u64> = HashMap::new();
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
                    let drain = drain_by.entry(boundary).or_default();
                    *drain = (*drain).max(u64::try_from(at - boundary_ns).unwrap_or(0));
                    if run.queued_at.is_some() {
                        report.waited += 1;
                    }
                    if let Some(claimed) = run.queued_at.or(run.started_at) {
                        let ms = claimed.timestamp_millis() - boundary;
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
    report.drain_ns = drain_by.into_values().collect();
    report.finish();
    report
}

/// The peer's firings in `window`: each job start belongs to the boundary at or before
/// it (the peer only fires at or after a boundary, and far less than a period late).
pub fn peer_firings(window: Window, jobs: usize, starts: Vec<(u32, i64)>) -> FiringReport {
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
