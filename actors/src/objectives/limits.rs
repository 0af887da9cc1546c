//! Bounded concurrency: at most `objectives.max_concurrent_runs` runs going on this
//! node, and at most an agent's own `max_concurrent_runs` of its objectives' runs.
//! A firing over either cap is claimed as usual (its run row, the objective's
//! compare-and-set and the lease fence in one write) but as a `queued` run, and waits
//! in a FIFO, in firing order, until a run finishes; it is never dropped or recorded
//! missed for waiting.
//!
//! The FIFO is memory over durable rows: every entry's `queued` row committed before
//! it counts as claimed, a restart records the rows left `interrupted`
//! (`actor::recover`), and a node that died leaves them to the shard's next owner,
//! which records them missed once that node's heartbeat is gone (`sync.rs`).

use std::collections::HashMap;

use actix::prelude::*;

use super::actor::{Agents, Objectives, ObjectivesActor};
use super::firing::{RunReply, RunStart};
use super::model::{RunStatus, new_run};
use super::waiting::WaitingRun;
use crate::error::ActorError;
use crate::time::{now_ms, to_datetime};

impl ObjectivesActor {
    /// Whether a run of `agent_id`'s may start now: under the node's cap and the
    /// agent's.
    pub(super) fn has_slot(&self, agent_id: &str) -> bool {
        self.running.len() < self.policy.max_concurrent_runs
            && below_agent_cap(&self.agents, &self.objectives, &self.running, agent_id)
    }

    /// Claims a firing that finds no slot as a `queued` run (with the instants it
    /// stepped over and its lease fence, in one write) and puts it in the FIFO.
    /// `reply` (a manual firing) answers with the objective once the claim is durable.
    pub(super) fn enqueue(
        &mut self,
        objective_id: &str,
        start: RunStart,
        ctx: &mut Context<Self>,
        reply: Option<RunReply>,
    ) {
        // Taken out rather than cloned; put back below.
        let Some(mut objective) = self.objectives.remove(objective_id) else {
            return;
        };
        let mut run = new_run(
            &mut objective,
            start.trigger,
            RunStatus::Queued,
            start.scheduled_for,
            None,
        );
        run.node_id = Some(self.cluster.node_id().to_owned());
        run.late_by_ms = start.late_by_ms;
        objective.updated_at = to_datetime(now_ms());
        let run_ops = self.run_ops(&objective, &run);
        let waiting = WaitingRun::inserted(&objective.agent_id, objective.run_seq, &run, &run_ops);
        let mut ops = start.missed;
        ops.extend(run_ops);
        ops.push(self.objective_write(&objective));
        ops.extend(start.fence);
        tracing::debug!(
            objective_id,
            waiting = self.waiting.len() + 1,
            "no run slot free; the firing waits as queued"
        );
        self.waiting.push(waiting);
        let seq = objective.run_seq;
        let answer = reply.map(|reply| (reply, objective.clone()));
        self.objectives.insert(objective_id.to_owned(), objective);
        let oid = objective_id.to_owned();
        ctx.spawn(self.commit(ops).map(move |result, act, ctx| {
            if let Err(e) = &result {
                // Never claimed: it must not start (the reload forgets it too).
                act.waiting.retain(|id, s| !(id == oid && s == seq));
                tracing::error!(objective_id = %oid, error = %e, "recording a queued firing failed");
            }
            if let Some((reply, objective)) = answer {
                let _ = reply.send(result.map(|()| *objective));
            }
            // A run may have finished while the claim was being written.
            act.start_waiting_runs(ctx);
        }));
    }

    /// A firing that waited for the run going (overlap `queue_one`) starts now if a
    /// slot is free, or waits for one in the FIFO.
    pub(super) fn admit_queued(&mut self, waited: WaitingRun, ctx: &mut Context<Self>) {
        if !self.objectives.contains_key(&waited.objective_id) {
            return;
        }
        if self.has_slot(&waited.agent_id) {
            self.start_queued(waited, ctx);
        } else {
            self.waiting.push(waited);
        }
    }

    /// Starts waiting firings, oldest first, while slots are free (an entry whose
    /// agent is at its own cap lets younger entries of other agents pass).
    pub(super) fn start_waiting_runs(&mut self, ctx: &mut Context<Self>) {
        while !self.draining && self.running.len() < self.policy.max_concurrent_runs {
            let (agents, objectives, running) = (&self.agents, &self.objectives, &self.running);
            let Some(next) = self
                .waiting
                .take_first(|w| below_agent_cap(agents, objectives, running, &w.agent_id))
            else {
                break;
            };
            self.start_queued(next, ctx);
        }
    }

    /// Whether the manual firing of an objective must be refused: a run of it is going
    /// or waiting for a slot.
    pub(super) fn run_pending(&self, objective_id: &str) -> Option<ActorError> {
        if self.running.contains_key(objective_id) {
            return Some(ActorError::Conflict(
                "a run of this objective is going".into(),
            ));
        }
        if self.waiting.contains(objective_id) {
            return Some(ActorError::Conflict(
                "a run of this objective is queued, waiting for a free run slot".into(),
            ));
        }
        None
    }
}

/// Whether the agent has fewer runs going than its own cap (none: no cap of its own).
fn below_agent_cap(
    agents: &Agents,
    objectives: &Objectives,
    running: &HashMap<String, String>,
    agent_id: &str,
) -> bool {
    let Some(cap) = agents.get(agent_id).and_then(|a| a.max_concurrent_runs) else {
        return true;
    };
    let going = running
        .keys()
        .filter(|id| objectives.get(*id).is_some_and(|o| o.agent_id == agent_id))
        .count();
    going < cap as usize
}
