//! The objectives actor's state: what it holds in memory, how it comes back after a
//! restart (interrupted and missed runs, catch-up firings), and how its writes reach
//! storage (queued in message order; a failed commit makes the actor stale until it
//! has reloaded memory from storage, see `crate::reload`).
//!
//! Its messages live with the part they belong to: `agents.rs`, `lifecycle.rs`,
//! `firing.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use palyra_storage::{Storage, StorageError, Table, WriteOp, Writer, decode_record, encode_record};
use rand::Rng;

use super::model::{
    AgentRecord, Misfire, ObjectiveRecord, ObjectiveState, RunRecord, RunStatus, RunTrigger,
    new_run, objective_op, run_ops,
};
use super::waiting::{WaitingRun, WaitingRuns};
use crate::audit::AuditLog;
use crate::cluster::ClusterHandle;
use crate::error::ActorError;
use crate::metrics::ActorMetrics;
use crate::refresher::RefresherHandle;
use crate::registry::RegistryHandle;
use crate::reload::{ReloadState, Reloads};
use crate::schedule::Schedule;
use crate::scheduler::{Fire, SchedulerHandle, Trigger};
use crate::snapshot::Snapshot;
use crate::time::{now_ms, to_datetime};

/// Settings of the objectives actor.
#[derive(Debug, Clone)]
pub struct ObjectivesPolicy {
    /// Runs kept per objective; the oldest are pruned.
    pub run_retention: u64,
    /// Timeout of one provider call.
    pub provider_timeout: Duration,
    /// Runs going at once on this node, at most (`limits.rs`).
    pub max_concurrent_runs: usize,
    /// What runs' tools may reach (`crate::tools`).
    pub tools: crate::tools::ToolsPolicy,
    /// Added to the clock budget periods are computed at (`period.rs`): zero, except
    /// in tests of a period's reset.
    pub budget_clock_offset: chrono::Duration,
    /// `usage.prices`: what cost limits are computed with (`period.rs`).
    pub prices: crate::usage::Prices,
}

pub(super) struct ObjectivesActor {
    /// Which objectives this node fires: those of the shards it leases.
    pub(super) cluster: ClusterHandle,
    pub(super) writer: Writer,
    /// For reloading after a failed commit.
    pub(super) storage: Storage,
    pub(super) reload: ReloadState,
    /// Set at shutdown: no new run starts.
    pub(super) draining: bool,
    /// Runs resolve their credential through the registry.
    pub(super) registry: RegistryHandle,
    /// Runs refresh an expired OAuth token through the refresher.
    pub(super) refresher: RefresherHandle,
    /// The daemon's one outbound client (`crate::outbound::client`), for provider
    /// calls, so connections to a provider are reused across runs.
    pub(super) http_client: reqwest::Client,
    pub(super) scheduler: SchedulerHandle,
    pub(super) policy: ObjectivesPolicy,
    pub(super) agents: Agents,
    pub(super) objectives: Objectives,
    /// Objective id -> the run going.
    pub(super) running: HashMap<String, String>,
    /// Objectives with one firing waiting (overlap `queue_one`) for the run going: its
    /// `queued` run record (sequence number, instant, when it was claimed, its bytes).
    pub(super) queued: HashMap<String, WaitingRun>,
    /// Catch-up firings found at start, fired once the actor runs.
    pub(super) catch_up: CatchUps,
    /// Budget exhaustion is audited in the same write as the pause.
    pub(super) audit: AuditLog,
    pub(super) metrics: ActorMetrics,
    /// Objective id -> the bytes its row holds once every write queued so far has
    /// committed: the `expected` of the next compare-and-set, so a write built on a
    /// row another node has changed since is refused by the database.
    pub(super) stored: HashMap<String, Vec<u8>>,
    /// Writes queued so far for each agent and objective; a row
    /// reread from storage is applied only if no write was queued meanwhile
    /// (`sync.rs`).
    pub(super) generation: Generations,
    /// Objectives and agents to reread (another node changed them, or a write of
    /// ours was refused), and whether a reread is under way.
    pub(super) dirty: HashSet<(Table, String)>,
    pub(super) rereading: bool,
    /// Shards this node held at the last ownership change (shard -> epoch).
    pub(super) owned: BTreeMap<u32, u64>,
    /// Runs of this node whose finish is being recorded (a refused or failed write of
    /// it is retried): finished here, never left going.
    pub(super) finishing: HashSet<String>,
    /// Objective id -> the run going on another live node (overlap counts it).
    pub(super) elsewhere: HashMap<String, String>,
    /// Firings over the concurrency caps, waiting in firing order as durable `queued`
    /// runs for a slot (`limits.rs`).
    pub(super) waiting: WaitingRuns,
    /// Run id -> the abort handle of its task: a cancel drops the provider call.
    pub(super) aborts: HashMap<String, tokio::task::AbortHandle>,
    /// Run id -> the cancel asked for it and who waits for its record (`cancel.rs`).
    pub(super) cancels: super::waiting::Cancels,
    /// Objective id -> the period usage read before its run started (`period.rs`).
    pub(super) period_reads: HashMap<String, Vec<crate::usage::budget::PeriodSeen>>,
}

pub(super) type Agents = BTreeMap<String, AgentRecord>;
/// Hashed, not ordered: a firing looks its objective up several times, and at 10,000
/// objectives a B-tree's string comparisons and cold nodes were a fifth of a firing
/// (scheduler-10k's profile). Where the order is seen, the code sorts: a page of the
/// list, and [`in_id_order`] wherever objectives are scheduled or recovered together.
pub(super) type Objectives = HashMap<String, Box<ObjectiveRecord>>;

/// The ids of `objectives`, sorted. Objectives due at one instant fire in the order
/// they were scheduled, and under a run cap that order decides which start and which
/// wait; scheduling (and recovering) them in id order keeps it the same on every
/// start, reload and takeover.
pub(super) fn in_id_order(objectives: &Objectives) -> Vec<String> {
    let mut ids: Vec<String> = objectives.keys().cloned().collect();
    ids.sort_unstable();
    ids
}

/// Writes queued so far per agent and per objective (`sync.rs`): one map per table,
/// so counting a firing's write finds its entry without building a key.
#[derive(Debug, Clone, Default)]
pub(super) struct Generations {
    agents: HashMap<String, u64>,
    objectives: HashMap<String, u64>,
}

impl Generations {
    /// Counts a write queued for `id` of `table` (agents or objectives).
    pub(super) fn touch(&mut self, table: Table, id: &str) {
        // Only agents and objectives are written by this actor.
        debug_assert!(matches!(table, Table::Agents | Table::Objectives));
        let map = match table {
            Table::Agents => &mut self.agents,
            Table::Objectives => &mut self.objectives,
            _ => return,
        };
        match map.get_mut(id) {
            Some(n) => *n += 1,
            None => {
                map.insert(id.to_owned(), 1);
            }
        }
    }

    /// The writes queued so far for `id` of `table`.
    pub(super) fn of(&self, table: Table, id: &str) -> u64 {
        let map = match table {
            Table::Agents => &self.agents,
            Table::Objectives => &self.objectives,
            _ => return 0,
        };
        map.get(id).copied().unwrap_or(0)
    }
}

/// Catch-up firings: objective id and the missed instant.
pub(super) type CatchUps = Vec<(String, DateTime<Utc>)>;

pub(super) fn load_agents_and_objectives(
    snapshot: &Snapshot,
) -> Result<(Agents, Objectives), ActorError> {
    let mut agents = BTreeMap::new();
    for (_, value) in snapshot.rows(Table::Agents) {
        let agent: AgentRecord = decode_record(value)?;
        agents.insert(agent.agent_id.clone(), agent);
    }
    let mut objectives = HashMap::new();
    for (_, value) in snapshot.rows(Table::Objectives) {
        let objective: ObjectiveRecord = decode_record(value)?;
        objectives.insert(objective.objective_id.clone(), Box::new(objective));
    }
    Ok((agents, objectives))
}

/// After a restart: runs a crash left running become `interrupted`; firings missed
/// while the daemon was down become `missed` runs; `next_run_at` moves past now.
/// Returns the writes and the catch-up firings (misfire `run_once`).
pub(super) fn recover(
    snapshot: &Snapshot,
    objectives: &mut Objectives,
    retention: u64,
) -> Result<(Vec<WriteOp>, CatchUps), ActorError> {
    let now = to_datetime(now_ms());
    let mut ops = Vec::new();
    for (key, value) in snapshot.rows(Table::Runs) {
        if let Ok(mut run) = decode_record::<RunRecord>(value)
            && matches!(run.status, RunStatus::Running | RunStatus::Queued)
        {
            run.status = RunStatus::Interrupted;
            run.finished_at = Some(now);
            run.error = Some("the daemon stopped during the run".into());
            ops.push(WriteOp::put(key.clone(), &run));
        }
    }
    let mut catch_up = Vec::new();
    for id in in_id_order(objectives) {
        let Some(objective) = objectives.get_mut(&id) else {
            continue;
        };
        let Some(found) = recover_objective(objective, now, chrono::Duration::zero(), retention)
        else {
            continue;
        };
        ops.extend(found.runs);
        if let Some(fire) = found.fire {
            catch_up.push((fire.objective_id, fire.scheduled_for));
        }
        ops.push(objective_op(objective));
    }
    Ok((ops, catch_up))
}

/// What recovery found for one objective: the writes of its missed firings (the
/// objective's own write is the caller's) and the firing to send now, if any.
#[derive(Debug)]
pub(super) struct Recovered {
    pub(super) runs: Vec<WriteOp>,
    pub(super) fire: Option<Fire>,
}

/// Firings of an active objective that fell due while no node fired it (the daemon
/// was down, or the node that held its shard died): the newest one runs now if it is
/// at most `late_threshold` late (recorded as late; only after a takeover, zero
/// otherwise), or is caught up (misfire `run_once`) while its slot lasts; every other
/// one is recorded once as `missed`. `next_run_at` moves past now, or stays on the
/// late instant until its firing moves it. `None` when nothing fell due.
pub(super) fn recover_objective(
    objective: &mut ObjectiveRecord,
    now: DateTime<Utc>,
    late_threshold: chrono::Duration,
    retention: u64,
) -> Option<Recovered> {
    let automation = objective.automation.clone().filter(|a| a.enabled)?;
    if objective.state != ObjectiveState::Active {
        return None;
    }
    let schedule = Schedule::parse(&automation.schedule, &automation.timezone).ok()?;
    // The first 100 missed firings are recorded one by one; beyond that, the newest
    // one stands for the rest (a per-second schedule down for a month must not take
    // a million steps at start).
    let mut missed = Vec::new();
    let mut cursor = objective.next_run_at;
    while let Some(t) = cursor.filter(|t| *t <= now && missed.len() < 100) {
        missed.push(t);
        cursor = schedule.next_after(t);
    }
    if cursor.is_some_and(|t| t <= now)
        && let Some(latest) = schedule.latest_at_or_before(now)
        && missed.last() != Some(&latest)
    {
        missed.push(latest);
    }
    let newest = missed.last().copied()?;
    let objective_id = objective.objective_id.clone();
    let fire = if late_threshold > chrono::Duration::zero() && now - newest <= late_threshold {
        Some(Fire {
            objective_id,
            scheduled_for: newest,
            trigger: Trigger::Late,
        })
    } else if automation.misfire == Misfire::RunOnce
        && schedule.next_after(newest).is_some_and(|end| now < end)
    {
        Some(Fire {
            objective_id,
            scheduled_for: newest,
            trigger: Trigger::CatchUp,
        })
    } else {
        None
    };
    // The firing sent now is the newest instant's one record.
    if fire.is_some() {
        missed.pop();
    }
    let mut runs = Vec::new();
    for t in &missed {
        let run = new_run(
            objective,
            RunTrigger::Schedule,
            RunStatus::Missed,
            Some(*t),
            Some("the daemon was not running".into()),
        );
        runs.extend(run_ops(objective, &run, retention));
    }
    if let Some(last) = missed.last() {
        objective.last_scheduled_for = Some(*last);
    }
    // A firing sent now (late or caught up) claims its instant itself, in the write
    // that records its run: until then the instant stays due, so a node that dies in
    // between leaves it to the next owner rather than losing it.
    objective.next_run_at = match &fire {
        Some(_) => Some(newest),
        None => next_run(objective, now),
    };
    objective.updated_at = now;
    Some(Recovered { runs, fire })
}

/// The objective's next firing after `after`, if it is active with automation on.
pub(super) fn next_run(objective: &ObjectiveRecord, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let automation = objective.automation.as_ref().filter(|a| a.enabled)?;
    if objective.state != ObjectiveState::Active {
        return None;
    }
    // Never an instant already claimed, even by a node whose clock is behind.
    let after = objective.last_scheduled_for.map_or(after, |t| t.max(after));
    Schedule::parse(&automation.schedule, &automation.timezone)
        .ok()?
        .next_after(after)
}

impl ObjectivesActor {
    /// The write of `objective` as it is in memory: a compare-and-set against the
    /// bytes its row holds after the writes queued before (none: the row must not
    /// exist), so two nodes cannot both build on one version of it.
    pub(super) fn objective_write(&mut self, objective: &ObjectiveRecord) -> WriteOp {
        let value = encode_record(objective);
        let id = &objective.objective_id;
        // In place when the row is known (every firing's case): no key built.
        let expected = match self.stored.get_mut(id) {
            Some(stored) => Some(std::mem::replace(stored, value.clone())),
            None => self.stored.insert(id.clone(), value.clone()),
        };
        self.generation.touch(Table::Objectives, id);
        WriteOp::CompareAndSet {
            table: Table::Objectives,
            key: objective.objective_id.as_bytes().to_vec(),
            expected,
            value,
        }
    }

    /// Remembers the stored bytes of every objective in `snapshot`.
    pub(super) fn remember_stored(&mut self, snapshot: &Snapshot) {
        self.stored.clear();
        for (key, value) in snapshot.rows(Table::Objectives) {
            if let Ok(id) = String::from_utf8(key.clone()) {
                self.stored.insert(id, value.clone());
            }
        }
    }

    /// The writes of a run (see `run_ops`), counted in the run metrics.
    pub(super) fn run_ops(&self, objective: &ObjectiveRecord, run: &RunRecord) -> Vec<WriteOp> {
        self.metrics.count_run(run.status);
        run_ops(objective, run, self.policy.run_retention)
    }

    /// Keeps the scheduler's one entry per active, enabled objective of a shard this
    /// node holds in step.
    pub(super) fn sync_schedule(&self, objective: &ObjectiveRecord) {
        let enabled = objective.state == ObjectiveState::Active
            && objective.automation.as_ref().is_some_and(|a| a.enabled)
            && self.cluster.owns(objective.objective_id.as_bytes());
        match (enabled, objective.next_run_at) {
            (true, Some(at)) => {
                let jitter = objective.automation.as_ref().map_or(0, |a| a.jitter_s);
                let delay = if jitter > 0 {
                    rand::rng().random_range(0..=u64::from(jitter) * 1000)
                } else {
                    0
                };
                let due = at + chrono::Duration::milliseconds(i64::try_from(delay).unwrap_or(0));
                self.scheduler
                    .schedule(objective.objective_id.clone(), due, at);
            }
            _ => self.scheduler.remove(objective.objective_id.clone()),
        }
    }

    /// Queues `ops` (memory already shows their effect) and returns their commit. A
    /// refused write (another node changed a row first, or this node's lease is gone)
    /// rereads the objectives it touched (`sync.rs`); any other failed commit makes
    /// the actor stale: it refuses writes and reloads agents and objectives from
    /// storage (`crate::reload`), so memory never stays ahead of it.
    pub(super) fn commit(
        &mut self,
        ops: Vec<WriteOp>,
    ) -> impl ActorFuture<Self, Output = Result<(), ActorError>> + use<> {
        let touched: Vec<String> = ops
            .iter()
            .filter_map(|op| match op.row() {
                Some((Table::Objectives, key)) => String::from_utf8(key.to_vec()).ok(),
                _ => None,
            })
            .collect();
        let refused = match self.reload.refusal(<Self as Reloads>::NAME) {
            Some(refused) => Err(refused),
            None => Ok(self.writer.submit(ops)),
        };
        async move {
            match refused {
                Ok(write) => write.await.map_err(ActorError::from),
                Err(refused) => Err(refused),
            }
        }
        .into_actor(self)
        .map(move |result, act: &mut Self, ctx| {
            match &result {
                Err(ActorError::Storage(StorageError::Refused { .. })) => {
                    tracing::info!(objectives = ?touched, "a write was refused (changed on another node, or the lease moved); rereading");
                    for id in touched {
                        act.dirty.insert((Table::Objectives, id));
                    }
                    act.reread(ctx);
                }
                Err(e) => {
                    tracing::error!(actor = "objectives", error = %e, "commit failed; reloading state from storage");
                    crate::reload::reload(act, ctx);
                }
                Ok(()) => {}
            }
            result
        })
    }
}

impl Reloads for ObjectivesActor {
    const NAME: &'static str = "objectives";
    const TABLES: &'static [Table] = &[Table::Agents, Table::Objectives];

    fn reload_state(&mut self) -> &mut ReloadState {
        &mut self.reload
    }

    fn storage(&self) -> &Storage {
        &self.storage
    }

    fn writer(&self) -> &Writer {
        &self.writer
    }

    fn apply(&mut self, snapshot: Snapshot) -> Result<(), ActorError> {
        let (agents, objectives) = load_agents_and_objectives(&snapshot)?;
        // A waiting firing whose queued run record never became durable (its sequence
        // number is past the reloaded objective's last one) is gone with it: keeping it
        // would hand the same number to two runs.
        self.queued
            .retain(|id, w| objectives.get(id).is_some_and(|o| w.seq <= o.run_seq));
        self.waiting
            .retain(|id, seq| objectives.get(id).is_some_and(|o| seq <= o.run_seq));
        self.agents = agents;
        self.objectives = objectives;
        self.remember_stored(&snapshot);
        // A run recorded as going that no task of this node runs (its start's commit
        // outcome was unknown, say) is watched like another node's: interrupted once
        // its node is gone, or at once when it is this one.
        for (id, objective) in &self.objectives {
            if self.cluster.is_clustered()
                && let Some(last) = &objective.last_run
                && last.status == RunStatus::Running
                && !self.running.contains_key(id)
            {
                self.elsewhere.insert(id.clone(), last.run_id.clone());
            }
        }
        for id in in_id_order(&self.objectives) {
            if let Some(objective) = self.objectives.get(&id) {
                self.sync_schedule(objective);
            }
        }
        Ok(())
    }
}

/// Stop starting runs; answers how many are going.
#[derive(Message)]
#[rtype(result = "usize")]
pub(super) struct Drain;

impl Handler<Drain> for ObjectivesActor {
    type Result = usize;

    fn handle(&mut self, _msg: Drain, _ctx: &mut Self::Context) -> usize {
        self.draining = true;
        self.running.len()
    }
}
