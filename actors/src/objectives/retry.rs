//! A run's task around the runner (`runner::execute`, called as it is): its attempts
//! (`retry`), the waits between them, and its deadline (`deadline_s`) over all of it;
//! the task's abort handle, so a cancel drops the provider call; and what a finished
//! run does to the objective's count of failed runs in a row (`pause_after_failures`).

use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};

use super::actor::ObjectivesActor;
use super::model::{
    AgentRecord, ObjectiveRecord, ObjectiveState, RetryPolicy, RunRecord, RunStatus,
};
use super::runner::{self, RunOutcome};
use super::tool_loop::Progress;
use crate::audit::{AuditEntry, AuditKind, AuditOutcome};
use crate::error::ActorError;
use crate::time::{now_ms, to_datetime};

/// What a run's task came to: the last attempt's outcome (tokens summed over every
/// attempt) and the retries it took.
#[derive(Debug, Default)]
pub(super) struct Driven {
    pub(super) outcome: RunOutcome,
    pub(super) retries: u32,
}

/// The limits a run's attempts are held to, fixed when it starts.
#[derive(Debug, Clone, Default)]
pub(super) struct RunPlan {
    pub(super) retry: Option<RetryPolicy>,
    pub(super) deadline: Option<Duration>,
    /// A retry never starts at or after this instant: the objective's next scheduled
    /// firing.
    pub(super) retry_before: Option<DateTime<Utc>>,
    /// Tokens the budget has left when the run starts: no retry once they are spent.
    pub(super) tokens_left: Option<u64>,
}

impl RunPlan {
    pub(super) fn of(objective: &ObjectiveRecord) -> Self {
        Self {
            retry: objective.retry.clone(),
            deadline: objective
                .deadline_s
                .map(|s| Duration::from_secs(u64::from(s))),
            retry_before: objective.next_run_at,
            tokens_left: objective
                .budget
                .max_tokens
                .map(|max| max.saturating_sub(objective.usage.tokens)),
        }
    }
}

/// Whether a failed attempt is worth another: the runner says so when every candidate
/// failed (or was passed over) for a reason that passes (rate limited, unavailable,
/// cooling down), never for a refusal of the request itself, a credential or billing.
fn retryable(outcome: &RunOutcome) -> bool {
    outcome.error.is_some() && outcome.retryable
}

/// The wait before retry number `retry` (0 for the first): `backoff_s` doubling, at
/// most an hour.
fn backoff(policy: &RetryPolicy, retry: u32) -> Duration {
    let factor = 1u64 << retry.min(12);
    Duration::from_secs((u64::from(policy.backoff_s) * factor).min(3600))
}

/// Runs `attempt` until it succeeds, fails in a way a retry cannot help, or `plan`
/// allows no further attempt; the whole of it within the deadline, past which the
/// run fails with `deadline_exceeded` (the attempt going is dropped, and its record
/// keeps what it published to `progress`: its transcript so far and its tokens).
pub(super) async fn drive<F, Fut>(plan: RunPlan, progress: &Progress, mut attempt: F) -> Driven
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = RunOutcome>,
{
    let started = tokio::time::Instant::now();
    let mut driven = Driven::default();
    let mut tokens = 0u64;
    let attempts = async {
        loop {
            // What an earlier attempt published is in its outcome already.
            progress.take();
            let outcome = attempt().await;
            tokens = tokens.saturating_add(outcome.tokens);
            let failed_retryably = retryable(&outcome);
            driven.outcome = outcome;
            let Some(policy) = plan.retry.as_ref().filter(|_| failed_retryably) else {
                return;
            };
            if driven.retries + 1 >= policy.max_attempts {
                return;
            }
            // Not before a candidate is usable again: sooner would only pass them over.
            let cooling = driven.outcome.usable_at.map_or(Duration::ZERO, |at| {
                (at - to_datetime(now_ms())).to_std().unwrap_or_default()
            });
            let wait = backoff(policy, driven.retries).max(cooling);
            let retry_at =
                to_datetime(now_ms()) + chrono::Duration::from_std(wait).unwrap_or_default();
            if plan.retry_before.is_some_and(|next| retry_at >= next) {
                return;
            }
            if plan.tokens_left.is_some_and(|left| tokens >= left) {
                return;
            }
            if plan.deadline.is_some_and(|d| started.elapsed() + wait >= d) {
                return;
            }
            tokio::time::sleep(wait).await;
            driven.retries += 1;
        }
    };
    match plan.deadline {
        Some(deadline) => {
            if tokio::time::timeout(deadline.saturating_sub(started.elapsed()), attempts)
                .await
                .is_err()
            {
                let so_far = progress.take().unwrap_or_default();
                let spent = so_far
                    .prompt_tokens
                    .saturating_add(so_far.completion_tokens);
                tokens = tokens.saturating_add(spent);
                driven.outcome = RunOutcome {
                    error: Some(format!(
                        "deadline_exceeded: the run went past its deadline of {} s",
                        deadline.as_secs()
                    )),
                    prompt_tokens: so_far.prompt_tokens,
                    completion_tokens: so_far.completion_tokens,
                    attempts: so_far.attempts,
                    transcript: so_far.transcript,
                    ..RunOutcome::default()
                };
            }
        }
        None => attempts.await,
    }
    driven.outcome.tokens = tokens;
    driven
}

impl ObjectivesActor {
    /// Starts the task of a run whose record is durable: its attempts on a tokio
    /// worker, the abort handle kept for a cancel. A run cancelled while its record
    /// was being written never calls the provider.
    pub(super) fn spawn_run(
        &mut self,
        objective_id: String,
        run: RunRecord,
        agent: Option<AgentRecord>,
        objective: ObjectiveRecord,
        ctx: &mut Context<Self>,
    ) {
        if self.cancels.contains_key(&run.run_id) {
            self.finish_run(
                &objective_id,
                run,
                Err(ActorError::Stopped("objectives")),
                ctx,
            );
            return;
        }
        let registry = self.registry.clone();
        let refresher = self.refresher.clone();
        let client = self.http_client.clone();
        let timeout = self.policy.provider_timeout;
        let run_id = run.run_id.clone();
        let plan = RunPlan::of(&objective);
        let tools = runner::ToolsContext {
            policy: self.policy.tools.clone(),
            audit: self.audit.clone(),
        };
        let progress = Progress::default();
        let task = tokio::spawn(async move {
            drive(plan, &progress.clone(), || {
                let (registry, refresher, client, tools, progress) = (
                    registry.clone(),
                    refresher.clone(),
                    client.clone(),
                    tools.clone(),
                    progress.clone(),
                );
                let (agent, objective, run_id) = (agent.clone(), objective.clone(), run_id.clone());
                async move {
                    runner::execute(
                        &tools, &registry, &refresher, &client, agent, &objective, &run_id,
                        timeout, &progress,
                    )
                    .await
                }
            })
            .await
        });
        self.aborts.insert(run.run_id.clone(), task.abort_handle());
        ctx.spawn(
            async move { task.await.map_err(|_| ActorError::Stopped("objectives")) }
                .into_actor(self)
                .map(move |outcome, act, ctx| act.finish_run(&objective_id, run, outcome, ctx)),
        );
    }
}

/// Counts a finished run in the objective's failures in a row: a success resets the
/// count, a failure adds one and pauses the objective at `pause_after_failures`
/// (`state_reason: "consecutive_failures"`); the audit write of that pause is
/// returned to go with the objective's. Cancelled, interrupted and skipped runs
/// neither count nor reset.
pub(super) fn count_failure(
    audit: &crate::audit::AuditLog,
    objective: &mut ObjectiveRecord,
    status: RunStatus,
) -> Option<palyra_storage::WriteOp> {
    match status {
        RunStatus::Succeeded => objective.consecutive_failures = 0,
        RunStatus::Failed => {
            objective.consecutive_failures = objective.consecutive_failures.saturating_add(1);
            if objective.pause_after_failures > 0
                && objective.consecutive_failures >= objective.pause_after_failures
                && objective.state == ObjectiveState::Active
            {
                objective.state = ObjectiveState::Paused;
                objective.state_reason = Some("consecutive_failures".into());
                objective.next_run_at = None;
                tracing::warn!(objective_id = %objective.objective_id, failures = objective.consecutive_failures, "objective paused after consecutive failed runs");
                return Some(audit.op(AuditEntry::system(
                    AuditKind::ObjectiveLifecycle,
                    &objective.objective_id,
                    AuditOutcome::Failure,
                    format!(
                        "pause: {} failed runs in a row; now paused (consecutive_failures)",
                        objective.consecutive_failures
                    ),
                )));
            }
        }
        _ => {}
    }
    None
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// A failed outcome, retryable as the runner classifies answers: every status
    /// but a 4xx other than 429 (and an unreachable provider).
    fn failed(error: &str, tokens: u64) -> RunOutcome {
        let status = error
            .split("HTTP ")
            .nth(1)
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse::<u16>().ok());
        RunOutcome {
            error: Some(error.into()),
            tokens,
            retryable: !matches!(status, Some(s) if (400..500).contains(&s) && s != 429),
            ..RunOutcome::default()
        }
    }

    fn counting(
        outcomes: Vec<RunOutcome>,
    ) -> (
        Arc<AtomicU32>,
        impl FnMut() -> std::future::Ready<RunOutcome>,
    ) {
        let calls = Arc::new(AtomicU32::new(0));
        let seen = Arc::clone(&calls);
        let mut outcomes = outcomes.into_iter();
        (calls, move || {
            seen.fetch_add(1, Ordering::SeqCst);
            std::future::ready(outcomes.next().unwrap_or_default())
        })
    }

    fn retry(max_attempts: u32) -> Option<RetryPolicy> {
        Some(RetryPolicy {
            max_attempts,
            backoff_s: 0,
        })
    }

    #[tokio::test]
    async fn a_failed_run_is_retried_up_to_max_attempts_and_tokens_add_up() {
        let (calls, attempt) = counting(vec![
            failed("the provider answered HTTP 500", 3),
            failed("the provider answered HTTP 503", 4),
            failed("the provider could not be reached", 5),
            RunOutcome::default(),
        ]);
        let plan = RunPlan {
            retry: retry(3),
            ..RunPlan::default()
        };
        let driven = drive(plan, &Progress::default(), attempt).await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(driven.retries, 2);
        assert_eq!(driven.outcome.tokens, 12);
        assert!(driven.outcome.error.unwrap().contains("reached"));
    }

    #[tokio::test]
    async fn a_success_or_a_refused_request_is_not_retried_and_no_policy_means_one_attempt() {
        for first in [
            RunOutcome::default(),
            failed("the provider answered HTTP 400", 0),
            failed(
                "the provider answered HTTP 401: credential p was rejected",
                0,
            ),
        ] {
            let (calls, attempt) = counting(vec![first, RunOutcome::default()]);
            let plan = RunPlan {
                retry: retry(5),
                ..RunPlan::default()
            };
            drive(plan, &Progress::default(), attempt).await;
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
        let (calls, attempt) = counting(vec![failed("the provider answered HTTP 429", 0)]);
        let plan = RunPlan {
            retry: retry(2),
            ..RunPlan::default()
        };
        drive(plan, &Progress::default(), attempt).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "a 429 is retried");
        let (calls, attempt) = counting(vec![failed("HTTP 500", 0), RunOutcome::default()]);
        drive(RunPlan::default(), &Progress::default(), attempt).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_retry_waits_until_a_candidate_is_usable_again() {
        // Every candidate cools down a while: a retry sooner would only pass them over.
        let failed_until = |ms: i64| RunOutcome {
            usable_at: Some(to_datetime(now_ms()) + chrono::Duration::milliseconds(ms)),
            ..failed("the provider answered HTTP 500", 0)
        };
        let cooling = failed_until(30_000);
        let (calls, attempt) = counting(vec![failed_until(400), RunOutcome::default()]);
        let plan = RunPlan {
            retry: retry(2),
            ..RunPlan::default()
        };
        let started = tokio::time::Instant::now();
        let driven = drive(plan, &Progress::default(), attempt).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(driven.outcome.error.is_none());
        assert!(
            started.elapsed() >= Duration::from_millis(350),
            "{:?}",
            started.elapsed()
        );
        // Unless that is past the next firing.
        let (calls, attempt) = counting(vec![cooling, RunOutcome::default()]);
        let plan = RunPlan {
            retry: retry(2),
            retry_before: Some(to_datetime(now_ms()) + chrono::Duration::seconds(10)),
            ..RunPlan::default()
        };
        drive(plan, &Progress::default(), attempt).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn no_retry_past_the_next_firing_or_the_budget() {
        let past = to_datetime(now_ms());
        let (calls, attempt) = counting(vec![failed("HTTP 500", 0), RunOutcome::default()]);
        let plan = RunPlan {
            retry: retry(5),
            retry_before: Some(past),
            ..RunPlan::default()
        };
        drive(plan, &Progress::default(), attempt).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let (calls, attempt) = counting(vec![
            failed("HTTP 500", 6),
            failed("HTTP 500", 6),
            RunOutcome::default(),
        ]);
        let plan = RunPlan {
            retry: retry(5),
            tokens_left: Some(10),
            ..RunPlan::default()
        };
        let driven = drive(plan, &Progress::default(), attempt).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "the second spent the budget"
        );
        assert_eq!(driven.outcome.tokens, 12);
    }

    #[tokio::test]
    async fn the_deadline_covers_every_attempt() {
        let plan = RunPlan {
            retry: retry(10),
            deadline: Some(Duration::from_millis(300)),
            ..RunPlan::default()
        };
        let calls = Arc::new(AtomicU32::new(0));
        let seen = Arc::clone(&calls);
        let driven = drive(plan, &Progress::default(), move || {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    failed("HTTP 502", 1)
                } else {
                    // The third attempt hangs: the deadline drops it.
                    std::future::pending::<()>().await;
                    RunOutcome::default()
                }
            }
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert!(
            driven
                .outcome
                .error
                .as_deref()
                .unwrap()
                .starts_with("deadline_exceeded")
        );
        assert_eq!(
            driven.outcome.tokens, 2,
            "tokens of the attempts that finished"
        );
        assert_eq!(driven.retries, 2);
    }

    #[tokio::test]
    async fn a_run_past_its_deadline_keeps_the_transcript_and_tokens_so_far() {
        use super::super::tool_loop::Tally;
        use super::super::transcript::{TranscriptEntry, TranscriptKind};
        let plan = RunPlan {
            deadline: Some(Duration::from_millis(200)),
            ..RunPlan::default()
        };
        let progress = Progress::default();
        let published = progress.clone();
        let driven = drive(plan, &progress, move || {
            let published = published.clone();
            async move {
                // A turn is done and published, then the next call hangs.
                let mut tally = Tally {
                    prompt_tokens: 7,
                    completion_tokens: 3,
                    progress: published,
                    ..Tally::default()
                };
                tally
                    .transcript
                    .push(TranscriptEntry::new(TranscriptKind::ModelTurn));
                tally.publish();
                std::future::pending::<()>().await;
                RunOutcome::default()
            }
        })
        .await;
        let outcome = driven.outcome;
        assert!(outcome.error.unwrap().starts_with("deadline_exceeded"));
        assert_eq!(outcome.transcript.len(), 1);
        assert_eq!((outcome.prompt_tokens, outcome.completion_tokens), (7, 3));
        assert_eq!(outcome.tokens, 10);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 10,
            backoff_s: 5,
        };
        assert_eq!(backoff(&policy, 0), Duration::from_secs(5));
        assert_eq!(backoff(&policy, 2), Duration::from_secs(20));
        assert_eq!(backoff(&policy, 40), Duration::from_secs(3600));
    }
}
