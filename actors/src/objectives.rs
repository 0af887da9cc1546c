//! The objectives actor: owns agents, objectives (standing orders, heartbeats,
//! programs) and their runs; decides, at each firing, whether a run may start (state,
//! budget, overlap), and records every firing as a durable run.
//!
//! The scheduler actor owns the timers and sends `Fire` when an objective is due; this
//! actor answers by moving `next_run_at` forward and recording the run in one
//! transaction before the run starts, so no firing runs twice across a restart. The
//! provider call itself runs on a tokio worker and reports back with `RunFinished`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use palyra_storage::{Storage, StoredRecord, Table, WriteOp, Writer, decode_record};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::ActorError;
use crate::ids::{validate_agent_id, validate_profile_id};
use crate::registry::RegistryHandle;
use crate::schedule::Schedule;
use crate::scheduler::{Fire, SchedulerHandle, Trigger};
use crate::time::{now_ms, to_datetime};

/// An agent: who runs objectives, with which model and credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentRecord {
    pub agent_id: String,
    pub display_name: String,
    /// Absolute paths the agent may work in.
    pub workspace_roots: Vec<String>,
    /// The auth profile runs use; when absent, the agent's `openai` resolution.
    pub default_model_profile: Option<String>,
    /// For example `gpt-4o-mini`.
    pub model: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl StoredRecord for AgentRecord {
    const TABLE: Table = Table::Agents;
    const VERSION: u32 = 1;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ObjectiveKind {
    /// A goal run on demand or on a schedule: one prompt per run.
    Objective,
    /// Liveness: records the agent's credential health, and runs the prompt if any.
    Heartbeat,
    /// A recurring instruction: one prompt per firing.
    StandingOrder,
    /// An ordered list of steps (prompts), all run per firing.
    Program,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ObjectiveState {
    Draft,
    Active,
    Paused,
    Cancelled,
    Archived,
}

/// A lifecycle action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleAction {
    Activate,
    Pause,
    Resume,
    Cancel,
    Archive,
    /// Run now (within budget), whatever the schedule.
    Fire,
}

use ObjectiveState as S;

/// The allowed transitions, the one table: (action, from, to).
pub const TRANSITIONS: &[(LifecycleAction, &[ObjectiveState], ObjectiveState)] = &[
    (LifecycleAction::Activate, &[S::Draft], S::Active),
    (LifecycleAction::Pause, &[S::Active], S::Paused),
    (LifecycleAction::Resume, &[S::Paused], S::Active),
    (
        LifecycleAction::Cancel,
        &[S::Draft, S::Active, S::Paused],
        S::Cancelled,
    ),
    (
        LifecycleAction::Archive,
        &[S::Draft, S::Active, S::Paused, S::Cancelled],
        S::Archived,
    ),
];

/// The state `action` leads to from `from`, if allowed.
pub fn transition(action: LifecycleAction, from: ObjectiveState) -> Option<ObjectiveState> {
    TRANSITIONS
        .iter()
        .find(|(a, froms, _)| *a == action && froms.contains(&from))
        .map(|(_, _, to)| *to)
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Budget {
    pub max_runs: Option<u64>,
    pub max_tokens: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    pub runs: u64,
    pub tokens: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Misfire {
    /// Record missed firings only.
    #[default]
    Skip,
    /// Also run once if the newest missed firing is within one schedule interval.
    RunOnce,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// A firing while a run is going is recorded as skipped_overlap.
    #[default]
    Forbid,
    /// At most one firing waits for the run going.
    QueueOne,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Automation {
    /// Cron (5 fields, or 6 with seconds first) or a macro such as `@daily`.
    pub schedule: String,
    /// IANA time zone, default UTC.
    pub timezone: String,
    pub misfire: Misfire,
    pub overlap: Overlap,
    /// Random delay up to this many seconds added to each firing.
    pub jitter_s: u32,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunSummary {
    pub run_id: String,
    pub status: RunStatus,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ObjectiveRecord {
    pub objective_id: String,
    pub agent_id: String,
    pub kind: ObjectiveKind,
    pub state: ObjectiveState,
    pub name: String,
    pub prompt: String,
    /// Program steps, run in order per firing.
    pub steps: Vec<String>,
    pub priority: i32,
    pub budget: Budget,
    pub usage: Usage,
    pub automation: Option<Automation>,
    pub state_reason: Option<String>,
    pub last_run: Option<RunSummary>,
    pub next_run_at: Option<DateTime<Utc>>,
    /// Sequence number of the newest run.
    pub run_seq: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl StoredRecord for ObjectiveRecord {
    const TABLE: Table = Table::Objectives;
    const VERSION: u32 = 1;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunTrigger {
    Schedule,
    Manual,
    CatchUp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    SkippedBudget,
    SkippedOverlap,
    Missed,
    Interrupted,
}

impl RunStatus {
    pub const ALL: [RunStatus; 8] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::SkippedBudget,
        RunStatus::SkippedOverlap,
        RunStatus::Missed,
        RunStatus::Interrupted,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunRecord {
    pub run_id: String,
    pub objective_id: String,
    pub trigger: RunTrigger,
    pub status: RunStatus,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub tokens: u64,
    /// The assistant's answer, capped.
    pub output: Option<String>,
    pub error: Option<String>,
}

impl StoredRecord for RunRecord {
    const TABLE: Table = Table::Runs;
    const VERSION: u32 = 1;
}

fn run_key(objective_id: &str, seq: u64) -> Vec<u8> {
    let mut key = objective_id.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn run_prefix(objective_id: &str) -> Vec<u8> {
    let mut key = objective_id.as_bytes().to_vec();
    key.push(0);
    key
}

/// Largest stored run output.
pub const MAX_OUTPUT_BYTES: usize = 16 * 1024;

/// Settings of the objectives actor.
#[derive(Debug, Clone)]
pub struct ObjectivesPolicy {
    /// Runs kept per objective; the oldest are pruned.
    pub run_retention: u64,
    /// Timeout of one provider call.
    pub provider_timeout: Duration,
}

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
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub model: String,
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
}

fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Filters of the objective list.
#[derive(Debug, Clone, Default)]
pub struct ObjectiveFilter {
    pub kind: Option<ObjectiveKind>,
    pub state: Option<ObjectiveState>,
    pub agent_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ObjectivePage {
    pub items: Vec<ObjectiveRecord>,
    pub next_after: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentPage {
    pub items: Vec<AgentRecord>,
    pub next_after: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunPage {
    pub items: Vec<RunRecord>,
    /// Pass as `before` for older runs.
    pub next_before: Option<String>,
}

fn validate_name(field: &'static str, value: &str, max: usize) -> Result<(), ActorError> {
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

fn build_automation(
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

fn validate_objective_texts(
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

/// Handle to the objectives actor. Cloning is shallow.
#[derive(Clone)]
pub struct ObjectivesHandle {
    addr: Addr<ObjectivesActor>,
    storage: Storage,
}

impl std::fmt::Debug for ObjectivesHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectivesHandle").finish_non_exhaustive()
    }
}

fn stopped(_: MailboxError) -> ActorError {
    ActorError::Stopped("objectives")
}

impl ObjectivesHandle {
    /// Loads agents and objectives, marks runs left running as interrupted, records
    /// firings missed while the daemon was down, and starts the actor and its
    /// scheduler inside the actix System.
    pub async fn start(
        storage: &Storage,
        writer: Writer,
        registry: RegistryHandle,
        refresher: crate::refresher::RefresherHandle,
        policy: ObjectivesPolicy,
        audit: crate::audit::AuditLog,
        metrics: crate::metrics::ActorMetrics,
    ) -> Result<Self, ActorError> {
        let (agents, mut objectives) = load_agents_and_objectives(storage)?;
        let (ops, catch_up) = recover(storage, &mut objectives, policy.run_retention)?;
        if !ops.is_empty() {
            writer.write(ops).await?;
        }
        let actor_storage = storage.clone();
        let addr = ObjectivesActor::create(move |ctx| {
            let scheduler = SchedulerHandle::start(ctx.address().recipient());
            ObjectivesActor {
                writer,
                storage: actor_storage,
                draining: false,
                registry,
                refresher,
                scheduler,
                policy,
                agents,
                objectives,
                running: HashMap::new(),
                queued: HashMap::new(),
                catch_up,
                audit,
                metrics,
            }
        });
        Ok(Self {
            addr,
            storage: storage.clone(),
        })
    }
}

impl ObjectivesHandle {
    pub async fn create_agent(&self, new: NewAgent) -> Result<AgentRecord, ActorError> {
        validate_agent_id(&new.agent_id)?;
        if let Some(name) = &new.display_name {
            validate_name("display_name", name, 128)?;
        }
        validate_roots(&new.workspace_roots)?;
        validate_name("model", &new.model, 128)?;
        if let Some(profile) = &new.default_model_profile {
            validate_profile_id(profile).map_err(|_| {
                ActorError::invalid("default_model_profile", "use 1 to 128 of a-z 0-9 . _ -")
            })?;
        }
        self.addr.send(CreateAgent(new)).await.map_err(stopped)?
    }

    pub async fn update_agent(
        &self,
        agent_id: &str,
        patch: AgentPatch,
    ) -> Result<AgentRecord, ActorError> {
        if let Some(name) = &patch.display_name {
            validate_name("display_name", name, 128)?;
        }
        if let Some(roots) = &patch.workspace_roots {
            validate_roots(roots)?;
        }
        if let Some(model) = &patch.model {
            validate_name("model", model, 128)?;
        }
        if let Some(Some(profile)) = &patch.default_model_profile {
            validate_profile_id(profile).map_err(|_| {
                ActorError::invalid("default_model_profile", "use 1 to 128 of a-z 0-9 . _ -")
            })?;
        }
        self.addr
            .send(UpdateAgent(agent_id.to_owned(), patch))
            .await
            .map_err(stopped)?
    }

    pub async fn delete_agent(&self, agent_id: &str) -> Result<(), ActorError> {
        self.addr
            .send(DeleteAgent(agent_id.to_owned()))
            .await
            .map_err(stopped)?
    }

    pub async fn get_agent(&self, agent_id: &str) -> Result<AgentRecord, ActorError> {
        self.addr
            .send(GetAgent(agent_id.to_owned()))
            .await
            .map_err(stopped)?
    }

    pub async fn list_agents(
        &self,
        limit: usize,
        after: Option<String>,
    ) -> Result<AgentPage, ActorError> {
        crate::check_page_limit(limit)?;
        self.addr
            .send(ListAgents { limit, after })
            .await
            .map_err(stopped)
    }

    pub async fn create_objective(&self, new: NewObjective) -> Result<ObjectiveRecord, ActorError> {
        if let Some(id) = &new.objective_id {
            validate_profile_id(id).map_err(|_| {
                ActorError::invalid("objective_id", "use 1 to 128 of a-z 0-9 . _ -")
            })?;
        }
        validate_agent_id(&new.agent_id)?;
        validate_name("name", &new.name, 200)?;
        let kind = new.kind.unwrap_or(ObjectiveKind::Objective);
        validate_objective_texts(kind, &new.prompt, &new.steps)?;
        build_automation(kind, new.automation.clone(), None)?;
        self.addr
            .send(CreateObjective(new))
            .await
            .map_err(stopped)?
    }

    pub async fn update_objective(
        &self,
        objective_id: &str,
        patch: ObjectivePatch,
    ) -> Result<ObjectiveRecord, ActorError> {
        if let Some(name) = &patch.name {
            validate_name("name", name, 200)?;
        }
        self.addr
            .send(UpdateObjective(objective_id.to_owned(), patch))
            .await
            .map_err(stopped)?
    }

    pub async fn get_objective(&self, objective_id: &str) -> Result<ObjectiveRecord, ActorError> {
        self.addr
            .send(GetObjective(objective_id.to_owned()))
            .await
            .map_err(stopped)?
    }

    pub async fn list_objectives(
        &self,
        filter: ObjectiveFilter,
        limit: usize,
        after: Option<String>,
    ) -> Result<ObjectivePage, ActorError> {
        crate::check_page_limit(limit)?;
        self.addr
            .send(ListObjectives {
                filter,
                limit,
                after,
            })
            .await
            .map_err(stopped)
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
        self.addr
            .send(Lifecycle {
                objective_id: objective_id.to_owned(),
                action,
                reason,
            })
            .await
            .map_err(stopped)?
    }

    /// An objective's runs, newest first (a read of redb, no actor hop).
    pub async fn runs(
        &self,
        objective_id: &str,
        limit: usize,
        before: Option<String>,
    ) -> Result<RunPage, ActorError> {
        crate::check_page_limit(limit)?;
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
        let rows = self.storage.scan_prefix_rev(
            Table::Runs,
            &run_prefix(objective_id),
            before_key.as_deref(),
            limit + 1,
        )?;
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

/// Stop starting runs; answers how many are going.
#[derive(Message)]
#[rtype(result = "usize")]
struct Drain;

impl Handler<Drain> for ObjectivesActor {
    type Result = usize;

    fn handle(&mut self, _msg: Drain, _ctx: &mut Self::Context) -> usize {
        self.draining = true;
        self.running.len()
    }
}

struct ObjectivesActor {
    writer: Writer,
    /// For reloading after a failed commit.
    storage: Storage,
    /// Set at shutdown: no new run starts.
    draining: bool,
    registry: RegistryHandle,
    refresher: crate::refresher::RefresherHandle,
    scheduler: SchedulerHandle,
    policy: ObjectivesPolicy,
    agents: BTreeMap<String, AgentRecord>,
    objectives: BTreeMap<String, ObjectiveRecord>,
    /// Objective id -> the run going.
    running: HashMap<String, String>,
    /// Objectives with one firing waiting (overlap `queue_one`): its instant and the
    /// sequence number of its `queued` run record.
    queued: HashMap<String, (DateTime<Utc>, u64)>,
    /// Catch-up firings found at start, fired once the actor runs.
    catch_up: CatchUps,
    /// Budget exhaustion is audited in the same write as the pause.
    audit: crate::audit::AuditLog,
    metrics: crate::metrics::ActorMetrics,
}

impl Actor for ObjectivesActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        for objective in self.objectives.values() {
            self.sync_schedule(objective);
        }
        for (objective_id, scheduled_for) in std::mem::take(&mut self.catch_up) {
            ctx.notify(Fire {
                objective_id,
                scheduled_for,
                trigger: Trigger::CatchUp,
            });
        }
    }
}

type Agents = BTreeMap<String, AgentRecord>;
type Objectives = BTreeMap<String, ObjectiveRecord>;

fn load_agents_and_objectives(storage: &Storage) -> Result<(Agents, Objectives), ActorError> {
    let mut agents = BTreeMap::new();
    for (_, value) in storage.load(Table::Agents)? {
        let agent: AgentRecord = decode_record(&value)?;
        agents.insert(agent.agent_id.clone(), agent);
    }
    let mut objectives = BTreeMap::new();
    for (_, value) in storage.load(Table::Objectives)? {
        let objective: ObjectiveRecord = decode_record(&value)?;
        objectives.insert(objective.objective_id.clone(), objective);
    }
    Ok((agents, objectives))
}

/// Catch-up firings: objective id and the missed instant.
type CatchUps = Vec<(String, DateTime<Utc>)>;

/// After a restart: runs a crash left running become `interrupted`; firings missed
/// while the daemon was down become `missed` runs; `next_run_at` moves past now.
/// Returns the writes and the catch-up firings (misfire `run_once`).
fn recover(
    storage: &Storage,
    objectives: &mut BTreeMap<String, ObjectiveRecord>,
    retention: u64,
) -> Result<(Vec<WriteOp>, CatchUps), ActorError> {
    let now = to_datetime(now_ms());
    let mut ops = Vec::new();
    for (key, value) in storage.load(Table::Runs)? {
        if let Ok(mut run) = decode_record::<RunRecord>(&value)
            && matches!(run.status, RunStatus::Running | RunStatus::Queued)
        {
            run.status = RunStatus::Interrupted;
            run.finished_at = Some(now);
            run.error = Some("the daemon stopped during the run".into());
            ops.push(WriteOp::put(key, &run));
        }
    }
    let mut catch_up = Vec::new();
    for objective in objectives.values_mut() {
        let Some(automation) = objective.automation.clone().filter(|a| a.enabled) else {
            continue;
        };
        if objective.state != ObjectiveState::Active {
            continue;
        }
        let Ok(schedule) = Schedule::parse(&automation.schedule, &automation.timezone) else {
            continue;
        };
        // The first 100 missed firings are recorded one by one; beyond that, the
        // newest one stands for the rest (a per-second schedule down for a month
        // must not take a million steps at start).
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
        let Some(newest) = missed.last().copied() else {
            continue;
        };
        for t in &missed {
            let run = new_run(
                objective,
                RunTrigger::Schedule,
                RunStatus::Missed,
                Some(*t),
                Some("the daemon was not running".into()),
            );
            ops.extend(run_ops(objective, &run, retention));
        }
        if automation.misfire == Misfire::RunOnce
            && schedule.next_after(newest).is_some_and(|end| now < end)
        {
            catch_up.push((objective.objective_id.clone(), newest));
        }
        objective.next_run_at = schedule.next_after(now);
        objective.updated_at = now;
        ops.push(objective_op(objective));
    }
    Ok((ops, catch_up))
}

impl ObjectivesActor {
    fn objective_op(&self, objective: &ObjectiveRecord) -> WriteOp {
        objective_op(objective)
    }

    /// A new run of `objective` (its sequence number taken).
    fn new_run(
        &self,
        objective: &mut ObjectiveRecord,
        trigger: RunTrigger,
        status: RunStatus,
        scheduled_for: Option<DateTime<Utc>>,
        error: Option<String>,
    ) -> RunRecord {
        new_run(objective, trigger, status, scheduled_for, error)
    }

    fn run_ops(&self, objective: &ObjectiveRecord, run: &RunRecord) -> Vec<WriteOp> {
        self.metrics.count_run(run.status);
        run_ops(objective, run, self.policy.run_retention)
    }

    /// The audit write of a budget running out (in the same write as the pause).
    fn budget_audit_op(&self, objective: &ObjectiveRecord) -> WriteOp {
        self.audit.op(crate::audit::AuditEntry::system(
            crate::audit::AuditKind::BudgetExhausted,
            &objective.objective_id,
            crate::audit::AuditOutcome::Success,
            format!(
                "runs {} tokens {}; the objective is paused",
                objective.usage.runs, objective.usage.tokens
            ),
        ))
    }
}

fn objective_op(objective: &ObjectiveRecord) -> WriteOp {
    WriteOp::put(objective.objective_id.as_bytes().to_vec(), objective)
}

/// A new run of `objective` (its sequence number taken).
fn new_run(
    objective: &mut ObjectiveRecord,
    trigger: RunTrigger,
    status: RunStatus,
    scheduled_for: Option<DateTime<Utc>>,
    error: Option<String>,
) -> RunRecord {
    objective.run_seq += 1;
    let now = to_datetime(now_ms());
    let finished = !matches!(status, RunStatus::Running | RunStatus::Queued);
    RunRecord {
        run_id: format!("{}-{}", objective.objective_id, objective.run_seq),
        objective_id: objective.objective_id.clone(),
        trigger,
        status,
        scheduled_for,
        started_at: (status == RunStatus::Running).then_some(now),
        finished_at: finished.then_some(now),
        tokens: 0,
        output: None,
        error,
    }
}

/// The writes of a run: the run, and the pruning of the run that falls out of the
/// retained history.
fn run_ops(objective: &ObjectiveRecord, run: &RunRecord, retention: u64) -> Vec<WriteOp> {
    let seq = objective.run_seq;
    let mut ops = vec![WriteOp::put(run_key(&objective.objective_id, seq), run)];
    if seq > retention {
        ops.push(WriteOp::delete(Table::Runs, run_key(&objective.objective_id, seq - retention)));
    }
    ops
}

impl ObjectivesActor {
    /// Keeps the scheduler's one entry per active, enabled objective in step.
    fn sync_schedule(&self, objective: &ObjectiveRecord) {
        let enabled = objective.state == ObjectiveState::Active
            && objective.automation.as_ref().is_some_and(|a| a.enabled);
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

    fn next_run(objective: &ObjectiveRecord, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let automation = objective.automation.as_ref().filter(|a| a.enabled)?;
        if objective.state != ObjectiveState::Active {
            return None;
        }
        Schedule::parse(&automation.schedule, &automation.timezone)
            .ok()?
            .next_after(after)
    }

    fn budget_exhausted(objective: &ObjectiveRecord) -> bool {
        objective
            .budget
            .max_runs
            .is_some_and(|m| objective.usage.runs >= m)
            || objective
                .budget
                .max_tokens
                .is_some_and(|m| objective.usage.tokens >= m)
    }

    /// Queues `ops` (memory already shows their effect) and returns their commit. A
    /// failed commit makes the actor reload agents and objectives from redb, so
    /// memory never stays ahead of the disk.
    fn commit(
        &mut self,
        ops: Vec<WriteOp>,
    ) -> impl ActorFuture<Self, Output = Result<(), ActorError>> + use<> {
        self.writer
            .submit(ops)
            .into_actor(self)
            .map(|result, act: &mut Self, _| {
                result.map_err(|e| {
                    tracing::error!(error = %e, "objectives commit failed; reloading from storage");
                    act.reload();
                    ActorError::from(e)
                })
            })
    }

    fn reload(&mut self) {
        match load_agents_and_objectives(&self.storage) {
            Ok((agents, objectives)) => {
                self.agents = agents;
                self.objectives = objectives;
                for objective in self.objectives.values() {
                    self.sync_schedule(objective);
                }
            }
            Err(e) => tracing::error!(error = %e, "reloading objectives failed"),
        }
    }

    /// Starts a run of the objective as it is in memory (the caller has already
    /// moved `next_run_at`): the run record and the objective commit first; then the
    /// provider call runs on a tokio worker. `reply` answers with the objective once
    /// the run is durable.
    fn start_run(
        &mut self,
        objective_id: &str,
        trigger: RunTrigger,
        scheduled_for: Option<DateTime<Utc>>,
        ctx: &mut Context<Self>,
        reply: Option<tokio::sync::oneshot::Sender<Result<ObjectiveRecord, ActorError>>>,
    ) {
        self.start_run_as(objective_id, trigger, scheduled_for, None, ctx, reply);
    }

    /// Starts the firing that waited (overlap `queue_one`) as its own `queued` run.
    fn start_queued(
        &mut self,
        objective_id: &str,
        scheduled_for: DateTime<Utc>,
        seq: u64,
        ctx: &mut Context<Self>,
    ) {
        let Some(objective) = self.objectives.get(objective_id) else {
            return;
        };
        if objective.state != ObjectiveState::Active || Self::budget_exhausted(objective) {
            let mut objective = objective.clone();
            let run = RunRecord {
                run_id: format!("{objective_id}-{seq}"),
                objective_id: objective_id.to_owned(),
                trigger: RunTrigger::Schedule,
                status: RunStatus::SkippedBudget,
                scheduled_for: Some(scheduled_for),
                started_at: None,
                finished_at: Some(to_datetime(now_ms())),
                tokens: 0,
                output: None,
                error: Some(
                    "the objective was paused or out of budget before the queued firing started"
                        .into(),
                ),
            };
            objective.updated_at = to_datetime(now_ms());
            let ops = vec![WriteOp::put(run_key(objective_id, seq), &run)];
            ctx.spawn(self.commit(ops).map(|_, _, _| ()));
            return;
        }
        self.start_run_as(
            objective_id,
            RunTrigger::Schedule,
            Some(scheduled_for),
            Some(seq),
            ctx,
            None,
        );
    }

    fn start_run_as(
        &mut self,
        objective_id: &str,
        trigger: RunTrigger,
        scheduled_for: Option<DateTime<Utc>>,
        queued_seq: Option<u64>,
        ctx: &mut Context<Self>,
        reply: Option<tokio::sync::oneshot::Sender<Result<ObjectiveRecord, ActorError>>>,
    ) {
        let Some(mut objective) = self.objectives.get(objective_id).cloned() else {
            return;
        };
        let agent = self.agents.get(&objective.agent_id).cloned();
        let now = to_datetime(now_ms());
        let run = match queued_seq {
            // The queued run record becomes the running one: one record per firing.
            Some(seq) => RunRecord {
                run_id: format!("{objective_id}-{seq}"),
                objective_id: objective_id.to_owned(),
                trigger,
                status: RunStatus::Running,
                scheduled_for,
                started_at: Some(now),
                finished_at: None,
                tokens: 0,
                output: None,
                error: None,
            },
            None => self.new_run(
                &mut objective,
                trigger,
                RunStatus::Running,
                scheduled_for,
                None,
            ),
        };
        objective.usage.runs += 1;
        objective.last_run = Some(RunSummary {
            run_id: run.run_id.clone(),
            status: RunStatus::Running,
            at: now,
        });
        objective.updated_at = now;
        let mut ops = match queued_seq {
            Some(seq) => vec![WriteOp::put(run_key(objective_id, seq), &run)],
            None => self.run_ops(&objective, &run),
        };
        ops.push(self.objective_op(&objective));
        self.running
            .insert(objective.objective_id.clone(), run.run_id.clone());
        self.objectives
            .insert(objective.objective_id.clone(), objective.clone());
        let durable = self.writer.submit(ops);
        let oid = objective_id.to_owned();
        ctx.spawn(durable.into_actor(self).map(move |result, act, ctx| {
            if let Err(e) = result {
                tracing::error!(error = %e, objective_id = %oid, "recording a run failed");
                act.running.remove(&oid);
                if let Some(reply) = reply {
                    let _ = reply.send(Err(e.into()));
                }
                return;
            }
            if let Some(reply) = reply {
                let _ = reply.send(Ok(objective.clone()));
            }
            let registry = act.registry.clone();
            let refresher = act.refresher.clone();
            let timeout = act.policy.provider_timeout;
            let task = tokio::spawn(async move {
                crate::runner::execute(&registry, &refresher, agent, &objective, timeout).await
            });
            ctx.spawn(
                async move { task.await.map_err(|_| ActorError::Stopped("objectives")) }
                    .into_actor(act)
                    .map(move |outcome, act, ctx| act.finish_run(&oid, run, outcome, ctx)),
            );
        }));
    }

    fn finish_run(
        &mut self,
        objective_id: &str,
        mut run: RunRecord,
        outcome: Result<crate::runner::RunOutcome, ActorError>,
        ctx: &mut Context<Self>,
    ) {
        self.running.remove(objective_id);
        let now = to_datetime(now_ms());
        match outcome {
            Ok(o) => {
                run.status = if o.error.is_none() {
                    RunStatus::Succeeded
                } else {
                    RunStatus::Failed
                };
                run.tokens = o.tokens;
                run.output = o.output;
                run.error = o.error;
            }
            Err(e) => {
                run.status = RunStatus::Failed;
                run.error = Some(e.to_string());
            }
        }
        run.finished_at = Some(now);
        let Some(objective) = self.objectives.get_mut(objective_id) else {
            return;
        };
        objective.usage.tokens = objective.usage.tokens.saturating_add(run.tokens);
        objective.last_run = Some(RunSummary {
            run_id: run.run_id.clone(),
            status: run.status,
            at: now,
        });
        objective.updated_at = now;
        let seq: u64 = run
            .run_id
            .rsplit('-')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut budget_run = None;
        if Self::budget_exhausted(objective) && objective.state == ObjectiveState::Active {
            // The budget is used up now: pause at once rather than at the next firing,
            // and record the firing that will not run as the budget's outcome.
            let skipped_for = objective.next_run_at.take();
            objective.state = ObjectiveState::Paused;
            objective.state_reason = Some("budget_exhausted".into());
            let skipped = new_run(
                objective,
                RunTrigger::Schedule,
                RunStatus::SkippedBudget,
                skipped_for,
                Some("the budget is exhausted; the objective is paused".into()),
            );
            tracing::info!(objective_id, "budget exhausted; objective paused");
            budget_run = Some(skipped);
        }
        let objective = objective.clone();
        self.sync_schedule(&objective);
        let mut ops = vec![self.objective_op(&objective)];
        if let Some(skipped) = &budget_run {
            ops.extend(self.run_ops(&objective, skipped));
            ops.push(self.budget_audit_op(&objective));
        }
        // A run already pruned from the history (a long run among many skipped ones)
        // stays pruned.
        if seq + self.policy.run_retention > objective.run_seq {
            ops.push(WriteOp::put(run_key(objective_id, seq), &run));
        }
        self.metrics.count_run(run.status);
        tracing::info!(objective_id, run_id = %run.run_id, status = ?run.status, tokens = run.tokens, "run finished");
        ctx.spawn(self.commit(ops).map(|_, _, _| ()));
        if let Some((scheduled_for, seq)) = self.queued.remove(objective_id)
            && !self.draining
        {
            self.start_queued(objective_id, scheduled_for, seq, ctx);
        }
    }
}

impl Handler<Fire> for ObjectivesActor {
    type Result = ();

    fn handle(&mut self, msg: Fire, ctx: &mut Self::Context) {
        let Some(mut objective) = self.objectives.get(&msg.objective_id).cloned() else {
            return;
        };
        let now = to_datetime(now_ms());
        if objective.state != ObjectiveState::Active {
            return;
        }
        let trigger = match msg.trigger {
            Trigger::Schedule | Trigger::Queued => RunTrigger::Schedule,
            Trigger::CatchUp => RunTrigger::CatchUp,
        };
        if msg.trigger == Trigger::Schedule {
            // A superseded entry (the schedule changed meanwhile) fires nothing.
            if objective.next_run_at != Some(msg.scheduled_for) {
                return;
            }
            let late = (now - msg.scheduled_for).num_microseconds().unwrap_or(0);
            self.metrics
                .scheduler_lateness_seconds
                .observe(late.max(0) as f64 / 1e6);
            objective.next_run_at = Self::next_run(&objective, msg.scheduled_for.max(now));
            objective.updated_at = now;
            self.sync_schedule(&objective);
            self.objectives
                .insert(objective.objective_id.clone(), objective.clone());
        }
        let scheduled_for = Some(msg.scheduled_for);
        if Self::budget_exhausted(&objective) {
            let mut run = self.new_run(
                &mut objective,
                trigger,
                RunStatus::SkippedBudget,
                scheduled_for,
                Some("budget exhausted".into()),
            );
            run.error = Some("the budget is exhausted; the objective is paused".into());
            objective.state = ObjectiveState::Paused;
            objective.state_reason = Some("budget_exhausted".into());
            objective.next_run_at = None;
            objective.last_run = Some(RunSummary {
                run_id: run.run_id.clone(),
                status: run.status,
                at: now,
            });
            let mut ops = self.run_ops(&objective, &run);
            ops.push(self.objective_op(&objective));
            ops.push(self.budget_audit_op(&objective));
            self.sync_schedule(&objective);
            tracing::info!(objective_id = %objective.objective_id, "budget exhausted; objective paused");
            self.objectives
                .insert(objective.objective_id.clone(), objective);
            ctx.spawn(self.commit(ops).map(|_, _, _| ()));
            return;
        }
        let overlap = objective
            .automation
            .as_ref()
            .map(|a| a.overlap)
            .unwrap_or_default();
        if self.running.contains_key(&objective.objective_id) {
            if overlap == Overlap::QueueOne
                && msg.trigger != Trigger::Queued
                && !self.queued.contains_key(&objective.objective_id)
            {
                // The waiting firing is a durable `queued` run with its own instant.
                let run = self.new_run(
                    &mut objective,
                    trigger,
                    RunStatus::Queued,
                    scheduled_for,
                    None,
                );
                let seq = objective.run_seq;
                let mut ops = self.run_ops(&objective, &run);
                ops.push(self.objective_op(&objective));
                self.queued
                    .insert(objective.objective_id.clone(), (msg.scheduled_for, seq));
                self.objectives
                    .insert(objective.objective_id.clone(), objective);
                ctx.spawn(self.commit(ops).map(|_, _, _| ()));
                return;
            }
            let run = self.new_run(
                &mut objective,
                trigger,
                RunStatus::SkippedOverlap,
                scheduled_for,
                Some("the previous run was still going".into()),
            );
            objective.last_run = Some(RunSummary {
                run_id: run.run_id.clone(),
                status: run.status,
                at: now,
            });
            let mut ops = self.run_ops(&objective, &run);
            ops.push(self.objective_op(&objective));
            self.objectives
                .insert(objective.objective_id.clone(), objective);
            ctx.spawn(self.commit(ops).map(|_, _, _| ()));
            return;
        }
        self.start_run(&msg.objective_id, trigger, scheduled_for, ctx, None);
    }
}

#[derive(Message)]
#[rtype(result = "Result<AgentRecord, ActorError>")]
struct CreateAgent(NewAgent);

impl Handler<CreateAgent> for ObjectivesActor {
    type Result = ResponseActFuture<Self, Result<AgentRecord, ActorError>>;

    fn handle(&mut self, CreateAgent(new): CreateAgent, _ctx: &mut Self::Context) -> Self::Result {
        if self.agents.contains_key(&new.agent_id) {
            return Box::pin(actix::fut::ready(Err(ActorError::Conflict(format!(
                "agent {} already exists; PATCH it to change it",
                new.agent_id
            )))));
        }
        let now = to_datetime(now_ms());
        let agent = AgentRecord {
            display_name: new.display_name.unwrap_or_else(|| new.agent_id.clone()),
            agent_id: new.agent_id,
            workspace_roots: new.workspace_roots,
            default_model_profile: new.default_model_profile,
            model: new.model,
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
        self.agents.insert(agent.agent_id.clone(), agent.clone());
        Box::pin(
            self.commit(ops)
                .map(move |result, _, _| result.map(|()| agent)),
        )
    }

    fn put_objective(
        &mut self,
        objective: ObjectiveRecord,
    ) -> ResponseActFuture<Self, Result<ObjectiveRecord, ActorError>> {
        let ops = vec![self.objective_op(&objective)];
        self.sync_schedule(&objective);
        self.objectives
            .insert(objective.objective_id.clone(), objective.clone());
        Box::pin(
            self.commit(ops)
                .map(move |result, _, _| result.map(|()| objective)),
        )
    }
}

#[derive(Message)]
#[rtype(result = "Result<AgentRecord, ActorError>")]
struct UpdateAgent(String, AgentPatch);

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
            agent.workspace_roots = v;
        }
        if let Some(v) = patch.default_model_profile {
            agent.default_model_profile = v;
        }
        if let Some(v) = patch.model {
            agent.model = v;
        }
        agent.updated_at = to_datetime(now_ms());
        self.put_agent(agent)
    }
}

#[derive(Message)]
#[rtype(result = "Result<(), ActorError>")]
struct DeleteAgent(String);

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
        let ops = vec![WriteOp::delete(Table::Agents, id.as_bytes().to_vec())];
        Box::pin(self.commit(ops))
    }
}

#[derive(Message)]
#[rtype(result = "Result<AgentRecord, ActorError>")]
struct GetAgent(String);

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
struct ListAgents {
    limit: usize,
    after: Option<String>,
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
        let (items, next_after) = crate::page_of(agents, msg.limit, |a| a.agent_id.clone());
        MessageResult(AgentPage { items, next_after })
    }
}

#[derive(Message)]
#[rtype(result = "Result<ObjectiveRecord, ActorError>")]
struct CreateObjective(NewObjective);

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
            created_at: now,
            updated_at: now,
        };
        objective.next_run_at = Self::next_run(&objective, now);
        tracing::info!(objective_id = %objective.objective_id, kind = ?objective.kind, "objective created");
        self.put_objective(objective)
    }
}

#[derive(Message)]
#[rtype(result = "Result<ObjectiveRecord, ActorError>")]
struct UpdateObjective(String, ObjectivePatch);

impl Handler<UpdateObjective> for ObjectivesActor {
    type Result = ResponseActFuture<Self, Result<ObjectiveRecord, ActorError>>;

    fn handle(
        &mut self,
        UpdateObjective(id, patch): UpdateObjective,
        _ctx: &mut Self::Context,
    ) -> Self::Result {
        let fail = |e| -> Self::Result { Box::pin(actix::fut::ready(Err(e))) };
        let Some(mut objective) = self.objectives.get(&id).cloned() else {
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
        if let Err(e) =
            validate_objective_texts(objective.kind, &objective.prompt, &objective.steps)
        {
            return fail(e);
        }
        if patch.automation.is_some() {
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
        objective.next_run_at = Self::next_run(&objective, now);
        objective.updated_at = now;
        self.put_objective(objective)
    }
}

#[derive(Message)]
#[rtype(result = "Result<ObjectiveRecord, ActorError>")]
struct GetObjective(String);

impl Handler<GetObjective> for ObjectivesActor {
    type Result = Result<ObjectiveRecord, ActorError>;

    fn handle(&mut self, GetObjective(id): GetObjective, _ctx: &mut Self::Context) -> Self::Result {
        self.objectives
            .get(&id)
            .cloned()
            .ok_or(ActorError::NotFound {
                what: "objective",
                id,
            })
    }
}

#[derive(Message)]
#[rtype(result = "ObjectivePage")]
struct ListObjectives {
    filter: ObjectiveFilter,
    limit: usize,
    after: Option<String>,
}

impl Handler<ListObjectives> for ObjectivesActor {
    type Result = MessageResult<ListObjectives>;

    fn handle(&mut self, msg: ListObjectives, _ctx: &mut Self::Context) -> Self::Result {
        use std::ops::Bound;
        let f = &msg.filter;
        let start = msg.after.map_or(Bound::Unbounded, Bound::Excluded);
        let matching = self
            .objectives
            .range((start, Bound::Unbounded))
            .map(|(_, o)| o)
            .filter(|o| f.kind.is_none_or(|k| k == o.kind))
            .filter(|o| f.state.is_none_or(|s| s == o.state))
            .filter(|o| f.agent_id.as_ref().is_none_or(|a| *a == o.agent_id))
            .cloned();
        let (items, next_after) = crate::page_of(matching, msg.limit, |o| o.objective_id.clone());
        MessageResult(ObjectivePage { items, next_after })
    }
}

#[derive(Message)]
#[rtype(result = "Result<ObjectiveRecord, ActorError>")]
struct Lifecycle {
    objective_id: String,
    action: LifecycleAction,
    reason: Option<String>,
}

impl Handler<Lifecycle> for ObjectivesActor {
    type Result = ResponseActFuture<Self, Result<ObjectiveRecord, ActorError>>;

    fn handle(&mut self, msg: Lifecycle, ctx: &mut Self::Context) -> Self::Result {
        let fail = |e| -> Self::Result { Box::pin(actix::fut::ready(Err(e))) };
        let Some(mut objective) = self.objectives.get(&msg.objective_id).cloned() else {
            return fail(ActorError::NotFound {
                what: "objective",
                id: msg.objective_id,
            });
        };
        let state_name = |s: ObjectiveState| crate::wire_name(s);
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
            if Self::budget_exhausted(&objective) {
                return fail(ActorError::Conflict(
                    "the objective's budget is exhausted".into(),
                ));
            }
            if self.running.contains_key(&objective.objective_id) {
                return fail(ActorError::Conflict(
                    "a run of this objective is going".into(),
                ));
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.start_run(&msg.objective_id, RunTrigger::Manual, None, ctx, Some(tx));
            return Box::pin(
                async move { rx.await.unwrap_or(Err(ActorError::Stopped("objectives"))) }
                    .into_actor(self),
            );
        }
        let Some(to) = transition(msg.action, objective.state) else {
            return fail(ActorError::Conflict(format!(
                "cannot {} an objective that is {}",
                crate::wire_name(msg.action),
                state_name(objective.state)
            )));
        };
        let now = to_datetime(now_ms());
        objective.state = to;
        objective.state_reason = msg.reason;
        objective.next_run_at = Self::next_run(&objective, now);
        objective.updated_at = now;
        if to != ObjectiveState::Active
            && let Some((scheduled_for, seq)) = self.queued.remove(&objective.objective_id)
        {
            let oid = objective.objective_id.clone();
            self.objectives.insert(oid.clone(), objective.clone());
            self.start_queued(&oid, scheduled_for, seq, ctx);
        }
        tracing::info!(objective_id = %objective.objective_id, state = %state_name(to), "objective lifecycle");
        self.put_objective(objective)
    }
}
