//! `ObjectivesHandle`, the one way into the objectives actor: it validates requests
//! before they reach the actor, reads run history straight from redb, and starts the
//! actor (after recovery) with its scheduler.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use palyra_storage::{Storage, Table, WriteOp, Writer, decode_record};

use super::actor::{Drain, ObjectivesActor, ObjectivesPolicy, load_agents_and_objectives, recover};
use super::agents::{CreateAgent, DeleteAgent, GetAgent, ListAgents, UpdateAgent};
use super::cancel::CancelRun;
use super::input::{
    AgentPatch, NewAgent, NewObjective, ObjectiveFilter, ObjectivePatch, validate_name,
};
use super::lifecycle::{CreateObjective, GetObjective, Lifecycle, ListObjectives, UpdateObjective};
use super::model::{
    AgentPage, AgentRecord, LifecycleAction, ObjectivePage, ObjectiveRecord, RunPage, RunRecord,
    run_key, run_prefix,
};
use super::sync::RereadRow;
use crate::audit::AuditLog;
use crate::cluster::ClusterHandle;
use crate::error::{ActorError, stopped};
use crate::metrics::ActorMetrics;
use crate::refresher::RefresherHandle;
use crate::registry::RegistryHandle;
use crate::reload::ReloadState;
use crate::scheduler::SchedulerHandle;
use crate::snapshot::Snapshot;

/// Handle to the objectives actor. Cloning is shallow.
#[derive(Clone)]
pub struct ObjectivesHandle {
    addr: Addr<ObjectivesActor>,
    /// Run history is read here, without a hop through the actor.
    storage: Storage,
    /// Whether `usage.prices` sets any price: a cost limit needs one.
    priced: bool,
}

impl std::fmt::Debug for ObjectivesHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectivesHandle").finish_non_exhaustive()
    }
}

impl ObjectivesHandle {
    /// Loads agents and objectives, marks runs left running as interrupted, records
    /// firings missed while the daemon was down, and starts the actor and its
    /// scheduler inside the actix System. Runs call providers with `http_client`, the
    /// daemon's one outbound client (`crate::outbound::client`).
    // Every dependency is named, as in every handle's start; a struct of them would
    // only move the names.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        storage: &Storage,
        snapshot: &Snapshot,
        cluster: ClusterHandle,
        writer: Writer,
        registry: RegistryHandle,
        refresher: RefresherHandle,
        http_client: reqwest::Client,
        policy: ObjectivesPolicy,
        audit: AuditLog,
        metrics: ActorMetrics,
    ) -> Result<Self, ActorError> {
        let (agents, mut objectives) = load_agents_and_objectives(snapshot)?;
        let mut stored: HashMap<String, Vec<u8>> = snapshot
            .rows(Table::Objectives)
            .iter()
            .filter_map(|(k, v)| Some((String::from_utf8(k.clone()).ok()?, v.clone())))
            .collect();
        let priced = !policy.prices.0.is_empty();
        // One node recovers everything at start; in a cluster each node recovers the
        // shards it takes, when it takes them (`sync.rs`), since the others' runs and
        // firings are not this node's to judge.
        let (ops, catch_up) = if cluster.is_clustered() {
            (Vec::new(), Vec::new())
        } else {
            recover(snapshot, &mut objectives, policy.run_retention)?
        };
        for op in &ops {
            if let WriteOp::Put {
                table: Table::Objectives,
                key,
                value,
            } = op
                && let Ok(id) = String::from_utf8(key.clone())
            {
                stored.insert(id, value.clone());
            }
        }
        if !ops.is_empty() {
            writer.write(ops).await?;
        }
        let actor_storage = storage.clone();
        let addr = ObjectivesActor::create(move |ctx| {
            let scheduler = SchedulerHandle::start(ctx.address().recipient());
            ObjectivesActor {
                cluster,
                writer,
                storage: actor_storage,
                reload: ReloadState::default(),
                draining: false,
                registry,
                refresher,
                http_client,
                scheduler,
                policy,
                agents,
                objectives,
                running: HashMap::new(),
                queued: HashMap::new(),
                catch_up,
                audit,
                metrics,
                stored,
                generation: Default::default(),
                dirty: Default::default(),
                rereading: false,
                owned: Default::default(),
                finishing: Default::default(),
                elsewhere: HashMap::new(),
                waiting: Default::default(),
                aborts: HashMap::new(),
                cancels: Default::default(),
                period_reads: Default::default(),
            }
        });
        Ok(Self {
            addr,
            storage: storage.clone(),
            priced,
        })
    }

    pub async fn create_agent(&self, new: NewAgent) -> Result<AgentRecord, ActorError> {
        new.validate()?;
        super::input::validate_agent_cost(new.budget.as_ref(), self.priced)?;
        self.addr
            .send(CreateAgent(new))
            .await
            .map_err(stopped("objectives"))?
    }

    pub async fn update_agent(
        &self,
        agent_id: &str,
        patch: AgentPatch,
    ) -> Result<AgentRecord, ActorError> {
        patch.validate()?;
        super::input::validate_agent_cost(
            patch.budget.as_ref().and_then(Option::as_ref),
            self.priced,
        )?;
        self.reread_agent(agent_id).await?;
        self.addr
            .send(UpdateAgent(agent_id.to_owned(), patch))
            .await
            .map_err(stopped("objectives"))?
    }

    pub async fn delete_agent(&self, agent_id: &str) -> Result<(), ActorError> {
        self.reread_agent(agent_id).await?;
        self.addr
            .send(DeleteAgent(agent_id.to_owned()))
            .await
            .map_err(stopped("objectives"))?
    }

    pub async fn get_agent(&self, agent_id: &str) -> Result<AgentRecord, ActorError> {
        self.reread_agent(agent_id).await?;
        self.addr
            .send(GetAgent(agent_id.to_owned()))
            .await
            .map_err(stopped("objectives"))?
    }

    pub async fn list_agents(
        &self,
        limit: usize,
        after: Option<String>,
    ) -> Result<AgentPage, ActorError> {
        crate::paging::check_page_limit(limit)?;
        self.addr
            .send(ListAgents { limit, after })
            .await
            .map_err(stopped("objectives"))
    }

    pub async fn create_objective(&self, new: NewObjective) -> Result<ObjectiveRecord, ActorError> {
        new.validate()?;
        super::input::validate_cost(Some(&new.budget), self.priced)?;
        // Its agent may have been created on another node a moment ago.
        self.reread_agent(&new.agent_id).await?;
        self.addr
            .send(CreateObjective(new))
            .await
            .map_err(stopped("objectives"))?
    }

    pub async fn update_objective(
        &self,
        objective_id: &str,
        patch: ObjectivePatch,
    ) -> Result<ObjectiveRecord, ActorError> {
        patch.validate()?;
        super::input::validate_cost(patch.budget.as_ref(), self.priced)?;
        self.reread(objective_id).await?;
        self.addr
            .send(UpdateObjective {
                objective_id: objective_id.to_owned(),
                patch,
                attempt: 0,
            })
            .await
            .map_err(stopped("objectives"))?
    }

    pub async fn get_objective(&self, objective_id: &str) -> Result<ObjectiveRecord, ActorError> {
        self.reread(objective_id).await?;
        self.addr
            .send(GetObjective(objective_id.to_owned()))
            .await
            .map_err(stopped("objectives"))?
    }

    pub async fn list_objectives(
        &self,
        filter: ObjectiveFilter,
        limit: usize,
        after: Option<String>,
    ) -> Result<ObjectivePage, ActorError> {
        crate::paging::check_page_limit(limit)?;
        self.addr
            .send(ListObjectives {
                filter,
                limit,
                after,
            })
            .await
            .map_err(stopped("objectives"))
    }

    /// In a cluster, rereads the agent so an edit, a read or an objective of it here
    /// sees what another node acknowledged.
    async fn reread_agent(&self, agent_id: &str) -> Result<(), ActorError> {
        self.reread_row(Table::Agents, agent_id).await
    }

    /// Rereads a row until it is applied: a read is set aside when this node queued a
    /// write to the row meanwhile (a run's start or finish), and the next read, after
    /// that write was applied or refused, sees the outcome.
    async fn reread_row(&self, table: Table, id: &str) -> Result<(), ActorError> {
        const ATTEMPTS: usize = 5;
        for _ in 0..ATTEMPTS {
            let applied = self
                .addr
                .send(RereadRow(table, id.to_owned()))
                .await
                .map_err(stopped("objectives"))?;
            if applied {
                break;
            }
        }
        Ok(())
    }

    /// In a cluster, rereads the objective so an edit or a read here sees what another
    /// node acknowledged (lists are kept in step by the change feed, within moments).
    async fn reread(&self, objective_id: &str) -> Result<(), ActorError> {
        self.reread_row(Table::Objectives, objective_id).await
    }

    /// Applies a lifecycle action; an illegal one is `Conflict` naming the state.
    pub async fn lifecycle(
        &self,
        objective_id: &str,
        action: LifecycleAction,
        reason: Option<String>,
    ) -> Result<ObjectiveRecord, ActorError> {
        if let Some(reason) = &reason {
            validate_name("reason", reason, 500)?;
        }
        self.reread(objective_id).await?;
        self.addr
            .send(Lifecycle {
                objective_id: objective_id.to_owned(),
                action,
                reason,
                attempt: 0,
            })
            .await
            .map_err(stopped("objectives"))?
    }

    /// Cancels one run: a run going here is stopped (its provider call dropped) and a
    /// waiting one never starts; answers the `cancelled` record once durable. A run
    /// going on another node is `Conflict` naming it, a finished one `Conflict`.
    pub async fn cancel_run(
        &self,
        objective_id: &str,
        run_id: &str,
    ) -> Result<RunRecord, ActorError> {
        self.reread(objective_id).await?;
        self.addr
            .send(CancelRun {
                objective_id: objective_id.to_owned(),
                run_id: run_id.to_owned(),
            })
            .await
            .map_err(stopped("objectives"))?
    }

    /// An objective's runs, newest first (a read of redb, no actor hop).
    pub async fn runs(
        &self,
        objective_id: &str,
        limit: usize,
        before: Option<String>,
    ) -> Result<RunPage, ActorError> {
        crate::paging::check_page_limit(limit)?;
        self.get_objective(objective_id).await?;
        let before_key = match &before {
            Some(cursor) => {
                let seq: u64 = cursor
                    .rsplit('-')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| ActorError::invalid("before", "not a run id"))?;
                Some(run_key(objective_id, seq))
            }
            None => None,
        };
        let rows = self
            .storage
            .read_prefix_rev(
                Table::Runs,
                &run_prefix(objective_id),
                before_key.as_deref(),
                limit + 1,
            )
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        for (_, value) in rows {
            items.push(decode_record::<RunRecord>(&value)?);
        }
        let next_before = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|r| r.run_id.clone())
        } else {
            None
        };
        Ok(RunPage { items, next_before })
    }

    pub fn is_running(&self) -> bool {
        self.addr.connected()
    }

    /// At shutdown: starts no new run and waits (up to `limit`) for the runs going,
    /// so their results are durable before the writer stops.
    pub async fn drain(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let Ok(going) = self.addr.send(Drain).await else {
                return;
            };
            if going == 0 || tokio::time::Instant::now() >= deadline {
                if going > 0 {
                    tracing::warn!(
                        going,
                        "stopping with runs going; they will show as interrupted"
                    );
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
