//! What a finished run adds to the rollup, and to the token counters of `/metrics`.

use std::collections::BTreeMap;

use palyra_storage::WriteOp;

use crate::metrics::ActorMetrics;
use crate::objectives::model::{AttemptOutcome, RunRecord};
use crate::time::{now_ms, to_datetime};
use crate::usage::model::{UsageRow, bucket_of, usage_key};

/// The additive writes of `run`'s answered calls, one per profile, provider and model,
/// in the bucket of its finish, in key order. They go in the same write request as the
/// run's finish record, so the rollup holds a run's tokens exactly when its record
/// does (and keeps them after the record is pruned); key order keeps two nodes'
/// transactions from locking the same rows in opposite orders on PostgreSQL.
pub fn rollup_ops(agent_id: &str, run: &RunRecord) -> Vec<WriteOp> {
    let at = run
        .finished_at
        .map_or_else(now_ms, |t| t.timestamp_millis());
    let bucket_start = to_datetime(bucket_of(at));
    let mut sums: BTreeMap<(&str, &str, &str), (i64, i64, i64)> = BTreeMap::new();
    for attempt in &run.attempts {
        if attempt.outcome != AttemptOutcome::Ok {
            continue;
        }
        let provider = attempt.provider.as_deref().unwrap_or("");
        let sum = sums
            .entry((&attempt.profile_id, provider, &attempt.model))
            .or_default();
        sum.0 = sum.0.saturating_add(as_i64(attempt.prompt_tokens));
        sum.1 = sum.1.saturating_add(as_i64(attempt.completion_tokens));
        sum.2 += 1;
    }
    sums.into_iter()
        .map(|((profile_id, provider, model), (input, output, calls))| {
            let row = UsageRow {
                bucket_start,
                agent_id: agent_id.to_owned(),
                objective_id: run.objective_id.clone(),
                profile_id: profile_id.to_owned(),
                provider: provider.to_owned(),
                model: model.to_owned(),
                input_tokens: input,
                output_tokens: output,
                calls,
            };
            WriteOp::add(usage_key(&row), &row)
        })
        .collect()
}

/// Counts `run`'s tokens in `palyra_tokens_total` by provider, model and direction;
/// called once per finished run.
pub fn count_tokens(metrics: &ActorMetrics, run: &RunRecord) {
    for attempt in &run.attempts {
        if attempt.outcome == AttemptOutcome::Ok {
            let provider = attempt.provider.as_deref().unwrap_or("");
            metrics.count_tokens(
                provider,
                &attempt.model,
                attempt.prompt_tokens,
                attempt.completion_tokens,
            );
        }
    }
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
