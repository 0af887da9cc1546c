//! Resolution: which profile an agent (or the global scope) uses for a provider, and
//! why; profiles that cannot be used now (needs reauth, cooling down, rate-limited,
//! missing their secret) are passed over, each with its reason in the answer.
//!
//! The order: the agent's scope, then the global scope. In a scope, its default; when
//! that is skipped, the scope's other profiles in id order (`fallback`). Without a
//! default, the scope's only profile; several and no default is ambiguous and stops
//! resolution (an operator must choose), unless every one of them is skipped.

use actix::prelude::*;
use chrono::{DateTime, Utc};

use super::actor::RegistryActor;
use super::cooldown::skip_of;
use super::model::{
    AuthProfileRecord, AuthProfileScope, ResolveAnswer, ResolveReason, ResolveSkip, default_key,
};
use crate::error::ActorError;
use crate::time::{now_ms, to_datetime};

#[derive(Message)]
#[rtype(result = "Result<ResolveAnswer, ActorError>")]
pub(super) struct Resolve {
    pub(super) provider: String,
    pub(super) agent_id: Option<String>,
}

/// What one scope came to.
enum ScopeOutcome {
    Chosen(String, ResolveReason, String),
    /// Several profiles, no default, more than one usable.
    Ambiguous(String),
    /// Nothing here (or everything skipped): try the next scope.
    Next,
}

impl RegistryActor {
    fn resolve_scope(
        &self,
        provider: &str,
        scope: &AuthProfileScope,
        now: DateTime<Utc>,
        skipped: &mut Vec<ResolveSkip>,
    ) -> ScopeOutcome {
        let agent = matches!(scope, AuthProfileScope::Agent { .. });
        let (whose, by_default) = if agent {
            ("the agent's", ResolveReason::AgentOverride)
        } else {
            ("the global", ResolveReason::ExplicitDefault)
        };
        let in_scope: Vec<&AuthProfileRecord> = self
            .profiles
            .values()
            .filter(|r| r.provider == provider && r.scope == *scope)
            .collect();
        let default = self.defaults.get(&default_key(provider, scope));
        let mut check = |id: &str| -> bool {
            let skip = match self.profiles.get(id) {
                Some(record) => skip_of(record, &self.vault, now),
                None => Some(ResolveSkip {
                    profile_id: id.to_owned(),
                    reason: super::model::SkipReason::Missing,
                    until: None,
                    detail: "the default names a profile that does not exist".into(),
                }),
            };
            match skip {
                Some(s) => {
                    skipped.push(s);
                    false
                }
                None => true,
            }
        };
        if let Some(id) = default {
            if check(id) {
                return ScopeOutcome::Chosen(
                    id.clone(),
                    by_default,
                    format!("{whose} default {provider} profile"),
                );
            }
            for record in in_scope.iter().filter(|r| r.profile_id != *id) {
                if check(&record.profile_id) {
                    return ScopeOutcome::Chosen(
                        record.profile_id.clone(),
                        ResolveReason::Fallback,
                        format!(
                            "{whose} default {provider} profile {id} was skipped; the next usable one"
                        ),
                    );
                }
            }
            return ScopeOutcome::Next;
        }
        match in_scope.as_slice() {
            [] => ScopeOutcome::Next,
            [only] => {
                if check(&only.profile_id) {
                    let reason = if agent {
                        ResolveReason::AgentOverride
                    } else {
                        ResolveReason::OnlyCandidate
                    };
                    ScopeOutcome::Chosen(
                        only.profile_id.clone(),
                        reason,
                        format!("{whose} only {provider} profile"),
                    )
                } else {
                    ScopeOutcome::Next
                }
            }
            many => {
                // Ambiguous only while more than one could be used: skipping the
                // unusable ones must not make a choice the operator did not make.
                let mut usable = 0;
                for record in many {
                    if check(&record.profile_id) {
                        usable += 1;
                    }
                }
                if usable == 0 {
                    ScopeOutcome::Next
                } else {
                    let whose = if agent { "the agent has" } else { "there are" };
                    ScopeOutcome::Ambiguous(format!(
                        "{whose} {} {provider} profiles and none is the default; set one",
                        many.len()
                    ))
                }
            }
        }
    }
}

impl Handler<Resolve> for RegistryActor {
    type Result = Result<ResolveAnswer, ActorError>;

    fn handle(&mut self, msg: Resolve, _ctx: &mut Self::Context) -> Self::Result {
        let now = to_datetime(now_ms());
        let mut skipped = Vec::new();
        let mut scopes = Vec::new();
        if let Some(agent_id) = &msg.agent_id {
            scopes.push(AuthProfileScope::Agent {
                agent_id: agent_id.clone(),
            });
        }
        scopes.push(AuthProfileScope::Global);
        let mut outcome = (None, ResolveReason::None, String::new());
        for scope in &scopes {
            match self.resolve_scope(&msg.provider, scope, now, &mut skipped) {
                ScopeOutcome::Chosen(id, reason, detail) => {
                    outcome = (Some(id), reason, detail);
                    break;
                }
                ScopeOutcome::Ambiguous(detail) => {
                    outcome = (None, ResolveReason::None, detail);
                    break;
                }
                ScopeOutcome::Next => {}
            }
        }
        if outcome.0.is_none() && outcome.2.is_empty() {
            outcome.2 = if skipped.is_empty() {
                format!("no {} profile exists for this scope", msg.provider)
            } else {
                format!(
                    "every {} profile for this scope was skipped (see skipped)",
                    msg.provider
                )
            };
        }
        let (profile_id, reason, detail) = outcome;
        Ok(ResolveAnswer {
            provider: msg.provider,
            agent_id: msg.agent_id,
            profile_id,
            model: None,
            reason,
            detail,
            skipped,
        })
    }
}

/// An agent's candidates (`model_profiles`) in order: the first usable one.
#[derive(Message)]
#[rtype(result = "ResolveAnswer")]
pub(super) struct ResolveCandidates {
    pub(super) agent_id: String,
    /// (profile id, model), in order.
    pub(super) candidates: Vec<(String, String)>,
}

impl Handler<ResolveCandidates> for RegistryActor {
    type Result = MessageResult<ResolveCandidates>;

    fn handle(&mut self, msg: ResolveCandidates, _ctx: &mut Self::Context) -> Self::Result {
        let now = to_datetime(now_ms());
        let mut skipped = Vec::new();
        let count = msg.candidates.len();
        let provider_of = |id: &str| self.profiles.get(id).map(|r| r.provider.clone());
        for (n, (id, model)) in msg.candidates.iter().enumerate() {
            let skip = match self.profiles.get(id) {
                Some(record) => skip_of(record, &self.vault, now),
                None => Some(ResolveSkip {
                    profile_id: id.clone(),
                    reason: super::model::SkipReason::Missing,
                    until: None,
                    detail: "no such auth profile".into(),
                }),
            };
            match skip {
                Some(s) => skipped.push(s),
                None => {
                    return MessageResult(ResolveAnswer {
                        provider: provider_of(id).unwrap_or_default(),
                        agent_id: Some(msg.agent_id),
                        profile_id: Some(id.clone()),
                        model: Some(model.clone()),
                        reason: ResolveReason::Candidate,
                        detail: format!("the agent's candidate {} of {count}", n + 1),
                        skipped,
                    });
                }
            }
        }
        let provider = msg
            .candidates
            .iter()
            .find_map(|(id, _)| provider_of(id))
            .unwrap_or_default();
        MessageResult(ResolveAnswer {
            provider,
            agent_id: Some(msg.agent_id),
            profile_id: None,
            model: None,
            reason: ResolveReason::None,
            detail: if count == 0 {
                "the agent has no candidate".into()
            } else {
                format!("every one of the agent's {count} candidates was skipped (see skipped)")
            },
            skipped,
        })
    }
}
