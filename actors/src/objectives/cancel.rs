//! Cancelling runs: one run by request (`POST .../runs/{run_id}/cancel`), or every run
//! of an objective that is paused or cancelled (here, or on another node: the change
//! arrives on the change feed). A run going has its task aborted, so its provider call
//! is dropped at once, and is recorded `cancelled`; a run waiting (for a slot, or for
//! the run before it) is recorded `cancelled` and never starts. The answer is sent
//! once that record is durable.
//!
//! In a cluster only the node running a run can abort it: a cancel of one run that
//! reaches another node answers 409 `conflict` naming the node that runs it; a pause
//! or cancel of the objective stops its run wherever it goes, since every node sees
//! the objective change.

use actix::prelude::*;
use palyra_storage::{Table, WriteOp, decode_record};

use super::actor::ObjectivesActor;
use super::model::{ObjectiveState, RunRecord, RunStatus, RunTrigger, run_key};
use super::waiting::{Cancel, CancelReply};
use crate::error::ActorError;
use crate::time::{now_ms, to_datetime};

/// Cancel one run of an objective.
#[derive(Message)]
#[rtype(result = "Result<RunRecord, ActorError>")]
pub(super) struct CancelRun {
    pub(super) objective_id: String,
    pub(super) run_id: String,
}

impl Handler<CancelRun> for ObjectivesActor {
    type Result = ResponseActFuture<Self, Result<RunRecord, ActorError>>;

    fn handle(&mut self, msg: CancelRun, ctx: &mut Self::Context) -> Self::Result {
        let ready = |r| -> Self::Result { Box::pin(actix::fut::ready(r)) };
        let CancelRun {
            objective_id,
            run_id,
        } = msg;
        if !self.objectives.contains_key(&objective_id) {
            return ready(Err(ActorError::NotFound {
                what: "objective",
                id: objective_id,
            }));
        }
        let not_found = |id: &str| ActorError::NotFound {
            what: "run",
            id: id.to_owned(),
        };
        let Some(seq) = run_id
            .strip_prefix(objective_id.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            return ready(Err(not_found(&run_id)));
        };
        if self.running.get(&objective_id) == Some(&run_id) {
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.cancel_going(&run_id, "cancelled by request", Some(tx));
            return Box::pin(
                async move { rx.await.unwrap_or(Err(ActorError::Stopped("objectives"))) }
                    .into_actor(self),
            );
        }
        let waited = match self.waiting.take(&objective_id) {
            Some(w) if w.seq == seq => Some((w.scheduled_for, w.trigger)),
            Some(other) => {
                self.waiting.push(other);
                None
            }
            None => None,
        };
        let waited = waited.or_else(|| match self.queued.get(&objective_id) {
            Some((at, s)) if *s == seq => {
                let at = Some(*at);
                self.queued.remove(&objective_id);
                Some((at, RunTrigger::Schedule))
            }
            _ => None,
        });
        if let Some((scheduled_for, trigger)) = waited {
            let run = self.cancel_waiting(
                &objective_id,
                seq,
                scheduled_for,
                trigger,
                "cancelled by request",
            );
            let ops = vec![WriteOp::put(run_key(&objective_id, seq), &run)];
            return Box::pin(self.commit(ops).map(move |result, act, ctx| {
                // Its slot (or its turn) goes to the next firing waiting.
                act.start_waiting_runs(ctx);
                result.map(|()| run)
            }));
        }
        let _ = ctx;
        // Not going or waiting here: the stored record says why.
        let barrier = self.writer.submit(Vec::new());
        let storage = self.storage.clone();
        let key = run_key(&objective_id, seq);
        let me = self.cluster.node_id().to_owned();
        Box::pin(
            async move {
                barrier.await?;
                let row = storage.read_row(Table::Runs, &key).await?;
                let run: RunRecord = match row {
                    Some(bytes) => decode_record(&bytes)?,
                    None => return Err(not_found(&run_id)),
                };
                Err(match (run.status, run.node_id.as_deref()) {
                    (RunStatus::Running | RunStatus::Queued, Some(node)) if node != me => {
                        ActorError::Conflict(format!(
                            "run {run_id} is going on node {node}; send the cancel to that node, or pause the objective, which stops its run on any node"
                        ))
                    }
                    (RunStatus::Running | RunStatus::Queued, _) => ActorError::Conflict(format!(
                        "run {run_id} is not going on this node: it is being recorded, or the node that ran it stopped"
                    )),
                    (status, _) => ActorError::Conflict(format!(
                        "run {run_id} is already {}",
                        crate::wire::wire_name(status)
                    )),
                })
            }
            .into_actor(self),
        )
    }
}

impl ObjectivesActor {
    /// Asks the run going to stop: its task is aborted (once started; a run whose
    /// record is still being written never starts it), and it is recorded `cancelled`
    /// with `reason`. `reply` gets the record once it is durable.
    pub(super) fn cancel_going(&mut self, run_id: &str, reason: &str, reply: Option<CancelReply>) {
        let cancel = self
            .cancels
            .entry(run_id.to_owned())
            .or_insert_with(|| Cancel {
                reason: reason.to_owned(),
                replies: Vec::new(),
            });
        cancel.replies.extend(reply);
        if let Some(abort) = self.aborts.get(run_id) {
            abort.abort();
        }
        tracing::info!(run_id, reason, "run cancelled");
    }

    /// The record of a waiting firing that will not run.
    fn cancel_waiting(
        &mut self,
        objective_id: &str,
        seq: u64,
        scheduled_for: Option<chrono::DateTime<chrono::Utc>>,
        trigger: RunTrigger,
        reason: &str,
    ) -> RunRecord {
        self.metrics.count_run(RunStatus::Cancelled);
        RunRecord {
            run_id: format!("{objective_id}-{seq}"),
            objective_id: objective_id.to_owned(),
            trigger,
            status: RunStatus::Cancelled,
            scheduled_for,
            started_at: None,
            finished_at: Some(to_datetime(now_ms())),
            tokens: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            attempts: Vec::new(),
            output: None,
            error: Some(reason.to_owned()),
            node_id: Some(self.cluster.node_id().to_owned()),
            late_by_ms: None,
            retries: 0,
            queued_at: None,
            transcript: Vec::new(),
        }
    }

    /// Stops what an objective that is no longer active has going on this node: its
    /// run (aborted, recorded cancelled) and, with `ctx`, its firing waiting for a slot
    /// (recorded cancelled). Without `ctx` (a change read from another node) the
    /// waiting firing is recorded when its turn comes (`start_queued` sees the state).
    pub(super) fn stop_inactive(&mut self, objective_id: &str, ctx: Option<&mut Context<Self>>) {
        let Some(objective) = self.objectives.get(objective_id) else {
            return;
        };
        if objective.state == ObjectiveState::Active {
            return;
        }
        let reason = format!(
            "the objective was {}",
            match objective.state {
                ObjectiveState::Paused => "paused",
                ObjectiveState::Archived => "archived",
                _ => "cancelled",
            }
        );
        if let Some(run_id) = self.running.get(objective_id).cloned() {
            self.cancel_going(&run_id, &reason, None);
        }
        if let Some(ctx) = ctx
            && let Some(w) = self.waiting.take(objective_id)
        {
            let run = self.cancel_waiting(objective_id, w.seq, w.scheduled_for, w.trigger, &reason);
            let ops = vec![WriteOp::put(run_key(objective_id, w.seq), &run)];
            ctx.spawn(self.commit(ops).map(|_, _, _| ()));
        }
    }

    /// Answers the cancels waiting for `run`, once its record's write came to `result`.
    pub(super) fn answer_cancels(&mut self, run: &RunRecord, result: &Result<(), ActorError>) {
        let Some(cancel) = self.cancels.remove(&run.run_id) else {
            return;
        };
        for reply in cancel.replies {
            let _ = reply.send(result.clone().map(|()| run.clone()));
        }
    }
}
