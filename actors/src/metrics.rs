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
    /// Tokens of answered provider calls, by provider, model and direction (`input`,
    /// `output`); at most [`MAX_TOKEN_SERIES`] provider and model pairs, later ones
    /// counted as model `other`, so a misconfigured agent cannot grow `/metrics`.
    pub tokens: Family<Labels, Counter>,
    /// `runs`' series of each status, in [`RunStatus::ALL`]'s order: counting a run
    /// finds its series without building labels (every firing counts one).
    run_counts: std::sync::Arc<Vec<Counter>>,
    /// The provider and model pairs `tokens` has series for.
    token_models: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<(String, String)>>>,
}

/// The most provider and model pairs with series of their own in `tokens`.
pub const MAX_TOKEN_SERIES: usize = 100;

impl Default for ActorMetrics {
    fn default() -> Self {
        let runs = Family::<Labels, Counter>::default();
        let run_counts = RunStatus::ALL
            .iter()
            .map(|status| {
                runs.get_or_create(&vec![("status", crate::wire::wire_name(status))])
                    .clone()
            })
            .collect();
        let metrics = Self {
            refreshes: Family::default(),
            runs,
            run_counts: std::sync::Arc::new(run_counts),
            // 1 ms to about 65 s.
            scheduler_lateness_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            tokens: Family::default(),
            token_models: Default::default(),
        };
        // Every series exists from the start at zero, so rates and absent-alerts work
        // before the first event.
        for outcome in REFRESH_OUTCOMES {
            metrics.refresh_series(outcome);
        }
        metrics
    }
}

const REFRESH_OUTCOMES: [&str; 3] = ["success", "transient", "permanent"];

impl ActorMetrics {
    fn refresh_series(&self, outcome: &'static str) -> Counter {
        self.refreshes
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .clone()
    }

    pub(crate) fn count_run(&self, status: RunStatus) {
        match RunStatus::ALL
            .iter()
            .position(|s| *s == status)
            .and_then(|i| self.run_counts.get(i))
        {
            Some(counter) => {
                counter.inc();
            }
            // A status left out of `ALL` still counts, by its labels.
            None => {
                self.runs
                    .get_or_create(&vec![("status", crate::wire::wire_name(status))])
                    .inc();
            }
        }
    }

    pub(crate) fn count_tokens(&self, provider: &str, model: &str, input: u64, output: u64) {
        let model = {
            let mut known = self
                .token_models
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let pair = (provider.to_owned(), model.to_owned());
            if known.contains(&pair) || known.len() < MAX_TOKEN_SERIES {
                known.insert(pair);
                model.to_owned()
            } else {
                "other".to_owned()
            }
        };
        for (direction, n) in [("input", input), ("output", output)] {
            self.tokens
                .get_or_create(&vec![
                    ("provider", provider.to_owned()),
                    ("model", model.clone()),
                    ("direction", direction.to_owned()),
                ])
                .inc_by(n);
        }
    }

    pub(crate) fn count_refresh(&self, outcome: &'static str) {
        self.refresh_series(outcome).inc();
    }
}
