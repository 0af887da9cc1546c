//! The cluster's firing checker: every scheduled instant of every objective accounted
//! for by exactly one run row in PostgreSQL's `runs` table, and at most one provider
//! call per run, none for a run that has no row.
//!
//! It reads the table directly (psql), not through a node's API: the table is what
//! every node wrote, whatever any node keeps in memory.

use std::collections::{BTreeMap, BTreeSet};

use crate::testkit::cluster::try_psql;
use crate::testkit::model::ModelCall;

/// The statuses that account for a firing once it is over.
pub const SETTLED: [&str; 6] = [
    "succeeded",
    "failed",
    "skipped_budget",
    "skipped_overlap",
    "missed",
    "interrupted",
];

/// One row of `runs`, as the checker needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub objective_id: String,
    pub run_id: String,
    pub trigger: String,
    pub status: String,
    /// The scheduled instant in Unix milliseconds; None for manual and catch-up runs.
    pub scheduled_ms: Option<i64>,
    /// When the run started, in Unix milliseconds (None for a record that never ran).
    pub started_ms: Option<i64>,
    /// The node that ran it, as its record names it (empty when it names none).
    pub node_id: String,
    /// How late it started, when it was found late after a takeover.
    pub late_by_ms: Option<i64>,
    /// Why it failed, if it did (empty otherwise).
    pub error: String,
}

/// Every row of `runs` in the database at `db_url`.
pub fn read_runs(db_url: &str) -> Result<Vec<RunRow>, String> {
    let out = try_psql(
        db_url,
        "SELECT objective_id, coalesce(run_id, ''), coalesce(trigger, ''), \
                coalesce(status, ''), \
                coalesce((extract(epoch FROM scheduled_for) * 1000)::bigint::text, ''), \
                coalesce((extract(epoch FROM started_at) * 1000)::bigint::text, ''), \
                coalesce(r->>'node_id', ''), coalesce(r->>'late_by_ms', ''), \
                replace(replace(coalesce(r->>'error', ''), '|', '/'), E'\\n', ' ') \
           FROM (SELECT *, convert_from(value, 'UTF8')::jsonb->'r' AS r FROM runs) t \
          ORDER BY objective_id, seq",
    )?;
    let ms = |field: &str| -> Result<Option<i64>, String> {
        if field.is_empty() {
            return Ok(None);
        }
        field
            .parse()
            .map(Some)
            .map_err(|e| format!("a time {field:?}: {e}"))
    };
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split('|').collect();
            let [
                objective_id,
                run_id,
                trigger,
                status,
                scheduled,
                started,
                node_id,
                late_by,
                error,
            ] = f[..]
            else {
                return Err(format!("a run row {line:?}"));
            };
            Ok(RunRow {
                objective_id: objective_id.to_owned(),
                run_id: run_id.to_owned(),
                trigger: trigger.to_owned(),
                status: status.to_owned(),
                scheduled_ms: ms(scheduled)?,
                started_ms: ms(started)?,
                node_id: node_id.to_owned(),
                late_by_ms: ms(late_by)?,
                error: error.to_owned(),
            })
        })
        .collect()
}

/// What should have fired: every multiple of `every_ms` (Unix milliseconds) after
/// `from_ms` and up to `to_ms`, for each objective.
#[derive(Debug, Clone)]
pub struct Expected {
    pub objectives: Vec<String>,
    pub every_ms: i64,
    /// Exclusive: the objectives were all created and active by then.
    pub from_ms: i64,
    /// Inclusive: every firing up to here is over when the rows are read.
    pub to_ms: i64,
}

impl Expected {
    /// The instants of one objective.
    pub fn instants(&self) -> impl Iterator<Item = i64> + '_ {
        let first = (self.from_ms / self.every_ms + 1) * self.every_ms;
        (first..=self.to_ms).step_by(usize::try_from(self.every_ms).unwrap_or(1))
    }
}

/// What the checker found. [`FiringReport::violations`] is empty when every promise
/// held.
#[derive(Debug, Clone, Default)]
pub struct FiringReport {
    /// Firings expected in the window, over all objectives.
    pub expected: usize,
    /// Instants in the window with no row: (objective, instant).
    pub missing: Vec<(String, i64)>,
    /// Instants with more than one row (the unique index should make this impossible).
    pub doubled: Vec<(String, i64)>,
    /// Instants in the window whose row is not settled: (objective, instant, status).
    pub unsettled: Vec<(String, i64, String)>,
    /// Rows per status, for instants in the window.
    pub statuses: BTreeMap<String, usize>,
    /// Rows per node that ran them, for instants in the window.
    pub nodes: BTreeMap<String, usize>,
    /// Rows of the window found late after a takeover.
    pub late: usize,
    /// Failed rows of the window per error (the first 80 characters).
    pub errors: BTreeMap<String, usize>,
    /// Rows that started a run (any instant, manual and catch-up runs too): with
    /// unattributed calls, more calls than this means some run called twice.
    pub started_rows: usize,
    /// Provider calls in all.
    pub calls: usize,
    /// Run ids that got more than one provider call.
    pub doubled_calls: Vec<String>,
    /// Run ids of provider calls that have no run row.
    pub orphan_calls: Vec<String>,
    /// Provider calls without a run id header.
    pub unattributed_calls: usize,
}

impl FiringReport {
    /// A line per broken promise (a few examples of each), empty when all held.
    pub fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        let few = |v: &[String]| v.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        if !self.missing.is_empty() {
            let v: Vec<String> = self
                .missing
                .iter()
                .map(|(o, t)| format!("{o}@{t}"))
                .collect();
            out.push(format!("{} firings missing: {}", v.len(), few(&v)));
        }
        if !self.doubled.is_empty() {
            let v: Vec<String> = self
                .doubled
                .iter()
                .map(|(o, t)| format!("{o}@{t}"))
                .collect();
            out.push(format!("{} firings doubled: {}", v.len(), few(&v)));
        }
        if !self.unsettled.is_empty() {
            let v: Vec<String> = self
                .unsettled
                .iter()
                .map(|(o, t, s)| format!("{o}@{t} {s}"))
                .collect();
            out.push(format!("{} firings never settled: {}", v.len(), few(&v)));
        }
        if !self.doubled_calls.is_empty() {
            out.push(format!(
                "{} runs called the provider twice: {}",
                self.doubled_calls.len(),
                few(&self.doubled_calls)
            ));
        }
        if !self.orphan_calls.is_empty() {
            out.push(format!(
                "{} provider calls for runs with no row: {}",
                self.orphan_calls.len(),
                few(&self.orphan_calls)
            ));
        }
        if self.unattributed_calls > 0 {
            out.push(format!(
                "{} provider calls carried no run id",
                self.unattributed_calls
            ));
        }
        out
    }

    /// One line for a log or a report.
    pub fn summary(&self) -> String {
        format!(
            "{} firings expected, {} missing, {} doubled, {} unsettled, {} rows started a run, \
             {} provider calls ({} doubled, {} orphan, {} without run id), statuses {:?}, \
             {} late, per node {:?}, errors {:?}",
            self.expected,
            self.missing.len(),
            self.doubled.len(),
            self.unsettled.len(),
            self.started_rows,
            self.calls,
            self.doubled_calls.len(),
            self.orphan_calls.len(),
            self.unattributed_calls,
            self.statuses,
            self.late,
            self.nodes,
            self.errors
        )
    }
}

/// Checks `rows` and the provider's `calls` against `expected`.
/// Take `calls` before reading `rows`: a run calls the provider only after its row
/// committed, so each call taken first has its row in the later read, while a call
/// that lands after the read names a row the read missed (an orphan that is not one).
pub fn check(rows: &[RunRow], calls: &[ModelCall], expected: &Expected) -> FiringReport {
    let mut report = FiringReport::default();
    let mut at: BTreeMap<(&str, i64), Vec<&RunRow>> = BTreeMap::new();
    for row in rows {
        if let Some(t) = row.scheduled_ms {
            at.entry((row.objective_id.as_str(), t))
                .or_default()
                .push(row);
        }
    }
    for objective in &expected.objectives {
        for t in expected.instants() {
            report.expected += 1;
            match at.get(&(objective.as_str(), t)).map(Vec::as_slice) {
                None | Some([]) => report.missing.push((objective.clone(), t)),
                Some([row]) => {
                    *report.statuses.entry(row.status.clone()).or_default() += 1;
                    *report.nodes.entry(row.node_id.clone()).or_default() += 1;
                    report.late += usize::from(row.late_by_ms.is_some());
                    if !row.error.is_empty() {
                        let reason: String = row.error.chars().take(80).collect();
                        *report.errors.entry(reason).or_default() += 1;
                    }
                    if !SETTLED.contains(&row.status.as_str()) {
                        report
                            .unsettled
                            .push((objective.clone(), t, row.status.clone()));
                    }
                }
                Some(_) => report.doubled.push((objective.clone(), t)),
            }
        }
    }
    // Outside the window too: no instant may have two rows.
    for ((objective, t), rows) in &at {
        if rows.len() > 1 && !report.doubled.iter().any(|(o, d)| o == objective && d == t) {
            report.doubled.push(((*objective).to_owned(), *t));
        }
    }
    report.started_rows = rows.iter().filter(|r| r.started_ms.is_some()).count();
    let run_ids: BTreeSet<&str> = rows.iter().map(|r| r.run_id.as_str()).collect();
    let mut per_run: BTreeMap<&str, usize> = BTreeMap::new();
    for call in calls {
        report.calls += 1;
        match call.run_id.as_deref() {
            Some(id) => *per_run.entry(id).or_default() += 1,
            None => report.unattributed_calls += 1,
        }
    }
    for (id, n) in per_run {
        if n > 1 {
            report.doubled_calls.push(id.to_owned());
        }
        if !run_ids.contains(id) {
            report.orphan_calls.push(id.to_owned());
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(objective: &str, seq: u32, t: i64, status: &str) -> RunRow {
        RunRow {
            objective_id: objective.into(),
            run_id: format!("{objective}-{seq}"),
            trigger: "schedule".into(),
            status: status.into(),
            scheduled_ms: Some(t),
            started_ms: Some(t),
            node_id: String::new(),
            late_by_ms: None,
            error: String::new(),
        }
    }

    fn call(run: Option<&str>) -> ModelCall {
        ModelCall {
            prompt: String::new(),
            at_unix_ns: 0,
            run_id: run.map(str::to_owned),
        }
    }

    #[test]
    fn every_broken_promise_is_named() {
        let expected = Expected {
            objectives: vec!["o".into()],
            every_ms: 2000,
            from_ms: 1000,
            to_ms: 8000,
        };
        assert_eq!(
            expected.instants().collect::<Vec<_>>(),
            [2000, 4000, 6000, 8000]
        );
        let rows = vec![
            row("o", 1, 2000, "succeeded"),
            row("o", 2, 4000, "running"),
            row("o", 3, 8000, "missed"),
            row("o", 4, 8000, "succeeded"),
        ];
        let calls = vec![
            call(Some("o-1")),
            call(Some("o-1")),
            call(Some("o-9")),
            call(None),
        ];
        let report = check(&rows, &calls, &expected);
        assert_eq!(report.missing, [("o".to_owned(), 6000)]);
        assert_eq!(report.doubled, [("o".to_owned(), 8000)]);
        assert_eq!(report.unsettled.len(), 1);
        assert_eq!(report.doubled_calls, ["o-1"]);
        assert_eq!(report.orphan_calls, ["o-9"]);
        assert_eq!(report.unattributed_calls, 1);
        assert_eq!(report.violations().len(), 6);
        let good = check(
            &rows[..1],
            &calls[..1],
            &Expected {
                to_ms: 2000,
                ..expected
            },
        );
        assert!(good.violations().is_empty(), "{good:?}");
    }
}
