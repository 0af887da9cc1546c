//! Periodic budgets on the actor: before a firing starts a run, the period usage of
//! its objective and of its agent is read from the usage rollup
//! (`usage::budget`); a limit reached records the firing `skipped_budget` and leaves
//! the objective active, so runs resume when the period resets. The usage read is
//! kept for the run's finish, which records the soft threshold's crossing (an audit
//! event `budget_threshold`, in the same write as the finish).
//! Cost limits are priced with `usage.prices` (the policy's `prices`): the rows when
//! the usage is read, the run's answered calls at its finish.

use actix::prelude::*;
use chrono::{DateTime, Utc};
use palyra_storage::WriteOp;

use super::actor::ObjectivesActor;
use super::firing::{RunReply, RunStart};
use super::model::{ObjectiveRecord, RunRecord, RunStatus, RunSummary, new_run};
use crate::audit::{AuditEntry, AuditKind, AuditOutcome};
use crate::error::ActorError;
use crate::objectives::model::AttemptOutcome;
use crate::time::{now_ms, to_datetime};
use crate::usage::budget::{
    Limits, PeriodLimits, PeriodSeen, PeriodUsage, Periods, Spent, over_limit, threshold_crossed,
};
use crate::usage::{BUCKET_MS, Prices, UsageHandle};

/// The objective's and its agent's limits (none set: nothing to check).
fn limits_of(actor: &ObjectivesActor, objective: &ObjectiveRecord) -> Vec<PeriodLimits> {
    let b = &objective.budget;
    let tz = objective.automation.as_ref().map(|a| a.timezone.as_str());
    let mut out: Vec<PeriodLimits> = PeriodLimits::new(
        || format!("objective {}", objective.objective_id),
        tz,
        Limits {
            daily: b.daily_tokens,
            monthly: b.monthly_tokens,
        },
        Limits {
            daily: b.daily_cost_usd,
            monthly: b.monthly_cost_usd,
        },
        b.notify_at_percent,
    )
    .into_iter()
    .collect();
    if let Some(ab) = actor
        .agents
        .get(&objective.agent_id)
        .and_then(|a| a.budget.as_ref())
    {
        out.extend(PeriodLimits::new(
            || format!("agent {}", objective.agent_id),
            ab.timezone.as_deref(),
            Limits {
                daily: ab.daily_tokens,
                monthly: ab.monthly_tokens,
            },
            Limits {
                daily: ab.daily_cost_usd,
                monthly: ab.monthly_cost_usd,
            },
            ab.notify_at_percent,
        ));
    }
    out
}

impl ObjectivesActor {
    /// The instant budget periods are computed at: now, shifted by the test clock
    /// offset (`usage.budget_clock_offset_s`, 0 outside tests).
    fn budget_now(&self) -> DateTime<Utc> {
        to_datetime(now_ms()) + self.policy.budget_clock_offset
    }

    /// Starts a firing's run (or queues it for a slot) unless a periodic budget of its
    /// objective or agent is used up, in which case a firing of the schedule is
    /// recorded `skipped_budget` (with what it stepped over and its fence) and nothing
    /// pauses, and a manual one (`reply`) is refused with a conflict naming the reset.
    pub(super) fn admit_within_budget(
        &mut self,
        objective_id: &str,
        start: RunStart,
        ctx: &mut Context<Self>,
        reply: Option<RunReply>,
    ) {
        let Some(objective) = self.objectives.get(objective_id) else {
            return;
        };
        let limits = limits_of(self, objective);
        if limits.is_empty() {
            self.period_reads.remove(objective_id);
            return self.admit(objective_id, start, ctx, reply);
        }
        let now = self.budget_now();
        let periods: Result<Vec<Periods>, ActorError> =
            limits.iter().map(|l| l.periods(now)).collect();
        let Ok(periods) = periods else {
            // A period this build cannot place (no midnight): the limit cannot apply.
            return self.admit(objective_id, start, ctx, reply);
        };
        // Only as far back as a limit looks: a month's rows only for a monthly limit.
        let from = limits
            .iter()
            .zip(&periods)
            .map(|(l, p)| {
                if l.has_monthly() {
                    p.month_start
                } else {
                    p.day_start
                }
            })
            .min()
            .unwrap_or(now);
        let usage = UsageHandle::new(self.storage.clone(), Prices::default());
        let prices = self.policy.prices.clone();
        let to = now + chrono::Duration::milliseconds(BUCKET_MS);
        let agent_id = objective.agent_id.clone();
        let oid = objective_id.to_owned();
        let read = async move { usage.rows_between(from, to).await };
        ctx.spawn(read.into_actor(self).map(move |rows, act, ctx| {
            let rows = match rows {
                Ok(rows) => rows,
                Err(e) => {
                    // Unknown usage: the firing is not run on a guess of it, and the
                    // database being away fails the run's own write anyway.
                    tracing::warn!(objective_id = %oid, error = %e, "reading the period usage failed; the firing is skipped");
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(e));
                        return;
                    }
                    return act.skip_for_budget(&oid, start, "the period usage could not be read".into(), ctx);
                }
            };
            let mut seen = Vec::new();
            for (limits, periods) in limits.into_iter().zip(periods) {
                let used = if limits.subject.starts_with("objective ") {
                    PeriodUsage::sum(&rows, &periods, &prices, |r| r.objective_id == oid)
                } else {
                    PeriodUsage::sum(&rows, &periods, &prices, |r| r.agent_id == agent_id)
                };
                if let Some(why) = over_limit(&limits, used, &periods) {
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(ActorError::Conflict(why)));
                        return;
                    }
                    return act.skip_for_budget(&oid, start, why, ctx);
                }
                seen.push(PeriodSeen {
                    limits,
                    usage: used,
                });
            }
            act.period_reads.insert(oid.clone(), seen);
            act.admit(&oid, start, ctx, reply);
        }));
    }

    /// Starts the run now, or queues it when no slot is free.
    fn admit(
        &mut self,
        objective_id: &str,
        start: RunStart,
        ctx: &mut Context<Self>,
        reply: Option<RunReply>,
    ) {
        let Some(agent_id) = self
            .objectives
            .get(objective_id)
            .map(|o| o.agent_id.clone())
        else {
            return;
        };
        if self.has_slot(&agent_id) {
            self.start_run_as(objective_id, start, ctx, reply);
        } else {
            self.enqueue(objective_id, start, ctx, reply);
        }
    }

    /// Records the firing `skipped_budget` with `why`; the objective stays active.
    fn skip_for_budget(
        &mut self,
        objective_id: &str,
        start: RunStart,
        why: String,
        ctx: &mut Context<Self>,
    ) {
        let Some(mut objective) = self.objectives.get(objective_id).map(|o| (**o).clone()) else {
            return;
        };
        let mut run = new_run(
            &mut objective,
            start.trigger,
            RunStatus::SkippedBudget,
            start.scheduled_for,
            Some(why.clone()),
        );
        run.error = Some(why);
        let now = to_datetime(now_ms());
        objective.last_run = Some(RunSummary {
            run_id: run.run_id.clone(),
            status: run.status,
            at: now,
        });
        objective.updated_at = now;
        tracing::info!(objective_id, run_id = %run.run_id, "periodic budget used up; firing skipped");
        let mut ops = start.missed;
        ops.extend(self.run_ops(&objective, &run));
        ops.push(self.objective_write(&objective));
        ops.extend(start.fence);
        self.objectives
            .insert(objective_id.to_owned(), Box::new(objective));
        let oid = objective_id.to_owned();
        ctx.spawn(self.commit(ops).map(move |result, _, _| {
            if let Err(e) = result {
                tracing::error!(objective_id = %oid, error = %e, "recording a budget-skipped firing failed");
            }
        }));
    }

    /// The audit writes of the soft thresholds `run` crosses, for its finish request.
    /// Taken once: a later run reads the usage afresh.
    pub(super) fn threshold_ops(&mut self, run: &RunRecord) -> Vec<WriteOp> {
        let Some(seen) = self.period_reads.remove(&run.objective_id) else {
            return Vec::new();
        };
        let agent_id = self
            .objectives
            .get(&run.objective_id)
            .map(|o| o.agent_id.clone())
            .unwrap_or_default();
        let spent = run_spent(&self.policy.prices, run);
        seen.into_iter()
            .filter_map(|s| threshold_crossed(&s.limits, s.usage, spent))
            .flat_map(|t| {
                tracing::info!(subject = %t.subject, detail = %t.detail, "budget threshold crossed");
                // The notification rides the same write as the audit event and the finish.
                let event = crate::notifications::events::budget_threshold(
                    &run.objective_id,
                    &agent_id,
                    &t,
                );
                let audit = self.audit.op(AuditEntry::system(
                    AuditKind::BudgetThreshold,
                    &t.subject,
                    AuditOutcome::Success,
                    t.detail,
                ));
                [audit, event]
            })
            .collect()
    }
}

/// What `run` adds to its periods: its tokens, and the cost of its answered calls
/// (as the rollup counts them), priced with `prices`.
fn run_spent(prices: &Prices, run: &RunRecord) -> Spent {
    let mut spent = Spent {
        tokens: run.tokens,
        ..Spent::default()
    };
    for attempt in run
        .attempts
        .iter()
        .filter(|a| a.outcome == AttemptOutcome::Ok)
    {
        let input = i64::try_from(attempt.prompt_tokens).unwrap_or(i64::MAX);
        let output = i64::try_from(attempt.completion_tokens).unwrap_or(i64::MAX);
        let provider = attempt.provider.as_deref().unwrap_or("");
        let call = Spent::of(prices, provider, &attempt.model, input, output);
        spent.cost_usd += call.cost_usd;
        spent.unpriced_tokens = spent.unpriced_tokens.saturating_add(call.unpriced_tokens);
    }
    spent
}
