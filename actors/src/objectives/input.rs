//! What clients send about agents and objectives (new ones, patches, list filters),
//! and its validation: the handle checks a request before it reaches the actor, and
//! the actor checks what depends on its state (an agent that exists, a patched
//! objective as a whole).

use serde::Deserialize;

use super::model::{
    Automation, Budget, DEFAULT_PAUSE_AFTER_FAILURES, Misfire, ModelCandidate, ObjectiveKind,
    ObjectiveState, Overlap, RetryPolicy,
};
use crate::error::ActorError;
use crate::ids::{validate_agent_id, validate_profile_id};
use crate::schedule::Schedule;
use crate::tools::AgentTool;

/// Fields of a new objective (validated by the handle).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewObjective {
    #[schema(pattern = r"^[a-z0-9._-]{1,128}$")]
    pub objective_id: Option<String>,
    #[schema(pattern = r"^[a-z0-9._-]{1,128}$")]
    pub agent_id: String,
    pub kind: Option<ObjectiveKind>,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 32768)]
    pub prompt: String,
    #[serde(default)]
    #[schema(max_items = 32)]
    pub steps: Vec<String>,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub budget: Budget,
    pub automation: Option<AutomationInput>,
    /// Start active instead of draft.
    #[serde(default)]
    pub activate: bool,
    /// Retries of a failed run (default: none).
    pub retry: Option<RetryPolicy>,
    /// The whole run at most this long, 1 to 86400 seconds (default: no deadline).
    #[schema(minimum = 1, maximum = 86400)]
    pub deadline_s: Option<u32>,
    /// Pause after this many failed runs in a row, 0 to 1000 (0: never; default 10).
    #[schema(maximum = 1000)]
    pub pause_after_failures: Option<u32>,
}

/// Automation as a client sends it: everything but the schedule has a default.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AutomationInput {
    /// Default for heartbeats: every 30 minutes.
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub misfire: Option<Misfire>,
    pub overlap: Option<Overlap>,
    pub jitter_s: Option<u32>,
    pub enabled: Option<bool>,
}

/// A change of an objective (`PATCH`); absent fields stay.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectivePatch {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: Option<String>,
    #[schema(max_length = 32768)]
    pub prompt: Option<String>,
    #[schema(max_items = 32)]
    pub steps: Option<Vec<String>>,
    pub priority: Option<i32>,
    pub budget: Option<Budget>,
    pub automation: Option<AutomationInput>,
    /// `null` clears it (no retry).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<RetryPolicy>)]
    pub retry: Option<Option<RetryPolicy>>,
    /// `null` clears it (no deadline).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 86400)]
    pub deadline_s: Option<Option<u32>>,
    #[schema(maximum = 1000)]
    pub pause_after_failures: Option<u32>,
}

/// Fields of a new agent.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    #[schema(pattern = r"^[a-z0-9._-]{1,128}$")]
    pub agent_id: String,
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub display_name: Option<String>,
    /// Absolute paths (no `.` or `..` components).
    #[serde(default)]
    #[schema(max_items = 64)]
    pub workspace_roots: Vec<String>,
    #[schema(pattern = r"^[a-z0-9._-]{1,128}$")]
    pub default_model_profile: Option<String>,
    /// Required unless `model_profiles` is given (then it defaults to the first
    /// candidate's model).
    #[serde(default)]
    #[schema(
        max_length = 128,
        pattern = r"^([^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*)?$"
    )]
    pub model: String,
    /// The candidates runs try in order (at most 8, no pair twice); empty: the one
    /// element `default_model_profile` + `model`.
    #[serde(default)]
    #[schema(max_items = 8)]
    pub model_profiles: Vec<ModelCandidate>,
    /// Runs of this agent's objectives going at once on a node, 1 to 100000 (default:
    /// only the node's `objectives.max_concurrent_runs`).
    #[schema(minimum = 1, maximum = 100000)]
    pub max_concurrent_runs: Option<u32>,
    /// The tools runs offer the model (none by default); a name given twice counts once.
    #[serde(default)]
    #[schema(max_items = 8)]
    pub tools: Vec<AgentTool>,
    /// Tool calls per run, at most: 1 to 1000 (default 20).
    #[schema(minimum = 1, maximum = 1000)]
    pub max_tool_calls: Option<u32>,
    /// Daily and monthly token limits over all of the agent's objectives.
    pub budget: Option<crate::usage::budget::AgentBudget>,
}

/// A change of an agent (`PATCH`).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentPatch {
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub display_name: Option<String>,
    #[schema(max_items = 64)]
    pub workspace_roots: Option<Vec<String>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub default_model_profile: Option<Option<String>>,
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub model: Option<String>,
    /// Replaces the candidate list; `[]` goes back to the one-element case.
    #[schema(max_items = 8)]
    pub model_profiles: Option<Vec<ModelCandidate>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 100000)]
    pub max_concurrent_runs: Option<Option<u32>>,
    /// Replaces the tool list; `[]` enables none.
    #[schema(max_items = 8)]
    pub tools: Option<Vec<AgentTool>>,
    /// `null` goes back to the default (20).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub max_tool_calls: Option<Option<u32>>,
    /// Replaces the periodic budget; `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<crate::usage::budget::AgentBudget>)]
    pub budget: Option<Option<crate::usage::budget::AgentBudget>>,
}

/// Tells a field sent as `null` (`Some(None)`: clear it) from an absent one (`None`:
/// keep it).
fn double_option<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Filters of the objective list.
#[derive(Debug, Clone, Default)]
pub struct ObjectiveFilter {
    pub kind: Option<ObjectiveKind>,
    pub state: Option<ObjectiveState>,
    pub agent_id: Option<String>,
}

impl NewAgent {
    /// Checks every field on its own.
    pub(crate) fn validate(&self) -> Result<(), ActorError> {
        validate_agent_id(&self.agent_id)?;
        if let Some(name) = &self.display_name {
            validate_name("display_name", name, 128)?;
        }
        validate_roots(&self.workspace_roots)?;
        if !self.model.is_empty() || self.model_profiles.is_empty() {
            validate_name("model", &self.model, 128)?;
        }
        if let Some(profile) = &self.default_model_profile {
            validate_model_profile(profile)?;
        }
        validate_candidates(&self.model_profiles)?;
        validate_agent_cap(self.max_concurrent_runs)?;
        validate_tools(&self.tools, self.max_tool_calls)?;
        validate_agent_budget(self.budget.as_ref())?;
        Ok(())
    }
}

impl AgentPatch {
    /// Checks every field present on its own.
    pub(crate) fn validate(&self) -> Result<(), ActorError> {
        if let Some(name) = &self.display_name {
            validate_name("display_name", name, 128)?;
        }
        if let Some(roots) = &self.workspace_roots {
            validate_roots(roots)?;
        }
        if let Some(model) = &self.model {
            validate_name("model", model, 128)?;
        }
        if let Some(Some(profile)) = &self.default_model_profile {
            validate_model_profile(profile)?;
        }
        if let Some(candidates) = &self.model_profiles {
            validate_candidates(candidates)?;
        }
        validate_agent_cap(self.max_concurrent_runs.flatten())?;
        validate_tools(
            self.tools.as_deref().unwrap_or_default(),
            self.max_tool_calls.flatten(),
        )?;
        validate_agent_budget(self.budget.as_ref().and_then(Option::as_ref))?;
        Ok(())
    }
}

/// At most 8 names; `max_tool_calls` from 1 to 1000.
fn validate_tools(tools: &[AgentTool], max_tool_calls: Option<u32>) -> Result<(), ActorError> {
    if tools.len() > 8 {
        return Err(ActorError::invalid("tools", "at most 8 names"));
    }
    if max_tool_calls.is_some_and(|n| !(1..=1000).contains(&n)) {
        return Err(ActorError::invalid("max_tool_calls", "from 1 to 1000"));
    }
    Ok(())
}

/// The tools in the order first given, each once.
pub(crate) fn dedup_tools(tools: Vec<AgentTool>) -> Vec<AgentTool> {
    let mut out: Vec<AgentTool> = Vec::new();
    for t in tools {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

impl NewObjective {
    /// Checks every field, the texts against the kind, and the automation (its
    /// schedule parses); whether the agent exists is the actor's to check.
    pub(crate) fn validate(&self) -> Result<(), ActorError> {
        if let Some(id) = &self.objective_id {
            validate_profile_id(id).map_err(|_| {
                ActorError::invalid("objective_id", "use 1 to 128 of a-z 0-9 . _ -")
            })?;
        }
        validate_agent_id(&self.agent_id)?;
        validate_name("name", &self.name, 200)?;
        let kind = self.kind.unwrap_or(ObjectiveKind::Objective);
        validate_objective_texts(kind, &self.prompt, &self.steps)?;
        build_automation(kind, self.automation.clone(), None)?;
        validate_run_limits(
            self.retry.as_ref(),
            self.deadline_s,
            self.pause_after_failures,
        )?;
        validate_budget(&self.budget)?;
        Ok(())
    }

    /// Consecutive failed runs after which the new objective pauses.
    pub(crate) fn pause_after_failures(&self) -> u32 {
        self.pause_after_failures
            .unwrap_or(DEFAULT_PAUSE_AFTER_FAILURES)
    }
}

impl ObjectivePatch {
    /// Checks what can be checked without the objective; the rest is checked on the
    /// patched objective (`validate_objective_texts`, `build_automation`).
    pub(crate) fn validate(&self) -> Result<(), ActorError> {
        if let Some(name) = &self.name {
            validate_name("name", name, 200)?;
        }
        validate_run_limits(
            self.retry.as_ref().and_then(Option::as_ref),
            self.deadline_s.flatten(),
            self.pause_after_failures,
        )?;
        if let Some(budget) = &self.budget {
            validate_budget(budget)?;
        }
        Ok(())
    }
}

/// Most candidates an agent names: each failed one costs a provider call per run.
const MAX_CANDIDATES: usize = 8;

fn validate_candidates(candidates: &[ModelCandidate]) -> Result<(), ActorError> {
    if candidates.len() > MAX_CANDIDATES {
        return Err(ActorError::invalid(
            "model_profiles",
            "at most 8 candidates",
        ));
    }
    for (i, c) in candidates.iter().enumerate() {
        validate_profile_id(&c.profile_id).map_err(|_| {
            ActorError::invalid("model_profiles.profile_id", "use 1 to 128 of a-z 0-9 . _ -")
        })?;
        validate_name("model_profiles.model", &c.model, 128)?;
        if candidates[..i].contains(c) {
            return Err(ActorError::invalid(
                "model_profiles",
                "names the same profile and model twice",
            ));
        }
    }
    Ok(())
}

/// `retry`, `deadline_s` and `pause_after_failures` within their bounds.
fn validate_run_limits(
    retry: Option<&RetryPolicy>,
    deadline_s: Option<u32>,
    pause_after_failures: Option<u32>,
) -> Result<(), ActorError> {
    if let Some(retry) = retry {
        if !(1..=10).contains(&retry.max_attempts) {
            return Err(ActorError::invalid("retry.max_attempts", "must be 1 to 10"));
        }
        if retry.backoff_s > 3600 {
            return Err(ActorError::invalid("retry.backoff_s", "at most 3600"));
        }
    }
    if deadline_s.is_some_and(|d| !(1..=86_400).contains(&d)) {
        return Err(ActorError::invalid("deadline_s", "must be 1 to 86400"));
    }
    if pause_after_failures.is_some_and(|n| n > 1000) {
        return Err(ActorError::invalid("pause_after_failures", "at most 1000"));
    }
    Ok(())
}

fn validate_agent_cap(cap: Option<u32>) -> Result<(), ActorError> {
    if cap.is_some_and(|c| !(1..=100_000).contains(&c)) {
        return Err(ActorError::invalid(
            "max_concurrent_runs",
            "must be 1 to 100000",
        ));
    }
    Ok(())
}

fn validate_model_profile(profile: &str) -> Result<(), ActorError> {
    validate_profile_id(profile)
        .map_err(|_| ActorError::invalid("default_model_profile", "use 1 to 128 of a-z 0-9 . _ -"))
}

/// A name or reason: 1 to `max` characters, not blank, no control characters.
pub(crate) fn validate_name(
    field: &'static str,
    value: &str,
    max: usize,
) -> Result<(), ActorError> {
    if value.trim().is_empty() || value.chars().count() > max || value.chars().any(char::is_control)
    {
        return Err(ActorError::invalid(
            field,
            format!("must be 1 to {max} characters without control characters"),
        ));
    }
    Ok(())
}

fn validate_text(field: &'static str, value: &str) -> Result<(), ActorError> {
    if value.len() > 32 * 1024 {
        return Err(ActorError::invalid(field, "at most 32 KiB"));
    }
    Ok(())
}

fn validate_roots(roots: &[String]) -> Result<(), ActorError> {
    if roots.len() > 64 {
        return Err(ActorError::invalid("workspace_roots", "at most 64 paths"));
    }
    for root in roots {
        let path = std::path::Path::new(root);
        let ok = path.is_absolute()
            && root.len() <= 4096
            && !root.contains('\0')
            && !path.components().any(|c| {
                matches!(
                    c,
                    std::path::Component::ParentDir | std::path::Component::CurDir
                )
            });
        if !ok {
            return Err(ActorError::invalid(
                "workspace_roots",
                format!("{root:?} must be an absolute path without . or .. components"),
            ));
        }
    }
    Ok(())
}

/// The automation an objective of `kind` gets from `input` over `current`: absent
/// fields keep their current value or take their default, and a heartbeat always has
/// one (every 30 minutes unless told otherwise).
pub(crate) fn build_automation(
    kind: ObjectiveKind,
    input: Option<AutomationInput>,
    current: Option<&Automation>,
) -> Result<Option<Automation>, ActorError> {
    let input = match (input, kind) {
        (Some(i), _) => i,
        (None, ObjectiveKind::Heartbeat) if current.is_none() => AutomationInput::default(),
        (None, _) => return Ok(current.cloned()),
    };
    let schedule = input
        .schedule
        .or_else(|| current.map(|c| c.schedule.clone()))
        .or_else(|| (kind == ObjectiveKind::Heartbeat).then(|| "*/30 * * * *".to_owned()))
        .ok_or_else(|| ActorError::invalid("automation.schedule", "is required"))?;
    let timezone = input
        .timezone
        .or_else(|| current.map(|c| c.timezone.clone()))
        .unwrap_or_else(|| "UTC".to_owned());
    Schedule::parse(&schedule, &timezone)?;
    let jitter_s = input.jitter_s.or(current.map(|c| c.jitter_s)).unwrap_or(0);
    if jitter_s > 3600 {
        return Err(ActorError::invalid("automation.jitter_s", "at most 3600"));
    }
    Ok(Some(Automation {
        schedule,
        timezone,
        misfire: input
            .misfire
            .or(current.map(|c| c.misfire))
            .unwrap_or_default(),
        overlap: input
            .overlap
            .or(current.map(|c| c.overlap))
            .unwrap_or_default(),
        jitter_s,
        enabled: input.enabled.or(current.map(|c| c.enabled)).unwrap_or(true),
    }))
}

/// The prompt and steps fit their limits and the kind: a program needs a step, an
/// objective or standing order a prompt.
pub(crate) fn validate_objective_texts(
    kind: ObjectiveKind,
    prompt: &str,
    steps: &[String],
) -> Result<(), ActorError> {
    validate_text("prompt", prompt)?;
    if steps.len() > 32 {
        return Err(ActorError::invalid("steps", "at most 32 steps"));
    }
    for step in steps {
        validate_text("steps", step)?;
    }
    match kind {
        ObjectiveKind::Program if steps.iter().all(|s| s.trim().is_empty()) => Err(
            ActorError::invalid("steps", "a program needs at least one non-empty step"),
        ),
        ObjectiveKind::Objective | ObjectiveKind::StandingOrder if prompt.trim().is_empty() => {
            Err(ActorError::invalid("prompt", "is required for this kind"))
        }
        _ => Ok(()),
    }
}

/// The agent's periodic budget, if any, is well formed.
fn validate_agent_budget(
    budget: Option<&crate::usage::budget::AgentBudget>,
) -> Result<(), ActorError> {
    budget.map_or(Ok(()), |b| {
        crate::usage::budget::validate(
            b.daily_tokens,
            b.monthly_tokens,
            b.notify_at_percent,
            b.timezone.as_deref(),
        )
    })
}

/// The objective's periodic limits are well formed (its time zone is the automation's).
pub(crate) fn validate_budget(budget: &Budget) -> Result<(), ActorError> {
    crate::usage::budget::validate(
        budget.daily_tokens,
        budget.monthly_tokens,
        budget.notify_at_percent,
        None,
    )
}

/// The cost limits of an objective's budget, checked against whether any price is
/// configured (`priced`).
pub(crate) fn validate_cost(budget: Option<&Budget>, priced: bool) -> Result<(), ActorError> {
    budget.map_or(Ok(()), |b| {
        crate::usage::budget::validate_cost(
            crate::usage::budget::Limits {
                daily: b.daily_cost_usd,
                monthly: b.monthly_cost_usd,
            },
            priced,
        )
    })
}

/// The cost limits of an agent's budget, as [`validate_cost`].
pub(crate) fn validate_agent_cost(
    budget: Option<&crate::usage::budget::AgentBudget>,
    priced: bool,
) -> Result<(), ActorError> {
    budget.map_or(Ok(()), |b| {
        crate::usage::budget::validate_cost(
            crate::usage::budget::Limits {
                daily: b.daily_cost_usd,
                monthly: b.monthly_cost_usd,
            },
            priced,
        )
    })
}
