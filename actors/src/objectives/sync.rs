//! How the objectives actor keeps in step with the database and the cluster: at
//! start, when another node changes a row, when a write of its own was refused, and
//! when shards move.
//!
//! Every node keeps every agent and objective in memory (reads and edits work on any
//! node) but fires only the objectives of the shards it leases. What another node
//! changed arrives on the change feed and is reread after this node's queued writes
//! have committed; a row reread is applied only if no write of this node was queued
//! for it meanwhile (that write's compare-and-set decides instead). When this node
//! gains a shard it rereads the shard's objectives and recovers their firings (late,
//! caught up or missed, each recorded once: the database refuses a second record);
//! when it loses one it stops firing it at once.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use palyra_storage::{Change, Row, Table, WriteOp, decode_record};

use super::actor::{Generations, ObjectivesActor, in_id_order, recover_objective};
use super::model::{AgentRecord, ObjectiveRecord, RunRecord, RunStatus, RunSummary, run_key};
use crate::cluster::shard_of;
use crate::scheduler::Fire;
use crate::time::{now_ms, to_datetime};

/// How often every agent and objective is reread in a cluster, whatever the feed said.
const RECONCILE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Rereads are gathered for this long, so a burst of changes costs one round.
const REREAD_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

impl Actor for ObjectivesActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // An objective with a catch-up on its way is scheduled by that firing, not
        // before it (its instant is due, and the timer would fire it as scheduled).
        let catching_up: std::collections::HashSet<&String> =
            self.catch_up.iter().map(|(id, _)| id).collect();
        for id in in_id_order(&self.objectives) {
            if let Some(objective) = self.objectives.get(&id)
                && !catching_up.contains(&id)
            {
                self.sync_schedule(objective);
            }
        }
        for (objective_id, scheduled_for) in std::mem::take(&mut self.catch_up) {
            ctx.notify(Fire {
                objective_id,
                scheduled_for,
                trigger: crate::scheduler::Trigger::CatchUp,
            });
        }
        if !self.cluster.is_clustered() {
            return;
        }
        let mut feed = self.storage.changes();
        let me = ctx.address();
        ctx.spawn(
            async move {
                while let Some(change) = feed.next().await {
                    if me.send(Changed(change)).await.is_err() {
                        break;
                    }
                }
            }
            .into_actor(self),
        );
        let mut owned = self.cluster.watch_owned();
        let me = ctx.address();
        ctx.spawn(
            async move {
                loop {
                    let now = owned.borrow_and_update().clone();
                    if me.send(Owned(now)).await.is_err() {
                        break;
                    }
                    if owned.changed().await.is_err() {
                        break;
                    }
                }
            }
            .into_actor(self),
        );
        // Runs another node started are interrupted once that node is gone.
        ctx.run_interval(self.cluster.lease_ttl() / 3, |act, ctx| {
            act.sweep_elsewhere(ctx)
        });
        // A notification can be lost without the connection dropping (a node that
        // was paused past the feed's buffer, say); a periodic full read catches it.
        ctx.run_interval(RECONCILE_INTERVAL, |act, ctx| act.reread_all(ctx));
    }
}

/// Rereads an objective (or an agent) before an edit or a read of it in a cluster, so
/// what another node acknowledged is seen here (nothing on one node: memory is the
/// database). Answers whether the row read was applied: not when this node queued a
/// write to it meanwhile (that write decides; ask again once it has).
#[derive(Message)]
#[rtype(result = "bool")]
pub(super) struct RereadRow(pub(super) Table, pub(super) String);

impl Handler<RereadRow> for ObjectivesActor {
    type Result = ResponseActFuture<Self, bool>;

    fn handle(
        &mut self,
        RereadRow(table, id): RereadRow,
        _ctx: &mut Self::Context,
    ) -> Self::Result {
        if !self.cluster.is_clustered() {
            return Box::pin(actix::fut::ready(true));
        }
        Box::pin(self.reread_row(table, id))
    }
}

/// A change another node made.
#[derive(Message)]
#[rtype(result = "()")]
struct Changed(Change);

/// The shards this node holds now.
#[derive(Message)]
#[rtype(result = "()")]
struct Owned(BTreeMap<u32, u64>);

impl Handler<Changed> for ObjectivesActor {
    type Result = ();

    fn handle(&mut self, Changed(change): Changed, ctx: &mut Self::Context) {
        match change {
            Change::Row { table, key } if matches!(table, Table::Objectives | Table::Agents) => {
                if let Ok(id) = String::from_utf8(key) {
                    self.dirty.insert((table, id));
                    self.reread(ctx);
                }
            }
            Change::Resync => {
                for id in self.objectives.keys() {
                    self.dirty.insert((Table::Objectives, id.clone()));
                }
                for id in self.agents.keys() {
                    self.dirty.insert((Table::Agents, id.clone()));
                }
                // Rows created elsewhere while this node was not listening: a full
                // read finds them.
                self.reread_all(ctx);
            }
            Change::Row { .. } | Change::Lost => {}
        }
    }
}

impl ObjectivesActor {
    /// Rereads the dirty rows soon (once per burst), after this node's queued writes.
    pub(super) fn reread(&mut self, ctx: &mut Context<Self>) {
        if self.rereading || self.dirty.is_empty() {
            return;
        }
        self.rereading = true;
        ctx.run_later(REREAD_DELAY, |act, ctx| {
            let keys: Vec<(Table, String)> = std::mem::take(&mut act.dirty).into_iter().collect();
            let generations: Vec<u64> = keys
                .iter()
                .map(|(table, id)| act.generation.of(*table, id))
                .collect();
            let barrier = act.writer.submit(Vec::new());
            let storage = act.storage.clone();
            let wanted = keys.clone();
            ctx.spawn(
                async move {
                    barrier.await?;
                    // One read per table, whatever the number of rows.
                    let mut rows = vec![None; wanted.len()];
                    for table in [Table::Agents, Table::Objectives] {
                        let at: Vec<usize> = (0..wanted.len())
                            .filter(|&i| wanted[i].0 == table)
                            .collect();
                        if at.is_empty() {
                            continue;
                        }
                        let keys: Vec<Vec<u8>> =
                            at.iter().map(|&i| wanted[i].1.as_bytes().to_vec()).collect();
                        for (i, row) in at.into_iter().zip(storage.read_rows(table, &keys).await?) {
                            rows[i] = row;
                        }
                    }
                    Ok::<_, palyra_storage::StorageError>(rows)
                }
                .into_actor(act)
                .map(move |read, act, ctx| {
                    act.rereading = false;
                    match read {
                        Ok(rows) => {
                            for (((table, id), generation), row) in
                                keys.into_iter().zip(generations).zip(rows)
                            {
                                act.apply_row(table, id, generation, row);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "rereading changed objectives failed; retrying");
                            act.dirty.extend(keys);
                        }
                    }
                    act.reread(ctx);
                }),
            );
        });
    }

    /// Rereads one objective after this node's queued writes and applies it (unless a
    /// write to it was queued meanwhile: then that write decides, as in `reread`).
    pub(super) fn reread_objective(
        &mut self,
        id: String,
    ) -> impl ActorFuture<Self, Output = ()> + use<> {
        self.reread_row(Table::Objectives, id).map(|_, _, _| ())
    }

    /// [`Self::reread_objective`] for an agent or an objective.
    pub(super) fn reread_row(
        &mut self,
        table: Table,
        id: String,
    ) -> impl ActorFuture<Self, Output = bool> + use<> {
        let generation = self.generation.of(table, &id);
        let barrier = self.writer.submit(Vec::new());
        let storage = self.storage.clone();
        let key = id.as_bytes().to_vec();
        async move {
            barrier.await?;
            storage.read_row(table, &key).await
        }
        .into_actor(self)
        .map(move |read, act, _| match read {
            Ok(row) => act.apply_row(table, id, generation, row),
            Err(e) => {
                tracing::warn!(%id, error = %e, "rereading a row failed");
                true
            }
        })
    }

    /// Reads every agent and objective (rows another node created while this one was
    /// not listening) and applies what changed.
    fn reread_all(&mut self, ctx: &mut Context<Self>) {
        let barrier = self.writer.submit(Vec::new());
        let storage = self.storage.clone();
        let generations = self.generation.clone();
        ctx.spawn(
            async move {
                barrier.await?;
                let agents = storage.read_table(Table::Agents).await?;
                let objectives = storage.read_table(Table::Objectives).await?;
                Ok::<_, palyra_storage::StorageError>((agents, objectives))
            }
            .into_actor(self)
            .map(move |read, act, ctx| match read {
                Ok((agents, objectives)) => {
                    act.apply_table(Table::Agents, agents, &generations);
                    act.apply_table(Table::Objectives, objectives, &generations);
                    // What the full read covered is no longer dirty.
                    act.dirty.clear();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "rereading objectives failed; retrying");
                    ctx.run_later(std::time::Duration::from_secs(1), |act, ctx| {
                        act.reread_all(ctx)
                    });
                }
            }),
        );
    }

    /// Applies every row of a full read, and drops what is gone from it.
    fn apply_table(&mut self, table: Table, rows: Vec<Row>, generations: &Generations) {
        let mut seen = BTreeSet::new();
        for (key, value) in rows {
            let Ok(id) = String::from_utf8(key) else {
                continue;
            };
            seen.insert(id.clone());
            let generation = generations.of(table, &id);
            self.apply_row(table, id, generation, Some(value));
        }
        let gone: Vec<String> = match table {
            Table::Agents => self
                .agents
                .keys()
                .filter(|id| !seen.contains(*id))
                .cloned()
                .collect(),
            _ => self
                .objectives
                .keys()
                .filter(|id| !seen.contains(*id))
                .cloned()
                .collect(),
        };
        for id in gone {
            let generation = generations.of(table, &id);
            self.apply_row(table, id, generation, None);
        }
    }

    /// Applies one row as storage holds it, unless this node queued a write to it
    /// after `generation` (then that write's compare-and-set decides, and a refusal
    /// rereads it again).
    fn apply_row(
        &mut self,
        table: Table,
        id: String,
        generation: u64,
        row: Option<Vec<u8>>,
    ) -> bool {
        if self.generation.of(table, &id) != generation {
            self.dirty.insert((table, id));
            return false;
        }
        match table {
            Table::Agents => match row.map(|v| decode_record::<AgentRecord>(&v)) {
                Some(Ok(agent)) => {
                    self.agents.insert(id, agent);
                }
                Some(Err(e)) => tracing::warn!(agent_id = %id, error = %e, "unreadable agent row"),
                None => {
                    self.agents.remove(&id);
                }
            },
            Table::Objectives => {
                if self.stored.get(&id) == row.as_ref() {
                    return true;
                }
                match row {
                    Some(value) => match decode_record::<ObjectiveRecord>(&value) {
                        Ok(objective) => {
                            self.stored.insert(id.clone(), value);
                            self.sync_schedule(&objective);
                            let state = objective.state;
                            let before = self.objectives.insert(id.clone(), Box::new(objective));
                            // Paused or cancelled on another node: a run of it going
                            // here stops.
                            if before.is_some_and(|b| b.state != state) {
                                self.stop_inactive(&id, None);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(objective_id = %id, error = %e, "unreadable objective row");
                        }
                    },
                    None => {
                        self.stored.remove(&id);
                        self.scheduler.remove(id.clone());
                        self.objectives.remove(&id);
                    }
                }
            }
            _ => {}
        }
        true
    }
}

impl Handler<Owned> for ObjectivesActor {
    type Result = ();

    fn handle(&mut self, Owned(now): Owned, ctx: &mut Self::Context) {
        let before = std::mem::replace(&mut self.owned, now.clone());
        let lost: BTreeSet<u32> = before
            .iter()
            .filter(|(shard, epoch)| now.get(shard) != Some(epoch))
            .map(|(shard, _)| *shard)
            .collect();
        let gained: BTreeSet<u32> = now
            .iter()
            .filter(|(shard, epoch)| before.get(shard) != Some(epoch))
            .map(|(shard, _)| *shard)
            .collect();
        if !lost.is_empty() {
            // Stop firing at once; a firing already decided is fenced by the database.
            for objective in self.objectives.values() {
                if lost.contains(&shard_of(objective.objective_id.as_bytes())) {
                    self.scheduler.remove(objective.objective_id.clone());
                }
            }
            tracing::info!(shards = ?lost, "stopped firing the objectives of shards given up");
        }
        if gained.is_empty() {
            return;
        }
        let barrier = self.writer.submit(Vec::new());
        let storage = self.storage.clone();
        let generations = self.generation.clone();
        ctx.spawn(
            async move {
                barrier.await?;
                storage.read_table(Table::Objectives).await
            }
            .into_actor(self)
            .map(move |read, act, ctx| match read {
                Ok(rows) => {
                    let rows: Vec<Row> = rows
                        .into_iter()
                        .filter(|(key, _)| gained.contains(&shard_of(key)))
                        .collect();
                    act.apply_table_rows(rows, &generations);
                    act.take_over(&gained, ctx);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the objectives of gained shards failed; retrying");
                    // Forget the gain, so the next ownership message retries it.
                    for shard in &gained {
                        act.owned.remove(shard);
                    }
                    ctx.run_later(std::time::Duration::from_secs(1), |act, ctx| {
                        let now = act.cluster.watch_owned().borrow().clone();
                        ctx.notify(Owned(now));
                    });
                }
            }),
        );
    }
}

impl ObjectivesActor {
    fn apply_table_rows(&mut self, rows: Vec<Row>, generations: &Generations) {
        for (key, value) in rows {
            if let Ok(id) = String::from_utf8(key) {
                let generation = generations.of(Table::Objectives, &id);
                self.apply_row(Table::Objectives, id, generation, Some(value));
            }
        }
    }

    /// The objectives of newly held shards: runs their previous node left going
    /// (interrupted if that node is gone), firings that fell due meanwhile
    /// (`recover_objective` with the late threshold), then the scheduler.
    fn take_over(&mut self, gained: &BTreeSet<u32>, ctx: &mut Context<Self>) {
        let now = to_datetime(now_ms());
        let threshold = chrono::Duration::from_std(self.cluster.late_fire_threshold())
            .unwrap_or_else(|_| chrono::Duration::zero());
        let mut ids = in_id_order(&self.objectives);
        ids.retain(|id| gained.contains(&shard_of(id.as_bytes())));
        let mut recovered = 0usize;
        for id in ids {
            let Some(claim) = self.cluster.claim(id.as_bytes()) else {
                continue;
            };
            let Some(mut objective) = self.objectives.get(&id).map(|o| (**o).clone()) else {
                continue;
            };
            if let Some(last) = &objective.last_run
                && last.status == RunStatus::Running
                && !self.running.contains_key(&id)
            {
                self.elsewhere.insert(id.clone(), last.run_id.clone());
            }
            let Some(found) =
                recover_objective(&mut objective, now, threshold, self.policy.run_retention)
            else {
                self.sync_schedule(&objective);
                continue;
            };
            recovered += 1;
            let mut ops = found.runs;
            ops.push(self.objective_write(&objective));
            ops.extend(claim.fence_op());
            self.objectives
                .insert(id.clone(), Box::new(objective.clone()));
            // A late or caught-up firing schedules the objective once it has claimed
            // its instant; scheduling it now would fire that instant as on time.
            if found.fire.is_none() {
                self.sync_schedule(&objective);
            }
            let fire = found.fire;
            ctx.spawn(self.commit(ops).map(move |result, _act, ctx| {
                if let (Ok(()), Some(fire)) = (result, fire) {
                    ctx.notify(fire);
                }
            }));
        }
        tracing::info!(shards = ?gained, recovered, "took over shards");
        self.find_orphans(gained, ctx);
    }

    /// Runs a previous owner of the gained shards left `running` or `queued` (found by
    /// their status, however many newer records the objective has: a queued firing
    /// can sit under any number of firings skipped for overlap): running ones are
    /// watched until their node is gone, then interrupted; a queued one whose node is
    /// gone (or that this node no longer has waiting) is recorded as missed.
    fn find_orphans(&mut self, gained: &BTreeSet<u32>, ctx: &mut Context<Self>) {
        let ids: HashSet<String> = self
            .objectives
            .keys()
            .filter(|id| gained.contains(&shard_of(id.as_bytes())))
            .cloned()
            .collect();
        // After this node's queued writes: a run of its own that just finished is read
        // finished, not as left going.
        let barrier = self.writer.submit(Vec::new());
        let storage = self.storage.clone();
        ctx.spawn(
            async move {
                barrier.await?;
                let mut found = Vec::new();
                for (key, bytes) in storage
                    .read_runs_with_status(&["running", "queued"])
                    .await?
                {
                    if let Ok(run) = decode_record::<RunRecord>(&bytes)
                        && matches!(run.status, RunStatus::Running | RunStatus::Queued)
                        && ids.contains(&run.objective_id)
                    {
                        found.push((run.objective_id.clone(), key, bytes, run));
                    }
                }
                Ok::<_, palyra_storage::StorageError>(found)
            }
            .into_actor(self)
            .map(|read, act, ctx| {
                let found = match read {
                    Ok(found) => found,
                    Err(e) => {
                        tracing::warn!(error = %e, "looking for runs a previous owner left failed");
                        return;
                    }
                };
                for (objective_id, key, bytes, run) in found {
                    let mine_going = act.running.get(&objective_id) == Some(&run.run_id)
                        || act
                            .queued
                            .get(&objective_id)
                            .is_some_and(|w| w.scheduled_for == run.scheduled_for)
                        || act.waiting.holds(&objective_id, &run.run_id);
                    if mine_going {
                        continue;
                    }
                    match run.status {
                        RunStatus::Running => {
                            act.elsewhere.insert(objective_id, run.run_id);
                        }
                        _ => {
                            if act.run_is_dead(&run, run.scheduled_for) {
                                act.drop_orphan_queued(&objective_id, key, bytes, run, ctx);
                            }
                        }
                    }
                }
                act.sweep_elsewhere(ctx);
            }),
        );
    }

    /// True when the node a run or queued firing belongs to can no longer finish it:
    /// gone (no heartbeat within the TTL), restarted since `since` (a node keeps its
    /// id across restarts, not its runs), or this node without it going.
    fn run_is_dead(&self, run: &RunRecord, since: Option<DateTime<Utc>>) -> bool {
        let objective_id = run.objective_id.as_str();
        match run.node_id.as_deref() {
            Some(node) if node == self.cluster.node_id() => {
                !self.finishing.contains(&run.run_id)
                    && self.running.get(objective_id) != Some(&run.run_id)
                    && self
                        .queued
                        .get(objective_id)
                        .is_none_or(|w| w.scheduled_for != run.scheduled_for)
                    && !self.waiting.holds(objective_id, &run.run_id)
            }
            Some(node) => match self.cluster.started_at(node) {
                None => true,
                Some(life) => since.is_none_or(|at| at < life),
            },
            None => true,
        }
    }

    /// Records a queued firing nobody will start as missed, fenced by this node's
    /// lease, only if its row is still what was read.
    fn drop_orphan_queued(
        &mut self,
        objective_id: &str,
        key: Vec<u8>,
        read: Vec<u8>,
        mut run: RunRecord,
        ctx: &mut Context<Self>,
    ) {
        let Some(claim) = self.cluster.claim(objective_id.as_bytes()) else {
            return;
        };
        run.status = RunStatus::Missed;
        run.finished_at = Some(to_datetime(now_ms()));
        run.error = Some("the node that queued this firing stopped before starting it".into());
        let mut ops = vec![WriteOp::CompareAndSet {
            table: Table::Runs,
            key,
            expected: Some(read),
            value: palyra_storage::encode_record(&run),
        }];
        ops.extend(claim.fence_op());
        self.metrics.count_run(RunStatus::Missed);
        ctx.spawn(self.commit(ops).map(|_, _, _| ()));
    }

    /// Runs recorded as going on another node: once that node is gone (no heartbeat
    /// within the TTL), the run is recorded as interrupted, fenced by this node's
    /// lease so only the shard's owner does it.
    fn sweep_elsewhere(&mut self, ctx: &mut Context<Self>) {
        if !self.cluster.has_view() {
            return;
        }
        let candidates: Vec<(String, String)> = self
            .elsewhere
            .iter()
            .map(|(o, r)| (o.clone(), r.clone()))
            .collect();
        for (objective_id, run_id) in candidates {
            // The run row decides (read below), not `last_run`, which later firings
            // (skipped for overlap, missed) move on.
            if !self.objectives.contains_key(&objective_id)
                || self.cluster.claim(objective_id.as_bytes()).is_none()
            {
                self.elsewhere.remove(&objective_id);
                continue;
            }
            let Some(seq) = run_id
                .rsplit('-')
                .next()
                .and_then(|s| s.parse::<u64>().ok())
            else {
                self.elsewhere.remove(&objective_id);
                continue;
            };
            let key = run_key(&objective_id, seq);
            let barrier = self.writer.submit(Vec::new());
            let storage = self.storage.clone();
            ctx.spawn(
                async move {
                    barrier.await?;
                    storage.read_row(Table::Runs, &key).await
                }
                .into_actor(self)
                .map(move |read, act, ctx| {
                    let Ok(Some(bytes)) = read else {
                        return;
                    };
                    let Ok(run) = decode_record::<RunRecord>(&bytes) else {
                        return;
                    };
                    if run.status != RunStatus::Running {
                        act.elsewhere.remove(&objective_id);
                        return;
                    }
                    if act.run_is_dead(&run, run.started_at) {
                        act.interrupt_elsewhere(&objective_id, run, bytes, ctx);
                    }
                }),
            );
        }
    }

    /// Records a run whose node died as interrupted: the run row only if it still
    /// holds what was read, the objective by compare-and-set, under this node's lease.
    fn interrupt_elsewhere(
        &mut self,
        objective_id: &str,
        mut run: RunRecord,
        read: Vec<u8>,
        ctx: &mut Context<Self>,
    ) {
        let Some(claim) = self.cluster.claim(objective_id.as_bytes()) else {
            return;
        };
        let Some(mut objective) = self.objectives.get(objective_id).map(|o| (**o).clone()) else {
            return;
        };
        let now: DateTime<Utc> = to_datetime(now_ms());
        let seq: u64 = run
            .run_id
            .rsplit('-')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        run.status = RunStatus::Interrupted;
        run.finished_at = Some(now);
        run.error = Some(format!(
            "node {} stopped during the run",
            run.node_id.as_deref().unwrap_or("?")
        ));
        // Later firings (skipped, missed) may have moved `last_run` on already.
        if objective
            .last_run
            .as_ref()
            .is_some_and(|l| l.run_id == run.run_id)
        {
            objective.last_run = Some(RunSummary {
                run_id: run.run_id.clone(),
                status: RunStatus::Interrupted,
                at: now,
            });
        }
        objective.updated_at = now;
        let key = run_key(objective_id, seq);
        let mut ops = vec![WriteOp::CompareAndSet {
            table: Table::Runs,
            key,
            expected: Some(read),
            value: palyra_storage::encode_record(&run),
        }];
        ops.push(self.objective_write(&objective));
        ops.extend(claim.fence_op());
        tracing::warn!(objective_id, run_id = %run.run_id, "the run's node is gone; recorded as interrupted");
        self.elsewhere.remove(objective_id);
        self.metrics.count_run(RunStatus::Interrupted);
        self.objectives
            .insert(objective_id.to_owned(), Box::new(objective));
        ctx.spawn(self.commit(ops).map(|_, _, _| ()));
    }
}
