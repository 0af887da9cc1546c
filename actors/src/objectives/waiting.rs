//! What the objectives actor keeps about runs that wait or are being stopped: the
//! FIFO of firings waiting for a run slot (`limits.rs`) and the cancels asked for runs
//! going (`cancel.rs`). Plain data, so the actor's state can hold it without its file
//! importing the parts that act on it.
//!
//! A waiting firing keeps the bytes of its `queued` row, so whatever replaces that row
//! (its start, its cancel, the record that it will not run) is a compare-and-set on
//! them: in a cluster the shard's next owner may have recorded it meanwhile, and a
//! write of this node must then be refused rather than overwrite that record.

use std::collections::{HashMap, HashSet, VecDeque};

use chrono::{DateTime, Utc};

use palyra_storage::{Table, WriteOp, encode_record};

use super::model::{RunRecord, RunTrigger, run_key};
use crate::error::ActorError;

/// A claimed firing waiting for a slot.
#[derive(Debug, Clone)]
pub(super) struct WaitingRun {
    pub(super) objective_id: String,
    /// Whose cap it counts against when it starts.
    pub(super) agent_id: String,
    /// The sequence number of its `queued` run row.
    pub(super) seq: u64,
    pub(super) scheduled_for: Option<DateTime<Utc>>,
    pub(super) trigger: RunTrigger,
    /// When its `queued` row was written.
    pub(super) queued_at: Option<DateTime<Utc>>,
    /// The bytes of its `queued` row as this node wrote it.
    pub(super) row: Vec<u8>,
}

impl WaitingRun {
    /// The waiting firing of `run`, the `queued` record this node writes for it.
    pub(super) fn of(agent_id: &str, seq: u64, run: &RunRecord) -> Self {
        Self {
            row: encode_record(run),
            ..Self::of_unencoded(agent_id, seq, run)
        }
    }

    /// Like [`Self::of`], with the row's bytes taken from `run_ops` (`run_ops(...)` of
    /// `run`: its insert first) rather than encoded a second time.
    pub(super) fn inserted(agent_id: &str, seq: u64, run: &RunRecord, run_ops: &[WriteOp]) -> Self {
        let row = match run_ops.first() {
            Some(WriteOp::InsertIfAbsent { value, .. }) => value.clone(),
            _ => encode_record(run),
        };
        Self {
            row,
            ..Self::of_unencoded(agent_id, seq, run)
        }
    }

    fn of_unencoded(agent_id: &str, seq: u64, run: &RunRecord) -> Self {
        Self {
            objective_id: run.objective_id.clone(),
            agent_id: agent_id.to_owned(),
            seq,
            scheduled_for: run.scheduled_for,
            trigger: run.trigger,
            queued_at: run.queued_at,
            row: Vec::new(),
        }
    }

    /// Replaces its `queued` row with `run`, only if the row is still the one this node
    /// wrote.
    pub(super) fn replace_op(&self, run: &RunRecord) -> WriteOp {
        WriteOp::CompareAndSet {
            table: Table::Runs,
            key: run_key(&self.objective_id, self.seq),
            expected: Some(self.row.clone()),
            value: encode_record(run),
        }
    }
}

/// The firings waiting for a slot, oldest first; at most one per objective (an
/// objective with one waiting counts as having a run going, so overlap decides what
/// its next firing comes to).
#[derive(Debug, Default)]
pub(super) struct WaitingRuns {
    fifo: VecDeque<WaitingRun>,
    objectives: HashSet<String>,
}

impl WaitingRuns {
    pub(super) fn push(&mut self, run: WaitingRun) {
        self.objectives.insert(run.objective_id.clone());
        self.fifo.push_back(run);
    }

    pub(super) fn contains(&self, objective_id: &str) -> bool {
        self.objectives.contains(objective_id)
    }

    /// Whether `run_id` is the objective's firing waiting here.
    pub(super) fn holds(&self, objective_id: &str, run_id: &str) -> bool {
        self.contains(objective_id)
            && self.fifo.iter().any(|w| {
                w.objective_id == objective_id && format!("{objective_id}-{}", w.seq) == run_id
            })
    }

    pub(super) fn len(&self) -> usize {
        self.fifo.len()
    }

    /// Takes the objective's waiting firing out, if any.
    pub(super) fn take(&mut self, objective_id: &str) -> Option<WaitingRun> {
        if !self.objectives.remove(objective_id) {
            return None;
        }
        let at = self
            .fifo
            .iter()
            .position(|w| w.objective_id == objective_id)?;
        self.fifo.remove(at)
    }

    /// Takes the oldest entry `startable` accepts.
    pub(super) fn take_first(
        &mut self,
        startable: impl Fn(&WaitingRun) -> bool,
    ) -> Option<WaitingRun> {
        let at = self.fifo.iter().position(startable)?;
        let run = self.fifo.remove(at)?;
        self.objectives.remove(&run.objective_id);
        Some(run)
    }

    /// Keeps the entries `keep(objective_id, seq)` accepts.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&str, u64) -> bool) {
        self.fifo.retain(|w| keep(&w.objective_id, w.seq));
        self.objectives = self.fifo.iter().map(|w| w.objective_id.clone()).collect();
    }
}

/// Where the record of a cancelled run is answered.
pub(super) type CancelReply = tokio::sync::oneshot::Sender<Result<RunRecord, ActorError>>;

/// A cancel asked for a run going: why (the run's `error`), and who waits for the
/// record.
#[derive(Debug)]
pub(super) struct Cancel {
    pub(super) reason: String,
    pub(super) replies: Vec<CancelReply>,
}

/// Run id -> the cancel asked for it.
pub(super) type Cancels = HashMap<String, Cancel>;

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(objective_id: &str, agent_id: &str, seq: u64) -> WaitingRun {
        WaitingRun {
            objective_id: objective_id.into(),
            agent_id: agent_id.into(),
            seq,
            scheduled_for: None,
            trigger: RunTrigger::Schedule,
            queued_at: None,
            row: Vec::new(),
        }
    }

    #[test]
    fn the_fifo_hands_out_in_firing_order_and_lets_a_capped_agent_be_passed() {
        let mut fifo = WaitingRuns::default();
        fifo.push(waiting("o1", "busy", 1));
        fifo.push(waiting("o2", "free", 1));
        fifo.push(waiting("o3", "busy", 1));
        fifo.push(waiting("o4", "free", 1));
        assert!(fifo.contains("o3"));
        assert!(fifo.holds("o3", "o3-1") && !fifo.holds("o3", "o3-2"));
        let first = fifo.take_first(|_| true).unwrap();
        assert_eq!(first.objective_id, "o1");
        // The busy agent is at its cap: the oldest entry of another agent goes first.
        let next = fifo.take_first(|w| w.agent_id != "busy").unwrap();
        assert_eq!(next.objective_id, "o2");
        assert!(!fifo.contains("o2"));
        assert_eq!(fifo.take("o4").unwrap().objective_id, "o4");
        assert!(fifo.take("o4").is_none());
        assert_eq!(fifo.len(), 1);
        fifo.retain(|id, _| id != "o3");
        assert_eq!(fifo.len(), 0);
        assert!(!fifo.contains("o3"));
    }
}
