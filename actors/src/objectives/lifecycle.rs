//! Objectives on the objectives actor: create, change, get, list, and the lifecycle
//! actions of `TRANSITIONS` (and `fire`, a manual run within budget).

use actix::prelude::*;

use super::actor::{ObjectivesActor, next_run};
use super::input::{
    NewObjective, ObjectiveFilter, ObjectivePatch, build_automation, validate_objective_texts,
};
use super::model::{
    LifecycleAction, ObjectiveKind, ObjectivePage, ObjectiveRecord, ObjectiveState, RunTrigger,
    Usage, transition,
};
use crate::error::ActorError;
use crate::time::{now_ms, to_datetime};

/// How often an edit refused by the database (a row changed meanwhile: a run of it
/// finished, another node edited it) is applied again to the objective reread.
const EDIT_ATTEMPTS: u8 = 3;

impl ObjectivesActor {
    /// Writes `objective` as it is and keeps its scheduler entry in step. A refusal
    /// answers `Refused` as it is: the edit's handler applies the edit again to the
    /// objective reread (`edit_again`).
    fn put_objective(
        &mut self,
        objective: ObjectiveRecord,
    ) -> ResponseActFuture<Self, Result<ObjectiveRecord, ActorError>> {
        let ops = vec![self.objective_write(&objective)];
        self.sync_schedule(&objective);
        self.objectives
            .insert(objective.objective_id.clone(), Box::new(objective.clone()));
        Box::pin(
            self.commit(ops)
                .map(move |result, _, _| result.map(|()| objective)),
        )
    }

    /// An edit's write, and on a refusal the same edit (`again`, its attempt counted)
    /// applied to the objective as the database holds it after this node's queued
    /// writes; after the last attempt a refusal is a `Conflict`.
    fn edit_objective<M>(
        &mut self,
        objective: ObjectiveRecord,
        attempt: u8,
        again: M,
    ) -> ResponseActFuture<Self, Result<ObjectiveRecord, ActorError>>
    where
        M: Message<Result = Result<ObjectiveRecord, ActorError>> + Send + 'static,
        Self: Handler<M>,
    {
        let id = objective.objective_id.clone();
        Box::pin(
            self.put_objective(objective)
                .then(move |result, act, ctx| -> ResponseActFuture<Self, _> {
                    match result {
                        Err(ActorError::Storage(palyra_storage::StorageError::Refused {
                            ..
                        })) if attempt + 1 < EDIT_ATTEMPTS => {
                            tracing::info!(objective_id = %id, attempt, "an edit was refused (the objective changed meanwhile); applying it again");
                            let addr = ctx.address();
                            Box::pin(act.reread_objective(id).then(move |(), act, _| {
                                async move {
                                    addr.send(again)
                                        .await
                                        .unwrap_or(Err(ActorError::Stopped("objectives")))
                                }
                                .into_actor(act)
                            }))
                        }
                        Err(ActorError::Storage(palyra_storage::StorageError::Refused {
                            ..
                        })) => Box::pin(actix::fut::ready(Err(ActorError::Conflict(format!(
                            "objective {id} kept changing meanwhile (on another node, or by its own runs); read it again and retry"
                        ))))),
                        other => Box::pin(actix::fut::ready(other)),
                    }
                }),
        )
    }
}

#[derive(Message)]
#[rtype(result = "Result<ObjectiveRecord, ActorError>")]
pub(super) struct CreateObjective(pub(super) NewObjective);

impl Handler<CreateObjective> for ObjectivesActor {
    type Result = ResponseActFuture<Self, Result<ObjectiveRecord, ActorError>>;

    fn handle(
        &mut self,
        CreateObjective(new): CreateObjective,
        _ctx: &mut Self::Context,
    ) -> Self::Result {
        let fail = |e| -> Self::Result { Box::pin(actix::fut::ready(Err(e))) };
        if !self.agents.contains_key(&new.agent_id) {
            return fail(ActorError::invalid(
                "agent_id",
                format!("no agent {}", new.agent_id),
            ));
        }
        let objective_id = new.objective_id.clone().unwrap_or_else(|| {
            loop {
                let id = crate::registry::generated_profile_id("obj");
                if !self.objectives.contains_key(&id) {
                    break id;
                }
            }
        });
        if self.objectives.contains_key(&objective_id) {
            return fail(ActorError::Conflict(format!(
                "objective {objective_id} already exists; PATCH it to change it"
            )));
        }
        let kind = new.kind.unwrap_or(ObjectiveKind::Objective);
        let pause_after_failures = new.pause_after_failures();
        let automation = match build_automation(kind, new.automation, None) {
            Ok(a) => a,
            Err(e) => return fail(e),
        };
        let now = to_datetime(now_ms());
        let mut objective = ObjectiveRecord {
            objective_id,
            agent_id: new.agent_id,
            kind,
            state: if new.activate {
                ObjectiveState::Active
            } else {
                ObjectiveState::Draft
            },
            name: new.name,
            prompt: new.prompt,
            steps: new.steps,
            priority: new.priority,
            budget: new.budget,
            usage: Usage::default(),
            automation,
            state_reason: None,
            last_run: None,
            next_run_at: None,
            run_seq: 0,
            last_scheduled_for: None,
            pause_after_failures,
            retry: new.retry,
            deadline_s: new.deadline_s,
            consecutive_failures: 0,
            created_at: now,
            updated_at: now,
        };
        objective.next_run_at = next_run(&objective, now);
        tracing::info!(objective_id = %objective.objective_id, kind = ?objective.kind, "objective created");
        let id = objective.objective_id.clone();
        Box::pin(
            self.put_objective(objective)
                .map(move |result, _, _| match result {
                    // Another node created it first; its version is being reread.
                    Err(ActorError::Storage(palyra_storage::StorageError::Refused { .. })) => Err(
                        ActorError::Conflict(format!("objective {id} already exists")),
                    ),
                    other => other,
                }),
        )
    }
}

#[derive(Message, Clone)]
#[rtype(result = "Result<ObjectiveRecord, ActorError>")]
pub(super) struct UpdateObjective {
    pub(super) objective_id: String,
    pub(super) patch: ObjectivePatch,
    /// Earlier attempts of this edit the database refused (`edit_objective`).
    pub(super) attempt: u8,
}

impl Handler<UpdateObjective> for ObjectivesActor {
    type Result = ResponseActFuture<Self, Result<ObjectiveRecord, ActorError>>;

    fn handle(&mut self, msg: UpdateObjective, _ctx: &mut Self::Context) -> Self::Result {
        let fail = |e| -> Self::Result { Box::pin(actix::fut::ready(Err(e))) };
        let again = UpdateObjective {
            attempt: msg.attempt + 1,
            ..msg.clone()
        };
        let UpdateObjective {
            objective_id: id,
            patch,
            attempt,
        } = msg;
        let Some(mut objective) = self.objectives.get(&id).map(|o| (**o).clone()) else {
            return fail(ActorError::NotFound {
                what: "objective",
                id,
            });
        };
        if objective.state == ObjectiveState::Archived {
            return fail(ActorError::Conflict(
                "the objective is archived; archived is final".into(),
            ));
        }
        if let Some(v) = patch.name {
            objective.name = v;
        }
        if let Some(v) = patch.prompt {
            objective.prompt = v;
        }
        if let Some(v) = patch.steps {
            objective.steps = v;
        }
        if let Some(v) = patch.priority {
            objective.priority = v;
        }
        if let Some(v) = patch.budget {
            objective.budget = v;
        }
        if let Some(v) = patch.retry {
            objective.retry = v;
        }
        if let Some(v) = patch.deadline_s {
            objective.deadline_s = v;
        }
        if let Some(v) = patch.pause_after_failures {
            objective.pause_after_failures = v;
        }
        if let Err(e) =
            validate_objective_texts(objective.kind, &objective.prompt, &objective.steps)
        {
            return fail(e);
        }
        let reschedule = patch.automation.is_some();
        if reschedule {
            match build_automation(
                objective.kind,
                patch.automation,
                objective.automation.as_ref(),
            ) {
                Ok(a) => objective.automation = a,
                Err(e) => return fail(e),
            }
        }
        let now = to_datetime(now_ms());
        // Only a new schedule moves the next firing: an edit of anything else keeps
        // it, so an instant still owed (its node died just before it) is not lost.
        if reschedule {
            objective.next_run_at = next_run(&objective, now);
        }
        objective.updated_at = now;
        self.edit_objective(objective, attempt, again)
    }
}

#[derive(Message)]
#[rtype(result = "Result<ObjectiveRecord, ActorError>")]
pub(super) struct GetObjective(pub(super) String);

impl Handler<GetObjective> for ObjectivesActor {
    type Result = Result<ObjectiveRecord, ActorError>;

    fn handle(&mut self, GetObjective(id): GetObjective, _ctx: &mut Self::Context) -> Self::Result {
        self.objectives
            .get(&id)
            .map(|o| (**o).clone())
            .ok_or(ActorError::NotFound {
                what: "objective",
                id,
            })
    }
}

#[derive(Message)]
#[rtype(result = "ObjectivePage")]
pub(super) struct ListObjectives {
    pub(super) filter: ObjectiveFilter,
    pub(super) limit: usize,
    pub(super) after: Option<String>,
}

impl Handler<ListObjectives> for ObjectivesActor {
    type Result = MessageResult<ListObjectives>;

    fn handle(&mut self, msg: ListObjectives, _ctx: &mut Self::Context) -> Self::Result {
        let f = &msg.filter;
        let mut matching: Vec<&ObjectiveRecord> = self
            .objectives
            .values()
            .map(|o| &**o)
            .filter(|o| msg.after.as_ref().is_none_or(|a| o.objective_id > *a))
            .filter(|o| f.kind.is_none_or(|k| k == o.kind))
            .filter(|o| f.state.is_none_or(|s| s == o.state))
            .filter(|o| f.agent_id.as_ref().is_none_or(|a| *a == o.agent_id))
            .collect();
        // The page and the item after it (which tells whether there is more), in id order:
        // partitioned first, so a page costs one pass over the objectives, not a sort.
        let wanted = msg.limit.saturating_add(1);
        if matching.len() > wanted {
            matching.select_nth_unstable_by(wanted, |a, b| a.objective_id.cmp(&b.objective_id));
            matching.truncate(wanted);
        }
        matching.sort_unstable_by(|a, b| a.objective_id.cmp(&b.objective_id));
        let (items, next_after) =
            crate::paging::page_of(matching.into_iter().cloned(), msg.limit, |o| {
                o.objective_id.clone()
            });
        MessageResult(ObjectivePage { items, next_after })
    }
}

#[derive(Message, Clone)]
#[rtype(result = "Result<ObjectiveRecord, ActorError>")]
pub(super) struct Lifecycle {
    pub(super) objective_id: String,
    pub(super) action: LifecycleAction,
    pub(super) reason: Option<String>,
    /// Earlier attempts of this action the database refused (`edit_objective`).
    pub(super) attempt: u8,
}

impl Handler<Lifecycle> for ObjectivesActor {
    type Result = ResponseActFuture<Self, Result<ObjectiveRecord, ActorError>>;

    fn handle(&mut self, msg: Lifecycle, ctx: &mut Self::Context) -> Self::Result {
        let fail = |e| -> Self::Result { Box::pin(actix::fut::ready(Err(e))) };
        let Some(mut objective) = self
            .objectives
            .get(&msg.objective_id)
            .map(|o| (**o).clone())
        else {
            return fail(ActorError::NotFound {
                what: "objective",
                id: msg.objective_id,
            });
        };
        let state_name = |s: ObjectiveState| crate::wire::wire_name(s);
        if msg.action == LifecycleAction::Fire {
            if matches!(
                objective.state,
                ObjectiveState::Cancelled | ObjectiveState::Archived
            ) {
                return fail(ActorError::Conflict(format!(
                    "cannot fire an objective that is {}",
                    state_name(objective.state)
                )));
            }
            if objective.budget_exhausted() {
                return fail(ActorError::Conflict(
                    "the objective's budget is exhausted".into(),
                ));
            }
            if let Some(refused) = self.run_pending(&objective.objective_id) {
                return fail(refused);
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            // Within the periodic budgets (`period.rs`); over a concurrency cap a
            // manual run waits like a scheduled one.
            let start = super::firing::RunStart {
                trigger: RunTrigger::Manual,
                scheduled_for: None,
                waited: None,
                fence: None,
                late_by_ms: None,
                missed: Vec::new(),
            };
            self.admit_within_budget(&msg.objective_id, start, ctx, Some(tx));
            return Box::pin(
                async move { rx.await.unwrap_or(Err(ActorError::Stopped("objectives"))) }
                    .into_actor(self),
            );
        }
        let Some(to) = transition(msg.action, objective.state) else {
            return fail(ActorError::Conflict(format!(
                "cannot {} an objective that is {}",
                crate::wire::wire_name(msg.action),
                state_name(objective.state)
            )));
        };
        let now = to_datetime(now_ms());
        objective.state = to;
        objective.state_reason = msg.reason.clone();
        if to == ObjectiveState::Active {
            // Resumed or activated: failures before count no more towards a pause.
            objective.consecutive_failures = 0;
        }
        objective.next_run_at = next_run(&objective, now);
        objective.updated_at = now;
        if to != ObjectiveState::Active
            && let Some(waited) = self.queued.remove(&objective.objective_id)
        {
            self.objectives
                .insert(objective.objective_id.clone(), Box::new(objective.clone()));
            self.start_queued(waited, ctx);
        }
        tracing::info!(objective_id = %objective.objective_id, state = %state_name(to), "objective lifecycle");
        let attempt = msg.attempt;
        let again = Lifecycle {
            attempt: attempt + 1,
            ..msg
        };
        let oid = objective.objective_id.clone();
        let edit = self.edit_objective(objective, attempt, again);
        // Paused, cancelled or archived: its run going stops, and a firing waiting
        // for a slot will not run.
        self.stop_inactive(&oid, Some(ctx));
        edit
    }
}
