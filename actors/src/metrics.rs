//! Metrics the actors record; the HTTP layer registers them and renders `/metrics`.
//!
//! Each metric is shared (an `Arc` inside), so the actors keep a clone and observe
//! without any lock or message.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::objectives::model::RunStatus;

/// Labels of a metric family: name and value pairs.
pub type Labels = Vec<(&'static str, String)>;

/// The actors' metrics. Cloning is shallow.
#[derive(Debug, Clone)]
pub struct ActorMetrics {
    /// Refresh attempts by outcome (`success`, `transient`, `permanent`).
    pub refreshes: Family<Labels, Counter>,
    /// Run records written, by status (`running`, `succeeded`, `skipped_budget`, ...).
    pub runs: Family<Labels, Counter>,
    /// Seconds between a firing's scheduled instant and the scheduler delivering it.
    pub scheduler_lateness_seconds: Histogram,
}

impl Default for ActorMetrics {
    fn default() -> Self {
        let metrics = Self {
            refreshes: Family::default(),
            runs: Family::default(),
            // 1 ms to about 65 s.
            scheduler_lateness_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
        };
        // Every series exists from the start at zero, so rates and absent-alerts work
        // before the first event.
        for outcome in REFRESH_OUTCOMES {
            metrics.refresh_series(outcome);
        }
        for status in RunStatus::ALL {
            metrics.run_series(status);
        }
        metrics
    }
}

const REFRESH_OUTCOMES: [&str; 3] = ["success", "transient", "permanent"];

impl ActorMetrics {
    fn run_series(&self, status: RunStatus) -> Counter {
        let status = crate::wire::wire_name(status);
        self.runs.get_or_create(&vec![("status", status)]).clone()
    }

    fn refresh_series(&self, outcome: &'static str) -> Counter {
        self.refreshes
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .clone()
    }

    pub(crate) fn count_run(&self, status: RunStatus) {
        self.run_series(status).inc();
    }

    pub(crate) fn count_refresh(&self, outcome: &'static str) {
        self.refresh_series(outcome).inc();
    }
}
