//! The events the daemon raises, built where they arise so each rides the write of
//! the change it reports: a run's end, an objective pausing itself, a profile that
//! needs a new sign-in, refreshes that keep failing, and the TLS certificate's expiry.

use std::time::Duration;

use chrono::{DateTime, Utc};
use palyra_storage::{WriteOp, Writer};
use serde_json::json;

use super::model::{EventFilters, EventKind, event_op};
use crate::objectives::model::{ObjectiveRecord, ObjectiveState, RunRecord, RunStatus};

/// Longest run output a `run_completed` event carries, in characters.
pub const RUN_OUTPUT_MAX_CHARS: usize = 4000;

fn capped(text: &str, max: usize) -> (String, bool) {
    match text.char_indices().nth(max) {
        Some((cut, _)) => (format!("{}…", &text[..cut]), true),
        None => (text.to_owned(), false),
    }
}

/// The event of a periodic budget's soft threshold crossed by a run of `objective`
/// (`crate::usage::budget::threshold_crossed`), for the run's finish write.
pub fn budget_threshold(
    objective_id: &str,
    agent_id: &str,
    threshold: &crate::usage::budget::BudgetThreshold,
) -> WriteOp {
    event_op(
        EventKind::BudgetThreshold,
        threshold.subject.clone(),
        json!({ "objective_id": objective_id, "agent_id": agent_id,
                "detail": threshold.detail }),
        EventFilters {
            agent_id: Some(agent_id.to_owned()),
            objective_id: Some(objective_id.to_owned()),
        },
    )
}

/// The events of a finished run, for the write that records it: `run_completed`
/// (with its output, capped) or `run_failed`, and `objective_paused` when the finish
/// paused an objective that was active (`was_active`) before it.
pub fn run_finished(
    objective: &ObjectiveRecord,
    was_active: bool,
    run: &RunRecord,
) -> Vec<WriteOp> {
    let filters = EventFilters {
        agent_id: Some(objective.agent_id.clone()),
        objective_id: Some(objective.objective_id.clone()),
    };
    let mut ops = Vec::new();
    let subject = format!("objective {} ({})", objective.objective_id, objective.name);
    match run.status {
        RunStatus::Succeeded => {
            let (output, truncated) =
                capped(run.output.as_deref().unwrap_or(""), RUN_OUTPUT_MAX_CHARS);
            ops.push(event_op(
                EventKind::RunCompleted,
                subject,
                json!({ "run_id": run.run_id, "objective_id": objective.objective_id,
                        "agent_id": objective.agent_id, "output": output,
                        "output_truncated": truncated, "tokens": run.tokens }),
                filters,
            ));
        }
        RunStatus::Failed => ops.push(event_op(
            EventKind::RunFailed,
            subject,
            json!({ "run_id": run.run_id, "objective_id": objective.objective_id,
                    "agent_id": objective.agent_id, "error": run.error,
                    "consecutive_failures": objective.consecutive_failures }),
            filters,
        )),
        _ => {}
    }
    if was_active && objective.state == ObjectiveState::Paused {
        ops.push(objective_paused(objective));
    }
    ops
}

/// `objective_paused`, with why (`budget_exhausted`, `consecutive_failures`).
pub fn objective_paused(objective: &ObjectiveRecord) -> WriteOp {
    event_op(
        EventKind::ObjectivePaused,
        format!("objective {} ({})", objective.objective_id, objective.name),
        json!({ "objective_id": objective.objective_id, "agent_id": objective.agent_id,
                "reason": objective.state_reason }),
        EventFilters {
            agent_id: Some(objective.agent_id.clone()),
            objective_id: Some(objective.objective_id.clone()),
        },
    )
}

/// `profile_needs_reauth`, for the write that marks the profile.
pub fn profile_needs_reauth(profile_id: &str, reason: &str) -> WriteOp {
    event_op(
        EventKind::ProfileNeedsReauth,
        format!("auth profile {profile_id}"),
        json!({ "profile_id": profile_id, "reason": reason }),
        EventFilters::default(),
    )
}

/// `refresh_failing`, for the write that records the latest failed refresh.
pub fn refresh_failing(profile_id: &str, failures: u32, error: &str) -> WriteOp {
    event_op(
        EventKind::RefreshFailing,
        format!("auth profile {profile_id}"),
        json!({ "profile_id": profile_id, "consecutive_failures": failures, "error": error }),
        EventFilters::default(),
    )
}

/// Raises `certificate_expiring` now and then daily while the certificate expires
/// within `warn_before` (the writer's stop ends the task).
pub fn watch_certificate(writer: Writer, not_after: DateTime<Utc>, warn_before: Duration) {
    tokio::spawn(async move {
        let mut day = tokio::time::interval(Duration::from_secs(24 * 3600));
        loop {
            day.tick().await;
            if !writer.is_alive() {
                return;
            }
            let left = not_after - Utc::now();
            if left.to_std().map_or(true, |left| left <= warn_before) {
                let op = event_op(
                    EventKind::CertificateExpiring,
                    "the daemon's TLS certificate".to_owned(),
                    json!({ "not_after": not_after, "days_left": left.num_days(),
                            "message": format!("the TLS certificate expires at {not_after}") }),
                    EventFilters::default(),
                );
                if let Err(e) = writer.write(vec![op]).await {
                    tracing::warn!(error = %e, "recording certificate_expiring failed");
                }
            }
        }
    });
}

/// Transient refresh failures in a row that raise `refresh_failing` (once, as the
/// count reaches it).
pub const REFRESH_FAILING_AFTER: u32 = 3;

/// The event a recorded refresh result raises, for the write that records it: a
/// permanent failure marks the profile `needs_reauth` (`profile_needs_reauth`); the
/// third transient failure in a row raises `refresh_failing`.
pub fn refresh_recorded(record: &crate::registry::model::AuthProfileRecord) -> Option<WriteOp> {
    let crate::registry::model::AuthCredential::Oauth { refresh_state, .. } = &record.credential
    else {
        return None;
    };
    let error = refresh_state.last_error.as_deref().unwrap_or("");
    if refresh_state.needs_reauth {
        Some(profile_needs_reauth(&record.profile_id, error))
    } else if refresh_state.failure_count == REFRESH_FAILING_AFTER {
        Some(refresh_failing(
            &record.profile_id,
            refresh_state.failure_count,
            error,
        ))
    } else {
        None
    }
}
