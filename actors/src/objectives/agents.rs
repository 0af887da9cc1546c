//! Agents on the objectives actor: create, change, delete (refused while an objective
//! that is not archived names the agent), get and list.

use actix::prelude::*;
use palyra_storage::{Table, WriteOp};

use super::actor::ObjectivesActor;
use super::input::{AgentPatch, NewAgent};
use super::model::{AgentPage, AgentRecord, ObjectiveState};
use crate::error::ActorError;
use crate::time::{now_ms, to_datetime};

#[derive(Message)]
#[rtype(result = "Result<AgentRecord, ActorError>")]
pub(super) struct CreateAgent(pub(super) NewAgent);

impl Handler<CreateAgent> for ObjectivesActor {
    type Result = ResponseActFuture<Self, Result<AgentRecord, ActorError>>;

    fn handle(&mut self, CreateAgent(new): CreateAgent, _ctx: &mut Self::Context) -> Self::Result {
        if self.agents.contains_key(&new.agent_id) {
            return Box::pin(actix::fut::ready(Err(ActorError::Conflict(format!(
                "agent {} already exists; PATCH it to change it",
                new.agent_id
            )))));
        }
        if let Err(reason) = self.policy.tools.check_roots(&new.workspace_roots) {
            return Box::pin(actix::fut::ready(Err(ActorError::invalid(
                "workspace_roots",
                reason,
            ))));
        }
        let now = to_datetime(now_ms());
        let agent = AgentRecord {
            display_name: new.display_name.unwrap_or_else(|| new.agent_id.clone()),
            agent_id: new.agent_id,
            workspace_roots: new.workspace_roots,
            default_model_profile: new.default_model_profile,
            model: if new.model.is_empty() {
                new.model_profiles
                    .first()
                    .map(|c| c.model.clone())
                    .unwrap_or_default()
            } else {
                new.model
            },
            model_profiles: new.model_profiles,
            max_concurrent_runs: new.max_concurrent_runs,
            tools: super::input::dedup_tools(new.tools),
            max_tool_calls: new.max_tool_calls,
            budget: new.budget,
            created_at: now,
            updated_at: now,
        };
        self.put_agent(agent)
    }
}

impl ObjectivesActor {
    fn put_agent(
        &mut self,
        agent: AgentRecord,
    ) -> ResponseActFuture<Self, Result<AgentRecord, ActorError>> {
        let ops = vec![WriteOp::put(agent.agent_id.as_bytes().to_vec(), &agent)];
        self.generation.touch(Table::Agents, &agent.agent_id);
        self.agents.insert(agent.agent_id.clone(), agent.clone());
        Box::pin(
            self.commit(ops)
                .map(move |result, _, _| result.map(|()| agent)),
        )
    }
}

#[derive(Message)]
#[rtype(result = "Result<AgentRecord, ActorError>")]
pub(super) struct UpdateAgent(pub(super) String, pub(super) AgentPatch);

impl Handler<UpdateAgent> for ObjectivesActor {
    type Result = ResponseActFuture<Self, Result<AgentRecord, ActorError>>;

    fn handle(
        &mut self,
        UpdateAgent(id, patch): UpdateAgent,
        _ctx: &mut Self::Context,
    ) -> Self::Result {
        let Some(mut agent) = self.agents.get(&id).cloned() else {
            return Box::pin(actix::fut::ready(Err(ActorError::NotFound {
                what: "agent",
                id,
            })));
        };
        if let Some(v) = patch.display_name {
            agent.display_name = v;
        }
        if let Some(v) = patch.workspace_roots {
            if let Err(reason) = self.policy.tools.check_roots(&v) {
                return Box::pin(actix::fut::ready(Err(ActorError::invalid(
                    "workspace_roots",
                    reason,
                ))));
            }
            agent.workspace_roots = v;
        }
        if let Some(v) = patch.tools {
            agent.tools = super::input::dedup_tools(v);
        }
        if let Some(v) = patch.max_tool_calls {
            agent.max_tool_calls = v;
        }
        if let Some(v) = patch.default_model_profile {
            agent.default_model_profile = v;
        }
        if let Some(v) = patch.max_concurrent_runs {
            agent.max_concurrent_runs = v;
        }
        if let Some(v) = patch.budget {
            agent.budget = v;
        }
        if let Some(v) = patch.model {
            agent.model = v;
        }
        if let Some(v) = patch.model_profiles {
            agent.model_profiles = v;
        }
        agent.updated_at = to_datetime(now_ms());
        self.put_agent(agent)
    }
}

#[derive(Message)]
#[rtype(result = "Result<(), ActorError>")]
pub(super) struct DeleteAgent(pub(super) String);

impl Handler<DeleteAgent> for ObjectivesActor {
    type Result = ResponseActFuture<Self, Result<(), ActorError>>;

    fn handle(&mut self, DeleteAgent(id): DeleteAgent, _ctx: &mut Self::Context) -> Self::Result {
        if !self.agents.contains_key(&id) {
            return Box::pin(actix::fut::ready(Err(ActorError::NotFound {
                what: "agent",
                id,
            })));
        }
        let referenced = self
            .objectives
            .values()
            .filter(|o| o.agent_id == id && o.state != ObjectiveState::Archived)
            .count();
        if referenced > 0 {
            return Box::pin(actix::fut::ready(Err(ActorError::Conflict(format!(
                "{referenced} objective(s) reference agent {id}; archive them first"
            )))));
        }
        self.agents.remove(&id);
        self.generation.touch(Table::Agents, &id);
        let ops = vec![WriteOp::delete(Table::Agents, id.as_bytes().to_vec())];
        Box::pin(self.commit(ops))
    }
}

#[derive(Message)]
#[rtype(result = "Result<AgentRecord, ActorError>")]
pub(super) struct GetAgent(pub(super) String);

impl Handler<GetAgent> for ObjectivesActor {
    type Result = Result<AgentRecord, ActorError>;

    fn handle(&mut self, GetAgent(id): GetAgent, _ctx: &mut Self::Context) -> Self::Result {
        self.agents
            .get(&id)
            .cloned()
            .ok_or(ActorError::NotFound { what: "agent", id })
    }
}

#[derive(Message)]
#[rtype(result = "AgentPage")]
pub(super) struct ListAgents {
    pub(super) limit: usize,
    pub(super) after: Option<String>,
}

impl Handler<ListAgents> for ObjectivesActor {
    type Result = MessageResult<ListAgents>;

    fn handle(&mut self, msg: ListAgents, _ctx: &mut Self::Context) -> Self::Result {
        use std::ops::Bound;
        let start = msg.after.map_or(Bound::Unbounded, Bound::Excluded);
        let agents = self
            .agents
            .range((start, Bound::Unbounded))
            .map(|(_, a)| a.clone());
        let (items, next_after) = crate::paging::page_of(agents, msg.limit, |a| a.agent_id.clone());
        MessageResult(AgentPage { items, next_after })
    }
}
