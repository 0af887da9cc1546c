//! Firings and runs: what a firing comes to (`decide_firing`, the one decision over
//! state, budget, overlap and the run going), starting a run (its record durable
//! before the provider call), and finishing it (usage, the budget's pause, the firing
//! that waited).

use actix::prelude::*;
use chrono::{DateTime, Utc};
use palyra_storage::WriteOp;

use super::actor::{ObjectivesActor, next_run};
use super::model::{
    ObjectiveRecord, ObjectiveState, Overlap, RunRecord, RunStatus, RunSummary, RunTrigger,
    new_run, run_key,
};
use super::retry::{Driven, count_failure};
use super::waiting::WaitingRun;
use crate::audit::{AuditEntry, AuditKind, AuditOutcome};
use crate::cluster::Claim;
use crate::error::ActorError;
use crate::scheduler::{Fire, Trigger};
use crate::time::{now_ms, to_datetime};

/// What a firing comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FiringDecision {
    /// The objective is not active: nothing is recorded.
    Inactive,
    /// A scheduled, late or catch-up firing whose instant the objective has moved
    /// past (it changed meanwhile, or another firing claimed the instant): nothing is
    /// recorded.
    Superseded,
    /// The budget is used up: the firing is recorded as `skipped_budget` and the
    /// objective pauses.
    SkipBudget,
    /// A run is going and overlap is `queue_one` with no firing waiting yet: the
    /// firing waits as a durable `queued` run.
    Queue,
    /// A run is going and the firing may not wait: recorded as `skipped_overlap`.
    SkipOverlap,
    /// A run starts now.
    Start,
}

/// Decides what `firing` of `objective` comes to, given whether a run of it is going
/// and whether a firing already waits for that run. Pure, so every branch is tested
/// on its own; the order of the checks is the order of precedence.
pub(super) fn decide_firing(
    objective: &ObjectiveRecord,
    firing: &Fire,
    run_going: bool,
    firing_waiting: bool,
) -> FiringDecision {
    if objective.state != ObjectiveState::Active {
        return FiringDecision::Inactive;
    }
    if matches!(
        firing.trigger,
        Trigger::Schedule | Trigger::Late | Trigger::CatchUp
    ) && objective.next_run_at != Some(firing.scheduled_for)
    {
        return FiringDecision::Superseded;
    }
    if objective.budget_exhausted() {
        return FiringDecision::SkipBudget;
    }
    if !run_going {
        return FiringDecision::Start;
    }
    let overlap = objective
        .automation
        .as_ref()
        .map(|a| a.overlap)
        .unwrap_or_default();
    // A firing that already waited never waits again, and only one waits at a time.
    if overlap == Overlap::QueueOne && firing.trigger != Trigger::Queued && !firing_waiting {
        FiringDecision::Queue
    } else {
        FiringDecision::SkipOverlap
    }
}

impl Handler<Fire> for ObjectivesActor {
    type Result = ();

    fn handle(&mut self, msg: Fire, ctx: &mut Self::Context) {
        // At shutdown nothing new starts; the instant stays due for the next owner (or
        // this node's restart), which recovers it.
        if self.draining {
            return;
        }
        let Some(current) = self.objectives.get(&msg.objective_id) else {
            return;
        };
        // Only the node leasing the objective's shard fires it, and its write carries
        // the lease's fence: a node whose lease lapsed (paused, cut off) does nothing,
        // and one that has not noticed yet is refused by the database.
        let Some(claim) = self.cluster.claim(msg.objective_id.as_bytes()) else {
            tracing::debug!(objective_id = %msg.objective_id, "not fired: its shard is not this node's now");
            return;
        };
        let fence = claim.fence_op();
        let id = &msg.objective_id;
        let decision = decide_firing(
            current,
            &msg,
            self.running.contains_key(id)
                || self.elsewhere.contains_key(id)
                || self.waiting.contains(id),
            self.queued.contains_key(id),
        );
        if matches!(
            decision,
            FiringDecision::Inactive | FiringDecision::Superseded
        ) {
            return;
        }
        // Taken out rather than cloned (a clone was a tenth of a firing at 10,000 due
        // at once); every branch below puts it back as it leaves it.
        let Some(mut objective) = self.objectives.remove(id) else {
            return;
        };
        let now = to_datetime(now_ms());
        let mut missed = Vec::new();
        let trigger = match msg.trigger {
            Trigger::Schedule | Trigger::Queued | Trigger::Late => RunTrigger::Schedule,
            Trigger::CatchUp => RunTrigger::CatchUp,
        };
        if matches!(
            msg.trigger,
            Trigger::Schedule | Trigger::Late | Trigger::CatchUp
        ) {
            objective.last_scheduled_for = Some(msg.scheduled_for);
            let late = (now - msg.scheduled_for).num_microseconds().unwrap_or(0);
            self.metrics
                .scheduler_lateness_seconds
                .observe(late.max(0) as f64 / 1e6);
            // Instants this firing steps over (it came late: the database was away,
            // the node was slow) are each recorded once as missed, in the same write.
            let (skipped, after_now) = skipped_instants(&objective, msg.scheduled_for, now);
            // The walk's first instant after now is the next firing `next_run` would
            // find (nothing lies between the fired instant, now and it): one search of
            // the schedule instead of two.
            let runs = objective.state == ObjectiveState::Active
                && objective.automation.as_ref().is_some_and(|a| a.enabled);
            objective.next_run_at = match after_now {
                Some(t) if runs => Some(t),
                _ => next_run(&objective, msg.scheduled_for.max(now)),
            };
            objective.updated_at = now;
            for t in skipped {
                let run = new_run(
                    &mut objective,
                    RunTrigger::Schedule,
                    RunStatus::Missed,
                    Some(t),
                    Some("an earlier firing of the objective came too late for it".into()),
                );
                objective.last_scheduled_for = Some(t);
                missed.extend(self.run_ops(&objective, &run));
            }
            self.sync_schedule(&objective);
        }
        let scheduled_for = Some(msg.scheduled_for);
        match decision {
            // Returned above; kept as it was.
            FiringDecision::Inactive | FiringDecision::Superseded => {
                self.objectives
                    .insert(objective.objective_id.clone(), objective);
            }
            FiringDecision::SkipBudget => {
                let mut run = new_run(
                    &mut objective,
                    trigger,
                    RunStatus::SkippedBudget,
                    scheduled_for,
                    Some("budget exhausted".into()),
                );
                run.error = Some("the budget is exhausted; the objective is paused".into());
                objective.state = ObjectiveState::Paused;
                objective.state_reason = Some("budget_exhausted".into());
                objective.next_run_at = None;
                objective.last_run = Some(RunSummary {
                    run_id: run.run_id.clone(),
                    status: run.status,
                    at: now,
                });
                let mut ops = std::mem::take(&mut missed);
                ops.extend(self.run_ops(&objective, &run));
                ops.push(self.objective_write(&objective));
                ops.push(self.budget_audit_op(&objective));
                ops.push(crate::notifications::events::objective_paused(&objective));
                ops.extend(fence);
                self.sync_schedule(&objective);
                tracing::info!(objective_id = %objective.objective_id, "budget exhausted; objective paused");
                self.objectives
                    .insert(objective.objective_id.clone(), objective);
                ctx.spawn(self.commit(ops).map(|_, _, _| ()));
            }
            FiringDecision::Queue => {
                // The waiting firing is a durable `queued` run with its own instant.
                let mut run = new_run(
                    &mut objective,
                    trigger,
                    RunStatus::Queued,
                    scheduled_for,
                    None,
                );
                run.node_id = Some(self.cluster.node_id().to_owned());
                let mut ops = std::mem::take(&mut missed);
                ops.extend(self.run_ops(&objective, &run));
                ops.push(self.objective_write(&objective));
                ops.extend(fence);
                // It keeps its claim's instant and bytes for when it starts.
                let waited = WaitingRun::of(&objective.agent_id, objective.run_seq, &run);
                self.queued.insert(objective.objective_id.clone(), waited);
                self.objectives
                    .insert(objective.objective_id.clone(), objective);
                ctx.spawn(self.commit(ops).map(|_, _, _| ()));
            }
            FiringDecision::SkipOverlap => {
                let run = new_run(
                    &mut objective,
                    trigger,
                    RunStatus::SkippedOverlap,
                    scheduled_for,
                    Some("the previous run was still going".into()),
                );
                objective.last_run = Some(RunSummary {
                    run_id: run.run_id.clone(),
                    status: run.status,
                    at: now,
                });
                let mut ops = std::mem::take(&mut missed);
                ops.extend(self.run_ops(&objective, &run));
                ops.push(self.objective_write(&objective));
                ops.extend(fence);
                self.objectives
                    .insert(objective.objective_id.clone(), objective);
                ctx.spawn(self.commit(ops).map(|_, _, _| ()));
            }
            FiringDecision::Start => {
                let late_by_ms = (msg.trigger == Trigger::Late)
                    .then(|| (now - msg.scheduled_for).num_milliseconds().max(0));
                let start = RunStart {
                    trigger,
                    scheduled_for,
                    waited: None,
                    fence,
                    late_by_ms,
                    missed: std::mem::take(&mut missed),
                };
                self.objectives
                    .insert(objective.objective_id.clone(), objective);
                // Within the periodic budgets; over a concurrency cap it waits as `queued`.
                self.admit_within_budget(&msg.objective_id, start, ctx, None);
            }
        }
    }
}

/// How a run starts: what fired it, for which instant, the queued record it takes
/// over (if it waited), the lease fence its write carries, and how late it is.
pub(super) struct RunStart {
    pub(super) trigger: RunTrigger,
    pub(super) scheduled_for: Option<DateTime<Utc>>,
    /// The `queued` record of a firing that waited (its sequence number, when it was
    /// claimed, its bytes): the running record replaces it.
    pub(super) waited: Option<WaitingRun>,
    pub(super) fence: Option<WriteOp>,
    pub(super) late_by_ms: Option<i64>,
    /// Records of instants the firing stepped over, written with it.
    pub(super) missed: Vec<WriteOp>,
}

/// Scheduled instants after `fired` and at or before `now` (at most 100): what a late
/// firing steps over when it moves `next_run_at` past now; with the first instant
/// after `now` when the walk got there.
fn skipped_instants(
    objective: &ObjectiveRecord,
    fired: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (Vec<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let Some(schedule) = objective
        .automation
        .as_ref()
        .and_then(|a| crate::schedule::Schedule::parse(&a.schedule, &a.timezone).ok())
    else {
        return (Vec::new(), None);
    };
    let mut out = Vec::new();
    let mut cursor = schedule.next_after(fired);
    while let Some(t) = cursor.filter(|t| *t <= now) {
        if out.len() == 100 {
            return (out, None);
        }
        out.push(t);
        cursor = schedule.next_after(t);
    }
    (out, cursor)
}

/// The record that replaces a waiting firing's `queued` row: `status`, finished now
/// with `error` (the caller changes what differs for a start); it keeps the firing's
/// instant and when it was claimed.
pub(super) fn waited_record(
    waited: &WaitingRun,
    status: RunStatus,
    node_id: Option<String>,
    error: &str,
) -> RunRecord {
    RunRecord {
        run_id: format!("{}-{}", waited.objective_id, waited.seq),
        objective_id: waited.objective_id.clone(),
        trigger: waited.trigger,
        status,
        scheduled_for: waited.scheduled_for,
        started_at: None,
        finished_at: Some(to_datetime(now_ms())),
        tokens: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
        attempts: Vec::new(),
        output: None,
        error: Some(error.to_owned()),
        node_id,
        late_by_ms: None,
        retries: 0,
        queued_at: waited.queued_at,
        transcript: Vec::new(),
    }
}

/// Where a manual firing's answer goes: the objective once its run is durable.
pub(super) type RunReply = tokio::sync::oneshot::Sender<Result<ObjectiveRecord, ActorError>>;

impl ObjectivesActor {
    /// The audit write of a budget running out (in the same write as the pause).
    fn budget_audit_op(&self, objective: &ObjectiveRecord) -> WriteOp {
        self.audit.op(AuditEntry::system(
            AuditKind::BudgetExhausted,
            &objective.objective_id,
            AuditOutcome::Success,
            format!(
                "runs {} tokens {}; the objective is paused",
                objective.usage.runs, objective.usage.tokens
            ),
        ))
    }

    /// Starts a firing that waited (for the run before it, overlap `queue_one`, or for
    /// a slot) as its own `queued` run.
    pub(super) fn start_queued(&mut self, waited: WaitingRun, ctx: &mut Context<Self>) {
        let objective_id = waited.objective_id.clone();
        let objective_id = objective_id.as_str();
        let Some(objective) = self.objectives.get(objective_id) else {
            return;
        };
        let trigger = waited.trigger;
        // A manual run may be fired while paused or in draft; one of the schedule only
        // while active.
        let blocked = match trigger {
            RunTrigger::Manual => matches!(
                objective.state,
                ObjectiveState::Cancelled | ObjectiveState::Archived
            ),
            _ => objective.state != ObjectiveState::Active,
        };
        if blocked || objective.budget_exhausted() {
            let run = waited_record(
                &waited,
                RunStatus::SkippedBudget,
                None,
                "the objective was paused or out of budget before the queued firing started",
            );
            let ops = vec![waited.replace_op(&run)];
            ctx.spawn(self.commit(ops).map(|_, _, _| ()));
            return;
        }
        // The waiting firing was claimed when it was queued; its start is fenced by
        // the lease held now (none: the shard moved, and the run is not started here).
        // A manual run is the asking node's, whoever holds the shard, as when it
        // starts at once (`admit_within_budget`): never fenced.
        let claim = match trigger {
            RunTrigger::Manual => Some(None),
            _ => self.cluster.claim(objective_id.as_bytes()).map(Some),
        };
        let fence = match claim {
            Some(claim) => claim.and_then(|c| c.fence_op()),
            None => {
                // Its own row: recorded as missed, so it does not wait forever.
                tracing::info!(
                    objective_id,
                    "a queued firing is not started: the shard moved"
                );
                let run = waited_record(
                    &waited,
                    RunStatus::Missed,
                    Some(self.cluster.node_id().to_owned()),
                    "the objective moved to another node before the queued firing started",
                );
                self.metrics.count_run(RunStatus::Missed);
                let ops = vec![waited.replace_op(&run)];
                ctx.spawn(self.commit(ops).map(|_, _, _| ()));
                return;
            }
        };
        let start = RunStart {
            trigger,
            scheduled_for: waited.scheduled_for,
            waited: Some(waited),
            fence,
            late_by_ms: None,
            missed: Vec::new(),
        };
        self.start_run_as(objective_id, start, ctx, None);
    }

    pub(super) fn start_run_as(
        &mut self,
        objective_id: &str,
        start: RunStart,
        ctx: &mut Context<Self>,
        reply: Option<RunReply>,
    ) {
        let RunStart {
            trigger,
            scheduled_for,
            waited,
            fence,
            late_by_ms,
            missed,
        } = start;
        let Some(mut objective) = self.objectives.get(objective_id).map(|o| (**o).clone()) else {
            return;
        };
        let agent = self.agents.get(&objective.agent_id).cloned();
        let now = to_datetime(now_ms());
        let run = match &waited {
            // The queued run record becomes the running one: one record per firing.
            Some(w) => {
                let mut run = waited_record(w, RunStatus::Running, None, "");
                run.started_at = Some(now);
                run.finished_at = None;
                run.error = None;
                run
            }
            None => new_run(
                &mut objective,
                trigger,
                RunStatus::Running,
                scheduled_for,
                None,
            ),
        };
        let mut run = run;
        run.node_id = Some(self.cluster.node_id().to_owned());
        run.late_by_ms = late_by_ms;
        objective.usage.runs += 1;
        objective.last_run = Some(RunSummary {
            run_id: run.run_id.clone(),
            status: RunStatus::Running,
            at: now,
        });
        objective.updated_at = now;
        let mut ops = missed;
        match &waited {
            Some(w) => ops.push(w.replace_op(&run)),
            None => ops.extend(self.run_ops(&objective, &run)),
        }
        ops.push(self.objective_write(&objective));
        let fenced_epoch = match &fence {
            Some(WriteOp::Fence(f)) => Some(f.epoch),
            _ => None,
        };
        ops.extend(fence);
        self.running
            .insert(objective.objective_id.clone(), run.run_id.clone());
        self.objectives
            .insert(objective.objective_id.clone(), Box::new(objective.clone()));
        // Through `commit`: a failed write makes the actor reload, so the objective's
        // advanced schedule and usage never stay in memory without being durable.
        let durable = self.commit(ops);
        let oid = objective_id.to_owned();
        ctx.spawn(durable.map(move |result, act, ctx| {
            if let Err(e) = result {
                tracing::error!(error = %e, objective_id = %oid, "recording a run failed");
                act.running.remove(&oid);
                act.answer_cancels(&run, &Err(e.clone()));
                if let Some(reply) = reply {
                    let _ = reply.send(Err(e));
                }
                act.start_waiting_runs(ctx);
                return;
            }
            if let Some(reply) = reply {
                let _ = reply.send(Ok(objective.clone()));
            }
            // The run is claimed; the provider is called only if this node still
            // holds the lease it claimed under (it may have been paused since).
            if let Some(epoch) = fenced_epoch {
                let held = matches!(
                    act.cluster.claim(oid.as_bytes()),
                    Some(Claim::Leased(f)) if f.epoch == epoch
                );
                if !held {
                    tracing::warn!(objective_id = %oid, "the lease moved before the provider was called; the run is interrupted");
                    act.running.remove(&oid);
                    let mut run = run;
                    run.status = RunStatus::Interrupted;
                    run.finished_at = Some(to_datetime(now_ms()));
                    run.error = Some("the node lost the objective's lease before the provider was called".into());
                    act.metrics.count_run(run.status);
                    act.record_finish(&oid, run, 0, ctx);
                    return;
                }
            }
            act.spawn_run(oid, run, agent, objective, ctx);
        }));
    }

    /// Records what a run's task came to (`Err`: it was aborted, by a cancel, or
    /// panicked), then lets the firing waiting for it, or for a slot, start.
    pub(super) fn finish_run(
        &mut self,
        objective_id: &str,
        mut run: RunRecord,
        outcome: Result<Driven, ActorError>,
        ctx: &mut Context<Self>,
    ) {
        self.running.remove(objective_id);
        self.aborts.remove(&run.run_id);
        let now = to_datetime(now_ms());
        let cancelled = self.cancels.get(&run.run_id).map(|c| c.reason.clone());
        match outcome {
            Ok(Driven {
                outcome: o,
                retries,
            }) => {
                run.status = if o.error.is_none() {
                    RunStatus::Succeeded
                } else {
                    RunStatus::Failed
                };
                run.tokens = o.tokens;
                run.prompt_tokens = o.prompt_tokens;
                run.completion_tokens = o.completion_tokens;
                run.attempts = o.attempts;
                run.transcript = o.transcript;
                run.output = o.output;
                run.error = o.error;
                run.retries = retries;
            }
            Err(_) if cancelled.is_some() => {
                run.status = RunStatus::Cancelled;
                run.error = cancelled;
            }
            Err(e) => {
                run.status = RunStatus::Failed;
                run.error = Some(e.to_string());
            }
        }
        run.finished_at = Some(now);
        self.metrics.count_run(run.status);
        crate::usage::count_tokens(&self.metrics, &run);
        tracing::info!(objective_id, run_id = %run.run_id, status = ?run.status, tokens = run.tokens, "run finished");
        self.record_finish(objective_id, run, 0, ctx);
        if let Some(waited) = self.queued.remove(objective_id)
            && !self.draining
        {
            self.admit_queued(waited, ctx);
        }
        self.start_waiting_runs(ctx);
    }

    /// Writes a finished run and charges it to the objective as memory holds it now.
    /// When another node changed the objective meanwhile, the write is refused and
    /// the objective reread; the run's outcome is then charged again to what was
    /// reread, a few times, so its usage is never lost to an edit made elsewhere.
    fn record_finish(
        &mut self,
        objective_id: &str,
        run: RunRecord,
        attempt: u32,
        ctx: &mut Context<Self>,
    ) {
        const ATTEMPTS: u32 = 7;
        let now = to_datetime(now_ms());
        let Some(objective) = self.objectives.get_mut(objective_id) else {
            self.finishing.remove(&run.run_id);
            self.answer_cancels(&run, &Ok(()));
            return;
        };
        objective.usage.tokens = objective.usage.tokens.saturating_add(run.tokens);
        let was_active = objective.state == ObjectiveState::Active;
        let failures_audit = count_failure(&self.audit, objective, run.status);
        objective.last_run = Some(RunSummary {
            run_id: run.run_id.clone(),
            status: run.status,
            at: now,
        });
        objective.updated_at = now;
        let seq: u64 = run
            .run_id
            .rsplit('-')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut budget_run = None;
        if objective.budget_exhausted() && objective.state == ObjectiveState::Active {
            // The budget is used up now: pause at once rather than at the next firing,
            // and record the firing that will not run as the budget's outcome (without
            // an instant: that instant is not fired, so it is no firing's record).
            objective.next_run_at = None;
            objective.state = ObjectiveState::Paused;
            objective.state_reason = Some("budget_exhausted".into());
            let skipped = new_run(
                objective,
                RunTrigger::Schedule,
                RunStatus::SkippedBudget,
                None,
                Some("the budget is exhausted; the objective is paused".into()),
            );
            tracing::info!(objective_id, "budget exhausted; objective paused");
            budget_run = Some(skipped);
        }
        let objective = objective.clone();
        self.sync_schedule(&objective);
        let mut ops = vec![self.objective_write(&objective)];
        ops.extend(crate::usage::rollup_ops(&objective.agent_id, &run));
        ops.extend(self.threshold_ops(&run));
        ops.extend(failures_audit);
        ops.extend(crate::notifications::events::run_finished(
            &objective, was_active, &run,
        ));
        if let Some(skipped) = &budget_run {
            ops.extend(self.run_ops(&objective, skipped));
            ops.push(self.budget_audit_op(&objective));
        }
        // A run already pruned from the history (a long run among many skipped ones)
        // stays pruned.
        if seq + self.policy.run_retention > objective.run_seq {
            ops.push(WriteOp::put(run_key(objective_id, seq), &run));
        }
        let oid = objective_id.to_owned();
        self.finishing.insert(run.run_id.clone());
        ctx.spawn(self.commit(ops).map(move |result, act, ctx| {
            let retry = matches!(
                &result,
                Err(ActorError::Storage(
                    palyra_storage::StorageError::Refused { .. }
                        | palyra_storage::StorageError::Unavailable { .. }
                ))
            );
            if retry && attempt + 1 < ATTEMPTS {
                // Charged again once the objective was reread (`sync.rs`), or once the
                // database is back and the actor has reloaded: a doubling wait, about
                // 20 s in all, so a database restart does not lose the run's outcome.
                let wait = std::time::Duration::from_millis(300 << attempt);
                ctx.run_later(wait, move |act, ctx| {
                    act.record_finish(&oid, run, attempt + 1, ctx);
                });
            } else {
                act.finishing.remove(&run.run_id);
                act.answer_cancels(&run, &result);
                if let Err(e) = result {
                    tracing::error!(objective_id = %oid, error = %e, "recording a finished run failed");
                }
            }
        }));
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::objectives::model::{Automation, Budget, Misfire, ObjectiveKind, Usage};

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(s, 0).single().unwrap()
    }

    /// An active objective due at t=100 with `overlap` and a budget of 3 runs.
    fn objective(overlap: Overlap) -> ObjectiveRecord {
        ObjectiveRecord {
            objective_id: "o".into(),
            agent_id: "a".into(),
            kind: ObjectiveKind::StandingOrder,
            state: ObjectiveState::Active,
            name: "o".into(),
            prompt: "p".into(),
            steps: Vec::new(),
            priority: 0,
            budget: Budget {
                max_runs: Some(3),
                max_tokens: Some(1000),
                ..Budget::default()
            },
            usage: Usage::default(),
            automation: Some(Automation {
                schedule: "* * * * *".into(),
                timezone: "UTC".into(),
                misfire: Misfire::Skip,
                overlap,
                jitter_s: 0,
                enabled: true,
            }),
            state_reason: None,
            last_run: None,
            next_run_at: Some(at(100)),
            run_seq: 0,
            last_scheduled_for: None,
            retry: None,
            deadline_s: None,
            pause_after_failures: 10,
            consecutive_failures: 0,
            created_at: at(0),
            updated_at: at(0),
        }
    }

    fn fire(trigger: Trigger, scheduled_for: i64) -> Fire {
        Fire {
            objective_id: "o".into(),
            scheduled_for: at(scheduled_for),
            trigger,
        }
    }

    use FiringDecision as D;

    #[test]
    fn an_objective_that_is_not_active_fires_nothing() {
        for state in [
            ObjectiveState::Draft,
            ObjectiveState::Paused,
            ObjectiveState::Cancelled,
            ObjectiveState::Archived,
        ] {
            let mut o = objective(Overlap::QueueOne);
            o.state = state;
            // Not even a budget or an overlap is recorded.
            o.usage.runs = 3;
            for trigger in [Trigger::Schedule, Trigger::CatchUp, Trigger::Queued] {
                assert_eq!(
                    decide_firing(&o, &fire(trigger, 100), true, false),
                    D::Inactive
                );
            }
        }
    }

    #[test]
    fn a_scheduled_entry_the_schedule_moved_past_fires_nothing() {
        let o = objective(Overlap::Forbid);
        assert_eq!(
            decide_firing(&o, &fire(Trigger::Schedule, 40), false, false),
            D::Superseded
        );
        let mut unscheduled = objective(Overlap::Forbid);
        unscheduled.next_run_at = None;
        assert_eq!(
            decide_firing(&unscheduled, &fire(Trigger::Schedule, 100), false, false),
            D::Superseded
        );
    }

    #[test]
    fn queued_firings_are_not_held_to_next_run_at_but_recovered_ones_are() {
        let o = objective(Overlap::Forbid);
        assert_eq!(
            decide_firing(&o, &fire(Trigger::Queued, 40), false, false),
            D::Start
        );
        // A late or caught-up firing claims the instant recovery left due; once it is
        // claimed (next_run_at moved on), a second one is nothing.
        for trigger in [Trigger::CatchUp, Trigger::Late] {
            assert_eq!(
                decide_firing(&o, &fire(trigger, 100), false, false),
                D::Start
            );
            assert_eq!(
                decide_firing(&o, &fire(trigger, 40), false, false),
                D::Superseded
            );
        }
    }

    #[test]
    fn a_due_firing_within_budget_with_no_run_going_starts() {
        let mut o = objective(Overlap::Forbid);
        o.usage = Usage {
            runs: 2,
            tokens: 999,
        };
        assert_eq!(
            decide_firing(&o, &fire(Trigger::Schedule, 100), false, false),
            D::Start
        );
        let mut unlimited = objective(Overlap::Forbid);
        unlimited.budget = Budget::default();
        unlimited.usage.runs = u64::MAX;
        assert_eq!(
            decide_firing(&unlimited, &fire(Trigger::Schedule, 100), false, false),
            D::Start
        );
    }

    #[test]
    fn a_used_up_budget_skips_before_any_overlap() {
        let mut runs_used = objective(Overlap::QueueOne);
        runs_used.usage.runs = 3;
        let mut tokens_used = objective(Overlap::QueueOne);
        tokens_used.usage.tokens = 1000;
        for o in [runs_used, tokens_used] {
            for run_going in [false, true] {
                assert_eq!(
                    decide_firing(&o, &fire(Trigger::Schedule, 100), run_going, false),
                    D::SkipBudget
                );
            }
            assert_eq!(
                decide_firing(&o, &fire(Trigger::CatchUp, 100), true, true),
                D::SkipBudget
            );
        }
    }

    #[test]
    fn overlap_forbid_skips_a_firing_while_a_run_is_going() {
        let o = objective(Overlap::Forbid);
        assert_eq!(
            decide_firing(&o, &fire(Trigger::Schedule, 100), true, false),
            D::SkipOverlap
        );
        assert_eq!(
            decide_firing(&o, &fire(Trigger::CatchUp, 100), true, false),
            D::SkipOverlap
        );
        // No automation at all means the default policy, forbid.
        let mut manual_only = objective(Overlap::QueueOne);
        manual_only.automation = None;
        assert_eq!(
            decide_firing(&manual_only, &fire(Trigger::CatchUp, 100), true, false),
            D::SkipOverlap
        );
    }

    #[test]
    fn overlap_queue_one_queues_one_firing_and_skips_the_rest() {
        let o = objective(Overlap::QueueOne);
        assert_eq!(
            decide_firing(&o, &fire(Trigger::Schedule, 100), true, false),
            D::Queue
        );
        assert_eq!(
            decide_firing(&o, &fire(Trigger::CatchUp, 100), true, false),
            D::Queue
        );
        // A second firing while one waits is skipped.
        assert_eq!(
            decide_firing(&o, &fire(Trigger::Schedule, 100), true, true),
            D::SkipOverlap
        );
        // A firing that already waited does not wait again.
        assert_eq!(
            decide_firing(&o, &fire(Trigger::Queued, 100), true, false),
            D::SkipOverlap
        );
    }
}
